"""Shared fixtures: a small hand-built RCT table, config writing, and a CLI runner."""

from __future__ import annotations

import copy
from collections.abc import Callable
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


def use_small_models(mp: pytest.MonkeyPatch, n_estimators: int = 40) -> None:
    """Make every uplift and churn-risk model small and single-threaded while ``mp`` is active.

    Small base models keep fixture training to seconds; one thread each, because two
    LightGBM threads per fit on a busy two-core machine can make fits far slower.
    """
    from uplift.models import ChurnRiskModel, UpliftModel

    uplift_init, risk_init = UpliftModel.__init__, ChurnRiskModel.__init__

    def small_uplift(self: UpliftModel, *args: object, **kwargs: object) -> None:
        uplift_init(self, *args, **kwargs)
        self.params, self.n_jobs = {"n_estimators": n_estimators}, 1

    def small_risk(self: ChurnRiskModel, *args: object, **kwargs: object) -> None:
        risk_init(self, *args, **kwargs)
        self.n_jobs = 1

    mp.setattr(UpliftModel, "__init__", small_uplift)
    mp.setattr(ChurnRiskModel, "__init__", small_risk)
