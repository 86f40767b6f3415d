"""Faults of issue 16 through the `train` entry point as real processes against a real MLflow server: a training
killed with SIGKILL resumes from its last finished epoch to the model an uninterrupted run ends with, and a full
disk (a file-size limit, as `ulimit -f` sets) fails in one line with nothing half-written reported as finished.
"""

from __future__ import annotations

import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow_server import REPO, run_step, step_env

from medadv.data import synthetic_dir
from medadv.tracking.checkpoints import CHECKPOINTS
from medadv.tracking.registry import load_model

pytestmark = pytest.mark.faults  # minutes: run with `pytest -m faults`
TINY = (
    "--dataset", "pneumoniamnist", "--arch", "small_cnn", "--arch_options", "width=4", "--epochs", "3",
    "--batch_size", "16", "--seed", "0", "--experiment", "faults",
)  # fmt: skip


def _run_id(stdout: str) -> str:
    """The run id from a step's banner, `medadv STEP: run NAME (ID), ...`."""
    return stdout.split("(", 1)[1].split(")", 1)[0]


def _limit_file_size(limit_bytes: int) -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))  # Python ignores SIGXFSZ: EFBIG instead


def _train(*args: str, home: Path, url: str, limit_bytes: int | None = None) -> subprocess.Popen[str]:
    env = step_env(MLFLOW_TRACKING_URI=url, MEDADV_HOME=str(home))
    return subprocess.Popen(
        [sys.executable, str(REPO / "steps" / "train.py"), *TINY, *args], cwd=home.parent, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        preexec_fn=None if limit_bytes is None else lambda: _limit_file_size(limit_bytes),
    )  # fmt: skip


def _resume(run_id: str, model_name: str, url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_step("train.py", *TINY, "--model_name", model_name, "--run_id", run_id, tracking_uri=url, cwd=cwd)


def _versions(client: mlflow.MlflowClient, run_id: str) -> list[str]:
    return [v.version for v in client.search_model_versions(f"run_id = '{run_id}'")]


def test_a_training_killed_mid_run_resumes_to_the_same_model(tracking_server: str, tmp_path: Path) -> None:
    client = mlflow.MlflowClient(tracking_server)
    home = tmp_path / ".medadv"
    whole = run_step("train.py", *TINY, "--model_name", "faults-whole", tracking_uri=tracking_server, cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr[-3000:]

    killed = _train("--model_name", "faults-killed", home=home, url=tracking_server)
    assert killed.stdout is not None
    run_id = _run_id(killed.stdout.readline())
    deadline = time.monotonic() + 300
    while not client.list_artifacts(run_id, CHECKPOINTS) and time.monotonic() < deadline:
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)  # after its first finished epoch, at most its third
    killed.wait(timeout=60)
    at_kill = client.get_run(run_id)
    assert at_kill.info.status == "RUNNING" and _versions(client, run_id) == []  # stopped mid-run, not finished
    assert client.list_artifacts(run_id, CHECKPOINTS)

    resumed = _resume(run_id, "faults-killed", tracking_server, tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming: " in resumed.stdout and " of 3 epochs done" in resumed.stdout
    done = resumed.stdout.split("resuming: ", 1)[1].split(" of ", 1)[0]
    print(f"\nRELIABILITY train killed: after {done} of 3 epochs; resumed from there")

    mlflow.set_tracking_uri(tracking_server)
    expected = load_model(f"runs:/{_run_id(whole.stdout)}/model").get_weights()
    for got, want in zip(load_model(f"runs:/{run_id}/model").get_weights(), expected, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-6)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and "medadv.writer" not in run.data.tags
    assert sorted(m.step for m in client.get_metric_history(run_id, "loss")) == [0, 1, 2]  # each epoch once
    assert _versions(client, run_id) == ["1"]  # registered once
    assert client.list_artifacts(run_id, CHECKPOINTS) == []  # removed once the model is registered

    again = _resume(run_id, "faults-killed", tracking_server, tmp_path)
    assert again.returncode != 0
    assert again.stderr.strip().splitlines()[-1] == (
        f"medadv: error: run {run_id} already registered faults-killed version 1"
    )


def test_a_resume_with_other_parameters_is_refused_before_any_compute(tracking_server: str, tmp_path: Path) -> None:
    client = mlflow.MlflowClient(tracking_server)
    experiment = client.get_experiment_by_name("faults") or client.get_experiment(client.create_experiment("faults"))
    run_id = client.create_run(experiment.experiment_id, tags={"medadv.step": "train"}).info.run_id
    client.log_param(run_id, "epochs", "3")
    client.set_terminated(run_id, "KILLED")
    done = run_step(
        "train.py", *TINY[:-4], "--epochs", "4", "--run_id", run_id, tracking_uri=tracking_server, cwd=tmp_path
    )
    assert done.returncode != 0
    assert (
        done.stderr.strip().splitlines()[-1] == f"medadv: error: run {run_id} was started with other values of epochs"
    )
    assert client.get_run(run_id).info.status == "KILLED"  # left as it was


def test_a_full_disk_while_writing_the_synthetic_data_fails_in_one_line(
    tracking_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / ".medadv"
    process = _train("--model_name", "faults-no-data", home=home, url=tracking_server, limit_bytes=4096)
    _, err = process.communicate(timeout=300)
    assert process.returncode != 0
    (line,) = [line for line in err.strip().splitlines() if line.startswith("medadv: ")]
    assert line == err.strip().splitlines()[-1]
    assert line.startswith(f"medadv: error: {home}/synthetic/pneumoniamnist-seed0: cannot write the synthetic")
    assert "(File too large)" in line
    assert not (home / "synthetic" / "pneumoniamnist-seed0" / ".complete").exists()  # not reported as written

    monkeypatch.setenv("MEDADV_HOME", str(home))
    root = synthetic_dir("pneumoniamnist")  # with space again, the half-written set is written anew
    assert (root / ".complete").exists() and (root / "pneumoniamnist.npz").stat().st_size > 4096


def test_a_full_disk_mid_training_fails_in_one_line_and_the_resume_completes(
    tracking_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = mlflow.MlflowClient(tracking_server)
    home = tmp_path / ".medadv"
    monkeypatch.setenv("MEDADV_HOME", str(home))
    synthetic_dir("pneumoniamnist")  # the data fits; the first checkpoint (about 40 kB) does not
    process = _train("--model_name", "faults-full", home=home, url=tracking_server, limit_bytes=20_000)
    out, err = process.communicate(timeout=300)
    assert process.returncode != 0
    last = err.strip().splitlines()[-1]
    assert last.startswith("medadv: error: cannot write") and "File too large" in last, err[-3000:]
    assert "Traceback" not in err
    run_id = _run_id(out)
    assert client.get_run(run_id).info.status == "FAILED"  # not FINISHED
    assert _versions(client, run_id) == []

    resumed = _resume(run_id, "faults-full", tracking_server, tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert client.get_run(run_id).info.status == "FINISHED"
    assert _versions(client, run_id) == ["1"]
