"""The attack result contract: one compressed `.npz` and one per-sample table per run."""

from __future__ import annotations

import math
import zipfile
from dataclasses import dataclass, fields
from pathlib import Path
from typing import IO, Any

import numpy as np

# What the data set says about every sample; saved beside the arrays, so a reader (evaluate merging shards)
# needs no data set to score the result.
_DESCRIPTION = ("class_names", "clip_range")


@dataclass(frozen=True)
class AttackResult:
    """Everything an attack run produced, sample by sample (axis 0 everywhere), and the attacked data's
    class names and valid value range.

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
    class_names: tuple[str, ...] = ()  # empty: unknown (a result saved before results carried them)
    clip_range: tuple[float, float] = (-math.inf, math.inf)

    @property
    def delta(self) -> np.ndarray:
        return self.x_adv - self.x

    def __len__(self) -> int:
        return len(self.ids)

    def _arrays(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _DESCRIPTION}

    def save(self, path: Path) -> Path:
        """Write one compressed `.npz` (with `delta` stored too, for readers without medadv)."""
        description = {"class_names": np.array(self.class_names, dtype=str), "clip_range": np.array(self.clip_range)}
        arrays: dict[str, Any] = {"delta": self.delta, **self._arrays(), **description}
        # np.savez_compressed's format at deflate level 1, not its 6: 6-10x faster, about 15% larger.
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
            for name, values in arrays.items():
                with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.asanyarray(values), allow_pickle=False)
        return path

    @classmethod
    def load(cls, path: Path | IO[bytes]) -> AttackResult:
        """Read a saved result; one saved before results carried class names and clip range gets the defaults."""
        with np.load(path, allow_pickle=False) as data:
            arrays = {f.name: data[f.name] for f in fields(cls) if f.name not in _DESCRIPTION}
            if "class_names" not in data:
                return cls(**arrays)
            low, high = (float(value) for value in data["clip_range"])
            return cls(**arrays, class_names=tuple(str(name) for name in data["class_names"]), clip_range=(low, high))

    def take(self, index: np.ndarray) -> AttackResult:
        """The samples at `index` (positions or a boolean mask), with the same description."""
        arrays = {name: values[index] for name, values in self._arrays().items()}
        return AttackResult(**arrays, class_names=self.class_names, clip_range=self.clip_range)

    @classmethod
    def concatenate(cls, parts: list[AttackResult]) -> AttackResult:
        """Join results in order (batches of one run, or shards of one attack) of the same data."""
        first = parts[0]
        if any((part.class_names, part.clip_range) != (first.class_names, first.clip_range) for part in parts):
            raise ValueError("cannot join attack results of data with different class names or clip ranges")
        arrays = {name: np.concatenate([p._arrays()[name] for p in parts]) for name in first._arrays()}
        return cls(**arrays, class_names=first.class_names, clip_range=first.clip_range)
