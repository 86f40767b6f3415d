"""The attack result contract: one compressed `.npz` and one per-sample table per run."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class AttackResult:
    """Everything an attack run produced, sample by sample (axis 0 everywhere).

    `y_target` is -1 for untargeted samples; `p_clean`/`p_adv` are the probabilities of the
    predicted class; `seconds` is each sample's share of its batch's wall time.
    """

    x: np.ndarray
    x_adv: np.ndarray
    ids: np.ndarray
    y_true: np.ndarray
    y_clean: np.ndarray
    y_adv: np.ndarray
    y_target: np.ndarray
    p_clean: np.ndarray
    p_adv: np.ndarray
    seconds: np.ndarray

    @property
    def delta(self) -> np.ndarray:
        return self.x_adv - self.x

    def __len__(self) -> int:
        return len(self.ids)

    def save(self, path: Path) -> Path:
        """Write one compressed `.npz` (with `delta` stored too, for readers without medadv)."""
        arrays = {f.name: getattr(self, f.name) for f in fields(self)}
        np.savez_compressed(path, delta=self.delta, **arrays)
        return path

    @classmethod
    def load(cls, path: Path) -> AttackResult:
        with np.load(path, allow_pickle=False) as data:
            return cls(**{f.name: data[f.name] for f in fields(cls)})

    @classmethod
    def concatenate(cls, parts: list[AttackResult]) -> AttackResult:
        """Join results in order (batches of one run, or shards of one attack)."""
        return cls(**{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)})
