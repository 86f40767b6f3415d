"""The `attack` entry point: attack a victim batch by batch, log every batch, resume a killed run.

Each finished batch is logged at once as `progress/batch_NNNNN.npz` (uploaded by a background thread while the
next batch is attacked: medadv.tracking.background); a run started again with `run_id` downloads those, skips
their batches and goes on, so the final artifacts equal those of an uninterrupted run. At the end the batches
are joined into the contract's one `.npz` and one Parquet table, and the progress files are removed where the
artifact store allows it.
"""

from __future__ import annotations

import tempfile
from contextlib import closing
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import keras
import mlflow
import numpy as np
import pandas as pd
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

from medadv.attacks import (
    ATTACKS,
    Attack,
    AttackConfig,
    AttackError,
    AttackRun,
    AttackSpec,
    Extras,
    Victim,
    make_attack,
    parse_config,
)
from medadv.attacks.ecgadv import evaluation_distances
from medadv.attacks.figures import ecg_overlay_figure, perturbation_figure
from medadv.attacks.result import AttackResult, TargetProbabilities, save_probabilities
from medadv.attacks.runner import (
    attack_batches,
    auto_batch_size,
    check_selection,
    expand_targets,
    predict,
    select_samples,
)
from medadv.contract import (
    ATTACK_RESULT,
    ATTACK_TAG,
    BATCH_SIZE_TAG,
    ECG_OVERLAY_FIGURE,
    ENGINE_TAG,
    MODEL_VERSION_PARAM,
    PERTURBATION_FIGURE,
    PROGRESS,
    SAMPLES_TABLE,
    SHARD_TAG,
    SPLIT_TAG,
    STEP_TAG,
    SUCCESS_MATRIX,
    TARGETED_TAG,
    TRANSFER_PROBABILITIES,
    TRANSFER_TABLE,
    TRANSFER_VERSIONS_PARAM,
)
from medadv.data import load_dataset
from medadv.data.base import Dataset
from medadv.defenses.ecg_filters import check_defense, defended, defense_evaluation
from medadv.metrics import per_sample_table, success_matrix, summarize, summary_table
from medadv.metrics.ecg_plausibility import run_plausibility
from medadv.metrics.similarity import check_ssim_method
from medadv.metrics.transfer import targets_table
from medadv.settings import AttackSettings
from medadv.tracking.background import BackgroundLog, background_log
from medadv.tracking.lineage import log_model_inputs
from medadv.tracking.registry import PinnedModel, load_generators, load_model, pin_model, trained_on
from medadv.tracking.runs import as_given, connect, log_dataset, same_param, show_at_end, start_step_run
from medadv.tracking.writer import check_free

HEADLINE_METRICS = ("fooling_rate", "robust_accuracy", "attack_success_rate", "linf_mean", "l2_mean")


def attack(settings: AttackSettings, tracking_uri: str | None = None, experiment: str | None = None) -> str:
    """Run `attack`; returns the run id. Inputs, model and settings are all checked before any compute."""
    connect(tracking_uri, experiment)
    inputs = _checked_inputs(settings)
    models = _loaded_models(settings, inputs.data)
    crafting = _Crafting(settings, inputs.config, inputs.data, _options(settings, inputs.spec))
    attacker = crafting.on(models.victim)
    samples, y_target = _attacked_samples(settings, inputs, models.victim)
    name = _run_name(settings, inputs, models.pinned)
    tags = _tags(settings, inputs, models.pinned, crafting)
    with start_step_run("attack", _params(settings, inputs.config, models), models.resumed, name, tags) as run:
        log_model_inputs([models.pinned.uri, *models.target_uris])
        log_dataset(samples, context="attack")
        with (
            tempfile.TemporaryDirectory(prefix="medadv-attack-") as temporary,
            background_log(run.info.run_id, Path(temporary)) as log,  # computing goes on while it logs
        ):
            folder = Path(temporary)
            result = _attacked_batches(crafting, attacker, models.victim, samples, y_target, folder, log)
            _log_result(result, samples, folder, settings.ssim, log)
            if settings.defense:  # the same attack crafted on the bare model, replayed through the defense
                log.metrics(_defense_metrics(crafting, models, samples, y_target, result))
            run_record = AttackRun(result, models.victim.model, inputs.data, inputs.config, settings)
            _log_extras(inputs.spec.extras(run_record), folder, log)
            if models.targets:  # foe's white-box baseline: the same attack crafted on each target, where it fits
                white_box = (
                    _white_box(crafting, models.targets, samples, y_target) if inputs.spec.white_box_transfer else {}
                )
                _log_transfer(result, models.targets, white_box, folder, log)
        _delete_progress(run.info.artifact_uri)
        return str(run.info.run_id)


@dataclass(frozen=True)
class _Inputs:
    """The checked inputs of one attack run: the family, its settings, the data and what to take of it."""

    spec: AttackSpec
    config: AttackConfig
    data: Dataset


def _checked_inputs(settings: AttackSettings) -> _Inputs:
    """Everything the settings name that is not a model, checked: the attack and its settings, the data, the
    selection and the defense (the names and the strings were checked when the settings were made)."""
    if not settings.model:
        raise AttackError("give the victim with --model (models:/NAME@ALIAS, runs:/ID/model or a path)")
    spec = ATTACKS[settings.attack]
    config = parse_config(settings.attack, settings.attack_params_by_key)
    spec.check(settings)
    data = load_dataset(settings.dataset, settings.data_dir, settings.split, **settings.data_kwargs)
    check_ssim_method(settings.ssim, data.input_shape)
    counts = settings.per_class_counts
    if counts is not None and len(counts) != data.num_classes:
        raise AttackError(
            f"per_class needs {data.num_classes} comma-separated counts >= 0 (one per class),"
            f" got {settings.per_class!r}"
        )
    check_selection(settings.selection, settings.num_samples, counts)
    check_defense(settings.defense, data)
    return _Inputs(spec, config, data)


@dataclass(frozen=True)
class _Models:
    """The victim and the transfer targets at pinned versions, loaded, put behind the defense and checked, each
    once: every later use takes them as checked."""

    resumed: str | None  # the run to resume, if any
    pinned: PinnedModel
    target_uris: list[str]  # the transfer targets' pinned versions
    bare: Victim  # the victim without the defense
    victim: Victim
    targets: dict[str, Victim]


def _loaded_models(settings: AttackSettings, data: Dataset) -> _Models:
    """Pin (or, on a resume, re-pin as the first attempt did), load and check the victim and transfer targets."""
    resumed = _resumable_run(settings)
    pinned, target_uris = _pinned_models(settings, resumed)
    bare_model = load_model(pinned.uri)
    bare = Victim.checked(bare_model, data.input_shape)
    victim = (
        Victim.checked(_defended(bare_model, settings.defense, data), data.input_shape) if settings.defense else bare
    )
    if not settings.transfer_any_task:
        check_transfer_tasks(settings.transfer_to.split(), settings.dataset)
    targets = {
        uri: Victim.checked(_defended(load_model(uri), settings.defense, data), data.input_shape) for uri in target_uris
    }
    return _Models(resumed, pinned, target_uris, bare, victim, targets)


class _Crafting:
    """The run's attack, built with the same settings on any model: the victim, the bare victim behind a
    defense, a transfer target."""

    def __init__(self, settings: AttackSettings, config: AttackConfig, data: Dataset, options: dict[str, Any]) -> None:
        self.name, self.config, self.data, self.options = settings.attack, config, data, options
        self.batch_size = settings.batch_size or auto_batch_size(data.input_shape, len(data))
        self.engine = settings.engine or None
        self.seed = settings.seed

    def on(self, model: Victim) -> Attack:
        return make_attack(
            self.name, model, self.config, self.data.clip_range, self.batch_size, self.engine,
            input_shape=self.data.input_shape, **self.options,
        )  # fmt: skip


def _options(settings: AttackSettings, spec: AttackSpec) -> dict[str, Any]:
    """What the family `needs` at construction, fetched from the tracking server (DGN: its generator set)."""
    providers = {"generators": _generators}
    return {need: providers[need](settings) for need in spec.needs}


def _attacked_samples(settings: AttackSettings, inputs: _Inputs, victim: Victim) -> tuple[Dataset, np.ndarray]:
    """The samples this run (shard) attacks and one target class per sample (-1: untargeted)."""
    samples = select_samples(
        victim,
        inputs.data,
        num_samples=settings.num_samples or None,
        selection=settings.selection,
        shard=settings.typed_shard,
        seed=settings.seed,
        per_class=settings.per_class_counts,
    )
    samples, y_target = expand_targets(samples, inputs.config.target, inputs.data.num_classes)
    if len(samples) == 0:
        raise AttackError("no samples left to attack (does selection=correct remove them all?)")
    return samples, y_target


def _run_name(settings: AttackSettings, inputs: _Inputs, pinned: PinnedModel) -> str:
    """`pgd eps=0.05 · pneumoniamnist-small_cnn v1`: the family's label, the victim and the shard, if any."""
    shard = f" shard {settings.shard}" if settings.typed_shard.n > 1 else ""
    return f"{inputs.spec.describe(inputs.config)} · {pinned.short}{shard}"


def _params(settings: AttackSettings, config: AttackConfig, models: _Models) -> dict[str, Any]:
    """The entry point's settings, the attack's own settings as plain params (eps, max_iter, ...) so runs compare
    by them in the UI (one that shares a name with an entry-point parameter, ECGadv Type II's seed, gets an
    "attack_" prefix), and the pinned versions."""
    config_params = {
        (f"attack_{f.name}" if f.name in asdict(settings) else f.name): getattr(config, f.name) for f in fields(config)
    }
    lineage = {MODEL_VERSION_PARAM: models.pinned.uri, TRANSFER_VERSIONS_PARAM: " ".join(models.target_uris)}
    used = {"engine": _engine_used(settings)}  # the param says the engine that ran, not the (maybe empty) flag
    return asdict(settings) | used | config_params | lineage


def _tags(settings: AttackSettings, inputs: _Inputs, pinned: PinnedModel, crafting: _Crafting) -> dict[str, str]:
    return pinned.tags() | {
        ENGINE_TAG: _engine_used(settings),
        BATCH_SIZE_TAG: str(crafting.batch_size),
        ATTACK_TAG: settings.attack,
        SPLIT_TAG: settings.split,
        SHARD_TAG: settings.shard,
        TARGETED_TAG: str(inputs.config.targeted).lower(),
        # The shards of one attack nest under their parent run in the MLflow UI.
        **({"mlflow.parentRunId": settings.parent_run_id} if settings.parent_run_id else {}),
    }


def _attacked_batches(
    crafting: _Crafting,
    attacker: Attack,
    victim: Victim,
    samples: Dataset,
    y_target: np.ndarray,
    folder: Path,
    log: BackgroundLog,
) -> AttackResult:
    """Attack batch by batch, each handed to `log` at once for `progress/` (written as is: it is removed at the
    end); a resumed run skips the batches logged."""
    done = _download_progress(log.run_id, folder)
    if done:
        print(f"resuming: {len(done)} finished batches found, skipping them")
    # closing(): a failure mid-run closes the progress bar before the error is reported, not after.
    batches = attack_batches(
        attacker, victim, samples, y_target, batch_size=crafting.batch_size, skip=set(done), seed=crafting.seed
    )
    with closing(batches):
        for index, batch in batches:
            log.artifact(batch.save(folder / f"batch_{index:05d}.npz", compress=False), PROGRESS)
            done[index] = batch
    return AttackResult.concatenate([done[index] for index in sorted(done)])


def _defended(model: keras.Model, defense: str, data: Dataset) -> keras.Model:
    """`model` behind `defense` (checked by `check_defense`), or itself when there is none."""
    return defended(model, defense, data.fs_hz) if defense and data.fs_hz else model


def _generators(settings: AttackSettings) -> dict[int, keras.Model]:
    """The generator set `--generators` names (a `train` run with mode=generator)."""
    if not settings.generators:
        raise AttackError(
            f"{settings.attack} needs --generators, the run id of a generator set (train with mode=generator)"
        )
    return load_generators(settings.generators)


def _pinned_models(settings: AttackSettings, resumed: str | None) -> tuple[PinnedModel, list[str]]:
    """The victim and transfer targets at fixed versions: pinned now, or, on a resume, as the first attempt did."""
    if resumed is None:
        return pin_model(settings.model), [pin_model(uri).uri for uri in settings.transfer_to.split()]
    params = as_given(mlflow.get_run(resumed)).data.params
    model = pin_model(params.get(MODEL_VERSION_PARAM, settings.model))
    return model, params.get(TRANSFER_VERSIONS_PARAM, settings.transfer_to).split()


def _resumable_run(settings: AttackSettings) -> str | None:
    """The run to resume, checked to be an unfinished attack run with the same parameters."""
    if not settings.run_id:
        return None
    try:
        run = mlflow.get_run(settings.run_id)
    except mlflow.exceptions.MlflowException:
        raise AttackError(f"run {settings.run_id} not found in {mlflow.get_tracking_uri()}") from None
    if run.data.tags.get(STEP_TAG) != "attack":
        raise AttackError(f"run {settings.run_id} is not an attack run")
    if run.info.status == "FINISHED":
        raise AttackError(f"run {settings.run_id} already finished; nothing to resume")
    check_free(settings.run_id)
    given = asdict(settings) | {"engine": _engine_used(settings)}
    logged = run.data.params
    changed = [
        key for key, value in given.items()
        if key not in ("run_id", "batch_size") and key in logged and not same_param(logged[key], value)
    ]  # fmt: skip
    if changed:
        raise AttackError(f"run {settings.run_id} was started with other values of {', '.join(changed)}")
    return settings.run_id


def _engine_used(settings: AttackSettings) -> str:
    return settings.engine or ATTACKS[settings.attack].default_engine


def _download_progress(run_id: str, folder: Path) -> dict[int, AttackResult]:
    """The batches a previous attempt of this run already logged, by batch index."""
    if not mlflow.MlflowClient().list_artifacts(run_id, PROGRESS):
        return {}
    local = Path(
        mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=PROGRESS, dst_path=str(folder / "old"))
    )
    return {int(path.stem.split("_")[1]): AttackResult.load(path) for path in sorted(local.glob("batch_*.npz"))}


def _log_result(result: AttackResult, samples: Dataset, folder: Path, ssim: str, log: BackgroundLog) -> None:
    """The contract's artifacts, the summary metrics, the success matrix and the figures."""
    clip_range, class_names = samples.clip_range, samples.class_names
    log.artifact(result.save(folder / ATTACK_RESULT))
    table = per_sample_table(result, clip_range, ssim)
    metrics = summarize(result, clip_range, class_names, ssim)
    if samples.fs_hz is not None:  # ECG records: ECGadv's evaluation distances d_L2, d_smooth, d_smooth_l2
        for name, values in evaluation_distances(result.x, result.x_adv).items():
            table[name] = values
            metrics[f"{name}_mean"] = float(np.mean(values))
        plausibility, plausibility_metrics = run_plausibility(result, samples)  # ECG: would a cardiologist notice?
        table, metrics = pd.concat([table, plausibility], axis=1), metrics | plausibility_metrics
    table.to_parquet(folder / SAMPLES_TABLE, index=False)
    log.artifact(folder / SAMPLES_TABLE)
    headline = {name: metrics[name] for name in HEADLINE_METRICS if name in metrics}
    log.metrics(headline)  # first, so the runs list and compare view show them first
    log.metrics({name: value for name, value in metrics.items() if name not in headline})
    if (result.y_target >= 0).any():
        matrix = success_matrix(result, class_names)
        matrix.to_csv(folder / SUCCESS_MATRIX)
        log.artifact(folder / SUCCESS_MATRIX)
    log.figure(perturbation_figure(result, class_names), PERTURBATION_FIGURE)
    if samples.fs_hz is not None:
        log.figure(ecg_overlay_figure(result, class_names), ECG_OVERLAY_FIGURE)
    show_at_end(summary_table(result, class_names))


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
    crafting: _Crafting, targets: dict[str, Victim], samples: Dataset, y_target: np.ndarray
) -> dict[str, np.ndarray]:
    """The adversarial inputs of the same attack crafted on each target itself, batch by batch as the victim's."""
    white_box = {}
    for uri, target in targets.items():
        batches = attack_batches(
            crafting.on(target), target, samples, y_target, batch_size=crafting.batch_size, seed=crafting.seed
        )
        white_box[uri] = AttackResult.concatenate([batch for _, batch in batches]).x_adv
    return white_box


def _defense_metrics(
    crafting: _Crafting, models: _Models, samples: Dataset, y_target: np.ndarray, result: AttackResult
) -> dict[str, float]:
    """The defense's evaluation: the same attack crafted on the bare victim, replayed through the defense."""
    return defense_evaluation(
        crafting.on(models.bare), models.bare.model, models.victim.model, samples, y_target, result,
        batch_size=crafting.batch_size, seed=crafting.seed,
    )  # fmt: skip


def _log_transfer(
    result: AttackResult, targets: dict[str, Victim], white_box: dict[str, np.ndarray], folder: Path, log: BackgroundLog
) -> None:
    """Replay the adversarial inputs on each target model beside its white-box adversarials (`white_box`):
    `transfer.csv`, one row per target, and the probabilities it was scored from (evaluate merges shards by them)."""
    probabilities = {
        uri: TargetProbabilities(
            ids=result.ids,
            clean=predict(target.model, result.x),
            adversarial=predict(target.model, result.x_adv),
            white_box=predict(target.model, white_box[uri]) if uri in white_box else None,
        )
        for uri, target in targets.items()
    }
    table = targets_table(result, probabilities)
    table.to_csv(folder / TRANSFER_TABLE)
    log.artifact(folder / TRANSFER_TABLE)
    log.artifact(save_probabilities(probabilities, folder / TRANSFER_PROBABILITIES))
    log.metrics({"transfer_success_rate_mean": float(table["transfer_success_rate"].mean())})


def _log_extras(extras: Extras, folder: Path, log: BackgroundLog) -> None:
    """Log what a family's extra evaluation returned, under the names it gave: tables as CSV, its notes printed,
    then its metrics and figures."""
    for path, table in extras.tables.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(folder / path)
        log.artifact(folder / path, str(Path(path).parent) if "/" in path else None)
    for note in extras.notes:
        print(f"note: {note}")
    if extras.metrics:
        log.metrics(extras.metrics)
    for path, figure in extras.figures.items():
        log.figure(figure, path)


def _delete_progress(artifact_uri: str) -> None:
    """Drop the per-batch files once the joined result is logged; keep them where the store cannot delete."""
    try:
        get_artifact_repository(artifact_uri).delete_artifacts(PROGRESS)
    except (NotImplementedError, mlflow.exceptions.MlflowException, OSError) as error:
        print(f"note: per-batch progress files kept under {PROGRESS}/ ({type(error).__name__})")
