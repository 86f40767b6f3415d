"""The `gradcam` entry point: explain an attack run's clean and adversarial inputs and measure the change.

Given an attack run id, everything else (the victim, the samples, the adversarial inputs) is read
from that run, so nothing is passed twice. Given a model and a data set instead, it explains clean
predictions only.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException

from medadv.attacks.result import AttackResult
from medadv.attacks.runner import predict
from medadv.contract import (
    ATTACK_RESULT,
    ATTACK_RUN_TAG,
    ATTACK_TAG,
    HEATMAP_TABLE,
    HEATMAPS,
    MODEL_ALIAS_TAG,
    MODEL_VERSION_PARAM,
    OVERLAY_FIGURE,
    STEP_TAG,
)
from medadv.data import load_dataset
from medadv.explain import Explainer, ExplainError, overlay_figure, target_classes
from medadv.metrics.heatmap import heatmap_summary, heatmap_table
from medadv.metrics.similarity import check_ssim_method
from medadv.settings import GradcamSettings
from medadv.tracking.lineage import log_model_inputs
from medadv.tracking.registry import load_model, pin_model
from medadv.tracking.runs import as_given, connect, log_figure, show_at_end, start_step_run


def gradcam(settings: GradcamSettings, tracking_uri: str | None = None, experiment: str | None = None) -> str:
    """Run `gradcam`; returns the run id. Run ids, layers and classes are checked before any map is computed."""
    connect(tracking_uri, experiment)
    check_ssim_method(settings.ssim)
    return _explain_attack(settings) if settings.attack_run_id else _explain_clean(settings)


def _explain_attack(settings: GradcamSettings) -> str:
    """Maps of an attack run's clean and adversarial inputs, from the model version that was attacked."""
    attack_run = _attack_run(settings.attack_run_id)
    params = attack_run.data.params
    pinned = pin_model(params.get(MODEL_VERSION_PARAM, params["model"]))  # the version attacked, not the alias
    explainer = Explainer(
        load_model(pinned.uri), method=settings.method, layer=settings.layer or None, engine=settings.engine
    )
    with tempfile.TemporaryDirectory(prefix="medadv-gradcam-") as folder:
        local = mlflow.artifacts.download_artifacts(
            run_id=attack_run.info.run_id, artifact_path=ATTACK_RESULT, dst_path=folder
        )
        result = AttackResult.load(Path(local))
    check_ssim_method(settings.ssim, result.x.shape[1:])
    classes, adversarial_classes = target_classes(
        settings.explain_class, y_true=result.y_true, y_clean=result.y_clean, y_adv=result.y_adv
    )
    inherited: dict[str, str] = {key: params[key] for key in ("model", "dataset", "attack", "eps") if key in params}
    inherited |= {MODEL_VERSION_PARAM: pinned.uri, "layer": explainer.layer}
    alias = attack_run.data.tags.get(MODEL_ALIAS_TAG, "")
    tags = pinned.tags() | ({MODEL_ALIAS_TAG: alias} if alias else {}) | {
        "mlflow.parentRunId": attack_run.info.run_id, ATTACK_RUN_TAG: attack_run.info.run_id,
        ATTACK_TAG: attack_run.data.tags.get(ATTACK_TAG, ""),
    }  # fmt: skip
    name = f"{settings.method} · {attack_run.info.run_name}"
    with start_step_run("gradcam", asdict(settings) | inherited, name=name, tags=tags) as run:
        log_model_inputs([pinned.uri])
        clean = explainer(result.x, classes, batch_size=settings.batch_size)
        adversarial = explainer(result.x_adv, adversarial_classes, batch_size=settings.batch_size)
        table = heatmap_table(
            clean.maps, adversarial.maps, on=settings.on, x_clean=result.x, x_adv=result.x_adv,
            iou_top_percent=(settings.iou_top_percent,), ids=result.ids, ssim=settings.ssim,
        )  # fmt: skip
        metrics = heatmap_summary(table)
        # The attack's own image degradation, beside the heatmaps' (images only: ECG runs have none).
        metrics |= {k: v for k, v in attack_run.data.metrics.items() if k in ("psnr_mean", "ssim_mean")}
        mlflow.log_metrics(metrics | {"num_samples": float(len(result))})
        show_at_end({name: metrics[name] for name in ("dssim_mean", "dssim_max")} | {"num_samples": len(result)})
        _log_maps(result.ids, classes, clean.maps, adversarial.maps, table, adversarial_classes)
        titles = [
            f"{i}: explains class {c}" if c == a else f"{i}: explains class {c} / {a}"
            for i, c, a in zip(result.ids, classes, adversarial_classes, strict=True)
        ]
        figure = overlay_figure(result.x, clean.maps, result.x_adv, adversarial.maps, titles=titles)
        log_figure(figure, OVERLAY_FIGURE)
        return str(run.info.run_id)


def _explain_clean(settings: GradcamSettings) -> str:
    """Maps of a model's clean predictions on a data set (no attack run)."""
    if not settings.model:
        raise ExplainError("give --attack_run_id (an attack run), or --model and --dataset for clean-only maps")
    if settings.explain_class == "adversarial":
        raise ExplainError("explain_class 'adversarial' needs an attack run (--attack_run_id)")
    pinned = pin_model(settings.model)
    model = load_model(pinned.uri)
    explainer = Explainer(model, method=settings.method, layer=settings.layer or None, engine=settings.engine)
    data = load_dataset(settings.dataset, settings.data_dir, settings.split, **settings.data_kwargs)
    data = data.subset(slice(0, settings.num_samples or None))
    lineage = {"layer": explainer.layer, MODEL_VERSION_PARAM: pinned.uri}
    name = f"{settings.method} clean · {pinned.short}"
    with start_step_run("gradcam", asdict(settings) | lineage, name=name, tags=pinned.tags()) as run:
        log_model_inputs([pinned.uri])
        y_clean = predict(model, data.x).argmax(axis=1)
        classes, _ = target_classes(settings.explain_class, y_true=data.y, y_clean=y_clean)
        clean = explainer(data.x, classes, batch_size=settings.batch_size)
        mlflow.log_metric("num_samples", float(len(data)))
        show_at_end({"num_samples": len(data), "layer": explainer.layer})
        _log_maps(data.ids, classes, clean.maps)
        log_figure(overlay_figure(data.x, clean.maps, titles=list(data.ids)), OVERLAY_FIGURE)
        return str(run.info.run_id)


def _attack_run(run_id: str) -> mlflow.entities.Run:
    try:
        run = mlflow.get_run(run_id)
    except MlflowException:
        raise ExplainError(f"attack run {run_id} not found in {mlflow.get_tracking_uri()}") from None
    if run.data.tags.get(STEP_TAG) != "attack":
        raise ExplainError(f"run {run_id} is a {run.data.tags.get(STEP_TAG, 'non-medadv')} run, not an attack run")
    if run.info.status != "FINISHED":
        raise ExplainError(f"attack run {run_id} has not finished ({run.info.status}); resume it first")
    return as_given(run)  # its params as the attack was given them


def _log_maps(
    ids: np.ndarray,
    classes: np.ndarray,
    clean: np.ndarray,
    adversarial: np.ndarray | None = None,
    table: pd.DataFrame | None = None,
    adversarial_classes: np.ndarray | None = None,
) -> None:
    """One `.npz` of all maps and their classes and, with adversarial maps, one per-sample Parquet table."""
    with tempfile.TemporaryDirectory(prefix="medadv-gradcam-") as folder:
        arrays: dict[str, Any] = {"ids": ids.astype(str), "class_index": classes, "clean_maps": clean}
        if adversarial is not None:
            arrays["adversarial_maps"] = adversarial
            arrays["adversarial_class_index"] = adversarial_classes
        np.savez_compressed(Path(folder) / HEATMAPS, **arrays)
        mlflow.log_artifact(str(Path(folder) / HEATMAPS))
        if table is not None:
            table.to_parquet(Path(folder) / HEATMAP_TABLE, index=False)
            mlflow.log_artifact(str(Path(folder) / HEATMAP_TABLE))
