"""MLflow 3 model lineage: a run records the logged models behind its pinned versions as its model inputs, so the
model's page lists the runs that used it and the run's page the model it used (beside the lineage tags)."""

from __future__ import annotations

import re
from collections.abc import Iterable

import mlflow
from mlflow.entities import LoggedModelInput

_VERSION = re.compile(r"models:/([^/@]+)/(\d+)")
_LOGGED_MODEL = re.compile(r"models:/(m-[0-9a-f]{32})")


def logged_model_id(uri: str) -> str | None:
    """The id of the logged model behind a pinned version `models:/NAME/VERSION`: the version's `model_id`, else
    the one its source names (the open-source registry keeps none of its own but registers `models:/m-...`).
    None for a version registered from a run's or a folder's files (as medadv's `train` registers its victims),
    and for URIs that are not a registered version."""
    version = _VERSION.fullmatch(uri)
    if not version:
        return None
    found = mlflow.MlflowClient().get_model_version(*version.groups())
    source = _LOGGED_MODEL.fullmatch(found.source or "")
    return found.model_id or (source[1] if source else None)


def log_model_inputs(uris: Iterable[str]) -> list[str]:
    """Log the logged models behind the pinned `uris` (each member of an `a+b` ensemble) as the active run's model
    inputs, each once (a resumed run adds none twice); returns the ids it logged. Versions without a logged model
    are skipped: their lineage is the run's tags and params alone.

    Through the client: `mlflow.log_inputs(models=...)` refuses any store but Databricks, although the
    open-source server stores and returns model inputs."""
    run = mlflow.active_run()
    assert run is not None, "log_model_inputs needs an active run"
    client = mlflow.MlflowClient()
    inputs = client.get_run(run.info.run_id).inputs
    logged = {model.model_id for model in inputs.model_inputs} if inputs else set()
    ids: list[str] = []
    for member in (member for uri in uris for member in uri.split("+")):
        model_id = logged_model_id(member)
        if model_id and model_id not in logged and model_id not in ids:
            ids.append(model_id)
    if ids:
        client.log_inputs(run.info.run_id, models=[LoggedModelInput(model_id) for model_id in ids])
    return ids
