"""Training a victim: seeded, reproducible on CPU, with per-epoch macro F1 and AUC."""

from __future__ import annotations

import math
from dataclasses import dataclass

import keras
import matplotlib.pyplot as plt
import tensorflow as tf
from matplotlib.figure import Figure

from medadv.data.base import Dataset
from medadv.errors import MedadvError
from medadv.metrics.classification import classification_scores


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
) -> keras.callbacks.History:
    """Compile with Adam + cross-entropy on the softmax output and fit; callbacks see the F1/AUC logs.

    Labels are one-hot so that mixup's soft labels and plain ones take the same loss.
    """
    model.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate),
        loss="categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model.fit(
        batches(train, config, shuffle=True, mixup_alpha=config.mixup_alpha),
        shuffle=False,  # batches() already shuffles, with the seed
        validation_data=batches(validation, config) if len(validation) else None,
        epochs=config.epochs,
        callbacks=[StopOnDivergence(), ValidationScores(validation, config.batch_size), *(callbacks or [])],
        verbose=2,
    )


def batches(data: Dataset, config: FitConfig, shuffle: bool = False, mixup_alpha: float = 0.0) -> tf.data.Dataset:
    """(x, one-hot y) batches; with `mixup_alpha`, each batch is mixed with itself reversed."""
    dataset = tf.data.Dataset.from_tensor_slices((data.x, tf.one_hot(data.y, data.num_classes)))
    if shuffle:
        dataset = dataset.shuffle(len(data), seed=config.seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(config.batch_size)
    if mixup_alpha > 0:
        dataset = dataset.map(lambda x, y: mixup(x, y, mixup_alpha))
    return dataset.prefetch(tf.data.AUTOTUNE)


def mixup(x: tf.Tensor, y: tf.Tensor, alpha: float) -> tuple[tf.Tensor, tf.Tensor]:
    """x' = lam x + (1 - lam) x_rev, y' likewise (Zhang et al. 2018, eq. 1), with lam ~ Beta(alpha, alpha) drawn
    for each sample, as foe's `mixup_generator.py` does."""
    batch = tf.shape(x)[0]
    a, b = tf.random.gamma([batch], alpha), tf.random.gamma([batch], alpha)
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
