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

from medadv.attacks import budget_label
from medadv.attacks.dgn import DEFAULT_EPS, GeneratorConfig, generate, train_generator
from medadv.attacks.runner import predict
from medadv.contract import CLASS_TAG, GENERATOR_LOSS_TAG, LOSS_DETAILS
from medadv.data import load_dataset
from medadv.data.base import Dataset
from medadv.defenses import DefenseError
from medadv.models import check_victim
from medadv.options import typed_options
from medadv.settings import TrainSettings
from medadv.tracking.registry import PinnedModel, load_model, pin_model, pip_requirements
from medadv.tracking.runs import log_dataset, show_at_end, start_step_run


def victim_and_splits(settings: TrainSettings) -> tuple[PinnedModel, keras.Model, dict[str, Dataset]]:
    """The victim at the version its alias named now (pinned, as attacks pin theirs), and the train and test data."""
    if not settings.victim:
        raise DefenseError(f"mode={settings.mode} needs --victim (models:/NAME@ALIAS, runs:/ID/model or a path)")
    splits = {
        split: load_dataset(settings.dataset, settings.data_dir, split, **settings.data_kwargs)
        for split in ("train", "test")
    }
    pinned = pin_model(settings.victim)
    victim = load_model(pinned.uri)
    check_victim(victim, splits["train"].input_shape)
    return pinned, victim, splits


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
    with start_step_run("generator", params | {"victim_version_uri": pinned.uri}, name=name) as run:
        mlflow.set_tag(GENERATOR_LOSS_TAG, config.loss)
        log_dataset(train, context="training")
        generators = {}
        for class_index in np.unique(train.y):
            class_name = f"generator {config.loss} · class {train.class_names[class_index]}"
            with start_step_run("generator_class", {"class_index": int(class_index)}, name=class_name):
                mlflow.set_tags({CLASS_TAG: str(class_index), "mlflow.parentRunId": run.info.run_id})
                trained = train_generator(victim, train.x, train.y, int(class_index), config, train.clip_range)
                mlflow.log_metrics({"loss_first_epoch": trained.losses[0], "loss_last_epoch": trained.losses[-1]})
                for epoch, loss in enumerate(trained.losses):
                    mlflow.log_metric("loss", loss, step=epoch, synchronous=False)
                with tempfile.TemporaryDirectory() as folder:
                    details: dict[str, Any] = dict(trained.details)
                    np.savez_compressed(Path(folder) / LOSS_DETAILS, **details)
                    mlflow.log_artifact(str(Path(folder) / LOSS_DETAILS))
                mlflow.keras.log_model(trained.model, name="generator", pip_requirements=pip_requirements())
                generators[int(class_index)] = trained.model
        test = splits["test"]
        x_adv = generate(generators, test.x, test.y, eps=config.eps, clip_range=test.clip_range)
        clean = float(np.mean(predict(victim, test.x).argmax(1) == test.y))
        attacked = float(np.mean(predict(victim, x_adv).argmax(1) == test.y))
        accuracies = {"clean_accuracy": clean, "dgn_accuracy": attacked, "accuracy_drop": clean - attacked}
        mlflow.log_metrics(accuracies)
        show_at_end(accuracies | {"generators": run.info.run_id})  # the id --generators takes
        return str(run.info.run_id)
