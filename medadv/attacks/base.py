"""What every attack is: typed settings, and a batch of inputs in, a batch of adversarial inputs out.

Batching, timing, predictions, resumption and logging live in one place outside the attacks
(`medadv.attacks.runner` and `medadv.tracking`), so an attack only implements `generate`. A family
that evaluates more after the attack (ECGadv Type II's universal evaluation) reads an `AttackRun`
and returns `Extras`, plain data the attack job logs without knowing the family.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import keras
import numpy as np

from medadv.errors import MedadvError
from medadv.models import check_victim

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from medadv.attacks.result import AttackResult
    from medadv.data.base import Dataset


class AttackError(MedadvError):
    """Settings that make no sense for this attack, model or data; raised before any compute."""


@dataclass(frozen=True)
class Victim:
    """A model checked once (`Victim.checked`) against the victim contract on inputs of `input_shape`: a softmax
    over logits, that input shape, probabilities out. The runner and `make_attack` take it as checked."""

    model: keras.Model
    input_shape: tuple[int, ...]

    @classmethod
    def checked(cls, model: keras.Model, input_shape: tuple[int, ...]) -> Victim:
        check_victim(model, input_shape)
        return cls(model, input_shape)


def as_victim(model: keras.Model | Victim, input_shape: tuple[int, ...]) -> Victim:
    """A `Victim` as it is (checked when it was made), or a plain Keras model checked now."""
    return model if isinstance(model, Victim) else Victim.checked(model, input_shape)


@dataclass(frozen=True, kw_only=True)
class AttackConfig:
    """Settings shared by every attack; each attack subclasses this with its own typed fields.

    `target`: None for untargeted; a class index for one fixed target; -1 for "every other class"
    (the runner then repeats each sample once per other class, as ECGadv's source x target matrix).
    """

    target: int | None = None

    def validate(self, num_classes: int) -> None:
        """Raise AttackError for settings that make no sense; subclasses extend it."""
        if self.target is not None and self.target != -1 and not 0 <= self.target < num_classes:
            raise AttackError(f"target class {self.target} is out of range for a model with {num_classes} classes")

    @property
    def targeted(self) -> bool:
        return self.target is not None


@dataclass(frozen=True, kw_only=True)
class UntargetedConfig(AttackConfig):
    """Settings of an attack that only changes the prediction away from the true class."""

    def validate(self, num_classes: int) -> None:
        super().validate(num_classes)
        if self.targeted:
            raise AttackError("this attack is untargeted only; leave target unset")


class Attack(abc.ABC):
    """An attack bound to one victim model and the data's valid range."""

    def __init__(
        self, model: keras.Model, config: AttackConfig, clip_range: tuple[float, float], batch_size: int
    ) -> None:
        self.model = model
        self.config = config
        self.clip_range = clip_range
        self.batch_size = batch_size

    @abc.abstractmethod
    def generate(self, x: np.ndarray, y: np.ndarray, target: np.ndarray | None) -> np.ndarray:
        """Adversarial versions of `x` (same shape, float32); `target` holds one target class per sample."""


ConfigT = TypeVar("ConfigT", bound=AttackConfig)


@dataclass(frozen=True)
class AttackRun(Generic[ConfigT]):
    """What a family's extra evaluation may read once the attack has run: plain data and models, no tracking."""

    result: AttackResult
    model: keras.Model  # the victim as attacked (behind the defense, if there is one)
    data: Dataset  # the whole split the attacked samples were selected from
    config: ConfigT
    settings: Any  # the attack entry point's settings (`medadv.jobs.attack.AttackSettings`): seed, universal_*, ...


@dataclass(frozen=True)
class Extras:
    """What a family's extra evaluation yields, each under its artifact name: tables (CSV, index kept),
    metrics, figures, and notes to print (say why a table is empty)."""

    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    figures: dict[str, Figure] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
