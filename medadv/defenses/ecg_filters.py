"""Preprocessing defenses for ECG victims: the filters a recording device applies, wrapped around the model.

A defended victim is x -> filter -> z-score -> victim, itself a victim (logits -> softmax), so every attack
runs on it unchanged. The linear filters are differentiable TensorFlow ops: each is applied as its
frequency response on the record's DFT (circular, so a record's end filters into its start; on a
periodic signal this equals running the filter in its steady state):

- `bandpass`: a 2nd-order Butterworth band-pass 0.5-40 Hz run forwards and backwards (zero phase, |H|^2);
- `notch`: the front end of ECGadv Type II's universal evaluation (0.05 Hz high-pass, 50 and 60 Hz notches).

The denoisers are not differentiable; an adaptive attack passes them by BPDA (Athalye et al., ICML 2018:
the filter forward, the identity backward):

- `median`: scipy's median filter over 5 samples (17 ms at 300 Hz: it removes spikes, keeps the QRS);
- `wavelet`: PyWavelets db4 to level 4, detail coefficients soft-thresholded at the universal threshold
  sigma * sqrt(2 ln n), sigma from the finest level's median absolute value (Donoho & Johnstone, 1994).

`defense_evaluation` runs the attack crafted on the bare model and replays it through the defense (the
non-adaptive attack) beside the result of the attack crafted on the defended model (the adaptive one).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import pywt
import scipy.signal
import tensorflow as tf

from medadv.attacks.base import Attack
from medadv.attacks.ecgadv import zscore
from medadv.attacks.ecgadv.filters import device_filter_stages
from medadv.attacks.result import AttackResult
from medadv.attacks.runner import attack_batches, predict
from medadv.data.base import Dataset
from medadv.defenses.adversarial_training import DefenseError
from medadv.metrics.attack import attack_success_rate
from medadv.models import logits_model

BANDPASS_HZ = (0.5, 40.0)
BANDPASS_ORDER = 2
MEDIAN_KERNEL = 5
WAVELET, WAVELET_LEVEL = "db4", 4
# A defense "stops" an attack when it takes at least this share of successes away.
VERDICT_MARGIN = 0.1


def frequency_response(defense: str, length: int, fs_hz: float) -> np.ndarray:
    """The complex gain of a linear defense at each rfft bin of a `length`-sample record."""
    frequencies = np.fft.rfftfreq(length, 1.0 / fs_hz)
    if defense == "bandpass":
        sos = scipy.signal.butter(BANDPASS_ORDER, BANDPASS_HZ, btype="bandpass", fs=fs_hz, output="sos")
        return np.abs(scipy.signal.sosfreqz(sos, frequencies, fs=fs_hz)[1]) ** 2 + 0j  # forward-backward
    response = np.ones(len(frequencies), dtype=np.complex128)
    for b, a in device_filter_stages(fs_hz):
        response *= scipy.signal.freqz(b, a, frequencies, fs=fs_hz)[1]
    return response


def median_denoise(signal: np.ndarray) -> np.ndarray:
    """Records (n, L) through a 5-sample median filter."""
    return scipy.signal.medfilt(signal, kernel_size=(1, MEDIAN_KERNEL)).astype(np.float32)


def wavelet_denoise(signal: np.ndarray) -> np.ndarray:
    """Records (n, L) with their wavelet detail coefficients soft-thresholded at the universal threshold."""
    coefficients = pywt.wavedec(signal, WAVELET, level=WAVELET_LEVEL, axis=-1)
    sigma = np.median(np.abs(coefficients[-1]), axis=-1, keepdims=True) / 0.6745
    threshold = sigma * np.sqrt(2 * np.log(signal.shape[-1]))
    details = [pywt.threshold(detail, threshold, mode="soft") for detail in coefficients[1:]]
    return pywt.waverec([coefficients[0], *details], WAVELET, axis=-1)[:, : signal.shape[-1]].astype(np.float32)


DENOISERS: dict[str, Callable[[np.ndarray], np.ndarray]] = {"median": median_denoise, "wavelet": wavelet_denoise}
DEFENSES = ("bandpass", "notch", *DENOISERS)


def bpda(function: Callable[[np.ndarray], np.ndarray], signal: tf.Tensor) -> tf.Tensor:
    """`function` (numpy, (n, L) -> (n, L)) forward, the identity backward."""

    @tf.custom_gradient  # type: ignore[untyped-decorator]
    def apply(values: tf.Tensor) -> tuple[tf.Tensor, Callable[[tf.Tensor], tf.Tensor]]:
        out = tf.numpy_function(function, [values], tf.float32, stateful=False)
        return tf.ensure_shape(out, values.shape), lambda upstream: upstream

    return apply(signal)


class ECGFilter(keras.layers.Layer):
    """One defense on records (n, L, 1), then the per-record z-score the victim was trained on."""

    def __init__(self, defense: str, fs_hz: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.defense, self.fs_hz = defense, fs_hz

    def call(self, x: tf.Tensor) -> tf.Tensor:
        signal = tf.cast(x[:, :, 0], tf.float32)
        if self.defense in DENOISERS:
            filtered = bpda(DENOISERS[self.defense], signal)
        else:
            gain = tf.constant(frequency_response(self.defense, int(x.shape[1]), self.fs_hz), tf.complex64)
            filtered = tf.signal.irfft(tf.signal.rfft(signal) * gain, fft_length=[int(x.shape[1])])
        return zscore(filtered[:, :, None])

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return super().get_config() | {"defense": self.defense, "fs_hz": self.fs_hz}


def check_defense(defense: str, data: Dataset) -> None:
    """Raise DefenseError unless `defense` is empty or a known filter and `data` are ECG records of known rate."""
    if not defense:
        return
    if defense not in DEFENSES:
        raise DefenseError(f"unknown defense {defense!r}; choose one of {', '.join(DEFENSES)}")
    if data.fs_hz is None or len(data.input_shape) != 2 or data.input_shape[1] != 1:
        raise DefenseError(f"defense {defense!r} filters ECG records; data set {data.name!r} has none")


def defended(model: keras.Model, defense: str, fs_hz: float) -> keras.Model:
    """`model` behind `defense`: a victim (logits -> softmax) taking the same records."""
    inputs = keras.Input(shape=tuple(model.input_shape[1:]), name="record")
    logits = logits_model(model)(ECGFilter(defense, fs_hz, name=defense)(inputs))
    return keras.Model(inputs, keras.layers.Activation("softmax", name="probs")(logits), name=f"{model.name}_{defense}")


def defense_evaluation(
    bare_attack: Attack,
    model: keras.Model,
    defended_model: keras.Model,
    data: Dataset,
    y_target: np.ndarray,
    adaptive: AttackResult,
    *,
    batch_size: int,
    seed: int,
) -> dict[str, float]:
    """The attack crafted on the bare `model` (`bare_attack`) on the same samples: its success on the bare model
    (`undefended_success_rate`) and replayed through the defense (`nonadaptive_success_rate`), beside the
    success of the attack crafted through the defense (`adaptive`: `adaptive_success_rate`)."""
    batches = attack_batches(bare_attack, model, data, y_target, batch_size=batch_size, seed=seed, progress=False)
    crafted = AttackResult.concatenate([batch for _, batch in batches])
    replayed = predict(defended_model, crafted.x_adv).argmax(axis=1)
    return {
        "undefended_success_rate": attack_success_rate(crafted.y_true, crafted.y_adv, crafted.y_target),
        "nonadaptive_success_rate": attack_success_rate(crafted.y_true, replayed, crafted.y_target),
        "adaptive_success_rate": attack_success_rate(adaptive.y_true, adaptive.y_adv, adaptive.y_target),
    }


def defense_verdict(undefended: float, nonadaptive: float, adaptive: float, margin: float = VERDICT_MARGIN) -> str:
    """What a defense did, as the adaptive-attack literature asks it be reported (Tramer et al., NeurIPS 2020)."""
    if nonadaptive >= undefended - margin:
        return "no effect"
    if adaptive >= undefended - margin:
        return "stops only the non-adaptive attack"
    if adaptive >= nonadaptive + margin:
        return "partly broken by the adaptive attack"
    return "holds against the adaptive attack"
