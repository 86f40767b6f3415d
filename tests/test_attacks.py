"""Attacks, their registry and the runner, on the tiny trained victims of conftest."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import keras
import numpy as np
import pytest

from medadv.attacks import ATTACKS, AttackError, make_attack, parse_config, register
from medadv.attacks.native import LpConfig, PGDConfig
from medadv.attacks.result import AttackResult
from medadv.attacks.runner import (
    attack_batches,
    auto_batch_size,
    check_selection,
    expand_targets,
    first_per_class,
    select_samples,
)
from medadv.data.base import Dataset
from medadv.metrics import attack_success, success_matrix, summarize
from medadv.models import ModelError

# Per victim: the L-inf budget that flips it (the blobs differ by 0.6; the z-scored waves by ~1).
EPS = {"image": 0.3, "ecg": 1.0}
NUM_SAMPLES = 6
# C&W L-inf, both engines: one c (1, below largest_const 2), tau shrinking tenfold while it still succeeds
CW_LINF = {"max_iter": 10, "learning_rate": 0.2, "initial_const": 1.0, "largest_const": 2.0, "decrease_factor": 0.1}

# (attack, engine, settings given the victim's eps, minimum success on (image, ecg); None: refused for that victim)
TABLE: list[tuple[str, str, Callable[[float], dict[str, Any]], tuple[float | None, float | None]]] = [
    ("fgsm", "native", lambda e: {"eps": e}, (0.8, 0.8)),
    ("fgsm", "art", lambda e: {"eps": e}, (0.8, 0.8)),
    ("bim", "native", lambda e: {"eps": e, "eps_step": e / 4, "max_iter": 5}, (0.8, 0.8)),
    ("bim", "art", lambda e: {"eps": e, "eps_step": e / 4, "max_iter": 5}, (0.8, 0.8)),
    ("pgd", "native", lambda e: {"eps": e, "eps_step": e / 4, "max_iter": 5}, (0.8, 0.8)),
    ("pgd", "art", lambda e: {"eps": e, "eps_step": e / 4, "max_iter": 5}, (0.8, 0.8)),
    ("pgd", "native", lambda e: {"norm": "2", "eps": 16 * e, "eps_step": 4 * e, "max_iter": 5}, (0.8, 0.8)),
    ("deepfool", "art", lambda e: {"max_iter": 10}, (0.8, 0.8)),
    ("deepfool", "native", lambda e: {"max_iter": 10}, (0.8, 0.8)),
    (
        "cw_l2",
        "native",
        lambda e: {"binary_search_steps": 2, "max_iter": 10, "learning_rate": 0.1, "initial_const": 10.0},
        (0.8, 0.8),
    ),
    (
        "cw_linf",
        "native",
        lambda e: CW_LINF,
        (0.5, 0.5),
    ),
    ("apgd", "native", lambda e: {"eps": e, "eps_step": e / 4, "max_iter": 5, "num_random_init": 1}, (0.8, 0.8)),
    ("apgd", "art", lambda e: {"eps": e, "eps_step": e / 4, "max_iter": 5, "num_random_init": 1}, (0.8, 0.8)),
    (
        "autoattack",
        "native",
        lambda e: {"eps": e, "eps_step": e / 4, "max_iter": 5, "num_random_init": 1, "square_max_iter": 10},
        (0.8, 0.8),
    ),
    (
        "cw_l2",
        "art",
        lambda e: {"binary_search_steps": 1, "max_iter": 5, "learning_rate": 0.01, "initial_const": 100.0},
        (0.8, 0.8),
    ),
    (
        "cw_linf",
        "art",
        lambda e: CW_LINF,
        (0.5, 0.5),
    ),
    (
        "autoattack",
        "art",
        lambda e: {"eps": e, "eps_step": e / 4, "max_iter": 5, "num_random_init": 1, "square_max_iter": 10},
        (0.8, 0.8),
    ),
    # square and universal may fool no image at this small budget: the table still checks that they moved the input
    # and stayed inside eps (both are Lp attacks)
    ("square", "art", lambda e: {"eps": e, "max_iter": 10}, (0.0, None)),
    ("hopskipjump", "art", lambda e: {"max_iter": 2, "max_eval": 50, "init_eval": 10, "init_size": 10}, (0.5, 0.5)),
    ("universal", "art", lambda e: {"eps": e, "max_iter": 1, "attacker": "deepfool"}, (0.0, 0.3)),
]

# C&W L2 must find small perturbations, not just any: the median L2 of the fooled samples stays below moving both
# blobs of an image by their 0.6 contrast (sqrt(2 * 48 * 0.36) = 5.9), and below a z-scored record's own L2 norm
# (sqrt(256) = 16). Measured: about 3.0 and 4.4 (native, ART) on images, about 9 on the waves.
CW_L2_MEDIAN_BOUND = {"image": 5.0, "ecg": 12.0}

# Attack families pinned in their own test files (tests/test_ecgadv.py, tests/test_dgn.py).
TESTED_ELSEWHERE = {"ecgadv_type1", "ecgadv_type2", "dgn"}


def test_table_covers_every_registered_attack_and_engine() -> None:
    assert {(name, engine) for name, engine, _, _ in TABLE} == {
        (name, engine) for name, spec in ATTACKS.items() for engine in spec.engines if name not in TESTED_ELSEWHERE
    }


@pytest.fixture(scope="module")
def victims(tiny_image_model, tiny_image_data, tiny_ecg_model, tiny_ecg_data):  # type: ignore[no-untyped-def]
    return {"image": (tiny_image_model, tiny_image_data), "ecg": (tiny_ecg_model, tiny_ecg_data)}


@pytest.mark.parametrize("victim", ["image", "ecg"])
@pytest.mark.parametrize(
    ("name", "engine", "settings", "min_success"),
    TABLE,
    ids=[
        f"{name}-{engine}" + ("-l2" if settings(1.0).get("norm") == "2" else "") for name, engine, settings, _ in TABLE
    ],
)
def test_attack_table(victims, victim, name, engine, settings, min_success) -> None:  # type: ignore[no-untyped-def]
    model, data = victims[victim]
    expected = min_success[0 if victim == "image" else 1]
    params = {key: str(value) for key, value in settings(EPS[victim]).items()}
    config = parse_config(name, params)
    if expected is None:
        with pytest.raises(AttackError, match="images with a finite range"):
            make_attack(name, model, config, data.clip_range, NUM_SAMPLES, engine, input_shape=data.input_shape)
        return
    attack = make_attack(name, model, config, data.clip_range, NUM_SAMPLES, engine, input_shape=data.input_shape)
    x, y = data.x[:NUM_SAMPLES], data.y[:NUM_SAMPLES]
    keras.utils.set_random_seed(0)
    x_adv = attack.generate(x, y, None)

    assert x_adv.shape == x.shape and x_adv.dtype == np.float32
    assert np.isfinite(x_adv).all()
    low, high = data.clip_range
    assert x_adv.min() >= low and x_adv.max() <= high
    if isinstance(config, LpConfig):
        delta = (x_adv - x).reshape(len(x), -1)
        size = np.abs(delta).max(axis=1) if config.norm == "inf" else np.linalg.norm(delta, axis=1)
        assert size.max() <= config.eps * (1 + 1e-5) + 1e-6
    delta = (x_adv - x).reshape(len(x), -1)
    assert np.abs(delta).max() > 0, "the attack returned its input unchanged"
    if name == "cw_linf":  # ART's C&W L-inf keeps only iterates below its starting bound tau = 1
        assert np.abs(delta).max() < 1.0
    y_adv = np.asarray(model(x_adv)).argmax(axis=1)
    assert np.mean(y_adv != y) >= expected
    if name == "cw_l2":
        assert np.median(np.linalg.norm(delta, axis=1)[y_adv != y]) < CW_L2_MEDIAN_BOUND[victim]


def test_pgd_fools_the_tiny_image_model(tiny_image_model, tiny_image_data) -> None:  # type: ignore[no-untyped-def]
    config = PGDConfig(eps=0.3, eps_step=0.075, max_iter=10)
    attack = make_attack("pgd", tiny_image_model, config, tiny_image_data.clip_range, 96)
    keras.utils.set_random_seed(0)
    x_adv = attack.generate(tiny_image_data.x, tiny_image_data.y, None)
    y_adv = np.asarray(tiny_image_model(x_adv)).argmax(axis=1)
    assert np.mean(y_adv != tiny_image_data.y) > 0.9


@pytest.mark.parametrize(
    ("victim", "params"),
    [
        ("image", {"norm": "inf", "eps": 1.0}),
        ("ecg", {"norm": "2", "eps": 8.0}),
        ("ecg", {"norm": "inf", "eps": 1.0, "eps_step": 0.25, "max_iter": 5, "num_random_init": 0}),
        ("image", {"norm": "2", "eps": 8.0, "eps_step": 2.0, "max_iter": 5, "num_random_init": 0}),
        ("ecg", {"norm": "inf", "eps": 1.0, "eps_step": 0.25, "max_iter": 5, "num_random_init": 1, "target": 1}),
        ("image", {"norm": "2", "eps": 16.0, "eps_step": 4.0, "max_iter": 5, "num_random_init": 1}),
        # Grad-Attacks: ART's PGD defaults (eps_step 0.1, no random start) at eps 0.01 to 0.1: a step over eps
        ("image", {"norm": "inf", "eps": 1.0, "eps_step": 3.0, "max_iter": 5, "num_random_init": 0}),
    ],
    ids=["fgsm-inf", "fgsm-2", "bim-inf", "bim-2", "pgd-inf-targeted", "pgd-2", "pgd-step-over-eps"],
)
def test_native_matches_art(victims, victim, params) -> None:  # type: ignore[no-untyped-def]
    """Same inputs and seed: both engines draw the same random start and take the same steps (eps in victim units)."""
    model, data = victims[victim]
    scale = EPS[victim]
    name = "fgsm" if "max_iter" not in params else "pgd"
    config = parse_config(name, {k: str(v * scale if k in ("eps", "eps_step") else v) for k, v in params.items()})
    assert isinstance(config, LpConfig)
    x, y = data.x[:16], data.y[:16]
    target = None if config.target is None else np.full(len(x), config.target)
    outputs = {}
    for engine in ("native", "art"):
        keras.utils.set_random_seed(3)
        attack = make_attack(name, model, config, data.clip_range, 16, engine)
        outputs[engine] = attack.generate(x, y, target)
    np.testing.assert_allclose(outputs["native"], outputs["art"], atol=1e-5)
    if config.norm == "inf":
        assert np.abs(outputs["native"] - x).max() <= config.eps + 1e-6
    y_target = np.full(len(x), -1) if target is None else target
    success = {
        engine: attack_success(y, np.asarray(model(x_adv)).argmax(axis=1), y_target)
        for engine, x_adv in outputs.items()
    }
    np.testing.assert_array_equal(success["native"], success["art"])
    assert success["native"].sum() > 0


def test_restarts_keep_every_success_of_the_first_start(tiny_ecg_model, tiny_ecg_data) -> None:  # type: ignore[no-untyped-def]
    x, y = tiny_ecg_data.x[:32], tiny_ecg_data.y[:32]
    fooled = {}
    for restarts in (1, 4):
        config = PGDConfig(eps=0.6, eps_step=0.15, max_iter=3, num_random_init=restarts)
        attack = make_attack("pgd", tiny_ecg_model, config, tiny_ecg_data.clip_range, 32)
        keras.utils.set_random_seed(7)  # the first start is the same draw in both runs
        fooled[restarts] = np.asarray(tiny_ecg_model(attack.generate(x, y, None))).argmax(axis=1) != y
    assert 0 < fooled[1].sum() < len(x)
    assert np.all(fooled[4] >= fooled[1]) and fooled[4].sum() > fooled[1].sum()


def test_targeted_attack_reports_success_per_target(tiny_ecg_model, tiny_ecg_data) -> None:  # type: ignore[no-untyped-def]
    data, y_target = expand_targets(tiny_ecg_data.subset(slice(0, 8)), -1, 4)
    assert len(data) == 8 * 3 and all("->" in i for i in data.ids)
    config = parse_config("pgd", {"eps": "1.0", "eps_step": "0.25", "max_iter": "10", "target": "-1"})
    attack = make_attack("pgd", tiny_ecg_model, config, data.clip_range, 24)
    result = AttackResult.concatenate(
        [r for _, r in attack_batches(attack, tiny_ecg_model, data, y_target, batch_size=24, progress=False)]
    )
    matrix = success_matrix(result, data.class_names)
    off_diagonal = matrix.to_numpy()[~np.eye(4, dtype=bool)]
    assert np.isnan(np.diag(matrix.to_numpy())).all()
    present = ~np.isnan(off_diagonal)
    assert present.sum() >= 9 and np.mean(off_diagonal[present]) > 0.5
    metrics = summarize(result, data.clip_range, data.class_names)
    assert metrics["attack_success_rate"] == pytest.approx(np.mean(result.y_adv == result.y_target))


def test_deepfool_runs_the_studys_100_iterations_by_default() -> None:
    assert parse_config("deepfool", {}).max_iter == 100  # type: ignore[attr-defined]  # ART's default, as Grad-Attacks


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("nope", {}, "unknown attack 'nope'; choose one of fgsm, bim, pgd"),
        ("pgd", {"epsilon": "0.1"}, "pgd has no parameter epsilon; its parameters are eps, eps_step"),
        ("pgd", {"max_iter": "1.5"}, "max_iter='1.5' is not a valid int"),
        ("pgd", {"eps": "-0.1", "eps_step": "0.01"}, "eps must be a finite number >= 0"),
        ("pgd", {"eps": "0.1", "eps_step": "0"}, "eps_step must be a finite number > 0"),
        ("bim", {"max_iter": "0"}, "max_iter must be >= 1"),
        ("fgsm", {"norm": "1"}, "norm '1' is not supported"),
        ("fgsm", {"target": "2"}, "target class 2 is out of range for a model with 2 classes"),
        ("deepfool", {"overshoot": "-0.1"}, "overshoot must be >= 0"),
        ("deepfool", {"target": "1"}, "untargeted only"),
        ("square", {"eps": "0"}, "eps must be > 0"),
        ("universal", {"attacker": "jsma"}, "attacker 'jsma' is not supported"),
    ],
)
def test_bad_settings_fail_before_compute(tiny_image_model, name, params, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(AttackError, match=message):
        make_attack(name, tiny_image_model, parse_config(name, params), (0.0, 1.0), 8)


def test_bad_engine_and_victim_fail_before_compute(tiny_image_model, tiny_ecg_data) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(AttackError, match="deepfool has no engine 'gpu'; choose one of native, art"):
        make_attack("deepfool", tiny_image_model, parse_config("deepfool", {}), (0.0, 1.0), 8, "gpu")
    with pytest.raises(ModelError, match=r"takes inputs of shape \(16, 16, 1\), the data has shape \(256, 1\)"):
        make_attack("fgsm", tiny_image_model, parse_config("fgsm", {}), (0.0, 1.0), 8, input_shape=(256, 1))
    attack = make_attack("fgsm", tiny_image_model, parse_config("fgsm", {}), (0.0, 1.0), 8)
    with pytest.raises(ModelError, match="takes inputs of shape"):
        next(attack_batches(attack, tiny_image_model, tiny_ecg_data, np.full(len(tiny_ecg_data), -1), batch_size=8))


def test_families_declare_their_label_needs_and_settings_checks() -> None:
    """What the attack job reads from a family instead of branching on its name."""
    configs = {
        "pgd": {"eps": "0.05"}, "deepfool": {}, "ecgadv_type1": {"metric": "smooth"}, "ecgadv_type2": {"window": "300"},
    }  # fmt: skip
    labels = {name: ATTACKS[name].describe(parse_config(name, params)) for name, params in configs.items()}
    assert labels == {
        "pgd": "pgd eps=0.05", "deepfool": "deepfool", "ecgadv_type1": "ecgadv_type1 smooth",
        "ecgadv_type2": "ecgadv_type2 w=300",
    }  # fmt: skip
    # DGN is handed the victim's generator set, which says nothing about a transfer target: no white-box baseline
    assert ATTACKS["dgn"].needs == ("generators",) and not ATTACKS["dgn"].white_box_transfer
    assert all(spec.white_box_transfer and not spec.needs for name, spec in ATTACKS.items() if name != "dgn")
    odd = SimpleNamespace(universal_records="some")
    ATTACKS["pgd"].check(odd)  # reads no entry-point setting
    with pytest.raises(AttackError, match="universal_records 'some' is not one of correct, all"):
        ATTACKS["ecgadv_type2"].check(odd)
    with pytest.raises(AttackError, match="'pgd' is already registered"):
        register("pgd", PGDConfig, {})


def test_parse_config_coerces_strings() -> None:
    config = parse_config("pgd", {"eps": "0.5", "eps_step": "0.125", "max_iter": "7", "norm": "2", "target": "none"})
    assert config == PGDConfig(eps=0.5, eps_step=0.125, max_iter=7, norm="2", target=None)
    assert parse_config("pgd", {"target": "-1"}).target == -1
    with pytest.raises(AttackError, match="pgd: parameter max_iter='many' is not a valid int"):
        parse_config("pgd", {"max_iter": "many"})


def test_select_samples_is_deterministic_and_shards_partition(tiny_ecg_model, tiny_ecg_data) -> None:  # type: ignore[no-untyped-def]
    def select(shard: tuple[int, int]) -> Dataset:
        return select_samples(tiny_ecg_model, tiny_ecg_data, num_samples=20, selection="correct", shard=shard, seed=5)

    whole = select((0, 1))
    assert len(whole) == 20
    assert (np.asarray(tiny_ecg_model(whole.x)).argmax(axis=1) == whole.y).all()
    np.testing.assert_array_equal(select((0, 1)).ids, whole.ids)
    shards = [select((i, 3)) for i in range(3)]
    assert [len(s) for s in shards] == [7, 7, 6]
    assert sorted(np.concatenate([s.ids for s in shards])) == sorted(whole.ids)
    other_seed = select_samples(tiny_ecg_model, tiny_ecg_data, num_samples=20, selection="correct", seed=6)
    assert set(other_seed.ids) != set(whole.ids)


def test_first_per_class_takes_the_first_of_each_class_in_order() -> None:
    labels = np.array([0, 0, 1, 0, 1, 2, 0, 3])
    np.testing.assert_array_equal(first_per_class(labels, (2, 1, 5, 0)), [0, 1, 2, 5])
    check_selection("correct", None, (360, 360, 360, 220))
    with pytest.raises(AttackError, match="selection=balanced needs num_samples > 0 and no per_class"):
        check_selection("balanced", 4, (1, 2, 3))


def test_select_samples_per_class_keeps_the_first_correct_samples_of_each_class(tiny_ecg_model, tiny_ecg_data) -> None:  # type: ignore[no-untyped-def]
    chosen = select_samples(tiny_ecg_model, tiny_ecg_data, num_samples=None, selection="correct", per_class=(3, 2))
    correct = np.flatnonzero(np.asarray(tiny_ecg_model(tiny_ecg_data.x)).argmax(axis=1) == tiny_ecg_data.y)
    expected = np.sort(np.concatenate([correct[tiny_ecg_data.y[correct] == c][:n] for c, n in ((0, 3), (1, 2))]))
    np.testing.assert_array_equal(chosen.ids, tiny_ecg_data.ids[expected])


def test_selection_per_study(tiny_ecg_model, tiny_ecg_data) -> None:  # type: ignore[no-untyped-def]
    flipped = tiny_ecg_data.y.copy()
    flipped[:4] = (flipped[:4] + 1) % 4  # four samples the model now gets wrong
    data = dataclasses.replace(tiny_ecg_data, y=flipped)
    correct = np.asarray(tiny_ecg_model(data.x)).argmax(axis=1) == data.y

    def select(selection: str, num_samples: int | None, seed: int = 0) -> Dataset:
        return select_samples(tiny_ecg_model, data, num_samples=num_samples, selection=selection, seed=seed)

    # Grad-Attacks: num_samples / num_classes of each class, whether classified correctly or not, seeded.
    balanced = select("balanced", 20)
    assert np.bincount(balanced.y, minlength=4).tolist() == [5, 5, 5, 5]
    np.testing.assert_array_equal(select("balanced", 20).ids, balanced.ids)
    assert set(select("balanced", 20, seed=1).ids) != set(balanced.ids)
    # foe: the first and the last num_samples / 2, in data order.
    np.testing.assert_array_equal(select("first_last", 10).ids, np.concatenate([data.ids[:5], data.ids[-5:]]))
    # DeepCustom: every sample; ECGadv (the default): the correctly classified only.
    assert len(select("all", None)) == len(data) and correct.sum() == len(data) - 4
    np.testing.assert_array_equal(select("correct", None).ids, data.ids[correct])
    refused = (("best", 4, "unknown selection 'best'"), ("balanced", 0, "num_samples > 0"))
    for selection, num_samples, message in refused:
        with pytest.raises(AttackError, match=message):
            select(selection, num_samples)


@pytest.mark.parametrize(
    ("input_shape", "num_samples", "expected"),
    [((28, 28, 1), 1000, 512), ((28, 28, 1), 40, 40), ((9000, 1), 1000, 116), ((224, 224, 3), 1000, 6)],
)
def test_auto_batch_size(input_shape: tuple[int, ...], num_samples: int, expected: int) -> None:
    # 1 GiB / (4 bytes x 256 x values per sample), capped at 512 and at the number of samples
    assert auto_batch_size(input_shape, num_samples) == expected


def test_expand_targets() -> None:
    x = np.zeros((2, 3), dtype=np.float32)
    data = Dataset("d", "all", x, np.array([0, 2]), ("a", "b", "c"), (0.0, 1.0), np.array(["s0", "s1"]), "made")
    expanded, targets = expand_targets(data, -1, 3)
    assert list(expanded.ids) == ["s0->1", "s0->2", "s1->0", "s1->1"]
    assert list(targets) == [1, 2, 0, 1] and list(expanded.y) == [0, 0, 2, 2]
    assert list(expand_targets(data, None, 3)[1]) == [-1, -1]
    assert list(expand_targets(data, 1, 3)[1]) == [1, 1]
    with pytest.raises(AttackError, match="target class 3 is out of range"):
        expand_targets(data, 3, 3)


def test_resumed_run_equals_uninterrupted_run(tiny_image_model, tiny_image_data) -> None:  # type: ignore[no-untyped-def]
    """Kill after two batches, restart skipping them: same result as one run (random starts included)."""
    data = tiny_image_data.subset(slice(0, 20))
    y_target = np.full(len(data), -1)
    attack = make_attack("pgd", tiny_image_model, PGDConfig(eps=0.2, eps_step=0.1, max_iter=2), data.clip_range, 6)

    def run(skip: set[int], stop_after: int | None = None) -> dict[int, AttackResult]:
        done: dict[int, AttackResult] = {}
        for index, result in attack_batches(
            attack, tiny_image_model, data, y_target, batch_size=6, skip=skip, seed=11, progress=False
        ):
            done[index] = result
            if len(done) == stop_after:
                break
        return done

    whole = run(set())
    first = run(set(), stop_after=2)
    rest = run(set(first))
    assert sorted(whole) == [0, 1, 2, 3] and sorted(first) == [0, 1] and sorted(rest) == [2, 3]
    joined = AttackResult.concatenate([{**first, **rest}[i] for i in range(4)])
    expected = AttackResult.concatenate([whole[i] for i in range(4)])
    np.testing.assert_array_equal(joined.x_adv, expected.x_adv)
    np.testing.assert_array_equal(joined.ids, data.ids)
    for field in ("y_true", "y_clean", "y_adv", "y_target", "p_clean", "p_adv"):
        np.testing.assert_array_equal(getattr(joined, field), getattr(expected, field))
    assert (joined.seconds > 0).all() and math.isclose(joined.seconds[0], joined.seconds[5])


def test_native_cw_l2_matches_art(tiny_image_model, tiny_image_data) -> None:  # type: ignore[no-untyped-def]
    """Same inputs: the same samples fooled (within 2 points) and median L2 within 5% of ART's."""
    x, y = tiny_image_data.x[:12], tiny_image_data.y[:12]
    config = parse_config(
        "cw_l2", {"initial_const": "10", "binary_search_steps": "6", "max_iter": "10", "learning_rate": "0.1"}
    )
    found = {}
    for engine in ("native", "art"):
        attack = make_attack("cw_l2", tiny_image_model, config, tiny_image_data.clip_range, 12, engine)
        x_adv = attack.generate(x, y, None)
        fooled = np.asarray(tiny_image_model(x_adv)).argmax(axis=1) != y
        found[engine] = (fooled, np.median(np.linalg.norm((x_adv - x).reshape(len(x), -1), axis=1)[fooled]))
    assert abs(found["native"][0].mean() - found["art"][0].mean()) <= 0.02 and found["native"][0].all()
    assert found["native"][1] == pytest.approx(found["art"][1], rel=0.05)


@pytest.mark.parametrize("victim", ["image", "ecg"])
def test_native_deepfool_matches_art(victims, victim) -> None:  # type: ignore[no-untyped-def]
    """Same inputs: the same samples fooled (within 2 points) and median L2 within 5% of ART's DeepFool."""
    model, data = victims[victim]
    x, y = data.x[:32], data.y[:32]
    config = parse_config("deepfool", {"max_iter": "20"})
    found = {}
    for engine in ("native", "art"):
        attack = make_attack("deepfool", model, config, data.clip_range, 32, engine, input_shape=data.input_shape)
        x_adv = attack.generate(x, y, None)
        fooled = np.asarray(model(x_adv)).argmax(axis=1) != y
        found[engine] = (fooled, np.median(np.linalg.norm((x_adv - x).reshape(len(x), -1), axis=1)[fooled]))
    assert found["native"][0].mean() >= 0.9
    assert abs(found["native"][0].mean() - found["art"][0].mean()) <= 0.02
    assert found["native"][1] == pytest.approx(found["art"][1], rel=0.05)


# APGD-CE budgets (victim units) where some samples resist 10 iterations: robust accuracy strictly between 0 and 1
APGD_PARTIAL_EPS = {"image": 0.25, "ecg": 0.5}


@pytest.mark.parametrize("victim", ["image", "ecg"])
def test_native_apgd_ce_matches_art(victims, victim) -> None:  # type: ignore[no-untyped-def]
    """Same inputs and seed: robust accuracy under APGD-CE within 2 points of ART's."""
    model, data = victims[victim]
    x, y = data.x[:32], data.y[:32]
    eps = APGD_PARTIAL_EPS[victim]
    config = parse_config("apgd", {"eps": str(eps), "eps_step": str(eps / 4), "max_iter": "10", "num_random_init": "1"})
    robust = {}
    for engine in ("native", "art"):
        keras.utils.set_random_seed(0)
        attack = make_attack("apgd", model, config, data.clip_range, 32, engine, input_shape=data.input_shape)
        robust[engine] = float(np.mean(np.asarray(model(attack.generate(x, y, None))).argmax(axis=1) == y))
    assert 0.0 < robust["native"] < 1.0, "the budget must leave the comparison something to compare"
    assert abs(robust["native"] - robust["art"]) <= 0.02
