"""NIH ChestX-ray14 (Wang et al., CVPR 2017) as binary tasks: pneumothorax or cardiomegaly vs "No Finding".

On disk: the metadata table `Data_Entry_2017*.csv` (or `.csv.gz`; the v2020 release wins when several are
present) with columns "Image Index", "Finding Labels" (`|`-separated), "Patient ID", ... and the PNGs anywhere
under the root (`images/*.png`, `images_001/images/*.png`, ...). A row is positive when its findings include the
task's condition, negative when they are exactly "No Finding", and left out otherwise (other diseases only).
Rows whose image is not on disk are skipped, so a partial download loads what it has. Splits hash the patient id,
so no patient's images straddle train, val and test (the foe transferability study's leakage rule).
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from medadv.data.base import DataError, Dataset, check_split, split_of
from medadv.data.kermany import blob, check_image_size, chest_radiograph, load_grey_images

if TYPE_CHECKING:
    import pandas as pd

TASKS = ("pneumothorax", "cardiomegaly")
TABLE_PATTERNS = ("Data_Entry_2017*.csv", "Data_Entry_2017*.csv.gz")
COLUMNS = ["Image Index", "Finding Labels", "Patient ID"]
# The real header, including the two bracketed fields its unquoted commas split in two.
_ALL_COLUMNS = [
    *COLUMNS[:2],
    "Follow-up #",
    COLUMNS[2],
    "Patient Age",
    "Patient Gender",
    "View Position",
    "OriginalImage[Width",
    "Height]",
    "OriginalImagePixelSpacing[x",
    "y]",
]


def load(root: Path, split: str, *, task: str, image_size: int = 224) -> Dataset:
    """The task's positive and "No Finding" images of `split`, grey, (n, image_size, image_size, 1) in [0, 1]."""
    check_split(split)
    _check_task(task)
    check_image_size(image_size)
    table_path = _table_path(root)
    table = _read_table(table_path)
    on_disk = {path.name: path for path in sorted(root.rglob("*.png"))}
    table = table[table["Image Index"].isin(on_disk.keys())]
    if table.empty:
        raise DataError(f"{root}: none of the images listed in {table_path.name} are under this folder")
    findings = table["Finding Labels"].str.strip().str.lower()
    positive = findings.str.contains(rf"(?:^|\|)\s*{task}\s*(?:\||$)", regex=True)
    table = table.assign(label=positive.astype(np.int64))[positive | (findings == "no finding")]
    if split != "all":
        table = table[[split_of(patient) == split for patient in table["Patient ID"]]]
    table = table.sort_values("Image Index")
    return Dataset(
        name=f"nih_{task}",
        split=split,
        x=load_grey_images([on_disk[name] for name in table["Image Index"]], image_size),
        y=table["label"].to_numpy(dtype=np.int64),
        class_names=("no finding", task),
        clip_range=(0.0, 1.0),
        ids=table["Image Index"].to_numpy(dtype=str),
        source=str(root),
    )


def write_synthetic(
    root: Path,
    *,
    seed: int = 0,
    task: str,
    patients: int = 12,
    images_per_patient: int = 4,
    image_size: int = 64,
) -> None:
    """A small set in the real layout: `images_001/images/*.png` plus a metadata table with the real columns.

    Findings mix the task's condition, "No Finding", and rows the task must leave out (other diseases); the
    table also lists one patient whose images are not on disk, as a partial download does.
    """
    _check_task(task)
    rng = np.random.default_rng(seed)
    condition = task.capitalize()
    choices = ["No Finding", "No Finding", condition, f"{condition}|Effusion", "Effusion"]
    image_dir = root / "images_001" / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for patient in range(1, patients + 2):
        for follow_up in range(images_per_patient):
            name = f"{patient:08d}_{follow_up:03d}.png"
            findings = str(rng.choice(choices))
            if patient <= patients:  # the last patient is listed but absent
                Image.fromarray(synthetic_image(rng, findings, image_size)).save(image_dir / name)
            age, gender, view = int(rng.integers(20, 80)), str(rng.choice(["M", "F"])), str(rng.choice(["PA", "AP"]))
            rows.append([name, findings, follow_up, patient, age, gender, view, 2500, 2048, 0.143, 0.143])
    import pandas as pd  # see _read_table

    pd.DataFrame(rows, columns=_ALL_COLUMNS).to_csv(root / "Data_Entry_2017_v2020.csv", index=False)


def synthetic_image(rng: np.random.Generator, findings: str, size: int) -> np.ndarray:
    """A grey uint8 (size, size) chest cartoon showing `findings` (a "Finding Labels" value).

    Cardiomegaly enlarges the heart (cardiothoracic ratio above one half); pneumothorax leaves a dark band
    without lung markings along one chest wall, where air has collapsed the lung away from it.
    """
    labels = {label.strip().lower() for label in findings.split("|")}
    yy, xx = np.mgrid[-1 : 1 : size * 1j, -1 : 1 : size * 1j]
    image = chest_radiograph(rng, yy, xx, heart_radius=0.5 if "cardiomegaly" in labels else 0.28)
    if "effusion" in labels:  # fluid whitens a lung base
        image += 0.3 * blob(yy, xx, 0.6, rng.choice([-0.45, 0.45]), 0.2, 0.3)
    image += rng.normal(0.0, 0.04, image.shape)
    if "pneumothorax" in labels:
        side = rng.choice([-1.0, 1.0])
        band = (side * xx > 0.55) & (side * xx < 0.85) & (np.abs(yy + 0.1) < 0.6)
        image[band] = 0.05 + rng.normal(0.0, 0.01, int(band.sum()))
    return np.asarray(np.clip(image * 255.0, 0, 255), dtype=np.uint8)


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise DataError(f"unknown NIH task {task!r}; choose one of {', '.join(TASKS)}")


def _table_path(root: Path) -> Path:
    tables = [path for pattern in TABLE_PATTERNS for path in root.glob(pattern)]
    if not tables:
        raise DataError(f"{root}: no NIH metadata table ({' or '.join(TABLE_PATTERNS)}) found")
    return max(tables, key=lambda path: path.name)


def _read_table(path: Path) -> pd.DataFrame:
    """The three columns the tasks need; reading only those keeps the 112,120-row table well under a second."""
    import pandas as pd  # here: a step's input checks import this module, and pandas alone takes most of a second

    try:
        header = pd.read_csv(path, nrows=0).columns
        table = pd.read_csv(path, usecols=[column for column in COLUMNS if column in header], dtype={"Patient ID": str})
    except (ValueError, OSError, EOFError, zlib.error) as error:
        raise DataError(f"{path}: not a readable CSV table ({error})") from None
    missing = [column for column in COLUMNS if column not in table.columns]
    if missing:
        raise DataError(f"{path}: the table lacks the column(s) {', '.join(missing)}")
    if table.isna().any(axis=None):
        raise DataError(f"{path}: empty cells in {', '.join(COLUMNS)}")
    return table
