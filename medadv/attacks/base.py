"""What every attack is: typed settings, and a batch of inputs in, a batch of adversarial inputs out.

Batching, timing, predictions, resumption and logging live in one place outside the attacks
(`medadv.attacks.runner` and `medadv.tracking`), so an attack only implements `generate`.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

import keras
import numpy as np

from medadv.errors import MedadvError


class AttackError(MedadvError):
    """Settings that make no sense for this attack, model or data; raised before any compute."""


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
