"""Defences: adversarial training that returns a model still fitting the victim contract."""

from medadv.defenses.adversarial_training import (
    TRAINERS,
    AdversarialTrainingConfig,
    DefenseError,
    RobustTraining,
    initial_model,
    train_gf,
    train_on_adversarial_data,
    train_with_art,
    train_with_online_pgd,
)

__all__ = [
    "TRAINERS",
    "AdversarialTrainingConfig",
    "DefenseError",
    "RobustTraining",
    "initial_model",
    "train_gf",
    "train_on_adversarial_data",
    "train_with_art",
    "train_with_online_pgd",
]
