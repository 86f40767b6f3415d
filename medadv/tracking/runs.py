"""The one place that knows the tracking URI, experiment names, tags and how runs are found again."""

from __future__ import annotations

import os
import posixpath
import re
import shlex
import subprocess
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from matplotlib.figure import Figure
from mlflow.entities import Run, RunStatus
from mlflow.utils.string_utils import quote

from medadv.contract import DATASET_TAG, FINGERPRINT_TAG, STEP_TAG, WRITER_TAG
from medadv.data.base import Dataset
from medadv.errors import MedadvError
from medadv.tracking import artifacts
from medadv.tracking import writer as writer_lock
from medadv.tracking.killed import keep_killed_after_mlflow_run
from medadv.tracking.names import check_experiment_name

DEFAULT_TRACKING_URI = "sqlite:///mlruns.db"
DEFAULT_EXPERIMENT = "medadv"
COMMIT_TAG = "mlflow.source.git.commit"
# Params a step logs as it resolved them (the engine that ran, the attack run's model), not as given: the MLproject
# leaves them undeclared, and an empty value given for one matches the run whatever the step chose.
RESOLVED_PARAMS = {"attack": ("engine",), "gradcam": ("model", "dataset", "layer")}
# What MLflow 3's UI reads to open an experiment on its model-training views, not the GenAI overview.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"


class TrackingError(MedadvError):
    """The tracking server cannot be used; raised before any compute."""


def tracking_uri(explicit: str | None = None) -> str:
    """`explicit`, else MLFLOW_TRACKING_URI, else the embedded SQLite store."""
    return explicit or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


# How MLflow's HTTP client words a request that failed after its retries: a URL, then urllib3's whole story.
_FAILED_REQUEST = re.compile(r"API request to (?P<url>\S+) failed with exception .*?(?:\(Caused by (?P<cause>.*)\))?$")


def error_line(message: str) -> str:
    """The one line a step prints for an MLflow error: its first line, and for a request that failed after its
    retries, the server, what was asked of it and why it failed (not urllib3's repetition of the URL)."""
    first = message.splitlines()[0] if message else "MLflow failed"
    failed = _FAILED_REQUEST.match(first)
    if failed is None:
        return first
    url = urllib.parse.urlsplit(failed["url"])
    asked = url.path.split("/artifacts/")[-1] if "/mlflow-artifacts/" in url.path else url.path
    cause = re.sub(r"<[^>]*>:\s*", "", failed["cause"] or "no answer")  # an object's repr says nothing here
    return f"the tracking server {url.scheme}://{url.netloc} failed a request for {asked} ({cause})"


def connect(uri: str | None = None, experiment: str | None = None) -> str:
    """Point MLflow at the store and experiment, failing fast if a server does not answer."""
    uri = tracking_uri(uri)
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=10) as response:
                response.read()
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise TrackingError(
                f"tracking server {uri} is unreachable ({reason}); start it or fix --tracking-uri"
            ) from None
    mlflow.set_tracking_uri(uri)
    check_experiment_name(experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME", DEFAULT_EXPERIMENT))
    try:
        if experiment is None and ("MLFLOW_EXPERIMENT_ID" in os.environ or "MLFLOW_EXPERIMENT_NAME" in os.environ):
            # `mlflow run` (or the user) chose it: MLflow starts the run there.
            chosen = (
                mlflow.get_experiment(os.environ["MLFLOW_EXPERIMENT_ID"])
                if "MLFLOW_EXPERIMENT_ID" in os.environ
                else mlflow.set_experiment(os.environ["MLFLOW_EXPERIMENT_NAME"])
            )
        else:
            chosen = mlflow.set_experiment(experiment or DEFAULT_EXPERIMENT)
        if chosen.tags.get(EXPERIMENT_KIND_TAG) != MODEL_TRAINING:
            mlflow.MlflowClient().set_experiment_tag(chosen.experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING)
    except mlflow.exceptions.MlflowException as error:
        status = error.get_http_status_code()  # /health is open even where the API needs credentials
        if status in (401, 403):
            raise TrackingError(
                f"tracking server {uri} refused the credentials (HTTP {status}); "
                "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
            ) from None
        raise TrackingError(f"tracking store {uri}: {error.message.splitlines()[0]}") from None
    return uri


def git_commit() -> str | None:
    """The checkout's commit, recorded like `mlflow run` does when a step is run directly."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
    except OSError:
        return None
    return out.stdout.strip() or None


def step_tags(step: str) -> dict[str, str]:
    tags = {STEP_TAG: step}
    commit = git_commit()
    if commit:
        tags[COMMIT_TAG] = commit
    return tags


def param_text(value: Any) -> str:
    """A param in the one form both launch paths log: `mlflow run`'s, which shell-quotes every value before it
    logs it (MLflow 3.17's `EntryPoint.compute_parameters`): `''` for empty, `'a b'` for a value with a space;
    booleans as true/false."""
    return quote(str(value).lower() if isinstance(value, bool) else str(value))


def param_value(text: str) -> str:
    """A logged param read back as the value the step was given (`param_text` undone); one logged unquoted
    (by runs from before) reads as it is."""
    try:
        words = shlex.split(text)
    except ValueError:  # unbalanced quotes: not a quoted value
        return text
    return words[0] if len(words) == 1 and quote(words[0]) == text else text


def same_param(logged: str, value: Any) -> bool:
    """Whether a logged param records `value`: the same text, or the same number spelled otherwise
    (`mlflow run -P learning_rate=1e-3` logs what the user typed)."""
    if logged == param_text(value):
        return True
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return float(param_value(logged)) == float(value)
    except ValueError:
        return False


def as_given(run: Run) -> Run:
    """`run` with its params read back as the values its step was given (`param_value`), for the code that
    reads them (attack resume, gradcam, evaluate)."""
    proto = run.to_proto()
    for param in proto.data.params:
        param.value = param_value(param.value)
    return Run.from_proto(proto)


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C ended a step's run, now marked KILLED; the message says how to go on."""


_SUMMARIES: dict[str, Mapping[str, Any] | pd.DataFrame] = {}


def show_at_end(figures: Mapping[str, Any] | pd.DataFrame) -> None:
    """The active run's headline figures, under their metric names: the command prints them, and where to look
    at the run, as its last lines once the run has ended (after MLflow's own end-of-run lines)."""
    run = mlflow.active_run()
    assert run is not None, "show_at_end needs an active run"
    _SUMMARIES[run.info.run_id] = figures


@contextmanager
def start_step_run(
    step: str,
    params: Mapping[str, Any],
    run_id: str | None = None,
    name: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> Iterator[Run]:
    """Start (or resume, with `run_id`) a run for one entry point, with its `params` and `tags`, and say where to
    look at it.

    A failure inside marks the run FAILED, so nothing half-done looks finished; Ctrl-C marks it KILLED (and keeps
    it so under `mlflow run`: medadv.tracking.killed) and raises `RunInterrupted`, which says how to resume it
    (steps whose params take a `run_id`) or start again.
    Inside another run (the `main` pipeline) the new run is nested under it. The run has one writer: a resume
    of a run that a live process writes refuses (medadv.tracking.writer). `name` says what the run did in the
    runs list (also for the run `mlflow run` opened, which would otherwise keep a random name). Figures given to
    `show_at_end` are printed when the run has ended. A new run gets its name and tags (the writer's among them)
    as it is created, and its params in one more request.
    """
    nested = mlflow.active_run() is not None
    opened_by_mlflow_run = None if nested else os.environ.get("MLFLOW_RUN_ID")  # start_run clears it
    existing = run_id or opened_by_mlflow_run  # `mlflow run` may resume one
    writer = writer_lock.acquire(existing) if existing else writer_lock.Writer.me()
    run_tags = step_tags(step) | dict(tags or {}) | {WRITER_TAG: str(writer)}
    with (
        mlflow.start_run(run_id=run_id, run_name=name, tags=run_tags, nested=nested) as run,
        writer_lock.hold(run.info.run_id, writer),
    ):
        try:
            # A resumed run, or the run `mlflow run` opened, holds some already (in the same form, see param_text).
            logged = run.data.params
            mlflow.log_params({key: param_text(value) for key, value in params.items() if key not in logged})
            print_banner(step, run)
            yield run
        except KeyboardInterrupt as interrupt:
            _SUMMARIES.pop(run.info.run_id, None)
            mlflow.end_run(RunStatus.to_string(RunStatus.KILLED))
            if run.info.run_id == opened_by_mlflow_run:
                keep_killed_after_mlflow_run(run.info.run_id)
            if isinstance(interrupt, RunInterrupted):  # a nested step's: its line says how to go on
                raise
            flag = "-P run_id=" if opened_by_mlflow_run else "--run_id "
            how = f"resume it with {flag}{run.info.run_id}" if "run_id" in params else "run the command again"
            raise RunInterrupted(f"interrupted: run {run.info.run_id} marked KILLED; {how}") from None
    figures = _SUMMARIES.pop(run.info.run_id, None)
    if figures is not None:
        print_summary(step, run, figures)


def where_to_look(run: Run) -> str:
    """The run's page in the MLflow UI (for a local store: the command that serves it, then the page)."""
    uri = mlflow.get_tracking_uri()
    page = f"#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
    if uri.startswith(("http://", "https://")):
        return f"view it: {uri.rstrip('/')}/{page}"
    return f"view it: mlflow ui --backend-store-uri {uri}, then open http://127.0.0.1:5000/{page}"


def print_banner(step: str, run: Run) -> None:
    experiment_id = run.info.experiment_id
    uri = mlflow.get_tracking_uri()
    print(f"medadv {step}: run {run.info.run_name} ({run.info.run_id}), experiment {experiment_id}, store {uri}")
    print(f"  {where_to_look(run)}")
    sys.stdout.flush()


def print_summary(step: str, run: Run, figures: Mapping[str, Any] | pd.DataFrame) -> None:
    """A finished step's last lines: what ran, its headline figures (a table, or one line of name value), where
    to look."""
    print(f"medadv {step} finished: {run.info.run_name} ({run.info.run_id})")
    if isinstance(figures, pd.DataFrame):
        table = figures.to_string(index=False, float_format=_figure_text, na_rep="-")
        print("\n".join(f"  {line}" for line in table.splitlines()))
    else:
        print("  " + "  ".join(f"{key} {_figure_text(value)}" for key, value in figures.items()))
    print(f"  {where_to_look(run)}")
    sys.stdout.flush()


def _figure_text(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def log_dataset(dataset: Dataset, context: str) -> None:
    """Record which samples a run used (`mlflow.data`) and tag the run with the data fingerprint."""
    with warnings.catch_warnings():  # MLflow warns that a local path "can be interpreted in multiple ways"
        warnings.filterwarnings("ignore", message="The specified dataset source", category=UserWarning)
        source = mlflow.data.from_numpy(  # type: ignore[attr-defined]
            dataset.x, targets=dataset.y, source=dataset.source, name=f"{dataset.name}-{dataset.split}"
        )
    mlflow.log_input(source, context=context)
    mlflow.set_tags({DATASET_TAG: dataset.name, FINGERPRINT_TAG: dataset.fingerprint()})


def log_figure(figure: Figure, path: str) -> None:
    """`mlflow.log_figure`, with the file's checksum recorded (medadv.tracking.artifacts)."""
    with tempfile.TemporaryDirectory(prefix="medadv-figure-") as folder:
        local = artifacts.save_figure(figure, Path(folder) / Path(path).name)
        artifacts.log_artifact(local, posixpath.dirname(path) or None)


@contextmanager
def artifact_dir() -> Iterator[Path]:
    """A temporary folder whose files are logged as the run's artifacts when the block ends."""
    with tempfile.TemporaryDirectory(prefix="medadv-") as folder:
        yield Path(folder)
        artifacts.log_artifacts(folder)


def find_finished_run(step: str, params: Mapping[str, Any]) -> Run | None:
    """A FINISHED run of `step` in the current experiment with the same parameters and code version.

    Lets `main` reuse work instead of recomputing it, as MLflow's multistep example does.
    """
    commit = git_commit()
    runs = mlflow.search_runs(  # the current experiment
        filter_string=f"tags.`{STEP_TAG}` = '{step}' and attributes.status = 'FINISHED'",
        output_format="list",
    )
    wanted = {key: value for key, value in params.items() if value != "" or key not in RESOLVED_PARAMS.get(step, ())}
    for run in runs:
        same_code = commit is None or run.data.tags.get(COMMIT_TAG) == commit
        logged = run.data.params
        if same_code and all(key in logged and same_param(logged[key], value) for key, value in wanted.items()):
            return run
    return None
