"""Auto-PGD (Croce & Hein, ICML 2020, Alg. 1) on PGD's loop, and AutoAttack's sequence of attacks.

APGD is PGD with momentum (alpha = 0.75) and a per-sample step size that starts at `eps_step` and
halves at checkpoints where the loss rose in under 75% of the iterations since the last one, or
neither the step size nor the best loss changed; then the sample restarts from its best point. The
loss is cross-entropy or the difference of logits ratio (DLR, eq. 6), targeted as ART does
(-DLR towards the target). The schedule, restarts, random starts and projections are ART's
(`AutoProjectedGradientDescent`), so both engines take the same settings; the loss of a new iterate
is read from the pass that also gives its gradient, so an iteration costs one forward and one
backward pass (ART: two forward passes and one backward pass, in numpy between them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from medadv.attacks.base import AttackError
from medadv.attacks.carlini import per_sample
from medadv.attacks.native import PGD, PGDConfig

MOMENTUM = 0.75  # alpha of Alg. 1
RHO = 0.75  # condition 1: the loss rose in fewer than rho x the iterations of the period


APGD_LOSSES = ("cross_entropy", "difference_logits_ratio")


@dataclass(frozen=True, kw_only=True)
class APGDConfig(PGDConfig):
    """Auto-PGD (Croce & Hein 2020, Alg. 1): PGD with momentum and a step size that starts at `eps_step` and halves
    at checkpoints where progress stalled, best of `num_random_init` random starts; `loss_type` cross-entropy or
    the difference of logits ratio (needs >= 3 classes). ART's defaults."""

    eps: float = 0.3
    eps_step: float = 0.1
    max_iter: int = 100
    num_random_init: int = 5
    loss_type: str = "cross_entropy"

    def validate(self, num_classes: int) -> None:
        super().validate(num_classes)
        if self.eps <= 0 or self.num_random_init < 1:
            raise AttackError(f"need eps > 0 and num_random_init >= 1, got {self.eps} and {self.num_random_init}")
        if self.loss_type not in APGD_LOSSES:
            raise AttackError(f"loss_type {self.loss_type!r} is not supported; choose one of {', '.join(APGD_LOSSES)}")
        if self.loss_type == "difference_logits_ratio" and num_classes < 3:
            raise AttackError(f"the difference of logits ratio needs >= 3 classes, the model has {num_classes}")


def dlr_loss(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """Difference of logits ratio (eq. 6): -(Z_y - max_{i != y} Z_i) / (Z_pi1 - Z_pi3), shift- and scale-free."""
    ordered = tf.sort(logits, axis=1, direction="DESCENDING")
    is_label = tf.one_hot(labels, tf.shape(logits)[1], on_value=True, off_value=False)
    label = tf.reduce_max(tf.where(is_label, logits, -np.inf), axis=1)
    other = tf.reduce_max(tf.where(is_label, -np.inf, logits), axis=1)
    return -(label - other) / (ordered[:, 0] - ordered[:, 2] + 1e-12)


def checkpoints(max_iter: int) -> dict[int, int]:
    """ART's checkpoints w_j = ceil(p_j max_iter), p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03,
    0.06): iteration index -> iterations since the previous checkpoint (the first, at 0, is never checked)."""
    p = [0.0, 0.22]
    while p[-1] + max(p[-1] - p[-2] - 0.03, 0.06) <= 1:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    w = [math.ceil(value * max_iter) for value in p]
    return {k: k - w[w.index(k) - 1] for k in w if 1 <= k < max_iter}


class APGD(PGD):
    """APGD (`APGDConfig`): `max_iter` iterations per restart; a sample keeps its latest fooling iterate, else its
    highest-loss one. Restarts and random starts are PGD's."""

    config: APGDConfig

    def __init__(self, model: keras.Model, config: APGDConfig, clip_range: tuple[float, float], batch_size: int):
        super().__init__(model, config, clip_range, batch_size)
        self._apgd_step = tf.function(self._iteration, reduce_retracing=True)

    def loss(self, logits: tf.Tensor, labels: tf.Tensor, x_adv: tf.Tensor, x: tf.Tensor) -> tf.Tensor:
        if self.config.loss_type == "cross_entropy":
            return super().loss(logits, labels, x_adv, x)
        dlr = dlr_loss(logits, labels)
        return -dlr if self.config.targeted else dlr

    def _run(self, x_start: np.ndarray, x: tf.Tensor, labels: tf.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n, inf = len(x_start), np.full(len(x_start), -np.inf, dtype=np.float32)
        eta = np.full(n, self.config.eps_step, dtype=np.float32)
        start = tf.constant(x_start)
        s = {"x_k": start, "x_prev": x, "eta": eta, "eta_w": eta, "f_max": inf, "f_max_w": inf, "count": inf * 0}
        s |= {"x_max": start, "x_max_prev": x, "g_max": tf.zeros_like(start), "adv_x": start}
        s = {name: tf.constant(value) for name, value in s.items()} | {"found": tf.zeros(n, dtype=tf.bool)}
        periods = checkpoints(self.config.max_iter)
        for j in range(self.config.max_iter):
            # Iteration j evaluates iterate j, so ART's checkpoint after making iterate k is checked at j = k + 1.
            s = self._apgd_step(s, x, labels, tf.constant(j), tf.constant(float(periods.get(j - 1, 0))))
        loss, pred = self._evaluate(s["x_k"], x, labels)
        fooled = self._fooled(pred, labels)
        found = s["found"] | fooled
        adv_x = tf.where(per_sample(fooled, x), s["x_k"], s["adv_x"])
        x_max = tf.where(per_sample(loss > s["f_max"], x), s["x_k"], s["x_max"])
        x_adv = tf.where(per_sample(found, x), adv_x, x_max)
        loss, pred = self._evaluate(x_adv, x, labels)
        return x_adv.numpy(), loss.numpy(), pred.numpy()

    def _fooled(self, pred: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
        return tf.equal(pred, labels) if self.config.targeted else tf.not_equal(pred, labels)

    def _iteration(
        self, s: dict[str, tf.Tensor], x: tf.Tensor, labels: tf.Tensor, j: tf.Tensor, period: tf.Tensor
    ) -> dict[str, tf.Tensor]:
        """Evaluate iterate j (its loss and gradient in one pass), keep the bests, check a checkpoint, step."""
        x_k, x_prev = s["x_k"], s["x_prev"]
        with tf.GradientTape() as tape:
            tape.watch(x_k)
            logits = self.logits(x_k, training=False)
            loss = self.loss(logits, labels, x_k, x)
        grad = tape.gradient(loss, x_k)
        fooled = self._fooled(tf.argmax(logits, axis=1, output_type=tf.int32), labels)
        improved = tf.where(j <= 1, loss >= s["f_max"], loss > s["f_max"])  # ART's test of iterate 1 is >=
        f_max = tf.where(improved, loss, s["f_max"])
        x_max = tf.where(per_sample(improved, x_k), x_k, s["x_max"])
        x_max_prev = tf.where(per_sample(improved, x_k), x_prev, s["x_max_prev"])
        g_max = tf.where(per_sample(improved, x_k), grad, s["g_max"])
        count = s["count"] + tf.cast(improved & (j >= 1), loss.dtype)
        f_max_w = tf.where(j == 0, loss, s["f_max_w"])
        # Checkpoint: halve the step and go back to the best point where the loss rose too rarely or stalled.
        stalled = (s["eta_w"] == s["eta"]) & (s["f_max_w"] == f_max)
        halve = (period > 0) & ((count < RHO * period) | stalled)
        eta = tf.where(halve, s["eta"] / 2, s["eta"])
        back = per_sample(halve, x_k)
        x_k, x_prev, grad = tf.where(back, x_max, x_k), tf.where(back, x_max_prev, x_prev), tf.where(back, g_max, grad)
        at_checkpoint = period > 0
        z = self.project(x_k + per_sample(eta, x_k) * self.ball.direction(grad), x)
        with_momentum = self.project(x_k + MOMENTUM * (z - x_k) + (1 - MOMENTUM) * (x_k - x_prev), x)
        return s | {
            "x_k": tf.where(j == 0, z, with_momentum),
            "x_prev": x_k,
            "eta": eta,
            "eta_w": tf.where(at_checkpoint, eta, s["eta_w"]),
            "f_max": f_max,
            "f_max_w": tf.where(at_checkpoint, f_max, f_max_w),
            "count": tf.where(at_checkpoint, tf.zeros_like(count), count),
            "x_max": x_max,
            "x_max_prev": x_max_prev,
            "g_max": g_max,
            "found": s["found"] | fooled,
            "adv_x": tf.where(per_sample(fooled, x_k), s["x_k"], s["adv_x"]),
        }
