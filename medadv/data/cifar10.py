"""CIFAR-10 (Krizhevsky, 2009) from the "python version" release, `cifar-10-batches-py/`.

On disk: pickled dicts `data_batch_1` .. `data_batch_5` (train) and `test_batch`, each with b"data" (n, 3072)
uint8 (the red, green and blue 32x32 planes of each image, row-major) and b"labels", plus `batches.meta` with
b"label_names". The root may be that folder or hold it. Val is carved out of the official train set by a stable
hash of the sample id ("train_<index>"); train is the rest, test the official test batch.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from medadv.data.base import DataError, Dataset, check_split, require_file, select_split

FOLDER = "cifar-10-batches-py"
META = "batches.meta"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
LABEL_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# class -> RGB of the synthetic object; one colour per class makes the classes easy to learn
_PALETTE = np.array(
    [[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
     [145, 30, 180], [70, 240, 240], [240, 50, 230], [128, 128, 0], [255, 255, 255]],
    dtype=np.float64,
)  # fmt: skip


class _ArrayUnpickler(pickle.Unpickler):
    """An unpickler that builds only numpy arrays, bytes and plain containers.

    Unpickling can run arbitrary code, and these files are pickles: refusing every other global (the Python
    docs' "restricting globals" recipe) means a tampered file fails to load instead of running its payload.
    Still, point this loader only at copies of CIFAR-10 you trust.
    """

    _ALLOWED = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),  # pickles written by numpy 1.x, the real release
            ("numpy._core.multiarray", "_reconstruct"),  # ... and by numpy 2.x
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("_codecs", "encode"),  # how Python 3 writes bytes at protocol 2
        }
    )

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load the global {module}.{name}")
        return super().find_class(module, name)


def load(root: Path, split: str) -> Dataset:
    """`split` of CIFAR-10 as (n, 32, 32, 3) in [0, 1]; ids are "<official part>_<index in it>"."""
    check_split(split)
    folder = root / FOLDER if (root / FOLDER).is_dir() else root
    class_names = _label_names(require_file(folder / META, "CIFAR-10 metadata file"))
    images, labels, ids = [], [], []
    for part, batches in (("train", TRAIN_BATCHES), ("test", (TEST_BATCH,))):
        if split != "all" and (part == "test") != (split == "test"):
            continue
        part_images, part_labels = _read_batches(folder, batches, len(class_names))
        part_ids = np.array([f"{part}_{i}" for i in range(len(part_images))])
        index = np.arange(len(part_ids))
        if split in ("train", "val"):
            val = select_split(part_ids, "val")
            index = val if split == "val" else np.setdiff1d(index, val)
        images.append(part_images[index])
        labels.append(part_labels[index])
        ids.append(part_ids[index])
    return Dataset(
        name="cifar10",
        split=split,
        x=(np.concatenate(images) / np.float32(255.0)).astype(np.float32),
        y=np.concatenate(labels),
        class_names=class_names,
        clip_range=(0.0, 1.0),
        ids=np.concatenate(ids).astype(str),
        source=str(folder),
    )


def write_synthetic(root: Path, *, seed: int = 0, per_batch: int = 20) -> None:
    """`cifar-10-batches-py/` with five train batches and a test batch of `per_batch` images each.

    Each image is a square of its class's colour on a dim noisy background.
    """
    rng = np.random.default_rng(seed)
    folder = root / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    meta = {
        b"num_cases_per_batch": per_batch,
        b"label_names": [name.encode() for name in LABEL_NAMES],
        b"num_vis": 3072,
    }
    _write_pickle(folder / META, meta)
    for number, batch in enumerate((*TRAIN_BATCHES, TEST_BATCH), start=1):
        labels = rng.permutation(np.arange(per_batch) % len(LABEL_NAMES))
        images = np.stack([_draw_object(rng, int(label)) for label in labels])
        title = "testing batch 1 of 1" if batch == TEST_BATCH else f"training batch {number} of 5"
        _write_pickle(
            folder / batch,
            {
                b"batch_label": title.encode(),
                b"labels": labels.tolist(),
                # (n, 32, 32, 3) -> (n, 3, 32, 32) -> (n, 3072): the release's plane-by-plane row-major layout
                b"data": images.transpose(0, 3, 1, 2).reshape(per_batch, 3072),
                b"filenames": [f"synthetic_{number}_{i}.png".encode() for i in range(per_batch)],
            },
        )


def _read_batches(folder: Path, batches: tuple[str, ...], num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (n, 32, 32, 3) and int64 labels (n,) of the named batch files, concatenated."""
    images, labels = [], []
    for name in batches:
        path = require_file(folder / name, "CIFAR-10 batch")
        content = _unpickle(path)
        data, batch_labels = content.get(b"data"), np.asarray(content.get(b"labels", []), dtype=np.int64)
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.shape != (len(batch_labels), 3072):
            raise DataError(f"{path}: b'data' must be uint8 (n, 3072) with one b'labels' entry per row")
        if len(batch_labels) and not 0 <= batch_labels.min() <= batch_labels.max() < num_classes:
            raise DataError(f"{path}: labels outside 0..{num_classes - 1}")
        images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.append(batch_labels)
    return np.concatenate(images), np.concatenate(labels)


def _label_names(path: Path) -> tuple[str, ...]:
    names = _unpickle(path).get(b"label_names")
    if not isinstance(names, list) or not names:
        raise DataError(f"{path}: no b'label_names' list")
    return tuple(name.decode() if isinstance(name, bytes) else str(name) for name in names)


def _unpickle(path: Path) -> dict[bytes, Any]:
    """One batch or metadata dict; `encoding="bytes"` reads the release's Python 2 pickles."""
    try:
        with path.open("rb") as file:
            content = _ArrayUnpickler(file, encoding="bytes").load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError, KeyError, IndexError) as error:
        raise DataError(f"{path}: corrupt, truncated or unsafe pickle ({error})") from None
    if not isinstance(content, dict):
        raise DataError(f"{path}: expected a pickled dict, got {type(content).__name__}")
    return content


def _write_pickle(path: Path, content: dict[bytes, Any]) -> None:
    with path.open("wb") as file:
        pickle.dump(content, file, protocol=2)  # the release's protocol


def _draw_object(rng: np.random.Generator, label: int) -> np.ndarray:
    """A 32x32 RGB uint8 image: a 14-18 pixel square of the class colour, near the centre, on dim noise."""
    image = rng.uniform(20, 90, (32, 32, 3))
    side = int(rng.integers(14, 19))
    top, left = (int(start) for start in rng.integers(16 - side // 2 - 3, 16 - side // 2 + 4, 2))
    image[top : top + side, left : left + side] = _PALETTE[label] * rng.uniform(0.8, 1.0)
    image += rng.normal(0.0, 8.0, image.shape)
    return np.asarray(np.clip(image, 0, 255), dtype=np.uint8)
