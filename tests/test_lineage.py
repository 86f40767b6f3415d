"""Lineage: a run pins the model version an alias named when it started, and later steps keep to it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.projects import _project_spec
from mlflow_server import REPO, step_env

from medadv.jobs.attack import AttackSettings, attack
from medadv.jobs.evaluate import EvaluateSettings, evaluate
from medadv.jobs.gradcam import GradcamSettings, gradcam
from medadv.jobs.main import MainSettings
from medadv.jobs.study import StudySettings
from medadv.jobs.train import TrainSettings, train
from medadv.models import ModelError
from medadv.tracking.runs import (
    RESOLVED_PARAMS,
    as_given,
    connect,
    find_finished_run,
    param_text,
    param_value,
    start_step_run,
)

EXPERIMENT = "lineage-tests"  # its own experiment and model name: moving the alias touches no other test
NAME = "lineage-pneumonia"


def _train(images: str, tracking_server: str, seed: int) -> str:
    settings = TrainSettings(dataset="pneumoniamnist", data_dir=images, arch="small_cnn", arch_options="width=4",
                             epochs=1, seed=seed, model_name=NAME)  # fmt: skip
    return train(settings, tracking_server, EXPERIMENT)


def test_attack_gradcam_and_evaluate_credit_the_version_the_alias_named_at_attack_time(
    victims: dict[str, str], tracking_server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    client = mlflow.MlflowClient(tracking_server)
    first_train = _train(victims["images"], tracking_server, seed=0)
    attack_run = attack(
        AttackSettings(model=f"models:/{NAME}@candidate", dataset="pneumoniamnist", data_dir=victims["images"],
                       split="train", attack="fgsm", attack_params="eps=0.1", num_samples=4, selection="all",
                       transfer_to=f"models:/{NAME}@candidate"),
        tracking_server, EXPERIMENT,
    )  # fmt: skip
    second_train = _train(victims["images"], tracking_server, seed=1)  # a retrain moves @candidate to version 2
    assert client.get_model_version_by_alias(NAME, "candidate").version == "2"

    attacked = client.get_run(attack_run).data
    assert attacked.params["model"] == f"models:/{NAME}@candidate"  # what the user gave
    assert attacked.params["model_version_uri"] == attacked.params["transfer_to_versions"] == f"models:/{NAME}/1"
    assert attacked.tags["medadv.model_alias"] == "candidate" and attacked.tags["medadv.model_version"] == "1"
    assert attacked.tags["medadv.model_run_id"] == first_train
    # `train` registers its run's model folder, which is no MLflow 3 logged model: no model input to record
    assert client.get_run(attack_run).inputs.model_inputs == []

    gradcam_run = gradcam(GradcamSettings(attack_run_id=attack_run), tracking_server, EXPERIMENT)
    explained = client.get_run(gradcam_run).data
    assert explained.params["model_version_uri"] == f"models:/{NAME}/1"
    assert explained.tags["medadv.model_run_id"] == first_train != second_train

    capsys.readouterr()
    evaluate_run = evaluate(EvaluateSettings(), tracking_server, EXPERIMENT)
    # The session's victims were trained in experiment "tests": evaluate says so instead of missing them silently.
    out = capsys.readouterr().out
    assert "live in other experiments (" in out and "tests" in out and "not evaluated" in out

    # Run names say what each run did; the experiment opens on MLflow 3's model-training views.
    names = [client.get_run(run_id).info.run_name for run_id in (first_train, attack_run, gradcam_run, evaluate_run)]
    assert names == [
        "train small_cnn · pneumoniamnist",
        f"fgsm eps=0.1 · {NAME} v1",
        f"gradcam · fgsm eps=0.1 · {NAME} v1",
        "evaluate · this experiment",
    ]
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment is not None and experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    tables = {
        name: pd.read_parquet(client.download_artifacts(evaluate_run, f"tables/{name}.parquet"))
        for name in ("attacks", "models", "transfer")
    }
    row = tables["attacks"].loc[attack_run]
    assert row["model"] == f"models:/{NAME}/1" and row["model_label"] == f"{NAME} v1 (@candidate at the time)"
    assert tables["models"].loc[f"models:/{NAME}/1", "train_run_id"] == first_train
    assert list(tables["transfer"]["target_model"]) == [f"models:/{NAME}/1"]


def test_attack_and_gradcam_runs_record_the_pinned_versions_logged_model_as_their_model_input(
    victims: dict[str, str], tracking_server: str
) -> None:
    """A version of a model logged MLflow 3's way (`mlflow.keras.log_model(name=...)`, a logged model with an id)
    is an input of the runs that attack and explain it; a version registered from files (the transfer target,
    trained by `train`) adds none."""
    from mlflow.models import infer_signature

    from medadv.tracking.lineage import log_model_inputs, logged_model_id
    from medadv.tracking.registry import load_model, pip_requirements

    connect(tracking_server, EXPERIMENT)
    model = load_model("models:/tiny-pneumonia@candidate")
    example = np.zeros((2, *model.input_shape[1:]), dtype=np.float32)
    with mlflow.start_run(run_name="log a model MLflow 3's way"):
        logged = mlflow.keras.log_model(model, name="model", signature=infer_signature(example, model.predict(example)),
                                        pip_requirements=pip_requirements())  # fmt: skip
    version = mlflow.register_model(logged.model_uri, "lineage-logged-model").version
    victim = f"models:/lineage-logged-model/{version}"
    assert logged_model_id(victim) == logged.model_id
    assert logged_model_id("models:/tiny-pneumonia/1") is None

    attack_run = attack(
        AttackSettings(model=victim, dataset="pneumoniamnist", data_dir=victims["images"], split="train",
                       attack="fgsm", attack_params="eps=0.1", num_samples=2, selection="all",
                       transfer_to="models:/tiny-pneumonia@candidate"),
        tracking_server, EXPERIMENT,
    )  # fmt: skip
    client = mlflow.MlflowClient(tracking_server)
    assert [model.model_id for model in client.get_run(attack_run).inputs.model_inputs] == [logged.model_id]
    gradcam_run = gradcam(GradcamSettings(attack_run_id=attack_run), tracking_server, EXPERIMENT)
    assert [model.model_id for model in client.get_run(gradcam_run).inputs.model_inputs] == [logged.model_id]

    with mlflow.start_run():  # each logged model once, also when a resumed run logs its inputs again
        assert log_model_inputs([victim, f"{victim}+{victim}"]) == [logged.model_id]
        assert log_model_inputs([victim]) == []


def test_an_alias_that_names_no_version_is_refused_before_any_run(
    victims: dict[str, str], tracking_server: str
) -> None:
    settings = AttackSettings(model="models:/tiny-pneumonia@nope", dataset="pneumoniamnist",
                              data_dir=victims["images"], split="train", attack="fgsm", num_samples=2)  # fmt: skip
    with pytest.raises(ModelError) as error:
        attack(settings, tracking_server, EXPERIMENT)
    assert "cannot resolve model models:/tiny-pneumonia@nope" in str(error.value) and "\n" not in str(error.value)


def test_every_readme_mlflow_run_command_logs_to_the_one_experiment() -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    commands = re.findall(r"mlflow run \. -e \w+[^\n`]*", readme)
    assert len(commands) >= 5
    assert [command for command in commands if "--experiment-name medadv" not in command] == []


def test_mlflow_experiment_name_from_the_environment_is_used_and_marked_model_training(
    tracking_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)  # in-process set_experiment exports it
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "lineage-from-env")
    connect(tracking_server)
    experiment = mlflow.MlflowClient(tracking_server).get_experiment_by_name("lineage-from-env")
    assert experiment is not None and experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    with mlflow.start_run() as run:
        assert run.info.experiment_id == experiment.experiment_id


def test_booleans_are_logged_as_mlflow_run_logs_them_and_reuse_still_finds_the_run(tracking_server: str) -> None:
    connect(tracking_server, EXPERIMENT)
    params = {"from_scratch": True, "fine_tune": False, "epochs": 3}
    with start_step_run("canonical-params", params) as run:
        pass
    assert mlflow.get_run(run.info.run_id).data.params == {"from_scratch": "true", "fine_tune": "false", "epochs": "3"}
    found = find_finished_run("canonical-params", params)
    assert found is not None and found.info.run_id == run.info.run_id


# --- one canonical form per param, whichever way a step was started ------------------------------------------

SETTINGS = {
    "main": MainSettings, "train": TrainSettings, "attack": AttackSettings, "gradcam": GradcamSettings,
    "evaluate": EvaluateSettings, "study": StudySettings,
}  # fmt: skip


def test_mlflow_run_logs_every_default_as_the_step_logs_it() -> None:
    project = _project_spec.load_project(str(REPO))
    for entry_point, settings in SETTINGS.items():
        # What MLflow 3.17's `mlflow run` logs for an entry point run without -P: its own code, not a copy.
        logged, extra = project.get_entry_point(entry_point).compute_parameters({}, storage_dir=None)
        defaults = {key: param_text(value) for key, value in asdict(settings()).items()}
        assert extra == {} and logged == {key: defaults[key] for key in logged}, entry_point
        # Values a step resolves itself: undeclared, so that `mlflow run` does not log the default in their place.
        assert set(defaults) - set(logged) == set(RESOLVED_PARAMS.get(entry_point, ())), entry_point


def test_empty_spaced_and_quoted_values_read_back_as_given() -> None:
    for value in ("", "pgd", "models:/a/1 models:/b/1", "params.dataset = 'x'", "it's", "''"):
        assert param_value(param_text(value)) == value
    assert param_text("") == "''" and param_text(True) == "true" and param_text(0.0) == "0.0"
    assert param_value("models:/a/1 models:/b/1") == "models:/a/1 models:/b/1"  # logged unquoted, by older runs


def test_mlflow_run_and_python_log_the_same_attack_params(
    victims: dict[str, str], tracking_server: str, tmp_path: Path
) -> None:
    """The same tiny attack through `mlflow run -e attack` and through the job: identical params, `engine` the
    engine that ran, `selected_clean_accuracy` for the attacked samples' accuracy; the reuse of finished runs
    finds them, whatever the engine, unless another engine is asked for."""
    given = {
        "model": "models:/tiny-pneumonia@candidate", "dataset": "pneumoniamnist", "data_dir": victims["images"],
        "split": "train", "attack": "fgsm", "attack_params": "eps=0.1", "num_samples": "2", "selection": "all",
    }  # fmt: skip
    command = [sys.executable, "-m", "mlflow", "run", str(REPO), "-e", "attack", "--env-manager", "local",
               "--experiment-name", "canonical-params"]  # fmt: skip
    command += [part for key, value in given.items() for part in ("-P", f"{key}={value}")]
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"  # `python` is this interpreter
    env = step_env(MLFLOW_TRACKING_URI=tracking_server, PATH=path, MEDADV_HOME=str(tmp_path))
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    client = mlflow.MlflowClient(tracking_server)
    [by_mlflow_run] = client.search_runs([client.get_experiment_by_name("canonical-params").experiment_id])
    settings = AttackSettings(**{**given, "num_samples": 2})  # type: ignore[arg-type]
    by_python = client.get_run(attack(settings, tracking_server, "canonical-params"))

    assert by_mlflow_run.data.tags["mlflow.project.entryPoint"] == "attack"  # started by `mlflow run`
    assert by_mlflow_run.data.params == by_python.data.params
    params = by_python.data.params
    assert params["engine"] == "native" and params["data_options"] == params["transfer_to"] == "''"
    assert as_given(by_python).data.params["transfer_to"] == ""
    assert "selected_clean_accuracy" in by_python.data.metrics and "clean_accuracy" not in by_python.data.metrics
    connect(tracking_server, "canonical-params")
    assert find_finished_run("attack", asdict(settings)) is not None
    assert find_finished_run("attack", asdict(replace(settings, engine="art"))) is None
