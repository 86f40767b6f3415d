"""The CinC 2017 loader on the real records and on synthetic ones written in the same format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io

from medadv.data import DataError, cinc2017, load_dataset


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cinc")
    cinc2017.write_synthetic(root, per_class=3)
    return root


def test_synthetic_records_have_the_real_formats_quirks(synthetic: Path) -> None:
    header = (synthetic / "S00001.hea").read_bytes()
    assert header.count(b"\r\n") == 2  # CRLF line ends
    first = header.split(b"\r\n")[0].split()
    assert first[2:4] == [b"300", first[3]] and first[4].count(b"-") == 2 and first[5].count(b":") == 2  # date, time
    val = scipy.io.loadmat(synthetic / "S00001.mat")["val"]
    assert val.dtype == np.int16 and val.shape[0] == 1
    assert (synthetic / "REFERENCE-v3.csv").read_text().splitlines()[0] == "S00001,A"


def test_loader_preprocesses_as_the_study(synthetic: Path) -> None:
    data = cinc2017.load(synthetic, "all", length=9000)
    assert data.x.shape == (12, 9000, 1) and data.x.dtype == np.float32
    assert sorted(np.bincount(data.y)) == [3, 3, 3, 3]
    for x, length in zip(data.x[:, :, 0], data.lengths, strict=True):
        assert x[:length].mean() == pytest.approx(0, abs=1e-4) and x[:length].std() == pytest.approx(1, abs=1e-3)
        assert not x[length:].any()  # zero padding after the record
    raw = scipy.io.loadmat(synthetic / f"{data.ids[0]}.mat")["val"][0, :600].astype(float)
    np.testing.assert_allclose(
        cinc2017.load(synthetic, "all", length=600).x[0, :, 0], (raw - raw.mean()) / raw.std(), rtol=1e-5
    )


def test_splits_partition_the_records(synthetic: Path) -> None:
    parts = [set(cinc2017.load(synthetic, split, length=100).ids) for split in ("train", "val", "test")]
    assert set.union(*parts) == set(cinc2017.load(synthetic, "all", length=100).ids)
    assert sum(map(len, parts)) == 12


def test_nan_samples_become_zero_before_scoring() -> None:
    cleaned = np.array([1.0, 0.0, 3.0])
    expected = [*((cleaned - cleaned.mean()) / cleaned.std()), 0.0]  # z-scored, then zero-padded to 4
    np.testing.assert_allclose(cinc2017.preprocess(np.array([1.0, np.nan, 3.0]), 4)[:, 0], expected, rtol=1e-6)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda root: (root / "REFERENCE-v3.csv").unlink(), "no REFERENCE*.csv label file found"),
        (lambda root: (root / "S00002.mat").unlink(), "S00002.mat: record listed in the label file but not found"),
        (
            lambda root: scipy.io.savemat(root / "S00003.mat", {"val": np.zeros((1, 50))}, format="4"),
            "S00003.mat: 'val' must be int16 of shape (1, n), found float64",
        ),
        (
            lambda root: (root / "S00004.mat").write_bytes(b"\x00" * 7),
            "S00004.mat: cannot read a MATLAB v4 'val' array",
        ),
        (lambda root: (root / "REFERENCE-v3.csv").write_text("S00001,X\n"), "bad row 'S00001,X'"),
        (
            lambda root: (root / "S00001.hea").write_text("S00001 1 500 10\r\nS00001.mat 16 1000/mV\r\n"),
            "S00001.hea: sampled at 500 Hz",
        ),
        # headers that disagree with their records (issue 16, class 1)
        (
            lambda root: (root / "S00002.hea").write_text("S00002 1 300 12345\r\nS00002.mat 16 1000/mV\r\n"),
            "S00002.hea: declares 12345 samples, but S00002.mat holds",
        ),
        (
            lambda root: (root / "S00003.hea").write_text("S00003 2 300 10\r\nS00003.mat 16 1000/mV\r\n"),
            "S00003.hea: declares 2 signals",
        ),
        (
            lambda root: (root / "S00004.hea").write_text("S00004 1 300 10\r\nS00004.mat 16 -5/mV\r\n"),
            "S00004.hea: gain must be positive",
        ),
    ],
)
def test_malformed_sets_fail_with_one_line_naming_the_file(tmp_path: Path, damage, message: str) -> None:  # type: ignore[no-untyped-def]
    cinc2017.write_synthetic(tmp_path, per_class=1, min_seconds=2, max_seconds=3)
    damage(tmp_path)
    with pytest.raises(DataError) as error:
        cinc2017.load(tmp_path, "all", length=300)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_real_records_load_through_the_same_path(shared_data: Path) -> None:
    data = load_dataset("cinc2017", shared_data / "cinc2017", "all")
    assert len(data) == 201 and data.x.shape[1:] == (9000, 1)
    assert dict(zip(data.class_names, np.bincount(data.y), strict=True)) == {"A": 32, "N": 98, "O": 44, "~": 27}
    assert data.lengths.min() < 9000 and np.isfinite(data.x).all()


@pytest.mark.study  # trains the 6-block ResNet on the 201 records (2-3 minutes); the `study` tests share it
def test_small_resnet_trained_on_real_records_beats_the_majority_baseline(
    real_cinc_victim: str, tracking_server: str
) -> None:
    import mlflow
    from conftest import REAL_CINC, REAL_CINC_OPTIONS

    from medadv.data import loader_options
    from medadv.tracking.registry import load_model

    mlflow.set_tracking_uri(tracking_server)
    model = load_model(REAL_CINC)
    options = loader_options("cinc2017", REAL_CINC_OPTIONS)
    held_out = [load_dataset("cinc2017", real_cinc_victim, split, **options) for split in ("val", "test")]
    x, y = np.concatenate([d.x for d in held_out]), np.concatenate([d.y for d in held_out])
    accuracy = np.mean(model.predict(x, verbose=0).argmax(1) == y)
    majority = np.bincount(y).max() / len(y)
    print(f"\nREAL CINC victim: accuracy {accuracy:.3f}, majority {majority:.3f}, n={len(y)}")
    assert accuracy > majority, f"accuracy {accuracy:.3f} <= majority baseline {majority:.3f}"


def test_mv_per_unit_brings_a_preprocessed_record_back_to_mv(synthetic: Path) -> None:
    data = cinc2017.load(synthetic, length=9000)
    raw = scipy.io.loadmat(synthetic / f"{data.ids[0]}.mat")["val"][0, :9000].astype(np.float64)
    millivolts = data.x[0, : data.lengths[0], 0] * data.mv_per_unit[0]
    np.testing.assert_allclose(millivolts, (raw - raw.mean()) / cinc2017.GAIN_PER_MV, atol=1e-5)
    assert data.fs_hz == cinc2017.FS_HZ and len(data.subset(np.array([1, 2])).mv_per_unit) == 2
