"""The fitted model as one MLflow pyfunc: log, register, alias, load.

The pyfunc takes raw customer rows (as in the data file; extra columns are ignored)
and returns ``churn_risk`` and one ``uplift_<arm>`` column per offer. It carries the
experiment config, so an export needs nothing else. Requirements are given
explicitly, which saves MLflow seconds of inferring them.
"""

from __future__ import annotations

import contextlib
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from .config import ExperimentConfig
from .errors import ModelNotFoundError, Problem
from .training import RetentionModel

MODEL_ARTIFACT = "model"
CANDIDATE = "candidate"
CHAMPION = "champion"
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
                self.config = yaml.safe_load(handle)

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


def log_model(model: RetentionModel, cfg: ExperimentConfig, example: pd.DataFrame,
              config_text: str) -> Any:
    """Log ``model`` as the active run's pyfunc ``model/`` with signature and input example.

    Args:
        model: The fitted model.
        cfg: Its experiment config (arms, for the output schema).
        example: A few raw customer rows (the input example).
        config_text: The experiment config file's text, stored with the model.
    """
    import joblib
    import mlflow
    from mlflow.models import infer_signature

    with tempfile.TemporaryDirectory() as tmp:
        model_path = Path(tmp) / "retention_model.joblib"
        config_path = Path(tmp) / "experiment.yaml"
        joblib.dump(model, model_path)
        config_path.write_text(config_text, encoding="utf-8")
        features = example[model.features]
        signature = infer_signature(features, model.predict(features))
        return mlflow.pyfunc.log_model(
            name=MODEL_ARTIFACT, python_model=_pyfunc_class()(),
            artifacts={"retention_model": str(model_path),
                       "experiment_config": str(config_path)},
            pip_requirements=requirements(), signature=signature, input_example=features,
        )


def register(client: Any, model_uri: str, name: str, run_id: str,
             alias: str = CANDIDATE) -> str:
    """Register ``model_uri`` under ``name`` and point ``alias`` at the new version."""
    import mlflow

    # It may exist already, or have just been created by a concurrent run.
    with contextlib.suppress(Exception):
        client.create_registered_model(name)
    # MLflow resolves a logged model's ``models:/m-...`` source through the global
    # store, so point it at the client's store for the registration.
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(client.tracking_uri)
    try:
        version = client.create_model_version(name, model_uri, run_id=run_id)
    finally:
        mlflow.set_tracking_uri(previous)
    client.set_registered_model_alias(name, alias, version.version)
    return str(version.version)


def promote(client: Any, name: str, *, version: str | None = None,
            run_id: str | None = None) -> str:
    """Point ``champion`` at a version (given, or the one from ``run_id``, else the candidate)."""
    if version is None and run_id is not None:
        found = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
        if not found:
            raise ModelNotFoundError(Problem(None, "--run",
                                             f"no version of {name!r} comes from run {run_id}"))
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
        raise ModelNotFoundError(Problem(None, "--version",
                                         f"{name!r} has no version {version}")) from None
    client.set_registered_model_alias(name, CHAMPION, version)
    return version
