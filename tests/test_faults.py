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
from collections.abc import Callable
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.entities import Run
from mlflow_server import REPO, run_step, step_env

from medadv.contract import CLASS_TAG
from medadv.data import synthetic_dir
from medadv.tracking.checkpoints import CHECKPOINTS
from medadv.tracking.registry import load_generators, load_model

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


def _resume(run_id: str, *args: str, url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_step("train.py", *TINY, *args, "--run_id", run_id, tracking_uri=url, cwd=cwd)


def _versions(client: mlflow.MlflowClient, run_id: str) -> list[str]:
    return [v.version for v in client.search_model_versions(f"run_id = '{run_id}'")]


def _killed(ready: Callable[[str], bool], *args: str, home: Path, url: str) -> str:
    """The id of a `train` run killed with SIGKILL as soon as `ready(run_id)` holds."""
    process = _train(*args, home=home, url=url)
    assert process.stdout is not None
    run_id = _run_id(process.stdout.readline())
    deadline = time.monotonic() + 300
    while not ready(run_id) and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    return run_id


def _checkpointed(client: mlflow.MlflowClient) -> Callable[[str], bool]:
    return lambda run_id: bool(client.list_artifacts(run_id, CHECKPOINTS))


def _epochs_done(resumed: subprocess.CompletedProcess[str]) -> str:
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming: " in resumed.stdout and " of 3 epochs done" in resumed.stdout
    return resumed.stdout.split("resuming: ", 1)[1].split(" of ", 1)[0]


def _finished_once(client: mlflow.MlflowClient, run_id: str) -> None:
    """Finished, its writer gone, each epoch's loss logged once, its checkpoints removed."""
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and "medadv.writer" not in run.data.tags
    assert sorted(m.step for m in client.get_metric_history(run_id, "loss")) == [0, 1, 2]  # each epoch once
    assert client.list_artifacts(run_id, CHECKPOINTS) == []  # removed once the model is registered or logged


def _same_model(url: str, run_id: str, whole_run_id: str) -> None:
    mlflow.set_tracking_uri(url)
    expected = load_model(f"runs:/{whole_run_id}/model").get_weights()
    for got, want in zip(load_model(f"runs:/{run_id}/model").get_weights(), expected, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-6)


def _refused_again(run_id: str, args: tuple[str, ...], message: str, url: str, cwd: Path) -> None:
    again = _resume(run_id, *args, url=url, cwd=cwd)
    assert again.returncode != 0
    assert again.stderr.strip().splitlines()[-1] == f"medadv: error: run {run_id} {message}"


def test_a_training_killed_mid_run_resumes_to_the_same_model(tracking_server: str, tmp_path: Path) -> None:
    client = mlflow.MlflowClient(tracking_server)
    whole = run_step("train.py", *TINY, "--model_name", "faults-whole", tracking_uri=tracking_server, cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr[-3000:]

    args = ("--model_name", "faults-killed")
    run_id = _killed(_checkpointed(client), *args, home=tmp_path / ".medadv", url=tracking_server)
    at_kill = client.get_run(run_id)  # killed after its first finished epoch, at most its third
    assert at_kill.info.status == "RUNNING" and _versions(client, run_id) == []  # stopped mid-run, not finished
    assert client.list_artifacts(run_id, CHECKPOINTS)

    done = _epochs_done(_resume(run_id, *args, url=tracking_server, cwd=tmp_path))
    print(f"\nRELIABILITY train killed: after {done} of 3 epochs; resumed from there")
    _same_model(tracking_server, run_id, _run_id(whole.stdout))
    _finished_once(client, run_id)
    assert _versions(client, run_id) == ["1"]  # registered once
    _refused_again(run_id, args, "already registered faults-killed version 1", tracking_server, tmp_path)


@pytest.fixture(scope="module")
def victim(tracking_server: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A registered one-epoch victim for the robust and generator-set trainings."""
    folder = tmp_path_factory.mktemp("victim")
    done = run_step(
        "train.py", *TINY, "--epochs", "1", "--model_name", "faults-victim", tracking_uri=tracking_server, cwd=folder
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return "models:/faults-victim/1"


def test_a_robust_training_killed_mid_run_resumes_to_the_same_model(
    victim: str, tracking_server: str, tmp_path: Path
) -> None:
    """pgd_online: PGD's random starts draw from numpy's global generator, which the checkpoint carries."""
    client = mlflow.MlflowClient(tracking_server)
    robust = ("--mode", "robust", "--method", "pgd_online", "--attack_params", "eps=0.1,eps_step=0.05,max_iter=2")
    robust += ("--victim", victim)
    whole = run_step(
        "train.py", *TINY, *robust, "--model_name", "faults-robust-whole", tracking_uri=tracking_server, cwd=tmp_path
    )
    assert whole.returncode == 0, whole.stderr[-3000:]

    args = (*robust, "--model_name", "faults-robust")
    run_id = _killed(_checkpointed(client), *args, home=tmp_path / ".medadv", url=tracking_server)
    assert client.get_run(run_id).info.status == "RUNNING" and _versions(client, run_id) == []

    done = _epochs_done(_resume(run_id, *args, url=tracking_server, cwd=tmp_path))
    print(f"\nRELIABILITY robust training killed: after {done} of 3 epochs; resumed from there")
    _same_model(tracking_server, run_id, _run_id(whole.stdout))
    _finished_once(client, run_id)
    assert _versions(client, run_id) == ["1"]
    _refused_again(run_id, args, "already registered faults-robust version 1", tracking_server, tmp_path)


def _class_runs(run_id: str) -> dict[str, Run]:
    children = mlflow.search_runs(
        search_all_experiments=True, filter_string=f"tags.`mlflow.parentRunId` = '{run_id}'", output_format="list"
    )
    return {child.data.tags.get(CLASS_TAG, ""): child for child in children}


def test_a_generator_set_killed_mid_class_resumes_to_the_same_generators(
    victim: str, tracking_server: str, tmp_path: Path
) -> None:
    """Killed in its second class's training: the first class's finished run is kept, the second's resumed."""
    client = mlflow.MlflowClient(tracking_server)
    mlflow.set_tracking_uri(tracking_server)
    args = ("--mode", "generator", "--generator_loss", "nce", "--victim", victim)
    whole = run_step("train.py", *TINY, *args, tracking_uri=tracking_server, cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr[-3000:]

    def second_class_checkpointed(run_id: str) -> bool:
        second = _class_runs(run_id).get("1")
        return second is not None and _checkpointed(client)(second.info.run_id)

    run_id = _killed(second_class_checkpointed, *args, home=tmp_path / ".medadv", url=tracking_server)
    at_kill = _class_runs(run_id)
    assert at_kill["0"].info.status == "FINISHED" and at_kill["1"].info.status == "RUNNING"

    done = _epochs_done(_resume(run_id, *args, url=tracking_server, cwd=tmp_path))
    print(f"\nRELIABILITY generator set killed: class 1 after {done} of 3 epochs; resumed from there")
    expected = load_generators(_run_id(whole.stdout))
    for class_index, generator in load_generators(run_id).items():
        for got, want in zip(generator.get_weights(), expected[class_index].get_weights(), strict=True):
            np.testing.assert_allclose(got, want, atol=1e-6)
    classes = _class_runs(run_id)
    assert sorted(classes) == ["0", "1"] and classes["1"].info.run_id == at_kill["1"].info.run_id  # none twice
    for class_run in classes.values():
        _finished_once(client, class_run.info.run_id)
    assert client.get_run(run_id).info.status == "FINISHED"
    _refused_again(run_id, args, "has finished; nothing to resume", tracking_server, tmp_path)


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

    resumed = _resume(run_id, "--model_name", "faults-full", url=tracking_server, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert client.get_run(run_id).info.status == "FINISHED"
    assert _versions(client, run_id) == ["1"]
