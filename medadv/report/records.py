"""What the report is built from: plain records of runs, with the artifacts the report reads already loaded.

`medadv.jobs.evaluate` turns tracked runs into these records (loading what `needs` names); every table
of the report is a pure function of them. Here too: how a run is labelled, and how the shards of one
sharded attack join (of two runs of one shard the newer counts; each sample id once).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from medadv.attacks.result import AttackResult, TargetProbabilities
from medadv.contract import ENGINE_TAG, MODEL_VERSION_PARAM, TARGETED_TAG, TRANSFER_VERSIONS_PARAM
from medadv.settings import Shard


@dataclass(frozen=True, kw_only=True)
class RunRecord:
    """One run as the report reads it: its facts, and the artifacts the report needs (None: not loaded)."""

    run_id: str
    step: str = "attack"  # train, attack or gradcam
    name: str = ""
    status: str = "FINISHED"
    start_time: int = 0  # milliseconds since the epoch: of two runs of one shard the newer counts
    params: Mapping[str, str] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    result: AttackResult | None = None  # the attack's result (read for shards, which are joined)
    success: pd.DataFrame | None = None  # the targeted attack's success matrix, source x target class
    transfer: pd.DataFrame | None = None  # the attack replayed on each transfer target, by target model
    # a shard's transfer targets' probabilities on its samples, by target URI (merged shards are scored from them)
    transfer_probabilities: Mapping[str, TargetProbabilities] | None = None
    lacking: tuple[str, ...] = ()  # artifacts the report needs that the run did not log


@dataclass(frozen=True, kw_only=True)
class ModelRecord:
    """A model the attacks name, with its registered version and the run that trained it (None: unknown)."""

    uri: str
    version: str = ""  # NAME/VERSION where the model is registered
    version_tags: Mapping[str, str] = field(default_factory=dict)
    train_run: RunRecord | None = None


@dataclass(frozen=True, kw_only=True)
class Heatmaps:
    """A gradcam run's maps of an attack's clean and adversarial inputs, (n, height, width) in [0, 1], by sample id."""

    ids: np.ndarray
    clean: np.ndarray
    adversarial: np.ndarray


@dataclass(frozen=True, kw_only=True)
class Example:
    """An attack shown in the report's examples, with the figures its runs logged (PNG bytes) or, for an image
    attack a gradcam run explained, its result and maps, drawn as one grid."""

    attack: RunRecord
    perturbations: bytes | None = None  # clean, adversarial and perturbation of a few samples
    ecg_overlays: bytes | None = None  # clean and adversarial ECGs overlaid
    gradcam: bytes | None = None  # Grad-CAM of the clean and adversarial inputs, where a gradcam run explained it
    result: AttackResult | None = None  # image attacks with a gradcam run: the grid's images ...
    heatmaps: Heatmaps | None = None  # ... and its maps


def number(text: str | None) -> float:
    """A numeric parameter, NaN where it is absent or not a number (an attack without eps)."""
    try:
        return float(text) if text is not None else math.nan
    except ValueError:
        return math.nan


def shard_of(record: RunRecord) -> Shard:
    """(i, n): the run attacked the i-th of n shares of the samples; (0, 1) when unsharded."""
    return Shard.parse(record.params.get("shard", "0/1"))


def model_of(record: RunRecord) -> str:
    """The model version the run used; runs logged before versions were pinned give their URI as it was."""
    return record.params.get(MODEL_VERSION_PARAM) or record.params.get("model", "")


def transfer_targets(record: RunRecord) -> list[str]:
    """The models the attack was replayed on: the versions it pinned, else (runs from before) the URIs given."""
    params = record.params
    return params.get(TRANSFER_VERSIONS_PARAM, params.get("transfer_to", "")).split()


def needs(record: RunRecord) -> tuple[str, ...]:
    """The artifacts (`RunRecord` fields) the report reads of a finished attack run: a shard's result, to join
    it with its siblings, and its transfer targets' probabilities, to score them on the joined samples; an
    unsharded run's success matrix (targeted) and transfer table, as logged."""
    transfer = transfer_targets(record)
    if shard_of(record)[1] > 1:
        return ("result",) + (("transfer_probabilities",) if transfer else ())
    targeted = ("success",) if record.tags.get(TARGETED_TAG) == "true" else ()
    return targeted + (("transfer",) if transfer else ())


def model_uris(attacks: Iterable[RunRecord]) -> set[str]:
    """Every model finished attacks name: the victims and the transfer targets."""
    uris: set[str] = set()
    for record in attacks:
        if record.status == "FINISHED":
            uris |= {model_of(record), *transfer_targets(record)}
            uris |= set() if record.transfer is None else {str(uri) for uri in record.transfer.index}
    return uris


_REGISTERED = re.compile(r"models:/([^/@]+)(?:@(.+)|/(\d+))")


def short_model(uri: str) -> str:
    """A model URI as a legend or table cell shows it: models:/NAME/3 -> NAME v3, models:/NAME@alias ->
    NAME@alias, runs:/<id>/path -> run <first 8 characters of id>; anything else as it is."""
    if version := re.fullmatch(r"models:/([^/@]+)/(\d+)", uri):
        return f"{version[1]} v{version[2]}"
    if alias := re.fullmatch(r"models:/([^/@]+@.+)", uri):
        return alias[1]
    if logged := re.fullmatch(r"runs:/([0-9a-f]+)/.*", uri):
        return f"run {logged[1][:8]}"
    return uri


def model_label(given: str, pinned: str) -> str:
    """`NAME v3 (@candidate at the time)` for a pinned alias, `NAME v3` for a version, else the URI."""
    version = _REGISTERED.fullmatch(pinned)
    if not version or not version[3]:
        return pinned
    alias = _REGISTERED.fullmatch(given)
    at_the_time = f" (@{alias[2]} at the time)" if alias and alias[2] else ""
    return f"{version[1]} v{version[3]}{at_the_time}"


def describe(record: RunRecord) -> dict[str, object]:
    """The columns that say which attack a run is, and its label in matrices: attack[ metric][ w=window]@eps
    [target t] (its variant: the label without eps and target)."""
    params = record.params
    eps, window = number(params.get("eps")), number(params.get("window"))
    target = params.get("target", "None")
    target = "" if target == "None" else target
    variant = params.get("attack", "")
    if "metric" in params:  # ECGadv Type I's distance
        variant += f" {params['metric']}"
    if math.isfinite(window):  # ECGadv Type II's window
        variant += f" w={window:g}"
    label = variant + (f"@{eps:g}" if math.isfinite(eps) else "") + (f" target {target}" if target else "")
    model = model_of(record)
    return {
        "model": model,
        "model_label": model_label(params.get("model", ""), model),
        **{key: params.get(key, "") for key in ("dataset", "split", "attack")},
        "engine": record.tags.get(ENGINE_TAG, ""),  # the engine that ran, not the (maybe empty) parameter
        "eps": eps,
        "window": window,
        "target": target,
        "label": label,
        "variant": variant,
    }


def target_class(target: str, class_names: tuple[str, ...]) -> str:
    """The target as a reader knows it: its class name, "each other class" for -1, empty when untargeted."""
    try:
        index = int(target)
    except ValueError:
        return target
    if index < 0:
        return "each other class"
    return class_names[index] if index < len(class_names) else target


def newest_shards(runs: Iterable[RunRecord]) -> tuple[dict[int, RunRecord], list[tuple[RunRecord, RunRecord]]]:
    """The newest run of each shard index (by start time), and each older run with the run that superseded it."""
    newest: dict[int, RunRecord] = {}
    superseded = []
    for run in sorted(runs, key=lambda r: r.start_time):
        index = shard_of(run)[0]
        if index in newest:
            superseded.append((newest[index], run))
        newest[index] = run
    return newest, superseded


def join_shards(parts: list[AttackResult]) -> tuple[AttackResult, int]:
    """The shards' results joined in order with each sample id once (where it first occurs), and how many
    samples were dropped as seen before (a launcher that gave two shards the same samples)."""
    joined = AttackResult.concatenate(parts)
    _, first_of_each = np.unique(joined.ids, return_index=True)
    result = joined.take(np.sort(first_of_each))
    return result, len(joined) - len(result)
