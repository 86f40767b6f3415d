"""ECGadv Type I (cloud deployment): edit the recording by Carlini & Wagner's targeted optimisation (S&P 2017,
eq. 6 with f6) of `c * f + D` by Adam with a binary search over c (margin, Adam step and search shared with
medadv's C&W attacks, `medadv.attacks.carlini`), where the distance D is the L2 norm, the paper's smoothness
metric (eq. 4) or both."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from medadv.attacks.base import AttackError
from medadv.attacks.carlini import cw_margin, targeted_success
from medadv.attacks.ecgadv.distances import METRICS, type1_distance, zscore
from medadv.attacks.ecgadv.lanes import ECGadvAttack, ECGadvConfig, Iterate


def record_lengths(x: np.ndarray) -> np.ndarray:
    """Real samples per record: the CinC loader zero-pads after z-scoring, so the tail of exact zeros is padding."""
    nonzero = np.asarray(x).reshape(len(x), -1) != 0
    lengths = nonzero.shape[1] - np.argmax(nonzero[:, ::-1], axis=1)
    lengths[~nonzero.any(axis=1)] = 0
    return lengths


@dataclass(frozen=True, kw_only=True)
class ECGadvTypeIConfig(ECGadvConfig):
    """ECGadv Type I: x' = x + delta (`l2`) or zscore(x + delta) (`smooth`, `smooth_l2`), minimise c f + D.

    Study defaults: Adam 5e-3, 5 binary-search steps from c = 1e-2, 1000 iterations, kappa 0.
    Beyond the study: `mask_to_length` leaves the zero padding of short records untouched (delta
    and z-score statistics on the real samples only); `renormalize` z-scores the `l2` variant too,
    as the study's evaluation script did to its saved samples before predicting.
    """

    metric: str = "l2"
    learning_rate: float = 5e-3
    max_iterations: int = 1000
    initial_const: float = 1e-2
    kappa: float = 0.0
    mask_to_length: bool = False
    renormalize: bool = False

    def validate(self, num_classes: int) -> None:
        super().validate(num_classes)
        if self.metric not in METRICS:
            raise AttackError(f"metric {self.metric!r} is not an ECGadv distance; choose one of {', '.join(METRICS)}")
        if not (math.isfinite(self.kappa) and self.kappa >= 0):
            raise AttackError(f"kappa must be a finite number >= 0, got {self.kappa}")


class ECGadvTypeI(ECGadvAttack):
    """ECGadv Type I, cloud deployment (`ECGadvTypeIConfig`): the returned x' is what the model was fed,
    x + delta for `l2` and zscore(x + delta) otherwise; records with no success come back unchanged."""

    config: ECGadvTypeIConfig
    initial_prev_loss = 1e6

    def per_sample_constants(self, x: np.ndarray) -> dict[str, np.ndarray]:
        if not self.config.mask_to_length:
            return {"mask": np.ones_like(x)}
        lengths = record_lengths(x)
        return {"mask": (np.arange(x.shape[1])[None, :, None] < lengths[:, None, None]).astype(np.float32)}

    def check_inputs(self, x: np.ndarray) -> None:
        if self.config.mask_to_length and len(x) and record_lengths(x).min() < 2:
            raise AttackError("mask_to_length needs records with at least 2 non-zero samples; found an empty record")

    def evaluate(self, delta: tf.Tensor, lanes: dict[str, tf.Tensor], clock: tf.Tensor) -> Iterate:
        config = self.config
        delta = delta * lanes["mask"]
        x = lanes["x"]
        x_adv = x + delta
        if config.metric != "l2" or config.renormalize:
            x_adv = zscore(x_adv, lanes["mask"])
        logits = self.logits(x_adv, training=False)
        distance = type1_distance(config.metric, delta, x_adv, x)
        loss = lanes["c"] * cw_margin(logits, lanes["target"], config.kappa) + distance
        success = targeted_success(logits, lanes["target"], config.kappa)
        return Iterate(loss, success, distance, tf.zeros_like(distance), x_adv)


def type1_label(name: str, config: ECGadvTypeIConfig) -> str:
    """Type I runs differ first by their distance: `ecgadv_type1 smooth`."""
    return f"{name} {config.metric}"
