"""What a command leaves on the terminal: a short summary of its results and where to look, and after Ctrl-C one
line saying how to resume, the run marked KILLED."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
from mlflow_server import REPO, run_step, step_env

from medadv.jobs.attack import AttackSettings, attack
from medadv.jobs.evaluate import EvaluateSettings, evaluate
from medadv.jobs.gradcam import GradcamSettings, gradcam
from medadv.tracking.killed import PATIENCE_S
from medadv.tracking.writer import WRITER_TAG

SUMMARY_EXPERIMENT = "terminal-summary"
INTERRUPT_EXPERIMENT = "terminal-interrupt"


def _summary(out: str, step: str) -> list[str]:
    """The lines a step printed from `medadv STEP finished:` to its `view it:` line."""
    lines = out.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(f"medadv {step} finished: ")]
    assert starts, out[-2000:]
    end = next(i for i in range(starts[-1], len(lines)) if lines[i].startswith("  view it: "))
    return lines[starts[-1] : end + 1]


def test_attack_gradcam_and_evaluate_end_with_their_figures_and_where_to_look(
    victims: dict[str, str], tracking_server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    client = mlflow.MlflowClient(tracking_server)
    settings = AttackSettings(model="models:/tiny-pneumonia@candidate", dataset="pneumoniamnist",
                              data_dir=victims["images"], split="train", attack="fgsm",
                              attack_params="eps=0.1,target=-1", num_samples=4, selection="all")  # fmt: skip
    capsys.readouterr()
    attack_run = client.get_run(attack(settings, tracking_server, SUMMARY_EXPERIMENT))
    lines = _summary(capsys.readouterr().out, "attack")
    assert lines[0] == f"medadv attack finished: {attack_run.info.run_name} ({attack_run.info.run_id})"
    assert lines[1].split() == ["samples", "n", "fooling_rate", "robust_accuracy", "attack_success_rate", "l2_mean",
                                "linf_mean"]  # fmt: skip
    rows = {" ".join(line.split()[:-6]): line.split()[-6:] for line in lines[2:-1]}
    assert list(rows) == ["all", "target normal", "target pneumonia"]  # targeted toward every other class
    metrics = attack_run.data.metrics
    assert rows["all"] == [f"{metrics['num_samples']:.0f}"] + [
        f"{metrics[name]:.4g}" for name in ("fooling_rate", "robust_accuracy", "attack_success_rate", "l2_mean",
                                            "linf_mean")
    ]  # fmt: skip
    assert sum(int(row[0]) for label, row in rows.items() if label != "all") == metrics["num_samples"]
    experiment = attack_run.info.experiment_id
    assert lines[-1] == f"  view it: {tracking_server}/#/experiments/{experiment}/runs/{attack_run.info.run_id}"

    gradcam_run = client.get_run(gradcam(GradcamSettings(attack_run_id=attack_run.info.run_id), tracking_server,
                                         SUMMARY_EXPERIMENT))  # fmt: skip
    lines = _summary(capsys.readouterr().out, "gradcam")
    metrics = gradcam_run.data.metrics
    shown = [f"{metrics['dssim_mean']:.4g}", f"{metrics['dssim_max']:.4g}", f"{metrics['num_samples']:.0f}"]
    assert lines[1].split() == ["dssim_mean", shown[0], "dssim_max", shown[1], "num_samples", shown[2]]
    assert lines[-1].endswith(f"/runs/{gradcam_run.info.run_id}")

    evaluate_run = evaluate(EvaluateSettings(), tracking_server, SUMMARY_EXPERIMENT)
    out = capsys.readouterr().out
    lines = _summary(out, "evaluate")
    assert "fooling rate [95% CI]" in lines[1] and "robust accuracy [95% CI]" in lines[1]
    [row] = [line.split() for line in lines[2:-1]]  # the headline table: one attack, toward each other class
    shown = (row[0], row[2], row[3], row[4], row[-1])  # model (NAME vN), attack, eps, target, ..., run
    assert shown == ("tiny-pneumonia", "fgsm", "0.1", "each", attack_run.info.run_id[:8]), lines
    assert lines[-1].endswith(f"/runs/{evaluate_run}")
    assert out.splitlines()[-1].startswith("report: ")  # then where the report is, last


INTERRUPTED_ATTACK = {
    "model": "models:/tiny-pneumonia@candidate", "dataset": "pneumoniamnist", "split": "train", "attack": "pgd",
    "attack_params": "eps=0.05,eps_step=0.005,max_iter=200", "num_samples": "24", "batch_size": "1",
    "selection": "all",
}  # fmt: skip


def _interrupt_mid_run(
    command: list[str], env: dict[str, str], cwd: Path, client: mlflow.MlflowClient
) -> tuple[str, int, str]:
    """Start `command` in its own process group, wait until its attack run has logged a batch, then press Ctrl-C
    as a terminal does (SIGINT to the whole group); returns the run id, the exit code and stderr."""
    with (cwd / "interrupted.err").open("w") as stderr:
        process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True, start_new_session=True
        )
        assert process.stdout is not None
        banner = next(line for line in process.stdout if line.startswith("medadv attack: run "))  # the run exists
        run_id = banner.split("(", 1)[1].split(")", 1)[0]
        deadline = time.monotonic() + 300
        while not client.list_artifacts(run_id, "progress") and time.monotonic() < deadline:
            time.sleep(0.1)  # a batch is logged: the interrupt lands mid-run, with something to resume
        os.killpg(process.pid, signal.SIGINT)
        process.communicate(timeout=120)
    return run_id, process.returncode, (cwd / "interrupted.err").read_text()


def test_ctrl_c_marks_the_run_killed_says_how_to_resume_and_the_resume_finishes(
    victims: dict[str, str], tracking_server: str, tmp_path: Path
) -> None:
    given = {**INTERRUPTED_ATTACK, "data_dir": victims["images"], "experiment": INTERRUPT_EXPERIMENT}
    args = [part for key, value in given.items() for part in (f"--{key}", value)]
    env = step_env(MLFLOW_TRACKING_URI=tracking_server, MEDADV_HOME=str(tmp_path / ".medadv"))
    client = mlflow.MlflowClient(tracking_server)
    command = [sys.executable, str(REPO / "steps" / "attack.py"), *args]
    run_id, returncode, errors = _interrupt_mid_run(command, env, tmp_path, client)

    assert returncode == 130
    assert errors.strip().splitlines()[-1] == (
        f"medadv: interrupted: run {run_id} marked KILLED; resume it with --run_id {run_id}"
    )
    assert "Traceback" not in errors
    interrupted = client.get_run(run_id)
    assert interrupted.info.status == "KILLED" and WRITER_TAG not in interrupted.data.tags
    batches_before = len(client.list_artifacts(run_id, "progress"))
    assert 1 <= batches_before < 24, "the interrupt should land mid-run"

    resumed = run_step("attack.py", *args, "--run_id", run_id, tracking_uri=tracking_server, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming: " in resumed.stdout
    finished = client.get_run(run_id)
    assert finished.info.status == "FINISHED" and finished.data.metrics["num_samples"] == 24
    assert _summary(resumed.stdout, "attack")[0] == f"medadv attack finished: {finished.info.run_name} ({run_id})"


def test_ctrl_c_under_mlflow_run_leaves_the_run_killed_not_failed(
    victims: dict[str, str], tracking_server: str, tmp_path: Path
) -> None:
    """`mlflow run` (3.17) writes FAILED over the step's KILLED once the step has exited; medadv puts KILLED back
    (medadv.tracking.killed) and the step's last line says how to resume through `mlflow run`."""
    command = [sys.executable, "-m", "mlflow", "run", str(REPO), "-e", "attack", "--env-manager", "local",
               "--experiment-name", INTERRUPT_EXPERIMENT]  # fmt: skip
    given = {**INTERRUPTED_ATTACK, "data_dir": victims["images"]}
    command += [part for key, value in given.items() for part in ("-P", f"{key}={value}")]
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"  # `python` is this interpreter
    env = step_env(MLFLOW_TRACKING_URI=tracking_server, PATH=path, MEDADV_HOME=str(tmp_path / ".medadv"))
    client = mlflow.MlflowClient(tracking_server)
    run_id, returncode, errors = _interrupt_mid_run(command, env, tmp_path, client)

    assert returncode != 0
    [line] = [line for line in errors.splitlines() if line.startswith("medadv: ")]
    assert line == f"medadv: interrupted: run {run_id} marked KILLED; resume it with -P run_id={run_id}"
    deadline = time.monotonic() + PATIENCE_S
    while client.get_run(run_id).info.status != "KILLED" and time.monotonic() < deadline:
        time.sleep(0.25)  # the process the step left behind puts KILLED back over `mlflow run`'s FAILED
    interrupted = client.get_run(run_id)
    assert interrupted.info.status == "KILLED" and WRITER_TAG not in interrupted.data.tags
