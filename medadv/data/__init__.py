"""Data sets by name: each a real loader for the real on-disk format plus a synthetic writer of that format.

Every module named here defines `load(root, split, **options) -> Dataset` and
`write_synthetic(root, *, seed=0, **sizes) -> None`; `format` is passed to both when one module
reads several layouts (MedMNIST flavours, Kermany folders, NIH tasks).
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

from medadv.data.base import DataError, Dataset
from medadv.options import parse_options

# name -> (module, fixed keyword arguments for its load and write_synthetic)
DATASETS: dict[str, tuple[str, dict[str, str]]] = {
    "cinc2017": ("medadv.data.cinc2017", {}),
    "pneumoniamnist": ("medadv.data.medmnist", {"flavor": "pneumoniamnist"}),
    "octmnist": ("medadv.data.medmnist", {"flavor": "octmnist"}),
    "chestmnist": ("medadv.data.medmnist", {"flavor": "chestmnist"}),
    "chest_xray": ("medadv.data.kermany", {"flavor": "chest_xray"}),
    "oct2017": ("medadv.data.kermany", {"flavor": "oct2017"}),
    "nih_pneumothorax": ("medadv.data.nih", {"task": "pneumothorax"}),
    "nih_cardiomegaly": ("medadv.data.nih", {"task": "cardiomegaly"}),
    "mnist": ("medadv.data.mnist", {}),
    "cifar10": ("medadv.data.cifar10", {}),
}

_COMPLETE_MARKER = ".complete"

__all__ = ["DATASETS", "DataError", "Dataset", "load_dataset", "loader_options", "synthetic_dir"]


def _module_and_fixed(name: str) -> tuple[Any, dict[str, str]]:
    if name not in DATASETS:
        raise DataError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}")
    module_name, fixed = DATASETS[name]
    return importlib.import_module(module_name), fixed


def loader_options(name: str, text: str) -> dict[str, Any]:
    """Parse a `key=value,...` option string against the keyword-only options of `name`'s loader."""
    module, fixed = _module_and_fixed(name)
    return parse_options(text, module.load, "data_options", reserved=tuple(fixed))


def synthetic_dir(name: str, seed: int = 0) -> Path:
    """A small synthetic set of `name` in its real on-disk format, written once and reused.

    It lives under `$MEDADV_HOME/synthetic` (default `.medadv/` in the working directory).
    """
    module, fixed = _module_and_fixed(name)
    root = Path(os.environ.get("MEDADV_HOME", ".medadv")) / "synthetic" / f"{name}-seed{seed}"
    if not (root / _COMPLETE_MARKER).exists():
        try:
            root.mkdir(parents=True, exist_ok=True)
            module.write_synthetic(root, seed=seed, **fixed)
            (root / _COMPLETE_MARKER).touch()  # written last: a half-written set is rewritten next time
        except OSError as error:  # a read-only MEDADV_HOME, a full disk
            raise DataError(
                f"{root}: cannot write the synthetic {name} set ({error.strerror or error}); "
                "free some space or point MEDADV_HOME at a writable folder"
            ) from None
    return root


def load_dataset(name: str, data_dir: str | Path | None, split: str = "all", **options: Any) -> Dataset:
    """Load `name` from `data_dir`, or from a generated synthetic set when `data_dir` is empty."""
    module, fixed = _module_and_fixed(name)
    root = Path(data_dir) if data_dir else synthetic_dir(name)
    if not root.exists():
        raise DataError(f"{root}: data folder for {name} not found")
    dataset: Dataset = module.load(root, split, **fixed, **options)  # options checked by loader_options
    if len(dataset) == 0:
        raise DataError(f"{root}: no {split} samples of {name} found")
    return dataset
