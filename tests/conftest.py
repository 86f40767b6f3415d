"""Shared fixtures: the real sample data (skipped when absent) and tiny trained victims."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import medadv  # noqa: F401  (sets the Keras backend before keras is imported)
from medadv.data.base import Dataset

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
EXPERIMENT = "tests"  # where tests that share the registered victims log their runs


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files holding `slow` tests first, so that `make test`'s workers (one file each) do not wait at the end
    for the longest file."""
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """`../shared/data`, the real sample data sets; tests that need it skip where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real sample data not found at {SHARED_DATA}")
    return SHARED_DATA


def _separable_images(n: int, seed: int) -> Dataset:
    """Two classes of 16x16 grey images: a bright blob on the left or on the right."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.uniform(0.0, 0.3, (n, 16, 16, 1)).astype(np.float32)
    for i, label in enumerate(y):
        x[i, 4:12, 1:7] += 0.6 if label == 0 else 0.0
        x[i, 4:12, 9:15] += 0.6 if label == 1 else 0.0
    x = np.clip(x, 0.0, 1.0)
    ids = np.array([f"img{seed}_{i}" for i in range(n)])
    return Dataset("blobs", "all", x, y.astype(np.int64), ("left", "right"), (0.0, 1.0), ids, "generated")


def _separable_ecgs(n: int, seed: int, length: int = 256) -> Dataset:
    """Four classes of z-scored 1-D signals that differ in their dominant frequency."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    t = np.arange(length) / length
    x = np.stack([np.sin(2 * np.pi * (3 + 4 * c) * t + rng.uniform(0, 6.3)) for c in y])
    x += rng.normal(0, 0.3, x.shape)
    x = (x - x.mean(1, keepdims=True)) / x.std(1, keepdims=True)
    ids = np.array([f"ecg{seed}_{i}" for i in range(n)])
    return Dataset(
        "waves",
        "all",
        x[..., None].astype(np.float32),
        y.astype(np.int64),
        ("A", "N", "O", "~"),
        (-np.inf, np.inf),
        ids,
        "generated",
        lengths=np.full(n, length),
    )


@pytest.fixture(scope="session")
def tiny_image_data() -> Dataset:
    return _separable_images(96, seed=1)


@pytest.fixture(scope="session")
def tiny_ecg_data() -> Dataset:
    return _separable_ecgs(64, seed=1)


def _fit(arch: str, data: Dataset, epochs: int, **options: object):  # type: ignore[no-untyped-def]
    import keras

    from medadv.models import build_model

    keras.utils.set_random_seed(0)
    model = build_model(arch, data.input_shape, data.num_classes, **options)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(data.x, data.y, epochs=epochs, batch_size=32, verbose=0)
    return model


@pytest.fixture(scope="session")
def tiny_image_model(tiny_image_data: Dataset):  # type: ignore[no-untyped-def]
    """A small CNN trained to (near) 100% on `tiny_image_data`."""
    return _fit("small_cnn", tiny_image_data, epochs=15, width=8)


@pytest.fixture(scope="session")
def tiny_ecg_model(tiny_ecg_data: Dataset):  # type: ignore[no-untyped-def]
    """A 2-block ECG ResNet trained on `tiny_ecg_data` (medadv's wide variant: Andreotti's Flatten head overfits
    64 waves, and the attack tests need a victim that is right before it is fooled)."""
    return _fit("ecg_resnet_wide", tiny_ecg_data, epochs=30, num_blocks=2, base_filters=8)


@pytest.fixture(scope="session")
def tracking_server(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """URL of a real `mlflow server` for the whole session (SQLite store and artifacts in a temp dir)."""
    from mlflow_server import mlflow_server

    with mlflow_server(tmp_path_factory.mktemp("mlflow")) as url:
        yield url


@pytest.fixture(scope="session")
def victims(tracking_server: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Two registered tiny victims, trained in-process through the `train` job: images and ECG."""
    from medadv.data import cinc2017, medmnist
    from medadv.jobs.train import TrainSettings, train

    images = tmp_path_factory.mktemp("pneumoniamnist")
    medmnist.write_synthetic(images, flavor="pneumoniamnist")
    ecg = tmp_path_factory.mktemp("cinc")
    cinc2017.write_synthetic(ecg, per_class=10)
    common = {"seed": 0, "learning_rate": 3e-3}
    train(
        TrainSettings(dataset="pneumoniamnist", data_dir=str(images), arch="small_cnn", arch_options="width=8",
                      epochs=6, model_name="tiny-pneumonia", **common),
        tracking_server, EXPERIMENT,
    )  # fmt: skip
    train(
        TrainSettings(dataset="cinc2017", data_dir=str(ecg), data_options="length=600", arch="ecg_resnet_wide",
                      arch_options="num_blocks=2,base_filters=8", epochs=6, model_name="tiny-cinc", **common),
        tracking_server, EXPERIMENT,
    )  # fmt: skip
    return {"images": str(images), "ecg": str(ecg)}


REAL_CINC = "models:/real-cinc@candidate"
REAL_CINC_OPTIONS = "length=4500"


def train_real_cinc(shared_data: Path, tracking_server: str, model_name: str, data_options: str = "") -> str:
    """Train the small ECG ResNet (6 blocks x 16 filters) through `train` on the real CinC 2017 records and
    register it as `model_name`; returns the data folder."""
    from medadv.jobs.train import TrainSettings, train

    data_dir = str(shared_data / "cinc2017")
    # medadv's wide ResNet: Andreotti's Flatten head (18k features at 15 s) overfits the 141 training records
    train(
        TrainSettings(dataset="cinc2017", data_dir=data_dir, data_options=data_options, arch="ecg_resnet_wide",
                      arch_options="num_blocks=6,base_filters=16", epochs=25, batch_size=16, model_name=model_name),
        tracking_server, EXPERIMENT,
    )  # fmt: skip
    return data_dir


@pytest.fixture(scope="session")
def real_cinc_victim(shared_data: Path, tracking_server: str) -> str:
    """The small ResNet on the real records cropped to 15 s, registered as `real-cinc`; returns the data folder."""
    return train_real_cinc(shared_data, tracking_server, "real-cinc", REAL_CINC_OPTIONS)
