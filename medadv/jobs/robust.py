"""`train` with `mode=robust`: adversarially train a copy of a victim and register it as
`medadv-<dataset>-<arch>-robust-<method>`."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import keras
import mlflow
import numpy as np

from medadv.attacks import AttackConfig, budget_label, make_attack, parse_config
from medadv.attacks.dgn import DEFAULT_EPS, DGNConfig, generate
from medadv.attacks.native import FGSMConfig, PGDConfig
from medadv.attacks.result import AttackResult
from medadv.attacks.runner import attack_batches, predict
from medadv.contract import (
    GENERATOR_LOSS_TAG,
    MODEL_VERSION_TAG,
    REGISTERED_MODEL_TAG,
    ROBUST_TRAINER_TAG,
    STEP_TAG,
    TRAINING_METHOD_TAG,
)
from medadv.data.base import Dataset
from medadv.defenses import (
    TRAINERS,
    AdversarialTrainingConfig,
    DefenseError,
    RobustTraining,
    train_on_adversarial_data,
    train_with_online_pgd,
)
from medadv.jobs.generators import victim_and_splits
from medadv.metrics import clean_accuracy, robust_accuracy
from medadv.models.resume import EpochRecord
from medadv.settings import TrainSettings
from medadv.tracking.checkpoints import RunCheckpoints
from medadv.tracking.registry import default_model_name, load_generators, log_victim, register
from medadv.tracking.runs import log_dataset, show_at_end, start_step_run

# robust method -> the attack whose settings (`attack_params`) it trains against
ROBUST_METHODS = {
    "fgsm": "fgsm",
    "pgd": "pgd",
    "pgd_online": "pgd",
    "dgn_lrp": "dgn",
    "dgn_nce": "dgn",
    "dgn_suspiciousness": "dgn",
}


def train_robust(settings: TrainSettings) -> str:
    """Adversarially train a copy of the victim with `method`, evaluate it and register it."""
    if settings.method not in ROBUST_METHODS:
        raise DefenseError(f"unknown robust method {settings.method!r}; choose one of {', '.join(ROBUST_METHODS)}")
    if settings.trainer not in TRAINERS:
        raise DefenseError(f"unknown robust trainer {settings.trainer!r}; choose one of {', '.join(TRAINERS)}")
    pinned, victim, splits = victim_and_splits(settings)
    train, test = splits["train"], splits["test"]
    attack_name = ROBUST_METHODS[settings.method]
    attack_params = dict(settings.attack_params_by_key)
    if attack_name == "dgn":
        attack_params.setdefault("eps", str(DEFAULT_EPS.get(settings.dataset, 0.1)))
    attack_config = parse_config(attack_name, attack_params)
    attack_config.validate(train.num_classes)
    adversarial = AdversarialTrainingConfig(
        ratio=settings.adversarial_ratio, from_scratch=settings.from_scratch, epochs=settings.epochs,
        batch_size=settings.batch_size, learning_rate=settings.learning_rate, seed=settings.seed,
    )  # fmt: skip
    adversarial.validate()
    generators = _generators_for(settings) if attack_name == "dgn" else {}

    params = asdict(settings) | {"training_method": settings.method, "victim_version_uri": pinned.uri}
    run_name = f"robust {budget_label(settings.method, attack_config)} · {pinned.short}"
    with start_step_run("train", params, run_id=settings.run_id or None, name=run_name) as run:
        checkpoints = RunCheckpoints(run.info.run_id)
        record = EpochRecord(checkpoints.save, checkpoints.resume(settings.epochs))
        if record.resumed is None:
            mlflow.set_tag(TRAINING_METHOD_TAG, settings.method)
            log_dataset(train, context="training")
        trained = _adversarially_trained(settings, victim, train, attack_config, adversarial, generators, record)
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
                "robust_accuracy_over": f"all {len(test)} test samples",
                "threat_model": f"{attack_name} {attack_params}", "victim": pinned.uri, "run_id": run.info.run_id,
            },
        )  # fmt: skip
        mlflow.set_tags({REGISTERED_MODEL_TAG: name, MODEL_VERSION_TAG: version})
        print(f"registered {name} version {version} as models:/{name}@{settings.alias}")
        shown = ("clean_accuracy", "robust_accuracy", "victim_robust_accuracy", "robust_accuracy_gain")
        show_at_end({key: metrics[key] for key in shown} | {"model": f"models:/{name}/{version}"})
        checkpoints.remove_all()
        return str(run.info.run_id)


def _adversarially_trained(
    settings: TrainSettings,
    victim: keras.Model,
    train: Dataset,
    attack_config: AttackConfig,
    adversarial: AdversarialTrainingConfig,
    generators: dict[int, keras.Model],
    record: EpochRecord,
) -> RobustTraining:
    """The robust model of `settings.method`, each epoch handed to `record` (checkpointed) and resumed from it."""
    if isinstance(attack_config, DGNConfig):
        x_adv = generate(generators, train.x, train.y, eps=attack_config.eps, clip_range=train.clip_range)
        return train_on_adversarial_data(victim, train.x, train.y, x_adv, adversarial, record)
    if settings.method == "pgd_online":
        assert isinstance(attack_config, PGDConfig)
        return train_with_online_pgd(victim, train.x, train.y, attack_config, train.clip_range, adversarial, record)
    assert isinstance(attack_config, FGSMConfig)
    mlflow.set_tag(ROBUST_TRAINER_TAG, settings.trainer)
    trainer = TRAINERS[settings.trainer]
    return trainer(victim, train.x, train.y, attack_config, train.clip_range, adversarial, record)


def _generators_for(settings: TrainSettings) -> dict[int, keras.Model]:
    """The generator set named by --generators, checked to use the loss the method names."""
    if not settings.generators:
        raise DefenseError(
            f"method {settings.method} needs --generators, the run id of a generator set (mode=generator)"
        )
    run = mlflow.get_run(settings.generators)
    loss = settings.method.removeprefix("dgn_")
    if run.data.tags.get(STEP_TAG) != "generator" or run.data.tags.get(GENERATOR_LOSS_TAG) != loss:
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
    """Clean and robust accuracy of the robust model and of the victim, each attacked white-box on every test
    sample, and `robust_accuracy_victim_crafted`: the robust model on the test data crafted against the victim,
    as DeepCustom evaluated its robust models.

    Both accuracies are the attack run's, through the attack path and the functions `summarize` logs them with:
    `robust_accuracy` is one definition everywhere (the share of the attacked samples still classified correctly);
    here the attacked samples are the whole test split, as an attack run with `selection=all`. DGN data comes from
    the victim's generators, so it is the same for both models (unless `misclassified_only`, which checks each).
    """
    metrics, crafted = {}, {}
    options: dict[str, Any] = {"generators": generators} if isinstance(config, DGNConfig) else {}
    untargeted = np.full(len(test), -1)
    for prefix, model in (("victim_", victim), ("", robust)):
        attacker = make_attack(attack_name, model, config, test.clip_range, batch_size, **options)
        batches = attack_batches(attacker, model, test, untargeted, batch_size=batch_size, progress=False)
        result = AttackResult.concatenate([part for _, part in batches])
        metrics[f"{prefix}clean_accuracy"] = clean_accuracy(result.y_true, result.y_clean)
        metrics[f"{prefix}robust_accuracy"] = robust_accuracy(result.y_true, result.y_adv)
        crafted[prefix] = result.x_adv
    on_victims_data = predict(robust, crafted["victim_"]).argmax(1)
    metrics["robust_accuracy_victim_crafted"] = robust_accuracy(test.y, on_victims_data)
    metrics["robust_accuracy_gain"] = metrics["robust_accuracy"] - metrics["victim_robust_accuracy"]
    return metrics
