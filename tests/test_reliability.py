"""Fault, load and bad-input tests of the entry points as real processes against real MLflow servers.

Issue 8's acceptance: a tracking server restarted in the middle of an attack loses nothing (MLflow's HTTP
retries carry the attack through, or it fails in one line and `--run_id` resumes it); four attacks launched
at once against one server all complete; and every malformed input of the table fails with one line and a
non-zero exit, leaving no finished run and no registered model version behind. deploy/README.md's
"Reliability" section quotes the figures these tests print.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import keras
import mlflow
import numpy as np
import pytest
import scipy.io
from mlflow.entities import ViewType
from mlflow_server import REPO, free_port, mlflow_server, run_step, step_env

from medadv.attacks.result import AttackResult
from medadv.contract import ATTACK_RESULT, PERTURBATION_FIGURE, SAMPLES_TABLE
from medadv.data import cinc2017
from medadv.jobs.attack import AttackSettings, attack
from medadv.models import build_model
from medadv.report.tables import ATTACK_METRICS
from medadv.tracking.registry import load_model

pytestmark = pytest.mark.slow
RELIABILITY = "reliability"  # this file's runs on the session server, apart from the runs other tests count
ATTACK_ARTIFACTS = {ATTACK_RESULT, SAMPLES_TABLE, PERTURBATION_FIGURE}
PROGRESS_FILES = "progress"


def _run_id(stdout: str) -> str:
    """The run id from a step's banner, `medadv STEP: run NAME (ID), ...`."""
    return stdout.split("(", 1)[1].split(")", 1)[0]


def _artifact_paths(client: mlflow.MlflowClient, run_id: str, folder: str | None = None) -> set[str]:
    """Every artifact file of a run, recursively."""
    paths = set()
    for item in client.list_artifacts(run_id, folder):
        paths |= _artifact_paths(client, run_id, item.path) if item.is_dir else {item.path}
    return paths


def _result(client: mlflow.MlflowClient, run_id: str, folder: Path) -> AttackResult:
    return AttackResult.load(Path(client.download_artifacts(run_id, ATTACK_RESULT, str(folder))))


@pytest.fixture(scope="module")
def files(victims: dict[str, str], tracking_server: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Models and data sets on disk, good and malformed: the inputs the tests below hand to the steps."""
    folder = tmp_path_factory.mktemp("inputs")
    mlflow.set_tracking_uri(tracking_server)
    load_model("models:/tiny-pneumonia@candidate").save(folder / "pneumonia.keras")
    load_model("models:/tiny-cinc@candidate").save(folder / "ecg_victim.keras")  # input (600, 1), not images
    keras.utils.set_random_seed(0)
    nan_model = build_model("small_cnn", (28, 28, 1), 2, width=8)
    nan_model.set_weights([np.full_like(w, np.nan) for w in nan_model.get_weights()])  # a diverged checkpoint
    nan_model.save(folder / "nan_weights.keras")
    inputs = keras.Input((28, 28, 1))
    flat = keras.layers.Flatten()(inputs)
    probs = keras.layers.Dense(2, activation="softmax")(flat)  # softmax inside the Dense: no logits layer
    keras.Model(inputs, probs).save(folder / "no_logits.keras")
    doubled = keras.layers.Lambda(lambda t: 2 * t)(flat)  # a Python function: only unsafe loading runs it
    logits = keras.layers.Dense(2, name="logits")(doubled)
    keras.Model(inputs, keras.layers.Activation("softmax", name="probs")(logits)).save(folder / "lambda.keras")
    hidden = keras.layers.Dense(2, activation="softmax", name="logits")(flat)  # a softmax before the last one
    keras.Model(inputs, keras.layers.Activation("softmax", name="probs")(hidden)).save(folder / "double_softmax.keras")
    (folder / "corrupt.keras").write_bytes((folder / "pneumonia.keras").read_bytes()[:4000])

    images = Path(victims["images"]) / "pneumoniamnist.npz"
    (folder / "npz_truncated").mkdir()
    (folder / "npz_truncated" / "pneumoniamnist.npz").write_bytes(images.read_bytes()[:3000])
    arrays = dict(np.load(images))
    arrays["train_images"] = np.where(arrays["train_images"] > 128, np.nan, arrays["train_images"] / 255.0)
    (folder / "npz_nan").mkdir()
    np.savez(folder / "npz_nan" / "pneumoniamnist.npz", **arrays)  # float images with NaN where uint8 belongs

    for name, key, edit in (
        ("npz_short", "train_labels", lambda a: a[:-1]),
        ("npz_range", "val_labels", lambda a: a + 5),
    ):
        (folder / name).mkdir()
        np.savez(folder / name / "pneumoniamnist.npz", **(dict(np.load(images)) | {key: edit(np.load(images)[key])}))

    for name in ("mat_truncated", "mat_nan", "hea_length"):
        cinc2017.write_synthetic(folder / name, per_class=1, min_seconds=3, max_seconds=4)
    for record in (folder / "mat_truncated").glob("*.mat"):
        record.write_bytes(record.read_bytes()[:100])
    for record in (folder / "mat_nan").glob("*.mat"):
        scipy.io.savemat(record, {"val": np.full((1, 1000), np.nan)}, format="4")  # float, as a foreign tool writes
    header = sorted((folder / "hea_length").glob("*.hea"))[0]
    name, signals, fs_hz, _, rest = header.read_text().split(" ", 4)  # `NAME 1 300 LENGTH date time`
    header.write_text(" ".join((name, signals, fs_hz, "99999", rest)))
    return folder


# --- a tracking server restarted in the middle of an attack ---------------------------------------------------


@dataclass(frozen=True)
class Finished:
    """A finished attack run as the tests compare it: the run, its joined result and its artifact paths."""

    run: mlflow.entities.Run
    result: AttackResult
    artifacts: set[str]

    @classmethod
    def fetch(cls, client: mlflow.MlflowClient, run_id: str, folder: Path) -> Finished:
        return cls(client.get_run(run_id), _result(client, run_id, folder), _artifact_paths(client, run_id))


@pytest.fixture(scope="module")
def restart_settings(victims: dict[str, str], files: Path) -> AttackSettings:
    """PGD in batches of 2, so an attack logs many batches and the outage falls between two of them."""
    return AttackSettings(
        model=str(files / "pneumonia.keras"), dataset="pneumoniamnist", data_dir=victims["images"], split="train",
        attack="pgd", attack_params="eps=0.05,eps_step=0.01,max_iter=20", num_samples=40, batch_size=2,
    )  # fmt: skip


@pytest.fixture(scope="module")
def uninterrupted(
    restart_settings: AttackSettings, tracking_server: str, tmp_path_factory: pytest.TempPathFactory
) -> Finished:
    """The same attack run in-process on the session server, never disturbed."""
    run_id = attack(restart_settings, tracking_server, RELIABILITY)
    return Finished.fetch(mlflow.MlflowClient(tracking_server), run_id, tmp_path_factory.mktemp("uninterrupted"))


@pytest.mark.parametrize(
    ("client_env", "expected"),
    [
        # MLflow's default retries (7, the n-th after factor * 2**(n-1) s, factor 2) wait out 4 minutes of
        # downtime; factor 1 only makes the attack notice the restarted server sooner.
        ({"MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}, "retried"),
        ({"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}, "resumed"),  # an outage longer than the retries
    ],
    ids=["with retries", "without retries"],
)
def test_a_server_restarted_mid_attack_loses_no_sample_metric_or_artifact(
    client_env: dict[str, str],
    expected: str,
    restart_settings: AttackSettings,
    uninterrupted: Finished,
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    args = [f"--{key}={value}" for key, value in asdict(restart_settings).items() if value != ""]
    root, port = tmp_path / "server", free_port()
    root.mkdir()
    with mlflow_server(root, port=port) as url, (tmp_path / "attack.err").open("w") as stderr:
        env = step_env(**client_env, MLFLOW_TRACKING_URI=url, MEDADV_HOME=str(tmp_path / ".medadv"))
        process = subprocess.Popen(
            [sys.executable, str(REPO / "steps" / "attack.py"), *args, "--experiment", RELIABILITY],
            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True,
        )  # fmt: skip
        assert process.stdout is not None
        run_id = _run_id(process.stdout.readline())
        client = mlflow.MlflowClient(url)
        deadline = time.monotonic() + 300
        while not client.list_artifacts(run_id, PROGRESS_FILES) and time.monotonic() < deadline:
            time.sleep(0.1)
        # Held while the server stops, so that the outage lands mid-run however fast or slow this machine is.
        process.send_signal(signal.SIGSTOP)
        batches_before = len(client.list_artifacts(run_id, PROGRESS_FILES))
    down_since = time.monotonic()
    process.send_signal(signal.SIGCONT)  # its next batch has nowhere to go until the server is back
    with mlflow_server(root, port=port) as url:
        downtime_s = time.monotonic() - down_since
        process.communicate(timeout=300)
        outcome = "retried"
        if process.returncode != 0:
            last = (tmp_path / "attack.err").read_text().strip().splitlines()[-1]
            assert last.startswith("medadv: error: "), last  # a clear failure, which the resume then completes
            resumed = run_step(
                "attack.py", *args, f"--run_id={run_id}", "--experiment", RELIABILITY, tracking_uri=url, cwd=tmp_path
            )
            assert resumed.returncode == 0, resumed.stderr[-3000:]
            assert "resuming: " in resumed.stdout
            outcome = "resumed"
        restarted = Finished.fetch(mlflow.MlflowClient(url), run_id, tmp_path / "restarted")
    batches = -(-len(uninterrupted.result) // restart_settings.batch_size)
    print(f"\nRELIABILITY restart: down {downtime_s:.1f} s after {batches_before}/{batches} batches; {outcome}")
    record_property("restart", {"downtime_s": round(downtime_s, 1), "outcome": outcome})

    assert 1 <= batches_before < batches, "the outage should land mid-run"
    assert outcome == expected
    assert restarted.run.info.status == "FINISHED"
    assert list(restarted.result.ids) == list(uninterrupted.result.ids)  # 0 lost, 0 duplicated, same order
    assert len(set(restarted.result.ids)) == len(restarted.result) == restarted.run.data.metrics["num_samples"]
    np.testing.assert_allclose(restarted.result.x_adv, uninterrupted.result.x_adv, atol=1e-6)
    metrics, expected_metrics = restarted.run.data.metrics, uninterrupted.run.data.metrics
    assert set(metrics) == set(expected_metrics) >= set(ATTACK_METRICS)
    assert metrics["fooling_rate"] == expected_metrics["fooling_rate"]
    assert restarted.artifacts == uninterrupted.artifacts == ATTACK_ARTIFACTS  # and no progress/ files left


# --- four attacks at once ----------------------------------------------------------------------------------


def test_four_attacks_launched_at_once_all_complete_with_every_artifact(
    victims: dict[str, str], tracking_server: str, tmp_path: Path
) -> None:
    """The four shards of one attack, as deploy/sweep.sh launches them: disjoint, together the whole selection."""
    client = mlflow.MlflowClient(tracking_server)
    experiment = client.get_experiment_by_name(RELIABILITY)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(RELIABILITY)
    parent = client.create_run(experiment_id, tags={"medadv.step": "attack-sweep"}).info.run_id
    common = [
        "--model", "models:/tiny-pneumonia@candidate", "--dataset", "pneumoniamnist", "--data_dir", victims["images"],
        "--split", "train", "--attack", "pgd", "--attack_params", "eps=0.1,eps_step=0.02,max_iter=10",
        "--num_samples", "24", "--parent_run_id", parent, "--experiment", RELIABILITY,
    ]  # fmt: skip
    env = step_env(MLFLOW_TRACKING_URI=tracking_server, MEDADV_HOME=str(tmp_path / ".medadv"))
    started = time.monotonic()
    logs = [(tmp_path / f"shard{i}.out", tmp_path / f"shard{i}.err") for i in range(4)]
    processes = []
    for i, (out, err) in enumerate(logs):  # files, not pipes: nobody blocks on a full pipe while others run
        with out.open("w") as stdout, err.open("w") as stderr:
            command = [sys.executable, str(REPO / "steps" / "attack.py"), *common, "--shard", f"{i}/4"]
            processes.append(subprocess.Popen(command, cwd=tmp_path, env=env, stdout=stdout, stderr=stderr))
    returncodes = [process.wait(timeout=400) for process in processes]
    print(f"\nRELIABILITY concurrency: 4 attacks at once finished in {time.monotonic() - started:.0f} s")
    client.set_terminated(parent)

    assert returncodes == [0] * 4, [err.read_text()[-2000:] for _, err in logs]
    ids: list[str] = []
    for shard, (out, _) in enumerate(logs):
        run = client.get_run(_run_id(out.read_text()))
        assert run.info.status == "FINISHED" and run.data.tags["mlflow.parentRunId"] == parent
        assert run.data.params["shard"] == f"{shard}/4"
        assert set(ATTACK_METRICS) <= set(run.data.metrics)
        assert _artifact_paths(client, run.info.run_id) == ATTACK_ARTIFACTS
        result = _result(client, run.info.run_id, tmp_path / str(shard))
        assert run.data.metrics["num_samples"] == len(result) > 0
        ids += list(result.ids)
    assert len(ids) == len(set(ids)) == 24


# --- malformed inputs ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BadInput:
    """One malformed input: the step, its arguments ({files}, {images}, {train_run} filled in) and the error."""

    step: str
    args: tuple[str, ...]
    message: str  # what the one error line must say

    def command(self, values: dict[str, str]) -> list[str]:
        return [sys.executable, str(REPO / "steps" / self.step), *(arg.format(**values) for arg in self.args)]


ON_IMAGES = ("--dataset", "pneumoniamnist", "--data_dir", "{images}", "--split", "train", "--num_samples", "4")
VICTIM = ("--model", "models:/tiny-pneumonia@candidate", *ON_IMAGES)
BAD_INPUTS = {
    # command lines and data files
    "unknown train mode": BadInput("train.py", ("--mode", "dance"), "unknown mode 'dance'"),
    "flag of the wrong type": BadInput("train.py", ("--epochs", "many"), "argument --epochs: invalid int value"),
    "flag not a boolean": BadInput("train.py", ("--from_scratch", "maybe"), "expected true or false, got 'maybe'"),
    "missing data folder": BadInput(
        "train.py", ("--dataset", "pneumoniamnist", "--data_dir", "{files}/absent"), "data folder for pneumoniamnist"
    ),
    "truncated .npz": BadInput(
        "train.py", ("--dataset", "pneumoniamnist", "--data_dir", "{files}/npz_truncated"), "corrupt or truncated .npz"
    ),
    "NaN images in the .npz": BadInput(
        "train.py", ("--dataset", "pneumoniamnist", "--data_dir", "{files}/npz_nan"), "train_images must be uint8"
    ),
    "truncated .mat": BadInput(
        "train.py", ("--data_dir", "{files}/mat_truncated", "--data_options", "length=600"), "cannot read a MATLAB"
    ),
    "NaN ECG in the .mat": BadInput(
        "train.py", ("--data_dir", "{files}/mat_nan", "--data_options", "length=600"), "'val' must be int16"
    ),
    "main with zero epochs": BadInput("main.py", ("--epochs", "0"), "epochs must be >= 1, got 0"),
    # class 1: files that disagree with themselves
    "header longer than its .mat": BadInput(
        "train.py", ("--data_dir", "{files}/hea_length", "--data_options", "length=600"), "declares 99999 samples"
    ),
    "fewer labels than images": BadInput(
        "train.py", ("--dataset", "pneumoniamnist", "--data_dir", "{files}/npz_short"), "train_labels must have shape"
    ),
    "labels outside the class set": BadInput(
        "train.py", ("--dataset", "pneumoniamnist", "--data_dir", "{files}/npz_range"), "val_labels outside 0..1"
    ),
    # class 2: numbers out of range
    "negative epochs": BadInput("train.py", ("--epochs", "-1"), "epochs must be >= 1, got -1"),
    "zero learning rate": BadInput("train.py", ("--learning_rate", "0"), "learning_rate must be >= 1e-12"),
    "negative num_samples": BadInput("attack.py", (*VICTIM[:-1], "-1"), "num_samples must be >= 0, got -1"),
    "negative seed": BadInput("attack.py", (*VICTIM, "--seed", "-5"), "seed must be in [0, 4294967295], got -5"),
    "gradcam top 0 percent": BadInput(
        "gradcam.py", ("--iou_top_percent", "0"), "iou_top_percent must be in [1e-06, 100]"
    ),
    # class 3: names the registry or the store would refuse
    "model name with a slash": BadInput("train.py", ("--model_name", "team/model"), "Names cannot contain '/'"),
    "model name over the column": BadInput(
        "train.py", ("--model_name", "m" * 257), "is 257 characters; the store allows 256"
    ),
    "reserved alias": BadInput("train.py", ("--alias", "v2"), "Version alias name 'v2' is reserved"),
    "alias with a space": BadInput("train.py", ("--alias", "my champion"), "Invalid alias name"),
    # class 4: probabilities where logits should be
    "softmax before the softmax": BadInput(
        "attack.py", ("--model", "{files}/double_softmax.keras", *ON_IMAGES), "already probabilities"
    ),
    # models and attack settings
    "unknown attack": BadInput("attack.py", (*VICTIM, "--attack", "magic"), "unknown attack 'magic'"),
    "negative eps": BadInput("attack.py", (*VICTIM, "--attack_params", "eps=-0.1"), "eps must be a finite number"),
    "NaN eps": BadInput("attack.py", (*VICTIM, "--attack_params", "eps=nan"), "eps must be a finite number"),
    "shard 3/2": BadInput("attack.py", (*VICTIM, "--shard", "3/2"), "shard '3/2' is out of range"),
    "unknown registry alias": BadInput(
        "attack.py", ("--model", "models:/tiny-pneumonia@nonexistent", *ON_IMAGES), "cannot resolve model"
    ),
    ".keras file of the wrong shape": BadInput(
        "attack.py", ("--model", "{files}/ecg_victim.keras", *ON_IMAGES), "takes inputs of shape (600, 1)"
    ),
    "truncated .keras file": BadInput(
        "attack.py", ("--model", "{files}/corrupt.keras", *ON_IMAGES), "accessible `.keras` zip file"
    ),
    "model running Python code": BadInput(
        "attack.py", ("--model", "{files}/lambda.keras", *ON_IMAGES), "deserialization of a `Lambda` layer"
    ),
    "model without a logits layer": BadInput(
        "attack.py", ("--model", "{files}/no_logits.keras", *ON_IMAGES), "must end in a softmax Activation"
    ),
    "model with NaN weights": BadInput("attack.py", ("--model", "{files}/nan_weights.keras", *ON_IMAGES), "NaN"),
    "resume a train run": BadInput("attack.py", (*VICTIM, "--run_id", "{train_run}"), "is not an attack run"),
    "train resume with other parameters": BadInput(
        "train.py", ("--run_id", "{train_run}"), "was started with other values of dataset"
    ),
    "victim training resumed as a robust one": BadInput(
        "train.py", ("--mode", "robust", "--run_id", "{train_run}"), "was started with other values of mode"
    ),
    # runs and experiments
    "gradcam on a train run": BadInput(
        "gradcam.py", ("--attack_run_id", "{train_run}"), "is a train run, not an attack run"
    ),
    "evaluate a missing experiment": BadInput(
        "evaluate.py", ("--experiment_name", "no-such-experiment"), "experiment 'no-such-experiment' not found"
    ),
}
# Wrong credentials: tests/test_production.py (the only server here with auth on).


def _experiment(name: str) -> str:
    return "bad-" + name.replace(" ", "-").replace(".", "").replace("/", "-")


@dataclass(frozen=True)
class Outcome:
    returncode: int
    stderr: str


@pytest.fixture(scope="module")
def bad_input_outcomes(
    victims: dict[str, str], tracking_server: str, files: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Outcome]:
    """Every case of the table run once as a user would, two at a time (each process spends seconds importing)."""
    client = mlflow.MlflowClient(tracking_server)
    values = {
        "files": str(files),
        "images": victims["images"],
        "train_run": str(client.get_model_version_by_alias("tiny-pneumonia", "candidate").run_id),
    }

    def run(name: str, case: BadInput) -> Outcome:
        cwd = tmp_path_factory.mktemp("bad")
        env = step_env(MLFLOW_TRACKING_URI=tracking_server, MEDADV_HOME=str(cwd / ".medadv"))
        done = subprocess.run(
            [*case.command(values), "--experiment", _experiment(name)],
            cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        return Outcome(done.returncode, done.stderr)

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(run, name, case) for name, case in BAD_INPUTS.items()}
        outcomes = {name: future.result() for name, future in futures.items()}
    print(f"\nRELIABILITY bad inputs: {len(outcomes)} cases in {time.monotonic() - started:.0f} s")
    return outcomes


@pytest.fixture(scope="module")
def versions_before(victims: dict[str, str], tracking_server: str) -> set[tuple[str, str]]:
    return {(v.name, v.version) for v in mlflow.MlflowClient(tracking_server).search_model_versions()}


@pytest.mark.parametrize(
    "name",
    list(BAD_INPUTS),
)
def test_a_bad_input_fails_in_one_line_and_leaves_no_finished_run(
    name: str, versions_before: set[tuple[str, str]], bad_input_outcomes: dict[str, Outcome], tracking_server: str
) -> None:
    case = BAD_INPUTS[name]
    outcome = bad_input_outcomes[name]
    assert outcome.returncode != 0
    assert "Traceback" not in outcome.stderr, outcome.stderr[-3000:]
    last = outcome.stderr.strip().splitlines()[-1]
    assert last.startswith("medadv: error: ") and case.message in last, last

    client = mlflow.MlflowClient(tracking_server)
    experiment = client.get_experiment_by_name(_experiment(name))
    runs = client.search_runs([experiment.experiment_id], run_view_type=ViewType.ALL) if experiment else []
    assert [run.info.status for run in runs if run.info.status == "FINISHED"] == []
    for run in runs:
        assert client.search_model_versions(f"run_id = '{run.info.run_id}'") == []


def test_the_bad_inputs_registered_no_model_version(
    versions_before: set[tuple[str, str]], bad_input_outcomes: dict[str, Outcome], tracking_server: str
) -> None:
    after = {(v.name, v.version) for v in mlflow.MlflowClient(tracking_server).search_model_versions()}
    assert after == versions_before
