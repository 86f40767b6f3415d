"""The four studies' protocols as data: one dataclass per study, one instance per scale.

`paper` is the study's own budget (for a GPU); `smoke` runs the same grid, smaller, in minutes on a
CPU. The `study` entry point turns a protocol into train / attack / gradcam runs; nothing here
talks to MLflow. Grids and settings come from the original code (read, not copied):
codespace123/ECGadv, eriksonJAguiar/Grad-Attacks-CBMS-2023 (`scripts_attack/`), utsavoza/foe
(`craft_attacks.py`) and FastCustomizableCAE/DeepCustom (`*/config.json`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from medadv.errors import MedadvError

SCALES = ("smoke", "paper")


class StudyError(MedadvError):
    """An unknown study or scale, a bad override, or the real data a study needs is missing."""


@dataclass(frozen=True, kw_only=True)
class DataNeed:
    """One data set a study reads: where under `data_dir` it lies, what it holds and where it comes from.

    An empty `path` means a generated set in the real on-disk layout (the real one is not available).
    """

    dataset: str
    path: str
    files: str = ""
    source: str = ""
    data_options: str = ""

    def located(self, data_dir: str) -> str:
        """The folder or file to load, "" for generated data (no `path`, or no `data_dir` at all)."""
        return str(Path(data_dir) / self.path) if data_dir and self.path else ""

    def describe(self, data_dir: str) -> str:
        return f"{self.dataset} ({'real, ' + self.path if self.located(data_dir) else 'generated, real layout'})"


CINC = DataNeed(
    dataset="cinc2017", path="cinc2017", files="REFERENCE-v3.csv and the A*.mat/.hea records",
    source="https://physionet.org/content/challenge-2017/1.0.0/ (training2017.zip)",
)  # fmt: skip
PNEUMONIAMNIST = DataNeed(
    dataset="pneumoniamnist", path="pneumoniamnist.npz", files="pneumoniamnist.npz",
    source="https://zenodo.org/records/10519652 (MedMNIST v2)",
)  # fmt: skip
CHEST_XRAY = DataNeed(
    dataset="chest_xray", path="chest_xray", files="{train,test}/{NORMAL,PNEUMONIA}/*.jpeg",
    source="https://data.mendeley.com/datasets/rscbjbr9sj/2 (Kermany et al., ChestXRay2017.zip)",
    data_options="image_size=224",
)  # fmt: skip
OCT = DataNeed(
    dataset="oct2017", path="OCT2017", files="{train,test}/{CNV,DME,DRUSEN,NORMAL}/*.jpeg",
    source="https://data.mendeley.com/datasets/rscbjbr9sj/2 (Kermany et al., OCT2017.tar.gz)",
    data_options="image_size=224",
)  # fmt: skip
NIH_FILES = "Data_Entry_2017_v2020.csv(.gz) and the images/*.png"
NIH_SOURCE = "https://nihcc.app.box.com/v/ChestXray-NIHCC (Wang et al., CVPR 2017)"
MNIST = DataNeed(
    dataset="mnist", path="mnist", files="t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz (+ train-*)",
    source="https://yann.lecun.com/exdb/mnist/ (or keras.datasets.mnist)",
)  # fmt: skip
CIFAR = DataNeed(
    dataset="cifar10", path="cifar-10-batches-py", files="batches.meta, data_batch_1..5, test_batch",
    source="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
)  # fmt: skip


def generated(need: DataNeed, data_options: str = "") -> DataNeed:
    """The same set, generated in its real layout: the smoke scale's stand-in where the real one is absent here."""
    return replace(need, path="", data_options=data_options)


@dataclass(frozen=True, kw_only=True)
class Victim:
    """How a study trains its victims."""

    arch: str
    arch_options: str = ""
    epochs: int
    batch_size: int = 32
    learning_rate: float = 1e-3


@dataclass(frozen=True, kw_only=True)
class ECGadvProtocol:
    """ECGadv (Chen et al., AAAI 2020): Type I targeted attacks with each distance on correctly classified
    records toward every other class; Type II windows of decreasing length, each evaluated universally."""

    title = "ECGadv (Chen et al., AAAI 2020)"
    cinc: DataNeed = CINC
    length: int = 9000  # 30 s at 300 Hz
    victim: Victim = Victim(arch="ecg_resnet", epochs=30, batch_size=16)
    type1_per_class: tuple[int, ...] = (360, 360, 360, 220)  # A, N, O, ~ (the study's selection)
    metrics: tuple[str, ...] = ("l2", "smooth", "smooth_l2")
    type1_iterations: int = 1000
    type1_search_steps: int = 5
    type1_initial_const: float = 1e-2
    windows: tuple[int, ...] = (9000, 7500, 6000, 4500, 3000, 1500)
    type2_per_class: tuple[int, ...] = (1, 1, 1, 1)  # one record per class: the 12 source -> target pairs
    type2_iterations: int = 500
    type2_search_steps: int = 5
    type2_copies: int = 0  # 0: the study's int((L - w) / 50) shifted copies per step
    universal_positions: int = 100


@dataclass(frozen=True, kw_only=True)
class GradAttacksProtocol:
    """Grad-Attacks (de Aguiar et al., CBMS 2023): FGSM, PGD and DeepFool at four budgets on each backbone, for
    chest X-rays and OCT, on a class-balanced random sample; Grad-CAM of clean vs attacked images."""

    title = "Grad-Attacks (de Aguiar et al., CBMS 2023)"
    datasets: tuple[DataNeed, ...] = (CHEST_XRAY, OCT)
    victims: tuple[Victim, ...] = (
        Victim(arch="resnet50v2", epochs=10), Victim(arch="vgg16", epochs=10), Victim(arch="inception_v3", epochs=10),
    )  # fmt: skip
    samples: int = 100  # class-balanced: samples / classes of each class, drawn with the seed
    attacks: tuple[str, ...] = ("fgsm", "pgd", "deepfool")
    eps: tuple[float, ...] = (0.01, 0.05, 0.075, 0.1)  # DeepFool's "eps" is ART's overshoot `epsilon`
    pgd_eps_step: float = 0.1  # ART's defaults, as the study called it
    pgd_iterations: int = 100
    deepfool_iterations: int = 100
    gradcam_layers: tuple[tuple[str, str], ...] = (("resnet50v2", "conv5_block3_out"),)  # arch -> layer
    explain_class: str = "own"  # each map explains its own image's prediction, as the study


@dataclass(frozen=True, kw_only=True)
class FoeProtocol:
    """foe: PGD crafted on the pneumothorax model with the cardiomegaly images and labels, replayed on the
    cardiomegaly model (transfer), beside a white-box PGD on the cardiomegaly model; the first and last 50."""

    title = "foe (cross-condition transferability, utsavoza/foe)"
    source: DataNeed = DataNeed(dataset="nih_pneumothorax", path="nih", files=NIH_FILES, source=NIH_SOURCE)
    target: DataNeed = DataNeed(dataset="nih_cardiomegaly", path="nih", files=NIH_FILES, source=NIH_SOURCE)
    image_size: int = 224
    victim: Victim = Victim(arch="resnet50", epochs=10)
    samples: int = 100  # the first and last samples / 2
    eps: float = 0.01  # foe's 0.02 on inputs in [-1, 1], in medadv's [0, 1] pixel units
    eps_step: float = 0.005
    iterations: int = 20


@dataclass(frozen=True, kw_only=True)
class DeepCustomProtocol:
    """DeepCustom: the MNIST and CIFAR targets, per-class CAE generators with each loss, and robust models
    (FGSM / PGD and each DGN loss) evaluated on every sample."""

    title = "DeepCustom (FastCustomizableCAE/DeepCustom)"
    mnist: DataNeed = MNIST
    cifar: DataNeed = CIFAR
    mnist_victim: Victim = Victim(arch="mnist_dense", epochs=20, batch_size=100)
    cifar_victim: Victim = Victim(arch="cifar_cnn", epochs=50, batch_size=100)
    losses: tuple[str, ...] = ("lrp", "nce", "suspiciousness")
    generator_epochs: int = 150
    robust_methods: tuple[str, ...] = ("fgsm", "pgd")  # plus dgn_<loss> for each loss
    robust_epochs: int = 20
    # OtherAttacks/config.json: eps, PGD step, iterations and restarts per data set
    # PGD; FGSM takes its first item, eps
    mnist_attack: str = "eps=0.3,eps_step=0.01,max_iter=20,num_random_init=10"
    cifar_attack: str = "eps=0.0313,eps_step=0.0078,max_iter=20,num_random_init=0"


Protocol = ECGadvProtocol | GradAttacksProtocol | FoeProtocol | DeepCustomProtocol

SMOKE_ECG = Victim(arch="ecg_resnet", arch_options="num_blocks=6,base_filters=16", epochs=10, batch_size=16)
SMOKE_CNN = Victim(arch="small_cnn", epochs=3)
PROTOCOLS: dict[str, dict[str, Protocol]] = {
    "ecgadv": {
        "paper": ECGadvProtocol(),
        "smoke": ECGadvProtocol(
            length=3000,
            victim=SMOKE_ECG,
            type1_per_class=(1, 1, 1, 1),
            type1_iterations=200,
            type1_search_steps=2,
            type1_initial_const=10.0,
            windows=(3000, 1500),
            type2_iterations=50,
            type2_search_steps=2,
            type2_copies=10,
            universal_positions=20,
        ),
    },
    "grad_attacks": {
        "paper": GradAttacksProtocol(),
        "smoke": GradAttacksProtocol(
            datasets=(PNEUMONIAMNIST, generated(OCT, "image_size=28")),
            victims=(SMOKE_CNN,),
            samples=20,
            eps=(0.01, 0.1),
            pgd_iterations=20,
            deepfool_iterations=50,
        ),
    },
    "foe": {
        "paper": FoeProtocol(),
        # ../shared/data/nih holds two images: too few to train on, so the smoke scale generates the NIH layout.
        "smoke": FoeProtocol(
            source=generated(FoeProtocol().source),
            target=generated(FoeProtocol().target),
            image_size=64,
            victim=SMOKE_CNN,
            samples=20,
        ),
    },
    "deepcustom": {
        "paper": DeepCustomProtocol(),
        "smoke": DeepCustomProtocol(
            cifar=generated(CIFAR),
            mnist_victim=Victim(arch="mnist_dense", epochs=3, batch_size=100),
            cifar_victim=Victim(arch="cifar_cnn", epochs=3, batch_size=100),
            generator_epochs=1,
            robust_epochs=1,
        ),
    },
}


def protocol(name: str, scale: str, overrides: str = "") -> Protocol:
    """The protocol of study `name` at `scale`, with `overrides` ("field=value,...") applied."""
    if name not in PROTOCOLS:
        raise StudyError(f"unknown study {name!r}; choose one of {', '.join(PROTOCOLS)}")
    if scale not in SCALES:
        raise StudyError(f"unknown scale {scale!r}; choose one of {', '.join(SCALES)}")
    return override(PROTOCOLS[name][scale], overrides)


def override(base: Protocol, text: str) -> Protocol:
    """`base` with some settings replaced ("type1_iterations=5,windows=600 300,victim.epochs=1"): the tests' tiny runs.

    A number or text field takes its type; a tuple of numbers or texts takes space-separated items;
    `victim.<setting>` sets that setting of every victim of the study.
    """
    settable = {f.name: getattr(base, f.name) for f in fields(base) if _settable(getattr(base, f.name))}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, _, value = (part.strip() for part in item.partition("="))
        if key.startswith("victim."):
            base = _override_victims(base, key.removeprefix("victim."), value)
        elif key in settable:
            base = replace(base, **{key: _typed(value, settable[key], key)})
        else:
            raise StudyError(
                f"options: {key!r} is not a setting of this study; settings: {', '.join(settable)}, victim.*"
            )
    return base


def _settable(value: Any) -> bool:
    items = value if isinstance(value, tuple) else (value,)
    return bool(items) and all(isinstance(item, int | float | str) for item in items)


def _override_victims(base: Protocol, key: str, value: str) -> Protocol:
    """`base` with setting `key` of every Victim field (or tuple of victims) set to `value`."""
    if key not in {f.name for f in fields(Victim)}:
        raise StudyError(
            f"options: victim.{key} is not a victim setting; settings: {', '.join(Victim.__annotations__)}"
        )
    changes: dict[str, Any] = {}
    for f in fields(base):
        current = getattr(base, f.name)
        victims = current if isinstance(current, tuple) else (current,)
        if victims and all(isinstance(victim, Victim) for victim in victims):
            changed = tuple(replace(v, **{key: _typed(value, getattr(v, key), key)}) for v in victims)
            changes[f.name] = changed if isinstance(current, tuple) else changed[0]
    return replace(base, **changes)


def _typed(value: str, current: Any, key: str) -> Any:
    try:
        if isinstance(current, tuple):
            return tuple(type(current[0])(item) for item in value.split())
        return type(current)(value)
    except ValueError:
        raise StudyError(f"options: cannot read {value!r} for {key}") from None


def data_needs(chosen: Protocol) -> tuple[DataNeed, ...]:
    """Every data set the protocol reads."""
    needs: list[DataNeed] = []
    for f in fields(chosen):
        value = getattr(chosen, f.name)
        for item in value if isinstance(value, tuple) else (value,):
            if isinstance(item, DataNeed):
                needs.append(item)
    return tuple(needs)


def missing_data(chosen: Protocol, data_dir: str) -> str:
    """One line naming each real data set absent under `data_dir`, with its files and where they come from; "" if none.

    With no `data_dir` at all, every real set counts as absent (the caller decides whether generated data will do).
    """
    missing = [
        f"{need.dataset} at {Path(data_dir or 'DATA_DIR') / need.path} ({need.files}; from {need.source})"
        for need in data_needs(chosen)
        if need.path and not (data_dir and Path(data_dir, need.path).exists())
    ]
    return "; ".join(dict.fromkeys(missing))
