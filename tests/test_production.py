"""medadv against a production-shaped server: PostgreSQL store, S3 artifacts served by the server, basic auth on.

One stack per module (about 20 s to start); each entry point runs once as a worker would, with only the tracking
URI and its user's credentials. Later steps (attack, evaluate) chain on `trained` the same way.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import requests
from mlflow.entities import ViewType
from production_stack import Credentials, ProductionStack, create_user, missing_requirement, production_stack

TINY = ["--data_options", "length=600", "--arch_options", "num_blocks=2,base_filters=8", "--epochs", "2"]
MODEL = "prod-ecg"
EXPERIMENT = "production"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProductionStack]:
    if reason := missing_requirement():
        pytest.skip(reason)
    with production_stack(tmp_path_factory.mktemp("stack")) as running:
        yield running


@pytest.fixture(scope="module")
def trained(stack: ProductionStack, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """`steps/train.py` run once as the ordinary user; returns its run id and working folder."""
    cwd = tmp_path_factory.mktemp("worker")
    done = stack.run_step("train.py", *TINY, "--model_name", MODEL, "--experiment", EXPERIMENT, cwd=cwd)
    assert done.returncode == 0, done.stderr[-3000:]
    return _run_id(done.stdout), cwd


def _run_id(stdout: str) -> str:
    """The run id from a step's banner, `medadv STEP: run NAME (ID), ...`."""
    return stdout.split("(", 1)[1].split(")", 1)[0]


@pytest.fixture
def client(stack: ProductionStack, monkeypatch: pytest.MonkeyPatch) -> mlflow.MlflowClient:
    """A fresh client in this process, logged in as the ordinary user and talking to the server only."""
    for key, value in stack.user.env().items():
        monkeypatch.setenv(key, value)
    mlflow.set_tracking_uri(stack.url)
    return mlflow.MlflowClient(stack.url)


@pytest.mark.parametrize(
    ("who", "method", "path", "status"),
    [
        ("nobody", "GET", "/api/2.0/mlflow/experiments/search?max_results=1", 401),
        ("wrong password", "GET", "/api/2.0/mlflow/experiments/search?max_results=1", 401),
        ("user", "GET", "/api/2.0/mlflow/experiments/search?max_results=1", 200),
        ("user", "POST", "/api/2.0/mlflow/users/create", 403),  # only the admin manages users
        ("nobody", "GET", "/health", 200),  # open on purpose: liveness probes carry no credentials
    ],
)
def test_the_server_refuses_whom_it_should(
    stack: ProductionStack, who: str, method: str, path: str, status: int
) -> None:
    auth = {
        "nobody": None,
        "wrong password": (stack.user.username, "not-" + stack.user.password),
        "user": stack.user.auth,
    }[who]
    json = {"username": "intruder", "password": "x"} if method == "POST" else None
    response = requests.request(method, stack.url + path, auth=auth, json=json, timeout=30)
    assert response.status_code == status, response.text[:300]


def test_train_logs_to_postgres_and_s3_and_the_model_reloads_through_a_fresh_client(
    stack: ProductionStack, trained: tuple[str, Path], client: mlflow.MlflowClient
) -> None:
    run_id, cwd = trained
    version = client.get_model_version_by_alias(MODEL, "candidate")
    assert version.run_id == run_id and version.tags["dataset"] == "cinc2017"
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.artifact_uri.startswith("mlflow-artifacts:")
    assert len(client.get_metric_history(run_id, "loss")) == 2

    # The bytes went to the bucket through the server; the worker kept nothing locally.
    keys = stack.s3.object_keys()
    assert f"mlartifacts/{run.info.experiment_id}/{run_id}/artifacts/figures/confusion_matrix.png" in keys
    assert any(key.endswith("/data/model.keras") for key in keys)
    assert not (cwd / "mlartifacts").exists() and not (cwd / "mlruns.db").exists()

    from medadv.data import load_dataset
    from medadv.tracking.registry import load_model

    model = load_model(f"models:/{MODEL}@candidate")
    test = load_dataset("cinc2017", cwd / ".medadv" / "synthetic" / "cinc2017-seed0", "test", length=600)
    logged = pd.read_json(
        mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="predictions/test.json"), orient="split"
    )
    probs = model.predict(test.x, verbose=0)
    assert list(logged["id"]) == list(test.ids)
    np.testing.assert_allclose(probs[:, 0], logged[f"prob_{test.class_names[0]}"], rtol=1e-4, atol=1e-6)


def test_attack_then_evaluate_on_the_registered_model_end_to_end(
    stack: ProductionStack, trained: tuple[str, Path], client: mlflow.MlflowClient
) -> None:
    """train -> attack -> evaluate as workers, each a process of its own; then the model reloads here."""
    _, cwd = trained
    data_dir = cwd / ".medadv" / "synthetic" / "cinc2017-seed0"  # what `train` generated for itself
    attacked = stack.run_step(
        "attack.py", "--model", f"models:/{MODEL}@candidate", "--dataset", "cinc2017", "--data_dir", str(data_dir),
        "--data_options", "length=600", "--attack", "fgsm", "--attack_params", "eps=0.5", "--num_samples", "4",
        "--selection", "all",  # a 2-epoch model may classify few records right: attack them regardless
        "--experiment", EXPERIMENT, cwd=cwd,
    )  # fmt: skip
    assert attacked.returncode == 0, attacked.stderr[-3000:]
    attack_id = _run_id(attacked.stdout)
    evaluated = stack.run_step("evaluate.py", "--experiment", EXPERIMENT, cwd=cwd)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    evaluate_id = _run_id(evaluated.stdout)

    attack_run, evaluate_run = client.get_run(attack_id), client.get_run(evaluate_id)
    assert attack_run.info.status == evaluate_run.info.status == "FINISHED"
    assert attack_run.data.metrics["num_samples"] == 4
    keys = stack.s3.object_keys()  # in the bucket, through the server
    prefix = f"mlartifacts/{attack_run.info.experiment_id}"
    assert {f"{prefix}/{attack_id}/artifacts/{name}" for name in ("attack_result.npz", "samples.parquet")} <= set(keys)
    assert f"{prefix}/{evaluate_id}/artifacts/report.html" in keys
    report = Path(client.download_artifacts(evaluate_id, "report.html", str(cwd))).read_text()
    assert attack_id[:8] in report  # the report compares the attack just run

    from medadv.attacks.result import AttackResult
    from medadv.attacks.runner import predict
    from medadv.tracking.registry import load_model

    result = AttackResult.load(Path(client.download_artifacts(attack_id, "attack_result.npz", str(cwd))))
    model = load_model(f"models:/{MODEL}@candidate")  # through the fresh client's tracking URI and credentials
    np.testing.assert_array_equal(predict(model, result.x).argmax(axis=1), result.y_clean)


def test_wrong_credentials_fail_a_step_in_one_line_and_leave_no_run(stack: ProductionStack, tmp_path: Path) -> None:
    wrong = Credentials(stack.user.username, "not-" + stack.user.password)
    done = stack.run_step("train.py", *TINY, "--experiment", "wrong-credentials", cwd=tmp_path, credentials=wrong)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("medadv: error: ") and "401" in last, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    as_admin = requests.get(
        f"{stack.url}/api/2.0/mlflow/experiments/get-by-name",
        params={"experiment_name": "wrong-credentials"}, auth=stack.admin.auth, timeout=30,
    )  # fmt: skip
    assert as_admin.status_code == 404  # refused before anything was created


def test_a_colleague_logs_to_a_shared_experiment_but_cannot_delete_it(
    stack: ProductionStack, trained: tuple[str, Path]
) -> None:
    colleague = Credentials("colleague", secrets.token_urlsafe(16))
    create_user(stack.url, stack.admin, colleague)
    experiment_id = requests.get(
        f"{stack.url}/api/2.0/mlflow/runs/get", params={"run_id": trained[0]}, auth=stack.user.auth, timeout=30
    ).json()["run"]["info"]["experiment_id"]
    api = f"{stack.url}/api/2.0/mlflow"
    created = requests.post(
        f"{api}/runs/create", json={"experiment_id": experiment_id}, auth=colleague.auth, timeout=30
    )
    assert created.status_code == 200, created.text[:300]
    deleted = requests.post(
        f"{api}/experiments/delete", json={"experiment_id": experiment_id}, auth=colleague.auth, timeout=30
    )
    assert deleted.status_code == 403


def test_no_credential_is_logged_anywhere(
    stack: ProductionStack, trained: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in stack.admin.env().items():  # the admin sees every experiment
        monkeypatch.setenv(key, value)
    admin = mlflow.MlflowClient(stack.url)
    recorded: list[str] = []
    for experiment in admin.search_experiments(view_type=ViewType.ALL):
        recorded += [experiment.name, *experiment.tags.values()]
        for run in admin.search_runs([experiment.experiment_id], run_view_type=ViewType.ALL):
            recorded += [*run.data.params.values(), *run.data.tags.values(), run.info.artifact_uri]
    for version in admin.search_model_versions():
        recorded += [version.source or "", *version.tags.values()]
    assert trained[0] in "\n".join(recorded)  # the scan does see the run
    leaked = [name for name, secret in stack.secrets.items() if any(secret in value for value in recorded)]
    assert leaked == []  # names only: a failing test must not print the secret either
