"""A training's checkpoints in its run: `checkpoint/epoch_NNNN.npz` after each finished epoch, so that a killed
`train` (any mode: a victim, a robust model, a generator set's class runs) resumes with `--run_id` from its last
finished epoch.

Each new checkpoint replaces the one before, and the epoch's metrics are logged once it is complete; all are
removed once the model is registered (or, for a generator, logged), where the artifact store can delete (as the
attack job's progress files). A checkpoint half-uploaded when its writer was killed does not load, and the one
before it is used.
"""

from __future__ import annotations

import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

from medadv.contract import STEP_TAG
from medadv.errors import MedadvError
from medadv.models.resume import TrainingState
from medadv.tracking.runs import same_param

CHECKPOINTS = "checkpoint"


def _name(epochs_done: int) -> str:
    return f"epoch_{epochs_done:04d}.npz"


def check_resumable(run_id: str, params: Mapping[str, object], step: str) -> None:
    """Refuse, before any compute, to resume a run that is not a `step` run, was started with other parameters,
    has registered its model already (a second registration would be a second version of one training) or has
    finished."""
    try:
        run = mlflow.get_run(run_id)
    except mlflow.exceptions.MlflowException:
        raise MedadvError(f"run {run_id} not found in {mlflow.get_tracking_uri()}") from None
    if run.data.tags.get(STEP_TAG) != step:
        raise MedadvError(f"run {run_id} is not a {step} run")
    changed = [
        key
        for key, value in params.items()
        if key != "run_id" and key in run.data.params and not same_param(run.data.params[key], value)
    ]
    if changed:
        raise MedadvError(f"run {run_id} was started with other values of {', '.join(changed)}")
    registered = mlflow.search_model_versions(filter_string=f"run_id = '{run_id}'")
    if registered:
        raise MedadvError(f"run {run_id} already registered {registered[0].name} version {registered[0].version}")
    if run.info.status == "FINISHED":
        raise MedadvError(f"run {run_id} has finished; nothing to resume")


class RunCheckpoints:
    """The checkpoints of one run: save the newest (and log its epoch), resume from the latest readable one,
    remove them all."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.client = mlflow.MlflowClient()
        self.repository = get_artifact_repository(self.client.get_run(run_id).info.artifact_uri)

    def save(self, state: TrainingState) -> None:
        """Log `state`, drop the checkpoint before it (a newer one is complete), then log the epoch's metrics."""
        with tempfile.TemporaryDirectory(prefix="medadv-checkpoint-") as folder:
            self.client.log_artifact(self.run_id, str(state.save(Path(folder) / _name(state.epochs_done))), CHECKPOINTS)
        if state.epochs_done > 1:
            self._delete(f"{CHECKPOINTS}/{_name(state.epochs_done - 1)}")
        self._log_epoch(state, state.epochs_done - 1)

    def resume(self, epochs: int) -> TrainingState | None:
        """The latest checkpoint (None: start afresh), with the epochs' metrics a killed writer had not logged yet
        logged now, each epoch once."""
        resumed = self.latest()
        if resumed is not None:
            print(f"resuming: {resumed.epochs_done} of {epochs} epochs done")
            logged = {metric.step for metric in self.client.get_metric_history(self.run_id, "loss")}
            for epoch in sorted(set(range(resumed.epochs_done)) - logged):
                self._log_epoch(resumed, epoch)
        return resumed

    def latest(self) -> TrainingState | None:
        """The newest checkpoint that loads whole; None when the run holds none (a run not yet past epoch 1)."""
        names = sorted((item.path for item in self.client.list_artifacts(self.run_id, CHECKPOINTS)), reverse=True)
        with tempfile.TemporaryDirectory(prefix="medadv-checkpoint-") as folder:
            for name in names:
                try:
                    return TrainingState.load(Path(self.client.download_artifacts(self.run_id, name, folder)))
                except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, MlflowException):
                    continue  # cut short by a kill mid-upload
        return None

    def remove_all(self) -> None:
        if self.client.list_artifacts(self.run_id, CHECKPOINTS):
            self._delete(CHECKPOINTS)

    def _log_epoch(self, state: TrainingState, epoch: int) -> None:
        metrics = {key: values[epoch] for key, values in state.history.items()}
        mlflow.log_metrics(metrics, step=epoch, run_id=self.run_id)

    def _delete(self, path: str) -> None:
        try:
            self.repository.delete_artifacts(path)
        except (NotImplementedError, MlflowException, OSError) as error:
            print(f"note: training checkpoint {path} kept ({type(error).__name__})")
