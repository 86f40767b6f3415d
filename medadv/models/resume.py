"""Where a training stands after each epoch (`TrainingState`), and the one way every training loop hands that
state out to be checkpointed and takes it back to resume (`EpochRecord`; `EpochState` for Keras's `fit`): the
victim's fit, the robust trainers and the CAE generators'. Light (no data, metrics or attacks), so any of them
can import it."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from medadv.errors import MedadvError


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
