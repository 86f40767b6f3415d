"""The signal side of ECGadv Type II (Chen et al., AAAI 2020, Sec. "Local deployment"): where a window of
perturbation lands in a record, which FFT bins the attack removes from it, and the acquisition-device
filters the universal evaluation passes it through.

Pure functions on arrays, used by the Type II attack (`type2`), its universal evaluation (`universal`) and
the ECG defenses (`medadv.defenses.ecg_filters`).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.signal
import tensorflow as tf

from medadv.attacks.base import AttackError

# Baseline wander and the 50 Hz / 60 Hz mains: what an ECG front end removes, so Type II must not rely on it.
DEFAULT_STOP_BANDS_HZ = "0.018-0.055,50,60"
# ECGadv's Type II transform length: each shifted 9000-sample copy zero-padded to 16384 points, where the
# default bands are bins 1-3, 2731 and 3277 at 300 Hz.
STUDY_FFT_LENGTH = 16384

Bands = tuple[tuple[float, float], ...]


def parse_bands(text: str) -> Bands:
    """Stop bands from text (a settings string, as MLflow passes it): "lo-hi" ranges or single
    frequencies in Hz, comma-separated; "" for none. "0.018-0.055,50" -> ((0.018, 0.055), (50.0, 50.0))."""
    bands = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        low, _, high = item.partition("-")
        try:
            bands.append((float(low), float(high or low)))
        except ValueError:
            raise AttackError(f"stop band {item!r} is not 'low-high' or one frequency in Hz") from None
    return tuple(bands)


def fft_zeroed_bins(length: int, fs_hz: float, bands_hz: Bands) -> np.ndarray:
    """Indices of the one-sided (rfft) bins whose centre frequency k * fs / length lies in a band [lo, hi].

    A band narrower than one bin that holds no bin centre (a mains line between two bins) zeroes the
    bin nearest to its middle, so every band removes something. With 9000 samples at 300 Hz the
    defaults zero bins 1 (0.033 Hz), 1500 (50 Hz) and 1800 (60 Hz).
    """
    nyquist = fs_hz / 2
    per_hz = length / fs_hz
    bins: set[int] = set()
    for lo, hi in bands_hz:
        if not 0 <= lo <= hi <= nyquist:
            raise AttackError(f"stop band ({lo}, {hi}) Hz must satisfy 0 <= lo <= hi <= fs/2 = {nyquist} Hz")
        first, last = math.ceil(lo * per_hz - 1e-9), math.floor(hi * per_hz + 1e-9)
        if first > last:
            first = last = min(round((lo + hi) / 2 * per_hz), length // 2)
        bins.update(range(first, last + 1))
    return np.array(sorted(bins), dtype=np.int64)


def fft_keep_mask(length: int, fs_hz: float, bands_hz: Bands) -> np.ndarray:
    """1 for the rfft bins a Type II perturbation keeps, 0 for those `fft_zeroed_bins` removes."""
    keep = np.ones(length // 2 + 1, dtype=np.float32)
    keep[fft_zeroed_bins(length, fs_hz, bands_hz)] = 0.0
    return keep


def fft_filter(signal: tf.Tensor, keep: tf.Tensor, fft_length: int | None = None) -> tf.Tensor:
    """Zero FFT bins of real signals (..., length), `keep` being a mask of fft_length // 2 + 1 bins.

    With `fft_length` None (the record's length) it is a circular convolution, so it commutes with
    circular shifts; a longer transform zero-pads the signal and crops the result back to `length`.
    """
    length = signal.shape[-1]
    points = fft_length or length
    spectrum = tf.signal.rfft(signal, fft_length=[points]) * tf.cast(keep, tf.complex64)
    return tf.signal.irfft(spectrum, fft_length=[points])[..., :length]


def offset_range(length: int, window: int) -> int:
    """How many start positions a window of `window` samples can take in a record (exclusive upper bound).

    A full-length window may start anywhere (it wraps round); a shorter one must fit, and ECGadv draws
    its start from [0, length - window), as both its attack and its universal evaluation do.
    """
    return length if window == length else length - window


def circular_shift(signal: tf.Tensor, offsets: tf.Tensor) -> tf.Tensor:
    """Copies of each signal (n, length) rolled right by `offsets` (n, copies): shape (n, copies, length)."""
    length = signal.shape[-1]
    offsets = tf.cast(offsets, tf.int32)
    index = tf.math.floormod(tf.range(length)[None, None, :] - offsets[:, :, None], length)
    return tf.gather(signal, index, batch_dims=1)


def device_filter_stages(
    fs_hz: float,
    *,
    highpass_hz: float = 0.05,
    order: int = 3,
    notches_hz: tuple[float, ...] = (60.0, 50.0),
    notch_q: float = 30.0,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The (b, a) coefficients of an ECG front end as ECGadv's universal evaluation models it, in order:
    a causal Butterworth high-pass (baseline wander), then IIR notches at the mains frequencies."""
    for frequency in (highpass_hz, *notches_hz):
        if not 0 < frequency < fs_hz / 2:
            raise AttackError(f"filter frequency {frequency} Hz must lie in (0, fs/2 = {fs_hz / 2}) Hz")
    stages = [scipy.signal.butter(order, highpass_hz, btype="highpass", fs=fs_hz)]
    return stages + [scipy.signal.iirnotch(notch_hz, notch_q, fs_hz) for notch_hz in notches_hz]


def device_filter(signal: np.ndarray, fs_hz: float) -> np.ndarray:
    """What an ECG front end does to an injected signal: `device_filter_stages` applied along the last axis."""
    filtered = np.asarray(signal, dtype=np.float64)
    for b, a in device_filter_stages(fs_hz):
        filtered = scipy.signal.lfilter(b, a, filtered, axis=-1)
    return filtered
