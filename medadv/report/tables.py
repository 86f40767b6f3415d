"""The report's tables, each a pure function of run records: one row per attack (shards merged), the
robustness and transfer matrices, targeted success, Grad-CAM change, ECG plausibility and defenses,
the models, and what could not be compared and why.

`compare` builds them all. Merged shards are scored again with `medadv.metrics.summarize` on the
joined result (class names and clip range come with it), and on their transfer targets from the probabilities
each shard saved, so they equal an unsharded run's metrics with no model loaded.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd

from medadv.attacks.result import AttackResult, TargetProbabilities
from medadv.contract import ATTACK_RUN_TAG
from medadv.defenses.ecg_filters import defense_verdict
from medadv.metrics import success_matrix, summarize, wilson_interval
from medadv.metrics.transfer import targets_table
from medadv.report.records import (
    ModelRecord,
    RunRecord,
    describe,
    join_shards,
    model_of,
    newest_shards,
    number,
    shard_of,
    short_model,
    target_class,
    transfer_targets,
)

ATTACK_METRICS = (
    "selected_clean_accuracy", "robust_accuracy", "fooling_rate", "attack_success_rate", "l0_mean", "l2_mean",
    "l2_median", "linf_mean", "linf_max", "psnr_mean", "ssim_mean", "seconds_per_sample", "num_samples",
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
INTERVAL_METRICS = ("fooling_rate", "robust_accuracy")  # shares of the n samples: each gets its Wilson interval
_ATTACK_COLUMNS = [
    "run_id", "model", "model_label", "dataset", "split", "attack", "variant", "engine", "eps", "window", "target",
    "target_class", "label", "shards", "missing_shards", "duplicate_ids", *ATTACK_METRICS,
]  # fmt: skip


@dataclass
class Ledger:
    """What could not be compared, and why: the report's "missing" and "skipped" tables."""

    missing: list[dict[str, str]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)

    def lack(self, record: RunRecord | None, step: str, kind: str, name: str) -> None:
        self.missing.append({"run_id": record.run_id if record else "", "step": step, "kind": kind, "name": name})

    def expect(self, record: RunRecord, names: Iterable[str]) -> None:
        """Lists each of `names` the run did not log as a metric, and each artifact it lacks."""
        for name in names:
            if name not in record.metrics:
                self.lack(record, record.step, "metric", name)
        for name in record.lacking:
            self.lack(record, record.step, "artifact", name)

    def skip(self, record: RunRecord, reason: str) -> None:
        self.skipped.append({"run_id": record.run_id, "step": record.step, "run_name": record.name, "reason": reason})

    def finished(self, records: Iterable[RunRecord]) -> list[RunRecord]:
        """The finished runs; every other one is listed as skipped, with its status."""
        kept = []
        for record in records:
            if record.status == "FINISHED":
                kept.append(record)
            else:
                self.skip(record, f"status {record.status}")
        return kept

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


def compare(
    records: Mapping[str, Sequence[RunRecord]], models: Mapping[str, ModelRecord]
) -> tuple[dict[str, pd.DataFrame], list[AttackRow]]:
    """Every table (by file name) from the train, attack and gradcam records, and the attack rows behind them.

    `models` holds (at least) every model the attacks name (`model_uris`).
    """
    ledger = Ledger()
    finished = {step: ledger.finished(records.get(step, ())) for step in ("train", "attack", "gradcam")}
    for run in finished["train"]:
        ledger.expect(run, TRAIN_METRICS)
    rows = attack_rows(finished["attack"], ledger)
    attacks, transfer = attack_table(rows), transfer_table(rows)
    uris = sorted(set(attacks["model"]) | set(transfer["target_model"]))
    model_table = models_table([models.get(uri, ModelRecord(uri=uri)) for uri in uris], ledger)
    tables = {
        "attacks": attacks,
        "robustness": robustness_matrix(attacks, model_table),
        "robustness_transfer": transfer_robustness_matrix(transfer),
        "success_matrices": success_table(rows),
        "transfer": transfer,
        "transfer_matrix": transfer_matrix(transfer, model_table),
        "heatmaps": heatmap_table(finished["gradcam"], ledger),
        "ecg_plausibility": metrics_table(finished["attack"], PLAUSIBILITY_METRICS, "stealthy_success_rate"),
        "ecg_defenses": defense_table(finished["attack"]),
        "models": model_table,
    }
    return tables | ledger.tables(), rows


def attack_rows(records: Iterable[RunRecord], ledger: Ledger) -> list[AttackRow]:
    """One row per unsharded run and one per sharded attack (its shards grouped by parameters)."""
    groups: dict[tuple[tuple[str, str], ...], list[RunRecord]] = defaultdict(list)
    rows = []
    for record in records:
        if shard_of(record)[1] == 1:
            rows.append(single_row(record, ledger))
        else:
            groups[tuple(sorted((k, v) for k, v in record.params.items() if k not in PER_SHARD_PARAMS))].append(record)
    return rows + [merged_row(group, ledger) for group in groups.values()]


def single_row(record: RunRecord, ledger: Ledger) -> AttackRow:
    """An unsharded run: its logged metrics as they are, its success matrix and transfer table as logged."""
    ledger.expect(record, [m for m in ATTACK_METRICS if m not in IMAGE_ONLY_METRICS])
    # Ids are checked for duplicates where shards are joined; within one run the runner keeps them distinct.
    row = describe(record) | {"run_id": record.run_id, "shards": "1/1", "missing_shards": ""}
    class_names = () if record.success is None else tuple(str(name) for name in record.success.columns)
    row["target_class"] = target_class(str(row["target"]), class_names)
    row["duplicate_ids"] = math.nan
    row |= {name: record.metrics.get(name, math.nan) for name in ATTACK_METRICS}
    return AttackRow(row, record.success, record.transfer)


def merged_row(shards: list[RunRecord], ledger: Ledger) -> AttackRow:
    """Shards of one attack joined into one result, its metrics, success matrix and transfer recomputed.

    Of two finished runs of the same shard the newer is used (the older is listed as skipped); each sample
    id counts once, and the shards not found are listed in the row.
    """
    newest, superseded = newest_shards(shards)
    for older, newer in superseded:
        ledger.skip(older, f"superseded by run {newer.run_id} of the same shard")
    for record in newest.values():
        ledger.expect(record, ())
    parts = {index: run.result for index, run in sorted(newest.items()) if run.result is not None}
    first, count = newest[min(newest)], shard_of(shards[0])[1]
    row = describe(first) | {
        "run_id": first.params.get("parent_run_id") or first.run_id,
        "shards": f"{len(parts)}/{count}",
        "missing_shards": ",".join(str(i) for i in range(count) if i not in parts),
        "duplicate_ids": math.nan,
    }
    row |= dict.fromkeys(ATTACK_METRICS, math.nan)
    if not parts:
        return AttackRow(row | {"target_class": target_class(str(row["target"]), ())})
    result, row["duplicate_ids"] = join_shards(list(parts.values()))
    row["target_class"] = target_class(str(row["target"]), result.class_names)
    ssim = first.params.get("ssim", "skimage")  # runs from before the parameter used skimage's
    metrics = summarize(result, result.clip_range, result.class_names, ssim)
    row |= {name: value for name, value in metrics.items() if name in ATTACK_METRICS}
    targeted = bool((result.y_target >= 0).any()) and bool(result.class_names)
    success = success_matrix(result, result.class_names) if targeted else None
    return AttackRow(row, success, merged_transfer([newest[index] for index in parts], result, ledger))


def merged_transfer(shards: list[RunRecord], result: AttackResult, ledger: Ledger) -> pd.DataFrame | None:
    """transfer.csv recomputed on the joined shards (their `result`) from the probabilities each saved: rates do
    not add up across shards, probabilities do. A target some shard saved none for (a run from before) is left
    out and listed."""
    probabilities = {}
    saved = [shard.transfer_probabilities or {} for shard in shards]
    for uri in transfer_targets(shards[0]):
        lacking = [shard for shard, targets in zip(shards, saved, strict=True) if uri not in targets]
        if lacking:
            reason = f"{len(lacking)} of {len(shards)} shards saved no probabilities"
            ledger.lack(lacking[0], "attack", "transfer target", f"{uri}: left out of the merged shards ({reason})")
            continue
        probabilities[uri] = TargetProbabilities.join([targets[uri] for targets in saved], result.ids)
    return targets_table(result, probabilities) if probabilities else None


def attack_table(rows: list[AttackRow]) -> pd.DataFrame:
    """One row per attack, indexed by run id (the parent run's for merged shards), with the 95% Wilson
    interval of fooling rate and robust accuracy (`<metric>_low`, `<metric>_high`) over its `num_samples`."""
    table = pd.DataFrame([a.row for a in rows], columns=_ATTACK_COLUMNS).set_index("run_id")
    for metric in INTERVAL_METRICS:
        bounds = [_interval(rate, n) for rate, n in zip(table[metric], table["num_samples"], strict=True)]
        columns = [f"{metric}_low", f"{metric}_high"]  # named: with no attack there are no bounds to count them
        table[columns] = pd.DataFrame(bounds, index=table.index, columns=columns, dtype=float)
    return table.sort_values(["model", "attack", "target", "eps"], kind="stable")


def _interval(rate: float, n: float) -> tuple[float, float]:
    if not (math.isfinite(rate) and math.isfinite(n) and n > 0):
        return math.nan, math.nan
    return wilson_interval(round(rate * n), int(n))


def _rate_text(rate: float, low: float, high: float) -> str:
    if math.isnan(rate):
        return "-"
    return f"{rate:.2f} [{low:.2f}, {high:.2f}]" if math.isfinite(low) else f"{rate:.2f}"


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
    return transfer.pivot_table(
        index="target_model", columns=crafted(transfer), values="adversarial_accuracy", aggfunc="mean", dropna=False
    )


def crafted(transfer: pd.DataFrame) -> pd.Series:
    """Each transfer row's column in the transferred robustness matrix: "<attack> on <source model>"."""
    return (transfer["label"] + " on " + transfer["source_model"]).rename("crafted")


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


def metrics_table(records: Iterable[RunRecord], metrics: tuple[str, ...], logged: str) -> pd.DataFrame:
    """`metrics` of every run that logged the metric `logged`, one row per run (shards apart), by run id."""
    rows = [
        describe(record) | {"run_id": record.run_id, "defense": record.params.get("defense", "")}
        | {name: record.metrics.get(name, math.nan) for name in metrics}
        for record in records
        if logged in record.metrics
    ]  # fmt: skip
    columns = ["run_id", "model", "attack", "label", "defense", *metrics]
    return pd.DataFrame(rows, columns=columns).set_index("run_id").sort_values(["model", "label"], kind="stable")


def defense_table(records: Iterable[RunRecord]) -> pd.DataFrame:
    """Defended attack runs: success undefended, non-adaptive (replayed through the defense) and adaptive, and
    the verdict (a defense that only stops the non-adaptive attack says so)."""
    table = metrics_table(records, DEFENSE_METRICS, "adaptive_success_rate")
    verdicts = [defense_verdict(*(row[name] for name in DEFENSE_METRICS)) for _, row in table.iterrows()]
    return table.assign(verdict=verdicts)


def heatmap_table(records: Iterable[RunRecord], ledger: Ledger) -> pd.DataFrame:
    """Mean heatmap metrics over the gradcam runs of each (model, attack, eps, method); clean-only runs left out."""
    rows = []
    for record in records:
        if ATTACK_RUN_TAG not in record.tags:
            continue  # maps of clean inputs only: nothing to compare
        iou = f"iou_top{number(record.params.get('iou_top_percent')):g}_mean"
        ledger.expect(record, (*HEATMAP_METRICS, iou))
        row: dict[str, object] = {key: record.params.get(key, "") for key in ("attack", "method")}
        row |= {"model": model_of(record), "eps": number(record.params.get("eps"))}
        rows.append(row | {k: v for k, v in record.metrics.items() if k in HEATMAP_METRICS or k == iou})
    keys = ["model", "attack", "eps", "method"]
    if not rows:
        return pd.DataFrame(columns=[*keys, "runs", *HEATMAP_METRICS])
    grouped = pd.DataFrame(rows).groupby(keys, dropna=False, sort=True)
    return grouped.size().rename("runs").to_frame().join(grouped.mean(numeric_only=True)).reset_index()


def models_table(models: Iterable[ModelRecord], ledger: Ledger) -> pd.DataFrame:
    """Each attacked or transfer-target model with its training run's facts (version tags over run params)."""
    rows: list[dict[str, object]] = []
    for model in models:
        run = model.train_run
        if run is None:
            ledger.lack(None, "train", "train run", model.uri)
            rows.append({"model": model.uri})
            continue
        facts = {**run.tags, **run.params, **model.version_tags}
        rows.append(
            {"model": model.uri, "version": model.version, "train_run_id": run.run_id}
            | {key: facts.get(key, "") for key in ("training_method", "dataset", "arch")}
            | {name: run.metrics.get(name, math.nan) for name in TRAIN_METRICS}
        )
    columns = ["model", "version", "train_run_id", "training_method", "dataset", "arch", *TRAIN_METRICS]
    return pd.DataFrame(rows, columns=columns).set_index("model")


def _concat(frames: list[pd.DataFrame], first: list[str]) -> pd.DataFrame:
    """Frames stacked with the `first` columns first; an empty table with those columns when there are none."""
    if not frames:
        return pd.DataFrame(columns=first)
    table = pd.concat(frames, ignore_index=True)
    return table[first + [c for c in table.columns if c not in first]]
