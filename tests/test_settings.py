"""The settings check themselves and type their strings when made; the fields keep the text a run logs."""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any

import pytest

from medadv.errors import MedadvError
from medadv.options import parse_bool, typed_value
from medadv.settings import AttackSettings, Shard, StudySettings, TrainSettings, parse_counts


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0/1", (0, 1)), ("2/3", (2, 3)), (" 1 / 4 ", (1, 4)), ("3/2", None), ("0/0", None), ("a/b", None), ("1", None)],
)
def test_a_shard_reads_i_of_n(text: str, expected: tuple[int, int] | None) -> None:
    if expected is None:
        with pytest.raises(MedadvError, match="shard"):
            Shard.parse(text)
    else:
        assert Shard.parse(text) == expected


def test_per_class_counts_are_counts_or_none() -> None:
    assert parse_counts(" ") is None and parse_counts("360,360,360,220") == (360, 360, 360, 220)
    for text in ("1,2,-1", "a,b", "1,,2"):
        with pytest.raises(MedadvError, match=f"per_class needs comma-separated counts >= 0 .*got '{text}'"):
            parse_counts(text)


@pytest.mark.parametrize(
    ("kind", "text", "value"),
    [(bool, "true", True), (bool, "0", False), (int | None, "None", None), (int | None, "3", 3), (str, "none", "none")],
)
def test_one_value_typed_by_its_type(kind: Any, text: str, value: Any) -> None:
    assert typed_value(text, kind) == value
    with pytest.raises(ValueError, match="'maybe' is not a valid"):
        typed_value("maybe", bool if kind is str else kind)


def test_one_boolean_parser() -> None:
    assert [parse_bool(text) for text in ("True", "false", " 1", "0")] == [True, False, True, False]
    with pytest.raises(ValueError, match="expected true or false, got 'yes'"):
        parse_bool("yes")


def test_attack_settings_give_typed_values_and_log_the_text_as_given() -> None:
    settings = AttackSettings(shard=" 1 / 4 ", per_class="1,2", attack_params="eps=0.1, max_iter=3")
    assert settings.typed_shard == Shard(1, 4) and settings.per_class_counts == (1, 2)
    assert settings.attack_params_by_key == {"eps": "0.1", "max_iter": "3"}
    assert settings.typed_shard is settings.typed_shard  # typed once, when made
    logged = asdict(settings)
    assert (logged["shard"], logged["per_class"], logged["attack_params"]) == (" 1 / 4 ", "1,2", "eps=0.1, max_iter=3")
    assert replace(settings, shard="0/2").typed_shard == Shard(0, 2)
    assert TrainSettings(data_options="length=600").data_kwargs == {"length": 600}
    assert StudySettings(options="victim.epochs=1").protocol.victim.epochs == 1  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: AttackSettings(attack="magic"), "unknown attack 'magic'; choose one of fgsm,"),
        (lambda: TrainSettings(arch="tiny"), "unknown architecture 'tiny'; choose one of cifar_cnn,"),
        (lambda: TrainSettings(arch_options="depth"), "arch_options: 'depth' is not key=value"),
        (lambda: TrainSettings(attack_params="eps"), "attack_params: 'eps' is not key=value"),
        (lambda: AttackSettings(shard="4/4"), "shard '4/4' is out of range: need 0 <= i < n"),
        (lambda: AttackSettings(per_class="2,2", num_samples=4), "give either num_samples or per_class, not both"),
        (lambda: AttackSettings(dataset="mnist", data_options="size=3"), "data_options: unknown option 'size=3'"),
        (lambda: AttackSettings(data_dir="/no/such/folder"), "/no/such/folder: data folder for cinc2017 not found"),
        (lambda: StudySettings(name="ecgadv", scale="huge"), "unknown scale 'huge'"),
    ],
)
def test_bad_input_is_refused_when_the_settings_are_made(make: Any, message: str) -> None:
    with pytest.raises(MedadvError) as error:
        make()
    assert message in str(error.value) and "\n" not in str(error.value)
