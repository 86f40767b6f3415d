"""ECGadv Type II (local deployment): learn a short window of signal that fools the model wherever it lands,
by Expectation over Transformation (Athalye et al. 2018) over random circular shifts, with the bands an ECG
front end filters out removed (`medadv.attacks.ecgadv.filters`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from medadv.attacks.base import AttackError
from medadv.attacks.carlini import targeted_success
from medadv.attacks.ecgadv.distances import zscore
from medadv.attacks.ecgadv.filters import (
    DEFAULT_STOP_BANDS_HZ,
    STUDY_FFT_LENGTH,
    circular_shift,
    fft_filter,
    fft_keep_mask,
    offset_range,
    parse_bands,
)
from medadv.attacks.ecgadv.lanes import ECGadvAttack, ECGadvConfig, Iterate

# Type II band removal: `study` filters each shifted copy with a 16384-point transform, as ECGadv's code;
# `record` filters the window once with a transform of the record's length (circular, so shift-invariant).
FFT_FORMS = ("study", "record")


def power_in_range(power: tf.Tensor, low: float, high: float) -> tf.Tensor:
    """Type II keeps an iterate only if its power sum(delta^2) / w lies in the open interval (low, high)."""
    return (power > low) & (power < high)


@dataclass(frozen=True, kw_only=True)
class ECGadvTypeIIConfig(ECGadvConfig):
    """ECGadv Type II: a `window`-sample delta at a random circular offset, FFT bins in `stop_bands_hz`
    zeroed, x' = zscore(filtered shifted delta + x); minimise c * mean cross-entropy over the copies + sum delta^2.

    Study defaults: Adam 1.0, 5 binary-search steps from c = 5e4, 500 iterations; `ensemble_size`
    None draws int((L - w) / 50) copies per step (L / 50 when w = L). `stop_bands_hz` lists the
    bands as text ("lo-hi" or one frequency, comma-separated; see `parse_bands`). An iterate is
    kept if its power sum(delta^2) / w lies in (min_power, max_power); a step counts as a success
    only if the power of its lowest-loss success exceeds `min_step_power`. `seed` fixes the shifts.
    `fft_form` (`FFT_FORMS`) says which transform removes the bands.
    """

    window: int = 9000
    ensemble_size: int | None = None
    learning_rate: float = 1.0
    max_iterations: int = 500
    initial_const: float = 5e4
    stop_bands_hz: str = DEFAULT_STOP_BANDS_HZ
    fft_form: str = "study"
    min_power: float = 0.5
    max_power: float = 1.5
    min_step_power: float = 1.0
    seed: int = 0

    def validate(self, num_classes: int) -> None:
        super().validate(num_classes)
        if self.window < 2:
            raise AttackError(f"window must be >= 2 samples, got {self.window}")
        if self.ensemble_size is not None and self.ensemble_size < 1:
            raise AttackError(f"ensemble_size must be >= 1 or None, got {self.ensemble_size}")
        if not 0 <= self.min_power < self.max_power:
            raise AttackError(f"need 0 <= min_power < max_power, got {self.min_power} and {self.max_power}")
        parse_bands(self.stop_bands_hz)
        if self.fft_form not in FFT_FORMS:
            raise AttackError(f"fft_form {self.fft_form!r} is not one of {', '.join(FFT_FORMS)}")

    def copies(self, length: int) -> int:
        """Shifted copies per step: int((L - w) / 50) for a window shorter than the record, L / 50 otherwise."""
        if self.ensemble_size is not None:
            return self.ensemble_size
        return length // 50 if self.window == length else (length - self.window) // 50


class ECGadvTypeII(ECGadvAttack):
    """ECGadv Type II, local deployment (`ECGadvTypeIIConfig`): the returned x' is x + delta, delta the
    unfiltered window at the start of the record (zero elsewhere); records with no kept iterate come
    back unchanged. The model sees `len(x) * copies` records per iteration: keep `batch_size` small."""

    config: ECGadvTypeIIConfig
    initial_prev_loss = 1e9

    def check_inputs(self, x: np.ndarray) -> None:
        length, window = x.shape[1], self.config.window
        if window > length:
            raise AttackError(f"window {window} is longer than the records ({length} samples)")
        if self.config.copies(length) < 1:
            raise AttackError(f"window {window} of {length} leaves no shifted copies; set ensemble_size")
        if self.config.fft_form == "study" and length > STUDY_FFT_LENGTH:
            raise AttackError(f"fft_form=study pads records to {STUDY_FFT_LENGTH} samples; got {length}, use record")
        fft_keep_mask(length, self.config.fs_hz, parse_bands(self.config.stop_bands_hz))  # raises above fs/2

    def delta_shape(self, x: np.ndarray) -> tuple[int, ...]:
        return (len(x), self.config.window, 1)

    def keep(self, aux: tf.Tensor) -> tf.Tensor:
        return power_in_range(aux, self.config.min_power, self.config.max_power)

    def step_succeeded(self, found: np.ndarray, step_aux: np.ndarray) -> np.ndarray:
        return found & (step_aux > self.config.min_step_power)

    def filtered_copies(self, padded: tf.Tensor, offsets: tf.Tensor) -> tf.Tensor:
        """The windows padded to the record (n, L) at `offsets` (n, copies), the stop bands removed: (n, copies, L)."""
        config, length = self.config, padded.shape[-1]
        bands = parse_bands(config.stop_bands_hz)
        if config.fft_form == "record":  # circular: filtering once before the shifts equals filtering each copy
            return circular_shift(fft_filter(padded, fft_keep_mask(length, config.fs_hz, bands)), offsets)
        keep = fft_keep_mask(STUDY_FFT_LENGTH, config.fs_hz, bands)
        return fft_filter(circular_shift(padded, offsets), keep, STUDY_FFT_LENGTH)

    def evaluate(self, delta: tf.Tensor, lanes: dict[str, tf.Tensor], clock: tf.Tensor) -> Iterate:
        config = self.config
        x = lanes["x"]
        length, copies = x.shape[1], config.copies(x.shape[1])
        window = delta[:, :, 0]
        padded = tf.pad(window, [[0, 0], [0, length - config.window]])
        # Fresh offsets for every copy at every iteration, reproducible from the seed and the pool's clock.
        offsets = tf.random.stateless_uniform(
            [tf.shape(window)[0], copies],
            tf.stack([tf.constant(config.seed), clock]),
            minval=0,
            maxval=offset_range(length, config.window),
            dtype=tf.int32,
        )
        x_in = zscore(tf.reshape(self.filtered_copies(padded, offsets) + x[:, None, :, 0], (-1, length, 1)))
        logits = tf.reshape(self.logits(x_in, training=False), (-1, copies, self.num_classes))
        labels = tf.repeat(lanes["target"][:, None], copies, axis=1)
        xent = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits), axis=1)
        power_sum = tf.reduce_sum(tf.square(window), axis=1)
        success = targeted_success(tf.reduce_mean(logits, axis=1), lanes["target"])
        return Iterate(lanes["c"] * xent + power_sum, success, xent, power_sum / config.window, x + padded[..., None])


def type2_label(name: str, config: ECGadvTypeIIConfig) -> str:
    """Type II runs differ first by their window: `ecgadv_type2 w=9000`."""
    return f"{name} w={config.window}"
