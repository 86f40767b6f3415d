"""The `Dataset` contract every loader returns, and the helpers loaders share."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from medadv.errors import MedadvError

SPLITS = ("train", "val", "test", "all")


class DataError(MedadvError):
    """Bad or missing input data; the message names the file and says what is wrong, on one line."""


@dataclass(frozen=True)
class Dataset:
    """Samples in the model's input scale, with what is needed to attack, explain and track them."""

    name: str
    split: str
    x: np.ndarray  # float32, (n, *input_shape)
    y: np.ndarray  # int64 class indices, (n,)
    class_names: tuple[str, ...]
    clip_range: tuple[float, float]
    ids: np.ndarray  # str sample ids, (n,)
    source: str  # where the data came from (a path), recorded with mlflow.data
    lengths: np.ndarray | None = field(default=None)  # ECG: real samples per record before padding
    mv_per_unit: np.ndarray | None = field(default=None)  # ECG: mV per input unit per record (z-score std / gain)
    fs_hz: float | None = field(default=None)  # ECG: sampling rate

    def __post_init__(self) -> None:
        n = len(self.x)
        if not (len(self.y) == len(self.ids) == n):
            raise DataError(f"{self.source}: x, y and ids disagree in length ({n}, {len(self.y)}, {len(self.ids)})")
        if self.x.dtype != np.float32:
            raise DataError(f"{self.source}: x must be float32, got {self.x.dtype}")
        if n and not np.isfinite(self.x).all():
            raise DataError(f"{self.source}: x contains NaN or infinite values")

    def __len__(self) -> int:
        return len(self.x)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    def subset(self, index: np.ndarray | slice) -> Dataset:
        """The samples at `index`, keeping everything else."""
        lengths = None if self.lengths is None else self.lengths[index]
        mv_per_unit = None if self.mv_per_unit is None else self.mv_per_unit[index]
        return replace(
            self, x=self.x[index], y=self.y[index], ids=self.ids[index], lengths=lengths, mv_per_unit=mv_per_unit
        )

    def fingerprint(self) -> str:
        """A short content hash, so two runs can tell whether they saw the same samples."""
        digest = hashlib.sha256()
        for array in (self.x, self.y, self.ids.astype(str)):
            digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()[:16]


def split_of(key: str, val_percent: int = 15, test_percent: int = 15) -> str:
    """Stable train/val/test assignment by hashing a key (a record or patient id).

    A hash, not a shuffle, so a sample stays in its split whatever else is on disk, and
    grouping by patient id keeps every patient in one split.
    """
    bucket = int(hashlib.md5(key.encode()).hexdigest()[:8], 16) % 100
    if bucket < test_percent:
        return "test"
    if bucket < test_percent + val_percent:
        return "val"
    return "train"


def select_split(keys: list[str] | np.ndarray, split: str) -> np.ndarray:
    """Indices of the samples whose key hashes into `split` ("all" keeps everything)."""
    check_split(split)
    if split == "all":
        return np.arange(len(keys))
    return np.array([i for i, key in enumerate(keys) if split_of(str(key)) == split], dtype=np.int64)


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")


def require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise DataError(f"{path}: {what} not found")
    return path


def require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DataError(f"{path}: {what} folder not found")
    return path
