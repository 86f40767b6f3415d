"""DeepCustom's attack ("Fast and Customizable Adversarial Data Generation Using Convolutional Autoencoders"): one
CAE generator per class turns a sample into an adversarial one in a single forward pass, clipped to the L-inf
eps-ball around the sample and to the data range.

`train_generator` trains the generator of one class on that class's samples only, with one of the losses of
`medadv.attacks.dgn_losses`; `generate` applies a set of trained generators, each sample going through its
true class's generator; `DGNAttack` is the same behind medadv's `Attack` interface.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import keras
import numpy as np
import tensorflow as tf

from medadv.attacks.base import Attack, AttackConfig, AttackError
from medadv.attacks.dgn_losses import (
    RELEVANCE_RULES,
    SUSPICIOUSNESS_FORMS,
    GeneratorLoss,
    LRPLoss,
    NCELoss,
    SuspiciousnessLoss,
    class_relevance,
    suspiciousness,
)
from medadv.models import check_victim
from medadv.models.cae import build_generator
from medadv.models.resume import EpochRecord

LOSSES = ("lrp", "nce", "suspiciousness")
# The study's L-inf budget per data set.
DEFAULT_EPS = {"mnist": 0.3, "cifar10": 8 / 255}


@dataclass(frozen=True, kw_only=True)
class GeneratorConfig:
    """How to train one class's generator; the defaults are the study's MNIST settings.

    `alpha` is the study's `custom_loss_constant`; `eps` shifts the lrp loss's targets (and is the budget the
    generators are meant for); `top_k` is the number of relevant pixels (lrp) or suspicious units
    (suspiciousness); `spectra_class` computes the hit spectra on that one class for every generator, as the
    study's code did (None: each generator's own class); `suspiciousness_form` picks the study's or medadv's
    uniform suspiciousness loss (see `SuspiciousnessLoss`); `lrp_epsilon` is the LRP epsilon rule's stabiliser.
    Adam at a constant rate, as the study ran: its config names a decay (0.9 every 1000 steps) whose step counter
    its optimiser never advanced; `decay_rate` < 1 applies that staircase decay.
    """

    loss: str = "lrp"
    eps: float = 0.3
    alpha: float = 0.5
    top_k: int = 20
    relevance_rule: str = "epsilon"
    lrp_epsilon: float = 1e-2
    spectra_class: int | None = None
    suspiciousness_form: str = "study"
    epochs: int = 150
    batch_size: int = 100
    learning_rate: float = 1e-4
    decay_steps: int = 1000
    decay_rate: float = 1.0
    seed: int = 0

    def validate(self, num_classes: int) -> None:
        if self.loss not in LOSSES:
            raise AttackError(f"unknown generator loss {self.loss!r}; choose one of {', '.join(LOSSES)}")
        if self.suspiciousness_form not in SUSPICIOUSNESS_FORMS:
            raise AttackError(
                f"unknown suspiciousness form {self.suspiciousness_form!r}; choose one of {SUSPICIOUSNESS_FORMS}"
            )
        if self.relevance_rule not in RELEVANCE_RULES:
            raise AttackError(f"unknown relevance rule {self.relevance_rule!r}; choose one of {RELEVANCE_RULES}")
        if not (math.isfinite(self.eps) and self.eps > 0) or not 0 <= self.alpha <= 1 or self.top_k < 1:
            raise AttackError(
                f"need eps > 0, 0 <= alpha <= 1 and top_k >= 1, got {self.eps}, {self.alpha}, {self.top_k}"
            )
        if self.epochs < 1 or self.batch_size < 1 or not self.learning_rate > 0 or self.lrp_epsilon < 0:
            raise AttackError(
                "need epochs, batch_size >= 1, learning_rate > 0 and lrp_epsilon >= 0, got "
                f"{self.epochs}, {self.batch_size}, {self.learning_rate}, {self.lrp_epsilon}"
            )
        if self.decay_steps < 1 or not 0 < self.decay_rate <= 1:
            raise AttackError(
                f"need decay_steps >= 1 and 0 < decay_rate <= 1, got {self.decay_steps}, {self.decay_rate}"
            )
        if self.spectra_class is not None and not 0 <= self.spectra_class < num_classes:
            raise AttackError(f"spectra_class {self.spectra_class} is out of range for {num_classes} classes")


@dataclass(frozen=True)
class TrainedGenerator:
    """One class's generator, its mean training loss per epoch, and what its loss was built from (to log)."""

    class_index: int
    model: keras.Model
    losses: tuple[float, ...]
    details: dict[str, np.ndarray] = field(default_factory=dict)


def make_loss(
    victim: keras.Model, x: np.ndarray, y: np.ndarray, class_index: int, config: GeneratorConfig
) -> GeneratorLoss:
    """The loss of `class_index`'s generator, with relevance or hit spectra computed on the samples (x, y)."""
    if config.loss == "nce":
        return NCELoss(victim, class_index)
    if config.loss == "lrp":
        relevance = class_relevance(
            victim,
            x[y == class_index],
            class_index,
            config.top_k,
            rule=config.relevance_rule,
            epsilon=config.lrp_epsilon,
        )
        return LRPLoss(relevance, config.eps, config.alpha)
    spectra_class = class_index if config.spectra_class is None else config.spectra_class
    units = suspiciousness(victim, x[y == spectra_class], spectra_class, config.top_k)
    return SuspiciousnessLoss(victim, units, config.alpha, config.suspiciousness_form)


def generator_optimizer(config: GeneratorConfig) -> keras.optimizers.Optimizer:
    """Adam at `learning_rate`, multiplied by `decay_rate` every `decay_steps` steps (constant at rate 1)."""
    schedule = keras.optimizers.schedules.ExponentialDecay(
        config.learning_rate, config.decay_steps, config.decay_rate, staircase=True
    )
    return keras.optimizers.Adam(schedule)


def train_generator(
    victim: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    class_index: int,
    config: GeneratorConfig,
    clip_range: tuple[float, float] = (0.0, 1.0),
    record: EpochRecord | None = None,
) -> TrainedGenerator:
    """Train `class_index`'s generator on that class's samples of (x, y), which also feed its loss; `record`
    takes each finished epoch's state (to checkpoint) and gives back the one to resume from."""
    check_victim(victim, tuple(x.shape[1:]))
    num_classes = int(victim.output_shape[-1])
    config.validate(num_classes)
    if len(x) != len(y):
        raise AttackError(f"x and y disagree in length ({len(x)} and {len(y)})")
    if not 0 <= class_index < num_classes:
        raise AttackError(f"class {class_index} is out of range for a victim with {num_classes} classes")
    x_class = np.asarray(x[y == class_index], dtype=np.float32)
    if len(x_class) == 0:
        raise AttackError(f"no samples of class {class_index} to train its generator on")
    loss = make_loss(victim, x, y, class_index, config)

    keras.utils.set_random_seed(config.seed + class_index)
    generator = build_generator(tuple(x.shape[1:]), clip_range, name=f"dgn_{config.loss}_class{class_index}")
    optimizer = generator_optimizer(config)

    def train_step(batch: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            value = loss(batch, generator(batch, training=True))
        grads = tape.gradient(value, generator.trainable_variables)
        optimizer.apply_gradients(zip(grads, generator.trainable_variables, strict=True))
        return value

    # Tracing costs about as much as a dozen eager steps: only runs longer than that are traced.
    num_batches = math.ceil(len(x_class) / config.batch_size)
    step = tf.function(train_step, reduce_retracing=True) if config.epochs * num_batches > 12 else train_step
    rng = np.random.default_rng(config.seed + class_index)
    record = record or EpochRecord()
    for epoch in range(record.first_epoch(generator, optimizer, rng), config.epochs):
        order = rng.permutation(len(x_class))
        batches = [order[i : i + config.batch_size] for i in range(0, len(order), config.batch_size)]
        values = [float(step(tf.constant(x_class[index]))) for index in batches]
        record.end_epoch(epoch, generator, {"loss": float(np.mean(values))}, optimizer, rng)
    return TrainedGenerator(class_index, generator, record.losses, loss.details())


def train_generators(
    victim: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    config: GeneratorConfig,
    clip_range: tuple[float, float] = (0.0, 1.0),
) -> dict[int, TrainedGenerator]:
    """One generator per class present in `y`."""
    return {int(c): train_generator(victim, x, y, int(c), config, clip_range) for c in np.unique(y)}


def eps_ball_clip(x: np.ndarray, g: np.ndarray, eps: float, clip_range: tuple[float, float]) -> np.ndarray:
    """`g` clipped into the L-inf ball of radius `eps` around `x`, then into the data range.

    Exact in float32: |x_adv - x| <= eps holds when computed in float32. (x + eps can round to a float whose
    distance from x exceeds eps; such a bound steps one float inwards.)
    """
    x = np.asarray(x, dtype=np.float32)
    eps32 = np.float32(eps)
    upper = x + eps32
    upper = np.where(upper - x > eps32, np.nextafter(upper, np.float32(-np.inf)), upper)
    lower = x - eps32
    lower = np.where(x - lower > eps32, np.nextafter(lower, np.float32(np.inf)), lower)
    x_adv = np.clip(np.asarray(g, dtype=np.float32), lower, upper)
    return np.clip(x_adv, *clip_range).astype(np.float32)


def _predict(model: keras.Model, x: np.ndarray, batch_size: int) -> np.ndarray:
    """The model's outputs in inference mode, batch by batch, through Keras's traced predict step (cached on the
    model, so a generator is traced once however often it is applied)."""
    parts = [np.asarray(model.predict_on_batch(x[i : i + batch_size])) for i in range(0, len(x), batch_size)]
    return np.concatenate(parts)


def generate(
    generators: Mapping[int, keras.Model],
    x: np.ndarray,
    y: np.ndarray,
    *,
    eps: float,
    clip_range: tuple[float, float],
    batch_size: int = 256,
    victim: keras.Model | None = None,
) -> np.ndarray:
    """Adversarial versions of `x`: each sample through its true class's generator, clipped by `eps_ball_clip`.

    With `victim`, the misclassification check: samples whose prediction the perturbation does not change are
    returned unperturbed.
    """
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y)
    if len(x) != len(y):
        raise AttackError(f"x and y disagree in length ({len(x)} and {len(y)})")
    missing = sorted(set(np.unique(y).tolist()) - set(generators))
    if missing:
        raise AttackError(f"no generator for class(es) {missing}; generators exist for {sorted(generators)}")
    x_adv = x.copy()
    for class_index in np.unique(y):
        index = np.flatnonzero(y == class_index)
        generated = _predict(generators[int(class_index)], x[index], batch_size)
        x_adv[index] = eps_ball_clip(x[index], generated, eps, clip_range)
    if victim is not None:
        unchanged = _predict(victim, x_adv, batch_size).argmax(1) == _predict(victim, x, batch_size).argmax(1)
        x_adv[unchanged] = x[unchanged]
    return x_adv


@dataclass(frozen=True, kw_only=True)
class DGNConfig(AttackConfig):
    """Generation with trained per-class generators (untargeted): `eps` is the L-inf budget (0.3 MNIST, 8/255
    CIFAR in the study); `misclassified_only` leaves unperturbed the samples whose prediction does not change."""

    eps: float = 0.3
    misclassified_only: bool = False

    def validate(self, num_classes: int) -> None:
        super().validate(num_classes)
        if self.targeted:
            raise AttackError("the DGN attack is untargeted only; leave target unset")
        if not (math.isfinite(self.eps) and self.eps > 0):
            raise AttackError(f"eps must be a finite number > 0, got {self.eps}")


class DGNAttack(Attack):
    """DeepCustom's generators behind the `Attack` interface; `generators` maps class index -> generator."""

    config: DGNConfig

    def __init__(
        self,
        model: keras.Model,
        config: DGNConfig,
        clip_range: tuple[float, float],
        batch_size: int,
        *,
        generators: Mapping[int, keras.Model],
    ) -> None:
        super().__init__(model, config, clip_range, batch_size)
        check_victim(model)
        config.validate(int(model.output_shape[-1]))
        if not generators:
            raise AttackError("the DGN attack needs trained generators (class index -> model); none were given")
        for class_index, generator in generators.items():
            if tuple(generator.input_shape[1:]) != tuple(model.input_shape[1:]):
                raise AttackError(
                    f"the generator of class {class_index} takes {generator.input_shape[1:]}, the victim "
                    f"{model.input_shape[1:]}"
                )
        self.generators = dict(generators)

    def generate(self, x: np.ndarray, y: np.ndarray, target: np.ndarray | None) -> np.ndarray:
        return generate(
            self.generators,
            x,
            y,
            eps=self.config.eps,
            clip_range=self.clip_range,
            batch_size=self.batch_size,
            victim=self.model if self.config.misclassified_only else None,
        )
