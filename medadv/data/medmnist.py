"""MedMNIST v2 (Yang et al., Scientific Data 2023): PneumoniaMNIST, OCTMNIST and ChestMNIST `.npz` files.

On disk: `<flavor>.npz` (MedMNIST+ larger sizes: `<flavor>_<size>.npz`) holding `{train,val,test}_images`
(uint8, (n, size, size)) and `{train,val,test}_labels` (uint8, (n, 1); ChestMNIST (n, 14) multi-label), read with
numpy alone and never unpickled. The official splits are used as they are. ChestMNIST's 14 findings become one
binary task, "no finding" (all zero) vs "finding" (any set), the way the NIH tasks here treat "No Finding".
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from medadv.data import kermany, nih
from medadv.data.base import DataError, Dataset, check_split, require_file

OFFICIAL_SPLITS = ("train", "val", "test")
# flavor -> class names in label order (MedMNIST v2's `INFO[flavor]["label"]`)
FLAVORS: dict[str, tuple[str, ...]] = {
    "pneumoniamnist": ("normal", "pneumonia"),
    "octmnist": ("CNV", "DME", "DRUSEN", "NORMAL"),  # choroidal neovascularization, diabetic macular edema, ...
    "chestmnist": ("no finding", "finding"),
}
# ChestMNIST's label columns, in order (the NIH ChestX-ray14 findings)
CHEST_FINDINGS = (
    "atelectasis",
    "cardiomegaly",
    "effusion",
    "infiltration",
    "mass",
    "nodule",
    "pneumonia",
    "pneumothorax",
    "consolidation",
    "edema",
    "emphysema",
    "fibrosis",
    "pleural",
    "hernia",
)


def load(root: Path, split: str, *, flavor: str, size: int = 28) -> Dataset:
    """The official `split` ("all" = train, val and test in that order) as (n, size, size, 1) in [0, 1]."""
    check_split(split)
    class_names = _class_names(flavor)
    path = root if root.is_file() else require_file(root / _file_name(flavor, size), f"{flavor} .npz file")
    parts = OFFICIAL_SPLITS if split == "all" else (split,)
    arrays = read_npz(path, [f"{part}_{kind}" for part in parts for kind in ("images", "labels")])
    images, labels, ids = [], [], []
    for part in parts:
        part_images = arrays[f"{part}_images"]
        if part_images.ndim != 3 or part_images.dtype != np.uint8:
            raise DataError(
                f"{path}: {part}_images must be uint8 (n, h, w), got {part_images.dtype} {part_images.shape}"
            )
        images.append(part_images)
        labels.append(_labels(path, part, arrays[f"{part}_labels"], len(part_images), flavor))
        ids += [f"{part}_{i}" for i in range(len(part_images))]
    return Dataset(
        name=flavor,
        split=split,
        x=(np.concatenate(images)[..., None] / np.float32(255.0)).astype(np.float32),
        y=np.concatenate(labels),
        class_names=class_names,
        clip_range=(0.0, 1.0),
        ids=np.array(ids, dtype=str),
        source=str(root),
    )


def write_synthetic(
    root: Path, *, seed: int = 0, flavor: str, n_train: int = 64, n_val: int = 16, n_test: int = 16, size: int = 28
) -> None:
    """A small `.npz` in the real layout. PneumoniaMNIST and OCTMNIST are downsampled Kermany images and
    ChestMNIST downsampled NIH ones, so the images come from those writers' cartoons."""
    class_names = _class_names(flavor)
    rng = np.random.default_rng(seed)
    arrays: dict[str, Any] = {}  # Any: numpy types savez_compressed's **kwargs as if one could be allow_pickle
    for part, count in zip(OFFICIAL_SPLITS, (n_train, n_val, n_test), strict=True):
        if flavor == "chestmnist":
            choices = ["No Finding", "Cardiomegaly", "Pneumothorax", "Cardiomegaly|Pneumothorax"]
            findings = [choices[i] for i in rng.permutation(np.arange(count) % len(choices))]
            images = [nih.synthetic_image(rng, item, size) for item in findings]
            labels = np.array([[name in item.lower() for name in CHEST_FINDINGS] for item in findings])
        else:
            y = rng.permutation(np.arange(count) % len(class_names))
            kermany_flavor = "chest_xray" if flavor == "pneumoniamnist" else "oct2017"
            images = [kermany.synthetic_image(rng, kermany_flavor, int(label), size) for label in y]
            labels = y[:, None]
        arrays[f"{part}_images"] = np.stack(images).astype(np.uint8)
        arrays[f"{part}_labels"] = labels.astype(np.uint8)
    root.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(root / _file_name(flavor, size), **arrays)


def read_npz(path: Path, keys: list[str]) -> dict[str, np.ndarray]:
    """The arrays `keys` of an `.npz`, never unpickling; any damage becomes a DataError naming the file."""
    try:
        archive = np.load(path, allow_pickle=False)
        if isinstance(archive, np.lib.npyio.NpzFile):
            with archive:
                arrays = {key: archive[key] for key in keys if key in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        if "allow_pickle" in str(error):  # numpy refused to unpickle an object array
            raise DataError(f"{path}: holds Python objects, which medadv never unpickles; save plain arrays") from None
        raise DataError(f"{path}: corrupt or truncated .npz ({error})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(f"{path}: not an .npz archive")
    missing = [key for key in keys if key not in arrays]
    if missing:
        raise DataError(f"{path}: missing array(s) {', '.join(missing)}")
    return arrays


def _labels(path: Path, part: str, labels: np.ndarray, n: int, flavor: str) -> np.ndarray:
    width = len(CHEST_FINDINGS) if flavor == "chestmnist" else 1
    if labels.shape != (n, width):
        raise DataError(f"{path}: {part}_labels must have shape ({n}, {width}), got {labels.shape}")
    if flavor == "chestmnist":
        return (labels != 0).any(axis=1).astype(np.int64)
    y = labels[:, 0].astype(np.int64)
    if n and not 0 <= y.min() <= y.max() < len(FLAVORS[flavor]):
        raise DataError(f"{path}: {part}_labels outside 0..{len(FLAVORS[flavor]) - 1}")
    return y


def _class_names(flavor: str) -> tuple[str, ...]:
    if flavor not in FLAVORS:
        raise DataError(f"unknown MedMNIST flavor {flavor!r}; choose one of {', '.join(FLAVORS)}")
    return FLAVORS[flavor]


def _file_name(flavor: str, size: int) -> str:
    return f"{flavor}.npz" if size == 28 else f"{flavor}_{size}.npz"
