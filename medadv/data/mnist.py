"""MNIST (LeCun, Cortes and Burges) from a local path: the IDX files or a Keras-style `mnist.npz`.

On disk: `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`
(each plain or `.gz`), or `mnist.npz` with `x_train, y_train, x_test, y_test`. Test is the official t10k set;
val is carved out of the official train set by a stable hash of the sample id and train is the rest. When only
one official part is on disk (the t10k files alone, as in the shared sample), train/val/test are all hashed out of
it. `keras.datasets.mnist` is used only with `download=True` and nothing local, since it needs the network.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from medadv.data.base import DataError, Dataset, check_split, select_split
from medadv.data.medmnist import read_npz

CLASS_NAMES = tuple(str(digit) for digit in range(10))
# official part -> (images file, labels file), each also accepted with ".gz"
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
NPZ_NAME = "mnist.npz"
# IDX type codes (the third magic byte) -> numpy dtype; multi-byte values are big-endian
_IDX_DTYPES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def load(root: Path, split: str, *, download: bool = False) -> Dataset:
    """`split` of MNIST as (n, 28, 28, 1) in [0, 1]; ids are "<official part>_<index in it>"."""
    check_split(split)
    parts, source = _read_parts(root, download)
    images, labels, ids = [], [], []
    for part, (part_images, part_labels) in parts.items():
        part_ids = np.array([f"{part}_{i}" for i in range(len(part_images))])
        index = _select(part, part_ids, split, single_part=len(parts) == 1)
        images.append(part_images[index])
        labels.append(part_labels[index].astype(np.int64))
        ids.append(part_ids[index])
    return Dataset(
        name="mnist",
        split=split,
        x=(np.concatenate(images)[..., None] / np.float32(255.0)).astype(np.float32),
        y=np.concatenate(labels),
        class_names=CLASS_NAMES,
        clip_range=(0.0, 1.0),
        ids=np.concatenate(ids).astype(str),
        source=source,
    )


def write_synthetic(root: Path, *, seed: int = 0, n_train: int = 100, n_test: int = 40) -> None:
    """The four gzip IDX files, holding digits drawn in a font with random shifts and noise."""
    rng = np.random.default_rng(seed)
    font = ImageFont.load_default(size=22)
    root.mkdir(parents=True, exist_ok=True)
    for part, count in (("train", n_train), ("test", n_test)):
        labels = rng.permutation(np.arange(count) % 10).astype(np.uint8)
        images = np.stack([_draw_digit(rng, font, int(label)) for label in labels])
        images_name, labels_name = IDX_FILES[part]
        write_idx(root / f"{images_name}.gz", images)
        write_idx(root / f"{labels_name}.gz", labels)


def read_idx(path: Path) -> np.ndarray:
    """An IDX file: magic (two zero bytes, a type code, the number of dims), big-endian uint32 dims, the data."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(f"{path}: corrupt or truncated gzip ({error})") from None
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] not in _IDX_DTYPES:
        raise DataError(f"{path}: not an IDX file (magic number {raw[:4].hex() or 'missing'})")
    ndim, header = raw[3], 4 + 4 * raw[3]
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = header + int(np.prod(dims)) * dtype.itemsize
    if len(raw) != expected:
        raise DataError(f"{path}: truncated or corrupt IDX file ({len(raw)} bytes, its header says {expected})")
    return np.frombuffer(raw, dtype, offset=header).reshape(dims)


def write_idx(path: Path, array: np.ndarray) -> None:
    """`array` (uint8) as a gzip IDX file, the inverse of `read_idx`."""
    header = struct.pack(f">2xBB{array.ndim}I", 0x08, array.ndim, *array.shape)
    path.write_bytes(gzip.compress(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()))


def _read_parts(root: Path, download: bool) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], str]:
    """Official part -> (images (n, 28, 28) uint8, labels (n,)), from the first source found; and that source."""
    npz = root if root.is_file() else root / NPZ_NAME
    if npz.is_file():
        arrays = read_npz(npz, ["x_train", "y_train", "x_test", "y_test"])
        parts = {part: (arrays[f"x_{part}"], arrays[f"y_{part}"]) for part in ("train", "test")}
        return _checked(parts, str(npz)), str(root)
    parts = {}
    for part, (images_name, labels_name) in IDX_FILES.items():
        images_path, labels_path = _idx_path(root, images_name), _idx_path(root, labels_name)
        if images_path.is_file() or labels_path.is_file():
            for path in (images_path, labels_path):
                if not path.is_file():
                    raise DataError(f"{path}: not found (MNIST {part} needs both its images and labels files)")
            parts[part] = (read_idx(images_path), read_idx(labels_path))
    if parts:
        return _checked(parts, str(root)), str(root)
    if download:
        return _checked(_download(), "keras.datasets.mnist"), "keras.datasets.mnist"
    raise DataError(
        f"{root}: no MNIST IDX files ({IDX_FILES['test'][0]}[.gz], ...) or {NPZ_NAME} found; "
        "pass download=True to fetch it through keras.datasets"
    )


def _download() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    import keras  # imported here only: reading local files must not pay for TensorFlow

    try:
        (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    except Exception as error:  # get_file raises a bare Exception when offline
        raise DataError(f"keras.datasets.mnist: download failed ({error}); place the IDX files locally") from None
    return {"train": (x_train, y_train), "test": (x_test, y_test)}


def _checked(parts: dict[str, tuple[np.ndarray, np.ndarray]], where: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    for part, (images, labels) in parts.items():
        if images.dtype != np.uint8 or images.ndim != 3 or labels.shape != (len(images),):
            raise DataError(f"{where}: MNIST {part} must be uint8 images (n, h, w) with n labels")
        if len(labels) and not 0 <= labels.min() <= labels.max() <= 9:
            raise DataError(f"{where}: MNIST {part} labels outside 0..9")
    return parts


def _select(part: str, ids: np.ndarray, split: str, single_part: bool) -> np.ndarray:
    """Indices of `ids` (one official part) that belong to `split`."""
    if split == "all":
        return np.arange(len(ids))
    if single_part:
        return select_split(ids, split)
    if part == "test":
        return np.arange(len(ids)) if split == "test" else np.arange(0)
    if split == "test":  # the official train part holds no test samples
        return np.arange(0)
    val = select_split(ids, "val")
    return val if split == "val" else np.setdiff1d(np.arange(len(ids)), val)


def _idx_path(root: Path, name: str) -> Path:
    plain = root / name
    return plain if plain.is_file() else root / f"{name}.gz"


def _draw_digit(rng: np.random.Generator, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, digit: int) -> np.ndarray:
    """A 28x28 uint8 digit, white on black as in MNIST, shifted by up to a pixel and lightly noised."""
    canvas = Image.new("L", (28, 28))
    centre = (14 + int(rng.integers(-1, 2)), 14 + int(rng.integers(-1, 2)))
    ImageDraw.Draw(canvas).text(centre, str(digit), 255, font, "mm", stroke_width=1, stroke_fill=255)
    image = np.asarray(canvas, dtype=np.float32) + rng.normal(0.0, 12.0, (28, 28))
    return np.asarray(np.clip(image, 0, 255), dtype=np.uint8)
