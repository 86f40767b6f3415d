"""The report's headings in reading order, each with its tables and figures, built from `compare`'s tables;
and the examples: which attacks to show, with the figures their runs logged."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import pandas as pd
from matplotlib.figure import Figure

from medadv.attacks.figures import window_success_figure
from medadv.contract import ATTACK_RUN_TAG
from medadv.report.figures import eps_curves, example_grid, matrix_heatmap
from medadv.report.html import Section, shown
from medadv.report.records import Example, RunRecord, describe, model_of, number, shard_of, short_model
from medadv.report.tables import AttackRow, crafted, headline_table

Tables = Mapping[str, pd.DataFrame]


def report_sections(
    tables: Tables, rows: Sequence[AttackRow], examples: Mapping[str, bytes], grids: Mapping[str, Figure]
) -> list[Section]:
    """Every heading of the report (a heading with nothing to show is left out when rendered); `examples` are the
    figures the runs logged, `grids` the report's own drawings of the explained image attacks."""
    return [
        Section(
            title="Attacks",
            text="One row per attack (the shards of a sharded attack merged into one): n samples attacked, fooling "
            "rate and robust accuracy with their 95% Wilson intervals, mean L2 and largest L-inf perturbation. "
            "Every column of every run (norms, PSNR, SSIM, time, shards, ids seen twice) is in tables/attacks.csv.",
            tables={"attacks": headline_table(tables["attacks"])},
            figures=eps_figures(tables["attacks"]),
        ),
        Section(
            title="Examples",
            text="At the largest eps run per model and attack: where a gradcam run explained an image attack, one "
            "grid of clean, adversarial and amplified perturbation beside the Grad-CAM maps of both (also under "
            "figures/); then the figures the attack runs logged: the least and most perturbed samples with the "
            "perturbation on one stated scale, or clean and adversarial ECGs with their Grad-CAM maps.",
            figures=grids,
            images=examples,
        ),
        Section(
            title="Robustness matrix",
            text="Robust accuracy of each model (rows) under each attack@eps (columns), white-box; and, where "
            "adversarial inputs crafted on one model were replayed on others, each target's accuracy on them.",
            tables={"white-box": shown(tables["robustness"]), "transferred": shown(tables["robustness_transfer"])},
            figures=robustness_figures(tables),
        ),
        Section(
            title="Targeted attacks: success by source and target class",
            text="Share of the samples of each true class (rows) that the attack moved to each target (columns); "
            "for ECGadv Type II, the success rate against the window length (a point per run, the mean as a line).",
            figures=success_figures(tables["attacks"], rows),
        ),
        Section(
            title="Transferability",
            text="Share of the source-successful adversarial inputs that also fool each target model, with the "
            "source model's clean test AUC beside it; the per-target detail below, and every model's AUC under Models.",
            tables={"transfer success rate": shown(tables["transfer_matrix"]), "per target": shown(tables["transfer"])},
            figures=transfer_figures(tables),
        ),
        *detail_sections(tables),
    ]


def detail_sections(tables: Tables) -> list[Section]:
    """The headings after the key figures: explanations, the ECG readings, the models, and what is missing."""
    return [
        Section(
            title="Explanations under attack",
            text="Grad-CAM heatmap change between clean and adversarial inputs, mean over the runs of each group.",
            tables={"heatmap metrics": shown(tables["heatmaps"])},
        ),
        Section(
            title="ECG: would a cardiologist notice?",
            text="Per ECG attack run, neurokit2's reading of each adversarial record against its clean one (means "
            "over records): beats matched within 50 ms, heart-rate and RR changes, template-match quality, and the "
            "perturbation's SNR, share above 40 Hz and largest jump in mV. Stealthy success: fooled and clinically "
            "unchanged (>= 95% of beats matched, heart rate within 2 bpm, quality not lower).",
            tables={"clinical plausibility": shown(tables["ecg_plausibility"])},
        ),
        Section(
            title="ECG preprocessing defenses",
            text="Success of the attack crafted on the bare model (undefended), replayed through the defense "
            "(non-adaptive), and crafted through it (adaptive: gradients through the filter, BPDA for the denoisers).",
            tables={"defenses": shown(tables["ecg_defenses"])},
        ),
        Section(title="Models", tables={"models and their training runs": shown(tables["models"])}),
        Section(
            title="Missing metrics and artifacts",
            text="Runs that lack a metric or artifact they should have; their cells above are empty.",
            tables={"missing": shown(tables["missing"])},
        ),
        Section(title="Skipped runs", text="Runs not compared, and why.", tables={"skipped": shown(tables["skipped"])}),
    ]


def eps_figures(attacks: pd.DataFrame) -> dict[str, Figure]:
    """One figure per model (models of different data sets are attacked at eps of different scales)."""
    return {
        f"{short_model(str(model))}: fooling rate and robust accuracy vs eps (95% Wilson intervals)": eps_curves(
            runs, ["fooling_rate", "robust_accuracy"], line=["variant", "target_class"]
        )
        for model, runs in attacks.dropna(subset=["eps"]).groupby("model")
    }


def _counts(
    matrix: pd.DataFrame, table: pd.DataFrame, index: str | list[str], columns: str | pd.Series
) -> pd.DataFrame:
    """The sample count behind each cell of a rates matrix built from `table` by the same pivot (summed over
    the runs that share a cell, as their rates are averaged)."""
    return table.pivot_table(index=index, columns=columns, values="n", aggfunc="sum").reindex_like(matrix)


def robustness_figures(tables: Tables) -> dict[str, Figure]:
    """The white-box and the transferred robustness matrices as heatmaps, each cell with its n."""
    robustness, transferred, per_target = tables["robustness"], tables["robustness_transfer"], tables["transfer"]
    figures = {}
    if not robustness.empty:
        counts = _counts(robustness, tables["attacks"].rename(columns={"num_samples": "n"}), "model", "label")
        figures["white-box robust accuracy (n: samples attacked)"] = matrix_heatmap(
            shown(robustness), "robust accuracy (first column: clean test accuracy)", counts=shown(counts)
        )
    if not transferred.empty:
        counts = _counts(transferred, per_target, "target_model", crafted(per_target))
        figures["accuracy on transferred adversarial inputs (n: inputs replayed)"] = matrix_heatmap(
            shown(transferred), "accuracy, transferred", counts=shown(counts)
        )
    return figures


def success_figures(attacks: pd.DataFrame, rows: Sequence[AttackRow]) -> dict[str, Figure]:
    """Each targeted attack's success matrix, and ECGadv Type II's success against the window per model."""
    figures = {}
    for a in rows:
        if a.success is not None:
            name = f"{short_model(str(a.row['model']))} {a.row['label']}"
            figures[f"{name} (run {str(a.row['run_id'])[:8]})"] = matrix_heatmap(a.success, f"{name}: success rate")
    windowed = attacks.dropna(subset=["window"]).rename(columns={"attack_success_rate": "success_rate"})
    for model, runs in windowed.groupby("model"):
        figures[f"{short_model(str(model))}: ECGadv Type II success vs window"] = window_success_figure(runs)
    return figures


def transfer_figures(tables: Tables) -> dict[str, Figure]:
    """The transfer success matrix (source model and attack rows, target columns) as a heatmap with its n."""
    transfers = tables["transfer_matrix"]
    if transfers.empty:
        return {}
    rates = transfers.drop(columns="source_clean_auc")
    counts = _counts(rates, tables["transfer"], ["source_model", "label"], "target_model")
    rates.index = counts.index = pd.Index([f"{short_model(source)} {label}" for source, label in rates.index])
    figure = matrix_heatmap(shown(rates), "transfer success rate (source rows, target columns)", counts=shown(counts))
    return {"transfer success rate (n: inputs replayed)": figure}


def choose_examples(
    attacks: Iterable[RunRecord], gradcams: Iterable[RunRecord], most: int = 6
) -> list[tuple[RunRecord, RunRecord | None]]:
    """The attacks the examples show: per (model, attack variant, target) the finished unsharded run at the
    largest eps, `most` at most, each with the gradcam run that explained it (None where none did)."""
    chosen: dict[tuple[str, ...], RunRecord] = {}
    for run in attacks:
        if run.status != "FINISHED" or shard_of(run)[1] != 1:
            continue
        key = (model_of(run), str(describe(run)["variant"]), run.params.get("target", ""))
        if key not in chosen or number(run.params.get("eps")) > number(chosen[key].params.get("eps")):
            chosen[key] = run
    explained = {run.tags.get(ATTACK_RUN_TAG): run for run in gradcams if run.status == "FINISHED"}
    return [(run, explained.get(run.run_id)) for _, run in sorted(chosen.items())[:most]]


def example_images(examples: Iterable[Example]) -> dict[str, bytes]:
    """The figures the examples' runs logged, by caption: the attack's ECG overlays or images, then (for ECGs, or
    where the report draws no grid) its Grad-CAM maps."""
    images = {}
    for example in examples:
        name = _example_name(example)
        if example.ecg_overlays is not None:
            images[f"{name}: clean and adversarial ECG"] = example.ecg_overlays
        elif example.perturbations is not None:
            images[f"{name}: clean, adversarial, perturbation (scale in the figure)"] = example.perturbations
        if example.gradcam is not None and not _has_grid(example):
            images[f"{name}: Grad-CAM of clean and adversarial inputs"] = example.gradcam
    return images


def example_grids(examples: Iterable[Example]) -> dict[str, Figure]:
    """The report's own figure of each image attack a gradcam run explained: one grid of clean, adversarial,
    perturbation and both maps (drawn here, so it is logged as PNG and SVG like the report's other figures)."""
    return {
        f"{_example_name(example)}: Grad-CAM of clean and adversarial inputs, beside the images and the "
        "perturbation": example_grid(example.result, example.heatmaps)
        for example in examples
        if example.result is not None and example.heatmaps is not None
    }


def _has_grid(example: Example) -> bool:
    return example.result is not None and example.heatmaps is not None


def _example_name(example: Example) -> str:
    run = example.attack
    return f"{short_model(model_of(run))} {describe(run)['label']} (run {run.run_id[:8]})"
