"""Tracking: URI precedence, the spec's metric names, flattened params."""

from __future__ import annotations

from pathlib import Path

import pytest

from uplift.config import load_config
from uplift.tracking import (
    DEFAULT_TRACKING_URI,
    finite_metrics,
    flatten_params,
    logged_metric_names,
    resolve_tracking_uri,
    spec_metric_names,
)

ROOT = Path(__file__).resolve().parents[1]


def test_tracking_uri_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = load_config(ROOT / "experiments" / "demo.yaml")
    with_uri = cfg.model_copy(update={"tracking": cfg.tracking.model_copy(
        update={"uri": "sqlite:///from-config.db"})})
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    here = Path.cwd()
    assert resolve_tracking_uri(None, cfg) == f"sqlite:///{here / 'mlruns' / 'mlflow.db'}"
    assert DEFAULT_TRACKING_URI == "sqlite:///mlruns/mlflow.db"
    assert resolve_tracking_uri(None, with_uri) == f"sqlite:///{here / 'from-config.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////data/from-env.db")
    assert resolve_tracking_uri(None, with_uri) == "sqlite:////data/from-env.db"
    assert resolve_tracking_uri("http://127.0.0.1:5000", with_uri) == "http://127.0.0.1:5000"


def test_spec_metric_names_for_two_arms() -> None:
    names = spec_metric_names(["discount_20", "webinar"])
    per_arm = {"n_{}", "churn_rate_{}", "ate_{}", "ate_{}_ci_low", "ate_{}_ci_high",
               "ate_{}_pvalue", "ate_{}_pvalue_adj", "qini_{}", "auuc_{}", "policy_share_{}"}
    fixed = {"n_customers", "n_control", "churn_rate_control", "srm_pvalue",
             "policy_churn_rate", "policy_churn_reduction", "policy_churn_reduction_ci_low",
             "policy_churn_reduction_ci_high", "policy_net_value_per_customer",
             "policy_cost_per_customer", "churn_rate_observed", "baseline_churn_rate",
             "churn_reduction_vs_baseline"}
    assert names == fixed | {p.format(a) for p in per_arm for a in ("discount_20", "webinar")}
    assert "srm_pvalue" not in spec_metric_names(["a"], allocation=False)


def test_a_run_logs_the_spec_names_and_the_adjusted_ones() -> None:
    arms = ["discount_20", "webinar"]
    adjusted = {f"ate_{a}_cuped{s}" for a in arms
                for s in ("", "_ci_low", "_ci_high", "_pvalue", "_pvalue_adj")}
    adjusted |= {f"variance_reduction_{a}" for a in arms}
    assert logged_metric_names(arms) == spec_metric_names(arms) | adjusted
    assert not adjusted & spec_metric_names(arms)


def test_flatten_params_and_finite_metrics() -> None:
    cfg = load_config(ROOT / "experiments" / "demo.yaml")
    params = flatten_params(cfg)
    assert params["policy.objective"] == "net_value"
    assert params["arms.discount_20.cost.revenue_share"] == "0.2"
    assert params["model.learners"] == str(cfg.model.learners)
    assert finite_metrics({"a": 1, "b": float("nan"), "c": float("inf")}) == {"a": 1.0}
