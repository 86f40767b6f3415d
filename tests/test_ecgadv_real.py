"""The test command's short real-data check of ECGadv: Type I and Type II on a few real CinC 2017 records at a
small budget (about two minutes on 2 CPU cores). The study's full figures stay under `pytest -m study`
(tests/test_ecgadv_job.py); this one runs on every change, so a wrong standardisation, gain or padding of real
records fails here too."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import keras
import mlflow
import numpy as np
import pandas as pd
import pytest
from conftest import EXPERIMENT
from mlflow_server import step_env

from medadv.attacks.result import AttackResult
from medadv.data import load_dataset
from medadv.jobs.attack import AttackSettings, attack

OPTIONS = {"length": 1500}  # 5 s: every record is longer, so none is padded and each crop is real signal


# Trained in a fresh process: its weights are then the same on every run, whatever tests ran before in this worker
# (an earlier test's global state once gave a victim that no Type II window could fool at this budget).
TRAIN_VICTIM = """
import sys
import keras
import numpy as np
from medadv.data import load_dataset
from medadv.models import build_model

data_dir, path, length = sys.argv[1:]
train = load_dataset("cinc2017", data_dir, "train", length=int(length))
keras.utils.set_random_seed(0)
model = build_model("ecg_resnet_wide", train.input_shape, train.num_classes, num_blocks=2, base_filters=8)
model.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy())
counts = np.bincount(train.y, minlength=train.num_classes)
weights = {index: len(train.y) / (train.num_classes * count) for index, count in enumerate(counts)}
model.fit(train.x, train.y, epochs=20, batch_size=16, class_weight=weights, verbose=0)
model.save(path)
"""


@pytest.fixture(scope="module")
def short_real_victim(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A small ResNet (2 blocks x 8 filters) fitted on 5 s crops (`OPTIONS`) of the real training records with
    class weights (without them it answers N, the majority class, for every record), saved as a Keras file:
    (model path, data folder)."""
    data_dir = str(shared_data / "cinc2017")
    path = tmp_path_factory.mktemp("real-cinc-short") / "victim.keras"
    command = [sys.executable, "-c", TRAIN_VICTIM, data_dir, str(path), str(OPTIONS["length"])]
    subprocess.run(command, env=step_env(), check=True)
    return str(path), data_dir


def _attack(victim: tuple[str, str], tracking_server: str, name: str, params: str, **extra: object) -> str:
    settings = AttackSettings(
        model=victim[0], dataset="cinc2017", data_dir=victim[1], data_options="length=1500", split="all", attack=name,
        attack_params=f"target=-1,{params}", **({"num_samples": 3} | extra),  # type: ignore[arg-type]
    )  # fmt: skip
    return attack(settings, tracking_server, EXPERIMENT)


def _logged(run_id: str, tracking_server: str) -> tuple[AttackResult, pd.DataFrame]:
    client = mlflow.MlflowClient(tracking_server)
    result = AttackResult.load(Path(client.download_artifacts(run_id, "attack_result.npz")))
    return result, pd.read_parquet(client.download_artifacts(run_id, "samples.parquet"))


def test_type1_on_real_records_fools_the_victim_it_reports_and_smooth_perturbs_more_smoothly(
    short_real_victim: tuple[str, str], tracking_server: str
) -> None:
    """3 correctly classified real records, each toward the 3 other classes (9 pairs), with l2 and smooth."""
    tables = {}
    for metric in ("l2", "smooth"):
        run_id = _attack(short_real_victim, tracking_server, "ecgadv_type1", f"metric={metric},max_iterations=200")
        result, tables[metric] = _logged(run_id, tracking_server)
        assert len(result.x) == 9 and tables[metric]["success"].mean() >= 0.5, metric
        # the reported success is what the registered model predicts on the logged adversarial records
        replayed = keras.saving.load_model(short_real_victim[0]).predict(result.x_adv, verbose=0).argmax(axis=1)
        np.testing.assert_array_equal(replayed, result.y_adv)
        # the perturbation is in the records' own units (mV): real ECG amplitudes are about 0.1-5 mV
        assert 0.05 < np.abs(result.x).max() < 20 and np.abs(result.delta).max() < np.abs(result.x).max()
    both = tables["l2"]["success"].astype(bool) & tables["smooth"]["success"].astype(bool)
    assert both.sum() >= 3
    assert tables["smooth"].loc[both, "d_smooth"].mean() < tables["l2"].loc[both, "d_smooth"].mean()


def test_type2_on_real_records_learns_a_window_and_evaluates_it_on_the_class_records(
    short_real_victim: tuple[str, str], tracking_server: str
) -> None:
    """6 records x 3 targets; windows of the whole 5 s record, 5 shifted copies per step, 5 x 30 iterations; each
    window added at 3 random positions to every correctly classified record of its source class."""
    run_id = _attack(
        short_real_victim, tracking_server, "ecgadv_type2", "window=1500,ensemble_size=5,max_iterations=30",
        universal_positions=3, num_samples=6,
    )  # fmt: skip
    _, table = _logged(run_id, tracking_server)
    assert table["success"].mean() > 0
    client = mlflow.MlflowClient(tracking_server)
    universal = pd.read_csv(client.download_artifacts(run_id, "universal.csv"), index_col="pair")
    assert len(universal) >= 1
    # the study's records: every record of the source class that the victim classifies correctly, none dropped
    data = load_dataset("cinc2017", short_real_victim[1], "all", **OPTIONS)
    predicted = keras.saving.load_model(short_real_victim[0]).predict(data.x, verbose=0).argmax(axis=1)
    correct = np.bincount(data.y[predicted == data.y], minlength=data.num_classes)
    np.testing.assert_array_equal(universal["records"], correct[universal["source"]])
    shares = universal[[f"share_{name}" for name in data.class_names]].to_numpy()
    np.testing.assert_allclose(shares.sum(axis=1), 1.0, atol=1e-6)
    targets = universal["target"].to_numpy()
    np.testing.assert_allclose(universal["target_share"], shares[np.arange(len(shares)), targets])
    # a learned window moves the victim toward its target more often than a real record of the target class does
    assert universal["target_share"].mean() > universal["control_target_share"].mean()
