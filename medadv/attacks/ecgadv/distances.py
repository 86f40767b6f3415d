"""ECGadv's formulas (Chen et al., AAAI 2020): the CinC model's z-score input normalisation, the smoothness
metric (eq. 4), Type I's distances and the evaluation distances an attack run logs per ECG record."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

METRICS = ("l2", "smooth", "smooth_l2")  # Type I's distances D
SMOOTH_WEIGHT = 1e4  # D_smooth = 1e4 * Var(Delta): the study's scale for the smoothness metric
SMOOTH_L2_WEIGHT = 0.01  # weight of the L2 term in the study's smooth_l2 metric


def zscore(signal: tf.Tensor, mask: tf.Tensor | None = None) -> tf.Tensor:
    """Per-record z-score over axis 1 (population variance), the input normalisation of the CinC model.

    With a 0/1 `mask` the statistics come from the masked samples only and the rest is set to 0.
    """
    if mask is None:
        mean, variance = tf.nn.moments(signal, axes=[1], keepdims=True)
        return (signal - mean) / tf.sqrt(variance)
    count = tf.reduce_sum(mask, axis=1, keepdims=True)
    mean = tf.reduce_sum(signal * mask, axis=1, keepdims=True) / count
    variance = tf.reduce_sum(tf.square((signal - mean) * mask), axis=1, keepdims=True) / count
    return (signal - mean) / tf.sqrt(variance) * mask


def smoothness(delta: tf.Tensor) -> tf.Tensor:
    """Var(Delta) with Delta = (0, d1-d0, ..., d_{L-1}-d_{L-2}, -d_{L-1}): ECGadv's smoothness (eq. 4).

    The first difference of delta padded with zeros at both ends, with its first entry zeroed as the
    study's code does, and the population variance over its L + 1 entries; `delta` is (n, L, 1).
    """
    zero = tf.zeros_like(delta[:, :1])
    padded_diff = tf.concat([zero, delta[:, 1:] - delta[:, :-1], -delta[:, -1:]], axis=1)
    return tf.math.reduce_variance(padded_diff, axis=[1, 2])


def type1_distance(metric: str, delta: tf.Tensor, x_model: tf.Tensor, x: tf.Tensor) -> tf.Tensor:
    """D of Type I per sample: `l2` sum (x'-x)^2, `smooth` 1e4 Var(Delta), `smooth_l2` their 1 : 0.01 sum."""
    l2 = tf.reduce_sum(tf.square(x_model - x), axis=[1, 2])
    if metric == "l2":
        return l2
    smooth = SMOOTH_WEIGHT * smoothness(delta)
    return smooth if metric == "smooth" else smooth + SMOOTH_L2_WEIGHT * l2


def evaluation_distances(x: np.ndarray, x_adv: np.ndarray) -> dict[str, np.ndarray]:
    """Per-sample distances of a saved x', the ones the attack optimised (eq. 4 as `smoothness`):
    d_l2 = sum (x'-x)^2, d_smooth = Var(padded first difference of x'-x), d_smooth_l2 = 1e4 d_smooth + 0.01 d_l2."""
    delta = (np.asarray(x_adv, np.float64) - np.asarray(x, np.float64)).reshape(len(x), -1)
    d_l2 = np.sum(delta**2, axis=1)
    d_smooth = smoothness(tf.constant(delta[:, :, None])).numpy()
    return {"d_l2": d_l2, "d_smooth": d_smooth, "d_smooth_l2": SMOOTH_WEIGHT * d_smooth + SMOOTH_L2_WEIGHT * d_l2}
