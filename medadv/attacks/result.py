"""The attack result contract: one compressed `.npz` and one per-sample table per run, and with transfer targets
one `.npz` of their class probabilities on the run's samples."""

from __future__ import annotations

import math
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import IO, Any

import numpy as np

# What the data set says about every sample; saved beside the arrays, so a reader (evaluate merging shards)
# needs no data set to score the result.
_DESCRIPTION = ("class_names", "clip_range")


def _write_npz(path: Path, arrays: Mapping[str, Any], compress: bool = True) -> Path:
    """`arrays` as one `.npz` without pickles: np.savez_compressed's format at deflate level 1, not its 6 (6-10x
    faster, about 15% larger); np.savez's, stored as is, with `compress=False`."""
    method, level = (zipfile.ZIP_DEFLATED, 1) if compress else (zipfile.ZIP_STORED, None)
    with zipfile.ZipFile(path, "w", method, compresslevel=level) as archive:
        for name, values in arrays.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(values), allow_pickle=False)
    return path


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

    def save(self, path: Path, compress: bool = True) -> Path:
        """Write one `.npz` (with `delta` stored too, for readers without medadv), compressed unless it is a file
        kept only until the run ends (a batch's progress file)."""
        description = {"class_names": np.array(self.class_names, dtype=str), "clip_range": np.array(self.clip_range)}
        return _write_npz(path, {"delta": self.delta, **self._arrays(), **description}, compress)

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


@dataclass(frozen=True)
class TargetProbabilities:
    """One transfer target's class probabilities, (n, its classes), on a run's samples (`ids`): of the clean and the
    adversarial inputs, and of the same attack crafted on the target itself (`white_box`, None where it was not).

    Saved beside the result, so evaluate scores merged shards on the targets without loading them.
    """

    ids: np.ndarray
    clean: np.ndarray
    adversarial: np.ndarray
    white_box: np.ndarray | None = None

    @classmethod
    def join(cls, parts: list[TargetProbabilities], ids: np.ndarray) -> TargetProbabilities:
        """One target's parts (shard by shard) joined in the order of `ids`, each id taken where it first occurs,
        as `medadv.report.records.join_shards` keeps it; white-box only where every part has it."""
        joined = {
            name: np.concatenate([getattr(part, name) for part in parts]) for name in ("ids", "clean", "adversarial")
        }
        first: dict[object, int] = {}
        for position, sample in enumerate(joined["ids"].tolist()):
            first.setdefault(sample, position)
        absent = [sample for sample in ids.tolist() if sample not in first]
        if absent:
            raise ValueError(f"no probabilities for sample ids {absent[:5]}")
        index = np.array([first[sample] for sample in ids.tolist()], dtype=int)
        white_box = [part.white_box for part in parts if part.white_box is not None]
        return cls(
            **{name: values[index] for name, values in joined.items()},
            white_box=np.concatenate(white_box)[index] if len(white_box) == len(parts) else None,
        )


def save_probabilities(probabilities: Mapping[str, TargetProbabilities], path: Path) -> Path:
    """Every target's probabilities as one `.npz`: the URIs (no member name could hold them) as the array `uris`,
    target i's arrays as `ids_i`, `clean_i`, `adversarial_i` and `white_box_i` (absent where None). Each target keeps
    arrays of its own: targets may differ in their number of classes."""
    arrays: dict[str, Any] = {"uris": np.array(list(probabilities), dtype=str)}
    for i, target in enumerate(probabilities.values()):
        values = {f.name: getattr(target, f.name) for f in fields(target)}
        arrays |= {f"{name}_{i}": array for name, array in values.items() if array is not None}
    return _write_npz(path, arrays)


def load_probabilities(path: Path | IO[bytes]) -> dict[str, TargetProbabilities]:
    """The targets' probabilities as `save_probabilities` wrote them, by target URI."""
    names = [f.name for f in fields(TargetProbabilities)]
    with np.load(path, allow_pickle=False) as data:
        return {
            str(uri): TargetProbabilities(**{name: data[f"{name}_{i}"] for name in names if f"{name}_{i}" in data})
            for i, uri in enumerate(data["uris"])
        }
