"""What can be checked of the deployment without a cluster or a docker engine, with MLflow's and Keras' own code.

The Kubernetes job is rendered by the functions `mlflow run --backend kubernetes` calls; the image's install
steps are read from the Dockerfile and compared with pyproject.toml; a model file carrying code is refused.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import keras
import pytest
from mlflow.projects import _parse_kubernetes_config, env_type
from mlflow.projects import kubernetes as mlflow_kubernetes
from mlflow.projects._project_spec import Project, load_project
from mlflow.projects.docker import validate_docker_env
from mlflow.projects.utils import MLFLOW_DOCKER_WORKDIR_PATH, get_entry_point_command, get_run_env_vars
from mlflow_server import REPO
from packaging.requirements import Requirement

IMAGE = "registry.example.org/medadv/medadv-gpu:0.1.0"
IN_CLUSTER_URI = "http://mlflow.medadv.svc.cluster.local:5000"


def _kubernetes_project(folder: Path) -> Project:
    subprocess.run(
        [sys.executable, str(REPO / "deploy" / "kubernetes_project.py"), "--image", IMAGE, str(folder)], check=True
    )
    return load_project(str(folder))


def _argv(command: list[str]) -> list[str]:
    """A command's words with `--flag=value` split into `--flag`, `value`, so both spellings compare equal."""
    return [part for word in command for part in (word.split("=", 1) if word.startswith("--") else [word])]


def _render(project: Project, entry_point: str, parameters: dict[str, str], storage: Path) -> dict[str, Any]:
    """The Job that `mlflow run -e ENTRY_POINT --backend kubernetes` submits, rendered by MLflow's functions."""
    config = json.loads((REPO / "deploy" / "kubernetes_config.json").read_text())
    kube = _parse_kubernetes_config(config)  # reads the template path relative to the repository (cwd)
    return mlflow_kubernetes._get_kubernetes_job_definition(
        project.name,
        IMAGE,
        "sha256:" + "0" * 64,
        mlflow_kubernetes._get_run_command(get_entry_point_command(project, entry_point, parameters, str(storage))),
        get_run_env_vars(run_id="run0", experiment_id="7"),
        kube["kube-job-template"],
    )


def test_a_sharded_attack_renders_as_a_gpu_job_with_credentials_from_a_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("KUBE_MLFLOW_TRACKING_URI", IN_CLUSTER_URI)
    project = _kubernetes_project(tmp_path / "project")
    validate_docker_env(project)  # what the backend checks first
    parameters = {"model": "models:/medadv-cinc2017-ecg_resnet@champion", "shard": "3/8", "parent_run_id": "p0"}
    job = _render(project, "attack", parameters, tmp_path)

    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert job["metadata"]["name"].startswith("medadv-") and job["metadata"]["namespace"] == "medadv"
    assert container["image"] == f"{IMAGE}@sha256:{'0' * 64}"
    assert (
        container["resources"]["requests"]["nvidia.com/gpu"] == container["resources"]["limits"]["nvidia.com/gpu"] == 1
    )
    argv = _argv(container["command"])
    assert argv[:2] == ["python", "steps/attack.py"]
    flags = dict(zip(argv[2::2], argv[3::2], strict=True))
    assert flags["--model"] == parameters["model"] and flags["--shard"] == "3/8" and flags["--parent_run_id"] == "p0"
    assert flags["--data_dir"] == "" and not any("'" in word for word in container["command"])  # empty stays empty

    env = {variable["name"]: variable for variable in container["env"]}
    assert env["MLFLOW_TRACKING_URI"]["value"] == IN_CLUSTER_URI
    assert env["MLFLOW_RUN_ID"]["value"] == "run0" and env["MLFLOW_EXPERIMENT_ID"]["value"] == "7"
    for name, key in (("MLFLOW_TRACKING_USERNAME", "username"), ("MLFLOW_TRACKING_PASSWORD", "password")):
        assert env[name] == {
            "name": name,
            "valueFrom": {"secretKeyRef": {"name": "medadv-mlflow-credentials", "key": key}},
        }
    secret_like = [name for name in env if re.search("PASSWORD|TOKEN|SECRET|KEY", name) and "value" in env[name]]
    assert secret_like == []
    assert pod["restartPolicy"] == "Never" and pod["securityContext"]["runAsNonRoot"] is True


def test_the_kubernetes_project_runs_the_same_commands_as_the_repository(tmp_path: Path) -> None:
    kubernetes = _kubernetes_project(tmp_path / "project")
    local = load_project(str(REPO))
    assert kubernetes.name == local.name and kubernetes.docker_env == {"image": IMAGE}
    assert kubernetes.env_type == env_type.DOCKER and local.env_type != env_type.DOCKER  # local runs need no docker
    assert set(kubernetes._entry_points) == set(local._entry_points)
    for name, entry_point in local._entry_points.items():
        if not all(isinstance(key, str) for key in entry_point.parameters):
            continue  # a YAML 1.1 boolean as a parameter name: MLflow cannot run that entry point anywhere
        defaults = {key: str(parameter.default) for key, parameter in entry_point.parameters.items()}
        assert kubernetes.get_entry_point(name).parameters.keys() == entry_point.parameters.keys()
        commands = [
            shlex.split(project.get_entry_point(name).compute_command(defaults, str(tmp_path)))
            for project in (local, kubernetes)
        ]
        assert _argv(commands[0]) == _argv(commands[1]), name


def test_mlflow_still_quotes_an_empty_value_literally_which_is_why_the_project_writes_flag_equals(
    tmp_path: Path,
) -> None:
    """Rendered from the repository's own `--flag {value}` commands, an empty value reaches the pod as ''."""
    command = get_entry_point_command(load_project(str(REPO)), "attack", {}, str(tmp_path))
    assert "''" in mlflow_kubernetes._get_run_command(command)  # if this fails, MLflow fixed it: drop the rewrite


def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_the_image_installs_what_pyproject_declares() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    instructions = _dockerfile_instructions()
    python = re.fullmatch(r"==(\d+\.\d+)\.\*", project["requires-python"])
    assert python is not None
    assert instructions[0] == ("FROM", f"python:{python.group(1)}-slim")
    assert ("WORKDIR", MLFLOW_DOCKER_WORKDIR_PATH.rstrip("/")) in instructions  # where MLflow runs commands
    pip = [shlex.split(step) for keyword, step in instructions if keyword == "RUN" and "pip" in step]
    words = [word for step in pip for word in step]
    assert ".[gpu]" in words and "gpu" in project["optional-dependencies"]

    gpu_tensorflow = {Requirement(r).name: Requirement(r) for r in project["optional-dependencies"]["gpu"]}[
        "tensorflow"
    ]
    pinned = [Requirement(word) for word in words if word.startswith("tensorflow") and Requirement(word).specifier]
    assert pinned and all(r.specifier == gpu_tensorflow.specifier for r in pinned)
    if any(Requirement(r).name == "tensorflow-cpu" for r in project["dependencies"]):
        # Both wheels unpack into one `tensorflow` package: the CPU one must go, then CUDA's be laid down again.
        assert ["pip", "uninstall", "--yes", "tensorflow-cpu"] in _commands(pip)
        assert {"--force-reinstall", "--no-deps"} <= set(words)
    assert any(keyword == "USER" and step != "root" for keyword, step in instructions)


def _commands(steps: list[list[str]]) -> list[list[str]]:
    """`a && b` shell steps as separate commands."""
    commands: list[list[str]] = [[]]
    for word in (word for step in steps for word in [*step, "&&"]):
        if word == "&&":
            commands.append([])
        else:
            commands[-1].append(word)
    return [command for command in commands if command]


def test_local_state_stays_out_of_the_image() -> None:
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()}
    assert {".venv", "mlruns", "mlruns.db", "mlartifacts", ".medadv", ".git"} <= ignored


TRACKING = {"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}
SERVER = {
    "MLFLOW_BACKEND_STORE_URI": "postgresql://mlflow@127.0.0.1:9/mlflow",
    "MLFLOW_ARTIFACTS_DESTINATION": "s3://medadv-artifacts/mlartifacts",
    "MLFLOW_AUTH_CONFIG_PATH": "basic_auth.ini",
    "MLFLOW_FLASK_SERVER_SECRET_KEY": "k",
}


@pytest.mark.parametrize(
    ("script", "args", "env", "message"),
    [
        ("sweep.sh", [], {}, "usage: deploy/sweep.sh N [-P name=value ...]"),
        ("sweep.sh", ["0"], {}, "N must be a positive integer, got '0'"),
        ("sweep.sh", ["two"], {}, "N must be a positive integer, got 'two'"),
        ("sweep.sh", ["2"], {}, "set MLFLOW_TRACKING_URI to the shared tracking server"),
        ("sweep.sh", ["2"], TRACKING | {"MEDADV_BACKEND": "slurm"},
         "MEDADV_BACKEND must be kubernetes or local, got 'slurm'"),
        ("sweep.sh", ["2"], TRACKING, "set MEDADV_IMAGE to the pushed image, e.g. "),
        ("mlflow_server.sh", [], {}, "set MLFLOW_BACKEND_STORE_URI (see deploy/README.md)"),
        ("mlflow_server.sh", [], SERVER | {"MLFLOW_BACKEND_STORE_URI": "postgresql://mlflow:hunter2@db/mlflow"},
         "keep the password out of MLFLOW_BACKEND_STORE_URI: set PGPASSWORD (or use ~/.pgpass)"),
    ],
)  # fmt: skip
def test_deploy_scripts_refuse_bad_settings_in_one_line(
    script: str, args: list[str], env: dict[str, str], message: str
) -> None:
    clean = {key: value for key, value in os.environ.items() if not key.startswith(("MLFLOW_", "MEDADV_"))}
    done = subprocess.run(
        ["bash", str(REPO / "deploy" / script), *args], env=clean | env, capture_output=True, text=True
    )
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"{script.removesuffix('.sh')}: {message}")


def test_a_model_file_carrying_code_is_refused_and_the_code_never_runs(tmp_path: Path) -> None:
    from medadv.tracking.registry import load_model

    marker = tmp_path / "code-ran"
    # Serialised as bytecode into the .keras file; it would create `marker` when the layer is rebuilt.
    payload = eval(f"lambda t: (__import__('pathlib').Path({str(marker)!r}).touch(), t)[1]")
    inputs = keras.Input((4,))
    logits = keras.layers.Dense(2, name="logits")(inputs)
    probs = keras.layers.Activation("softmax", name="probs")(keras.layers.Lambda(payload)(logits))
    keras.Model(inputs, probs).save(tmp_path / "victim.keras")
    marker.unlink()  # building the model above ran it once

    with pytest.raises(ValueError, match="Lambda"):
        load_model(str(tmp_path / "victim.keras"))
    assert not marker.exists()
    keras.saving.load_model(tmp_path / "victim.keras", safe_mode=False)  # the payload is real: unsafe loading runs it
    assert marker.exists()
