"""The `train` entry point: train a victim, log everything about it, register it with an alias."""

from __future__ import annotations

from dataclasses import asdict

import keras
import mlflow

from medadv.contract import (
    CONFUSION_FIGURE,
    LEARNING_CURVES,
    MODEL_VERSION_TAG,
    PREDICTIONS,
    REGISTERED_MODEL_TAG,
)
from medadv.data import Dataset, load_dataset
from medadv.errors import MedadvError
from medadv.jobs.generators import train_generator_set
from medadv.jobs.robust import train_robust
from medadv.metrics.classification import classification_scores, confusion_figure, prediction_table
from medadv.models import architecture, build_model, check_victim
from medadv.models.resume import EpochRecord, EpochState
from medadv.models.training import FitConfig, distribution_strategy, fit_victim, learning_curves, seed_everything
from medadv.options import typed_options
from medadv.settings import TrainSettings
from medadv.tracking.checkpoints import RunCheckpoints, check_resumable
from medadv.tracking.names import check_registration
from medadv.tracking.registry import default_model_name, log_victim, register
from medadv.tracking.runs import connect, log_dataset, log_figure, show_at_end, start_step_run

MODES = ("victim", "generator", "robust")


def train(settings: TrainSettings, tracking_uri: str | None = None, experiment: str | None = None) -> str:
    """Run `train`; returns the MLflow run id. Every input is checked before the run starts."""
    check_registration(settings.model_name or default_model_name(settings.dataset, settings.arch), settings.alias)
    connect(tracking_uri, experiment)
    if settings.mode not in MODES:
        raise MedadvError(f"unknown mode {settings.mode!r}; choose one of {', '.join(MODES)}")
    if settings.run_id:
        check_resumable(settings.run_id, asdict(settings), "generator" if settings.mode == "generator" else "train")
    if settings.mode == "generator":
        return train_generator_set(settings)
    if settings.mode == "robust":
        return train_robust(settings)
    return _train_victim(settings)


def _train_victim(settings: TrainSettings) -> str:
    """Fit a victim epoch by epoch (each checkpointed in the run, so a killed run resumes), score and register it."""
    fit_config = FitConfig(
        epochs=settings.epochs, batch_size=settings.batch_size, learning_rate=settings.learning_rate,
        seed=settings.seed, mixup_alpha=settings.mixup_alpha,
    )  # fmt: skip
    fit_config.validate()
    arch_options = typed_options(settings.arch_options_by_key, architecture(settings.arch), "arch_options")
    splits = {
        split: load_dataset(settings.dataset, settings.data_dir, split, **settings.data_kwargs)
        for split in ("train", "val", "test")
    }
    seed_everything(settings.seed)
    with distribution_strategy().scope():
        train_set = splits["train"]
        model = build_model(settings.arch, train_set.input_shape, train_set.num_classes, **arch_options)
    check_victim(model, train_set.input_shape)

    run_name = f"train {settings.arch} · {settings.dataset}"
    with start_step_run("train", asdict(settings), run_id=settings.run_id or None, name=run_name) as run:
        checkpoints = RunCheckpoints(run.info.run_id)
        resumed = checkpoints.resume(settings.epochs)
        if resumed is None:
            for split, dataset in splits.items():
                log_dataset(dataset, context={"train": "training", "val": "validation", "test": "testing"}[split])
        callbacks = [EpochState(EpochRecord(checkpoints.save, resumed))]
        history = fit_victim(model, train_set, splits["val"], fit_config, callbacks=callbacks, resume=resumed)
        log_figure(learning_curves(history), LEARNING_CURVES)
        _register_scored(settings, model, splits, run.info.run_id)
        checkpoints.remove_all()
        return str(run.info.run_id)


def _register_scored(settings: TrainSettings, model: keras.Model, splits: dict[str, Dataset], run_id: str) -> None:
    """Test scores, predictions and confusion matrix of the fitted victim, then its registration."""
    test = splits["test"]
    probs = model.predict(test.x, batch_size=settings.batch_size, verbose=0)
    scores = classification_scores(test.y, probs)
    test_scores = {f"test_{key}": value for key, value in scores.items()}  # accuracy, macro_f1, auc
    mlflow.log_metrics(test_scores | {"clean_accuracy": scores["accuracy"]})
    mlflow.log_table(prediction_table(test, probs), PREDICTIONS)
    log_figure(confusion_figure(test.y, probs.argmax(axis=1), test.class_names), CONFUSION_FIGURE)
    name = settings.model_name or default_model_name(settings.dataset, settings.arch)
    tags = {
        "dataset": settings.dataset, "arch": settings.arch, "clean_accuracy": f"{scores['accuracy']:.4f}",
        "training_method": "standard", "data_fingerprint": splits["train"].fingerprint(), "run_id": run_id,
    }  # fmt: skip
    version = register(log_victim(model, test.x[:2]), name, settings.alias, tags=tags)
    mlflow.set_tags({REGISTERED_MODEL_TAG: name, MODEL_VERSION_TAG: version})
    print(f"registered {name} version {version} as models:/{name}@{settings.alias}")
    show_at_end(test_scores | {"model": f"models:/{name}/{version}"})
