"""medadv's own gradient attacks: FGSM, BIM and PGD as fused `tf.function` steps on the logits.

ART runs every step through numpy and eager TensorFlow; here each step (forward, loss, gradient,
update, clipping, projection) is one traced graph (optionally XLA-compiled) and the tensors stay in
TensorFlow between steps, so an attack costs little more than its forward and backward passes.
The loop is `GradientAttack`, with four hooks (`loss`, `step`, `project`, `initial`) that variants
override instead of copying the loop (Foolbox 3's pattern); the threat model is a small `Ball`
object, so no attack hard-codes L-inf or L2.

Random starts are drawn from numpy's global generator with the same calls as ART, so both engines
draw the same noise when seeded the same way (the runner seeds each batch).
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass
from typing import ClassVar

import keras
import numpy as np
import tensorflow as tf
from scipy.special import gammainc

from medadv.attacks.base import Attack, AttackConfig, AttackError
from medadv.models import logits_model


class Ball(abc.ABC):
    """An Lp ball around the clean input: the threat model of a gradient attack."""

    name: ClassVar[str]

    @abc.abstractmethod
    def direction(self, grad: tf.Tensor) -> tf.Tensor:
        """The unit-norm step that increases a linear loss with gradient `grad` the most."""

    @abc.abstractmethod
    def project(self, delta: tf.Tensor, eps: float) -> tf.Tensor:
        """`delta` moved into the ball of radius `eps`."""

    @abc.abstractmethod
    def sample(self, shape: tuple[int, ...], eps: float) -> np.ndarray:
        """Points drawn uniformly from the ball (numpy's global generator, as ART's `random_sphere`)."""


def _flat_norm(values: tf.Tensor) -> tf.Tensor:
    """Per-sample L2 norm, shaped to broadcast against `values`."""
    axes = list(range(1, len(values.shape)))
    return tf.sqrt(tf.reduce_sum(tf.square(values), axis=axes, keepdims=True))


class LinfBall(Ball):
    name = "inf"

    def direction(self, grad: tf.Tensor) -> tf.Tensor:
        return tf.sign(grad)

    def project(self, delta: tf.Tensor, eps: float) -> tf.Tensor:
        return tf.clip_by_value(delta, -eps, eps)

    def sample(self, shape: tuple[int, ...], eps: float) -> np.ndarray:
        n, m = shape[0], math.prod(shape[1:])
        return np.random.uniform(-eps, eps, (n, m)).reshape(shape)


class L2Ball(Ball):
    name = "2"

    def direction(self, grad: tf.Tensor) -> tf.Tensor:
        norm = _flat_norm(grad)
        return tf.math.divide_no_nan(grad, norm)

    def project(self, delta: tf.Tensor, eps: float) -> tf.Tensor:
        norm = _flat_norm(delta)
        return delta * tf.minimum(1.0, tf.math.divide_no_nan(tf.cast(eps, delta.dtype), norm))

    def sample(self, shape: tuple[int, ...], eps: float) -> np.ndarray:
        """Uniform in the ball: a Gaussian direction, radius from the chi-square CDF (as ART's `random_sphere`)."""
        n, m = shape[0], math.prod(shape[1:])
        gauss = np.random.randn(n, m)
        squared = np.sum(gauss**2, axis=1, keepdims=True)
        radius = gammainc(m / 2.0, squared / 2.0) ** (1 / m) * eps / np.sqrt(squared)
        return (gauss * radius).reshape(shape)


BALLS: dict[str, Ball] = {ball.name: ball for ball in (LinfBall(), L2Ball())}


@dataclass(frozen=True, kw_only=True)
class LpConfig(AttackConfig):
    """Settings of an attack bounded by `||x_adv - x||_norm <= eps` (norm "inf" or "2", in input units)."""

    eps: float = 0.03
    norm: str = "inf"

    def validate(self, num_classes: int) -> None:
        super().validate(num_classes)
        if self.norm not in BALLS:
            raise AttackError(f"norm {self.norm!r} is not supported; choose one of {', '.join(BALLS)}")
        if not (math.isfinite(self.eps) and self.eps >= 0):
            raise AttackError(f"eps must be a finite number >= 0, got {self.eps}")


@dataclass(frozen=True, kw_only=True)
class FGSMConfig(LpConfig):
    """Fast gradient method (Goodfellow et al. 2015, eq. 3): one step of size `eps` along the loss gradient.

    `norm="inf"` steps by `eps * sign(grad)`, `norm="2"` by `eps * grad / ||grad||_2`.
    """


@dataclass(frozen=True, kw_only=True)
class BIMConfig(FGSMConfig):
    """Basic iterative method (Kurakin et al. 2017, eq. 1): `max_iter` steps of size `eps_step` from the clean
    input, each clipped to the data range and projected back into the `eps`-ball. A step larger than eps is
    taken, then projected, as ART does (Grad-Attacks ran ART's default eps_step 0.1 at eps 0.01 to 0.1)."""

    eps_step: float = 0.01
    max_iter: int = 10

    def validate(self, num_classes: int) -> None:
        super().validate(num_classes)
        if not (math.isfinite(self.eps_step) and self.eps_step > 0):
            raise AttackError(f"eps_step must be a finite number > 0, got {self.eps_step}")
        if self.max_iter < 1:
            raise AttackError(f"max_iter must be >= 1, got {self.max_iter}")


@dataclass(frozen=True, kw_only=True)
class PGDConfig(BIMConfig):
    """Projected gradient descent (Madry et al. 2018, eq. 2): BIM started from a uniform random point in the
    `eps`-ball, run `num_random_init` times; 0 starts once from the clean input (then it is BIM)."""

    num_random_init: int = 1
    max_iter: int = 20

    def validate(self, num_classes: int) -> None:
        super().validate(num_classes)
        if self.num_random_init < 0:
            raise AttackError(f"num_random_init must be >= 0, got {self.num_random_init}")


def targets_for(config: AttackConfig, target: np.ndarray | None, num_samples: int) -> np.ndarray | None:
    """The per-sample target classes of a targeted attack, None for an untargeted one."""
    if not config.targeted:
        return None
    if target is None or len(target) != num_samples:
        raise AttackError(f"a targeted attack needs one target class per sample ({num_samples}), got {target!r}")
    return np.asarray(target)


class GradientAttack(Attack):
    """The one gradient loop: `iterations` times x_adv <- project(x_adv + step(grad of loss)), per restart.

    Of several restarts each sample keeps the one that fools the model, or, when all or none do,
    the one with the highest loss. Hooks for variants: `loss`, `step`, `project`, `initial`,
    and the `iterations` / `restarts` counts.
    """

    config: LpConfig

    def __init__(
        self,
        model: keras.Model,
        config: LpConfig,
        clip_range: tuple[float, float],
        batch_size: int,
        *,
        jit_compile: bool = False,
    ) -> None:
        super().__init__(model, config, clip_range, batch_size)
        self.logits = logits_model(model)
        self.ball = BALLS[config.norm]
        low, high = clip_range
        self.clip = (low, high) if math.isfinite(low) and math.isfinite(high) else None
        # Each step is one graph; the loop over steps stays in Python: a graph while-loop took ~1.4x the CPU
        # time on 2 cores. XLA (`jit_compile`) took 2-3x longer for small CNNs on CPU; it is there for GPUs.
        self._step = tf.function(self._one_step, jit_compile=jit_compile, reduce_retracing=True)
        self._evaluate = tf.function(self._score, reduce_retracing=True)

    # -- hooks -------------------------------------------------------------------------------
    @property
    def iterations(self) -> int:
        return 1

    @property
    def step_size(self) -> float:
        return self.config.eps

    @property
    def restarts(self) -> int:
        return 1

    def loss(self, logits: tf.Tensor, labels: tf.Tensor, x_adv: tf.Tensor, x: tf.Tensor) -> tf.Tensor:
        """Per-sample loss to ascend: cross-entropy from the true class, or towards the target (negated)."""
        cross_entropy = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
        return -cross_entropy if self.config.targeted else cross_entropy

    def step(self, grad: tf.Tensor, x_adv: tf.Tensor, x: tf.Tensor) -> tf.Tensor:
        """The change to add to `x_adv`: `step_size` along the ball's steepest direction."""
        return self.step_size * self.ball.direction(grad)

    def project(self, x_adv: tf.Tensor, x: tf.Tensor) -> tf.Tensor:
        """Clip to the data range, then pull the perturbation back into the eps-ball (ART's order)."""
        if self.clip is not None:
            x_adv = tf.clip_by_value(x_adv, *self.clip)
        return x + self.ball.project(x_adv - x, self.config.eps)

    def initial(self, x: np.ndarray) -> np.ndarray:
        """Where each restart starts: the clean input."""
        return x

    # -- the loop ----------------------------------------------------------------------------
    def _one_step(self, x_adv: tf.Tensor, x: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            tape.watch(x_adv)
            loss = self.loss(self.logits(x_adv, training=False), labels, x_adv, x)
        grad = tape.gradient(loss, x_adv)  # of the sum: each sample's own gradient
        return self.project(x_adv + self.step(grad, x_adv, x), x)

    def _score(self, x_adv: tf.Tensor, x: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        logits = self.logits(x_adv, training=False)
        return self.loss(logits, labels, x_adv, x), tf.argmax(logits, axis=1, output_type=tf.int32)

    def _run(self, x_start: np.ndarray, x: tf.Tensor, labels: tf.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One restart: the adversarial batch, its per-sample loss and its predicted classes."""
        x_adv = tf.constant(x_start)
        for _ in range(self.iterations):
            x_adv = self._step(x_adv, x, labels)
        loss, pred = self._evaluate(x_adv, x, labels)
        return x_adv.numpy(), loss.numpy(), pred.numpy()

    def _attack_batch(self, x: np.ndarray, y: np.ndarray, target: np.ndarray | None) -> np.ndarray:
        labels = tf.constant(target if target is not None else y, dtype=tf.int32)
        x_tf = tf.constant(x)
        best_x, best_loss, best_success = x, np.full(len(x), -np.inf), np.zeros(len(x), dtype=bool)
        for _ in range(self.restarts):
            x_adv, loss, pred = self._run(self.initial(x), x_tf, labels)
            success = pred == target if target is not None else pred != y
            better = (success & ~best_success) | ((success == best_success) & (loss > best_loss))
            best_x = np.where(better.reshape((-1,) + (1,) * (x.ndim - 1)), x_adv, best_x)
            best_loss, best_success = np.where(better, loss, best_loss), success | best_success
        return best_x

    def generate(self, x: np.ndarray, y: np.ndarray, target: np.ndarray | None) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        target = targets_for(self.config, target, len(x))
        parts = [
            self._attack_batch(x[rows], y[rows], None if target is None else target[rows])
            for rows in (slice(start, start + self.batch_size) for start in range(0, len(x), self.batch_size))
        ]
        return np.concatenate(parts) if parts else x.copy()


class FGSM(GradientAttack):
    """One step of size eps (`FGSMConfig`)."""


class BIM(GradientAttack):
    """`max_iter` steps of size eps_step from the clean input (`BIMConfig`)."""

    config: BIMConfig

    @property
    def iterations(self) -> int:
        return self.config.max_iter

    @property
    def step_size(self) -> float:
        return self.config.eps_step


class PGD(BIM):
    """BIM from uniform random starts in the eps-ball, best of `num_random_init` restarts (`PGDConfig`)."""

    config: PGDConfig

    @property
    def restarts(self) -> int:
        return max(1, self.config.num_random_init)

    def initial(self, x: np.ndarray) -> np.ndarray:
        if self.config.num_random_init == 0:
            return x
        x_start = x + self.ball.sample(x.shape, self.config.eps).astype(np.float32)
        return np.clip(x_start, *self.clip) if self.clip is not None else x_start
