"""A training's checkpoints in its run: `checkpoint/epoch_NNNN.npz` after each finished epoch, so that a killed
`train` resumes with `--run_id` from its last finished epoch.

Each new checkpoint replaces the one before; all are removed once the model is registered, where the artifact
store can delete (as the attack job's progress files). A checkpoint half-uploaded when its writer was killed
does not load, and the one before it is used.
"""

from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

from medadv.models.training import TrainingState

CHECKPOINTS = "checkpoint"


def _name(epochs_done: int) -> str:
    return f"epoch_{epochs_done:04d}.npz"


class RunCheckpoints:
    """The checkpoints of one run: save the newest, load the latest readable one, remove them all."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.client = mlflow.MlflowClient()
        self.repository = get_artifact_repository(self.client.get_run(run_id).info.artifact_uri)

    def save(self, state: TrainingState) -> None:
        """Log `state`, then drop the checkpoint before it (a newer one is complete)."""
        with tempfile.TemporaryDirectory(prefix="medadv-checkpoint-") as folder:
            self.client.log_artifact(self.run_id, str(state.save(Path(folder) / _name(state.epochs_done))), CHECKPOINTS)
        if state.epochs_done > 1:
            self._delete(f"{CHECKPOINTS}/{_name(state.epochs_done - 1)}")

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
        self._delete(CHECKPOINTS)

    def _delete(self, path: str) -> None:
        try:
            self.repository.delete_artifacts(path)
        except (NotImplementedError, MlflowException, OSError) as error:
            print(f"note: training checkpoint {path} kept ({type(error).__name__})")
