"""Training a victim: seeded, reproducible on CPU, with per-epoch macro F1 and AUC, resumable after any epoch."""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import matplotlib.pyplot as plt
import numpy as np
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


@dataclass(frozen=True)
class TrainingState:
    """Where a training stands after `epochs_done` epochs: every variable of the model (its weights and its
    dropout layers' seed states) and of its optimizer, the epochs' logs, and the states of the random generators
    its loop draws from (numpy's global one, which PGD's random starts and ART use, and the loop's own shuffling
    generator, as JSON). Enough to go on as if never stopped."""

    epochs_done: int
    model_variables: list[np.ndarray]
    optimizer_variables: list[np.ndarray]
    history: dict[str, list[float]]
    random_state: str = ""

    @classmethod
    def of(
        cls,
        model: keras.Model,
        epochs_done: int,
        history: dict[str, list[float]],
        optimizer: keras.optimizers.Optimizer | None = None,
        rng: np.random.Generator | None = None,
    ) -> TrainingState:
        """The state of `model` trained by `optimizer` (its compiled one by default), drawing from `rng`."""
        optimizer = optimizer or model.optimizer
        numpy_global = np.random.get_state(legacy=False)
        numpy_global["state"]["key"] = numpy_global["state"]["key"].tolist()
        random_state = {"numpy": numpy_global, "loop": rng.bit_generator.state if rng else None}
        return cls(
            epochs_done,
            [np.asarray(v) for v in model.variables],
            [np.asarray(v) for v in optimizer.variables],
            {key: list(values) for key, values in history.items()},
            json.dumps(random_state),
        )

    def save(self, path: Path) -> Path:
        """One uncompressed `.npz` (plain arrays, read back without pickle)."""
        arrays: dict[str, Any] = {"epochs_done": np.array(self.epochs_done)}  # Any: as in medmnist.write_synthetic
        arrays |= {f"model_{i:04d}": value for i, value in enumerate(self.model_variables)}
        arrays |= {f"optimizer_{i:04d}": value for i, value in enumerate(self.optimizer_variables)}
        arrays |= {f"history_{key}": np.array(values, np.float64) for key, values in self.history.items()}
        arrays["random_state"] = np.array(self.random_state)
        np.savez(path, **arrays)
        return path

    @classmethod
    def load(cls, path: Path) -> TrainingState:
        with np.load(path, allow_pickle=False) as data:
            names = sorted(data.files)
            return cls(
                int(data["epochs_done"]),
                [data[name] for name in names if name.startswith("model_")],
                [data[name] for name in names if name.startswith("optimizer_")],
                {name.removeprefix("history_"): data[name].tolist() for name in names if name.startswith("history_")},
                str(data["random_state"]) if "random_state" in names else "",
            )

    def restore(self, model: keras.Model, optimizer: keras.optimizers.Optimizer | None = None) -> None:
        """Put the saved variables back into `model` and `optimizer` (its compiled one by default; built here)."""
        optimizer = optimizer or model.optimizer
        optimizer.build(model.trainable_variables)
        for kind, variables, values in (
            ("model", model.variables, self.model_variables),
            ("optimizer", optimizer.variables, self.optimizer_variables),
        ):
            shapes = [tuple(v.shape) for v in variables]
            if shapes != [value.shape for value in values]:
                raise MedadvError(f"the checkpoint's {kind} variables do not match this model's: not the same training")
            for variable, value in zip(variables, values, strict=True):
                variable.assign(value)

    def restore_random(self, rng: np.random.Generator | None = None) -> None:
        """Put numpy's global generator, and `rng` (the loop's own), back where they stood."""
        if not self.random_state:
            return  # a checkpoint from before random states were kept
        saved = json.loads(self.random_state)
        saved["numpy"]["state"]["key"] = np.array(saved["numpy"]["state"]["key"], np.uint32)
        np.random.set_state(saved["numpy"])
        if rng is not None and saved["loop"] is not None:
            rng.bit_generator.state = saved["loop"]


class EpochRecord:
    """The epochs' logs so far and, after each finished epoch, the training state handed to `save`: the one
    checkpointing of every training loop, Keras's `fit` (through `EpochState`) and the hand-written ones."""

    def __init__(
        self, save: Callable[[TrainingState], None] | None = None, resumed: TrainingState | None = None
    ) -> None:
        self.save = save
        self.resumed = resumed
        self.history = {key: list(values) for key, values in (resumed.history if resumed else {}).items()}

    def first_epoch(
        self, model: keras.Model, optimizer: keras.optimizers.Optimizer, rng: np.random.Generator | None = None
    ) -> int:
        """The epoch to start at, with the resumed state (if any) put back into the model, optimizer and generators."""
        if self.resumed is None:
            return 0
        self.resumed.restore(model, optimizer)
        self.resumed.restore_random(rng)
        return self.resumed.epochs_done

    def end_epoch(
        self,
        epoch: int,
        model: keras.Model,
        logs: dict[str, float],
        optimizer: keras.optimizers.Optimizer | None = None,
        rng: np.random.Generator | None = None,
    ) -> None:
        for key, value in logs.items():
            self.history.setdefault(key, []).append(float(value))
        if self.save is not None:
            self.save(TrainingState.of(model, epoch + 1, self.history, optimizer, rng))

    @property
    def losses(self) -> tuple[float, ...]:
        return tuple(self.history.get("loss", ()))


class EpochState(keras.callbacks.Callback):
    """Keras's `fit` hands its state to `record` after every finished epoch, before later callbacks log it."""

    def __init__(self, record: EpochRecord) -> None:
        super().__init__()
        self.record = record

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        self.record.end_epoch(epoch, self.model, logs or {})


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
