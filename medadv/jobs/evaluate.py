"""The `evaluate` entry point: compare an experiment's train, attack and gradcam runs in one report.

Runs are found by their `medadv.step` tag (and an optional MLflow filter). Finished runs are
compared; every other run is listed as skipped, and a run without a metric or artifact it should
have is listed as missing, never silently dropped. The shards of one sharded attack (`shard i/n`
with one `parent_run_id`) become one row: their `attack_result.npz` files are joined and the
metrics recomputed with `medadv.metrics.summarize`, so they equal an unsharded run's. Everything is
logged in a run of its own (step `evaluate`): `report.html` with its figures embedded, and each
table as CSV and Parquet under `tables/`.
"""

from __future__ import annotations

import math
import re
import tempfile
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path

import keras
import matplotlib.pyplot as plt
import mlflow
import numpy as np
import pandas as pd
from mlflow.entities import Run
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from medadv.attacks.figures import window_success_figure
from medadv.attacks.result import AttackResult
from medadv.attacks.runner import parse_shard, predict
from medadv.data import load_dataset, loader_options
from medadv.defenses.ecg_filters import defense_verdict
from medadv.jobs.attack import RESULT_FILE
from medadv.metrics import success_matrix, summarize, wilson_interval
from medadv.metrics.transfer import transfer_metrics
from medadv.models import ModelError
from medadv.report import Section, eps_curves, matrix_heatmap, render_report, short_model
from medadv.settings import EvaluateSettings
from medadv.tracking.registry import load_model, model_label
from medadv.tracking.runs import STEP_TAG, artifact_dir, connect, start_step_run

REPORT_FILE = "report.html"
STEPS = ("train", "attack", "gradcam")
ATTACK_METRICS = (
    "clean_accuracy", "robust_accuracy", "fooling_rate", "attack_success_rate", "l0_mean", "l2_mean", "l2_median",
    "linf_mean", "linf_max", "psnr_mean", "ssim_mean", "seconds_per_sample", "num_samples",
)  # fmt: skip
IMAGE_ONLY_METRICS = ("psnr_mean", "ssim_mean")  # signals (ECG) have none
HEATMAP_METRICS = ("dssim_mean", "dssim_max", "dssim_std", "pearson_mean", "spearman_mean", "com_shift_mean")
TRAIN_METRICS = ("clean_accuracy", "test_accuracy", "test_macro_f1", "test_auc")
# Parameters that may differ between the shards of one attack: anything else splits them into separate attacks.
PER_SHARD_PARAMS = ("shard", "run_id", "batch_size")
# ECG attack runs: the clinical reading of the adversarial records, and defenses beside their adaptive attack.
PLAUSIBILITY_METRICS = (
    "attack_success_rate", "stealthy_success_rate", "clinically_unchanged_rate", "beats_matched_mean",
    "heart_rate_bpm_change_abs_mean", "sdnn_ms_change_abs_mean", "rmssd_ms_change_abs_mean", "quality_mean",
    "quality_adv_mean", "snr_db_mean", "hf_share_mean", "max_jump_mv_mean", "d_smooth_mean", "num_samples",
)  # fmt: skip
DEFENSE_METRICS = ("undefended_success_rate", "nonadaptive_success_rate", "adaptive_success_rate")
SUCCESS_FILE = "success_matrix.csv"
TRANSFER_FILE = "transfer.csv"


class EvaluateError(ValueError):
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
        mlflow.set_tag("medadv.evaluated_experiment", evaluated)
        with tempfile.TemporaryDirectory(prefix="medadv-evaluate-") as downloads:
            tables, sections = Comparison(Path(downloads)).compare(runs)
        facts = {
            "experiment": evaluated,
            "filter": settings.filter or "(none)",
            "runs found": ", ".join(f"{len(found)} {step}" for step, found in runs.items()),
            "evaluated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "evaluate run": run.info.run_id,
        } | ({"elsewhere": elsewhere} if elsewhere else {})
        with artifact_dir() as folder:
            (folder / REPORT_FILE).write_text(render_report(f"medadv evaluation: {evaluated}", sections, facts))
            _write_tables(tables, folder / "tables")
            _write_figures(sections, folder / "figures")
        report = mlflow.get_artifact_uri(REPORT_FILE)
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
        return list(
            mlflow.search_runs(
                experiment_ids, filter_string=query, output_format="list", search_all_experiments=everywhere
            )
        )
    except MlflowException as error:
        raise EvaluateError(f"filter {extra!r} is not usable: {error.message.splitlines()[0]}") from None


def _float(text: str | None) -> float:
    """A numeric parameter, NaN where it is absent or not a number (an attack without eps)."""
    try:
        return float(text) if text is not None else math.nan
    except ValueError:
        return math.nan


def _describe(run: Run) -> dict[str, object]:
    """The columns that say which attack a run is, and its label in matrices: attack[ metric]@eps [target t]
    (its variant: the label without eps and target)."""
    params = run.data.params
    eps = _float(params.get("eps"))
    target = params.get("target", "None")
    target = "" if target == "None" else target
    label = params.get("attack", "")
    if "metric" in params:  # ECGadv Type I's distance
        label += f" {params['metric']}"
    window = _float(params.get("window"))  # ECGadv Type II's window
    if math.isfinite(window):
        label += f" w={window:g}"
    variant = label
    if math.isfinite(eps):
        label += f"@{eps:g}"
    if target:
        label += f" target {target}"
    keys = ("dataset", "split", "attack")
    engine = run.data.tags.get("medadv.engine", "")  # the engine that ran, not the (possibly empty) parameter
    model = _model(run)
    described = {"engine": engine, "eps": eps, "window": window, "target": target, "label": label, "variant": variant}
    return (
        {"model": model, "model_label": model_label(params.get("model", ""), model)}
        | {key: params.get(key, "") for key in keys}
        | described
    )


def _model(run: Run) -> str:
    """The model version the run used; runs logged before versions were pinned give their URI as it was."""
    params = run.data.params
    return params.get("model_version_uri") or params.get("model", "")


@dataclass
class Ledger:
    """What could not be compared, and why: the report's "missing" and "skipped" tables."""

    missing: list[dict[str, str]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)

    def lack(self, run: Run | None, step: str, kind: str, name: str) -> None:
        self.missing.append({"run_id": run.info.run_id if run else "", "step": step, "kind": kind, "name": name})

    def expect(self, run: Run, step: str, names: Iterable[str]) -> None:
        for name in names:
            if name not in run.data.metrics:
                self.lack(run, step, "metric", name)

    def skip(self, run: Run, step: str, reason: str) -> None:
        self.skipped.append(
            {"run_id": run.info.run_id, "step": step, "run_name": run.info.run_name or "", "reason": reason}
        )

    def tables(self) -> dict[str, pd.DataFrame]:
        return {
            "missing": pd.DataFrame(self.missing, columns=["run_id", "step", "kind", "name"]),
            "skipped": pd.DataFrame(self.skipped, columns=["run_id", "step", "run_name", "reason"]),
        }


@dataclass
class AttackRow:
    """One attack (a run, or the merged shards of one): its table row, success matrix and transfer rows."""

    row: dict[str, object]
    success: pd.DataFrame | None = None
    transfer: pd.DataFrame | None = None


class Comparison:
    """Reads the runs' metrics and artifacts (downloading into `folder`) and builds the tables and figures."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.client = mlflow.MlflowClient()
        self.ledger = Ledger()
        self._models: dict[str, keras.Model] = {}
        self._descriptions: dict[tuple[str, ...], tuple[tuple[str, ...], tuple[float, float]] | None] = {}

    def compare(self, runs: dict[str, list[Run]]) -> tuple[dict[str, pd.DataFrame], list[Section]]:
        """Every table (by file name) and the report's sections."""
        finished = {step: self._finished(step, found) for step, found in runs.items()}
        for run in finished["train"]:
            self.ledger.expect(run, "train", TRAIN_METRICS)
        rows = self.attack_rows(finished["attack"])
        attacks = attack_table(rows)
        transfer = transfer_table(rows)
        models = self.models_table(set(attacks["model"]) | set(transfer["target_model"]))
        tables = {
            "attacks": attacks,
            "robustness": robustness_matrix(attacks, models),
            "robustness_transfer": transfer_robustness_matrix(transfer),
            "success_matrices": success_table(rows),
            "transfer": transfer,
            "transfer_matrix": transfer_matrix(transfer, models),
            "heatmaps": self.heatmap_table(finished["gradcam"]),
            "ecg_plausibility": metrics_table(finished["attack"], PLAUSIBILITY_METRICS, "stealthy_success_rate"),
            "ecg_defenses": defense_table(finished["attack"]),
            "models": models,
            **self.ledger.tables(),
        }
        return tables, report_sections(tables, rows, self.examples(finished["attack"], finished["gradcam"]))

    def _finished(self, step: str, runs: list[Run]) -> list[Run]:
        for run in runs:
            if run.info.status != "FINISHED":
                self.ledger.skip(run, step, f"status {run.info.status}")
        return [run for run in runs if run.info.status == "FINISHED"]

    def attack_rows(self, runs: list[Run]) -> list[AttackRow]:
        """One row per unsharded run and one per sharded attack (its shards grouped by parent and parameters)."""
        groups: dict[tuple[tuple[str, str], ...], list[Run]] = defaultdict(list)
        rows = []
        for run in runs:
            if parse_shard(run.data.params.get("shard", "0/1"))[1] == 1:
                rows.append(self._single(run))
            else:
                key = tuple(sorted((k, v) for k, v in run.data.params.items() if k not in PER_SHARD_PARAMS))
                groups[key].append(run)
        return rows + [self._merged(group) for group in groups.values()]

    def _single(self, run: Run) -> AttackRow:
        """An unsharded run: its logged metrics as they are, its success matrix and transfer table as logged."""
        self.ledger.expect(run, "attack", [m for m in ATTACK_METRICS if m not in IMAGE_ONLY_METRICS])
        # Ids are checked for duplicates where shards are joined; within one run the runner keeps them distinct.
        row = _describe(run) | {"run_id": run.info.run_id, "shards": "1/1", "missing_shards": ""}
        row["target_class"] = self._target_class(run, str(row["target"]))
        row["duplicate_ids"] = math.nan
        row |= {name: run.data.metrics.get(name, math.nan) for name in ATTACK_METRICS}
        present = {artifact.path for artifact in self.client.list_artifacts(run.info.run_id)}
        expected = [SUCCESS_FILE] if run.data.tags.get("medadv.targeted") == "true" else []
        expected += [TRANSFER_FILE] if _transfer_targets(run) else []
        tables = {}
        for name in expected:
            if name in present:
                local = self.client.download_artifacts(run.info.run_id, name, str(self._folder_for(run)))
                tables[name] = pd.read_csv(local, index_col=0)
            else:
                self.ledger.lack(run, "attack", "artifact", name)
        return AttackRow(row, tables.get(SUCCESS_FILE), tables.get(TRANSFER_FILE))

    def _merged(self, runs: list[Run]) -> AttackRow:
        """Shards of one attack joined into one result, its metrics, success matrix and transfer recomputed.

        Of two finished runs of the same shard the newer is used (the older is listed as skipped); each sample
        id counts once, and the shards not found are listed in the row.
        """
        count = parse_shard(runs[0].data.params["shard"])[1]
        newest: dict[int, Run] = {}
        for run in sorted(runs, key=lambda r: r.info.start_time):
            index = parse_shard(run.data.params["shard"])[0]
            if index in newest:
                self.ledger.skip(newest[index], "attack", f"superseded by run {run.info.run_id} of the same shard")
            newest[index] = run
        parts = {index: part for index, run in sorted(newest.items()) if (part := self._result(run)) is not None}
        first = newest[min(newest)]
        row = _describe(first) | {
            "run_id": first.data.params.get("parent_run_id") or first.info.run_id,
            "shards": f"{len(parts)}/{count}",
            "missing_shards": ",".join(str(i) for i in range(count) if i not in parts),
        }
        row["target_class"] = self._target_class(first, str(row["target"]))
        row |= dict.fromkeys(ATTACK_METRICS, math.nan) | {"duplicate_ids": math.nan}
        description = self._data_description(first) if parts else None
        if description is None:
            return AttackRow(row)
        class_names, clip_range = description
        joined = AttackResult.concatenate([parts[index] for index in sorted(parts)])
        _, first_of_each = np.unique(joined.ids, return_index=True)
        result = _take(joined, np.sort(first_of_each))
        row["duplicate_ids"] = len(joined) - len(result)
        ssim = first.data.params.get("ssim", "skimage")  # runs from before the parameter used skimage's
        row |= {k: v for k, v in summarize(result, clip_range, class_names, ssim).items() if k in ATTACK_METRICS}
        success = success_matrix(result, class_names) if (result.y_target >= 0).any() else None
        return AttackRow(row, success, self._transfer(first, result))

    def _folder_for(self, run: Run) -> Path:
        folder = self.folder / run.info.run_id
        folder.mkdir(exist_ok=True)
        return folder

    def _result(self, run: Run) -> AttackResult | None:
        try:
            local = self.client.download_artifacts(run.info.run_id, RESULT_FILE, str(self._folder_for(run)))
        except (MlflowException, OSError):
            self.ledger.lack(run, "attack", "artifact", RESULT_FILE)
            return None
        return AttackResult.load(Path(local))

    def _data_description(self, run: Run) -> tuple[tuple[str, ...], tuple[float, float]] | None:
        """Class names and valid range of the attacked data, which `summarize` needs: read from the data set
        (once per data set, options and split)."""
        params = run.data.params
        name = params.get("dataset", "")
        key = tuple(params.get(k, "") for k in ("dataset", "data_dir", "split", "data_options"))
        if key not in self._descriptions:
            try:
                options = loader_options(name, params.get("data_options", ""))
                data = load_dataset(name, params.get("data_dir", ""), params.get("split", "test"), **options)
                self._descriptions[key] = data.class_names, data.clip_range
            except ValueError as error:
                self.ledger.lack(run, "attack", "data set", f"{name}: {error}")
                self._descriptions[key] = None
        return self._descriptions[key]

    def _target_class(self, run: Run, target: str) -> str:
        """The target as a reader knows it: its class name, "each other class" for -1, empty when untargeted."""
        try:
            index = int(target)
        except ValueError:
            return target
        if index < 0:
            return "each other class"
        description = self._data_description(run)
        names = description[0] if description else ()
        return names[index] if index < len(names) else target

    def _transfer(self, run: Run, result: AttackResult) -> pd.DataFrame | None:
        """transfer.csv recomputed on the joined shards: rates do not add up across shards, predictions do."""
        rows = {}
        for uri in _transfer_targets(run):
            try:
                if uri not in self._models:
                    self._models[uri] = load_model(uri)
            except ModelError as error:
                self.ledger.lack(run, "attack", "transfer target", f"{uri}: {error}")
                continue
            model = self._models[uri]
            rows[uri] = transfer_metrics(result, predict(model, result.x), predict(model, result.x_adv))
        return pd.DataFrame.from_dict(rows, orient="index").rename_axis("target_model") if rows else None

    def heatmap_table(self, runs: list[Run]) -> pd.DataFrame:
        """Mean heatmap metrics over the gradcam runs of each (model, attack, eps, method); clean-only runs left out."""
        rows = []
        for run in runs:
            if "medadv.attack_run_id" not in run.data.tags:
                continue  # maps of clean inputs only: nothing to compare
            iou = f"iou_top{_float(run.data.params.get('iou_top_percent')):g}_mean"
            self.ledger.expect(run, "gradcam", (*HEATMAP_METRICS, iou))
            row: dict[str, object] = {key: run.data.params.get(key, "") for key in ("attack", "method")}
            row["model"] = _model(run)
            row["eps"] = _float(run.data.params.get("eps"))
            rows.append(row | {k: v for k, v in run.data.metrics.items() if k in HEATMAP_METRICS or k == iou})
        keys = ["model", "attack", "eps", "method"]
        if not rows:
            return pd.DataFrame(columns=[*keys, "runs", *HEATMAP_METRICS])
        table = pd.DataFrame(rows)
        grouped = table.groupby(keys, dropna=False, sort=True)
        return grouped.size().rename("runs").to_frame().join(grouped.mean(numeric_only=True)).reset_index()

    def examples(self, attacks: list[Run], gradcams: list[Run], most: int = 6) -> dict[str, bytes]:
        """Figures the runs logged, as PNGs: per (model, attack, target) the unsharded run at the largest eps,
        its clean / adversarial / perturbation figure (images) or ECG overlays, then the Grad-CAM maps of its
        clean and adversarial inputs where a gradcam run explained it; `most` attacks at most."""
        chosen: dict[tuple[str, ...], Run] = {}
        for run in attacks:
            params = run.data.params
            if parse_shard(params.get("shard", "0/1"))[1] != 1:
                continue
            key = (_model(run), str(_describe(run)["variant"]), params.get("target", ""))
            eps = _float(params.get("eps"))
            if key not in chosen or eps > _float(chosen[key].data.params.get("eps")):
                chosen[key] = run
        explained = {run.data.tags.get("medadv.attack_run_id"): run for run in gradcams}
        images = {}
        for _, run in sorted(chosen.items())[:most]:
            name = f"{short_model(_model(run))} {_describe(run)['label']} (run {run.info.run_id[:8]})"
            logged = {artifact.path for artifact in self.client.list_artifacts(run.info.run_id, "figures")}
            for path, caption in (
                ("figures/ecg_overlays.png", "clean and adversarial ECG"),
                ("figures/perturbations.png", "clean, adversarial, perturbation (scale in the figure)"),
            ):
                if path in logged:
                    images[f"{name}: {caption}"] = self._png(run, path)
                    break
            if (gradcam := explained.get(run.info.run_id)) is not None:
                images[f"{name}: Grad-CAM of clean and adversarial inputs"] = self._png(gradcam, "figures/overlays.png")
        return images

    def _png(self, run: Run, path: str) -> bytes:
        return Path(self.client.download_artifacts(run.info.run_id, path, str(self._folder_for(run)))).read_bytes()

    def models_table(self, uris: Iterable[str]) -> pd.DataFrame:
        """Each attacked or transfer-target model with its training run's facts.

        Runs pin versions; an alias logged by a run from before that is resolved as it is now.
        """
        rows = []
        for uri in sorted(uris):
            version, run = self._train_run(uri)
            if run is None:
                self.ledger.lack(None, "train", "train run", uri)
                rows.append({"model": uri})
                continue
            facts = run.data.tags | run.data.params | (version.tags if version else {})
            rows.append(
                {
                    "model": uri,
                    "version": f"{version.name}/{version.version}" if version else "",
                    "train_run_id": run.info.run_id,
                    "training_method": facts.get("training_method", ""),
                    "dataset": facts.get("dataset", ""),
                    "arch": facts.get("arch", ""),
                }
                | {name: run.data.metrics.get(name, math.nan) for name in TRAIN_METRICS}
            )
        columns = ["model", "version", "train_run_id", "training_method", "dataset", "arch", *TRAIN_METRICS]
        return pd.DataFrame(rows, columns=columns).set_index("model")

    def _train_run(self, uri: str) -> tuple[ModelVersion | None, Run | None]:
        """The registered version (for models:/ URIs) and the run that logged the model; None where unknown."""
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
                return version, self.client.get_run(version.run_id) if version.run_id else None
            if logged:
                return None, self.client.get_run(logged[1])
        except MlflowException:
            pass
        return None, None


_ATTACK_COLUMNS = [
    "run_id", "model", "model_label", "dataset", "split", "attack", "variant", "engine", "eps", "window", "target",
    "target_class", "label", "shards", "missing_shards", "duplicate_ids", *ATTACK_METRICS,
]  # fmt: skip
INTERVAL_METRICS = ("fooling_rate", "robust_accuracy")  # shares of the n samples: each gets its Wilson interval


def attack_table(rows: list[AttackRow]) -> pd.DataFrame:
    """One row per attack, indexed by run id (the parent run's for merged shards), with the 95% Wilson
    interval of fooling rate and robust accuracy (`<metric>_low`, `<metric>_high`) over its `num_samples`."""
    table = pd.DataFrame([a.row for a in rows], columns=_ATTACK_COLUMNS).set_index("run_id")
    for metric in INTERVAL_METRICS:
        bounds = [_interval(rate, n) for rate, n in zip(table[metric], table["num_samples"], strict=True)]
        table[[f"{metric}_low", f"{metric}_high"]] = pd.DataFrame(bounds, index=table.index, dtype=float)
    return table.sort_values(["model", "attack", "target", "eps"], kind="stable")


def _rate_text(rate: float, low: float, high: float) -> str:
    if math.isnan(rate):
        return "-"
    return f"{rate:.2f} [{low:.2f}, {high:.2f}]" if math.isfinite(low) else f"{rate:.2f}"


def _interval(rate: float, n: float) -> tuple[float, float]:
    if not (math.isfinite(rate) and math.isfinite(n) and n > 0):
        return math.nan, math.nan
    return wilson_interval(round(rate * n), int(n))


def headline_table(attacks: pd.DataFrame) -> pd.DataFrame:
    """The attack table as a paper shows it: what was attacked and how, n, the two rates with their 95%
    intervals and the perturbation size first; the shards (only where an attack was sharded) and the short
    run id last. Every column of every run stays in tables/attacks.csv."""
    table = pd.DataFrame(
        {
            "model": attacks["model"].map(short_model),
            "attack": attacks["variant"],
            "eps": attacks["eps"],
            "target": attacks["target_class"],
            "n": attacks["num_samples"],
        }
    )
    for metric in INTERVAL_METRICS:
        columns = attacks[[metric, f"{metric}_low", f"{metric}_high"]].itertuples(index=False)
        table[f"{metric.replace('_', ' ')} [95% CI]"] = [_rate_text(*values) for values in columns]
    table["L2 mean"], table["Linf max"] = attacks["l2_mean"], attacks["linf_max"]
    if (attacks["shards"] != "1/1").any():
        table["shards"] = attacks["shards"]
    if not attacks["target_class"].astype(bool).any():
        table = table.drop(columns="target")
    table["run"] = [run_id[:8] for run_id in attacks.index]
    return table.reset_index(drop=True)


def transfer_table(rows: list[AttackRow]) -> pd.DataFrame:
    """transfer.csv of every attack with transfer targets, one row per (attack, target model)."""
    frames = [
        a.transfer.reset_index().assign(
            run_id=a.row["run_id"], source_model=a.row["model"], label=a.row["label"], n=a.row["num_samples"]
        )
        for a in rows
        if a.transfer is not None
    ]
    return _concat(frames, ["run_id", "source_model", "label", "target_model"]).set_index("run_id")


def success_table(rows: list[AttackRow]) -> pd.DataFrame:
    """Every targeted attack's source x target success matrix, in long form."""
    frames = [
        a.success.rename_axis(index="source", columns="target").stack(future_stack=True).rename("success_rate")
        .reset_index()
        .assign(run_id=a.row["run_id"], model=a.row["model"], label=a.row["label"])
        for a in rows
        if a.success is not None
    ]  # fmt: skip
    return _concat(frames, ["run_id", "model", "label", "source", "target", "success_rate"]).set_index("run_id")


def robustness_matrix(attacks: pd.DataFrame, models: pd.DataFrame) -> pd.DataFrame:
    """Models (rows) x attack@eps (columns) of robust accuracy, after a first column of clean test accuracy.

    Robust accuracy is the attack runs' (white-box, against the model itself), averaged where several runs
    share a cell. As in RobustBench's tables, the clean accuracy beside it says what the attack took away.
    """
    if attacks.empty:
        return pd.DataFrame()
    matrix = attacks.pivot_table(index="model", columns="label", values="robust_accuracy", aggfunc="mean", dropna=False)
    matrix.insert(0, "clean_test_accuracy", models["test_accuracy"].reindex(matrix.index).to_numpy())
    return matrix


def transfer_robustness_matrix(transfer: pd.DataFrame) -> pd.DataFrame:
    """Target models (rows) x attacks crafted on a source (columns) of accuracy on those adversarial inputs.

    DeepCustom's robustness evaluation: adversarial test sets crafted once against the original victim and
    replayed on every (robust) model.
    """
    if transfer.empty:
        return pd.DataFrame()
    crafted = (transfer["label"] + " on " + transfer["source_model"]).rename("crafted")
    return transfer.pivot_table(
        index="target_model", columns=crafted, values="adversarial_accuracy", aggfunc="mean", dropna=False
    )


def transfer_matrix(transfer: pd.DataFrame, models: pd.DataFrame) -> pd.DataFrame:
    """Source model and attack (rows) x target model (columns) of transfer success rate, with the source's clean
    test AUC beside it (a broken source, AUC near 0.5, makes its transfer rates meaningless)."""
    if transfer.empty:
        return pd.DataFrame()
    matrix = transfer.pivot_table(
        index=["source_model", "label"], columns="target_model", values="transfer_success_rate", aggfunc="mean",
        dropna=False,
    )  # fmt: skip
    matrix["source_clean_auc"] = models["test_auc"].reindex(matrix.index.get_level_values("source_model")).to_numpy()
    return matrix


def metrics_table(runs: list[Run], metrics: tuple[str, ...], logged: str) -> pd.DataFrame:
    """`metrics` of every run that logged the metric `logged`, one row per run (shards apart), by run id."""
    rows = [
        _describe(run) | {"run_id": run.info.run_id, "defense": run.data.params.get("defense", "")}
        | {name: run.data.metrics.get(name, math.nan) for name in metrics}
        for run in runs
        if logged in run.data.metrics
    ]  # fmt: skip
    columns = ["run_id", "model", "attack", "label", "defense", *metrics]
    return pd.DataFrame(rows, columns=columns).set_index("run_id").sort_values(["model", "label"], kind="stable")


def defense_table(runs: list[Run]) -> pd.DataFrame:
    """Defended attack runs: success undefended, non-adaptive (replayed through the defense) and adaptive, and
    the verdict (a defense that only stops the non-adaptive attack says so)."""
    table = metrics_table(runs, DEFENSE_METRICS, "adaptive_success_rate")
    verdicts = [defense_verdict(*(row[name] for name in DEFENSE_METRICS)) for _, row in table.iterrows()]
    return table.assign(verdict=verdicts)


def _transfer_targets(run: Run) -> list[str]:
    params = run.data.params  # the versions the attack pinned, else (runs from before) the URIs given
    return params.get("transfer_to_versions", params.get("transfer_to", "")).split()


def _take(result: AttackResult, index: np.ndarray) -> AttackResult:
    return AttackResult(**{f.name: getattr(result, f.name)[index] for f in fields(result)})


def _concat(frames: list[pd.DataFrame], first: list[str]) -> pd.DataFrame:
    """Frames stacked with the `first` columns first; an empty table with those columns when there are none."""
    if not frames:
        return pd.DataFrame(columns=first)
    table = pd.concat(frames, ignore_index=True)
    return table[first + [c for c in table.columns if c not in first]]


def _shown(table: pd.DataFrame) -> pd.DataFrame:
    """A table as the report shows it: model URIs by their short names, run ids by their first 8 characters
    (the CSV and LaTeX files keep them whole)."""
    shown = table.copy()
    for column in shown.columns:
        if str(column) == "run_id" or str(column).endswith("_run_id"):
            shown[column] = shown[column].map(lambda run_id: str(run_id)[:8])
        elif shown[column].dtype == object:
            shown[column] = shown[column].map(_short_uris)
    shown.columns = pd.Index([_short_uris(c) for c in shown.columns], name=shown.columns.name)
    if shown.index.name == "run_id":
        shown.index = pd.Index([str(run_id)[:8] for run_id in shown.index], name="run")
    elif not isinstance(shown.index, pd.RangeIndex):
        shown.index = shown.index.map(_short_uris)
    return shown


def _short_uris(value: object) -> object:
    """Every model URI in a label (or in each part of a tuple label) by its short name."""
    if isinstance(value, tuple):
        return tuple(_short_uris(part) for part in value)
    if not isinstance(value, str):
        return value
    return re.sub(r"(?:models|runs):/\S+", lambda uri: short_model(uri[0]), value)


def _counts(
    matrix: pd.DataFrame, table: pd.DataFrame, index: str | list[str], columns: str | pd.Series
) -> pd.DataFrame:
    """The sample count behind each cell of a rates matrix built from `table` by the same pivot (summed over
    the runs that share a cell, as their rates are averaged)."""
    return table.pivot_table(index=index, columns=columns, values="n", aggfunc="sum").reindex_like(matrix)


def report_sections(
    tables: dict[str, pd.DataFrame], rows: list[AttackRow], examples: dict[str, bytes] | None = None
) -> list[Section]:
    """The report's headings in reading order, each with its tables and figures (a heading with nothing to
    show is left out of the report)."""
    attacks, robustness, transferred = tables["attacks"], tables["robustness"], tables["robustness_transfer"]
    transfers, per_target = tables["transfer_matrix"], tables["transfer"]
    curves = {
        f"{short_model(str(model))}: fooling rate and robust accuracy vs eps (95% Wilson intervals)": eps_curves(
            runs, ["fooling_rate", "robust_accuracy"], line=["variant", "target_class"]
        )
        for model, runs in attacks.dropna(subset=["eps"]).groupby("model")
    }  # one figure per model: models of different data sets are attacked at eps of different scales
    robust = {}
    if not robustness.empty:
        counted = attacks.rename(columns={"num_samples": "n"})
        counts = _counts(robustness, counted, "model", "label")
        robust["white-box robust accuracy (n: samples attacked)"] = matrix_heatmap(
            _shown(robustness), "robust accuracy (first column: clean test accuracy)", counts=_shown(counts)
        )
    crafted = (per_target["label"] + " on " + per_target["source_model"]).rename("crafted")
    if not transferred.empty:
        counts = _counts(transferred, per_target, "target_model", crafted)
        robust["accuracy on transferred adversarial inputs (n: inputs replayed)"] = matrix_heatmap(
            _shown(transferred), "accuracy, transferred", counts=_shown(counts)
        )
    success = {
        f"{short_model(str(a.row['model']))} {a.row['label']} (run {str(a.row['run_id'])[:8]})": matrix_heatmap(
            a.success, f"{short_model(str(a.row['model']))} {a.row['label']}: success rate"
        )
        for a in rows
        if a.success is not None
    }
    windowed = attacks.dropna(subset=["window"]).rename(columns={"attack_success_rate": "success_rate"})
    for model, runs in windowed.groupby("model"):
        success[f"{short_model(str(model))}: ECGadv Type II success vs window"] = window_success_figure(runs)
    transfer = {}
    if not transfers.empty:
        rates = transfers.drop(columns="source_clean_auc")
        counts = _counts(rates, per_target, ["source_model", "label"], "target_model")
        labels = [f"{short_model(source)} {label}" for source, label in rates.index]
        rates.index = counts.index = pd.Index(labels)
        rates, counts = _shown(rates), _shown(counts)
        transfer["transfer success rate (n: inputs replayed)"] = matrix_heatmap(
            rates, "transfer success rate (source rows, target columns)", counts=counts
        )
    return [
        Section(
            title="Attacks",
            text="One row per attack (the shards of a sharded attack merged into one): n samples attacked, fooling "
            "rate and robust accuracy with their 95% Wilson intervals, mean L2 and largest L-inf perturbation. "
            "Every column of every run (norms, PSNR, SSIM, time, shards, ids seen twice) is in tables/attacks.csv.",
            tables={"attacks": headline_table(attacks)},
            figures=curves,
        ),
        Section(
            title="Examples",
            text="Figures the attack runs logged, at the largest eps run per model and attack: the least and most "
            "perturbed samples with the perturbation on one stated scale, or clean and adversarial ECGs; and, where "
            "a gradcam run explained the attack, the Grad-CAM maps of the clean and adversarial inputs.",
            images=examples or {},
        ),
        Section(
            title="Robustness matrix",
            text="Robust accuracy of each model (rows) under each attack@eps (columns), white-box; and, where "
            "adversarial inputs crafted on one model were replayed on others, each target's accuracy on them.",
            tables={"white-box": _shown(robustness), "transferred": _shown(transferred)},
            figures=robust,
        ),
        Section(
            title="Targeted attacks: success by source and target class",
            text="Share of the samples of each true class (rows) that the attack moved to each target (columns); "
            "for ECGadv Type II, the success rate against the window length (a point per run, the mean as a line).",
            figures=success,
        ),
        Section(
            title="Transferability",
            text="Share of the source-successful adversarial inputs that also fool each target model, with the "
            "source model's clean test AUC beside it; the per-target detail below, and every model's AUC under Models.",
            tables={"transfer success rate": _shown(transfers), "per target": _shown(per_target)},
            figures=transfer,
        ),
        Section(
            title="Explanations under attack",
            text="Grad-CAM heatmap change between clean and adversarial inputs, mean over the runs of each group.",
            tables={"heatmap metrics": _shown(tables["heatmaps"])},
        ),
        Section(
            title="ECG: would a cardiologist notice?",
            text="Per ECG attack run, neurokit2's reading of each adversarial record against its clean one (means "
            "over records): beats matched within 50 ms, heart-rate and RR changes, template-match quality, and the "
            "perturbation's SNR, share above 40 Hz and largest jump in mV. Stealthy success: fooled and clinically "
            "unchanged (>= 95% of beats matched, heart rate within 2 bpm, quality not lower).",
            tables={"clinical plausibility": _shown(tables["ecg_plausibility"])},
        ),
        Section(
            title="ECG preprocessing defenses",
            text="Success of the attack crafted on the bare model (undefended), replayed through the defense "
            "(non-adaptive), and crafted through it (adaptive: gradients through the filter, BPDA for the denoisers).",
            tables={"defenses": _shown(tables["ecg_defenses"])},
        ),
        Section(title="Models", tables={"models and their training runs": _shown(tables["models"])}),
        Section(
            title="Missing metrics and artifacts",
            text="Runs that lack a metric or artifact they should have; their cells above are empty.",
            tables={"missing": _shown(tables["missing"])},
        ),
        Section(
            title="Skipped runs", text="Runs not compared, and why.", tables={"skipped": _shown(tables["skipped"])}
        ),
    ]


def _write_tables(tables: dict[str, pd.DataFrame], folder: Path) -> None:
    """Each table as CSV, Parquet and LaTeX (a booktabs tabular, special characters escaped, 4 significant digits,
    missing values as -)."""
    folder.mkdir()
    for name, table in tables.items():
        table.to_csv(folder / f"{name}.csv")
        table.to_parquet(folder / f"{name}.parquet")
        numbered = isinstance(table.index, pd.RangeIndex)
        latex = table.to_latex(index=not numbered, na_rep="-", float_format=lambda value: f"{value:.4g}", escape=True)
        (folder / f"{name}.tex").write_text(latex)


def _write_figures(sections: list[Section], folder: Path) -> None:
    """The report's own figures also as PNG and SVG files under figures/ (named after their captions), for
    MLflow's UI and for a paper; the examples stay where their runs logged them."""
    folder.mkdir()
    for section in sections:
        for caption, figure in section.figures.items():
            name = re.sub(r"[^0-9A-Za-z]+", "_", caption).strip("_")
            for suffix in ("png", "svg"):
                figure.savefig(folder / f"{name}.{suffix}", dpi=100, bbox_inches="tight")
            plt.close(figure)
