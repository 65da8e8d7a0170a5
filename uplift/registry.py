"""The fitted model as one MLflow pyfunc: log, register, alias, load.

The pyfunc takes raw customer rows (as in the data file; extra columns are ignored)
and returns ``churn_risk`` and one ``uplift_<arm>`` column per offer. It carries the
experiment config, so an export needs nothing else. Requirements are given
explicitly, which saves MLflow seconds of inferring them.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from .data import Dataset
from .drift import profile_features
from .errors import (
    ArgumentError,
    ArgumentProblem,
    ModelNotFoundError,
    Problem,
    UpliftWarning,
    first_line,
)
from .models import RetentionModel, uplift_column

MODEL_ARTIFACT = "model"
CANDIDATE = "candidate"
CHAMPION = "champion"
PROFILE_ROWS = 200_000  # training rows summarized for the drift guard
_PACKAGE = Path(__file__).resolve().parent
_REQUIREMENTS = ("mlflow", "causalml", "lightgbm", "xgboost", "scikit-learn", "pandas",
                 "numpy", "scipy", "pyyaml", "pydantic", "statsmodels", "pyarrow")


def _pyfunc_class() -> type:
    import mlflow.pyfunc

    class UpliftPyfunc(mlflow.pyfunc.PythonModel):
        """Churn risk and per-offer uplift for raw customer rows."""

        def load_context(self, context: Any) -> None:
            import joblib
            import yaml

            self.model = joblib.load(context.artifacts["retention_model"])
            with open(context.artifacts["experiment_config"], encoding="utf-8") as handle:
                self.config_text = handle.read()
            self.config = yaml.safe_load(self.config_text)
            with open(context.artifacts["training_profile"], encoding="utf-8") as handle:
                self.profile = json.load(handle)

        def predict(self, context: Any, model_input: pd.DataFrame,
                    params: dict[str, Any] | None = None) -> pd.DataFrame:
            return self.model.predict(pd.DataFrame(model_input))

    return UpliftPyfunc


def requirements() -> list[str]:
    """Pinned requirements of the environment that trained the model."""
    pins = []
    for name in _REQUIREMENTS:
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return pins


class _UncheckedPyfunc:
    """``mlflow.pyfunc`` for ``Model.log``, minus two checks that cost about a second.

    ``validate_serving_input`` (read by ``Model.log``) would load the model again to
    predict its input example; the requirement check would scan every installed
    distribution to confirm pins that ``requirements()`` read from those same
    distributions. Loading in a fresh process and serving are tested instead.
    """

    @staticmethod
    def save_model(**kwargs: Any) -> Any:
        import mlflow.pyfunc
        import mlflow.utils.environment as environment

        kwargs.pop("validate_serving_input", None)
        check = getattr(environment, "warn_dependency_requirement_mismatches", None)
        if check is not None:
            environment.warn_dependency_requirement_mismatches = lambda *_a, **_k: None
        try:
            return mlflow.pyfunc.save_model(**kwargs)
        finally:
            if check is not None:
                environment.warn_dependency_requirement_mismatches = check


def input_schema(frame: pd.DataFrame, features: list[str],
                 optional: list[str] | None = None) -> Any:
    """The pyfunc's input schema from the training columns' types.

    Real numbers are ``double``, text and categories ``string``, flags ``boolean``.
    Integer columns accept any number: MLflow refuses int64 for ``double`` and NaN
    for ``long``, and a batch of raw rows may bring either. ``optional`` columns (the
    id, group and outcome of a raw data row) may come along and are ignored, so MLflow
    neither refuses nor warns about them.
    """
    from mlflow.types import ColSpec, DataType, Schema
    from mlflow.types.schema import AnyType

    def dtype(name: str) -> Any:
        kind = frame[name].dtype
        if pd.api.types.is_bool_dtype(kind):
            return DataType.boolean
        if pd.api.types.is_integer_dtype(kind):
            return AnyType()
        if pd.api.types.is_numeric_dtype(kind):
            return DataType.double
        return DataType.string

    extra = [c for c in (optional or []) if c not in features and c in frame.columns]
    return Schema([ColSpec(dtype(name), name) for name in features]
                  + [ColSpec(AnyType(), name, required=False) for name in extra])


def _output_schema(model: RetentionModel) -> Any:
    from mlflow.types import ColSpec, DataType, Schema

    return Schema([ColSpec(DataType.double, name) for name in
                   ["churn_risk", *(uplift_column(arm) for arm in model.arms)]])


def log_model(model: RetentionModel, dataset: Dataset, config_text: str) -> Any:
    """Log ``model`` as the active run's pyfunc ``model/`` with signature and input example.

    The model carries its experiment config, a profile of the training features (for
    the export's drift guard) and this package's code, so it loads wherever its pip
    requirements are installed. MLflow's own check of the input example (loading the
    model again to predict it) is skipped: it costs seconds, and loading in a fresh
    process and serving are tested.

    Args:
        model: The fitted model.
        dataset: The rows it was trained on (schema, input example, drift profile).
        config_text: The experiment config file's text, stored with the model.
    """
    import joblib
    from mlflow.models import Model, ModelSignature

    frame = dataset.frame
    features = frame[model.features]
    sample = frame if len(frame) <= PROFILE_ROWS else frame.sample(PROFILE_ROWS,
                                                                   random_state=0)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        joblib.dump(model, folder / "retention_model.joblib")
        (folder / "experiment.yaml").write_text(config_text, encoding="utf-8")
        profile = profile_features(sample, model.features, dataset.categorical)
        (folder / "training_profile.json").write_text(json.dumps(profile), encoding="utf-8")
        code = folder / "code" / _PACKAGE.name
        shutil.copytree(_PACKAGE, code, ignore=shutil.ignore_patterns("__pycache__"))
        raw_columns = [dataset.id_column, dataset.treatment_column, dataset.outcome_column]
        signature = ModelSignature(
            inputs=input_schema(frame, model.features, raw_columns),
            outputs=_output_schema(model))
        return Model.log(
            artifact_path=None, name=MODEL_ARTIFACT, flavor=_UncheckedPyfunc,
            flavor_name="mlflow.pyfunc", python_model=_pyfunc_class()(),
            artifacts={"retention_model": str(folder / "retention_model.joblib"),
                       "experiment_config": str(folder / "experiment.yaml"),
                       "training_profile": str(folder / "training_profile.json")},
            code_paths=[str(code)], pip_requirements=requirements(), signature=signature,
            input_example=features.head(5), validate_serving_input=False,
        )


MODEL_DESCRIPTION = (
    "Retention uplift model. Its pyfunc takes raw customer rows as in the data file (the id, "
    "group and outcome columns may come along and are ignored) and returns, per row, "
    "`churn_risk` (P(churn) with no offer) and one `uplift_<offer>` column per offer "
    "(predicted churn reduction; > 0 = the offer keeps the customer). It carries its "
    "experiment config, so `uplift export` needs nothing else. Versions come from "
    "`uplift run` with alias `candidate`; `uplift promote` moves `champion`.")


def register(client: Any, model_uri: str, name: str, run_id: str, alias: str = CANDIDATE,
             *, description: str | None = None, tags: dict[str, str] | None = None,
             model_id: str | None = None) -> str:
    """Register ``model_uri`` under ``name`` and point ``alias`` at the new version.

    The version gets ``description`` and ``tags``; the registered model, when it has no
    description yet, says what its pyfunc takes and returns. With ``model_id`` (MLflow 3's
    logged model) the logged model records the version, so its page shows it registered.
    """
    from mlflow.exceptions import MlflowException

    from .tracking import use_store

    try:
        client.create_registered_model(name, description=MODEL_DESCRIPTION)
    except MlflowException as exc:  # it exists, perhaps just created by a concurrent run
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        if not client.get_registered_model(name).description:
            client.update_registered_model(name, description=MODEL_DESCRIPTION)
    _warn_if_shared(client, name, alias, run_id)
    with use_store(client.tracking_uri):
        version = client.create_model_version(name, model_uri, run_id=run_id, tags=tags,
                                              description=description, model_id=model_id)
    client.set_registered_model_alias(name, alias, version.version)
    if model_id is not None:
        logged = client.get_logged_model(model_id)
        known = json.loads(logged.tags.get("mlflow.modelVersions", "[]"))
        known.append({"name": name, "version": version.version})  # as MLflow records it
        client.set_logged_model_tags(model_id, {"mlflow.modelVersions": json.dumps(known)})
    return str(version.version)


@dataclass(frozen=True)
class Promotion:
    """What ``promote`` moved: the alias, to which version, and from which (None: new)."""

    name: str
    version: str
    previous: str | None
    run_id: str | None
    period: str | None

    def describe(self) -> str:
        """One line for people: what moved, from where to where."""
        origin = f"version {self.previous}" if self.previous else "no version"
        source = ", ".join(p for p in (f"period {self.period}" if self.period else "",
                                       f"run {self.run_id}" if self.run_id else "") if p)
        same = " (already there)" if self.previous == self.version else ""
        return (f"{self.name} '{CHAMPION}': {origin} -> version {self.version}{same}"
                + (f" ({source})" if source else ""))


def promote(client: Any, name: str, *, version: str | None = None,
            run_id: str | None = None, experiment: str | None = None) -> Promotion:
    """Point ``champion`` at a version (given, or the one from ``run_id``, else the candidate).

    With ``experiment`` (the config's name) a version trained in another experiment is
    refused: experiments that share a registered model's name take turns at its
    ``candidate``, and the champion of one would score the other's customers.
    """
    if version is None and run_id is not None:
        if not re.fullmatch(r"[0-9A-Za-z_-]+", run_id):
            raise ModelNotFoundError(ArgumentProblem(None, "run_id",
                                                     f"{run_id!r} is not a run id"))
        found = [v for v in client.search_model_versions(f"run_id = '{run_id}'")
                 if v.name == name]
        if not found:
            raise ModelNotFoundError(ArgumentProblem(
                None, "run_id", f"no version of {name!r} comes from run {run_id}"))
        version = str(max(int(v.version) for v in found))
    if version is None:
        try:
            version = str(client.get_model_version_by_alias(name, CANDIDATE).version)
        except Exception:  # noqa: BLE001 - mlflow raises its own type for a missing alias
            raise ModelNotFoundError(Problem(None, "tracking.registered_model",
                                             f"{name!r} has no '{CANDIDATE}' version; "
                                             "run uplift run first")) from None
    try:
        client.get_model_version(name, version)
    except Exception:  # noqa: BLE001
        raise ModelNotFoundError(ArgumentProblem(None, "version",
                                                 f"{name!r} has no version {version}")) from None
    if experiment is not None:
        _check_experiment(client, name, version, experiment)
    try:
        previous: str | None = str(client.get_model_version_by_alias(name, CHAMPION).version)
    except Exception:  # noqa: BLE001 - no champion yet
        previous = None
    client.set_registered_model_alias(name, CHAMPION, version)
    chosen = client.get_model_version(name, version)
    return Promotion(name=name, version=version, previous=previous, run_id=chosen.run_id,
                     period=(chosen.tags or {}).get("period"))


def _experiment_of(client: Any, run_id: str | None) -> str | None:
    """The name of the experiment ``run_id`` belongs to (None if that cannot be told)."""
    try:
        return client.get_experiment(client.get_run(run_id).info.experiment_id).name
    except Exception:  # noqa: BLE001 - no run, or a run deleted since
        return None


def _warn_if_shared(client: Any, name: str, alias: str, run_id: str) -> None:
    """Warn when ``alias`` moves away from another experiment's version of ``name``."""
    try:
        current = client.get_model_version_by_alias(name, alias)
    except Exception:  # noqa: BLE001 - mlflow raises its own type for a missing alias
        return
    other, this = _experiment_of(client, current.run_id), _experiment_of(client, run_id)
    if other is not None and this is not None and other != this:
        warnings.warn(f"registered model {name!r}: its '{alias}' was version "
                      f"{current.version} of experiment {other!r} and is now this run's "
                      f"({this!r}); give each experiment its own tracking.registered_model",
                      UpliftWarning, stacklevel=3)


def _check_experiment(client: Any, name: str, version: str, experiment: str) -> None:
    """Refuse a version whose run belongs to an experiment other than ``experiment``."""
    source = _experiment_of(client, client.get_model_version(name, version).run_id)
    if source is not None and source != experiment:
        raise ArgumentError(Problem(None, "tracking.registered_model", (
            f"version {version} of {name!r} was trained in experiment {source!r}, not "
            f"{experiment!r}; give each experiment its own tracking.registered_model")))


@dataclass(frozen=True)
class LoadedModel:
    """A registered uplift model as the export needs it."""

    model: RetentionModel
    config_text: str
    profile: dict[str, Any]
    input_types: dict[str, str]
    uri: str
    name: str | None
    version: str | None
    run_id: str | None


_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))$")


def load_model(model_uri: str | None, name: str, tracking_uri: str) -> LoadedModel:
    """Load a registered (or logged) uplift pyfunc with its config and training profile.

    Args:
        model_uri: ``models:/name@alias``, ``models:/name/N``, ``runs:/<id>/model`` or any
            MLflow model URI; None means ``models:/<name>@champion``.
        name: The registered model name used when ``model_uri`` is None.
        tracking_uri: The store that holds the model.

    Raises:
        ModelNotFoundError: no champion yet, an unknown URI, or not an uplift model.
    """
    import mlflow.pyfunc
    from mlflow import MlflowClient

    from .tracking import use_store

    if tracking_uri.startswith("sqlite:///"):
        database = Path(tracking_uri[len("sqlite:///"):]).expanduser()
        if not database.is_file():
            raise ModelNotFoundError(ArgumentProblem(
                None, "model_uri", f"no MLflow store at {database}; run uplift run first (or "
                "name the store that holds the model)"))
    client = MlflowClient(tracking_uri, registry_uri=tracking_uri)
    version = run_id = None
    uri = model_uri or f"models:/{name}@{CHAMPION}"
    match = _MODELS_URI.match(uri)
    if match:
        registered = match["name"]
        try:
            found = (client.get_model_version_by_alias(registered, match["alias"])
                     if match["alias"] else client.get_model_version(registered,
                                                                     match["version"]))
        except Exception:  # noqa: BLE001 - mlflow's own error types for a missing model
            if model_uri is None:
                raise ModelNotFoundError(ArgumentProblem(
                    None, "model_uri", f"{registered!r} has no '{CHAMPION}' version yet in "
                    f"{tracking_uri}; choose one with `uplift promote`")) from None
            raise ModelNotFoundError(ArgumentProblem(
                None, "model_uri", f"no model {uri} in {tracking_uri}")) from None
        version, run_id, name = str(found.version), found.run_id, registered
    elif uri.startswith("runs:/"):
        run_id, name = uri.split("/")[1], None
    try:
        with use_store(tracking_uri):
            loaded = mlflow.pyfunc.load_model(uri)
    except Exception as exc:  # noqa: BLE001
        raise ModelNotFoundError(ArgumentProblem(
            None, "model_uri", f"cannot load {uri}: {first_line(exc)}")) from None
    python_model = loaded.unwrap_python_model()
    if not all(hasattr(python_model, key) for key in ("model", "config_text", "profile")):
        raise ModelNotFoundError(ArgumentProblem(None, "model_uri", f"{uri} is not an uplift "
                                                 "model logged by uplift run"))
    schema = loaded.metadata.get_input_schema()
    types = {spec.name: str(spec.to_dict()["type"]) for spec in schema.inputs} if schema else {}
    return LoadedModel(model=python_model.model, config_text=python_model.config_text,
                       profile=python_model.profile, input_types=types, uri=uri, name=name,
                       version=version, run_id=run_id)
