"""The `attack` entry point on a real MLflow server: artifacts match metrics, targets, resumption, bad input."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from conftest import EXPERIMENT
from mlflow_server import REPO, run_step, step_env
from test_attacks import EPS, TABLE

from medadv.attacks import AttackError
from medadv.attacks.result import AttackResult
from medadv.errors import MedadvError
from medadv.jobs.attack import AttackSettings, attack


def _artifacts(run_id: str, folder: Path) -> tuple[AttackResult, pd.DataFrame]:
    local = Path(mlflow.artifacts.download_artifacts(run_id=run_id, dst_path=str(folder)))
    return AttackResult.load(local / "attack_result.npz"), pd.read_parquet(local / "samples.parquet")


def test_pgd_fools_the_image_victim_and_its_artifacts_agree_with_its_metrics(
    victims: dict[str, str], tracking_server: str, tmp_path: Path
) -> None:
    done = run_step(
        "attack.py", "--model", "models:/tiny-pneumonia@candidate", "--dataset", "pneumoniamnist",
        "--data_dir", victims["images"], "--split", "train", "--attack", "pgd",
        "--attack_params", "eps=0.1,eps_step=0.02,max_iter=20",
        "--num_samples", "40", "--experiment", EXPERIMENT, tracking_uri=tracking_server, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines()[0].startswith("medadv attack: run ")
    run_id = done.stdout.split("(")[1].split(")")[0]
    run = mlflow.MlflowClient(tracking_server).get_run(run_id)
    result, table = _artifacts(run_id, tmp_path)
    metrics = run.data.metrics
    assert metrics["fooling_rate"] > 0.9
    assert metrics["num_samples"] == len(result) == len(table) <= 40
    assert metrics["fooling_rate"] == pytest.approx(np.mean(result.y_adv != result.y_clean))
    assert metrics["linf_max"] <= 0.1 + 1e-6 and result.x_adv.min() >= 0 and result.x_adv.max() <= 1
    assert list(table["id"]) == list(result.ids)
    assert metrics["psnr_mean"] == pytest.approx(table["psnr"].mean())
    assert metrics["l2_mean"] == pytest.approx(
        np.sqrt((result.delta.reshape(len(result), -1) ** 2).sum(1)).mean(), rel=1e-5
    )
    paths = {a.path for a in mlflow.MlflowClient(tracking_server).list_artifacts(run_id)}
    assert paths == {"attack_result.npz", "samples.parquet", "figures"}  # progress files removed at the end


def test_targeted_attack_on_ecg_reports_success_per_target(victims: dict[str, str], tracking_server: str) -> None:
    settings = AttackSettings(
        model="models:/tiny-cinc@candidate", dataset="cinc2017", data_dir=victims["ecg"], data_options="length=600",
        attack="pgd", attack_params="eps=1.0,eps_step=0.1,max_iter=20,target=-1", num_samples=6,
    )  # fmt: skip
    run_id = attack(settings, tracking_server, EXPERIMENT)
    client = mlflow.MlflowClient(tracking_server)
    matrix = pd.read_csv(client.download_artifacts(run_id, "success_matrix.csv"), index_col=0)
    result = AttackResult.load(Path(client.download_artifacts(run_id, "attack_result.npz")))
    sources = {str(sample_id).split("->")[0] for sample_id in result.ids}
    assert (result.y_target != result.y_true).all() and len(result) == 3 * len(sources)
    for source, target in zip(result.y_true, result.y_target, strict=True):
        pair = (result.y_true == source) & (result.y_target == target)
        assert matrix.iloc[source, target] == pytest.approx(np.mean(result.y_adv[pair] == target))
    assert {"figures/ecg_overlays.png", "figures/perturbations.png"} <= {
        a.path for a in client.list_artifacts(run_id, "figures")
    }
    # every ECG attack run: neurokit2's reading of each record, clean vs adversarial, in samples.parquet and metrics
    table = pd.read_parquet(client.download_artifacts(run_id, "samples.parquet"))
    metrics = client.get_run(run_id).data.metrics
    assert {"beats_matched", "heart_rate_bpm_change", "quality_adv", "snr_db", "max_jump_mv"} <= set(table.columns)
    assert table["beats"].min() >= 1 and table["beats_matched"].between(0, 1).all()
    assert metrics["max_jump_mv_mean"] == pytest.approx(table["max_jump_mv"].mean())
    stealthy = table["success"].astype(bool) & table["clinically_unchanged"].astype(bool)
    assert metrics["stealthy_success_rate"] == pytest.approx(stealthy.mean())


def test_a_run_killed_after_its_first_batches_resumes_to_the_uninterrupted_result(
    victims: dict[str, str], tracking_server: str, tmp_path: Path
) -> None:
    args = [
        "--model", "models:/tiny-pneumonia@candidate", "--dataset", "pneumoniamnist", "--data_dir", victims["images"],
        "--split", "train", "--attack", "pgd", "--attack_params", "eps=0.05,eps_step=0.01,max_iter=30",
        "--num_samples", "48",
        "--batch_size", "4", "--experiment", EXPERIMENT,
    ]  # fmt: skip
    env = step_env(MLFLOW_TRACKING_URI=tracking_server)
    killed = subprocess.Popen(
        [sys.executable, str(REPO / "steps" / "attack.py"), *args], env=env, cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert killed.stdout is not None
    run_id = killed.stdout.readline().split("(")[1].split(")")[0]
    client = mlflow.MlflowClient(tracking_server)
    deadline = time.monotonic() + 300
    while len(client.list_artifacts(run_id, "progress")) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    finished_batches = len(client.list_artifacts(run_id, "progress"))
    assert 2 <= finished_batches < 12, "the kill should land mid-run"

    resumed = run_step("attack.py", *args, "--run_id", run_id, tracking_uri=tracking_server, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming: {finished_batches} finished batches found" in resumed.stdout
    whole = run_step("attack.py", *args, tracking_uri=tracking_server, cwd=tmp_path)
    whole_id = whole.stdout.split("(")[1].split(")")[0]
    resumed_result, _ = _artifacts(run_id, tmp_path / "resumed")
    whole_result, _ = _artifacts(whole_id, tmp_path / "whole")
    assert list(resumed_result.ids) == list(whole_result.ids) and len(set(resumed_result.ids)) == len(resumed_result)
    np.testing.assert_allclose(resumed_result.x_adv, whole_result.x_adv, atol=1e-6)
    assert client.get_run(run_id).data.metrics["fooling_rate"] == client.get_run(whole_id).data.metrics["fooling_rate"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"attack": "magic"}, "unknown attack 'magic'"),
        ({"attack_params": "eps=-0.1"}, "eps"),
        ({"attack_params": "eps=0.1,eps_step=-0.5"}, "eps_step"),
        ({"attack_params": "eps=0.1,target=7"}, "target class 7 is out of range"),
        ({"attack_params": "radius=3"}, "pgd has no parameter radius"),
        ({"shard": "3/2"}, "shard '3/2' is out of range"),
        ({"per_class": "5,x"}, "per_class needs comma-separated counts >= 0 (one per class), got '5,x'"),
        ({"per_class": "5"}, "per_class needs 2 comma-separated counts >= 0 (one per class), got '5'"),
        ({"per_class": "5,5", "num_samples": 4}, "give either num_samples or per_class, not both"),
        ({"model": "models:/tiny-cinc@candidate"}, "takes inputs of shape (600, 1), the data has shape (28, 28, 1)"),
        ({"model": "models:/tiny-pneumonia@nonexistent"}, "cannot resolve model models:/tiny-pneumonia@nonexistent"),
        ({"model": ""}, "give the victim with --model"),
    ],
)
def test_bad_input_fails_before_any_run(
    victims: dict[str, str], tracking_server: str, changes: dict[str, str], message: str
) -> None:
    given = {"model": "models:/tiny-pneumonia@candidate", "dataset": "pneumoniamnist", "data_dir": victims["images"]}
    mlflow.set_tracking_uri(tracking_server)
    before = len(mlflow.search_runs(experiment_names=[EXPERIMENT], output_format="list"))
    with pytest.raises(MedadvError) as error:  # names and strings when the settings are made, the rest in the job
        attack(AttackSettings(**(given | changes)), tracking_server, EXPERIMENT)  # type: ignore[arg-type]
    assert message in str(error.value) and "\n" not in str(error.value)
    assert len(mlflow.search_runs(experiment_names=[EXPERIMENT], output_format="list")) == before


def test_unreachable_server_fails_at_start(tmp_path: Path) -> None:
    done = run_step("attack.py", "--model", "models:/x@y", tracking_uri="http://127.0.0.1:9", cwd=tmp_path)
    assert done.returncode == 1
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith("medadv: error: tracking server http://127.0.0.1:9 is unreachable")
    )


# ART's universal loop runs DeepFool one sample at a time: 1-2 minutes on the 4-class ECG victim. The attack table
# (tests/test_attacks.py) runs it with DeepFool; through the entry point FGSM inside the loop is enough.
ENTRY_POINT_OVERRIDES = {"universal": {"attacker": "fgsm"}}


@pytest.mark.parametrize("victim", ["images", "ecg"])
@pytest.mark.parametrize(("name", "engine", "settings", "minimum"), TABLE, ids=[f"{n}-{e}" for n, e, _, _ in TABLE])
def test_every_attack_runs_through_the_entry_point(  # type: ignore[no-untyped-def]
    victims: dict[str, str],
    tracking_server: str,
    tmp_path: Path,
    victim: str,
    name: str,
    engine: str,
    settings,
    minimum,
) -> None:
    model, dataset, options = {
        "images": ("models:/tiny-pneumonia@candidate", "pneumoniamnist", ""),
        "ecg": ("models:/tiny-cinc@candidate", "cinc2017", "length=600"),
    }[victim]
    chosen = {**settings(EPS["image" if victim == "images" else "ecg"]), **ENTRY_POINT_OVERRIDES.get(name, {})}
    params = ",".join(f"{key}={value}" for key, value in chosen.items())
    run = AttackSettings(
        model=model, dataset=dataset, data_dir=victims[victim], data_options=options, split="train",
        attack=name, engine=engine, attack_params=params, num_samples=3,
    )  # fmt: skip
    if minimum[0 if victim == "images" else 1] is None:  # refused for this kind of input, before any run
        with pytest.raises(AttackError):
            attack(run, tracking_server, EXPERIMENT)
        return
    run_id = attack(run, tracking_server, EXPERIMENT)
    result, table = _artifacts(run_id, tmp_path)
    logged = mlflow.MlflowClient(tracking_server).get_run(run_id)
    assert logged.info.status == "FINISHED" and logged.data.tags["medadv.engine"] == engine
    assert logged.data.metrics["num_samples"] == len(result) == len(table) == 3
    assert logged.data.metrics["fooling_rate"] == pytest.approx(np.mean(result.y_adv != result.y_clean))
