"""Shared fixtures: a hand-built RCT table, config writing, a CLI runner, simulated runs.

Small models come from the config (``model.params``), as a user would set them; the
trained run and the registered-model store are built once per session.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

ARMS = ["discount_20", "free_upgrade", "webinar"]
ALLOCATION = {"control": 0.4, "discount_20": 0.2, "free_upgrade": 0.2, "webinar": 0.2}
CHURN = {"control": 0.30, "discount_20": 0.24, "free_upgrade": 0.27, "webinar": 0.31}


def make_table(n: int = 2000, seed: int = 0) -> pd.DataFrame:
    """A small randomized retention test with known per-group churn rates."""
    rng = np.random.default_rng(seed)
    groups = list(ALLOCATION)
    arm = rng.choice(groups, size=n, p=list(ALLOCATION.values()))
    p = np.array([CHURN[g] for g in arm])
    return pd.DataFrame({
        "customer_id": [f"C{i:06d}" for i in range(n)],
        "tenure_months": rng.integers(1, 60, n),
        "plan": rng.choice(["basic", "standard", "premium"], size=n),
        "nps": np.where(rng.random(n) < 0.3, np.nan, rng.integers(0, 11, n)),
        "monthly_revenue": np.round(rng.gamma(2.0, 20.0, n), 2),
        "arm": arm,
        "churned": (rng.random(n) < p).astype(int),
    })


def base_config(data_path: str = "customers.csv") -> dict[str, Any]:
    """A valid config mapping in the spec's shape, pointing at ``data_path``."""
    return {
        "name": "retention-test",
        "period": "2026-10",
        "data": {"path": data_path, "id": "customer_id", "treatment": "arm",
                 "outcome": "churned", "value": "monthly_revenue", "features": "auto"},
        "control": "control",
        "arms": [
            {"name": "discount_20", "kind": "discount",
             "cost": {"revenue_share": 0.2, "months": 3}},
            {"name": "free_upgrade", "kind": "free_upgrade", "cost": {"fixed": 6.0},
             "eligible": {"plan": {"not_in": ["premium"]}}},
            {"name": "webinar", "kind": "webinar", "cost": {"fixed": 1.5}},
        ],
        "allocation": dict(ALLOCATION),
        "analysis": {"alpha": 0.05, "correction": "holm"},
    }


def set_key(mapping: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    """Return a deep copy of ``mapping`` with ``a.b.0.c`` set (or deleted when value is ...)."""
    out = copy.deepcopy(mapping)
    node: Any = out
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    last = parts[-1]
    if isinstance(node, list):
        node[int(last)] = value
    elif value is ...:
        node.pop(last, None)
    else:
        node[last] = value
    return out


# --------------------------------------------------------------------------- tools

CHROMIUM = Path("/usr/bin/chromium")
_BROWSER_CHECKS: list[str] = []


def require_browser() -> Path:
    """Debian's Chromium, for tests that look at pages as a user would.

    Missing, it skips the calling test on a workstation; under CI (``CI`` set) it fails
    it, so a browser check can never pass unnoticed by not running.
    """
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is not installed (apt-get install -y chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return CHROMIUM


def record_browser_check(what: str) -> None:
    """Note that a browser check ran to its end (summarised after the tests)."""
    _BROWSER_CHECKS.append(what)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say how many browser checks ran (CI looks for this line)."""
    terminalreporter.write_line(
        f"browser checks run in {CHROMIUM}: {len(_BROWSER_CHECKS)}"
        + (f" ({', '.join(_BROWSER_CHECKS)})" if _BROWSER_CHECKS else ""))


@pytest.fixture
def table() -> pd.DataFrame:
    return make_table()


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    """Write a config (base or given mapping) to tmp_path/config.yaml and return its path."""

    def write(mapping: dict[str, Any] | None = None, name: str = "config.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(mapping or base_config(), sort_keys=False))
        return path

    return write


@pytest.fixture
def project(tmp_path: Path, table: pd.DataFrame, write_config: Callable[..., Path]) -> Path:
    """tmp_path holding customers.csv and a valid config.yaml pointing at it."""
    table.to_csv(tmp_path / "customers.csv", index=False)
    return write_config()


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


# --------------------------------------------------------------------------- simulated runs

SMALL = {"n_estimators": 40}  # base models small enough to fit in well under a second
CATEGORICAL = ["plan", "contract", "region", "payment_method"]
DESCRIPTION = "Q4 <script>alert('x')</script> & friends"
REGISTERED = "retention-uplift"  # the default registered model name


def small_params(*learners: str) -> dict[str, dict[str, Any]]:
    """``model.params`` that make the named learners and the churn-risk model small."""
    return {name: dict(SMALL) for name in (*learners, "churn_risk") if name != "gam"}


def simulated_config(customers: int = 6000, seed: int = 4, learners: tuple[str, ...] = ("s", "t"),
                     model_seed: int = 3, **top: Any) -> dict[str, Any]:
    """A config mapping on simulated customers with small models; ``top`` adds keys."""
    mapping: dict[str, Any] = {
        "name": "simulated-test", "period": "2026-10",
        "data": {"simulate": {"customers": customers, "seed": seed}, "value": "monthly_revenue",
                 "categorical": list(CATEGORICAL)},
        "arms": base_config()["arms"], "allocation": base_config()["allocation"],
        "model": {"learners": list(learners), "seed": model_seed,
                  "params": small_params(*learners)},
    }
    mapping.update(top)
    return mapping


@dataclass(frozen=True)
class SimulatedRun:
    """A config, its data, readout and trained models: 6,000 customers, s and t learners."""

    path: Path
    cfg: Any
    dataset: Any
    rct: Any
    training: Any


@pytest.fixture(scope="session")
def simulated_run(tmp_path_factory: pytest.TempPathFactory) -> SimulatedRun:
    """Trained once for every test that reads a training result (under a budget and cap)."""
    from uplift.analysis import analyze_dataset
    from uplift.config import load_config
    from uplift.data import load_dataset
    from uplift.training import train_models

    path = tmp_path_factory.mktemp("simulated") / "c.yaml"
    path.write_text(yaml.safe_dump(simulated_config(
        name="report-test", description=DESCRIPTION,
        policy={"budget": 3000.0, "capacity": {"webinar": 400}})))
    cfg = load_config(path)
    dataset = load_dataset(cfg)
    return SimulatedRun(path, cfg, dataset, analyze_dataset(dataset, cfg),
                        train_models(dataset, cfg))


@dataclass(frozen=True)
class RegisteredStore:
    """A small model logged, registered (candidate) and promoted (champion) in a store.

    Shared by the registry and export tests; a test that moves an alias puts it back.
    """

    folder: Path
    uri: str
    config: Path
    mapping: dict[str, Any]
    client: Any
    experiment_id: str
    run_id: str
    model_uri: str
    version: str
    columns: list[str]
    rows: pd.DataFrame
    expected: pd.DataFrame
    customers: pd.DataFrame
    customers_csv: Path
    customers_parquet: Path

    def env(self) -> dict[str, str]:
        """A subprocess environment that points MLflow at the store and sends nothing out."""
        import os
        import sys

        # `mlflow models serve` runs `uvicorn` from PATH: put this interpreter's bin first.
        path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
        return {**os.environ, "PATH": path, "MLFLOW_TRACKING_URI": self.uri,
                "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}


@pytest.fixture(scope="session")
def registered_store(tmp_path_factory: pytest.TempPathFactory) -> RegisteredStore:
    import mlflow
    from mlflow import MlflowClient

    from uplift import registry
    from uplift.config import load_config
    from uplift.data import load_dataset
    from uplift.simulate import simulate_customers
    from uplift.tracking import use_store
    from uplift.training import train_models

    folder = tmp_path_factory.mktemp("store")
    mapping = simulated_config(customers=4000, seed=21, learners=("s",), model_seed=9,
                               name=REGISTERED, policy={"holdout": 0.1},
                               tracking={"registered_model": REGISTERED})
    config = folder / "config.yaml"
    config.write_text(yaml.safe_dump(mapping), encoding="utf-8")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        cfg = load_config(config)
        dataset = load_dataset(cfg)
        model = train_models(dataset, cfg).model
        # The model's own per-customer choice, whatever the small run recommended; the
        # export of a fixed recommendation has its own tests.
        model.fixed_offer = None
        client = MlflowClient(uri)
        experiment_id = client.create_experiment(
            REGISTERED, artifact_location=(folder / "artifacts").as_uri())
        with use_store(uri):
            with mlflow.start_run(experiment_id=experiment_id) as run:
                info = registry.log_model(model, dataset, config.read_text(encoding="utf-8"))
            version = registry.register(client, info.model_uri, REGISTERED, run.info.run_id)
        registry.promote(client, REGISTERED)

    rows = dataset.frame.head(30).reset_index(drop=True)
    customers = simulate_customers(20_000, seed=77).customers.drop(columns=["arm", "churned"])
    csv_path, parquet_path = folder / "customers.csv", folder / "customers.parquet"
    customers.to_csv(csv_path, index=False)
    customers.to_parquet(parquet_path, index=False)
    return RegisteredStore(
        folder=folder, uri=uri, config=config, mapping=mapping, client=client,
        experiment_id=experiment_id, run_id=run.info.run_id, model_uri=info.model_uri,
        version=version, columns=["churn_risk", *(f"uplift_{arm}" for arm in cfg.arm_names)],
        rows=rows, expected=model.predict(rows), customers=customers, customers_csv=csv_path,
        customers_parquet=parquet_path)
