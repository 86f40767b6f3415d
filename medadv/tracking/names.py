"""Names and tags checked against MLflow's rules and the SQL stores' column widths before any compute.

MLflow validates some lengths itself, but SQLite ignores VARCHAR widths, so a name PostgreSQL refuses
would register on SQLite: the column widths of MLflow 3.17's SQLAlchemy models are checked here, the same
for every store.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from mlflow.exceptions import MlflowException
from mlflow.utils import validation

from medadv.errors import MedadvError

# String(n) of mlflow/store/{tracking,model_registry}/dbmodels/models.py
MODEL_NAME_LENGTH = 256  # registered_models.name
ALIAS_LENGTH = validation.MAX_REGISTERED_MODEL_ALIAS_LENGTH  # 255, under registered_model_aliases.alias's 256
EXPERIMENT_NAME_LENGTH = 256  # experiments.name (MLflow itself allows 500)
TAG_KEY_LENGTH = 250  # tags.key, model_version_tags.key
TAG_VALUE_LENGTH = 5000  # model_version_tags.value and registered_model_tags.value (runs' tags: 8000)


class InvalidName(MedadvError):
    """A name or tag the registry or the store would refuse (or, on SQLite, silently accept)."""


def _mlflow_rule(rule: Callable[[str], None], what: str, value: str) -> None:
    try:
        rule(value)
    except MlflowException as error:
        raise InvalidName(f"{what} {value[:80]!r}: {error.message.splitlines()[0]}") from None


def _length(what: str, value: str, limit: int) -> None:
    if len(value) > limit:
        raise InvalidName(f"{what} {value[:40]!r}... is {len(value)} characters; the store allows {limit}")


def check_model_name(name: str) -> None:
    _mlflow_rule(validation._validate_model_name, "model name", name)
    _length("model name", name, MODEL_NAME_LENGTH)


def check_alias(alias: str) -> None:
    _mlflow_rule(validation._validate_model_alias_name, "alias", alias)
    _mlflow_rule(validation._validate_model_alias_name_reserved, "alias", alias)


def check_experiment_name(name: str) -> None:
    _mlflow_rule(validation._validate_experiment_name, "experiment name", name)
    _length("experiment name", name, EXPERIMENT_NAME_LENGTH)


def check_tags(tags: Mapping[str, str]) -> None:
    """Tags for runs and model versions: MLflow's key rules, and the narrower (model version) widths."""
    for key, value in tags.items():
        _mlflow_rule(validation._validate_tag_name, "tag key", key)
        _length("tag key", key, TAG_KEY_LENGTH)
        _length(f"tag {key} value", value, TAG_VALUE_LENGTH)


def check_registration(name: str, alias: str) -> None:
    """What `train` will register, checked before it trains."""
    check_model_name(name)
    check_alias(alias)
