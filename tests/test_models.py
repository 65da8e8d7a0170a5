"""Uplift learners and the churn-risk model: sklearn contract, arm mapping, edge cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from uplift.models import (
    ChurnRiskModel,
    EnsembleUpliftModel,
    FeatureEncoder,
    LearnerError,
    UpliftModel,
)
from uplift.simulate import simulate_customers

# Small, fast settings so every learner fits in a second or two on a few thousand rows.
FAST = {
    "s": {"n_estimators": 60}, "t": {"n_estimators": 60}, "x": {"n_estimators": 60},
    "r": {"n_estimators": 60}, "dr": {"n_estimators": 60},
    "uplift_forest": {"n_estimators": 5, "max_depth": 4, "min_samples_leaf": 100},
    "uplift_tree": {"max_depth": 3, "min_samples_leaf": 200},
}
ARMS = ["zeta", "alpha"]  # config order differs from causalml's sorted order
SHARES = {"control": 0.4, "zeta": 0.3, "alpha": 0.3}


def two_arm_table(n: int = 6000, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """'zeta' keeps customers (-15 pp churn), 'alpha' pushes them away (+15 pp)."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({
        "usage": rng.gamma(2.0, 3.0, n),
        "plan": rng.choice(["basic", "premium", "standard"], n),
        "nps": np.where(rng.random(n) < 0.3, np.nan, rng.integers(0, 11, n).astype(float)),
    })
    treatment = rng.choice(["control", *ARMS], n, p=list(SHARES.values())).astype(object)
    p = 0.35 - 0.15 * (treatment == "zeta") + 0.15 * (treatment == "alpha")
    churned = (rng.random(n) < p).astype(int)
    return X, treatment, churned


@pytest.fixture(scope="module")
def table() -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    return two_arm_table()


def model(learner: str) -> UpliftModel:
    return UpliftModel(learner=learner, control="control", arms=ARMS, propensity=SHARES,
                       categorical=["plan"], seed=3, params=FAST[learner])


@pytest.mark.parametrize("learner", ["s", "t", "x", "r", "dr", "uplift_forest", "uplift_tree"])
def test_columns_are_mapped_to_arms_by_name(table: tuple, learner: str) -> None:
    X, treatment, churned = table
    fitted = model(learner).fit(X, treatment, churned)
    assert fitted.arms_ == ARMS
    out = fitted.predict(X)
    assert list(out.columns) == ["uplift_zeta", "uplift_alpha"]
    assert out.index.equals(X.index)
    # zeta reduces churn by 15 pp, alpha raises it by 15 pp: signs must follow the names.
    assert out["uplift_zeta"].mean() > 0.07
    assert out["uplift_alpha"].mean() < -0.07


def test_sklearn_contract(table: tuple) -> None:
    X, treatment, churned = table
    unfitted = model("t")
    assert not hasattr(unfitted, "learner_")  # nothing done in __init__
    assert unfitted.get_params()["learner"] == "t"
    copy = clone(unfitted)
    assert copy.get_params() == unfitted.get_params()
    assert unfitted.fit(X, treatment, churned) is unfitted
    assert hasattr(unfitted, "learner_")
    assert hasattr(unfitted, "encoder_")


def test_seeded_fits_are_reproducible(table: tuple) -> None:
    X, treatment, churned = table
    a = model("uplift_forest").fit(X, treatment, churned).predict(X)
    b = model("uplift_forest").fit(X, treatment, churned).predict(X)
    pd.testing.assert_frame_equal(a, b)


@pytest.mark.parametrize("learner", ["x", "r", "dr"])
def test_known_propensities_mean_no_propensity_model(
    table: tuple, learner: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import causalml.inference.meta.base as base
    import causalml.inference.meta.drlearner as drlearner

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("a propensity model was fitted")

    monkeypatch.setattr(base.BaseLearner, "_set_propensity_models", forbidden)
    monkeypatch.setattr(drlearner, "compute_propensity_score", forbidden)
    X, treatment, churned = table
    out = model(learner).fit(X, treatment, churned).predict(X)
    assert np.isfinite(out.to_numpy()).all()


def test_observed_shares_when_no_allocation(table: tuple) -> None:
    X, treatment, churned = table
    fitted = UpliftModel(learner="x", control="control", params=FAST["x"]).fit(
        X, treatment, churned)
    assert fitted.arms_ == ["alpha", "zeta"]  # sorted when not given
    observed = pd.Series(treatment).value_counts(normalize=True)
    assert fitted.shares_["zeta"] == pytest.approx(observed["zeta"])


def test_arm_with_too_few_rows_is_named(table: tuple) -> None:
    X, treatment, churned = table
    treatment = treatment.copy()
    zeta = np.flatnonzero(treatment == "zeta")
    treatment[zeta[10:]] = "control"
    with pytest.raises(LearnerError, match=r"group 'zeta' has 10 rows"):
        model("t").fit(X, treatment, churned)


def test_arm_with_one_outcome_is_named(table: tuple) -> None:
    X, treatment, churned = table
    churned = np.where(treatment == "alpha", 1, churned)
    with pytest.raises(LearnerError, match=r"group 'alpha' has no retained customers"):
        model("s").fit(X, treatment, churned)


@pytest.mark.parametrize("learner", ["s", "x", "uplift_forest"])
def test_constant_feature_and_all_missing_rows(table: tuple, learner: str) -> None:
    X, treatment, churned = table
    X = X.assign(constant=1.0)
    X.loc[X.index[:50], ["usage", "plan", "nps", "constant"]] = np.nan
    fitted = model(learner).fit(X, treatment, churned)
    out = fitted.predict(X.iloc[:60])
    assert np.isfinite(out.to_numpy()).all()


def test_learner_failure_is_a_named_error(table: tuple) -> None:
    X, treatment, churned = table
    bad = UpliftModel(learner="t", control="control", arms=ARMS, propensity=SHARES,
                      params={"n_estimators": -5})
    with pytest.raises(LearnerError, match=r"learner 't' failed to fit"):
        bad.fit(X, treatment, churned)


def test_encoder_orders_categories_by_outcome_and_handles_unknowns() -> None:
    X = pd.DataFrame({"plan": ["b", "a", "c", "a", "b", "c"], "n": [1, 2, 3, 4, 5, 6]})
    y = [0, 1, 1, 1, 0, 0]  # a: 1.0, c: 0.5, b: 0.0
    encoder = FeatureEncoder().fit(X, y)
    assert list(encoder.categories_["plan"]) == ["b", "c", "a"]
    out = encoder.transform(pd.DataFrame({"plan": ["a", "zz", None], "n": [1, 2, None]}))
    assert out[0, 0] == 2.0
    assert np.isnan(out[1, 0])
    assert np.isnan(out[2, 0])
    assert np.isnan(out[2, 1])


def test_ensemble_is_the_mean_of_its_members(table: tuple) -> None:
    X, treatment, churned = table
    a = model("s").fit(X, treatment, churned)
    b = model("t").fit(X, treatment, churned)
    ensemble = EnsembleUpliftModel([a, b])
    expected = (a.predict(X) + b.predict(X)) / 2
    pd.testing.assert_frame_equal(ensemble.predict(X), expected)
    assert ensemble.learner == "ensemble:s+t"


@pytest.mark.slow
def test_churn_risk_is_calibrated_on_fresh_customers() -> None:
    train = simulate_customers(30_000, 21)
    fresh = simulate_customers(30_000, 22)
    features = [c for c in train.customers.columns
                if c not in ("customer_id", "arm", "churned")]
    risk = ChurnRiskModel(categorical=["plan", "contract", "region", "payment_method"],
                          seed=1).fit(train.customers[features], train.customers["arm"],
                                      train.customers["churned"])
    predicted = risk.predict_proba(fresh.customers[features])
    truth = fresh.truth["p_churn_control"].to_numpy()
    bins = pd.qcut(predicted, 10, labels=False)
    # Within every decile of predicted risk, the true no-offer churn matches the prediction.
    table = pd.DataFrame({"bin": bins, "predicted": predicted, "truth": truth}).groupby("bin")
    gap = (table["predicted"].mean() - table["truth"].mean()).abs()
    assert gap.max() < 0.03
    assert np.corrcoef(predicted, truth)[0, 1] > 0.8


def test_encoder_with_a_category_column_empty_at_prediction() -> None:
    encoder = FeatureEncoder().fit(pd.DataFrame({"plan": ["a", "b"]}), [0, 1])
    out = encoder.transform(pd.DataFrame({"plan": pd.Series([None, None], dtype=object)}))
    assert np.isnan(out).all()
