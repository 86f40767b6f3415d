"""The `attack` entry point: attack a victim batch by batch, log every batch, resume a killed run.

Each finished batch is logged at once as `progress/batch_NNNNN.npz`; a run started again with
`run_id` downloads those, skips their batches and goes on, so the final artifacts equal those of
an uninterrupted run. At the end the batches are joined into the contract's one `.npz` and one
Parquet table, and the progress files are removed where the artifact store allows it.
"""

from __future__ import annotations

import sys
import tempfile
from contextlib import closing
from dataclasses import asdict, fields
from pathlib import Path

import keras
import mlflow
import numpy as np
import pandas as pd
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from tqdm import tqdm

from medadv.attacks import ATTACKS, AttackConfig, AttackError, make_attack, parse_config
from medadv.attacks.ecgadv import (
    UNIVERSAL_RECORDS,
    ECGadvTypeIIConfig,
    evaluation_distances,
    universal_control,
    universal_evaluation,
    universal_records,
)
from medadv.attacks.figures import ecg_overlay_figure, perturbation_figure, universal_rates_figure
from medadv.attacks.result import AttackResult
from medadv.attacks.runner import (
    attack_batches,
    auto_batch_size,
    check_selection,
    expand_targets,
    parse_per_class,
    parse_shard,
    predict,
    select_samples,
)
from medadv.data import load_dataset, loader_options
from medadv.data.base import Dataset
from medadv.defenses.ecg_filters import check_defense, defended, defense_evaluation
from medadv.metrics import per_sample_table, success_matrix, summarize
from medadv.metrics.ecg_plausibility import run_plausibility
from medadv.metrics.similarity import check_ssim_method
from medadv.metrics.transfer import transfer_metrics
from medadv.models import check_victim
from medadv.options import parse_params
from medadv.settings import AttackSettings
from medadv.tracking.registry import PinnedModel, load_generators, load_model, pin_model, trained_on
from medadv.tracking.runs import connect, log_dataset, log_figure, param_text, start_step_run
from medadv.tracking.writer import check_free

PROGRESS = "progress"
RESULT_FILE = "attack_result.npz"
TABLE_FILE = "samples.parquet"
HEADLINE_METRICS = ("fooling_rate", "robust_accuracy", "attack_success_rate", "linf_mean", "l2_mean")


def attack(settings: AttackSettings, tracking_uri: str | None = None, experiment: str | None = None) -> str:
    """Run `attack`; returns the run id. Inputs, model and settings are all checked before any compute."""
    connect(tracking_uri, experiment)
    if not settings.model:
        raise AttackError("give the victim with --model (models:/NAME@ALIAS, runs:/ID/model or a path)")
    if settings.attack not in ATTACKS:
        raise AttackError(f"unknown attack {settings.attack!r}; choose one of {', '.join(ATTACKS)}")
    config = parse_config(settings.attack, parse_params(settings.attack_params))
    if settings.universal_records not in UNIVERSAL_RECORDS:
        raise AttackError(
            f"universal_records {settings.universal_records!r} is not one of {', '.join(UNIVERSAL_RECORDS)}"
        )
    shard = parse_shard(settings.shard)
    data = load_dataset(
        settings.dataset, settings.data_dir, settings.split, **loader_options(settings.dataset, settings.data_options)
    )
    check_ssim_method(settings.ssim, data.input_shape)
    per_class = parse_per_class(settings.per_class, data.num_classes)
    if per_class is not None and settings.num_samples:
        raise AttackError("give either num_samples or per_class, not both")
    check_selection(settings.selection, settings.num_samples, per_class)
    check_defense(settings.defense, data)
    resumed = _resumable_run(settings)
    pinned, pinned_targets = _pinned_models(settings, resumed)
    bare_model = load_model(pinned.uri)
    check_victim(bare_model, data.input_shape)
    model = _defended(bare_model, settings.defense, data)
    if not settings.transfer_any_task:
        check_transfer_tasks(settings.transfer_to.split(), settings.dataset)
    transfer_targets = {uri: _defended(load_model(uri), settings.defense, data) for uri in pinned_targets}
    for target_model in transfer_targets.values():
        check_victim(target_model, data.input_shape)
    batch_size = settings.batch_size or auto_batch_size(data.input_shape, len(data))
    engine = settings.engine or None
    options = {"generators": _generators(settings)} if settings.attack == "dgn" else {}
    attacker = make_attack(
        settings.attack, model, config, data.clip_range, batch_size, engine, input_shape=data.input_shape, **options
    )

    samples = select_samples(
        model,
        data,
        num_samples=settings.num_samples or None,
        selection=settings.selection,
        shard=shard,
        seed=settings.seed,
        per_class=per_class,
    )
    samples, y_target = expand_targets(samples, config.target, data.num_classes)
    if len(samples) == 0:
        raise AttackError("no samples left to attack (does selection=correct remove them all?)")

    # The attack's own settings as plain params (eps, max_iter, ...), so runs compare by them in the UI;
    # one that shares a name with an entry-point parameter (ECGadv Type II's seed) gets an "attack_" prefix.
    config_params = {
        (f"attack_{f.name}" if f.name in asdict(settings) else f.name): getattr(config, f.name) for f in fields(config)
    }
    lineage = {"model_version_uri": pinned.uri, "transfer_to_versions": " ".join(pinned_targets)}
    eps_value = getattr(config, "eps", None)  # attacks without a budget (DeepFool, C&W L2) have none
    eps = f" eps={eps_value:g}" if isinstance(eps_value, float) else ""
    shard_name = f" shard {settings.shard}" if shard[1] > 1 else ""
    name = f"{settings.attack}{eps} · {pinned.short}{shard_name}"
    with start_step_run("attack", asdict(settings) | config_params | lineage, run_id=resumed, name=name) as run:
        mlflow.set_tags(
            pinned.tags()
            | {
                "medadv.engine": engine or ATTACKS[settings.attack].default_engine,
                "medadv.batch_size": str(batch_size),
                "medadv.attack": settings.attack,
                "medadv.split": settings.split,
                "medadv.shard": settings.shard,
                "medadv.targeted": str(config.targeted).lower(),
                # The shards of one attack nest under their parent run in the MLflow UI.
                **({"mlflow.parentRunId": settings.parent_run_id} if settings.parent_run_id else {}),
            }
        )
        log_dataset(samples, context="attack")
        with tempfile.TemporaryDirectory(prefix="medadv-attack-") as folder:
            done = _download_progress(run.info.run_id, Path(folder))
            if done:
                print(f"resuming: {len(done)} finished batches found, skipping them")
            # closing(): a failure mid-run closes the progress bar before the error is reported, not after.
            with closing(
                attack_batches(
                    attacker, model, samples, y_target, batch_size=batch_size, skip=set(done), seed=settings.seed
                )
            ) as batches:
                for index, batch in batches:
                    path = batch.save(Path(folder) / f"batch_{index:05d}.npz")
                    mlflow.log_artifact(str(path), PROGRESS)
                    done[index] = batch
            result = AttackResult.concatenate([done[index] for index in sorted(done)])
            _log_result(result, samples, Path(folder), settings.ssim)
            if settings.defense:  # the same attack crafted on the bare model, replayed through the defense
                bare = make_attack(
                    settings.attack, bare_model, config, data.clip_range, batch_size, engine,
                    input_shape=data.input_shape, **options,
                )  # fmt: skip
                evaluation = defense_evaluation(
                    bare, bare_model, model, samples, y_target, result, batch_size=batch_size, seed=settings.seed
                )
                mlflow.log_metrics(evaluation, synchronous=True)
            if isinstance(config, ECGadvTypeIIConfig):
                table = universal_table(result, model, data, config, settings)
                _log_universal(table, data.class_names, Path(folder))
            if transfer_targets:
                # foe's white-box baseline: the same attack on each target (DGN's generators belong to the victim)
                white_box = {
                    uri: _white_box(settings.attack, target, config, data, batch_size, engine, samples, y_target,
                                    settings.seed)
                    for uri, target in transfer_targets.items()
                    if settings.attack != "dgn"
                }  # fmt: skip
                _log_transfer(result, transfer_targets, white_box, Path(folder))
        _delete_progress(run.info.artifact_uri)
        return str(run.info.run_id)


def _defended(model: keras.Model, defense: str, data: Dataset) -> keras.Model:
    """`model` behind `defense` (checked by `check_defense`), or itself when there is none."""
    return defended(model, defense, data.fs_hz) if defense and data.fs_hz else model


def _generators(settings: AttackSettings) -> dict[int, keras.Model]:
    if not settings.generators:
        raise AttackError("dgn needs --generators, the run id of a generator set (train with mode=generator)")
    return load_generators(settings.generators)


def _pinned_models(settings: AttackSettings, resumed: str | None) -> tuple[PinnedModel, list[str]]:
    """The victim and transfer targets at fixed versions: pinned now, or, on a resume, as the first attempt did."""
    if resumed is None:
        return pin_model(settings.model), [pin_model(uri).uri for uri in settings.transfer_to.split()]
    params = mlflow.get_run(resumed).data.params
    model = pin_model(params.get("model_version_uri", settings.model))
    return model, params.get("transfer_to_versions", settings.transfer_to).split()


def _resumable_run(settings: AttackSettings) -> str | None:
    """The run to resume, checked to be an unfinished attack run with the same parameters."""
    if not settings.run_id:
        return None
    try:
        run = mlflow.get_run(settings.run_id)
    except mlflow.exceptions.MlflowException:
        raise AttackError(f"run {settings.run_id} not found in {mlflow.get_tracking_uri()}") from None
    if run.data.tags.get("medadv.step") != "attack":
        raise AttackError(f"run {settings.run_id} is not an attack run")
    if run.info.status == "FINISHED":
        raise AttackError(f"run {settings.run_id} already finished; nothing to resume")
    check_free(settings.run_id)
    logged = {key: param_text(value) for key, value in asdict(settings).items()}
    changed = [
        key for key, value in logged.items()
        if key not in ("run_id", "batch_size", "engine") and run.data.params.get(key, value) != value
    ]  # fmt: skip
    if changed:
        raise AttackError(f"run {settings.run_id} was started with other values of {', '.join(changed)}")
    return settings.run_id


def _download_progress(run_id: str, folder: Path) -> dict[int, AttackResult]:
    """The batches a previous attempt of this run already logged, by batch index."""
    if not mlflow.MlflowClient().list_artifacts(run_id, PROGRESS):
        return {}
    local = Path(
        mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=PROGRESS, dst_path=str(folder / "old"))
    )
    return {int(path.stem.split("_")[1]): AttackResult.load(path) for path in sorted(local.glob("batch_*.npz"))}


def _log_result(result: AttackResult, samples: Dataset, folder: Path, ssim: str) -> None:
    """The contract's artifacts, the summary metrics, the success matrix and the figures."""
    clip_range, class_names = samples.clip_range, samples.class_names
    result.save(folder / RESULT_FILE)
    mlflow.log_artifact(str(folder / RESULT_FILE))
    table = per_sample_table(result, clip_range, ssim)
    metrics = summarize(result, clip_range, class_names, ssim)
    if result.x.ndim == 3:  # ECG: ECGadv's evaluation distances d_L2, d_smooth, d_smooth_l2 per record
        for name, values in evaluation_distances(result.x, result.x_adv).items():
            table[name] = values
            metrics[f"{name}_mean"] = float(np.mean(values))
        plausibility, plausibility_metrics = run_plausibility(result, samples)  # ECG: would a cardiologist notice?
        table, metrics = pd.concat([table, plausibility], axis=1), metrics | plausibility_metrics
    table.to_parquet(folder / TABLE_FILE, index=False)
    mlflow.log_artifact(str(folder / TABLE_FILE))
    headline = {name: metrics[name] for name in HEADLINE_METRICS if name in metrics}
    mlflow.log_metrics(headline, synchronous=True)  # first, so the runs list and compare view show them first
    mlflow.log_metrics({name: value for name, value in metrics.items() if name not in headline}, synchronous=True)
    if (result.y_target >= 0).any():
        matrix = success_matrix(result, class_names)
        matrix.to_csv(folder / "success_matrix.csv")
        mlflow.log_artifact(str(folder / "success_matrix.csv"))
    log_figure(perturbation_figure(result, class_names), "figures/perturbations.png")
    if result.x.ndim == 3:
        log_figure(ecg_overlay_figure(result, class_names), "figures/ecg_overlays.png")


def check_transfer_tasks(uris: list[str], dataset: str) -> None:
    """Refuse transfer targets registered for another data set: they would be scored on labels of a task
    they were not trained for (foe crafts on the source model with the target task's data and labels)."""
    for uri in uris:
        other = trained_on(uri) - {dataset}
        if other:
            raise AttackError(
                f"transfer_to {uri} was trained on {', '.join(sorted(other))}, not {dataset}: attack its task's data"
                " (foe: the source model crafts on the target task's data), or set transfer_any_task=true"
            )


def _white_box(
    name: str,
    target: keras.Model,
    config: AttackConfig,
    data: Dataset,
    batch_size: int,
    engine: str | None,
    samples: Dataset,
    y_target: np.ndarray,
    seed: int,
) -> np.ndarray:
    """The adversarial inputs of the same attack crafted on `target` itself, batch by batch as the victim's."""
    attacker = make_attack(name, target, config, data.clip_range, batch_size, engine, input_shape=data.input_shape)
    batches = attack_batches(attacker, target, samples, y_target, batch_size=batch_size, seed=seed)
    return AttackResult.concatenate([batch for _, batch in batches]).x_adv


def _log_transfer(
    result: AttackResult, targets: dict[str, keras.Model], white_box: dict[str, np.ndarray], folder: Path
) -> None:
    """Replay the adversarial inputs on each target model beside its white-box adversarials (`white_box`):
    `transfer.csv`, one row per target."""
    rows = {
        uri: transfer_metrics(
            result,
            predict(target, result.x),
            predict(target, result.x_adv),
            predict(target, white_box[uri]) if uri in white_box else None,
        )
        for uri, target in targets.items()
    }
    table = pd.DataFrame.from_dict(rows, orient="index").rename_axis("target_model")
    table.to_csv(folder / "transfer.csv")
    mlflow.log_artifact(str(folder / "transfer.csv"))
    mlflow.log_metric("transfer_success_rate_mean", float(table["transfer_success_rate"].mean()))


# --- ECGadv Type II: universal evaluation of the learned windows --------------------------------


def universal_table(
    result: AttackResult, model: keras.Model, data: Dataset, config: ECGadvTypeIIConfig, settings: AttackSettings
) -> pd.DataFrame:
    """ECGadv's universal evaluation per source->target pair: every window the attack kept (the first
    `config.window` samples of a non-zero delta: its own success over random shifts, not `y_adv`, which
    sees the window at offset 0 only) is added at `universal_positions` random offsets to every long enough
    record of its source class in the split (`universal_records=correct`: only those the victim classifies
    correctly, as the study); its predictions are pooled per pair. The control adds, in delta's place, the
    first `window` samples of the split's first such record of the target class."""
    lengths = data.lengths if data.lengths is not None else np.full(len(data), data.input_shape[0])
    y_pred = predict(model, data.x).argmax(axis=1) if settings.universal_records == "correct" else None
    min_length = settings.universal_min_length or data.input_shape[0]
    fs_hz, positions, seed = config.fs_hz, settings.universal_positions, settings.seed
    rows = {}
    found = np.any(result.delta != 0, axis=tuple(range(1, result.delta.ndim)))
    pairs = sorted({(int(s), int(t)) for s, t in zip(result.y_true, result.y_target, strict=True)})
    for source, target in tqdm(pairs, desc="universal evaluation", unit="pair", file=sys.stderr):
        records = universal_records(data.x, data.y, lengths, source, min_length, y_pred)
        deltas = result.delta[found & (result.y_true == source) & (result.y_target == target), : config.window]
        if len(records) == 0 or len(deltas) == 0:
            continue
        counts = np.sum(
            [
                universal_evaluation(model, delta, records, fs_hz=fs_hz, positions=positions, seed=seed).counts
                for delta in deltas
            ],
            axis=0,
        )
        shares = counts / counts.sum()
        controls = universal_records(data.x, data.y, lengths, target, min_length, y_pred)
        control = (
            universal_control(
                model, controls[0, : config.window], records, fs_hz=fs_hz, positions=positions, seed=seed
            ).shares[target]
            if len(controls)
            else np.nan
        )
        rows[f"{data.class_names[source]}->{data.class_names[target]}"] = {
            "source": source,
            "target": target,
            "deltas": len(deltas),
            "records": len(records),
            **{f"share_{name}": share for name, share in zip(data.class_names, shares, strict=True)},
            "target_share": shares[target],
            "control_target_share": control,
        }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("pair")


def _log_universal(table: pd.DataFrame, class_names: tuple[str, ...], folder: Path) -> None:
    """`universal.csv`, its metrics (a pair counts as a majority pair when over half its predictions are the
    target) and the pairs x classes heatmap `figures/universal_rates.png`."""
    table.to_csv(folder / "universal.csv")
    mlflow.log_artifact(str(folder / "universal.csv"))
    if table.empty:
        print("note: no Type II window found had source records to evaluate; universal.csv is empty")
        return
    mlflow.log_metrics(
        {
            "universal_target_rate_mean": float(table["target_share"].mean()),
            "universal_majority_pairs": int((table["target_share"] > 0.5).sum()),
        },
        synchronous=True,
    )
    log_figure(universal_rates_figure(table, class_names), "figures/universal_rates.png")


def _delete_progress(artifact_uri: str) -> None:
    """Drop the per-batch files once the joined result is logged; keep them where the store cannot delete."""
    try:
        get_artifact_repository(artifact_uri).delete_artifacts(PROGRESS)
    except (NotImplementedError, mlflow.exceptions.MlflowException, OSError) as error:
        print(f"note: per-batch progress files kept under {PROGRESS}/ ({type(error).__name__})")
