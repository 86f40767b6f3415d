"""Adversarial training: Goodfellow's mixed loss pinned by hand, the result still a victim, and every method
raising accuracy on adversarial data in a tiny setting."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from medadv.attacks.art_attacks import ArtFGSM
from medadv.attacks.dgn import GeneratorConfig, train_generator
from medadv.attacks.native import PGD, FGSMConfig, PGDConfig
from medadv.data.base import Dataset
from medadv.defenses import (
    AdversarialTrainingConfig,
    DefenseError,
    RobustTraining,
    initial_model,
    train_gf,
    train_on_adversarial_data,
    train_with_art,
    train_with_online_pgd,
)
from medadv.models import build_model, check_victim, logits_model
from medadv.models.resume import EpochRecord, TrainingState

PGD_SETTINGS = PGDConfig(eps=0.26, eps_step=0.07, max_iter=6)  # at 0.3 the two blobs can be made equal


def accuracy(model: keras.Model, x: np.ndarray, y: np.ndarray) -> float:
    return float((model.predict(x, verbose=0).argmax(1) == y).mean())


def cross_entropy(model: keras.Model, x: np.ndarray, y: np.ndarray) -> float:
    logits = np.asarray(logits_model(model)(x), dtype=np.float64)
    log_probs = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    return float(-log_probs[np.arange(len(y)), y].mean())


def test_mixed_loss_is_goodfellows_by_hand(tiny_image_data: Dataset) -> None:
    """With one batch and one epoch the recorded loss is the loss at the starting (victim's) weights."""
    keras.utils.set_random_seed(0)
    victim = build_model("mnist_dense", tiny_image_data.input_shape, 2)  # no dropout: a deterministic loss
    x, y = tiny_image_data.x[:32], tiny_image_data.y[:32]
    x_adv = np.clip(x + 0.2, 0, 1)
    config = AdversarialTrainingConfig(ratio=0.3, from_scratch=False, epochs=1, batch_size=32)
    trained = train_on_adversarial_data(victim, x, y, x_adv, config)
    expected = 0.3 * cross_entropy(victim, x, y) + 0.7 * cross_entropy(victim, x_adv, y)
    assert trained.losses[0] == pytest.approx(expected, rel=1e-4)
    assert cross_entropy(trained.model, x_adv, y) < cross_entropy(victim, x_adv, y)  # it trained the copy...
    assert not np.allclose(trained.model.get_weights()[0], victim.get_weights()[0])  # ...and not the victim


def test_start_from_scratch_or_from_the_victim(tiny_image_model: keras.Model) -> None:
    fresh = initial_model(tiny_image_model, from_scratch=True, seed=0)
    tuned = initial_model(tiny_image_model, from_scratch=False, seed=0)
    for model in (fresh, tuned):
        check_victim(model)
        assert model is not tiny_image_model
    kernel = tiny_image_model.get_weights()[0]
    assert not np.allclose(fresh.get_weights()[0], kernel)
    np.testing.assert_array_equal(tuned.get_weights()[0], kernel)


def _robust(
    method: str,
    victim: keras.Model,
    data: Dataset,
    x_adv: np.ndarray,
    epochs: int = 4,
    record: EpochRecord | None = None,
) -> RobustTraining:
    config = AdversarialTrainingConfig(from_scratch=False, epochs=epochs, batch_size=16, learning_rate=3e-3)
    if method == "adversarial_data":
        return train_on_adversarial_data(victim, data.x, data.y, x_adv, config, record)
    if method == "online_pgd":
        return train_with_online_pgd(victim, data.x, data.y, PGD_SETTINGS, data.clip_range, config, record)
    if method == "gf_pgd":
        return train_gf(victim, data.x, data.y, PGD_SETTINGS, data.clip_range, config, record)
    if method == "art_fgsm":
        return train_with_art(victim, data.x, data.y, FGSMConfig(eps=0.26), data.clip_range, config, record)
    if method == "art_pgd_fresh":
        return train_with_art(victim, data.x, data.y, PGD_SETTINGS, data.clip_range, config, record, transfer=False)
    generator = GeneratorConfig(loss="nce", epochs=epochs, batch_size=16, learning_rate=3e-3)
    return train_generator(victim, data.x, data.y, 1, generator, data.clip_range, record)  # type: ignore[return-value]


@pytest.mark.parametrize("method", ["adversarial_data", "gf_pgd", "online_pgd", "art_fgsm", "art_pgd_fresh"])
def test_adversarial_training_raises_accuracy_on_adversarial_data(
    method: str, tiny_image_model: keras.Model, tiny_image_data: Dataset
) -> None:
    np.random.seed(0)  # PGD's random starts come from numpy's global generator
    train, test = tiny_image_data.subset(slice(0, 64)), tiny_image_data.subset(slice(64, None))
    crafted = PGD(tiny_image_model, PGD_SETTINGS, (0.0, 1.0), 64)
    x_adv_train = crafted.generate(train.x, train.y, None)
    x_adv_test = crafted.generate(test.x, test.y, None)  # transferred from the victim, as the study evaluates
    before = accuracy(tiny_image_model, x_adv_test, test.y)

    robust = _robust(method, tiny_image_model, train, x_adv_train)

    check_victim(robust.model, train.input_shape)
    assert len(robust.losses) == 4
    after = accuracy(robust.model, x_adv_test, test.y)
    assert after >= before + 0.3, f"{method}: accuracy on adversarial data {before:.2f} -> {after:.2f}"


def test_gf_trains_the_mixed_loss_on_art_pairs_crafted_once_against_the_victim(
    tiny_image_model: keras.Model, tiny_image_data: Dataset
) -> None:
    """DeepCustom's gf trainer: ART's FGSM on the victim, labelled by the victim's predictions, then the mixed loss."""
    data = tiny_image_data.subset(slice(0, 32))
    config = AdversarialTrainingConfig(epochs=2, batch_size=16)
    gf = train_gf(tiny_image_model, data.x, data.y, FGSMConfig(eps=0.2), data.clip_range, config)
    x_adv = ArtFGSM(tiny_image_model, FGSMConfig(eps=0.2), data.clip_range, 16).art.generate(data.x)
    pairs = train_on_adversarial_data(tiny_image_model, data.x, data.y, x_adv, config)
    assert gf.losses == pytest.approx(pairs.losses, rel=1e-5)
    for mine, expected in zip(gf.model.get_weights(), pairs.model.get_weights(), strict=True):
        np.testing.assert_allclose(mine, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "method", ["adversarial_data", "gf_pgd", "online_pgd", "art_fgsm", "art_pgd_fresh", "generator"]
)
def test_a_training_resumed_from_its_first_epoch_ends_as_if_never_stopped(
    method: str, tiny_image_model: keras.Model, tiny_image_data: Dataset, tmp_path: Path
) -> None:
    """Every hand-written training loop through its checkpoint file (what a killed `train` resumes from): the same
    weights and per-epoch losses, bit for bit, also where numpy's global generator feeds PGD's random starts and
    ART's draws (a resume that left the generators where they were would not match)."""
    data = tiny_image_data.subset(slice(0, 32))
    x_adv = np.clip(data.x + 0.1, 0, 1)
    states: list[TrainingState] = []
    np.random.seed(5)
    whole = _robust(method, tiny_image_model, data, x_adv, epochs=3, record=EpochRecord(states.append))
    assert [state.epochs_done for state in states] == [1, 2, 3]
    np.random.seed(7)  # elsewhere after the kill: the checkpoint puts it back
    first_epoch = TrainingState.load(states[0].save(tmp_path / "epoch_0001.npz"))
    resumed = _robust(method, tiny_image_model, data, x_adv, epochs=3, record=EpochRecord(resumed=first_epoch))
    assert resumed.losses == whole.losses
    for got, want in zip(resumed.model.get_weights(), whole.model.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda v, d: train_on_adversarial_data(v, d.x, d.y, d.x[:5], AdversarialTrainingConfig()), "pair"),
        (
            lambda v, d: train_on_adversarial_data(v, d.x, d.y, d.x, AdversarialTrainingConfig(ratio=1.5)),
            "ratio must be in",
        ),
        (lambda v, d: train_on_adversarial_data(v, d.x, d.y + 2, d.x, AdversarialTrainingConfig()), "labels"),
        (
            lambda v, d: train_with_art(v, d.x, d.y, FGSMConfig(eps=0.1), (0, 1), AdversarialTrainingConfig(ratio=1)),
            "below 1",
        ),
        (
            lambda v, d: train_with_online_pgd(v, d.x, d.y, PGDConfig(target=0), (0, 1), AdversarialTrainingConfig()),
            "untargeted",
        ),
    ],
)
def test_bad_settings_fail_before_training(
    call: object, message: str, tiny_image_model: keras.Model, tiny_image_data: Dataset
) -> None:
    with pytest.raises(DefenseError, match=message):
        call(tiny_image_model, tiny_image_data)  # type: ignore[operator]
