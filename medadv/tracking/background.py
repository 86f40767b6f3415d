"""An attack run's requests to the tracking server and artifact store, made by one background thread in the
order they are handed over.

An attack hands each finished batch's file over and goes on to the next batch while the file is stored; at the
end, its result file is uploaded while the per-sample table and the metrics are computed. The files are written
(and the figures drawn) by the run's own thread: work that needs the CPU gains nothing in a second Python
thread, which holds the interpreter's lock while it works. Every file gets its sha256 tag before its upload, as
`medadv.tracking.artifacts` does in the foreground, and what is handed over is stored in order, so a run that
stops keeps every batch stored before the one that failed.

`wait()` blocks until all is stored and raises the first failure; a failure also drops what is still queued,
and handing over after it raises it at once. The thread logs through the client with the run's id: MLflow's
active run belongs to the thread that started it.
"""

from __future__ import annotations

import posixpath
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import mlflow
from matplotlib.figure import Figure
from mlflow.entities import Metric, RunTag

from medadv.tracking.artifacts import checksum_tags, save_figure


class BackgroundLog:
    """What one run logs, handed over here and logged by a background thread in order (see the module)."""

    def __init__(self, run_id: str, folder: Path) -> None:
        self.run_id, self._folder = run_id, folder  # `folder`: where figures are saved, the caller's
        self._client = mlflow.MlflowClient()
        self._tasks: queue.Queue[Callable[[], object] | None] = queue.Queue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="medadv-background-log", daemon=True)
        self._thread.start()

    def artifact(self, local: Path, artifact_path: str | None = None) -> None:
        """Store the file `local` under `artifact_path`."""
        self._put(lambda: self._upload(local, artifact_path))

    def figure(self, figure: Figure, path: str) -> None:
        """Store `figure` as the image `path` (its suffix names the format), saved here and closed."""
        local = self._folder / path
        local.parent.mkdir(parents=True, exist_ok=True)
        self.artifact(save_figure(figure, local), posixpath.dirname(path) or None)

    def metrics(self, metrics: Mapping[str, float]) -> None:
        """Log `metrics` (step 0, now) as one request, after everything handed over before."""
        now = int(time.time() * 1000)
        batch = [Metric(key, float(value), now, 0) for key, value in metrics.items()]
        self._put(lambda: self._client.log_batch(self.run_id, metrics=batch))

    def wait(self) -> None:
        """Block until everything handed over is stored; raise the first failure."""
        self._tasks.join()
        self._raise()

    def close(self) -> None:
        self._tasks.put(None)
        self._thread.join()

    def _upload(self, local: Path, artifact_path: str | None) -> None:
        tags = checksum_tags({posixpath.join(artifact_path or "", local.name): local})
        self._client.log_batch(self.run_id, tags=[RunTag(key, value) for key, value in tags.items()])
        self._client.log_artifact(self.run_id, str(local), artifact_path)

    def _put(self, task: Callable[[], object]) -> None:
        self._raise()
        self._tasks.put(task)

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def _work(self) -> None:
        while (task := self._tasks.get()) is not None:
            try:
                if self._error is None:
                    task()
            except Exception as error:  # raised in the run's thread, by the next hand-over or `wait`
                self._error = error
            finally:
                self._tasks.task_done()
        self._tasks.task_done()


@contextmanager
def background_log(run_id: str, folder: Path) -> Iterator[BackgroundLog]:
    """A `BackgroundLog` for the block: at its end everything handed over is stored (`wait`). A block that fails
    still stores what it handed over before (a resume then skips those batches), and its own error is raised."""
    log = BackgroundLog(run_id, folder)
    try:
        yield log
        log.wait()
    finally:
        log.close()
