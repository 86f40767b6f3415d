"""Training a victim: seeded, reproducible on CPU, with per-epoch macro F1 and AUC."""

from __future__ import annotations

import math
from dataclasses import dataclass

import keras
import matplotlib.pyplot as plt
import tensorflow as tf
from matplotlib.figure import Figure

from medadv.data.base import Dataset
from medadv.metrics.classification import classification_scores


@dataclass(frozen=True, kw_only=True)
class FitConfig:
    epochs: int = 10
    batch_size: int = 32
    learning_rate: float = 1e-3
    seed: int = 0

    def validate(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or not self.learning_rate > 0:
            raise ValueError(f"epochs and batch_size must be >= 1 and learning_rate > 0, got {self}")


def seed_everything(seed: int) -> None:
    """Same seed, same weights: Python, NumPy and TF seeds plus deterministic TF kernels."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


class TrainingDiverged(ValueError):
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
    """Compile with Adam + cross-entropy on the softmax output and fit; callbacks see the F1/AUC logs."""
    model.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model.fit(
        train.x,
        train.y,
        validation_data=(validation.x, validation.y) if len(validation) else None,
        epochs=config.epochs,
        batch_size=config.batch_size,
        shuffle=True,
        callbacks=[StopOnDivergence(), ValidationScores(validation, config.batch_size), *(callbacks or [])],
        verbose=2,
    )


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
