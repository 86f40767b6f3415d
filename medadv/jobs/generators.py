"""`train` with `mode=generator`: one CAE generator per class (DeepCustom), each in a nested run under one
parent run whose id names the generator set."""

from __future__ import annotations

import tempfile
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any

import keras
import mlflow
import numpy as np
from mlflow.entities import Run

from medadv.attacks import budget_label
from medadv.attacks.dgn import DEFAULT_EPS, GeneratorConfig, generate, train_generator
from medadv.attacks.runner import predict
from medadv.contract import CLASS_TAG, GENERATOR_LOSS_TAG, LOSS_DETAILS, STEP_TAG
from medadv.data import load_dataset
from medadv.data.base import Dataset
from medadv.defenses import DefenseError
from medadv.models import check_victim
from medadv.models.resume import EpochRecord
from medadv.options import typed_options
from medadv.settings import TrainSettings
from medadv.tracking.checkpoints import RunCheckpoints
from medadv.tracking.registry import PinnedModel, load_generator, load_model, pin_model, pip_requirements
from medadv.tracking.runs import as_given, log_dataset, show_at_end, start_step_run


def victim_and_splits(settings: TrainSettings) -> tuple[PinnedModel, keras.Model, dict[str, Dataset]]:
    """The victim at the version its alias named now (pinned, as attacks pin theirs), and the train and test data."""
    if not settings.victim:
        raise DefenseError(f"mode={settings.mode} needs --victim (models:/NAME@ALIAS, runs:/ID/model or a path)")
    splits = {
        split: load_dataset(settings.dataset, settings.data_dir, split, **settings.data_kwargs)
        for split in ("train", "test")
    }
    pinned = pin_model(_victim_uri(settings))
    victim = load_model(pinned.uri)
    check_victim(victim, splits["train"].input_shape)
    return pinned, victim, splits


def _victim_uri(settings: TrainSettings) -> str:
    """The victim as given; on a resume, the version the run pinned when it started (its alias may have moved)."""
    if settings.run_id:
        return as_given(mlflow.get_run(settings.run_id)).data.params.get("victim_version_uri", settings.victim)
    return settings.victim


def train_generator_set(settings: TrainSettings) -> str:
    """One generator per class under a parent run; logs losses, what each loss was built from, and the accuracy drop."""
    pinned, victim, splits = victim_and_splits(settings)
    train = splits["train"]
    default_eps = DEFAULT_EPS.get(settings.dataset, 0.1)
    config = replace(
        GeneratorConfig(
            loss=settings.generator_loss, eps=default_eps, epochs=settings.epochs, batch_size=settings.batch_size,
            learning_rate=settings.learning_rate, seed=settings.seed,
        ),
        **typed_options(settings.generator_options_by_key, GeneratorConfig, "generator_options"),
    )  # fmt: skip
    config.validate(train.num_classes)
    params = asdict(settings) | {f"generator.{f.name}": getattr(config, f.name) for f in fields(config)}
    name = f"generators {budget_label(config.loss, config)} · {pinned.short}"
    with start_step_run(
        "generator", params | {"victim_version_uri": pinned.uri}, run_id=settings.run_id or None, name=name
    ) as run:
        class_runs = _class_runs(run.info.run_id)
        if not settings.run_id:
            mlflow.set_tag(GENERATOR_LOSS_TAG, config.loss)
            log_dataset(train, context="training")
        classes = [int(class_index) for class_index in np.unique(train.y)]
        generators = {c: _class_generator(victim, train, c, config, class_runs.get(c)) for c in classes}
        test = splits["test"]
        x_adv = generate(generators, test.x, test.y, eps=config.eps, clip_range=test.clip_range)
        clean = float(np.mean(predict(victim, test.x).argmax(1) == test.y))
        attacked = float(np.mean(predict(victim, x_adv).argmax(1) == test.y))
        accuracies = {"clean_accuracy": clean, "dgn_accuracy": attacked, "accuracy_drop": clean - attacked}
        mlflow.log_metrics(accuracies)
        show_at_end(accuracies | {"generators": run.info.run_id})  # the id --generators takes
        return str(run.info.run_id)


def _class_runs(parent_run_id: str) -> dict[int, Run]:
    """The class runs a killed generator set had started, by class index (none for a new set). One killed before
    it recorded its class holds nothing and is deleted, so that the set's generators are its classes' alone."""
    children = mlflow.search_runs(
        filter_string=f"tags.`mlflow.parentRunId` = '{parent_run_id}' and tags.`{STEP_TAG}` = 'generator_class'",
        output_format="list",
        search_all_experiments=True,
    )
    for child in children:
        if CLASS_TAG not in child.data.tags:
            mlflow.MlflowClient().delete_run(child.info.run_id)
    return {int(child.data.tags[CLASS_TAG]): child for child in children if CLASS_TAG in child.data.tags}


def _class_generator(
    victim: keras.Model, train: Dataset, class_index: int, config: GeneratorConfig, earlier: Run | None
) -> keras.Model:
    """One class's generator in its nested run, checkpointed each epoch: trained, resumed from the class run a kill
    interrupted (`earlier`), or loaded from the one that finished."""
    if earlier is not None and earlier.info.status == "FINISHED":
        RunCheckpoints(earlier.info.run_id).remove_all()  # the kill may have come before they were removed
        return load_generator(earlier.info.run_id)
    parent = mlflow.active_run()
    assert parent is not None, "a class run goes under its generator set's run"
    name = f"generator {config.loss} · class {train.class_names[class_index]}"
    run_id = earlier.info.run_id if earlier else None
    tags = {CLASS_TAG: str(class_index), "mlflow.parentRunId": parent.info.run_id}
    with start_step_run("generator_class", {"class_index": class_index}, run_id, name, tags) as class_run:
        checkpoints = RunCheckpoints(class_run.info.run_id)
        record = EpochRecord(checkpoints.save, checkpoints.resume(config.epochs))
        trained = train_generator(victim, train.x, train.y, class_index, config, train.clip_range, record)
        mlflow.log_metrics({"loss_first_epoch": trained.losses[0], "loss_last_epoch": trained.losses[-1]})
        with tempfile.TemporaryDirectory() as folder:
            details: dict[str, Any] = dict(trained.details)
            np.savez_compressed(Path(folder) / LOSS_DETAILS, **details)
            mlflow.log_artifact(str(Path(folder) / LOSS_DETAILS))
        mlflow.keras.log_model(trained.model, name="generator", pip_requirements=pip_requirements())
    checkpoints.remove_all()  # once the class run has finished: a kill before leaves the run to resume
    return trained.model
