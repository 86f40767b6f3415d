"""The attack run's background log (medadv.tracking.background) against a real tracking server: what is handed
over is stored, in order, each file with its checksum; a failure is raised in the run's thread and stops what
was queued after it; a block that fails keeps what it handed over before."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from matplotlib.figure import Figure

from medadv.contract import CHECKSUM_TAG
from medadv.tracking.background import BackgroundLog, background_log


@pytest.fixture
def run_id(tracking_server: str) -> Iterator[str]:
    mlflow.set_tracking_uri(tracking_server)
    mlflow.set_experiment("background-log")
    with mlflow.start_run() as run:
        yield run.info.run_id


def _file(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def _stored(run_id: str, folder: str | None = None) -> list[str]:
    return sorted(item.path for item in mlflow.MlflowClient().list_artifacts(run_id, folder))


def test_files_figures_and_metrics_handed_over_are_stored_each_file_with_its_checksum(
    run_id: str, tmp_path: Path
) -> None:
    figure = Figure(figsize=(2, 2))
    figure.add_subplot().plot([0, 1], [1, 0])
    with background_log(run_id, tmp_path) as log:
        for index in range(3):
            log.artifact(_file(tmp_path, f"batch_{index}.txt", f"batch {index}"), "progress")
        log.artifact(_file(tmp_path, "result.txt", "result"))
        log.metrics({"fooling_rate": 0.25, "l2_mean": 1.5})
        log.figure(figure, "figures/curve.png")
        log.metrics({"fooling_rate": 0.5})  # a second value: both stay in the metric's history
    run = mlflow.get_run(run_id)
    assert _stored(run_id, "progress") == [f"progress/batch_{index}.txt" for index in range(3)]
    assert _stored(run_id, "figures") == ["figures/curve.png"] and "result.txt" in _stored(run_id)
    for path in ("progress/batch_0.txt", "progress/batch_2.txt", "result.txt", "figures/curve.png"):
        local = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path, dst_path=str(tmp_path)))
        assert run.data.tags[CHECKSUM_TAG + path] == hashlib.sha256(local.read_bytes()).hexdigest(), path
    assert run.data.metrics == {"fooling_rate": 0.5, "l2_mean": 1.5}
    history = mlflow.MlflowClient().get_metric_history(run_id, "fooling_rate")
    assert sorted(metric.value for metric in history) == [0.25, 0.5]
    assert not [thread for thread in threading.enumerate() if thread.name == "medadv-background-log"]


def test_a_failure_is_raised_in_the_runs_thread_and_nothing_queued_after_it_is_stored(
    run_id: str, tmp_path: Path
) -> None:
    log = BackgroundLog(run_id, tmp_path)
    try:
        log.artifact(_file(tmp_path, "first.txt", "first"))
        log.artifact(tmp_path / "missing.txt")  # fails in the background: there is no such file
        log.artifact(_file(tmp_path, "after.txt", "after"))
        with pytest.raises(FileNotFoundError, match=r"missing\.txt"):
            log.wait()
        with pytest.raises(FileNotFoundError, match=r"missing\.txt"):  # and again at the next hand-over
            log.metrics({"fooling_rate": 1.0})
    finally:
        log.close()
    assert _stored(run_id) == ["first.txt"]
    assert "fooling_rate" not in mlflow.get_run(run_id).data.metrics


def test_a_block_that_fails_keeps_what_it_handed_over_and_raises_its_own_error(run_id: str, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="the attack broke"), background_log(run_id, tmp_path) as log:
        log.artifact(_file(tmp_path, "batch_0.txt", "batch 0"), "progress")
        log.artifact(_file(tmp_path, "batch_1.txt", "batch 1"), "progress")
        raise RuntimeError("the attack broke")
    assert _stored(run_id, "progress") == ["progress/batch_0.txt", "progress/batch_1.txt"]
