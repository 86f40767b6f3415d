"""Image loaders: each reads a synthetic set written by its own writer in the real format, the real samples in
../shared/data, and fails with a one-line DataError naming the file on each malformed input."""

from __future__ import annotations

import gzip
import importlib
import pathlib
import pickle
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from medadv.data import DATASETS, cifar10, kermany, load_dataset, medmnist, mnist, nih
from medadv.data.base import SPLITS, DataError, Dataset, split_of

# registry name -> (options for load, the input shape they give, number of classes)
IMAGE_SETS: dict[str, tuple[dict[str, Any], tuple[int, ...], int]] = {
    "pneumoniamnist": ({}, (28, 28, 1), 2),
    "octmnist": ({}, (28, 28, 1), 4),
    "chestmnist": ({}, (28, 28, 1), 2),
    "chest_xray": ({"image_size": 32}, (32, 32, 1), 2),
    "oct2017": ({"image_size": 32}, (32, 32, 1), 4),
    "nih_pneumothorax": ({"image_size": 32}, (32, 32, 1), 2),
    "nih_cardiomegaly": ({"image_size": 32}, (32, 32, 1), 2),
    "mnist": ({}, (28, 28, 1), 10),
    "cifar10": ({}, (32, 32, 3), 10),
}

WriteSet = Callable[[str], Path]


@pytest.fixture(scope="session")
def written(tmp_path_factory: pytest.TempPathFactory) -> WriteSet:
    """Registry name -> a folder holding its synthetic set at the writer's default sizes, written once."""
    roots: dict[str, Path] = {}

    def write(name: str) -> Path:
        if name not in roots:
            module, fixed = _module(name)
            roots[name] = tmp_path_factory.mktemp(name)
            module.write_synthetic(roots[name], seed=0, **fixed)
        return roots[name]

    return write


def _module(name: str) -> tuple[Any, dict[str, str]]:
    module_name, fixed = DATASETS[name]
    return importlib.import_module(module_name), fixed


def _load(name: str, root: Path, split: str) -> Dataset:
    module, fixed = _module(name)
    data: Dataset = module.load(root, split, **fixed, **IMAGE_SETS[name][0])
    return data


def _fresh_copy(written: WriteSet, name: str, tmp_path: Path) -> Path:
    """A private copy of the synthetic set, for the tests that damage it."""
    return Path(shutil.copytree(written(name), tmp_path / name))


# --- the synthetic sets through their real loaders ---------------------------------------------------------


@pytest.mark.parametrize("name", IMAGE_SETS)
def test_synthetic_set_meets_the_dataset_contract(written: WriteSet, name: str) -> None:
    _, input_shape, num_classes = IMAGE_SETS[name]
    root = written(name)
    parts = {split: _load(name, root, split) for split in SPLITS}
    for split, data in parts.items():
        assert (data.name, data.split) == (name, split)
        assert data.input_shape == input_shape and data.num_classes == num_classes
        assert data.x.dtype == np.float32 and data.y.dtype == np.int64
        assert data.x.min() >= 0.0 and data.x.max() <= 1.0 and data.clip_range == (0.0, 1.0)
        assert set(data.y) <= set(range(num_classes))
        assert len(set(data.ids)) == len(data) > 0
        assert data.source.startswith(str(root))
    assert set(parts["all"].y) == set(range(num_classes))  # every class is written
    split_ids = [set(parts[split].ids) for split in ("train", "val", "test")]
    assert sum(len(ids) for ids in split_ids) == len(parts["all"])
    assert set.union(*split_ids) == set(parts["all"].ids)  # the three splits partition "all"


# 1-nearest-neighbour accuracy train -> test that the synthetic classes must reach (chance is 1 / classes)
LEARNABLE = {
    "pneumoniamnist": 0.9,
    "octmnist": 0.7,
    "chestmnist": 0.7,
    "chest_xray": 0.9,
    "oct2017": 0.7,
    "nih_pneumothorax": 0.8,
    "nih_cardiomegaly": 0.8,
    "mnist": 0.5,
    "cifar10": 0.6,
}


@pytest.mark.parametrize("name", LEARNABLE)
def test_synthetic_classes_are_learnable(written: WriteSet, name: str) -> None:
    train, test = _load(name, written(name), "train"), _load(name, written(name), "test")
    distances = ((test.x.reshape(len(test), 1, -1) - train.x.reshape(1, len(train), -1)) ** 2).sum(axis=2)
    accuracy = float((train.y[distances.argmin(axis=1)] == test.y).mean())
    assert accuracy >= LEARNABLE[name], f"{name}: 1-NN accuracy {accuracy:.2f}"


@pytest.mark.parametrize("name", IMAGE_SETS)
def test_registry_loads_each_set(written: WriteSet, name: str) -> None:
    data = load_dataset(name, written(name), "train", **IMAGE_SETS[name][0])
    assert data.name == name and len(data) > 0


@pytest.mark.parametrize("name", IMAGE_SETS)
def test_unknown_split_is_refused(written: WriteSet, name: str) -> None:
    with pytest.raises(DataError, match="unknown split 'holdout'"):
        _load(name, written(name), "holdout")


def test_same_seed_writes_the_same_set(tmp_path: Path) -> None:
    for folder in ("a", "b"):
        medmnist.write_synthetic(tmp_path / folder, seed=3, flavor="octmnist")
    first, second = (medmnist.load(tmp_path / folder, "all", flavor="octmnist") for folder in ("a", "b"))
    assert first.fingerprint() == second.fingerprint()


# --- split rules ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["nih_pneumothorax", "nih_cardiomegaly"])
def test_nih_rows_labels_and_patient_split(written: WriteSet, name: str) -> None:
    root = written(name)
    task = DATASETS[name][1]["task"]
    table = pd.read_csv(root / "Data_Entry_2017_v2020.csv", dtype=str).set_index("Image Index")
    on_disk = {path.name for path in root.rglob("*.png")}
    findings = table["Finding Labels"].str.lower()
    eligible = table[table.index.isin(on_disk) & (findings.str.contains(task) | (findings == "no finding"))]
    assert len(eligible) < len(table)  # the writer lists absent images and other diseases, which are left out
    everything = _load(name, root, "all")
    assert list(everything.ids) == sorted(eligible.index)
    expected = [int(task in table.loc[image, "Finding Labels"].lower()) for image in everything.ids]
    assert everything.y.tolist() == expected
    patients = {split: set(table.loc[_load(name, root, split).ids, "Patient ID"]) for split in ("train", "val", "test")}
    assert not patients["train"] & patients["val"] and not patients["train"] & patients["test"]
    assert not patients["val"] & patients["test"]
    assert all(split_of(patient) == split for split, group in patients.items() for patient in group)


def test_kermany_uses_the_val_folder_or_carves_val_out_of_train(written: WriteSet) -> None:
    chest = {split: _load("chest_xray", written("chest_xray"), split) for split in ("train", "val", "test")}
    assert all(image_id.startswith(f"{split}/") for split, data in chest.items() for image_id in data.ids)
    oct_root = written("oct2017")
    assert not (oct_root / "val").exists()
    train, val = _load("oct2017", oct_root, "train"), _load("oct2017", oct_root, "val")
    on_disk = {path.relative_to(oct_root).as_posix() for path in (oct_root / "train").rglob("*.jpeg")}
    assert set(train.ids) | set(val.ids) == on_disk and not set(train.ids) & set(val.ids)
    patient_of = {image_id: image_id.split("-")[1] for image_id in on_disk}  # CNV-<patient>-<n>.jpeg
    assert all(split_of(patient_of[image_id]) == "val" for image_id in val.ids)


def test_kermany_finds_the_release_folder_and_resizes(written: WriteSet, tmp_path: Path) -> None:
    shutil.copytree(written("chest_xray"), tmp_path / "chest_xray")
    data = kermany.load(tmp_path, "test", flavor="chest_xray", image_size=20)
    assert data.input_shape == (20, 20, 1) and data.source == str(tmp_path / "chest_xray")


def test_mnist_carves_val_from_train_and_keeps_official_test(written: WriteSet) -> None:
    parts = {split: _load("mnist", written("mnist"), split) for split in ("train", "val", "test")}
    assert all(i.startswith("train_") for split in ("train", "val") for i in parts[split].ids)
    assert all(i.startswith("test_") for i in parts["test"].ids)
    assert len(parts["test"]) == 40  # the writer's whole t10k part


def test_mnist_reads_keras_npz(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    arrays: dict[str, Any] = {
        "x_train": rng.integers(0, 256, (30, 28, 28), dtype=np.uint8),
        "y_train": np.arange(30, dtype=np.uint8) % 10,
    }
    arrays |= {"x_test": arrays["x_train"][:5], "y_test": arrays["y_train"][:5]}
    np.savez(tmp_path / "mnist.npz", **arrays)
    data = mnist.load(tmp_path, "test")
    assert data.ids.tolist() == [f"test_{i}" for i in range(5)]
    np.testing.assert_array_equal(data.x[..., 0], arrays["x_test"] / np.float32(255))
    assert data.y.tolist() == [0, 1, 2, 3, 4]


def test_idx_round_trip_and_hand_made_header(tmp_path: Path) -> None:
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    mnist.write_idx(tmp_path / "a.gz", array)
    raw = gzip.decompress((tmp_path / "a.gz").read_bytes())
    assert raw[:16] == bytes([0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4])  # magic 0x00000803, dims 2, 3, 4
    np.testing.assert_array_equal(mnist.read_idx(tmp_path / "a.gz"), array)
    (tmp_path / "b").write_bytes(bytes([0, 0, 0x0B, 1, 0, 0, 0, 2, 1, 2, 255, 254]))  # plain file, big-endian int16
    assert mnist.read_idx(tmp_path / "b").tolist() == [258, -2]


def test_cifar_planes_become_channels_last(tmp_path: Path) -> None:
    cifar10.write_synthetic(tmp_path, per_batch=2)
    batch_path = tmp_path / "cifar-10-batches-py" / "test_batch"
    with batch_path.open("rb") as file:
        batch = pickle.load(file, encoding="bytes")
    data = cifar10.load(tmp_path, "test")
    row = batch[b"data"][1]  # red plane, then green, then blue, each 32x32 row-major
    pixel = data.x[1, 2, 5] * 255  # row 2, column 5
    assert np.allclose(pixel, [row[2 * 32 + 5], row[1024 + 2 * 32 + 5], row[2048 + 2 * 32 + 5]])
    assert data.y.tolist() == batch[b"labels"]


# --- the real samples in ../shared/data ------------------------------------------------------------------------


def test_real_pneumoniamnist_official_splits(shared_data: Path) -> None:
    sizes = {split: len(medmnist.load(shared_data, split, flavor="pneumoniamnist")) for split in SPLITS}
    assert sizes == {"train": 4708, "val": 524, "test": 624, "all": 5856}
    test = medmnist.load(shared_data / "pneumoniamnist.npz", "test", flavor="pneumoniamnist")
    assert test.class_names == ("normal", "pneumonia") and set(test.y) == {0, 1}


def test_real_nih_sample(shared_data: Path) -> None:
    cardiomegaly = nih.load(shared_data / "nih", "all", task="cardiomegaly", image_size=64)
    assert cardiomegaly.ids.tolist() == ["00000001_000.png", "00027426_000.png"]
    assert cardiomegaly.y.tolist() == [1, 0] and cardiomegaly.input_shape == (64, 64, 1)
    pneumothorax = nih.load(shared_data / "nih", "all", task="pneumothorax", image_size=64)
    assert pneumothorax.ids.tolist() == ["00027426_000.png"] and pneumothorax.y.tolist() == [0]


def test_real_mnist_t10k_alone_is_hash_split(shared_data: Path) -> None:
    parts = {split: mnist.load(shared_data / "mnist", split) for split in SPLITS}
    assert len(parts["all"]) == 10_000 and parts["all"].input_shape == (28, 28, 1)
    assert sum(len(parts[split]) for split in ("train", "val", "test")) == 10_000
    assert all(split_of(i) == "val" for i in parts["val"].ids)
    assert np.bincount(parts["all"].y).tolist()[:2] == [980, 1135]  # MNIST's t10k zeros and ones


# --- malformed input: one line, naming the file ----------------------------------------------------------------


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _without(path: Path) -> None:
    path.unlink()


def _unknown_class(path: Path) -> None:
    (path / "COVID").mkdir()


def _garbage(path: Path) -> None:
    path.write_bytes(b"not an image at all")


def _drop_csv_column(path: Path) -> None:
    pd.read_csv(path).drop(columns="Patient ID").to_csv(path, index=False)


def _npz_without_labels(path: Path) -> None:
    with np.load(path) as archive:
        kept: dict[str, Any] = {key: archive[key] for key in archive.files if key != "test_labels"}
    np.savez(path, **kept)


def _short_idx_payload(path: Path) -> None:
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-5]))


def _bad_idx_magic(path: Path) -> None:
    path.write_bytes(gzip.compress(b"\x08\x03\x00\x00" + gzip.decompress(path.read_bytes())[4:]))


def _garbage_every_png(folder: Path) -> None:
    for path in folder.glob("*.png"):
        _garbage(path)


def _npz_labels_one_short(path: Path) -> None:
    """Labels that disagree with the images beside them: one fewer."""
    with np.load(path) as archive:
        kept: dict[str, Any] = {key: archive[key] for key in archive.files}
    kept["train_labels"] = kept["train_labels"][:-1]
    np.savez(path, **kept)


def _npz_label_out_of_range(path: Path) -> None:
    with np.load(path) as archive:
        kept: dict[str, Any] = {key: archive[key] for key in archive.files}
    kept["val_labels"][0] = 7  # PneumoniaMNIST has classes 0 and 1
    np.savez(path, **kept)


def _empty_class_folder(path: Path) -> None:
    for image in path.iterdir():
        image.unlink()


def _idx_labels_one_short(path: Path) -> None:
    mnist.write_idx(path, mnist.read_idx(path)[:-1])  # a valid IDX file whose count disagrees with the images'


def _cifar_labels_one_short(path: Path) -> None:
    with path.open("rb") as handle:
        content = pickle.load(handle, encoding="bytes")
    content[b"labels"] = content[b"labels"][:-1]
    with path.open("wb") as handle:
        pickle.dump(content, handle)


# (data set, path to damage, damage, the path the message must name, what it says); "." is the data set's root
MALFORMED: list[tuple[str, str, Callable[[Path], None], str, str]] = [
    ("pneumoniamnist", "pneumoniamnist.npz", _without, "pneumoniamnist.npz", "not found"),
    ("pneumoniamnist", "pneumoniamnist.npz", _truncate, "pneumoniamnist.npz", "corrupt or truncated"),
    ("octmnist", "octmnist.npz", _npz_without_labels, "octmnist.npz", "missing array(s) test_labels"),
    ("chest_xray", "train", _unknown_class, "train/COVID", "unknown class folder"),
    ("oct2017", "test", shutil.rmtree, "test", "test split folder not found"),
    ("oct2017", "train/DME/DME-1011-1.jpeg", _garbage, "train/DME/DME-1011-1.jpeg", "cannot read image"),
    ("nih_cardiomegaly", "Data_Entry_2017_v2020.csv", _without, ".", "no NIH metadata table"),
    ("nih_cardiomegaly", "Data_Entry_2017_v2020.csv", _drop_csv_column, "Data_Entry_2017_v2020.csv", "lacks"),
    ("nih_pneumothorax", "images_001", shutil.rmtree, ".", "none of the images listed"),
    ("nih_pneumothorax", "images_001/images", _garbage_every_png, "images_001/images/", "cannot read image"),
    ("mnist", "t10k-labels-idx1-ubyte.gz", _without, "t10k-labels-idx1-ubyte.gz", "needs both its images and"),
    ("mnist", "train-images-idx3-ubyte.gz", _truncate, "train-images-idx3-ubyte.gz", "corrupt or truncated gzip"),
    ("mnist", "train-images-idx3-ubyte.gz", _short_idx_payload, "train-images-idx3-ubyte.gz", "truncated or corrupt"),
    ("mnist", "t10k-images-idx3-ubyte.gz", _bad_idx_magic, "t10k-images-idx3-ubyte.gz", "not an IDX file"),
    ("cifar10", "cifar-10-batches-py/batches.meta", _without, "cifar-10-batches-py/batches.meta", "not found"),
    ("cifar10", "cifar-10-batches-py/data_batch_3", _without, "cifar-10-batches-py/data_batch_3", "not found"),
    ("cifar10", "cifar-10-batches-py/test_batch", _truncate, "cifar-10-batches-py/test_batch", "truncated"),
    # files that disagree with themselves (issue 16, class 1)
    ("pneumoniamnist", "pneumoniamnist.npz", _npz_labels_one_short, "pneumoniamnist.npz", "must have shape"),
    ("pneumoniamnist", "pneumoniamnist.npz", _npz_label_out_of_range, "pneumoniamnist.npz", "labels outside 0..1"),
    ("chest_xray", "test/NORMAL", _empty_class_folder, "test", "no images of class(es) NORMAL"),
    ("mnist", "t10k-labels-idx1-ubyte.gz", _idx_labels_one_short, ".", "must be uint8 images (n, h, w) with n labels"),
    ("cifar10", "cifar-10-batches-py/data_batch_2", _cifar_labels_one_short, "cifar-10-batches-py/data_batch_2", "one"),
]


@pytest.mark.parametrize(("name", "target", "damage", "named", "message"), MALFORMED)
def test_malformed_input_fails_naming_the_file(
    written: WriteSet,
    tmp_path: Path,
    name: str,
    target: str,
    damage: Callable[[Path], None],
    named: str,
    message: str,
) -> None:
    root = _fresh_copy(written, name, tmp_path)
    damage(root / target)
    with pytest.raises(DataError) as raised:
        _load(name, root, "all")
    text = str(raised.value)
    assert message in text and "\n" not in text
    assert text.startswith(str(root) if named == "." else f"{root}/{named}")


def test_cifar_refuses_a_pickle_that_would_run_code(written: WriteSet, tmp_path: Path) -> None:
    root = _fresh_copy(written, "cifar10", tmp_path)
    marker = tmp_path / "payload-ran"

    class Payload:
        def __reduce__(self) -> tuple[Any, tuple[Path]]:
            return pathlib.Path.touch, (marker,)

    (root / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps(Payload()))
    with pytest.raises(DataError, match="refusing to load the global pathlib"):
        cifar10.load(root, "test")
    assert not marker.exists()


def test_mnist_without_files_points_at_download(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no MNIST IDX files .* download=True"):
        mnist.load(tmp_path, "train")


@pytest.mark.parametrize(
    ("module", "options", "message"),
    [
        (medmnist, {"flavor": "dermamnist"}, "unknown MedMNIST flavor"),
        (kermany, {"flavor": "covid"}, "unknown Kermany flavor"),
        (kermany, {"flavor": "oct2017", "image_size": 0}, "image_size must be a positive int"),
        (nih, {"task": "effusion"}, "unknown NIH task"),
    ],
)
def test_bad_options_are_refused_before_reading(
    tmp_path: Path, module: Any, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(DataError, match=message):
        module.load(tmp_path, "train", **options)
