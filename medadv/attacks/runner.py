"""Running an attack over a data set: choosing the samples, sharding, targets, batching, timing, resuming.

No MLflow here: `medadv.tracking` logs each batch this module yields and, on restart, passes the
indices of the batches it already logged as `skip`. Each batch is seeded from (seed, batch index),
so a resumed run draws the same random starts as an uninterrupted one.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Generator
from dataclasses import replace

import keras
import numpy as np
from tqdm import tqdm

from medadv.attacks.base import Attack, AttackError, Victim, as_victim
from medadv.attacks.result import AttackResult
from medadv.data.base import Dataset


def predict(model: keras.Model, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Class probabilities, batch by batch without Keras' progress output."""
    if len(x) == 0:
        return np.zeros((0, int(model.output_shape[-1])), dtype=np.float32)
    return np.concatenate(
        [np.asarray(model(x[i : i + batch_size], training=False)) for i in range(0, len(x), batch_size)]
    )


SELECTIONS = ("correct", "balanced", "first_last", "all")


def select_samples(
    model: keras.Model | Victim,
    data: Dataset,
    *,
    num_samples: int | None,
    selection: str = "correct",
    shard: tuple[int, int] = (0, 1),
    seed: int = 0,
    per_class: tuple[int, ...] | None = None,
) -> Dataset:
    """The samples to attack, the same for the same arguments, chosen as each study chose them.

    `selection`: "correct" (ECGadv) keeps those the model classifies correctly, "all" (DeepCustom) keeps
    every sample; either then takes the first `per_class[c]` of each class c in data order or draws
    `num_samples` at random with `seed` (None or <= 0 keeps all, in order). "balanced" (Grad-Attacks) draws
    num_samples / num_classes of each class at random with `seed`; "first_last" (foe) takes the first and the
    last num_samples / 2 in data order. Then every n-th from the i-th for shard (i, n), so the n shards
    partition the selection exactly. A plain Keras `model` is checked first (a `Victim` was when it was made).
    """
    victim = as_victim(model, data.input_shape)
    check_selection(selection, num_samples, per_class)
    count = max(num_samples or 0, 0)
    index = np.arange(len(data))
    if selection == "correct":
        index = index[predict(victim.model, data.x).argmax(axis=1) == data.y]
    if selection == "balanced":
        index = balanced_sample(data.y, count // data.num_classes, seed)
    elif selection == "first_last":
        half = count // 2
        index = index if 2 * half >= len(index) else np.concatenate([index[:half], index[len(index) - half :]])
    elif per_class is not None:
        index = index[first_per_class(data.y[index], per_class)]
    elif 0 < count < len(index):
        chosen = np.random.default_rng(seed).choice(len(index), size=count, replace=False)
        index = index[np.sort(chosen)]
    shard_index, shard_count = shard
    return data.subset(index[shard_index::shard_count])


def check_selection(selection: str, num_samples: int | None, per_class: tuple[int, ...] | None) -> None:
    """Refuse an unknown selection, or a count-based one without a count."""
    if selection not in SELECTIONS:
        raise AttackError(f"unknown selection {selection!r}; choose one of {', '.join(SELECTIONS)}")
    if selection in ("balanced", "first_last") and (per_class is not None or not num_samples or num_samples < 1):
        raise AttackError(f"selection={selection} needs num_samples > 0 and no per_class")


def balanced_sample(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Positions of `per_class` labels of each class drawn at random with `seed` (all of a smaller class), in order.

    Grad-Attacks drew 100 / number of classes test images of each class (`generate_attacked_images.py`).
    """
    rng = np.random.default_rng(seed)
    chosen = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        chosen.append(rng.choice(members, size=min(per_class, len(members)), replace=False))
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def first_per_class(labels: np.ndarray, counts: tuple[int, ...]) -> np.ndarray:
    """Positions of the first `counts[c]` labels equal to c, for every class c, in order.

    ECGadv's study attacked the first 360 correctly classified records of A, N and O and 220 of ~.
    """
    chosen = [np.flatnonzero(np.asarray(labels) == c)[:count] for c, count in enumerate(counts)]
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def expand_targets(data: Dataset, target: int | None, num_classes: int) -> tuple[Dataset, np.ndarray]:
    """The samples and one target class per sample (-1 for untargeted).

    `target=-1` attacks each sample towards every other class in turn (ECGadv's source x target
    matrix): the sample is repeated once per other class, its id suffixed with "->t".
    """
    if target is None:
        return data, np.full(len(data), -1, dtype=np.int64)
    if target != -1:
        if not 0 <= target < num_classes:
            raise AttackError(f"target class {target} is out of range for a model with {num_classes} classes")
        return data, np.full(len(data), target, dtype=np.int64)
    pairs = [(i, t) for i in range(len(data)) for t in range(num_classes) if t != data.y[i]]
    rows = np.array([i for i, _ in pairs], dtype=np.int64)
    targets = np.array([t for _, t in pairs], dtype=np.int64)
    expanded = data.subset(rows)
    ids = np.array([f"{sample_id}->{t}" for sample_id, t in zip(expanded.ids, targets, strict=True)])
    return replace(expanded, ids=ids), targets


def auto_batch_size(input_shape: tuple[int, ...], num_samples: int, memory_bytes: int = 1 << 30) -> int:
    """A batch size that fits `memory_bytes` with room for activations (about 256 floats kept per input value).

    Capped at 512 and at the number of samples; never ART's defaults of 1 or 32 out of habit.
    """
    per_sample = 4 * 256 * math.prod(input_shape)
    return max(1, min(512, num_samples, memory_bytes // per_sample))


def attack_batches(
    attack: Attack,
    model: keras.Model | Victim,
    data: Dataset,
    y_target: np.ndarray,
    *,
    batch_size: int,
    skip: set[int] | frozenset[int] = frozenset(),
    seed: int = 0,
    progress: bool = True,
) -> Generator[tuple[int, AttackResult], None, None]:
    """Attack `data` batch by batch, yielding (batch index, result of that batch), skipping batches in `skip`.

    Untargeted when every `y_target` is -1. Before each batch the random generators are seeded
    from (seed, batch index). `seconds` is the wall time of the batch's `generate` call shared
    equally by its samples. A plain Keras `model` is checked first (a `Victim` was when it was made).
    """
    victim = as_victim(model, data.input_shape)
    if len(y_target) != len(data):
        raise AttackError(f"y_target has {len(y_target)} entries for {len(data)} samples")
    if batch_size < 1:
        raise AttackError(f"batch_size must be >= 1, got {batch_size}")
    targeted = bool(len(y_target)) and bool((y_target >= 0).all())
    if not targeted and (y_target >= 0).any():
        raise AttackError("y_target mixes targeted (>= 0) and untargeted (-1) samples")
    starts = range(0, len(data), batch_size)
    todo = sum(min(batch_size, len(data) - start) for batch, start in enumerate(starts) if batch not in skip)
    with tqdm(total=todo, unit="sample", desc="attack", disable=not progress, file=sys.stderr) as bar:
        for batch, start in enumerate(starts):
            if batch in skip:
                continue
            rows = slice(start, start + batch_size)
            x, y, target = data.x[rows], data.y[rows], y_target[rows]
            keras.utils.set_random_seed(int(np.random.SeedSequence([seed, batch]).generate_state(1)[0]))
            began = time.perf_counter()
            x_adv = attack.generate(x, y, target if targeted else None)
            seconds = (time.perf_counter() - began) / len(x)
            probs_clean, probs_adv = predict(victim.model, x, batch_size), predict(victim.model, x_adv, batch_size)
            yield (
                batch,
                AttackResult(
                    x=x,
                    x_adv=x_adv,
                    ids=data.ids[rows],
                    y_true=y,
                    y_clean=probs_clean.argmax(axis=1),
                    y_adv=probs_adv.argmax(axis=1),
                    y_target=target,
                    p_clean=probs_clean.max(axis=1),
                    p_adv=probs_adv.max(axis=1),
                    seconds=np.full(len(x), seconds),
                    class_names=data.class_names,
                    clip_range=data.clip_range,
                ),
            )
            bar.update(len(x))
