"""The `study` entry point: one study's whole protocol (`medadv.studies`) as nested runs under one parent.

Every victim, attack, Grad-CAM, generator set and robust model is a `train` / `attack` / `gradcam` run
made in-process, as `main` does, and reused when a finished run with the same parameters and code
exists; the parent logs `study_table.csv` (one row per headline figure: figure, paper_value,
medadv_value, settings, n) and `report.html`. Victims are addressed by their train run
(`runs:/ID/model`), so a run reused from an earlier study never points at a newer model.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd

from medadv.contract import REPORT, STUDY_TABLE, TRANSFER_TABLE
from medadv.data import Dataset, load_dataset, loader_options
from medadv.jobs.attack import attack
from medadv.jobs.gradcam import gradcam
from medadv.jobs.main import reusing_step
from medadv.jobs.train import train
from medadv.report.html import Section, render_report
from medadv.settings import AttackSettings, GradcamSettings, StudySettings, TrainSettings
from medadv.studies import (
    DataNeed,
    DeepCustomProtocol,
    ECGadvProtocol,
    FoeProtocol,
    GradAttacksProtocol,
    StudyError,
    Victim,
    missing_data,
)
from medadv.tracking.runs import connect, start_step_run

COLUMNS = ("figure", "paper_value", "medadv_value", "settings", "n")
# The papers' figures where the paper or the task's seed gives one.
PAPER_DEEPFOOL_FOOLING_RATE = {"pneumoniamnist": 0.93, "chest_xray": 0.93, "oct2017": 0.96}
PAPER_TARGET_ACCURACY = {"mnist": 0.9656, "cifar10": 0.7075}
PAPER_BEST_DGN_ROBUST_ACCURACY = 0.0913


Row = dict[str, Any]


def study(settings: StudySettings, tracking_uri: str | None = None, experiment: str | None = None) -> str:
    """Run (or reuse) every step of one study's protocol under a parent run; returns the parent run id."""
    chosen = settings.protocol
    if settings.data_dir or settings.scale == "paper":
        missing = missing_data(chosen, settings.data_dir)
        if missing:
            raise StudyError(f"study {settings.name} at scale={settings.scale} needs {missing}")
    uri = connect(tracking_uri, experiment)
    with start_step_run("study", asdict(settings), name=f"study {settings.name} · {settings.scale}") as parent:
        steps = _Steps(reusing_step(uri, experiment), settings)
        rows = RUNNERS[type(chosen)](chosen, steps)
        table = pd.DataFrame(rows, columns=list(COLUMNS))
        with tempfile.TemporaryDirectory(prefix="medadv-study-") as folder:
            table.to_csv(Path(folder) / STUDY_TABLE, index=False)
            text = (
                f"{chosen.title}, scale={settings.scale}{', options ' + settings.options if settings.options else ''}."
                " paper_value: the paper's figure where the paper gives one; n: the samples behind medadv's value."
            )
            report = render_report(
                f"medadv study: {settings.name}",
                [Section(title=chosen.title, text=text, tables={"study table": table})],
                facts={"parent run": parent.info.run_id},
            )
            (Path(folder) / REPORT).write_text(report)
            mlflow.log_artifacts(folder)
        print(table.to_string(index=False))
        return str(parent.info.run_id)


class _Steps:
    """The study's steps: each one a job run in-process (or reused), named after the study and scale."""

    def __init__(self, step: Callable[[str, Callable[..., str], Any], str], settings: StudySettings) -> None:
        self.step, self.data_dir, self.prefix = step, settings.data_dir, f"study-{settings.name}-{settings.scale}"

    def data(self, need: DataNeed, data_options: str = "") -> dict[str, Any]:
        options = ",".join(filter(None, (need.data_options, data_options)))
        return {"dataset": need.dataset, "data_dir": need.located(self.data_dir), "data_options": options}

    def test_set(self, data: dict[str, Any]) -> Dataset:
        options = loader_options(data["dataset"], data["data_options"])
        return load_dataset(data["dataset"], data["data_dir"], "test", **options)

    def train(self, settings: TrainSettings) -> tuple[str, dict[str, float]]:
        run_id = self.step("train", train, settings)
        return run_id, _metrics(run_id)

    def victim(self, victim: Victim, data: dict[str, Any]) -> tuple[str, dict[str, float]]:
        """Train (or reuse) a victim; returns its model URI and its run's metrics."""
        run_id, metrics = self.train(
            TrainSettings(
                **data,
                arch=victim.arch,
                arch_options=victim.arch_options,
                epochs=victim.epochs,
                batch_size=victim.batch_size,
                learning_rate=victim.learning_rate,
                model_name=f"{self.prefix}-{data['dataset']}-{victim.arch}",
            )
        )
        return f"runs:/{run_id}/model", metrics

    def attack(self, settings: AttackSettings) -> tuple[str, dict[str, float]]:
        run_id = self.step("attack", attack, settings)
        return run_id, _metrics(run_id)

    def gradcam(self, settings: GradcamSettings) -> dict[str, float]:
        return _metrics(self.step("gradcam", gradcam, settings))


def _metrics(run_id: str) -> dict[str, float]:
    return dict(mlflow.get_run(run_id).data.metrics)


def _row(figure: str, value: float, settings: str, n: float, paper: float = math.nan) -> Row:
    return {"figure": figure, "paper_value": paper, "medadv_value": value, "settings": settings, "n": int(n)}


def selection(kind: str, counts: tuple[int, ...] = ()) -> dict[str, Any]:
    """Attack settings that pick the samples as the study did: `correct` takes the first correct records of each
    class in `counts`; `balanced`, `first_last` and `all` are the attack's own selections over sum(counts) samples."""
    settings: dict[str, dict[str, Any]] = {
        "correct": {"selection": "correct", "per_class": ",".join(str(count) for count in counts)},
        "balanced": {"selection": "balanced", "num_samples": sum(counts)},
        "first_last": {"selection": "first_last", "num_samples": sum(counts)},
        "all": {"selection": "all"},
    }
    return settings[kind]


def _ecgadv(p: ECGadvProtocol, steps: _Steps) -> list[Row]:
    """Type I per distance toward every other class, then Type II per window with its universal evaluation."""
    data = steps.data(p.cinc, f"length={p.length}")
    model, _ = steps.victim(p.victim, data)
    where = f"{p.victim.arch} {p.victim.arch_options}, {p.cinc.describe(steps.data_dir)} at {p.length} samples"
    rows = []
    type1 = f"target=-1,max_iterations={p.type1_iterations},binary_search_steps={p.type1_search_steps}"
    type1 += f",initial_const={p.type1_initial_const}"
    for metric in p.metrics:
        on = AttackSettings(
            model=model,
            **data,
            attack="ecgadv_type1",
            attack_params=f"metric={metric},{type1}",
            **selection("correct", p.type1_per_class),
        )
        _, m = steps.attack(on)
        settings = f"{where}; correct records per class {p.type1_per_class}; {type1}"
        rows.append(
            _row(f"ECGadv Type I targeted success rate, {metric}", m["attack_success_rate"], settings, m["num_samples"])
        )
        rows.append(_row(f"ECGadv Type I mean d_smooth, {metric}", m["d_smooth_mean"], settings, m["num_samples"]))
    type2 = f"target=-1,max_iterations={p.type2_iterations},binary_search_steps={p.type2_search_steps}"
    type2 += f",ensemble_size={p.type2_copies}" if p.type2_copies else ""
    for window in p.windows:
        on = AttackSettings(
            model=model,
            **data,
            attack="ecgadv_type2",
            attack_params=f"window={window},{type2}",
            universal_positions=p.universal_positions,
            **selection("correct", p.type2_per_class),
        )
        _, m = steps.attack(on)
        settings = f"{where}; {type2}; {p.universal_positions} positions per source record"
        rows.append(
            _row(
                f"ECGadv Type II universal target rate, window={window}",
                m.get("universal_target_rate_mean", math.nan),
                settings,
                m["num_samples"],
            )
        )
    return rows


def _grad_attacks_params(p: GradAttacksProtocol, attack_name: str, eps: float) -> str:
    if attack_name == "pgd":  # eps_step capped at eps until the attack accepts a step above it (issue 13, item 5)
        return f"eps={eps},eps_step={p.pgd_eps_step},max_iter={p.pgd_iterations},num_random_init=0"
    if attack_name == "deepfool":  # the study passed its eps as ART's DeepFool `epsilon`, the overshoot
        return f"overshoot={eps},max_iter={p.deepfool_iterations}"
    return f"eps={eps}"


def _grad_attacks(p: GradAttacksProtocol, steps: _Steps) -> list[Row]:
    """Each attack at each budget on each backbone and modality, explained by Grad-CAM; the best DeepFool rate."""
    rows = []
    layers = dict(p.gradcam_layers)
    for need in p.datasets:
        data = steps.data(need)
        num_classes = steps.test_set(data).num_classes
        counts = (p.samples // num_classes,) * num_classes
        deepfool = []
        for victim in p.victims:
            model, _ = steps.victim(victim, data)
            for attack_name in p.attacks:
                for eps in p.eps:
                    params = _grad_attacks_params(p, attack_name, eps)
                    on = AttackSettings(
                        model=model, **data, attack=attack_name, attack_params=params, **selection("balanced", counts)
                    )
                    run_id, m = steps.attack(on)
                    cam = steps.gradcam(
                        GradcamSettings(
                            attack_run_id=run_id,
                            num_samples=p.samples,
                            layer=layers.get(victim.arch, ""),
                            explain_class=p.explain_class,
                        )
                    )
                    settings = f"{victim.arch} on {need.describe(steps.data_dir)}; {params}; balanced {counts}"
                    name = f"{need.dataset} {victim.arch} {attack_name} eps={eps}"
                    rows.append(
                        _row(f"Grad-Attacks fooling rate, {name}", m["fooling_rate"], settings, m["num_samples"])
                    )
                    rows.append(
                        _row(f"Grad-Attacks Grad-CAM DSSIM, {name}", cam["dssim_mean"], settings, m["num_samples"])
                    )
                    if attack_name == "deepfool":
                        deepfool.append((m["fooling_rate"], m["num_samples"]))
        if deepfool:
            best, n = max(deepfool)
            rows.insert(
                0,
                _row(
                    f"Grad-Attacks DeepFool fooling rate, best, {need.dataset}",
                    best,
                    f"max over {', '.join(v.arch for v in p.victims)} and eps {p.eps}",
                    n,
                    PAPER_DEEPFOOL_FOOLING_RATE.get(need.dataset, math.nan),
                ),
            )
    return rows


def _foe(p: FoeProtocol, steps: _Steps) -> list[Row]:
    """PGD crafted on the source-condition model with the target condition's data and labels, replayed on the
    target-condition model, beside a white-box PGD on the target model; both scored on the target's labels."""
    size = f"image_size={p.image_size}"
    source_model, _ = steps.victim(p.victim, steps.data(p.source, size))
    target_data = steps.data(p.target, size)
    target_model, _ = steps.victim(p.victim, target_data)
    pgd = f"eps={p.eps},eps_step={p.eps_step},max_iter={p.iterations},num_random_init=0"
    picked = selection("first_last", (p.samples // 2, p.samples - p.samples // 2))
    crafted = AttackSettings(
        model=source_model, **target_data, attack="pgd", attack_params=pgd, transfer_to=target_model, **picked
    )
    transfer_run, m = steps.attack(crafted)  # its transfer.csv holds the white-box PGD on the target beside
    with tempfile.TemporaryDirectory() as folder:
        local = mlflow.artifacts.download_artifacts(run_id=transfer_run, artifact_path=TRANSFER_TABLE, dst_path=folder)
        transfer = pd.read_csv(local).iloc[0]
    settings = (
        f"{p.victim.arch} per condition, {p.target.describe(steps.data_dir)} at {p.image_size} px; PGD {pgd};"
        f" {p.samples} samples"
    )
    n = m["num_samples"]
    return [
        _row("foe target model accuracy, clean", transfer["clean_accuracy"], settings, n),
        _row(
            "foe target model accuracy, PGD transferred from the source model",
            transfer["adversarial_accuracy"],
            settings,
            n,
        ),
        _row("foe target model accuracy, white-box PGD", transfer["white_box_accuracy"], settings, n),
        _row("foe transfer success rate", transfer["transfer_success_rate"], settings, n),
        _row("foe source model fooling rate on the target data", m["fooling_rate"], settings, n),
    ]


def _deepcustom(p: DeepCustomProtocol, steps: _Steps) -> list[Row]:
    """Per data set: the target, one generator set per loss, and a robust model per method, on every sample."""
    rows: list[Row] = []
    for need, victim, pgd in ((p.mnist, p.mnist_victim, p.mnist_attack), (p.cifar, p.cifar_victim, p.cifar_attack)):
        data = steps.data(need)
        model, target = steps.victim(victim, data)
        where = f"{victim.arch} on {need.describe(steps.data_dir)}"
        ds, n = need.dataset, len(steps.test_set(data))
        paper = PAPER_TARGET_ACCURACY.get(ds, math.nan)
        rows.append(_row(f"DeepCustom {ds} target test accuracy", target["test_accuracy"], where, n, paper))
        common: dict[str, Any] = {**data, "victim": model, "batch_size": victim.batch_size}
        generator_sets, dgn_rows = {}, []
        for loss in p.losses:
            generator = TrainSettings(
                mode="generator", **common, generator_loss=loss, epochs=p.generator_epochs, learning_rate=1e-4
            )
            generator_sets[loss], m = steps.train(generator)
            settings = f"{where}; {loss} generators, {p.generator_epochs} epochs"
            dgn_rows.append(_row(f"DeepCustom {ds} accuracy on DGN data, {loss}", m["dgn_accuracy"], settings, n))
        if ds == "mnist" and dgn_rows:
            best = min(row["medadv_value"] for row in dgn_rows)
            settings = f"{where}; min over the losses {', '.join(p.losses)}"
            rows.append(_row("DeepCustom best DGN attack robust accuracy, mnist", best, settings, n,
                             PAPER_BEST_DGN_ROBUST_ACCURACY))  # fmt: skip
        rows += dgn_rows
        for method in (*p.robust_methods, *(f"dgn_{loss}" for loss in p.losses)):
            generators = generator_sets.get(method.removeprefix("dgn_"), "")
            # FGSM takes only the budget of the study's PGD settings; the dgn methods train on generated data.
            params = "" if generators else pgd if method != "fgsm" else pgd.split(",")[0]
            robust = TrainSettings(mode="robust", method=method, **common, epochs=p.robust_epochs,
                                   attack_params=params, generators=generators)  # fmt: skip
            _, m = steps.train(robust)
            settings = f"{where}; {method}, {p.robust_epochs} epochs; {params or 'DGN data'}"
            figure = f"DeepCustom {ds} robust model accuracy under its attack, {method}"
            rows.append(_row(figure, m["robust_accuracy"], settings, n))
    return rows


RUNNERS: dict[type, Callable[[Any, _Steps], list[Row]]] = {
    ECGadvProtocol: _ecgadv,
    GradAttacksProtocol: _grad_attacks,
    FoeProtocol: _foe,
    DeepCustomProtocol: _deepcustom,
}
