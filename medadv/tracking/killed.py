"""Keeps KILLED a run that Ctrl-C ended under `mlflow run`.

Once its step has exited after Ctrl-C, MLflow 3.17's `mlflow run` marks the run FAILED unless it reads the run as
ended, and it never does (`mlflow.projects._maybe_set_run_terminated` compares the status string with
`RunStatus`'s numbers). So the step leaves this small process behind, in its own session (no terminal, no
Ctrl-C): it waits for that write and puts KILLED back.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import mlflow

POLL_S = 0.25
PATIENCE_S = 60.0  # `mlflow run` writes FAILED a moment after its step exits; past this, nothing more is waited for


def keep_killed_after_mlflow_run(run_id: str) -> None:
    """Leave behind the process that puts KILLED back once `mlflow run` has written FAILED over it."""
    subprocess.Popen(
        [sys.executable, "-m", "medadv.tracking.killed", run_id],
        env={**os.environ, "MLFLOW_TRACKING_URI": mlflow.get_tracking_uri()},
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip


def restore_killed(run_id: str, patience_s: float = PATIENCE_S) -> None:
    """Wait up to `patience_s` for the run to turn FAILED, then mark it KILLED again."""
    client = mlflow.MlflowClient()
    deadline = time.monotonic() + patience_s
    while time.monotonic() < deadline:
        if client.get_run(run_id).info.status == "FAILED":
            client.set_terminated(run_id, "KILLED")
            return
        time.sleep(POLL_S)


if __name__ == "__main__":
    restore_killed(sys.argv[1])
