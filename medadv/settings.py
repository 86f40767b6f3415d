"""The entry points' settings: checked, and their strings typed, when they are made.

This module imports neither TensorFlow, Keras, ART nor MLflow, so a step answers `--help` and refuses a bad
name, number, option string or data folder in a fraction of a second; the jobs (`medadv.jobs.*`) import it.
The fields keep the text as given (what a run logs as its params); the typed values (a `Shard`, per-class
counts, option strings by key, the loader's options, a study's protocol) are read from the settings, so no job
or library code parses a command-line string again.
Each field's help text is declared beside it with `setting(default, help)`: `--help` prints it with the default.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, NamedTuple, TypeVar

from medadv.data import DataError, loader_options
from medadv.errors import MedadvError
from medadv.options import parse_params
from medadv.ranges import SEED_MAX, Bounds, check_ranges
from medadv.studies import Protocol, protocol

T = TypeVar("T")

# The registered attacks and architectures by name; their registries (medadv.attacks.ATTACKS,
# medadv.models.ARCHITECTURES) import TensorFlow. tests/test_startup.py checks the two agree.
ATTACK_NAMES = (
    "fgsm", "bim", "pgd", "deepfool", "cw_l2", "cw_linf", "apgd", "autoattack", "square", "hopskipjump",
    "universal", "ecgadv_type1", "ecgadv_type2", "dgn",
)  # fmt: skip
ARCHITECTURE_NAMES = (
    "cifar_cnn", "cifar_cnn_wide", "ecg_resnet", "ecg_resnet_wide", "inception_v3", "mnist_dense", "resnet50",
    "resnet50v2", "small_cnn", "vgg16",
)  # fmt: skip


def setting(default: T, help: str) -> T:
    """A settings field with its `--help` text: `field(default=..., metadata={"help": ...})`, shorter."""
    return field(default=default, metadata={"help": help})


class Shard(NamedTuple):
    """This run's share of the samples, as `--shard i/n` gives it: every n-th sample from the i-th."""

    i: int
    n: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        """`"i/n"` -> Shard(i, n) with 0 <= i < n."""
        match = _SHARD.fullmatch(text)
        if match is None:
            raise MedadvError(f"shard must look like i/n (e.g. 0/4), got {text!r}")
        shard = cls(int(match[1]), int(match[2]))
        if not 0 <= shard.i < shard.n:
            raise MedadvError(f"shard {text!r} is out of range: need 0 <= i < n")
        return shard


_SHARD = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")


def parse_counts(text: str) -> tuple[int, ...] | None:
    """`"360,360,360,220"` -> one count >= 0 per class; empty text -> None (no per-class selection)."""
    if not text.strip():
        return None
    try:
        counts = tuple(int(part) for part in text.split(","))
    except ValueError:
        counts = (-1,)
    if min(counts) < 0:
        raise MedadvError(f"per_class needs comma-separated counts >= 0 (one per class), got {text!r}")
    return counts


def data_dir_setting() -> str:
    return setting("", "its folder (or file) in the real on-disk format; empty: a generated synthetic set")


def data_options_setting() -> str:
    return setting("", 'the loader\'s options, e.g. "length=3000" for CinC, "image_size=64" for images')


class _Settings:
    """What every entry point's settings share: made from the flags (strings and numbers, logged as given), they
    are checked and their strings typed when made, so a step refuses bad input before TensorFlow is imported and
    a job reads typed values (`settings.typed_shard`, ...) that no later code parses again.

    `RANGES` bounds the numbers (`medadv.ranges`); `NAMES` maps a field to what it names and the names there are.
    """

    RANGES: ClassVar[dict[str, Bounds]] = {}
    NAMES: ClassVar[dict[str, tuple[str, tuple[str, ...]]]] = {}

    def __post_init__(self) -> None:
        check_ranges(self)
        for name, (what, names) in self.NAMES.items():
            if getattr(self, name) not in names:
                raise MedadvError(f"unknown {what} {getattr(self, name)!r}; choose one of {', '.join(names)}")
        self.type_strings()

    def type_strings(self) -> None:
        """Read each typed value once (each a cached property), so bad text is refused now."""


class _DataSettings(_Settings):
    """Settings that load a data set: its loader's options typed, and its folder (empty: generated data) there."""

    dataset: str
    data_dir: str
    data_options: str

    def type_strings(self) -> None:
        self.data_kwargs  # noqa: B018  # read to type it now
        if self.data_dir and not Path(self.data_dir).exists():
            raise DataError(f"{self.data_dir}: data folder for {self.dataset} not found")

    @cached_property
    def data_kwargs(self) -> dict[str, Any]:
        """`data_options` as the keyword arguments of the data set's loader (also refuses an unknown data set)."""
        return loader_options(self.dataset, self.data_options)


class _AttackSettings(_DataSettings):
    """Settings that attack a model (`attack`, and `train` with mode=robust): the attack's own settings by key."""

    attack_params: str

    def type_strings(self) -> None:
        self.attack_params_by_key  # noqa: B018  # read to type it now
        super().type_strings()

    @cached_property
    def attack_params_by_key(self) -> Mapping[str, str]:
        """`attack_params` by key; the attack's config class types each value (`medadv.attacks.parse_config`)."""
        return parse_params(self.attack_params)


@dataclass(frozen=True, kw_only=True)
class TrainSettings(_AttackSettings):
    """Parameters of the `train` entry point (the MLproject declares the same, with the same defaults)."""

    mode: str = setting("victim", "victim, generator (per-class CAE generators) or robust (adversarial training)")
    dataset: str = setting("cinc2017", "the data set to train on")
    data_dir: str = data_dir_setting()
    data_options: str = data_options_setting()
    arch: str = setting("ecg_resnet", f"the victim's architecture: {', '.join(ARCHITECTURE_NAMES)}")
    arch_options: str = setting("", 'e.g. "num_blocks=4,base_filters=8" for a tiny ECG ResNet')
    epochs: int = setting(10, "passes over the training split")
    batch_size: int = setting(32, "samples per training step")
    learning_rate: float = setting(1e-3, "Adam's learning rate")
    seed: int = setting(0, "seeds NumPy, TensorFlow and Python's random")
    mixup_alpha: float = setting(0.0, "0: no mixup; 0.2 for mixup augmentation")
    model_name: str = setting("", "the registered model's name; empty: medadv-<dataset>-<arch>")
    alias: str = setting("candidate", 'the alias the new version gets; "champion" to promote directly')
    victim: str = setting("", "generator/robust: the model to attack / harden (models:/NAME@ALIAS, runs:/ID/model)")
    generator_loss: str = setting("lrp", "generator: the CAE generators' loss, lrp, nce or suspiciousness")
    generator_options: str = setting("", 'generator: e.g. "top_k=20,alpha=0.5,eps=0.3"')
    method: str = setting("", "robust: fgsm, pgd, pgd_online, dgn_lrp, dgn_nce or dgn_suspiciousness")
    attack_params: str = setting("", 'robust: the attack\'s settings, e.g. "eps=0.3,eps_step=0.01,max_iter=20"')
    generators: str = setting("", "robust with dgn_*: the run id of a generator set")
    trainer: str = setting(
        "gf", "robust with fgsm/pgd: gf (DeepCustom's mixed loss on pairs crafted against the victim) or art"
    )
    adversarial_ratio: float = setting(0.5, "robust: the weight of the clean loss in Goodfellow's mixed loss")
    from_scratch: bool = setting(True, "robust: false fine-tunes the victim's weights")
    run_id: str = setting("", "resume this killed or failed train run (any mode) from its last finished epoch")

    RANGES: ClassVar[dict[str, Bounds]] = {
        "epochs": (1, None), "batch_size": (1, None), "learning_rate": (1e-12, None), "seed": (0, SEED_MAX),
        "mixup_alpha": (0.0, None), "adversarial_ratio": (0.0, 1.0),
    }  # fmt: skip

    NAMES: ClassVar[dict[str, tuple[str, tuple[str, ...]]]] = {"arch": ("architecture", ARCHITECTURE_NAMES)}

    def type_strings(self) -> None:
        self.arch_options_by_key, self.generator_options_by_key  # noqa: B018  # read to type them now
        super().type_strings()

    @cached_property
    def arch_options_by_key(self) -> Mapping[str, str]:
        """`arch_options` by key; the architecture's builder types each value (`medadv.options.typed_options`)."""
        return parse_params(self.arch_options, "arch_options")

    @cached_property
    def generator_options_by_key(self) -> Mapping[str, str]:
        """generator: `generator_options` by key; the generator config types each value."""
        return parse_params(self.generator_options, "generator_options")


@dataclass(frozen=True, kw_only=True)
class AttackSettings(_AttackSettings):
    """Parameters of the `attack` entry point (the MLproject declares the same, with the same defaults, but for the
    ones the run logs as resolved: `medadv.tracking.runs.RESOLVED_PARAMS`)."""

    model: str = setting("", "the victim: models:/NAME@ALIAS, models:/NAME/VERSION, runs:/ID/model or a path")
    dataset: str = setting("cinc2017", "the data set to attack")
    data_dir: str = data_dir_setting()
    data_options: str = data_options_setting()
    split: str = setting("test", "the split to attack")
    attack: str = setting("pgd", f"one of {', '.join(ATTACK_NAMES)}")
    attack_params: str = setting(
        "", 'the attack\'s settings, e.g. "eps=0.05,eps_step=0.01,max_iter=20"; target=-1 for every other class'
    )
    engine: str = setting(
        "", 'empty: the attack\'s default ("native" for the gradient attacks, else "art"); the run logs the one used'
    )
    num_samples: int = setting(0, "samples to attack; 0: all selected samples")
    per_class: str = setting(
        "", 'e.g. "360,360,360,220" (ECGadv\'s study): the first n of each class instead of num_samples'
    )
    selection: str = setting(
        "correct", "correct (ECGadv) | balanced (Grad-Attacks) | first_last (foe) | all (DeepCustom)"
    )
    batch_size: int = setting(0, "samples per attack batch; 0: chosen from the input size")
    seed: int = setting(0, "seeds the sample selection and the attack's random starts")
    shard: str = setting("0/1", "i/n: this run attacks the i-th of n shares")
    generators: str = setting("", "dgn: the run id of a generator set (`train` with mode=generator)")
    transfer_to: str = setting("", "space-separated model URIs trained on this data set, to replay the adversarials on")
    transfer_any_task: bool = setting(
        False, "true: also targets trained on another data set (their labels must be this data's)"
    )
    defense: str = setting("", "ECG: bandpass, notch, median or wavelet in front of the victim and transfer targets")
    parent_run_id: str = setting("", "groups the shards of one sharded attack")
    run_id: str = setting("", "resume this (killed or failed) run")
    universal_positions: int = setting(100, "ecgadv_type2: random positions per record in the universal evaluation")
    universal_min_length: int = setting(0, "ecgadv_type2: shortest record evaluated; 0: the input length (9000 = 30 s)")
    universal_records: str = setting(
        "correct", "ecgadv_type2: source records the victim gets right (the study's), or all"
    )
    ssim: str = setting("tf", "tf (Grad-Attacks' tf.image.ssim, 11x11 Gaussian window) or skimage (7x7 uniform)")

    RANGES: ClassVar[dict[str, Bounds]] = {
        "num_samples": (0, None), "batch_size": (0, None), "seed": (0, SEED_MAX),
        "universal_positions": (1, None), "universal_min_length": (0, None),
    }  # fmt: skip

    NAMES: ClassVar[dict[str, tuple[str, tuple[str, ...]]]] = {"attack": ("attack", ATTACK_NAMES)}

    def type_strings(self) -> None:
        self.typed_shard  # noqa: B018  # read to type it now
        if self.per_class_counts is not None and self.num_samples:
            raise MedadvError("give either num_samples or per_class, not both")
        super().type_strings()

    @cached_property
    def typed_shard(self) -> Shard:
        """The share of the selected samples this run attacks."""
        return Shard.parse(self.shard)

    @cached_property
    def per_class_counts(self) -> tuple[int, ...] | None:
        """The first n of each class to attack; None: `num_samples` decides."""
        return parse_counts(self.per_class)


@dataclass(frozen=True, kw_only=True)
class GradcamSettings(_DataSettings):
    """Parameters of the `gradcam` entry point (the MLproject declares the same, with the same defaults, but for the
    ones the run logs as resolved: `medadv.tracking.runs.RESOLVED_PARAMS`)."""

    attack_run_id: str = setting("", "explain this attack run's clean and adversarial inputs")
    model: str = setting("", "or: explain clean predictions of this model ...")
    dataset: str = setting("cinc2017", "... on this data set")
    data_dir: str = data_dir_setting()
    data_options: str = data_options_setting()
    split: str = setting("test", "the split to explain")
    num_samples: int = setting(16, "samples to explain (clean maps only); 0: the whole split")
    method: str = setting("gradcam", "gradcam, gradcam++ or scorecam")
    layer: str = setting("", "empty: the study's layer for resnet50v2, else the last convolution; recorded")
    explain_class: str = setting("clean", "clean, adversarial or true (one class for both maps), or own (each its own)")
    on: str = setting("map", "compare the heatmaps themselves (map), or colour overlays as the study did")
    ssim: str = setting("tf", "DSSIM's SSIM: tf (Grad-Attacks' tf.image.ssim, 11x11 Gaussian) or skimage (7x7 uniform)")
    iou_top_percent: float = setting(20.0, "the IoU of the heatmaps' top percent of pixels")
    batch_size: int = setting(32, "samples per Grad-CAM batch")
    engine: str = setting(
        "tf-keras-vis", "or compiled: the same Grad-CAM maps in one tf.function (method gradcam only)"
    )

    RANGES: ClassVar[dict[str, Bounds]] = {
        "num_samples": (0, None),
        "iou_top_percent": (1e-6, 100.0),
        "batch_size": (1, None),
    }


@dataclass(frozen=True, kw_only=True)
class EvaluateSettings(_Settings):
    """Parameters of the `evaluate` entry point (the MLproject declares the same, with the same defaults)."""

    experiment_name: str = setting("", "the experiment to compare; empty: the one this run is logged to")
    filter: str = setting("", "MLflow filter ANDed to each step's, e.g. \"params.dataset = 'pneumoniamnist'\"")


@dataclass(frozen=True, kw_only=True)
class StudySettings(_Settings):
    """Parameters of the `study` entry point (the MLproject declares the same, with the same defaults)."""

    name: str = setting("ecgadv", "ecgadv, grad_attacks, foe or deepcustom")
    data_dir: str = setting("", "the folder holding the study's real data sets (../shared/data); empty: generated")
    scale: str = setting("smoke", "smoke: the same protocol in minutes on a CPU; paper: the study's full budget")
    options: str = setting("", 'overrides of the protocol\'s settings, e.g. "victim.epochs=1,samples=4"')

    def type_strings(self) -> None:
        self.protocol  # noqa: B018  # read to type it now

    @cached_property
    def protocol(self) -> Protocol:
        """The study's protocol at `scale` with `options` applied."""
        return protocol(self.name, self.scale, self.options)


@dataclass(frozen=True, kw_only=True)
class MainSettings(_Settings):
    """The demo's size knobs: the defaults finish in minutes on 2 CPU cores with generated data."""

    ecg_length: int = setting(3000, "samples per record at 300 Hz (the study uses 9000)")
    epochs: int = setting(8, "training epochs of each demo victim")
    records: int = setting(4, "records per attack (ECGadv attacks each toward the 3 other classes)")
    ecgadv_iterations: int = setting(200, "ECGadv's iterations per binary-search step (the study: 1000)")
    ecgadv_search_steps: int = setting(2, "ECGadv's binary-search steps over c (the study: 5, from c = 0.01)")

    RANGES: ClassVar[dict[str, Bounds]] = {
        "ecg_length": (300, None), "epochs": (1, None), "records": (1, None),
        "ecgadv_iterations": (1, None), "ecgadv_search_steps": (1, None),
    }  # fmt: skip
