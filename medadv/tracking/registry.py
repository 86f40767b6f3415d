"""Models in and out of MLflow: log with the Keras flavour, register with an alias, load safely by URI."""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from importlib.metadata import packages_distributions, version
from pathlib import Path

import keras
import mlflow
import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature, infer_signature

from medadv.contract import CLASS_TAG, MODEL_ALIAS_TAG, MODEL_RUN_TAG, MODEL_URI_TAG, MODEL_VERSION_TAG
from medadv.models import ModelError, check_victim, ensemble
from medadv.tracking.artifacts import confirm_stored, log_artifacts
from medadv.tracking.names import check_registration, check_tags

_URI_FORMS = (
    "models:/NAME@ALIAS, models:/NAME/VERSION, runs:/RUN_ID/model or a path to a .keras file or MLflow model folder"
)


def default_model_name(dataset: str, arch: str, suffix: str = "") -> str:
    return f"medadv-{dataset}-{arch}{suffix}"


def pip_requirements() -> list[str]:
    """What MLflow would infer for a medadv Keras model, pinned to this environment.

    Given explicitly: inferring them starts a subprocess that loads the model, about 5 s per model logged.
    """
    tensorflow = packages_distributions()["tensorflow"][0]  # tensorflow-cpu, or tensorflow on GPU machines
    return [f"{name.replace('_', '-')}=={version(name)}" for name in ("mlflow", "keras", "numpy", tensorflow)]


def log_victim(model: keras.Model, input_example: np.ndarray) -> str:
    """Log `model` with MLflow's Keras flavour, its signature and input example, as the run's `model`; returns its URI
    once the artifact store lists every file of it, so that a version registered from it never points at missing
    files.

    Saved into a folder made first and logged as artifacts: MLflow 3.17's `mlflow.keras.log_model` writes
    the input example before it creates the model folder, and fails.
    """
    probs = model.predict(input_example, verbose=0)
    signature: ModelSignature = infer_signature(input_example, probs)
    with tempfile.TemporaryDirectory(prefix="medadv-model-") as folder:
        path = Path(folder) / "model"
        path.mkdir()
        mlflow.keras.save_model(
            model, str(path), signature=signature, input_example=input_example, pip_requirements=pip_requirements()
        )
        log_artifacts(path, "model")
        confirm_stored(path, "model")
    run = mlflow.active_run()
    assert run is not None, "log_victim needs an active run"
    return f"runs:/{run.info.run_id}/model"


def register(model_uri: str, name: str, alias: str, tags: dict[str, str]) -> str:
    """Register a logged model, tag the version and point `alias` at it; returns the version.

    If tagging or aliasing fails, the new version is deleted again: no half-registered model stays behind.
    """
    check_registration(name, alias)
    check_tags(tags)
    version = mlflow.register_model(model_uri, name).version
    client = mlflow.MlflowClient()
    try:
        for key, value in tags.items():
            client.set_model_version_tag(name, version, key, value)
        client.set_registered_model_alias(name, alias, version)
    except BaseException:
        client.delete_model_version(name, version)
        raise
    return str(version)


def trained_on(uri: str) -> set[str]:
    """The data sets a victim URI was trained on (each ensemble member's), from the registry's `dataset` tag
    or the run's `dataset` param; a URI that does not say (a local path, a missing model) adds nothing."""
    if "+" in uri:
        return set().union(*(trained_on(member) for member in uri.split("+")))
    client = mlflow.MlflowClient()
    try:
        if alias := re.fullmatch(r"models:/([^/@]+)@([^/]+)", uri):
            dataset = client.get_model_version_by_alias(*alias.groups()).tags.get("dataset")
        elif numbered := re.fullmatch(r"models:/([^/@]+)/(\d+)", uri):
            dataset = client.get_model_version(*numbered.groups()).tags.get("dataset")
        elif run := re.match(r"runs:/([^/]+)/", uri):
            dataset = client.get_run(run.group(1)).data.params.get("dataset")
        else:
            dataset = None
    except MlflowException:
        return set()  # load_model reports the missing model
    return {dataset} if dataset else set()


_REGISTERED = re.compile(r"models:/([^/@]+)(?:@(.+)|/(\d+))")


@dataclass(frozen=True)
class PinnedModel:
    """A model URI as the user gave it and the fixed version it meant when the run started.

    An alias moves when a model is retrained; the version does not, so every step uses `uri`.
    """

    given: str
    uri: str  # models:/NAME/VERSION for a registered model (alias resolved), else `given`
    name: str = ""
    version: str = ""
    alias: str = ""  # the alias `given` named, if any
    run_id: str = ""  # the run that logged the version

    @property
    def short(self) -> str:
        """`pneumoniamnist-small_cnn v1` for run names; the URI's last part where there is no version."""
        if self.version:
            return f"{self.name.removeprefix('medadv-')} v{self.version}"
        return self.uri.rstrip("/").rsplit("/", 1)[-1]

    def tags(self) -> dict[str, str]:
        """The run tags that record the pinning (empty fields left out, so a resume keeps the first ones)."""
        tags = {
            MODEL_URI_TAG: self.uri,
            MODEL_VERSION_TAG: self.version,
            MODEL_ALIAS_TAG: self.alias,
            MODEL_RUN_TAG: self.run_id,
        }
        return {key: value for key, value in tags.items() if value}


def pin_model(uri: str) -> PinnedModel:
    """Resolve `models:/NAME@ALIAS` once to `models:/NAME/VERSION` (each member of an `a+b` ensemble)."""
    if "+" in uri:
        return PinnedModel(given=uri, uri="+".join(pin_model(member).uri for member in uri.split("+")))
    registered = _REGISTERED.fullmatch(uri)
    if not registered:
        return PinnedModel(given=uri, uri=uri)
    name, alias, number = registered.groups()
    client = mlflow.MlflowClient()
    try:
        found = client.get_model_version_by_alias(name, alias) if alias else client.get_model_version(name, number)
    except MlflowException as error:
        raise ModelError(f"cannot resolve model {uri}: {error.message.splitlines()[0]}") from None
    version = str(found.version)
    return PinnedModel(uri, f"models:/{name}/{version}", name, version, alias or "", found.run_id or "")


def load_model(uri: str) -> keras.Model:
    """Load a victim from the registry, a run, or a local path, with Keras' safe_mode (no code from the file).

    `uri1+uri2+...` loads an ensemble averaging the members' logits.
    """
    if "+" in uri:
        return ensemble([load_model(member) for member in uri.split("+")])
    if re.match(r"^(models|runs|mlflow-artifacts|s3|gs|https?):", uri):
        try:
            local = Path(mlflow.artifacts.download_artifacts(uri))
        except MlflowException as error:
            raise ModelError(f"cannot fetch model {uri}: {error.message.splitlines()[0]}") from None
    else:
        local = Path(uri)
        if not local.exists():
            raise ModelError(f"model {uri} not found; give {_URI_FORMS}")
    files = [local] if local.is_file() else sorted(local.rglob("*.keras"))
    if not files or files[0].suffix != ".keras":
        raise ModelError(f"no .keras model file in {uri}; give {_URI_FORMS}")
    try:
        model = keras.saving.load_model(files[0], safe_mode=True)
    except (ValueError, TypeError, OSError) as error:  # not a Keras file, cut short, or code it would run
        raise ModelError(f"cannot load model {uri}: {' '.join(str(error).split())}") from None
    check_victim(model)
    if not all(np.isfinite(weights).all() for weights in model.get_weights()):
        raise ModelError(f"model {uri} has NaN or infinite weights")
    return model


def load_generators(run_id: str) -> dict[int, keras.Model]:
    """The per-class generators of a generator-set run (`train` with mode=generator), by class index."""
    children = mlflow.search_runs(
        search_all_experiments=True,
        filter_string=f"tags.`mlflow.parentRunId` = '{run_id}' and tags.`medadv.step` = 'generator_class'",
        output_format="list",
    )
    if not children:
        raise ModelError(f"run {run_id} holds no generators; train a set with --mode generator")
    return {int(child.data.tags[CLASS_TAG]): load_generator(child.info.run_id) for child in children}


def load_generator(class_run_id: str) -> keras.Model:
    """The generator one class run of a generator set logged."""
    local = Path(mlflow.artifacts.download_artifacts(f"runs:/{class_run_id}/generator"))
    return keras.saving.load_model(sorted(local.rglob("*.keras"))[0], safe_mode=True)
