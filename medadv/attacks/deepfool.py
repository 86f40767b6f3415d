"""DeepFool (Moosavi-Dezfooli et al., CVPR 2016, Alg. 2) batched in one `tf.function` step.

Each step linearises the logit differences Z_k - Z_orig of the candidate classes k around the current
point (one forward pass, one backward pass per candidate), moves every sample still classified as
its original class onto the nearest linearised boundary, and, once all have crossed or `max_iter`
steps are spent, scales the total perturbation by (1 + overshoot) as ART does. The candidates are
each sample's `nb_grads` most likely classes at the start (all classes when `nb_grads` covers them,
as Foolbox). The original class is the model's prediction, not the label (ART's choice).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from medadv.attacks.base import Attack, AttackError, UntargetedConfig
from medadv.attacks.carlini import batch_slices, per_sample
from medadv.models import logits_model

TOLERANCE = 1e-7  # ART's guard against a zero gradient difference


@dataclass(frozen=True, kw_only=True)
class DeepFoolConfig(UntargetedConfig):
    """DeepFool (Moosavi-Dezfooli et al. 2016, Alg. 2): steps to the linearised nearest decision boundary of the
    `nb_grads` most likely classes, then overshoots it by a factor (1 + `overshoot`) (the paper's eta, 0.02).
    Minimal L2 perturbation, no budget. ART calls the overshoot `epsilon`. 100 iterations: ART's default, which
    Grad-Attacks ran."""

    max_iter: int = 100
    overshoot: float = 0.02
    nb_grads: int = 10

    def validate(self, num_classes: int) -> None:
        super().validate(num_classes)
        if self.overshoot < 0:
            raise AttackError(f"overshoot must be >= 0, got {self.overshoot}")
        if self.max_iter < 1 or self.nb_grads < 1:
            raise AttackError(f"max_iter and nb_grads must be >= 1, got {self.max_iter} and {self.nb_grads}")


class DeepFool(Attack):
    """Batched DeepFool (`DeepFoolConfig`); `iterations_run` counts the batch steps of the last `generate`."""

    config: DeepFoolConfig

    def __init__(self, model: keras.Model, config: DeepFoolConfig, clip_range: tuple[float, float], batch_size: int):
        super().__init__(model, config, clip_range, batch_size)
        self.logits = logits_model(model)
        low, high = clip_range
        self.clip = (low, high) if math.isfinite(low) and math.isfinite(high) else None
        self.iterations_run = 0
        self._step = tf.function(self._one_step, reduce_retracing=True)
        self._predict = tf.function(lambda x: self.logits(x, training=False), reduce_retracing=True)

    def generate(self, x: np.ndarray, y: np.ndarray, target: np.ndarray | None) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        self.iterations_run = 0
        parts = [self._attack_batch(x[rows]) for rows in batch_slices(len(x), self.batch_size)]
        return np.concatenate(parts) if parts else x.copy()

    def _attack_batch(self, x: np.ndarray) -> np.ndarray:
        x_tf = tf.constant(x)
        logits = self._predict(x_tf)
        count = min(self.config.nb_grads, int(logits.shape[1]))
        candidates = tf.math.top_k(logits, k=count).indices  # column 0: the original class
        x_k, active = x_tf, tf.ones(len(x), dtype=tf.bool)
        for _ in range(self.config.max_iter):
            if count < 2 or not bool(tf.reduce_any(active)):
                break
            x_k, active = self._step(x_k, candidates, active)
            self.iterations_run += 1
        x_adv = x_tf + (1 + self.config.overshoot) * (x_k - x_tf)
        return np.asarray(tf.clip_by_value(x_adv, *self.clip) if self.clip is not None else x_adv)

    def _one_step(self, x_k: tf.Tensor, candidates: tf.Tensor, active: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """One DeepFool step of the samples still `active`, and which are still classified as their original class."""
        axes = list(range(1, len(x_k.shape)))
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(x_k)
            logits = self.logits(x_k, training=False)
            chosen = tf.gather(logits, candidates, batch_dims=1)
            differences = chosen[:, 1:] - chosen[:, :1]  # (n, k - 1): Z_k - Z_orig
            columns = [tf.reduce_sum(differences[:, j]) for j in range(differences.shape[1])]
        grads = tf.stack([tape.gradient(column, x_k) for column in columns], axis=1)  # (n, k - 1, ...)
        del tape
        still = tf.equal(tf.argmax(logits, axis=1, output_type=tf.int32), candidates[:, 0]) & active
        norms = tf.norm(tf.reshape(grads, [tf.shape(grads)[0], tf.shape(grads)[1], -1]), axis=2) + TOLERANCE
        nearest = tf.argmin(tf.abs(differences) / norms, axis=1, output_type=tf.int32)
        distance = tf.gather(tf.abs(differences), nearest, batch_dims=1)
        direction = tf.gather(grads, nearest, batch_dims=1)
        step = per_sample(distance / (tf.reduce_sum(tf.square(direction), axis=axes) + TOLERANCE), x_k) * direction
        moved = x_k + step
        if self.clip is not None:
            moved = tf.clip_by_value(moved, *self.clip)
        return tf.where(per_sample(still, x_k), moved, x_k), still
