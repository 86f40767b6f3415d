"""How much faster DeepCustom's generators craft adversarial samples than PGD-20, on the same victim and samples.

The study's "fast" claim (target dgn_over_pgd <= 0.1). For each of the study's two targets, CIFAR-10's CNN and
MNIST's 5x30 dense network, it trains a victim and one lrp generator per class briefly on random inputs (the
time a forward pass takes does not depend on what the weights learnt, so no data set is needed), then times
  - dgn: generating N samples, each through its class's generator, clipped to the eps-ball and [0, 1];
  - pgd: PGD-20 on the same N samples, medadv's fused native engine (the strictest baseline);
  - art_pgd: the same PGD-20 through ART (the study's engine).
Times exclude tracing (a warm-up call first) and are the fastest of a few interleaved repeats, as the machine is
shared. A generator costs a fixed forward pass whatever the victim, while PGD costs 20 of the victim's
forward+backward passes: the ratio is small for a convolutional victim and can exceed 1 for a tiny dense one.
Last line: RESULT dgn_over_pgd (CIFAR CNN, native PGD) and the other ratios.
"""

from __future__ import annotations

import argparse
import os

import medadv  # noqa: F401  (sets the Keras backend and quiets TensorFlow before either loads)

# isort: split
import keras
import numpy as np
from attack_speed import fastest  # the shared timing helper of benchmarks/

from medadv.attacks import make_attack
from medadv.attacks.dgn import GeneratorConfig, generate, train_generators
from medadv.attacks.native import PGDConfig
from medadv.models import build_model

# name -> (victim architecture, input shape, eps, PGD step): the study's MNIST and CIFAR-10 settings
TARGETS = {
    "cifar_cnn": ("cifar_cnn", (32, 32, 3), 8 / 255, 2 / 255),
    "mnist_dense": ("mnist_dense", (28, 28, 1), 0.3, 0.01),
}


def measure(target: str, n: int, train_per_class: int, repeats: int) -> dict[str, float]:
    """Best wall seconds of dgn, pgd and art_pgd on `n` samples for one target."""
    arch, shape, eps, eps_step = TARGETS[target]
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (n, *shape)).astype(np.float32)
    y = rng.integers(0, 10, n)
    keras.utils.set_random_seed(0)
    victim = build_model(arch, shape, 10)
    victim.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    victim.fit(x, y, epochs=1, batch_size=128, verbose=0)
    train = np.concatenate([np.flatnonzero(y == c)[:train_per_class] for c in range(10)])
    config = GeneratorConfig(loss="lrp", eps=eps, top_k=20, epochs=1, batch_size=50, learning_rate=1e-3)
    generators = {c: t.model for c, t in train_generators(victim, x[train], y[train], config).items()}

    pgd = PGDConfig(eps=eps, eps_step=eps_step, max_iter=20, num_random_init=1)
    native = make_attack("pgd", victim, pgd, (0.0, 1.0), 256, engine="native")
    art = make_attack("pgd", victim, pgd, (0.0, 1.0), 256, engine="art")
    wall, _ = fastest(
        {
            "dgn": lambda: generate(generators, x, y, eps=eps, clip_range=(0.0, 1.0), batch_size=256),
            "pgd": lambda: native.generate(x, y, None),
            "art_pgd": lambda: art.generate(x, y, None),
        },
        repeats,
    )
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples and repeats (under a minute)")
    args = parser.parse_args()
    sizes = {"cifar_cnn": 200, "mnist_dense": 1000} if args.quick else {"cifar_cnn": 1000, "mnist_dense": 10000}
    train_per_class, repeats = (20, 1) if args.quick else (100, 3)

    print(f"{os.cpu_count()} CPU cores, best of {repeats} after a warm-up; PGD-20 with one random start")
    ratios = {}
    for target, n in sizes.items():
        wall = measure(target, n, train_per_class, repeats)
        ratios[target] = (wall["dgn"] / wall["pgd"], wall["dgn"] / wall["art_pgd"])
        print(
            f"{target}, {n} samples: dgn {wall['dgn']:.3f} s, native PGD-20 {wall['pgd']:.3f} s, "
            f"ART PGD-20 {wall['art_pgd']:.3f} s -> dgn/pgd {ratios[target][0]:.3f} (target <= 0.1), "
            f"dgn/art_pgd {ratios[target][1]:.3f}"
        )
    print(
        f"RESULT dgn_over_pgd={ratios['cifar_cnn'][0]:.4f} dgn_over_art_pgd={ratios['cifar_cnn'][1]:.4f} "
        f"dgn_over_pgd_mnist_dense={ratios['mnist_dense'][0]:.4f} "
        f"dgn_over_art_pgd_mnist_dense={ratios['mnist_dense'][1]:.4f}"
    )


if __name__ == "__main__":
    main()
