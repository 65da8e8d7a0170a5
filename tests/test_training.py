"""Candidate fitting, selection, skipping failed learners, and the refitted model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import base_config

from uplift.config import load_config
from uplift.data import load_dataset
from uplift.errors import ConfigError
from uplift.models import LearnerError, UpliftModel
from uplift.training import CandidateResult, ranked, train_models

FAST = {"n_estimators": 40}


def config(tmp_path: Path, **model: object) -> Path:
    mapping = {
        "name": "t", "period": "2026-10",
        "data": {"simulate": {"customers": 6000, "seed": 4}, "value": "monthly_revenue",
                 "categorical": ["plan", "contract", "region", "payment_method"]},
        "arms": base_config()["arms"],
        "allocation": base_config()["allocation"],
        "model": {"learners": ["s", "t"], "seed": 3, **model},
        "policy": {"budget": 3000.0, "capacity": {"webinar": 400}},
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(mapping))
    return path


@pytest.fixture(autouse=True)
def fast_learners(monkeypatch: pytest.MonkeyPatch) -> None:
    """Shrink base models so each fit takes well under a second."""
    original = UpliftModel.__init__

    def init(self: UpliftModel, *args: object, **kwargs: object) -> None:
        original(self, *args, **kwargs)
        if self.learner in ("s", "t", "x"):
            self.params = FAST

    monkeypatch.setattr(UpliftModel, "__init__", init)


def test_train_models_selects_refits_and_estimates(tmp_path: Path) -> None:
    cfg = load_config(config(tmp_path))
    dataset = load_dataset(cfg)
    steps: list[str] = []
    result = train_models(dataset, cfg, on_step=steps.append)
    names = [c.learner for c in result.candidates]
    assert names == ["s", "t", "ensemble"]
    assert result.selected in names
    assert result.selected == ranked(result.candidates, "qini")[0]
    assert steps[0] == "Fitting the churn-risk model"
    assert steps[-1].startswith("Refitting")
    scores = result.model.predict(dataset.frame.head(50))
    assert list(scores.columns) == ["churn_risk", "uplift_discount_20", "uplift_free_upgrade",
                                    "uplift_webinar"]
    assert scores["churn_risk"].between(0, 1).all()
    table = result.to_frame()
    assert table["selected"].sum() == 1
    markdown = result.to_markdown()
    assert f"Selected **{result.selected}** by qini." in markdown
    assert markdown.count("\n| ") == 2 + len(result.candidates)  # header, rule, rows
    assert {"qini_webinar", "auuc_webinar", "policy_value"} <= set(table.columns)
    # The held-out policy respects the budget and capacity scaled to the held-out share.
    share = len(result.holdout_index) / dataset.n_rows
    policy = result.holdout_policy
    assert policy.total_cost <= 3000.0 * share * (1 + 1e-9)
    assert policy.counts()["webinar"] <= int(400 * share)
    metrics = result.policy_estimate.metrics()
    assert metrics["policy_churn_reduction_ci_low"] <= metrics["policy_churn_reduction"]


def test_the_same_seed_gives_the_same_model(tmp_path: Path) -> None:
    cfg = load_config(config(tmp_path, ensemble=False))
    dataset = load_dataset(cfg)
    a = train_models(dataset, cfg).model.predict(dataset.frame.head(100))
    b = train_models(dataset, cfg).model.predict(dataset.frame.head(100))
    np.testing.assert_array_equal(a.to_numpy(), b.to_numpy())


def test_a_failing_learner_is_reported_and_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = load_config(config(tmp_path))
    original = UpliftModel.fit

    def fit(self: UpliftModel, *args: object, **kwargs: object) -> UpliftModel:
        if self.learner == "t":
            raise LearnerError("learner 't' failed to fit: boom")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(UpliftModel, "fit", fit)
    result = train_models(load_dataset(cfg), cfg)
    failed = [c for c in result.candidates if not c.ok]
    assert [c.learner for c in failed] == ["t"]
    assert "boom" in failed[0].error
    assert result.selected == "s"


def test_every_learner_failing_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    cfg = load_config(config(tmp_path))

    def fit(self: UpliftModel, *args: object, **kwargs: object) -> UpliftModel:
        raise LearnerError(f"learner {self.learner!r} failed to fit: boom")

    monkeypatch.setattr(UpliftModel, "fit", fit)
    with pytest.raises(LearnerError, match=r"every candidate learner failed \(s: .*; t: "):
        train_models(load_dataset(cfg), cfg)


def test_net_value_needs_a_value_column(tmp_path: Path) -> None:
    path = config(tmp_path)
    mapping = yaml.safe_load(path.read_text())
    mapping["data"]["value"] = None
    path.write_text(yaml.safe_dump(mapping))
    cfg = load_config(path)
    with pytest.raises(ConfigError, match=r"data.value: a value column"):
        train_models(load_dataset(cfg), cfg)


def test_ranking_by_qini_and_by_policy_value() -> None:
    a = CandidateResult("a", {"qini_x": 0.2, "qini_y": 0.0, "policy_value": 5.0,
                              "policy_churn_reduction": 0.01})
    b = CandidateResult("b", {"qini_x": 0.1, "qini_y": 0.05, "policy_value": 7.0,
                              "policy_churn_reduction": 0.005})
    failed = CandidateResult("c", error="boom")
    assert ranked([a, b, failed], "qini") == ["a", "b"]
    assert ranked([a, b, failed], "policy_value") == ["b", "a"]
    assert ranked([a, b], "policy_value", objective="churn_reduction") == ["a", "b"]
