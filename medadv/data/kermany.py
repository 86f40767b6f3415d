"""Kermany et al. (Cell 2018) image folders: chest X-ray (NORMAL / PNEUMONIA) and OCT2017 (CNV / DME / DRUSEN / NORMAL).

On disk: `{train,test}/<CLASS>/*.jpeg` (the chest X-ray release also has a small `val/`), optionally inside a
`chest_xray/` or `OCT2017/` folder. Where there is no `val/` folder, val is carved out of train by a stable hash of
the patient id in the file name (OCT2017 names files `<CLASS>-<patient>-<n>.jpeg`), so a patient never straddles the
two. Images are read grey and resized straight to `image_size` squared, as the Grad-Attacks study does.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from PIL import Image

from medadv.data.base import DataError, Dataset, check_split, require_dir, select_split

# flavor -> (the folder the Kaggle release unpacks to, class folder names in label order)
FLAVORS: dict[str, tuple[str, tuple[str, ...]]] = {
    "chest_xray": ("chest_xray", ("NORMAL", "PNEUMONIA")),
    "oct2017": ("OCT2017", ("CNV", "DME", "DRUSEN", "NORMAL")),
}
IMAGE_SUFFIXES = frozenset({".jpeg", ".jpg", ".png"})
_OCT_FILE_NAME = re.compile(r"^[A-Z]+-(\d+)-\d+$")


def load(root: Path, split: str, *, flavor: str, image_size: int = 224) -> Dataset:
    """The images of `split` ("all" = every split folder), grey, (n, image_size, image_size, 1) in [0, 1]."""
    check_split(split)
    folder_name, class_names = _flavor(flavor)
    check_image_size(image_size)
    if not (root / "train").is_dir() and (root / folder_name).is_dir():
        root = root / folder_name
    files = _split_files(root, split, class_names)
    return Dataset(
        name=flavor,
        split=split,
        x=load_grey_images([path for path, _ in files], image_size),
        y=np.array([label for _, label in files], dtype=np.int64),
        class_names=class_names,
        clip_range=(0.0, 1.0),
        ids=np.array([path.relative_to(root).as_posix() for path, _ in files], dtype=str),
        source=str(root),
    )


def write_synthetic(root: Path, *, seed: int = 0, flavor: str, per_class: int = 8, image_size: int = 64) -> None:
    """A small set in the real layout: `per_class` train and `per_class // 2` test JPEGs per class
    (chest X-ray also gets a `val/` folder, as its real release has)."""
    _, class_names = _flavor(flavor)
    rng = np.random.default_rng(seed)
    splits = {"train": per_class, "test": max(1, per_class // 2)}
    if flavor == "chest_xray":
        splits["val"] = max(1, per_class // 4)
    patient = 1000
    for split, count in splits.items():
        for label, class_name in enumerate(class_names):
            folder = root / split / class_name
            folder.mkdir(parents=True, exist_ok=True)
            for _ in range(count):
                patient += 1  # one patient per image, named as the real releases name them
                name = f"{class_name}-{patient}-1.jpeg" if flavor == "oct2017" else f"IM-{patient:04d}-0001.jpeg"
                image = synthetic_image(rng, flavor, label, image_size)
                Image.fromarray(image).save(folder / name, quality=95)


def synthetic_image(rng: np.random.Generator, flavor: str, label: int, size: int) -> np.ndarray:
    """A grey uint8 (size, size) cartoon of one class, with the class sign large enough for a tiny CNN to learn.

    Chest X-ray: pneumonia adds a bright consolidation in a lung. OCT: retinal layers above a bright RPE line;
    CNV lifts a bright mass under the retina, DME opens dark cysts in it, DRUSEN raise small bumps on the RPE.
    """
    _, class_names = _flavor(flavor)
    yy, xx = np.mgrid[-1 : 1 : size * 1j, -1 : 1 : size * 1j]
    if flavor == "chest_xray":
        image = chest_radiograph(rng, yy, xx, heart_radius=0.28)
        if class_names[label] == "PNEUMONIA":
            side = rng.choice([-1.0, 1.0])
            image += 0.45 * blob(yy, xx, rng.uniform(0.1, 0.4), side * rng.uniform(0.35, 0.5), 0.3, 0.22)
    else:
        rpe = 0.3 + rng.uniform(-0.05, 0.05) + 0.15 * xx**2  # the retina sags a little at the fovea
        image = 0.06 + 0.3 * ((yy > rpe - 0.7) & (yy < rpe)) + 0.55 * np.exp(-(((yy - rpe) / 0.05) ** 2))
        centre = rng.uniform(-0.2, 0.2)
        if class_names[label] == "CNV":
            image += 0.6 * blob(yy, xx, rpe - 0.05, centre, 0.2, 0.4)
        elif class_names[label] == "DME":
            for dx in (-0.3, 0.0, 0.3):
                image -= 0.35 * blob(yy, xx, rpe - 0.35, centre + dx, 0.15, 0.13)
        elif class_names[label] == "DRUSEN":
            for dx in (-0.6, -0.3, 0.0, 0.3, 0.6):
                image += 0.5 * blob(yy, xx, rpe - 0.08, centre + dx, 0.1, 0.1)
    image += rng.normal(0.0, 0.04, image.shape)
    return np.asarray(np.clip(image * 255.0, 0, 255), dtype=np.uint8)


def chest_radiograph(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, heart_radius: float) -> np.ndarray:
    """A frontal chest cartoon in [0, 1] on a [-1, 1] grid: bright thorax, two dark lungs, a heart of `heart_radius`.

    Shared with the NIH writer, where an enlarged heart is the cardiomegaly sign.
    """
    image = 0.15 + 0.55 * blob(yy, xx, 0.1, 0.0, 1.2, 0.9)
    for side in (-1.0, 1.0):
        image -= 0.4 * blob(yy, xx, -0.1, side * 0.42, 0.6, 0.28)
    image += 0.4 * blob(yy, xx, 0.3, -0.1 + rng.uniform(-0.03, 0.03), heart_radius, heart_radius * 1.2)
    return image


def blob(yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    """A soft elliptic Gaussian of height 1 centred at (cy, cx) with radii (ry, rx) on the grid (yy, xx)."""
    return np.exp(-(((yy - cy) / ry) ** 2) - ((xx - cx) / rx) ** 2)


def load_grey_images(paths: list[Path], image_size: int) -> np.ndarray:
    """Image files as float32 (n, image_size, image_size, 1) in [0, 1]; shared with the NIH loader."""
    x = np.empty((len(paths), image_size, image_size, 1), dtype=np.float32)
    for i, path in enumerate(paths):
        x[i, ..., 0] = _read_grey(path, image_size)
    x /= 255.0
    return x


def check_image_size(image_size: int) -> None:
    if not isinstance(image_size, int) or image_size < 1:
        raise DataError(f"image_size must be a positive int, got {image_size!r}")


def _read_grey(path: Path, image_size: int) -> np.ndarray:
    """One image as uint8 (image_size, image_size); JPEGs decode at a reduced scale first (draft mode),
    which reads a 1800-pixel X-ray about 3x faster."""
    try:
        with Image.open(path) as image:
            image.draft("L", (image_size, image_size))
            grey = image.convert("L").resize((image_size, image_size), Image.Resampling.BILINEAR)
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise DataError(f"{path}: cannot read image ({error})") from None
    return np.asarray(grey, dtype=np.uint8)


def _flavor(flavor: str) -> tuple[str, tuple[str, ...]]:
    if flavor not in FLAVORS:
        raise DataError(f"unknown Kermany flavor {flavor!r}; choose one of {', '.join(FLAVORS)}")
    return FLAVORS[flavor]


def _split_files(root: Path, split: str, class_names: tuple[str, ...]) -> list[tuple[Path, int]]:
    """(path, label) of every image of `split`, in a stable order."""
    has_val = (root / "val").is_dir()
    if split == "all":
        folders = ["train", "val", "test"] if has_val else ["train", "test"]
        return [item for folder in folders for item in _class_files(root / folder, class_names)]
    if split == "test" or has_val:
        return _class_files(root / split, class_names)
    train = _class_files(root / "train", class_names)
    val = select_split([_patient_key(path) for path, _ in train], "val")
    keep = val if split == "val" else np.setdiff1d(np.arange(len(train)), val)
    return [train[i] for i in keep]


def _class_files(split_dir: Path, class_names: tuple[str, ...]) -> list[tuple[Path, int]]:
    require_dir(split_dir, f"{split_dir.name} split")
    files = []
    for class_dir in sorted(split_dir.iterdir()):
        if class_dir.name.startswith(".") or not class_dir.is_dir():
            continue  # .DS_Store and friends ship inside the Kaggle archives
        if class_dir.name not in class_names:
            raise DataError(f"{class_dir}: unknown class folder; expected one of {', '.join(class_names)}")
        label = class_names.index(class_dir.name)
        files += [
            (path, label)
            for path in sorted(class_dir.iterdir())
            if path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")
        ]
    missing = sorted(set(class_names) - {class_names[label] for _, label in files})
    if missing:  # labels would shift, or a class would silently never be seen
        raise DataError(f"{split_dir}: no images of class(es) {', '.join(missing)}; expected {', '.join(class_names)}")
    return files


def _patient_key(path: Path) -> str:
    """The patient id where the file name carries one (OCT2017), else the file name itself."""
    match = _OCT_FILE_NAME.match(path.stem)
    return match.group(1) if match else path.stem
