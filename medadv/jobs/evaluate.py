"""The `evaluate` entry point: compare an experiment's train, attack and gradcam runs in one report.

Runs are found by their `medadv.step` tag (and an optional MLflow filter) and read into the report's
plain records (`medadv.report.records`), with the artifacts the report needs downloaded: a shard's
`attack_result.npz` and its transfer targets' probabilities, an unsharded run's success matrix and transfer
table, the examples' figures (for an image attack a gradcam run explained, its result and maps). The tables,
sections and HTML are built by `medadv.report` without MLflow; this job only gathers and logs (it loads no
model: merged shards are scored on their transfer targets from the probabilities the shards saved).
Everything is logged in a run of its own (step `evaluate`): `report.html` with its figures embedded,
the report's own figures (the example grids included) as PNG and SVG under `figures/`, and each table as
CSV, Parquet and LaTeX under `tables/`.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.entities import Run
from mlflow.exceptions import MlflowException

from medadv.attacks.result import AttackResult, load_probabilities
from medadv.contract import (
    ATTACK_RESULT,
    ECG_OVERLAY_FIGURE,
    EVALUATED_EXPERIMENT_TAG,
    HEATMAPS,
    OVERLAY_FIGURE,
    PERTURBATION_FIGURE,
    REPORT,
    STEP_TAG,
    SUCCESS_MATRIX,
    TRANSFER_PROBABILITIES,
    TRANSFER_TABLE,
)
from medadv.errors import MedadvError
from medadv.report.files import write_report
from medadv.report.html import Section
from medadv.report.records import Example, Heatmaps, ModelRecord, RunRecord, model_uris, needs
from medadv.report.sections import choose_examples, example_grids, example_images, report_sections
from medadv.report.tables import compare, headline_table
from medadv.settings import EvaluateSettings
from medadv.tracking.runs import artifact_dir, as_given, connect, show_at_end, start_step_run

STEPS = ("train", "attack", "gradcam")


def _table(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, index_col=0)


# The artifact behind each `RunRecord` field the report `needs`, and how it is read.
_ARTIFACTS: dict[str, tuple[str, Callable[[Path], Any]]] = {
    "result": (ATTACK_RESULT, AttackResult.load),
    "success": (SUCCESS_MATRIX, _table),
    "transfer": (TRANSFER_TABLE, _table),
    "transfer_probabilities": (TRANSFER_PROBABILITIES, load_probabilities),
}
# The figures the examples show, as the attack and gradcam runs log them.
_ECG_FIGURE, _PERTURBATION_FIGURE = ECG_OVERLAY_FIGURE, PERTURBATION_FIGURE


class EvaluateError(MedadvError):
    """An experiment or filter that cannot be evaluated; raised before the evaluate run starts."""


def evaluate(settings: EvaluateSettings, tracking_uri: str | None = None, experiment: str | None = None) -> str:
    """Run `evaluate`; returns its run id. The experiment and filter are checked before the run starts."""
    connect(tracking_uri, experiment)
    experiment_ids = None  # None: the current experiment
    if settings.experiment_name:
        found = mlflow.get_experiment_by_name(settings.experiment_name)
        if found is None:
            raise EvaluateError(f"experiment {settings.experiment_name!r} not found in {mlflow.get_tracking_uri()}")
        experiment_ids = [found.experiment_id]
    runs = {step: _search(experiment_ids, step, settings.filter) for step in STEPS}
    elsewhere = _elsewhere(runs, settings.filter)
    if elsewhere:
        print(elsewhere)

    name = f"evaluate · {settings.experiment_name or 'this experiment'}"
    with start_step_run("evaluate", asdict(settings), name=name) as run:
        evaluated = settings.experiment_name or mlflow.get_experiment(run.info.experiment_id).name
        mlflow.set_tag(EVALUATED_EXPERIMENT_TAG, evaluated)
        with tempfile.TemporaryDirectory(prefix="medadv-evaluate-") as downloads:
            tables, sections = Gatherer(Path(downloads)).report(runs)
        show_at_end(headline_table(tables["attacks"]))
        facts = {
            "experiment": evaluated,
            "filter": settings.filter or "(none)",
            "runs found": ", ".join(f"{len(found)} {step}" for step, found in runs.items()),
            "evaluated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "evaluate run": run.info.run_id,
        } | ({"elsewhere": elsewhere} if elsewhere else {})
        with artifact_dir() as folder:
            write_report(folder / REPORT, f"medadv evaluation: {evaluated}", sections, tables, facts)
        report = mlflow.get_artifact_uri(REPORT)
    print(f"report: {report}")  # after MLflow's own end-of-run lines, so it is the last thing printed
    return str(run.info.run_id)


def _elsewhere(found: dict[str, list[Run]], extra: str) -> str:
    """One line naming the other experiments that hold matching runs (`mlflow run` without
    `--experiment-name` logs to "Default"), or "" when there are none."""
    seen = {run.info.run_id for runs in found.values() for run in runs}
    others = [
        run for step in STEPS for run in _search(None, step, extra, everywhere=True) if run.info.run_id not in seen
    ]
    if not others:
        return ""
    names = sorted({mlflow.get_experiment(run.info.experiment_id).name for run in others})
    return (
        f"note: {len(others)} matching train/attack/gradcam runs live in other experiments "
        f"({', '.join(names)}), not evaluated; name one with --experiment_name"
    )


def _search(experiment_ids: list[str] | None, step: str, extra: str, everywhere: bool = False) -> list[Run]:
    """Every run of `step` (any status) matching the user's filter, in the experiments given or all of them."""
    query = f"tags.`{STEP_TAG}` = '{step}'" + (f" and {extra}" if extra.strip() else "")
    try:
        found = mlflow.search_runs(
            experiment_ids, filter_string=query, output_format="list", search_all_experiments=everywhere
        )
        return [as_given(run) for run in found]  # params as the steps were given them
    except MlflowException as error:
        raise EvaluateError(f"filter {extra!r} is not usable: {error.message.splitlines()[0]}") from None


def _record(run: Run, step: str) -> RunRecord:
    """A run's facts as the report reads them (its artifacts not yet loaded)."""
    info, data = run.info, run.data
    return RunRecord(
        run_id=info.run_id, step=step, name=info.run_name or "", status=info.status, start_time=info.start_time or 0,
        params=dict(data.params), tags=dict(data.tags), metrics=dict(data.metrics),
    )  # fmt: skip


class Gatherer:
    """Reads the runs into records, downloading (into `folder`) what the report needs, and builds the report."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.client = mlflow.MlflowClient()

    def report(self, runs: dict[str, list[Run]]) -> tuple[dict[str, pd.DataFrame], list[Section]]:
        """Every table (by file name) and the report's sections."""
        records = {step: [_record(run, step) for run in found] for step, found in runs.items()}
        records["attack"] = [self._with_artifacts(record) for record in records["attack"]]
        models = {uri: self._model_record(uri) for uri in model_uris(records["attack"])}
        examples = [self._example(*chosen) for chosen in choose_examples(records["attack"], records["gradcam"])]
        tables, rows = compare(records, models)
        return tables, report_sections(tables, rows, example_images(examples), example_grids(examples))

    def _download(self, run_id: str, path: str) -> Path:
        folder = self.folder / run_id
        folder.mkdir(exist_ok=True)
        return Path(self.client.download_artifacts(run_id, path, str(folder)))

    def _with_artifacts(self, record: RunRecord) -> RunRecord:
        """The record with the artifacts the report needs loaded, and those the run did not log named as lacking."""
        if record.status != "FINISHED":
            return record
        wanted = {field: _ARTIFACTS[field] for field in needs(record)}
        present = {artifact.path for artifact in self.client.list_artifacts(record.run_id)} if wanted else set()
        loaded = {
            field: read(self._download(record.run_id, path))
            for field, (path, read) in wanted.items()
            if path in present
        }
        lacking = tuple(path for field, (path, _) in wanted.items() if field not in loaded)
        return replace(record, **loaded, lacking=lacking)

    def _model_record(self, uri: str) -> ModelRecord:
        """The registered version (for models:/ URIs) and the run that logged the model; unknown ones bare.

        Runs pin versions; an alias logged by a run from before that is resolved as it is now.
        """
        registered = re.fullmatch(r"models:/([^/@]+)(?:@(.+)|/(\d+))", uri)
        logged = re.fullmatch(r"runs:/([0-9a-f]+)/.*", uri)
        try:
            if registered:
                name, alias, number = registered.groups()
                version = (
                    self.client.get_model_version_by_alias(name, alias)
                    if alias
                    else self.client.get_model_version(name, number)
                )
                run = _record(self.client.get_run(version.run_id), "train") if version.run_id else None
                return ModelRecord(
                    uri=uri, version=f"{version.name}/{version.version}", version_tags=version.tags, train_run=run
                )
            if logged:
                return ModelRecord(uri=uri, train_run=_record(self.client.get_run(logged[1]), "train"))
        except MlflowException:
            pass
        return ModelRecord(uri=uri)

    def _example(self, attack: RunRecord, gradcam: RunRecord | None) -> Example:
        """The figures an example shows, downloaded: the attack's (ECG overlays, else images) and its Grad-CAM maps
        (for images the maps themselves and the attack's result, which the report draws as one grid)."""
        logged = {artifact.path for artifact in self.client.list_artifacts(attack.run_id, "figures")}
        if _ECG_FIGURE in logged:
            overlays = self._download(attack.run_id, _ECG_FIGURE).read_bytes()
            explained = None if gradcam is None else self._download(gradcam.run_id, OVERLAY_FIGURE).read_bytes()
            return Example(attack=attack, ecg_overlays=overlays, gradcam=explained)
        logged_images = _PERTURBATION_FIGURE in logged
        images = self._download(attack.run_id, _PERTURBATION_FIGURE).read_bytes() if logged_images else None
        if gradcam is None:
            return Example(attack=attack, perturbations=images)
        with np.load(self._download(gradcam.run_id, HEATMAPS), allow_pickle=False) as maps:
            heatmaps = Heatmaps(ids=maps["ids"], clean=maps["clean_maps"], adversarial=maps["adversarial_maps"])
        result = AttackResult.load(self._download(attack.run_id, ATTACK_RESULT))
        return Example(attack=attack, perturbations=images, result=result, heatmaps=heatmaps)
