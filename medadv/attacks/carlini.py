"""Carlini & Wagner's attacks (S&P 2017) as batched `tf.function` loops, and the pieces ECGadv shares with them.

C&W minimise `c * f6 + D` with Adam, f6 the logit margin with confidence kappa (eq. 6) and D a
distance, over a tanh-reparametrised input that stays in the data's box (sec. V-A). Which c to use
is searched per sample: for L2 by a binary search that stops early when the loss stalls (C&W's
`abort_early`), for L-inf by ART's schedule of growing c under a shrinking bound tau (sec. V-B).
ECGadv's Type I `l2` is the same optimisation without the tanh box (`medadv.attacks.ecgadv`), and
takes its margin, success test, Adam step and binary search from here.

Every sample of a batch runs each optimisation together; a sample that stopped early is frozen
(its gradient is still computed in the batch, so no per-sample Python loop), and the batch's loop
ends when all have stopped. `iterations_run` counts the batch iterations of the last `generate`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

import keras
import numpy as np
import tensorflow as tf

from medadv.attacks.base import Attack, AttackConfig, AttackError
from medadv.attacks.native import targets_for
from medadv.models import logits_model

ABORT_TOLERANCE = 0.9999  # a step stops when its loss is above 0.9999 x the loss at the previous check
UPPER_START = 1e10  # the binary search's "no upper bound yet"
UPPER_KNOWN = 1e9  # below this an upper bound on c has been found
ADAM_BETA1, ADAM_BETA2, ADAM_EPSILON = 0.9, 0.999, 1e-8  # TF1's AdamOptimizer defaults, as C&W's code
TANH_SMOOTHER = 0.999999  # ART's factor inside arctanh, so the box's own edges stay finite
LINF_CONVERGED = 0.001  # ART's C&W L-inf stops its Adam once the loss is below this
LINF_MIN_TAU = 1.0 / 256.0  # ART's C&W L-inf stops shrinking tau below this


@dataclass(frozen=True, kw_only=True)
class CarliniConfig(AttackConfig):
    """Shared settings of Carlini & Wagner's attacks (2017): Adam on the distance plus `const` times the margin
    loss f6 (eq. 6), which is satisfied once the logit margin exceeds `confidence` (the paper's kappa)."""

    confidence: float = 0.0
    learning_rate: float = 0.01
    max_iter: int = 10

    def validate(self, num_classes: int) -> None:
        super().validate(num_classes)
        if self.confidence < 0 or self.learning_rate <= 0 or self.max_iter < 1:
            raise AttackError(
                f"need confidence >= 0, learning_rate > 0 and max_iter >= 1, got {self.confidence}, "
                f"{self.learning_rate} and {self.max_iter}"
            )


@dataclass(frozen=True, kw_only=True)
class CWL2Config(CarliniConfig):
    """C&W L2 (Carlini & Wagner 2017, sec. V-A): minimal L2 perturbation in tanh space; the constant is found by
    `binary_search_steps` rounds of binary search from `initial_const`."""

    binary_search_steps: int = 10
    initial_const: float = 0.01

    def validate(self, num_classes: int) -> None:
        super().validate(num_classes)
        if self.binary_search_steps < 1 or self.initial_const <= 0:
            raise AttackError(
                f"need binary_search_steps >= 1 and initial_const > 0, got {self.binary_search_steps} "
                f"and {self.initial_const}"
            )


@dataclass(frozen=True, kw_only=True)
class CWLinfConfig(CarliniConfig):
    """C&W L-inf (Carlini & Wagner 2017, sec. V-B): shrinks the L-inf bound tau by `decrease_factor` while the
    attack still succeeds; the constant grows by `const_factor` from `initial_const` up to `largest_const`."""

    decrease_factor: float = 0.9
    initial_const: float = 1e-5
    largest_const: float = 20.0
    const_factor: float = 2.0

    def validate(self, num_classes: int) -> None:
        super().validate(num_classes)
        if not 0 < self.decrease_factor < 1 or self.const_factor <= 1:
            raise AttackError(
                f"need 0 < decrease_factor < 1 and const_factor > 1, got {self.decrease_factor} and {self.const_factor}"
            )
        if not 0 < self.initial_const <= self.largest_const:
            raise AttackError(
                f"need 0 < initial_const <= largest_const, got {self.initial_const} and {self.largest_const}"
            )


def per_sample(values: tf.Tensor, like: tf.Tensor) -> tf.Tensor:
    """`values` (n,) shaped to broadcast against `like` (n, ...)."""
    return tf.reshape(values, [-1] + [1] * (len(like.shape) - 1))


def cw_margin(logits: tf.Tensor, labels: tf.Tensor, kappa: float, targeted: bool = True) -> tf.Tensor:
    """C&W's f6 (eq. 6): max(0, max_{i != t} Z_i - Z_t + kappa) towards target t, or, untargeted,
    max(0, Z_y - max_{i != y} Z_i + kappa) away from the true class y."""
    is_label = tf.one_hot(labels, tf.shape(logits)[1], on_value=True, off_value=False)
    label = tf.reduce_max(tf.where(is_label, logits, -np.inf), axis=1)
    other = tf.reduce_max(tf.where(is_label, -np.inf, logits), axis=1)
    return tf.maximum(0.0, (other - label if targeted else label - other) + kappa)


def targeted_success(logits: tf.Tensor, target: tf.Tensor, kappa: float = 0.0) -> tf.Tensor:
    """The target wins by at least kappa: argmax(Z - kappa * onehot(t)) == t (C&W's `compare`)."""
    penalty = kappa * tf.one_hot(target, tf.shape(logits)[1])
    return tf.equal(tf.argmax(logits - penalty, axis=1, output_type=tf.int32), tf.cast(target, tf.int32))


def cw_success(logits: tf.Tensor, labels: tf.Tensor, kappa: float, targeted: bool) -> tf.Tensor:
    """Success by at least kappa: the target wins, or, untargeted, argmax(Z + kappa * onehot(y)) != y."""
    if targeted:
        return targeted_success(logits, labels, kappa)
    bonus = kappa * tf.one_hot(labels, tf.shape(logits)[1])
    return tf.not_equal(tf.argmax(logits + bonus, axis=1, output_type=tf.int32), tf.cast(labels, tf.int32))


def adam_step(
    value: tf.Tensor, m: tf.Tensor, v: tf.Tensor, grad: tf.Tensor, t: tf.Tensor, learning_rate: float
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """One Adam step (Kingma & Ba 2015, Algorithm 1, TF1's form) at per-sample step counts `t` (n,), from 1."""
    t = per_sample(tf.cast(t, value.dtype), value)
    m = ADAM_BETA1 * m + (1 - ADAM_BETA1) * grad
    v = ADAM_BETA2 * v + (1 - ADAM_BETA2) * tf.square(grad)
    rate = learning_rate * tf.sqrt(1 - ADAM_BETA2**t) / (1 - ADAM_BETA1**t)
    return value - rate * m / (tf.sqrt(v) + ADAM_EPSILON), m, v


def binary_search_update(
    c: np.ndarray, lower: np.ndarray, upper: np.ndarray, success: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Carlini & Wagner's update of c after a step: on success lower the upper bound to c, on failure
    raise the lower bound to c; then c is the bounds' midpoint, or 10 c while no upper bound is known."""
    upper = np.where(success, np.minimum(upper, c), upper)
    lower = np.where(success, lower, np.maximum(lower, c))
    midpoint = (lower + upper) / 2
    c = np.where(upper < UPPER_KNOWN, midpoint, np.where(success, c, c * 10))
    return c, lower, upper


def to_tanh(x: np.ndarray, low: float, high: float) -> np.ndarray:
    """x in [low, high] -> w with x = from_tanh(w) (ART's `original_to_tanh`)."""
    unit = (np.clip(x, low, high) - low) / (high - low)
    return np.arctanh((unit * 2 - 1) * TANH_SMOOTHER).astype(np.float32)


def from_tanh(w: tf.Tensor, low: tf.Tensor, high: tf.Tensor) -> tf.Tensor:
    """The box [low, high] reached through tanh: any w gives a valid input (C&W sec. V-A)."""
    return (tf.tanh(w) + 1) / 2 * (high - low) + low


def batch_slices(count: int, size: int) -> Iterator[slice]:
    """Consecutive slices of at most `size` rows covering `count` rows."""
    return (slice(start, start + size) for start in range(0, count, size))


class CarliniAttack(Attack):
    """The C&W optimisation shared by L2 and L-inf: Adam in tanh space on `c * f6 + distance`, per sample
    keeping the successful iterate of lowest `rank` (its size); subclasses search over c."""

    config: CarliniConfig
    stop_rule: ClassVar[str]  # "abort_early" (the loss stalled since the last check) or "converged"

    def __init__(
        self, model: keras.Model, config: CarliniConfig, clip_range: tuple[float, float], batch_size: int
    ) -> None:
        super().__init__(model, config, clip_range, batch_size)
        self.logits = logits_model(model)
        self.iterations_run = 0
        self._iterate = tf.function(self._iteration, reduce_retracing=True)

    def distance(self, x_adv: tf.Tensor, x: tf.Tensor, bound: tf.Tensor) -> tf.Tensor:
        """The distance term D per sample; `bound` is L-inf's tau."""
        raise NotImplementedError

    def rank(self, x_adv: tf.Tensor, x: tf.Tensor) -> tf.Tensor:
        """The size of a perturbation that a smaller successful one replaces."""
        raise NotImplementedError

    def generate(self, x: np.ndarray, y: np.ndarray, target: np.ndarray | None) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        target = targets_for(self.config, target, len(x))
        labels = np.asarray(y if target is None else target, dtype=np.int32)
        low, high = self.clip_range
        if not (math.isfinite(low) and math.isfinite(high)) and len(x):
            low, high = float(x.min()), float(x.max())  # as ART: the box of the data given
        if len(x) and not high > low:
            raise AttackError(f"C&W needs inputs spanning a range, got all values in [{low}, {high}]")
        self.iterations_run = 0
        parts = [self.attack_batch(x[rows], labels[rows], low, high) for rows in batch_slices(len(x), self.batch_size)]
        return np.concatenate(parts) if parts else x.copy()

    def attack_batch(self, x: np.ndarray, labels: np.ndarray, low: float, high: float) -> np.ndarray:
        """Adversarial versions of one batch."""
        raise NotImplementedError

    def optimise(
        self,
        x: np.ndarray,
        labels: np.ndarray,
        box: tuple[float, float],
        c: np.ndarray,
        bound: np.ndarray,
        best: dict[str, np.ndarray],
    ) -> np.ndarray:
        """Adam from the clean input for up to `max_iter` iterations; improves `best` ("rank", "x") in place and
        returns which samples succeeded at some iterate."""
        config = self.config
        zeros = np.zeros_like(x)
        fixed = {
            "x": x,
            "labels": labels,
            "c": c.astype(np.float32),
            "bound": bound.astype(np.float32),
            "low": np.float32(box[0]),
            "high": np.float32(box[1]),
        }
        state = {
            "w": to_tanh(x, *box),
            "m": zeros,
            "v": zeros,
            "prev": np.full(len(x), np.inf, dtype=np.float32),
            "stopped": np.zeros(len(x), dtype=bool),
            "found": np.zeros(len(x), dtype=bool),
            "best_rank": best["rank"].astype(np.float32),
            "best_x": best["x"],
        }
        every = max(config.max_iter // 10, 1)
        tensors = {name: tf.constant(value) for name, value in state.items()}
        constants = {name: tf.constant(value) for name, value in fixed.items()}
        for k in range(config.max_iter):
            check = tf.constant(k % every == 0)
            tensors = self._iterate(tensors, constants, tf.constant(k + 1, tf.float32), check)
            self.iterations_run += 1
            if k % every == every - 1 and bool(tf.reduce_all(tensors["stopped"])):
                break
        best["rank"], best["x"] = tensors["best_rank"].numpy(), tensors["best_x"].numpy()
        return np.asarray(tensors["found"].numpy())

    def _iteration(
        self, s: dict[str, tf.Tensor], fixed: dict[str, tf.Tensor], t: tf.Tensor, check: tf.Tensor
    ) -> dict[str, tf.Tensor]:
        config = self.config
        x = fixed["x"]
        with tf.GradientTape() as tape:
            tape.watch(s["w"])
            x_adv = from_tanh(s["w"], fixed["low"], fixed["high"])
            logits = self.logits(x_adv, training=False)
            margin = cw_margin(logits, fixed["labels"], config.confidence, config.targeted)
            loss = fixed["c"] * margin + self.distance(x_adv, x, fixed["bound"])
        grad = tape.gradient(loss, s["w"])  # of the sum: samples are independent, each gets its own gradient
        live = ~s["stopped"]
        if self.stop_rule == "abort_early":
            stopped = s["stopped"] | (check & (loss > ABORT_TOLERANCE * s["prev"]))
        else:
            stopped = s["stopped"] | ((t > 1) & (loss < LINF_CONVERGED))
        success = cw_success(logits, fixed["labels"], config.confidence, config.targeted) & live
        rank = self.rank(x_adv, x)
        better = success & (rank < s["best_rank"])
        w, m, v = adam_step(s["w"], s["m"], s["v"], grad, tf.fill(tf.shape(loss), t), config.learning_rate)
        moving = per_sample(~stopped, w)
        return {
            "w": tf.where(moving, w, s["w"]),
            "m": tf.where(moving, m, s["m"]),
            "v": tf.where(moving, v, s["v"]),
            "prev": tf.where(check & live, loss, s["prev"]),
            "stopped": stopped,
            "found": s["found"] | success,
            "best_rank": tf.where(better, rank, s["best_rank"]),
            "best_x": tf.where(per_sample(better, x_adv), x_adv, s["best_x"]),
        }


class CarliniL2(CarliniAttack):
    """C&W L2 (`CWL2Config`): D = ||x' - x||_2^2, `binary_search_steps` rounds of C&W's binary search over c from
    `initial_const`, each `max_iter` Adam iterations that stop once the loss stalls; samples never fooled come
    back unchanged."""

    config: CWL2Config
    stop_rule = "abort_early"

    def distance(self, x_adv: tf.Tensor, x: tf.Tensor, bound: tf.Tensor) -> tf.Tensor:
        return self.rank(x_adv, x)

    def rank(self, x_adv: tf.Tensor, x: tf.Tensor) -> tf.Tensor:
        return tf.reduce_sum(tf.square(x_adv - x), axis=list(range(1, len(x.shape))))

    def attack_batch(self, x: np.ndarray, labels: np.ndarray, low: float, high: float) -> np.ndarray:
        n = len(x)
        c, lower, upper = np.full(n, self.config.initial_const), np.zeros(n), np.full(n, UPPER_START)
        best = {"rank": np.full(n, np.inf), "x": x.copy()}
        for _ in range(self.config.binary_search_steps):
            found = self.optimise(x, labels, (low, high), c, np.zeros(n), best)
            c, lower, upper = binary_search_update(c, lower, upper, found)
        return np.asarray(best["x"])


class CarliniLinf(CarliniAttack):
    """C&W L-inf (`CWLinfConfig`), batched as ART runs it per sample: D = sum max(0, |x' - x| - tau); for each
    tau, c grows by `const_factor` from `initial_const` below `largest_const`, Adam stopping once the loss is
    below 0.001; a success with a smaller L-inf norm replaces the sample's result, and tau shrinks to that norm
    times `decrease_factor` while results improve (from tau = 1 down to 1/256)."""

    config: CWLinfConfig
    stop_rule = "converged"

    def distance(self, x_adv: tf.Tensor, x: tf.Tensor, bound: tf.Tensor) -> tf.Tensor:
        excess = tf.nn.relu(tf.abs(x_adv - x) - per_sample(bound, x))
        return tf.reduce_sum(excess, axis=list(range(1, len(x.shape))))

    def rank(self, x_adv: tf.Tensor, x: tf.Tensor) -> tf.Tensor:
        return tf.reduce_max(tf.abs(x_adv - x), axis=list(range(1, len(x.shape))))

    def constants(self) -> list[float]:
        """ART's schedule of c for each tau: initial_const x const_factor^j below largest_const."""
        config, values = self.config, []
        const = config.initial_const
        while const < config.largest_const:
            values.append(const)
            const *= config.const_factor
        return values

    def attack_batch(self, x: np.ndarray, labels: np.ndarray, low: float, high: float) -> np.ndarray:
        n = len(x)
        tau, done = np.ones(n), np.zeros(n, dtype=bool)
        result = {"rank": np.ones(n), "x": x.copy()}  # ART keeps a result only if its L-inf norm is below 1
        while (active := ~done & (tau > LINF_MIN_TAU)).any():
            rows = np.flatnonzero(active)
            before = result["rank"][rows].copy()
            for const in self.constants():
                best = {"rank": result["rank"][rows], "x": result["x"][rows]}
                self.optimise(x[rows], labels[rows], (low, high), np.full(len(rows), const), tau[rows], best)
                result["rank"][rows], result["x"][rows] = best["rank"], best["x"]
            improved = result["rank"][rows] < before
            done[rows] = ~improved
            actual = np.abs(result["x"][rows] - x[rows]).reshape(len(rows), -1).max(axis=1)
            tau[rows] = np.minimum(tau[rows], actual) * self.config.decrease_factor
        return np.asarray(result["x"])
