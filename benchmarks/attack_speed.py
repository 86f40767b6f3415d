"""How close each gradient attack gets to the bare cost of its gradient passes, beside ART and Foolbox.

Attacks PGD (L-inf), C&W-L2, DeepFool and APGD-CE on two untrained victims: the small CNN (28x28x1, 2 classes)
and Andreotti's ECG ResNet (`ecg_resnet`, 6 blocks, at a reduced length of 1500 samples, 4 classes; inputs in
[-5, 5] so that every library can clip). Engines: medadv native, medadv's ART engine (medadv's batch), ART with
its default batch size (PGD and APGD 32, C&W and DeepFool 1; batch-size-1 runs are timed on 16 samples, 4 with
--quick, and scaled to the batch, as they are linear in it) and Foolbox 3.3.4 (`pip install .[bench]`; it has no APGD).

Each time is a multiple of the bound: the attack's nominal gradient passes x the time of one bare compiled
forward+backward pass of the batch. Passes: PGD and APGD max_iter, C&W binary_search_steps x max_iter, DeepFool
max_iter x its candidate classes. C&W and DeepFool stop early once every sample is done, so they can beat 1.
Each time is the fastest of `repeats` interleaved rounds after a warm-up, as the machine is shared.

RESULT: native_ratio (PGD), cw_native_ratio, deepfool_native_ratio, apgd_native_ratio (worst victim each; goal
<= 1.3), native_over_foolbox (native / Foolbox, worst attack and victim; goal <= 1), speedup_vs_art_default (ART
with its defaults / native, worst case) and cw_speedup_vs_art (medadv's ART engine C&W / native, worst victim;
goal >= 10).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import medadv  # noqa: F401  (sets the Keras backend and quiets TensorFlow before either loads)

# isort: split
import keras
import numpy as np
import tensorflow as tf
from foolbox.attacks.carlini_wagner import L2CarliniWagnerAttack
from foolbox.attacks.deepfool import L2DeepFoolAttack
from foolbox.attacks.projected_gradient_descent import LinfProjectedGradientDescentAttack as LinfPGD
from foolbox.models.tensorflow import TensorFlowModel

from medadv.attacks import make_attack, parse_config
from medadv.models import build_model, logits_model

ENGINES = ("native", "art", "art_default", "foolbox")


@dataclass(frozen=True)
class Victim:
    arch: str
    input_shape: tuple[int, ...]
    num_classes: int
    clip_range: tuple[float, float]
    eps: float
    options: dict[str, Any]


VICTIMS = {
    "small_cnn": Victim("small_cnn", (28, 28, 1), 2, (0.0, 1.0), 8 / 255, {}),
    "ecg_resnet": Victim("ecg_resnet", (1500, 1), 4, (-5.0, 5.0), 0.1, {"num_blocks": 6}),
}


@dataclass(frozen=True)
class Setup:
    """One attack's medadv settings, nominal gradient passes, ART's default batch size and Foolbox's attack."""

    params: dict[str, float]
    passes: int
    art_default_batch: int
    foolbox: Callable[[], Any] | None
    foolbox_eps: float | None


def setups(victim: Victim, max_iter: int) -> dict[str, Setup]:
    eps, step = victim.eps, victim.eps / 4
    lp = {"eps": eps, "eps_step": step, "max_iter": max_iter, "num_random_init": 1}
    cw = {"binary_search_steps": 3, "max_iter": 10, "learning_rate": 0.01, "initial_const": 0.01}
    candidates = min(10, victim.num_classes)
    return {
        "pgd": Setup(lp, max_iter, 32, lambda: LinfPGD(abs_stepsize=step, steps=max_iter), eps),
        "cw_l2": Setup(
            cw,
            30,
            1,
            lambda: L2CarliniWagnerAttack(binary_search_steps=3, steps=10, stepsize=0.01, initial_const=0.01),
            None,
        ),
        "deepfool": Setup(
            {"max_iter": 20, "nb_grads": 10},
            20 * candidates,
            1,
            lambda: L2DeepFoolAttack(steps=20, candidates=candidates, overshoot=0.02),
            None,
        ),
        "apgd": Setup(lp, max_iter, 32, None, None),
    }


def fastest(
    runs: dict[str, Callable[[], object]], repeats: int, warm_ups: dict[str, Callable[[], object]] | None = None
) -> dict[str, float]:
    """Best wall time of each callable over `repeats` interleaved rounds, after one warm-up call each (or its
    entry of `warm_ups`: ART runs eagerly, so two samples warm it up as well as the whole batch)."""
    for name, run in runs.items():
        (warm_ups or {}).get(name, run)()
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeats):
        for name, run in runs.items():
            began = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - began)
    return best


def medadv_run(
    name: str, config: Any, model: keras.Model, victim: Victim, engine: str, size: int, x: np.ndarray, y: np.ndarray
) -> tuple[Callable[[], object], Callable[[], object]]:
    """One medadv attack at batch size `size` on `x`, and a warm-up call: the same, or two samples for ART."""
    attack = make_attack(name, model, config, victim.clip_range, size, engine, input_shape=victim.input_shape)
    warm = len(x) if engine == "native" else 2
    return (lambda: attack.generate(x, y, None)), (lambda: attack.generate(x[:warm], y[:warm], None))


def foolbox_run(attack: Any, fmodel: Any, x: tf.Tensor, y: tf.Tensor, epsilon: float | None) -> Callable[[], object]:
    return lambda: attack(fmodel, x, y, epsilons=epsilon)


def measure(
    victim: Victim, batch: int, max_iter: int, repeats: int, scaled_samples: int
) -> dict[str, dict[str, float]]:
    """Ratios to the bound, per attack and engine (NaN where the engine lacks the attack)."""
    keras.utils.set_random_seed(0)
    model = build_model(victim.arch, victim.input_shape, victim.num_classes, **victim.options)
    rng = np.random.default_rng(0)
    low, high = victim.clip_range
    x = np.clip(rng.normal(0.5, 0.5, (batch, *victim.input_shape)), low, high).astype(np.float32)
    y = np.asarray(model(x)).argmax(axis=1)
    logits = logits_model(model)
    x_tf, y_tf = tf.constant(x), tf.constant(y)

    def bare_pass() -> tf.Tensor:
        with tf.GradientTape() as tape:
            tape.watch(x_tf)
            loss = keras.losses.sparse_categorical_crossentropy(y_tf, logits(x_tf, training=False), from_logits=True)
        return tape.gradient(loss, x_tf)

    forward_backward = tf.function(bare_pass)
    pass_time = fastest({"pass": lambda: forward_backward().numpy()}, repeats + 2)["pass"]
    fmodel = TensorFlowModel(logits, bounds=victim.clip_range)
    table: dict[str, dict[str, float]] = {}
    for name, setup in setups(victim, max_iter).items():
        config = parse_config(name, {key: str(value) for key, value in setup.params.items()})

        scaled = scaled_samples if setup.art_default_batch == 1 else batch
        engines = {
            "native": medadv_run(name, config, model, victim, "native", batch, x, y),
            "art": medadv_run(name, config, model, victim, "art", batch, x, y),
            "art_default": medadv_run(
                name, config, model, victim, "art", setup.art_default_batch, x[:scaled], y[:scaled]
            ),
        }
        runs = {engine: run for engine, (run, _) in engines.items()}
        if setup.foolbox is not None:
            runs["foolbox"] = foolbox_run(setup.foolbox(), fmodel, x_tf, y_tf, setup.foolbox_eps)
        times = fastest(runs, repeats, {engine: warm for engine, (_, warm) in engines.items()})
        times["art_default"] *= batch / scaled
        bound = setup.passes * pass_time
        table[name] = {engine: times.get(engine, float("nan")) / bound for engine in ENGINES}
        print(f"  {victim.arch} {name}: bound {bound:.3f} s, " + ", ".join(f"{k} {v:.3f} s" for k, v in times.items()))
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller batches, fewer steps, one timed round")
    args = parser.parse_args()
    max_iter, repeats, scaled = (10, 1, 4) if args.quick else (20, 3, 16)
    batches = {"small_cnn": 64, "ecg_resnet": 16} if args.quick else {"small_cnn": 256, "ecg_resnet": 128}
    print(f"{os.cpu_count()} CPU cores, PGD/APGD-{max_iter}, C&W-L2 3 x 10, DeepFool 20, best of {repeats}")
    results = {name: measure(victim, batches[name], max_iter, repeats, scaled) for name, victim in VICTIMS.items()}

    print("\n| victim, batch | attack | medadv native | medadv ART engine | ART, its defaults | Foolbox 3.3.4 |")
    print("|---|---|---|---|---|---|")
    for victim, table in results.items():
        for attack, ratios in table.items():
            cells = " | ".join("—" if np.isnan(ratios[e]) else f"{ratios[e]:.2f}" for e in ENGINES)
            print(f"| {victim}, {batches[victim]} | {attack} | {cells} |")

    rows = [ratios for table in results.values() for ratios in table.values()]

    def worst_native(attack: str) -> float:
        return max(table[attack]["native"] for table in results.values())

    over_foolbox = max(r["native"] / r["foolbox"] for r in rows if not np.isnan(r["foolbox"]))
    speedup = min(r["art_default"] / r["native"] for r in rows)
    cw_speedup = min(table["cw_l2"]["art"] / table["cw_l2"]["native"] for table in results.values())
    print(
        f"RESULT native_ratio={worst_native('pgd'):.3f} cw_native_ratio={worst_native('cw_l2'):.3f} "
        f"deepfool_native_ratio={worst_native('deepfool'):.3f} apgd_native_ratio={worst_native('apgd'):.3f} "
        f"native_over_foolbox={over_foolbox:.3f} speedup_vs_art_default={speedup:.3f} "
        f"cw_speedup_vs_art={cw_speedup:.3f}"
    )


if __name__ == "__main__":
    main()
