"""Attacks by name: a typed settings dataclass and one or two engines for each, and what each family declares.

`ATTACKS[name]` is an `AttackSpec`: its config class and its engines, "art" (ART's
implementation, through `medadv.attacks.art_attacks`) and, for every gradient attack, "native"
(medadv's batched `tf.function` loops: `native` for FGSM/BIM/PGD, `apgd` for APGD and AutoAttack,
`carlini` for C&W, `deepfool`), which is the default where it exists. Beside them a family declares
how a run of it is described, what it evaluates after the attack (ECGadv Type II's universal
evaluation), what the attack job must hand it (DGN: a generator set) and whether a white-box baseline
on transfer targets makes sense, so the attack job runs every family alike. `register` adds one.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import keras

from medadv.attacks import apgd, art_attacks, autoattack, carlini, deepfool, dgn, ecgadv, native
from medadv.attacks.base import Attack, AttackConfig, AttackError, AttackRun, Extras, Victim
from medadv.errors import MedadvError
from medadv.models import check_victim
from medadv.options import typed_fields

__all__ = [
    "ATTACKS",
    "Attack",
    "AttackConfig",
    "AttackError",
    "AttackRun",
    "AttackSpec",
    "Extras",
    "Victim",
    "budget_label",
    "make_attack",
    "parse_config",
    "register",
]


def budget_label(name: str, config: object) -> str:
    """`pgd eps=0.05`: a name and the budget of its config, where it has one (DeepFool and C&W L2 have none); the
    default label of an attack family, and the run names of robust models and generator sets."""
    eps = getattr(config, "eps", None)
    return f"{name} eps={eps:g}" if isinstance(eps, float) else name


def no_check(settings: Any) -> None:
    """A family that reads none of the attack entry point's settings beyond its own config."""


def no_extras(run: AttackRun[Any]) -> Extras:
    """A family with nothing to evaluate after the attack."""
    return Extras()


@dataclass(frozen=True)
class AttackSpec:
    """One registered attack family: its settings class, its implementations by engine name (default first),
    and what it declares so the attack job needs no branch on it.

    `label(name, config)` describes a run (run names, reports); `check(settings)` refuses, before any compute,
    the entry point's settings the family reads (ECGadv Type II: universal_*); `extras(run)` is its evaluation
    after the attack; `needs` names the constructor options the job must supply ("generators": a generator
    set); `white_box_transfer` False skips crafting the same attack on each transfer target (DGN: the
    generators were trained for the victim).
    """

    name: str
    config: type[AttackConfig]
    engines: dict[str, type[Attack]]
    label: Callable[[str, Any], str] = budget_label
    check: Callable[[Any], None] = no_check
    extras: Callable[[AttackRun[Any]], Extras] = no_extras
    needs: tuple[str, ...] = ()
    white_box_transfer: bool = True

    @property
    def default_engine(self) -> str:
        return next(iter(self.engines))

    def describe(self, config: AttackConfig) -> str:
        """The run's label, e.g. `pgd eps=0.05` or `ecgadv_type2 w=9000`."""
        return self.label(self.name, config)


ATTACKS: dict[str, AttackSpec] = {}


def register(name: str, config: type[AttackConfig], engines: dict[str, type[Attack]], **declared: Any) -> None:
    """Add an attack family under `name`; the first engine listed is its default. `declared`: any other
    `AttackSpec` field (label, check, extras, needs, white_box_transfer)."""
    if name in ATTACKS:
        raise AttackError(f"attack {name!r} is already registered")
    ATTACKS[name] = AttackSpec(name, config, engines, **declared)


register("fgsm", native.FGSMConfig, {"native": native.FGSM, "art": art_attacks.ArtFGSM})
register("bim", native.BIMConfig, {"native": native.BIM, "art": art_attacks.ArtBIM})
register("pgd", native.PGDConfig, {"native": native.PGD, "art": art_attacks.ArtPGD})
register("deepfool", deepfool.DeepFoolConfig, {"native": deepfool.DeepFool, "art": art_attacks.ArtDeepFool})
register("cw_l2", carlini.CWL2Config, {"native": carlini.CarliniL2, "art": art_attacks.ArtCWL2})
register("cw_linf", carlini.CWLinfConfig, {"native": carlini.CarliniLinf, "art": art_attacks.ArtCWLinf})
register("apgd", apgd.APGDConfig, {"native": apgd.APGD, "art": art_attacks.ArtAPGD})
register(
    "autoattack", art_attacks.AutoAttackConfig, {"native": autoattack.NativeAutoAttack, "art": autoattack.ArtAutoAttack}
)
register("square", art_attacks.SquareConfig, {"art": art_attacks.ArtSquare})
register("hopskipjump", art_attacks.HopSkipJumpConfig, {"art": art_attacks.ArtHopSkipJump})
register("universal", art_attacks.UniversalConfig, {"art": art_attacks.ArtUniversal})
register("ecgadv_type1", ecgadv.ECGadvTypeIConfig, {"native": ecgadv.ECGadvTypeI}, label=ecgadv.type1_label)
register(
    "ecgadv_type2", ecgadv.ECGadvTypeIIConfig, {"native": ecgadv.ECGadvTypeII},
    label=ecgadv.type2_label, check=ecgadv.check_universal_settings, extras=ecgadv.universal_extras,
)  # fmt: skip
register("dgn", dgn.DGNConfig, {"native": dgn.DGNAttack}, needs=("generators",), white_box_transfer=False)


def spec_of(name: str) -> AttackSpec:
    """The registered family `name`, or an AttackError naming the families there are."""
    if name not in ATTACKS:
        raise AttackError(f"unknown attack {name!r}; choose one of {', '.join(ATTACKS)}")
    return ATTACKS[name]


def parse_config(name: str, params: Mapping[str, str]) -> AttackConfig:
    """Build `name`'s settings from its option strings by key (`AttackSettings.attack_params_by_key`), each typed by
    the config's field (`medadv.options`); unknown names fail with the valid ones."""
    config_class = spec_of(name).config
    fields = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(params) - fields)
    if unknown:
        raise AttackError(
            f"{name} has no parameter {', '.join(unknown)}; its parameters are {', '.join(sorted(fields))}"
        )
    try:
        values = typed_fields(params, typing.get_type_hints(config_class), name)
    except MedadvError as error:
        raise AttackError(str(error)) from None
    return config_class(**values)


def make_attack(
    name: str,
    model: keras.Model | Victim,
    config: AttackConfig,
    clip_range: tuple[float, float],
    batch_size: int,
    engine: str | None = None,
    *,
    input_shape: tuple[int, ...] | None = None,
    **options: Any,
) -> Attack:
    """Check everything (victim, data shape, settings, engine), then build the attack: nothing heavy runs before.

    A plain Keras `model` is checked (on `input_shape`, if given); a `Victim` was checked when it was made.
    `engine` None picks the attack's default ("native" where it exists, else "art"). `options` go to the
    attack's constructor (the DGN attack's `generators`).
    """
    spec = spec_of(name)
    engine = engine or spec.default_engine
    if engine not in spec.engines:
        raise AttackError(f"{name} has no engine {engine!r}; choose one of {', '.join(spec.engines)}")
    if not isinstance(config, spec.config):
        raise AttackError(f"{name} takes a {spec.config.__name__}, got a {type(config).__name__}")
    if batch_size < 1:
        raise AttackError(f"batch_size must be >= 1, got {batch_size}")
    if not isinstance(model, Victim):
        check_victim(model, input_shape)
    keras_model = model.model if isinstance(model, Victim) else model
    try:
        config.validate(int(keras_model.output_shape[-1]))
        return spec.engines[engine](keras_model, config, clip_range, batch_size, **options)
    except AttackError as error:
        raise AttackError(f"{name}: {error}") from None
