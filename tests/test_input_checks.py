"""The library checks behind issue 16's classes 2-5 (numeric ranges, names, logits probe, one writer per run)
and its untrusted files (no code from a model, npz or pickle; no artifact name leaving its folder).

The same inputs go through the entry points in tests/test_reliability.py's table; these tests pin each check
directly and fast, and the writer lock with real processes on a real SQLite store.
"""

from __future__ import annotations

import ast
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import keras
import mlflow
import numpy as np
import pytest
from mlflow.entities import FileInfo
from mlflow.exceptions import MlflowException
from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository
from mlflow_server import step_env

from medadv.attacks.result import AttackResult
from medadv.data import medmnist, mnist
from medadv.data.base import DataError
from medadv.jobs.attack import AttackSettings
from medadv.jobs.gradcam import GradcamSettings
from medadv.jobs.main import MainSettings
from medadv.jobs.train import TrainSettings
from medadv.models import ModelError, build_model, check_victim
from medadv.tracking import writer as writer_lock
from medadv.tracking.names import InvalidName, check_alias, check_experiment_name, check_model_name, check_tags
from medadv.tracking.runs import error_line


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One SQLite store for this module's tests (creating one costs seconds of migrations)."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('store') / 'store.db'}"
    mlflow.MlflowClient(uri).search_experiments()
    return uri


# --- class 2: numeric ranges ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: AttackSettings(num_samples=-1), "num_samples must be >= 0, got -1"),  # not "everything"
        (lambda: AttackSettings(seed=2**32), "seed must be in [0, 4294967295]"),
        (lambda: TrainSettings(batch_size=0), "batch_size must be >= 1"),
        (lambda: TrainSettings(learning_rate=float("nan")), "learning_rate must be >= 1e-12"),
        (lambda: TrainSettings(adversarial_ratio=1.5), "adversarial_ratio must be in [0, 1]"),
        (lambda: GradcamSettings(iou_top_percent=0.0), "iou_top_percent must be in [1e-06, 100]"),
        (lambda: MainSettings(records=0), "records must be >= 1"),
    ],
)
def test_a_number_out_of_range_is_refused_when_the_settings_are_made(make: object, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        make()  # type: ignore[operator]


def test_every_numeric_setting_declares_its_range() -> None:
    for settings in (AttackSettings(), TrainSettings(), GradcamSettings(), MainSettings()):
        assert settings.RANGES  # check_ranges raises TypeError for a numeric field without one


# --- class 3: names -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("check", "value", "message"),
    [
        (check_model_name, "a/b", "cannot contain '/' or ':'"),
        (check_model_name, "m" * 257, "is 257 characters; the store allows 256"),  # SQLite would take it
        (check_alias, "my alias", "Invalid alias name"),
        (check_alias, "v3", "is reserved"),
        (check_alias, "latest", "is reserved"),
        (check_experiment_name, "e" * 300, "is 300 characters; the store allows 256"),  # MLflow allows 500
        (check_tags, {"k": "v" * 5001}, "tag k value"),
        (check_tags, {"../k": "v"}, "tag key"),
    ],
)
def test_a_name_the_store_would_refuse_is_refused_first(check: object, value: object, message: str) -> None:
    with pytest.raises(InvalidName, match=message.replace("(", r"\(").replace(")", r"\)")):
        check(value)  # type: ignore[operator]


def test_valid_names_pass() -> None:
    check_model_name("medadv-cinc2017-ecg_resnet")
    check_alias("champion")
    check_experiment_name("medadv")
    check_tags({"dataset": "cinc2017", "medadv.step": "train"})


# --- class 4: logits or probabilities, from what the model computes -------------------------------------------


def _victim_with_head(head: keras.layers.Layer) -> keras.Model:
    inputs = keras.Input((8, 8, 1))
    return keras.Model(inputs, keras.layers.Activation("softmax", name="probs")(head(keras.layers.Flatten()(inputs))))


def test_a_softmax_hidden_before_the_final_one_is_found_by_probing() -> None:
    """The last layer is a softmax Activation, as the layer check wants, but its input is already probabilities."""
    model = _victim_with_head(keras.layers.Dense(3, activation="softmax", name="logits"))
    with pytest.raises(ModelError, match="already probabilities"):
        check_victim(model, (8, 8, 1))


def test_outputs_that_are_not_probabilities_are_refused() -> None:
    """Finite weights whose logits overflow: the softmax returns NaN, which no attack can use."""
    model = _victim_with_head(keras.layers.Dense(3, name="logits"))
    model.set_weights([np.full_like(w, 1e38) for w in model.get_weights()])
    with pytest.raises(ModelError, match="does not output probabilities"):
        check_victim(model, (8, 8, 1))


def test_a_real_victim_passes_the_probe() -> None:
    check_victim(build_model("small_cnn", (28, 28, 1), 2, width=4), (28, 28, 1))
    check_victim(_victim_with_head(keras.layers.Dense(3, name="logits")), (8, 8, 1))


# --- class 5: one writer per run ----------------------------------------------------------------------------

HOLD = """
import sys, time, mlflow
from medadv.tracking.runs import start_step_run
mlflow.set_tracking_uri(sys.argv[1]); mlflow.set_experiment("writers")
with start_step_run("attack", {}, run_id=sys.argv[2] or None) as run:
    print("writing", run.info.run_id, flush=True)
    time.sleep(float(sys.argv[3]))
"""


def _writer(uri: str, run_id: str, seconds: float, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", HOLD, uri, run_id, str(seconds)],
        cwd=cwd, env=step_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


@pytest.mark.slow
def test_a_second_writer_refuses_and_a_dead_writers_lock_is_taken_over(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    first = _writer(uri, "", 600, tmp_path)
    assert first.stdout is not None
    line = next(line for line in first.stdout if line.startswith("writing ") or not line)  # after the banner
    run_id = line.split()[-1]

    second = _writer(uri, run_id, 0, tmp_path)
    _, err = second.communicate(timeout=120)
    assert second.returncode != 0
    line = err.strip().splitlines()[-1]
    assert f"is being written by {socket.gethostname()} pid {first.pid} since " in line, line
    mlflow.set_tracking_uri(uri)
    assert mlflow.get_run(run_id).info.status == "RUNNING"  # the refusal left the holder's run alone

    first.send_signal(signal.SIGKILL)  # its lock stays behind, held by a dead pid
    first.wait(timeout=30)
    assert writer_lock.WRITER_TAG in mlflow.get_run(run_id).data.tags
    third = _writer(uri, run_id, 0, tmp_path)
    out, err = third.communicate(timeout=120)
    assert third.returncode == 0, err[-2000:]
    assert f"writing {run_id}" in out
    run = mlflow.get_run(run_id)
    assert run.info.status == "FINISHED" and writer_lock.WRITER_TAG not in run.data.tags  # released at the end


def test_a_lock_from_another_host_is_alive_until_its_heartbeat_is_stale(store: str) -> None:
    mlflow.set_tracking_uri(store)
    run_id = mlflow.MlflowClient().create_run(mlflow.create_experiment("hosts")).info.run_id
    now = int(time.time())
    fresh = writer_lock.Writer("elsewhere", os.getpid() + 1, now - 600, now - 5)
    mlflow.MlflowClient().set_tag(run_id, writer_lock.WRITER_TAG, str(fresh))
    with pytest.raises(writer_lock.RunLocked, match="elsewhere pid"):
        writer_lock.check_free(run_id)
    stale = writer_lock.Writer("elsewhere", fresh.pid, fresh.since, int(now - writer_lock.STALE_S) - 1)
    mlflow.MlflowClient().set_tag(run_id, writer_lock.WRITER_TAG, str(stale))
    writer_lock.check_free(run_id)  # a dead host's lock: taken over
    assert writer_lock.acquire(run_id).pid == os.getpid()


# --- untrusted files: no code from a file, no artifact name leaving the download folder ---------------------

MEDADV = Path(__file__).parents[1] / "medadv"
CODE_RUNNERS = {"eval", "exec", "compile", "__import__"}


def _keyword(call: ast.Call, name: str) -> object:
    return next((k.value.value for k in call.keywords if k.arg == name and isinstance(k.value, ast.Constant)), None)


def test_every_load_path_in_medadv_refuses_code() -> None:
    """Read from the source, so a new loader cannot forget: Keras safe mode, numpy without pickle, no eval,
    no MLflow flavour loader (they unpickle or run code) and no unpickling but CIFAR's restricted unpickler."""
    unsafe = []
    for path in sorted(MEDADV.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call):
                continue
            called = ast.unparse(node.func)
            where = f"{path.relative_to(MEDADV.parent)}:{node.lineno} {called}"
            if called.endswith("load_model") and called.startswith("keras") and _keyword(node, "safe_mode") is not True:
                unsafe.append(where)
            if called in ("np.load", "numpy.load") and _keyword(node, "allow_pickle") is not False:
                unsafe.append(where)
            if called in CODE_RUNNERS or called.startswith(("pickle.load", "mlflow.pyfunc.load", "mlflow.keras.load")):
                unsafe.append(where)
            if called == "super().find_class" and path.name != "cifar10.py":
                unsafe.append(where)
    assert unsafe == []
    # the audit sees the calls it checks
    assert "safe_mode=True" in (MEDADV / "tracking" / "registry.py").read_text()


def _npz_with_objects(path: Path, names: list[str]) -> Path:
    arrays = {name: np.zeros(2, np.uint8) for name in names}
    arrays[names[0]] = np.array([{"payload": "a dict"}, None], dtype=object)  # only unpickling rebuilds it
    np.savez(path, **arrays)
    return path


def test_an_npz_holding_python_objects_is_refused_by_every_npz_reader(tmp_path: Path) -> None:
    medmnist_keys = [f"{part}_{kind}" for part in ("train", "val", "test") for kind in ("images", "labels")]
    _npz_with_objects(tmp_path / "pneumoniamnist.npz", medmnist_keys)
    with pytest.raises(DataError, match=r"pneumoniamnist\.npz: holds Python objects, which medadv never unpickles"):
        medmnist.load(tmp_path, "train", flavor="pneumoniamnist")
    (tmp_path / "mnist").mkdir()
    _npz_with_objects(tmp_path / "mnist" / "mnist.npz", ["x_train", "y_train", "x_test", "y_test"])
    with pytest.raises(DataError, match=r"mnist\.npz: holds Python objects"):
        mnist.load(tmp_path / "mnist", "train")
    result_names = [field.name for field in dataclasses.fields(AttackResult)]
    with pytest.raises(ValueError, match="allow_pickle=False"):  # the attack result contract: evaluate, gradcam
        AttackResult.load(_npz_with_objects(tmp_path / "attack_result.npz", result_names))


@pytest.mark.parametrize("name", ["../escaped.txt", "/tmp/escaped.txt", "a/../../escaped.txt"])
def test_an_artifact_name_cannot_escape_the_download_folder(store: str, tmp_path: Path, name: str) -> None:
    """medadv downloads only its own constant names; MLflow 3.17 must refuse anything else before writing."""
    client = mlflow.MlflowClient(store)
    run = client.create_run(client.create_experiment(f"files-{tmp_path.name}", str(tmp_path / "artifacts")))
    run_folder = Path(run.info.artifact_uri.removeprefix("file://"))
    for outside in (run_folder.parent, run_folder.parent.parent):  # decoys beside the run's files
        outside.mkdir(parents=True, exist_ok=True)
        (outside / "escaped.txt").write_text("outside the run")
    downloads = tmp_path / "downloads"
    (downloads / "inside").mkdir(parents=True)
    with pytest.raises(mlflow.exceptions.MlflowException):  # the name is resolved inside the run, or refused
        client.download_artifacts(run.info.run_id, name, str(downloads / "inside"))
    assert [path for path in downloads.rglob("*") if path.is_file()] == []


class _TamperedListing(LocalArtifactRepository):
    """A real local artifact repository whose listing, as a tampered server could send it, names a file outside
    the folder being downloaded (how medadv fetches `progress/`, `checkpoint/` and model folders)."""

    def list_artifacts(self, path: str | None = None) -> list[FileInfo]:
        return [FileInfo(f"{path}/../../escaped.txt", False, 15)]


@pytest.mark.parametrize("name", ["progress", "checkpoint", "model"])
def test_a_listed_name_cannot_escape_the_download_folder(tmp_path: Path, name: str) -> None:
    store = tmp_path / "store"
    (store / name).mkdir(parents=True)
    (tmp_path / "escaped.txt").write_text("outside the run")  # what the listing points at, read from the store
    downloads = tmp_path / "downloads" / "inside"
    downloads.mkdir(parents=True)
    with pytest.raises(MlflowException):
        _TamperedListing(str(store)).download_artifacts(name, str(downloads))
    assert [path for path in (tmp_path / "downloads").rglob("*") if path.is_file()] == []


_URLLIB3 = "HTTPConnectionPool(host='127.0.0.1', port=37071): Max retries exceeded with url: {path} (Caused by {cause})"


@pytest.mark.parametrize(
    ("path", "cause", "expected"),
    [
        (
            "/api/2.0/mlflow-artifacts/artifacts/1/0c9f/artifacts/samples.parquet",
            "ResponseError('too many 500 error responses')",
            "the tracking server http://127.0.0.1:37071 failed a request for samples.parquet"
            " (ResponseError('too many 500 error responses'))",
        ),
        (
            "/api/2.0/mlflow/runs/log-batch",
            'NewConnectionError("<urllib3.connection.HTTPConnection object at 0x7f3>: Failed to establish a new'
            ' connection: [Errno 111] Connection refused")',
            "the tracking server http://127.0.0.1:37071 failed a request for /api/2.0/mlflow/runs/log-batch"
            ' (NewConnectionError("Failed to establish a new connection: [Errno 111] Connection refused"))',
        ),
    ],
    ids=["artifact upload", "tracking request"],
)
def test_a_request_that_failed_after_its_retries_is_one_short_line(path: str, cause: str, expected: str) -> None:
    message = (
        f"API request to http://127.0.0.1:37071{path} failed with exception {_URLLIB3.format(path=path, cause=cause)}"
    )
    assert error_line(message) == expected
    assert (
        error_line("RESOURCE_DOES_NOT_EXIST: Run 'x' not found\nmore detail")
        == "RESOURCE_DOES_NOT_EXIST: Run 'x' not found"
    )
