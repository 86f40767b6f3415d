"""Issue 16: the S3 artifact store stopped for a few seconds in the middle of a step, on the production stack.

An attack while it logs its results, a training while it logs its model: with MLflow's HTTP retries the step
rides the outage out; without them it fails in one line, its run FAILED, and `--run_id` completes it. Either
way every file the run lists downloads and matches the sha256 the run recorded for it, and a model version
exists only once all of its files are stored (exactly one, for a training that failed and was resumed).

moto's S3 app is served from this process (`RestartableS3`), so that it can be stopped, its port closed, and
started again on that port with its objects kept (moto holds them in this process's memory). The outage
begins as soon as the upload named has gone through, so it lands on the next upload however fast this machine
is. The tracking server's own S3 retries (botocore's) are turned off, so the outage reaches the worker.
Minutes in all (one stack, two attacks and two trainings): marker `faults`.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import boto3
import keras
import mlflow
import pytest
from mlflow_server import free_port
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from production_stack import BUCKET, ProductionStack, S3Endpoint, missing_requirement, production_stack
from werkzeug.serving import BaseWSGIServer, make_server

from medadv.contract import ATTACK_RESULT, CHECKSUM_TAG, PERTURBATION_FIGURE, PREDICTIONS, SAMPLES_TABLE
from medadv.models import build_model
from medadv.tracking.registry import load_model

pytestmark = pytest.mark.faults
OUTAGE_S = 5.0
RETRIES = [
    ({}, "retried"),  # MLflow's defaults: 7 retries after 0, 4, 8, ... s
    ({"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}, "resumed"),  # an outage longer than the retries
]
RETRY_IDS = ["with retries", "without retries"]


class _OneRequestPerConnection(MotoRequestHandler):
    protocol_version = "HTTP/1.0"  # no kept-alive connection outlives a stop: every request meets the closed port


class _ServerRetriesOff(S3Endpoint):
    def env(self) -> dict[str, str]:
        return super().env() | {"AWS_MAX_ATTEMPTS": "1"}  # botocore on the tracking server tries once


class RestartableS3:
    """moto's S3 on a fixed 127.0.0.1 port of this process; `stop_after(marker)` stops it for `OUTAGE_S`
    as soon as an upload whose path holds `marker` has gone through."""

    def __init__(self) -> None:
        self.endpoint = _ServerRetriesOff(f"http://127.0.0.1:{free_port()}", "medadv-test-key", "medadv-test-secret")
        self._app = DomainDispatcherApplication(create_backend_app)
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._marker: str | None = None
        self.downtimes: list[float] = []
        self.outage = threading.Thread()  # the latest outage, once one has begun

    def start(self) -> None:
        port = int(self.endpoint.url.rsplit(":", 1)[1])
        self._server = make_server(
            "127.0.0.1", port, self._serve, threaded=True, request_handler=_OneRequestPerConnection
        )
        self._thread = threading.Thread(target=self._server.serve_forever, name="moto-s3", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._server.server_close()  # the port refuses connections until `start`
        self._thread.join()

    def stop_after(self, marker: str) -> None:
        self._marker = marker

    def wait_until_back(self) -> None:
        """Wait for the latest outage, if one began, to end: a step that fails may end while the store is down."""
        if self.outage.ident is not None:
            self.outage.join()

    def _serve(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if self._marker and environ["REQUEST_METHOD"] == "PUT" and self._marker in environ["PATH_INFO"]:
            self._marker = None
            self.outage = threading.Thread(target=self._outage, name="s3-outage")
            self.outage.start()
        return self._app(environ, start_response)

    def _outage(self) -> None:
        time.sleep(0.2)  # the upload that triggered it answers first
        began = time.monotonic()
        self.stop()
        time.sleep(OUTAGE_S)
        self.start()
        self.downtimes.append(time.monotonic() - began)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ProductionStack, RestartableS3]]:
    if reason := missing_requirement():
        pytest.skip(reason)
    s3 = RestartableS3()
    s3.start()
    try:
        boto3.client(
            "s3", endpoint_url=s3.endpoint.url, aws_access_key_id=s3.endpoint.access_key,
            aws_secret_access_key=s3.endpoint.secret_key, region_name="us-east-1",
        ).create_bucket(Bucket=BUCKET)  # fmt: skip
        with production_stack(tmp_path_factory.mktemp("stack"), s3=s3.endpoint) as stack:
            yield stack, s3
    finally:
        s3.stop()


@pytest.fixture
def client(store: tuple[ProductionStack, RestartableS3], monkeypatch: pytest.MonkeyPatch) -> mlflow.MlflowClient:
    stack, _ = store
    for key, value in stack.user.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    mlflow.set_tracking_uri(stack.url)
    return mlflow.MlflowClient(stack.url)


def _run_id(stdout: str) -> str:
    """The run id from a step's banner, `medadv STEP: run NAME (ID), ...`."""
    return stdout.split("(", 1)[1].split(")", 1)[0]


def _through_outage(
    stack: ProductionStack,
    s3: RestartableS3,
    script: str,
    args: list[str],
    marker: str,
    cwd: Path,
    failed: Callable[[str], None] = lambda run_id: None,
) -> tuple[str, str]:
    """Run the step with the store stopped once after `marker`'s upload; check a failed run with `failed`, then
    resume it with --run_id. Returns the run id and how it completed: "retried" (by itself) or "resumed"."""
    s3.stop_after(marker)
    outages_before = len(s3.downtimes)
    started = time.monotonic()
    done = stack.run_step(script, *args, cwd=cwd)
    s3.wait_until_back()
    assert len(s3.downtimes) > outages_before, f"no upload of {marker}: {done.stderr[-3000:]}"
    print(f"\nSTORE OUTAGE {script}: exit {done.returncode} after {time.monotonic() - started:.0f} s")
    run_id = _run_id(done.stdout)
    if done.returncode == 0:
        return run_id, "retried"
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    print(last)
    assert last.startswith("medadv: error: "), last
    assert mlflow.MlflowClient(stack.url).get_run(run_id).info.status == "FAILED"
    failed(run_id)
    resumed = stack.run_step(script, *args, f"--run_id={run_id}", cwd=cwd)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming: " in resumed.stdout
    return run_id, "resumed"


def _checked_files(client: mlflow.MlflowClient, run_id: str, folder: Path, unchecked: str = "") -> set[str]:
    """Every file the run lists, each downloaded and compared with the sha256 the run recorded for it (but for
    `unchecked`, which MLflow writes itself)."""
    tags = client.get_run(run_id).data.tags
    paths = set()
    for path in _listed(client, run_id):
        local = Path(client.download_artifacts(run_id, path, str(folder)))
        if path != unchecked:
            assert hashlib.sha256(local.read_bytes()).hexdigest() == tags.get(CHECKSUM_TAG + path), path
        paths.add(path)
    return paths


def _listed(client: mlflow.MlflowClient, run_id: str, under: str | None = None) -> set[str]:
    paths = set()
    for item in client.list_artifacts(run_id, under):
        paths |= _listed(client, run_id, item.path) if item.is_dir else {item.path}
    return paths


@pytest.mark.parametrize(("client_env", "expected"), RETRIES, ids=RETRY_IDS)
def test_an_attack_with_its_store_stopped_while_it_logs_results_completes_with_every_file_intact(
    client_env: dict[str, str],
    expected: str,
    store: tuple[ProductionStack, RestartableS3],
    client: mlflow.MlflowClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stack, s3 = store
    keras.utils.set_random_seed(0)
    build_model("small_cnn", (28, 28, 1), 2, width=8).save(tmp_path / "victim.keras")
    for key, value in client_env.items():
        monkeypatch.setenv(key, value)  # the step's environment: run_step passes this process's on
    args = [
        f"--model={tmp_path / 'victim.keras'}", "--dataset=pneumoniamnist", "--attack=pgd",
        "--attack_params=eps=0.05,eps_step=0.01,max_iter=5", "--num_samples=8", "--batch_size=4",
        "--selection=all", "--experiment=store-outage",
    ]  # fmt: skip
    run_id, outcome = _through_outage(stack, s3, "attack.py", args, f"/artifacts/{ATTACK_RESULT}", tmp_path)
    print(f"\nSTORE OUTAGE attack: down {s3.downtimes[-1]:.1f} s after {ATTACK_RESULT} was stored; {outcome}")

    assert outcome == expected
    assert client.get_run(run_id).info.status == "FINISHED"
    assert _checked_files(client, run_id, tmp_path / "check") == {ATTACK_RESULT, SAMPLES_TABLE, PERTURBATION_FIGURE}


@pytest.mark.parametrize(("client_env", "expected"), RETRIES, ids=RETRY_IDS)
def test_a_training_with_its_store_stopped_while_it_logs_its_model_registers_one_whole_version(
    client_env: dict[str, str],
    expected: str,
    store: tuple[ProductionStack, RestartableS3],
    client: mlflow.MlflowClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stack, s3 = store
    name = f"store-outage-{expected}"
    for key, value in client_env.items():
        monkeypatch.setenv(key, value)
    args = [
        "--dataset=pneumoniamnist", "--arch=small_cnn", "--arch_options=width=8", "--epochs=1",
        f"--model_name={name}", "--experiment=store-outage",
    ]  # fmt: skip

    def nothing_registered(run_id: str) -> None:
        assert client.search_model_versions(f"name = '{name}'") == []

    run_id, outcome = _through_outage(stack, s3, "train.py", args, "/artifacts/model/", tmp_path, nothing_registered)
    print(f"\nSTORE OUTAGE train: down {s3.downtimes[-1]:.1f} s after the first model file was stored; {outcome}")

    assert outcome == expected
    assert client.get_run(run_id).info.status == "FINISHED"
    versions = client.search_model_versions(f"name = '{name}'")
    assert [(version.version, version.run_id) for version in versions] == [("1", run_id)]
    files = _checked_files(client, run_id, tmp_path / "check", unchecked=PREDICTIONS)
    assert {path for path in files if path.startswith("model/")} >= {"model/MLmodel", "model/data/model.keras"}
    assert not any(path.startswith("checkpoint/") for path in files)
    assert load_model(f"models:/{name}/1").count_params() > 0  # the version's files download and load
