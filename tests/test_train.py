"""The `train` entry point against a real MLflow server: logged, registered, reloadable, nothing half-done."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import asdict
from importlib.metadata import version as version_of
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow_server import REPO, run_step, step_env

from medadv.jobs.train import TrainSettings, train
from medadv.tracking.runs import param_text

TINY = ["--data_options", "length=600", "--arch_options", "num_blocks=2,base_filters=8", "--epochs", "2"]


def test_mlflow_run_train_registers_a_model_that_reloads_by_alias(tracking_server: str, tmp_path: Path) -> None:
    command = [
        sys.executable, "-m", "mlflow", "run", str(REPO), "-e", "train", "--env-manager", "local",
        "--experiment-name", "test-train", "-P", "data_options=length=600",
        "-P", "arch_options=num_blocks=2,base_filters=8", "-P", "epochs=2", "-P", "model_name=tiny-ecg",
    ]  # fmt: skip
    # `mlflow run --env-manager local` runs `python ...` from PATH: this interpreter's.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    env = step_env(MLFLOW_TRACKING_URI=tracking_server, PATH=path, MEDADV_HOME=str(tmp_path))
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "medadv train: run" in done.stdout  # the first lines name the run and how to view it

    # A fresh client in this process, talking to the server only.
    mlflow.set_tracking_uri(tracking_server)
    client = mlflow.MlflowClient()
    version = client.get_model_version_by_alias("tiny-ecg", "candidate")
    assert version.tags["dataset"] == "cinc2017"
    assert version.tags["training_method"] == "standard"
    run = client.get_run(version.tags["run_id"])
    assert run.info.status == "FINISHED"
    assert {"test_accuracy", "test_macro_f1", "clean_accuracy"} <= set(run.data.metrics)
    # Every param as `python steps/train.py` logs the same settings: '' for empty, true, 0.0, 0.001.
    same = TrainSettings(data_options="length=600", arch_options="num_blocks=2,base_filters=8", epochs=2,
                         model_name="tiny-ecg")  # fmt: skip
    assert run.data.params == {key: param_text(value) for key, value in asdict(same).items()}
    # The step ends with its test scores, the registered version and where to look (`mlflow run` then prints
    # its own two lines).
    metrics = run.data.metrics
    *_, header, scores, where, _, _ = done.stdout.strip().splitlines()
    assert header == f"medadv train finished: {run.info.run_name} ({run.info.run_id})", done.stdout[-1500:]
    assert scores.split() == [
        "test_accuracy", f"{metrics['test_accuracy']:.4g}", "test_macro_f1", f"{metrics['test_macro_f1']:.4g}",
        "test_auc", f"{metrics['test_auc']:.4g}", "model", f"models:/tiny-ecg/{version.version}",
    ]  # fmt: skip
    assert where == f"  view it: {tracking_server}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
    assert len(client.get_metric_history(run.info.run_id, "loss")) == 2  # one point per epoch
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "figures")}
    assert artifacts == {"figures/confusion_matrix.png", "figures/learning_curves.png"}
    model_files = {a.path for a in client.list_artifacts(run.info.run_id, "model")}
    assert {"model/MLmodel", "model/input_example.json"} <= model_files  # signature and input example
    requirements = Path(client.download_artifacts(run.info.run_id, "model/requirements.txt", str(tmp_path)))
    pinned = dict(line.split("==") for line in requirements.read_text().split())
    assert pinned["keras"] == version_of("keras") and pinned["tensorflow-cpu"] == version_of("tensorflow-cpu")

    from medadv.data import load_dataset
    from medadv.tracking.registry import load_model

    model = load_model("models:/tiny-ecg@candidate")
    test = load_dataset("cinc2017", tmp_path / "synthetic" / "cinc2017-seed0", "test", length=600)
    logged = pd.read_json(
        mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="predictions/test.json"),
        orient="split",
    )
    probs = model.predict(test.x, verbose=0)
    assert list(logged["id"]) == list(test.ids)
    np.testing.assert_allclose(probs[:, 0], logged[f"prob_{test.class_names[0]}"], rtol=1e-4, atol=1e-6)
    assert float(version.tags["clean_accuracy"]) == pytest.approx(np.mean(probs.argmax(1) == test.y), abs=1e-4)


def test_diverging_training_fails_the_run_and_registers_nothing(tracking_server: str, tmp_path: Path) -> None:
    done = run_step(
        "train.py", *TINY, "--learning_rate", "1e12", "--model_name", "diverges", "--experiment", "test-diverge",
        tracking_uri=tracking_server, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1].startswith("medadv: error: training diverged")
    mlflow.set_tracking_uri(tracking_server)
    assert mlflow.MlflowClient().search_model_versions("name='diverges'") == []
    runs = mlflow.search_runs(experiment_names=["test-diverge"], output_format="list")
    assert [run.info.status for run in runs] == ["FAILED"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--arch", "transformer"], "unknown architecture 'transformer'"),
        (["--dataset", "imagenet"], "unknown data set 'imagenet'"),
        (["--data_dir", "/no/such/folder"], "/no/such/folder: data folder for cinc2017 not found"),
        (["--arch_options", "depth=3"], "arch_options: unknown option 'depth=3'"),
        (["--data_options", "length=abc"], "data_options option length: cannot read 'abc' as int"),
        (["--epochs", "0"], "epochs must be >= 1, got 0"),
        (["--tracking_uri", "http://127.0.0.1:9"], "tracking server http://127.0.0.1:9 is unreachable"),
    ],
)
def test_bad_input_fails_in_one_line_before_any_run(
    tracking_server: str, tmp_path: Path, args: list[str], message: str
) -> None:
    done = run_step("train.py", *args, "--experiment", "test-bad-input", tracking_uri=tracking_server, cwd=tmp_path)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("medadv: error: ") and message in lines[-1], done.stderr[-2000:]
    mlflow.set_tracking_uri(tracking_server)
    experiment = mlflow.get_experiment_by_name("test-bad-input")
    assert experiment is None or mlflow.search_runs([experiment.experiment_id], output_format="list") == []


def test_generator_sets_and_robust_models_are_named_after_what_they_did(
    victims: dict[str, str], tracking_server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    client = mlflow.MlflowClient(tracking_server)
    victim = client.get_model_version_by_alias("tiny-pneumonia", "candidate")
    common = {"dataset": "pneumoniamnist", "data_dir": victims["images"], "victim": "models:/tiny-pneumonia@candidate",
              "epochs": 1, "batch_size": 32}  # fmt: skip
    capsys.readouterr()
    generators = client.get_run(
        train(TrainSettings(mode="generator", generator_loss="nce", **common), tracking_server, "test-names")  # type: ignore[arg-type]
    )
    assert generators.info.run_name == f"generators nce eps=0.1 · tiny-pneumonia v{victim.version}"
    assert generators.data.params["victim_version_uri"] == f"models:/tiny-pneumonia/{victim.version}"
    children = client.search_runs(
        [generators.info.experiment_id], f"tags.`mlflow.parentRunId` = '{generators.info.run_id}'"
    )
    assert sorted(child.info.run_name for child in children) == [
        "generator nce · class normal", "generator nce · class pneumonia",
    ]  # fmt: skip
    summary = capsys.readouterr().out.strip().splitlines()[-2].split()
    assert summary[:2] == ["clean_accuracy", f"{generators.data.metrics['clean_accuracy']:.4g}"]
    assert summary[-2:] == ["generators", generators.info.run_id]  # the id --generators takes

    robust = client.get_run(
        train(TrainSettings(mode="robust", method="fgsm", attack_params="eps=0.1", **common), tracking_server,  # type: ignore[arg-type]
              "test-names")
    )  # fmt: skip
    assert robust.info.run_name == f"robust fgsm eps=0.1 · tiny-pneumonia v{victim.version}"
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-3] == f"medadv train finished: {robust.info.run_name} ({robust.info.run_id})"
    assert lines[-2].split()[:4] == [
        "clean_accuracy", f"{robust.data.metrics['clean_accuracy']:.4g}",
        "robust_accuracy", f"{robust.data.metrics['robust_accuracy']:.4g}",
    ]  # fmt: skip
