"""Training a victim: seeded, reproducible on CPU, with per-epoch macro F1 and AUC, resumable after any epoch."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import keras
import matplotlib.pyplot as plt
import tensorflow as tf
from matplotlib.figure import Figure

from medadv.data.base import Dataset
from medadv.errors import MedadvError
from medadv.metrics.classification import classification_scores
from medadv.models.resume import TrainingState


@dataclass(frozen=True, kw_only=True)
class FitConfig:
    epochs: int = 10
    batch_size: int = 32
    learning_rate: float = 1e-3
    seed: int = 0
    mixup_alpha: float = 0.0  # > 0: mixup augmentation (Zhang et al. 2018) with Beta(alpha, alpha); 0.2 is usual

    def validate(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or not self.learning_rate > 0:
            raise MedadvError(f"epochs and batch_size must be >= 1 and learning_rate > 0, got {self}")
        if self.mixup_alpha < 0:
            raise MedadvError(f"mixup_alpha must be >= 0, got {self.mixup_alpha}")


def seed_everything(seed: int) -> None:
    """Same seed, same weights: Python, NumPy and TF seeds plus deterministic TF kernels."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


class TrainingDiverged(MedadvError):
    """The loss became NaN or infinite: the run fails instead of registering a broken model."""


class StopOnDivergence(keras.callbacks.Callback):
    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        loss = (logs or {}).get("loss", 0.0)
        if not math.isfinite(loss):
            raise TrainingDiverged(f"training diverged at epoch {epoch + 1} (loss {loss}); lower the learning rate")


class ValidationScores(keras.callbacks.Callback):
    """Adds `val_macro_f1` and `val_auc` to each epoch's logs, computed on the whole validation set."""

    def __init__(self, validation: Dataset, batch_size: int) -> None:
        super().__init__()
        self.validation = validation
        self.batch_size = batch_size

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        if logs is None or len(self.validation) == 0:
            return
        probs = self.model.predict(self.validation.x, batch_size=self.batch_size, verbose=0)
        scores = classification_scores(self.validation.y, probs)
        logs["val_macro_f1"] = scores["macro_f1"]
        logs["val_auc"] = scores["auc"]


def fit_victim(
    model: keras.Model,
    train: Dataset,
    validation: Dataset,
    config: FitConfig,
    callbacks: list[keras.callbacks.Callback] | None = None,
    resume: TrainingState | None = None,
) -> keras.callbacks.History:
    """Compile with Adam + cross-entropy on the softmax output and fit; callbacks see the F1/AUC logs.

    Labels are one-hot so that mixup's soft labels and plain ones take the same loss. With `resume`, training
    goes on from its epoch with its variables; the returned history holds every epoch, the earlier ones too.
    """
    model.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate),
        loss="categorical_crossentropy",
        metrics=["accuracy"],
    )
    first_epoch = resume.epochs_done if resume else 0
    if resume:
        resume.restore(model)
    if first_epoch >= config.epochs:  # killed after its last epoch, before it registered: nothing left to fit
        history = keras.callbacks.History()
        history.history = {}
    else:
        history = model.fit(
            epoch_batches(train, config, first_epoch),
            shuffle=False,  # epoch_batches() shuffles, with the seed and the epoch
            steps_per_epoch=math.ceil(len(train) / config.batch_size),
            validation_data=batches(validation, config) if len(validation) else None,
            epochs=config.epochs,
            initial_epoch=first_epoch,
            callbacks=[StopOnDivergence(), ValidationScores(validation, config.batch_size), *(callbacks or [])],
            verbose=2,
        )
    if resume:
        new = history.history
        history.history = {key: resume.history.get(key, []) + new.get(key, []) for key in resume.history | new}
    return history


def batches(data: Dataset, config: FitConfig) -> tf.data.Dataset:
    """(x, one-hot y) batches in order."""
    pairs = tf.data.Dataset.from_tensor_slices((data.x, tf.one_hot(data.y, data.num_classes)))
    return pairs.batch(config.batch_size).prefetch(tf.data.AUTOTUNE)


def epoch_batches(data: Dataset, config: FitConfig, first_epoch: int = 0) -> tf.data.Dataset:
    """The training batches of epochs `first_epoch`..`config.epochs - 1`, one after the other.

    Each epoch's order (and its mixup draws) is a function of the seed and the epoch's number alone, not of the
    epochs before, so a training resumed at epoch k sees what an uninterrupted one sees there.
    """
    pairs = tf.data.Dataset.from_tensor_slices((data.x, tf.one_hot(data.y, data.num_classes)))
    steps = math.ceil(len(data) / config.batch_size)

    def one_epoch(epoch: int) -> tf.data.Dataset:
        shuffled = pairs.shuffle(len(data), seed=config.seed * 100_003 + epoch).batch(config.batch_size)
        if config.mixup_alpha <= 0:
            return shuffled

        def mixed(step: tf.Tensor, pair: tuple[tf.Tensor, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
            stream = tf.constant(epoch * steps, tf.int64) + step
            return mixup(*pair, config.mixup_alpha, seed=tf.stack([tf.constant(config.seed, tf.int64), stream]))

        return shuffled.enumerate().map(mixed)

    epochs = [one_epoch(epoch) for epoch in range(first_epoch, config.epochs)]
    return functools.reduce(tf.data.Dataset.concatenate, epochs).prefetch(tf.data.AUTOTUNE)


def mixup(
    x: tf.Tensor, y: tf.Tensor, alpha: float, seed: tf.Tensor | tuple[int, int] = (0, 0)
) -> tuple[tf.Tensor, tf.Tensor]:
    """x' = lam x + (1 - lam) x_rev, y' likewise (Zhang et al. 2018, eq. 1), with lam ~ Beta(alpha, alpha) drawn
    for each sample, as foe's `mixup_generator.py` does; stateless: the same `seed`, the same draws."""
    batch = tf.shape(x)[0]
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 2)
    a, b = (tf.random.stateless_gamma([batch], seed=seeds[i], alpha=alpha) for i in range(2))
    lam = a / (a + b)
    lam_x = tf.reshape(lam, tf.concat([[batch], tf.ones([tf.rank(x) - 1], tf.int32)], axis=0))
    lam_y = lam[:, tf.newaxis]
    return lam_x * x + (1 - lam_x) * tf.reverse(x, [0]), lam_y * y + (1 - lam_y) * tf.reverse(y, [0])


def learning_curves(history: keras.callbacks.History) -> Figure:
    """Loss and accuracy per epoch, training against validation."""
    figure, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for axis, metric in zip(axes, ("loss", "accuracy"), strict=True):
        for prefix, style in (("", "-"), ("val_", "--")):
            if prefix + metric in history.history:
                axis.plot(history.history[prefix + metric], style, label=prefix + metric)
        axis.set_xlabel("epoch")
        axis.set_title(metric)
        axis.legend()
    figure.tight_layout()
    return figure


def distribution_strategy() -> tf.distribute.Strategy:
    """MirroredStrategy across GPUs when there is more than one, the default strategy otherwise."""
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()
