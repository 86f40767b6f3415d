"""The `train` entry point's other modes: per-class CAE generators (DeepCustom) and robust models.

`mode=generator` trains one generator per class in a nested run each, under one parent run whose id
names the generator set. `mode=robust` adversarially trains a copy of a victim and registers it as
`medadv-<dataset>-<arch>-robust-<method>`.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import keras
import mlflow
import numpy as np

from medadv.attacks import AttackConfig, make_attack, parse_config
from medadv.attacks.dgn import DEFAULT_EPS, DGNConfig, GeneratorConfig, generate, train_generator
from medadv.attacks.native import FGSMConfig, PGDConfig
from medadv.attacks.runner import predict
from medadv.data import load_dataset, loader_options
from medadv.data.base import Dataset
from medadv.defenses import (
    TRAINERS,
    AdversarialTrainingConfig,
    DefenseError,
    RobustTraining,
    train_on_adversarial_data,
    train_with_online_pgd,
)
from medadv.models import check_victim
from medadv.options import parse_options
from medadv.tracking.attack_job import parse_params
from medadv.tracking.registry import (
    default_model_name,
    load_generators,
    load_model,
    log_victim,
    pip_requirements,
    register,
)
from medadv.tracking.runs import STEP_TAG, log_dataset, start_step_run

if TYPE_CHECKING:
    from medadv.tracking.train_job import TrainSettings

# robust method -> the attack whose settings (`attack_params`) it trains against
ROBUST_METHODS = {
    "fgsm": "fgsm",
    "pgd": "pgd",
    "pgd_online": "pgd",
    "dgn_lrp": "dgn",
    "dgn_nce": "dgn",
    "dgn_suspiciousness": "dgn",
}
CLASS_TAG = "medadv.class_index"
LOSS_TAG = "medadv.generator_loss"


def _victim_and_splits(settings: TrainSettings) -> tuple[keras.Model, dict[str, Dataset]]:
    if not settings.victim:
        raise DefenseError(f"mode={settings.mode} needs --victim (models:/NAME@ALIAS, runs:/ID/model or a path)")
    options = loader_options(settings.dataset, settings.data_options)
    splits = {split: load_dataset(settings.dataset, settings.data_dir, split, **options) for split in ("train", "test")}
    victim = load_model(settings.victim)
    check_victim(victim, splits["train"].input_shape)
    return victim, splits


def train_generator_set(settings: TrainSettings) -> str:
    """One generator per class under a parent run; logs losses, what each loss was built from, and the accuracy drop."""
    victim, splits = _victim_and_splits(settings)
    train = splits["train"]
    default_eps = DEFAULT_EPS.get(settings.dataset, 0.1)
    config = replace(
        GeneratorConfig(
            loss=settings.generator_loss, eps=default_eps, epochs=settings.epochs, batch_size=settings.batch_size,
            learning_rate=settings.learning_rate, seed=settings.seed,
        ),
        **parse_options(settings.generator_options, GeneratorConfig, "generator_options"),
    )  # fmt: skip
    config.validate(train.num_classes)
    with start_step_run(
        "generator", asdict(settings) | {f"generator.{f.name}": getattr(config, f.name) for f in fields(config)}
    ) as run:
        mlflow.set_tag(LOSS_TAG, config.loss)
        log_dataset(train, context="training")
        generators = {}
        for class_index in np.unique(train.y):
            with start_step_run("generator_class", {"class_index": int(class_index)}):
                mlflow.set_tags({CLASS_TAG: str(class_index), "mlflow.parentRunId": run.info.run_id})
                trained = train_generator(victim, train.x, train.y, int(class_index), config, train.clip_range)
                mlflow.log_metrics({"loss_first_epoch": trained.losses[0], "loss_last_epoch": trained.losses[-1]})
                for epoch, loss in enumerate(trained.losses):
                    mlflow.log_metric("loss", loss, step=epoch, synchronous=False)
                with tempfile.TemporaryDirectory() as folder:
                    details: dict[str, Any] = dict(trained.details)
                    np.savez_compressed(Path(folder) / "loss_details.npz", **details)
                    mlflow.log_artifact(str(Path(folder) / "loss_details.npz"))
                mlflow.keras.log_model(trained.model, name="generator", pip_requirements=pip_requirements())
                generators[int(class_index)] = trained.model
        test = splits["test"]
        x_adv = generate(generators, test.x, test.y, eps=config.eps, clip_range=test.clip_range)
        clean = float(np.mean(predict(victim, test.x).argmax(1) == test.y))
        attacked = float(np.mean(predict(victim, x_adv).argmax(1) == test.y))
        mlflow.log_metrics({"clean_accuracy": clean, "dgn_accuracy": attacked, "accuracy_drop": clean - attacked})
        print(
            f"generator set: runs:/{run.info.run_id} (victim accuracy {clean:.3f} -> {attacked:.3f} on DGN test data)"
        )
        return str(run.info.run_id)


def train_robust(settings: TrainSettings) -> str:
    """Adversarially train a copy of the victim with `method`, evaluate it and register it."""
    if settings.method not in ROBUST_METHODS:
        raise DefenseError(f"unknown robust method {settings.method!r}; choose one of {', '.join(ROBUST_METHODS)}")
    if settings.trainer not in TRAINERS:
        raise DefenseError(f"unknown robust trainer {settings.trainer!r}; choose one of {', '.join(TRAINERS)}")
    victim, splits = _victim_and_splits(settings)
    train, test = splits["train"], splits["test"]
    attack_name = ROBUST_METHODS[settings.method]
    params = parse_params(settings.attack_params)
    if attack_name == "dgn":
        params.setdefault("eps", str(DEFAULT_EPS.get(settings.dataset, 0.1)))
    attack_config = parse_config(attack_name, params)
    attack_config.validate(train.num_classes)
    adversarial = AdversarialTrainingConfig(
        ratio=settings.adversarial_ratio, from_scratch=settings.from_scratch, epochs=settings.epochs,
        batch_size=settings.batch_size, learning_rate=settings.learning_rate, seed=settings.seed,
    )  # fmt: skip
    adversarial.validate()
    generators = _generators_for(settings) if attack_name == "dgn" else {}

    with start_step_run("train", asdict(settings) | {"training_method": settings.method}) as run:
        mlflow.set_tag("medadv.training_method", settings.method)
        log_dataset(train, context="training")
        if isinstance(attack_config, DGNConfig):
            x_adv = generate(generators, train.x, train.y, eps=attack_config.eps, clip_range=train.clip_range)
            trained: RobustTraining = train_on_adversarial_data(victim, train.x, train.y, x_adv, adversarial)
        elif settings.method == "pgd_online":
            assert isinstance(attack_config, PGDConfig)
            trained = train_with_online_pgd(victim, train.x, train.y, attack_config, train.clip_range, adversarial)
        else:
            assert isinstance(attack_config, FGSMConfig)
            mlflow.set_tag("medadv.robust_trainer", settings.trainer)
            trainer = TRAINERS[settings.trainer]
            trained = trainer(victim, train.x, train.y, attack_config, train.clip_range, adversarial)
        for epoch, loss in enumerate(trained.losses):
            mlflow.log_metric("loss", loss, step=epoch, synchronous=False)
        metrics = _robustness(victim, trained.model, test, attack_name, attack_config, generators, settings.batch_size)
        mlflow.log_metrics(metrics)
        name = settings.model_name or default_model_name(settings.dataset, victim.name, f"-robust-{settings.method}")
        version = register(
            log_victim(trained.model, test.x[:2]),
            name,
            settings.alias,
            tags={
                "dataset": settings.dataset, "arch": victim.name, "training_method": settings.method,
                "clean_accuracy": f"{metrics['clean_accuracy']:.4f}",
                f"robust_accuracy_{attack_name}": f"{metrics['robust_accuracy']:.4f}",
                f"robust_accuracy_{attack_name}_victim_crafted": f"{metrics['robust_accuracy_victim_crafted']:.4f}",
                "threat_model": f"{attack_name} {params}", "victim": settings.victim, "run_id": run.info.run_id,
            },
        )  # fmt: skip
        mlflow.set_tags({"medadv.registered_model": name, "medadv.model_version": version})
        print(f"registered {name} version {version} as models:/{name}@{settings.alias}")
        return str(run.info.run_id)


def _generators_for(settings: TrainSettings) -> dict[int, keras.Model]:
    """The generator set named by --generators, checked to use the loss the method names."""
    if not settings.generators:
        raise DefenseError(
            f"method {settings.method} needs --generators, the run id of a generator set (mode=generator)"
        )
    run = mlflow.get_run(settings.generators)
    loss = settings.method.removeprefix("dgn_")
    if run.data.tags.get(STEP_TAG) != "generator" or run.data.tags.get(LOSS_TAG) != loss:
        raise DefenseError(f"run {settings.generators} is not a generator set trained with the {loss} loss")
    return load_generators(settings.generators)


def _robustness(
    victim: keras.Model,
    robust: keras.Model,
    test: Dataset,
    attack_name: str,
    config: AttackConfig,
    generators: dict[int, keras.Model],
    batch_size: int,
) -> dict[str, float]:
    """Clean and robust test accuracy of the robust model and of the victim, and `robust_accuracy_victim_crafted`:
    the robust model on the test data crafted against the victim, as DeepCustom evaluated its robust models.

    DGN data is generated once from the victim's generators (so both robust accuracies agree); FGSM/PGD attack
    each model white-box for `robust_accuracy` and `victim_robust_accuracy`.
    """
    metrics, crafted = {}, {}
    for prefix, model in (("victim_", victim), ("", robust)):
        if isinstance(config, DGNConfig):
            x_adv = generate(generators, test.x, test.y, eps=config.eps, clip_range=test.clip_range)
        else:
            attacker = make_attack(attack_name, model, config, test.clip_range, batch_size)
            x_adv = np.concatenate(
                [attacker.generate(test.x[i : i + batch_size], test.y[i : i + batch_size], None)
                 for i in range(0, len(test), batch_size)]
            )  # fmt: skip
        crafted[prefix] = x_adv
        metrics[f"{prefix}clean_accuracy"] = float(np.mean(predict(model, test.x).argmax(1) == test.y))
        metrics[f"{prefix}robust_accuracy"] = float(np.mean(predict(model, x_adv).argmax(1) == test.y))
    metrics["robust_accuracy_victim_crafted"] = float(np.mean(predict(robust, crafted["victim_"]).argmax(1) == test.y))
    metrics["robust_accuracy_gain"] = metrics["robust_accuracy"] - metrics["victim_robust_accuracy"]
    return metrics
