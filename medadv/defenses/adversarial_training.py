"""Adversarial training: the victim's architecture retrained so that it holds against adversarial inputs.

The result stays a victim (a clone of the victim's graph: logits layer -> softmax `probs`), trained from fresh
weights (as DeepCustom did) or fine-tuned from the victim's. The ways, sharing `AdversarialTrainingConfig`:

- `train_on_adversarial_data`: Goodfellow et al. (2015, eq. 6)'s mixed loss
  ratio * CE(f(x), y) + (1 - ratio) * CE(f(x_adv), y) on pre-generated pairs (x, x_adv), DeepCustom's
  DGN-robust training (any attack's output works);
- `train_gf`: DeepCustom's `gf` trainer for its FGSM / PGD robust models: that mixed loss on pairs that ART's
  FGSM or PGD crafted once against the victim;
- `train_with_art`: ART's `AdversarialTrainer` with FGSM or PGD, which replaces a (1 - ratio) share of each
  batch with adversarial samples, crafted once against the victim (DeepCustom's `default` trainer) or afresh
  each batch against the model in training;
- `train_with_online_pgd`: the mixed loss with PGD crafted afresh against the model in training for every
  batch (medadv's native fused PGD): the stronger baseline of Madry et al. (2018).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf
from art.defences.trainer import AdversarialTrainer

from medadv.attacks.art_attacks import ArtAttack, ArtBIM, ArtFGSM, ArtPGD, art_classifier
from medadv.attacks.native import PGD, BIMConfig, FGSMConfig, PGDConfig
from medadv.errors import MedadvError
from medadv.models import check_victim, logits_model
from medadv.models.resume import EpochRecord


class DefenseError(MedadvError):
    """Settings or data that adversarial training cannot use; raised before any training."""


@dataclass(frozen=True, kw_only=True)
class AdversarialTrainingConfig:
    """`ratio` weighs the clean loss (Goodfellow et al. 2015's alpha, 0.5); `from_scratch` starts from fresh
    weights instead of the victim's. The defaults are DeepCustom's MNIST settings (Adam, 10 epochs of 100)."""

    ratio: float = 0.5
    from_scratch: bool = True
    epochs: int = 10
    batch_size: int = 100
    learning_rate: float = 1e-3
    seed: int = 0

    def validate(self) -> None:
        if not 0 <= self.ratio <= 1:
            raise DefenseError(f"ratio must be in [0, 1], got {self.ratio}")
        if self.epochs < 1 or self.batch_size < 1 or not self.learning_rate > 0:
            raise DefenseError(
                f"need epochs, batch_size >= 1 and learning_rate > 0, got {self.epochs}, {self.batch_size}, "
                f"{self.learning_rate}"
            )


@dataclass(frozen=True)
class RobustTraining:
    """The adversarially trained victim and its mean training loss per epoch."""

    model: keras.Model
    losses: tuple[float, ...]


def initial_model(victim: keras.Model, from_scratch: bool, seed: int) -> keras.Model:
    """A copy of the victim's graph (same layer names, so still a victim), fresh or with the victim's weights.

    Seeds Python, NumPy and TensorFlow, which also fixes the numpy draws of PGD's random starts and of ART's
    trainer (shuffling, which samples to replace) that follow.
    """
    check_victim(victim)
    keras.utils.set_random_seed(seed)
    model = keras.models.clone_model(victim)
    if not from_scratch:
        model.set_weights(victim.get_weights())
    return model


def _check_data(
    victim: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    config: AdversarialTrainingConfig,
    attack: FGSMConfig | None = None,
) -> None:
    config.validate()
    check_victim(victim, tuple(x.shape[1:]))
    num_classes = int(victim.output_shape[-1])
    if attack is not None:
        attack.validate(num_classes)
        if attack.targeted:
            raise DefenseError("adversarial training crafts untargeted attacks; leave target unset")
    if len(x) != len(y) or len(x) == 0:
        raise DefenseError(f"need as many labels as samples, and some samples; got {len(x)} and {len(y)}")
    if y.min() < 0 or y.max() >= num_classes:
        raise DefenseError(f"labels must be class indices in 0..{num_classes - 1}, got {y.min()}..{y.max()}")


def _cross_entropy(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    return tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))


def _training_step(
    model: keras.Model, optimizer: keras.optimizers.Optimizer, loss: Callable[..., tf.Tensor]
) -> Callable[..., tf.Tensor]:
    """One traced `optimizer` step on `model`'s weights that minimises `loss(*batch)` and returns it."""

    def step(*batch: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            value = loss(*batch)
        grads = tape.gradient(value, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return value

    return tf.function(step, reduce_retracing=True)


# Crafts the adversarial half of a batch: (indices into the training set, x batch, y batch) -> x_adv batch.
AdversarialBatch = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def _train_mixed_loss(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    config: AdversarialTrainingConfig,
    adversarial_batch: AdversarialBatch,
    record: EpochRecord | None = None,
) -> RobustTraining:
    """The one mixed-loss loop: per shuffled batch, ratio * CE(f(x), y) + (1 - ratio) * CE(f(x_adv), y).

    `record` takes each finished epoch's state (to checkpoint) and gives back the one to resume from."""
    logits = logits_model(model)

    def mixed_loss(x_batch: tf.Tensor, x_adv: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
        clean = _cross_entropy(labels, logits(x_batch, training=True))
        adversarial = _cross_entropy(labels, logits(x_adv, training=True))
        return config.ratio * clean + (1.0 - config.ratio) * adversarial

    optimizer = keras.optimizers.Adam(config.learning_rate)
    step = _training_step(logits, optimizer, mixed_loss)
    rng = np.random.default_rng(config.seed)
    record = record or EpochRecord()
    for epoch in range(record.first_epoch(model, optimizer, rng), config.epochs):
        order = rng.permutation(len(x))
        values = []
        for start in range(0, len(x), config.batch_size):
            index = order[start : start + config.batch_size]
            x_adv = adversarial_batch(index, x[index], y[index])
            values.append(float(step(tf.constant(x[index]), tf.constant(x_adv), tf.constant(y[index]))))
        record.end_epoch(epoch, model, {"loss": float(np.mean(values))}, optimizer, rng)
    return RobustTraining(model, record.losses)


def train_on_adversarial_data(
    victim: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    x_adv: np.ndarray,
    config: AdversarialTrainingConfig,
    record: EpochRecord | None = None,
) -> RobustTraining:
    """Goodfellow's mixed loss on pre-generated pairs: `x_adv[i]` is the adversarial version of `x[i]`."""
    _check_data(victim, x, y, config)
    if x_adv.shape != x.shape:
        raise DefenseError(f"x_adv must pair with x sample by sample: shapes {x_adv.shape} and {x.shape}")
    x, x_adv = np.asarray(x, np.float32), np.asarray(x_adv, np.float32)
    model = initial_model(victim, config.from_scratch, config.seed)
    return _train_mixed_loss(model, x, y, config, lambda index, _x, _y: x_adv[index], record)


def train_with_online_pgd(
    victim: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    attack: PGDConfig,
    clip_range: tuple[float, float],
    config: AdversarialTrainingConfig,
    record: EpochRecord | None = None,
) -> RobustTraining:
    """The mixed loss with fresh PGD (`attack`'s settings) against the model in training, every batch."""
    _check_data(victim, x, y, config, attack)
    x = np.asarray(x, np.float32)
    model = initial_model(victim, config.from_scratch, config.seed)
    pgd = PGD(model, attack, clip_range, config.batch_size)  # shares the model's weights as they train
    return _train_mixed_loss(
        model, x, y, config, lambda _index, x_batch, y_batch: pgd.generate(x_batch, y_batch, None), record
    )


def _art_attack(model: keras.Model, attack: FGSMConfig, clip_range: tuple[float, float], batch_size: int) -> ArtAttack:
    """ART's FGSM, BIM or PGD on `model`, chosen by the type of `attack`."""
    if isinstance(attack, PGDConfig):
        return ArtPGD(model, attack, clip_range, batch_size)
    if isinstance(attack, BIMConfig):
        return ArtBIM(model, attack, clip_range, batch_size)
    return ArtFGSM(model, attack, clip_range, batch_size)


def train_gf(
    victim: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    attack: FGSMConfig,
    clip_range: tuple[float, float],
    config: AdversarialTrainingConfig,
    record: EpochRecord | None = None,
) -> RobustTraining:
    """DeepCustom's `gf` trainer (`OtherAttacks/AdversarialTrainerGF.py`, `config.json`): ART's FGSM or PGD crafts
    the training set's adversarial pairs once against the victim, labelled by the victim's predictions as the
    study called it (no labels), then Goodfellow's mixed loss trains on the pairs."""
    _check_data(victim, x, y, config, attack)
    x = np.asarray(x, np.float32)
    keras.utils.set_random_seed(config.seed)  # PGD's random starts
    crafter = _art_attack(victim, attack, clip_range, config.batch_size)
    x_adv = np.asarray(crafter.art.generate(x), np.float32)  # the same again on a resume: seeded
    return train_on_adversarial_data(victim, x, y, x_adv, config, record)


def train_with_art(
    victim: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    attack: FGSMConfig,
    clip_range: tuple[float, float],
    config: AdversarialTrainingConfig,
    record: EpochRecord | None = None,
    *,
    transfer: bool = True,
) -> RobustTraining:
    """ART's `AdversarialTrainer` with FGSM (`FGSMConfig`) or PGD (`PGDConfig`); a (1 - ratio) share of each
    batch is replaced by adversarial samples. `transfer`: crafted once against the victim (DeepCustom's
    setting); otherwise crafted afresh against the model in training.

    ART runs all epochs in one call and carries its shuffled order from epoch to epoch, so a resume replays
    ART's loop from the seed with the finished epochs' training steps skipped (ART's draws, and so the order of
    later epochs, come out as before), the resumed weights and optimizer in place."""
    _check_data(victim, x, y, config, attack)
    if config.ratio == 1:
        raise DefenseError("ratio 1 leaves no adversarial samples in the batches; use a ratio below 1")
    x = np.asarray(x, np.float32)
    model = initial_model(victim, config.from_scratch, config.seed)
    crafter = _art_attack(victim if transfer else model, attack, clip_range, config.batch_size)
    classifier = art_classifier(model, clip_range) if transfer else crafter.classifier

    trained = classifier.model  # the logits of `model`, sharing its weights
    optimizer = keras.optimizers.Adam(config.learning_rate)
    compiled_step = _training_step(
        trained, optimizer, lambda images, labels: _cross_entropy(labels, trained(images, training=True))
    )
    record = record or EpochRecord()
    if record.resumed is not None:
        record.resumed.restore(model, optimizer)  # not the random generators: the replay draws as before
    batches_per_epoch = math.ceil(len(x) / config.batch_size)  # as ART's loop counts them
    skipped = record.resumed.epochs_done * batches_per_epoch if record.resumed else 0
    batch_losses: list[float] = []

    def train_step(_model: object, images: tf.Tensor, labels: tf.Tensor) -> None:
        # ART calls this once per batch; one traced step serves all of them, and each epoch is recorded.
        nonlocal skipped
        if skipped:
            skipped -= 1
            return
        batch_losses.append(float(compiled_step(images, labels)))
        if len(batch_losses) == batches_per_epoch:
            record.end_epoch(len(record.losses), model, {"loss": float(np.mean(batch_losses))}, optimizer)
            batch_losses.clear()

    classifier.set_params(train_step=train_step)
    trainer = AdversarialTrainer(classifier, attacks=crafter.art, ratio=1.0 - config.ratio)
    trainer.fit(x, np.asarray(y), batch_size=config.batch_size, nb_epochs=config.epochs)
    return RobustTraining(model, record.losses)


RobustTrainer = Callable[
    [
        keras.Model, np.ndarray, np.ndarray, FGSMConfig, tuple[float, float], AdversarialTrainingConfig,
        EpochRecord | None,
    ],
    RobustTraining,
]  # fmt: skip
# robust trainer name -> how FGSM / PGD robust models are trained
TRAINERS: dict[str, RobustTrainer] = {"gf": train_gf, "art": train_with_art}
