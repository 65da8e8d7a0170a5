"""Uplift learners and the churn-risk model: sklearn contract, arm mapping, edge cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from uplift.additive import AdditiveSClassifier
from uplift.learners import make_learner
from uplift.models import (
    ChurnRiskModel,
    EnsembleUpliftModel,
    FeatureEncoder,
    LearnerError,
    UpliftModel,
    isotonic_calibrator,
)
from uplift.simulate import simulate_customers

# Small, fast settings so every learner fits in a second or two on a few thousand rows.
FAST = {
    "s": {"n_estimators": 60}, "t": {"n_estimators": 60}, "x": {"n_estimators": 60},
    "r": {"n_estimators": 60}, "dr": {"n_estimators": 60},
    "uplift_forest": {"n_estimators": 5, "max_depth": 4, "min_samples_leaf": 100},
    "uplift_tree": {"max_depth": 3, "min_samples_leaf": 200},
    "gam": {},
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


@pytest.mark.parametrize("learner", ["s", "gam", "t", "x", "r", "dr", "uplift_forest",
                                     "uplift_tree"])
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


def test_calibrated_risk_stays_off_zero_and_one() -> None:
    scores = np.linspace(0.0, 1.0, 300)
    churned = (scores > 0.5).astype(int)  # the top half all churned, the bottom half none
    mapped = isotonic_calibrator(scores, churned).predict(np.array([-1.0, 0.1, 0.9, 2.0]))
    np.testing.assert_allclose(mapped, [0.001, 0.001, 0.999, 0.999])


def test_risk_uses_the_held_out_scores_it_is_given() -> None:
    data = simulate_customers(3000, 3).customers
    features = ["tenure_months", "monthly_revenue"]
    scores = np.linspace(0.0, 1.0, 200)
    # Held-out customers churned exactly when their score was above 0.3.
    held_out = (scores, (scores > 0.3).astype(int))
    risk = ChurnRiskModel(seed=1, params={"n_estimators": 5}).fit(
        data[features], data["arm"], data["churned"], held_out=held_out)
    raw = risk.predict_proba(data[features], calibrated=False)
    calibrated = risk.predict_proba(data[features])
    low, high = raw < 0.29, raw > 0.31  # between the two, isotonic regression interpolates
    assert low.sum() > 100
    assert high.sum() > 100
    np.testing.assert_allclose(calibrated[low], 0.001)
    np.testing.assert_allclose(calibrated[high], 0.999)


def test_a_risk_model_pickled_with_calibration_inside_predicts_as_before() -> None:
    from sklearn.calibration import CalibratedClassifierCV

    data = simulate_customers(3000, 3).customers
    features = ["tenure_months", "monthly_revenue"]
    risk = ChurnRiskModel(calibrate=False, seed=1, params={"n_estimators": 5}).fit(
        data[features], data["arm"], data["churned"])
    # What earlier versions stored: the calibrated ensemble as the model, no calibrator.
    matrix = risk._design(risk.encoder_.transform(data[features]),
                          data["arm"].to_numpy(dtype=object))
    inside = CalibratedClassifierCV(clone(risk.model_), method="isotonic", cv=3).fit(
        matrix, data["churned"])
    risk.model_ = inside
    del risk.calibrator_
    control = risk._design(risk.encoder_.transform(data[features]),
                           np.full(len(data), "control", dtype=object))
    np.testing.assert_allclose(risk.predict_proba(data[features]),
                               inside.predict_proba(control)[:, 1])


def test_encoder_with_a_category_column_empty_at_prediction() -> None:
    encoder = FeatureEncoder().fit(pd.DataFrame({"plan": ["a", "b"]}), [0, 1])
    out = encoder.transform(pd.DataFrame({"plan": pd.Series([None, None], dtype=object)}))
    assert np.isnan(out).all()


# --------------------------------------------------------------------------- additive S-learner


def cells_table(n: int = 9000, seed: int = 5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One 3-level category; churn differs by level and by group."""
    rng = np.random.default_rng(seed)
    level = rng.integers(0, 3, n).astype(float)
    treatment = rng.choice(["control", "a", "b"], n).astype(object)
    p = (0.2 + 0.1 * level - 0.08 * (treatment == "a") * level
         + 0.05 * (treatment == "b"))
    return level[:, None], treatment, (rng.random(n) < p).astype(int)


def test_additive_learner_without_penalty_reproduces_every_cells_churn_rate() -> None:
    # With one categorical feature the model is saturated: unpenalized, its fitted
    # probability in each (level, group) cell is the cell's observed churn rate.
    X, treatment, churned = cells_table()
    fitted = AdditiveSClassifier("control", categorical=[0], C=1e8, interaction_scale=1.0,
                                 max_iter=5000).fit(X, treatment, churned)
    assert list(fitted.t_groups) == ["a", "b"]
    probs = 1.0 / (1.0 + np.exp(-fitted.predict_logits(X)))
    for g, group in enumerate(["control", "a", "b"]):
        for level in range(3):
            cell = (treatment == group) & (X[:, 0] == level)
            rate = churned[cell].mean()
            np.testing.assert_allclose(probs[cell, g], rate, atol=2e-3)
    effect = fitted.predict(X)  # P(offer) - P(control), causalml's sign
    np.testing.assert_allclose(effect, probs[:, 1:] - probs[:, [0]], rtol=1e-12)


def test_additive_learner_shrinks_heterogeneity_before_the_average_effect() -> None:
    # A heavy penalty on the offers' feature terms leaves each offer one logit shift.
    X, treatment, churned = cells_table()
    fitted = AdditiveSClassifier("control", categorical=[0], C=1.0,
                                 interaction_scale=1e-4).fit(X, treatment, churned)
    logits = fitted.predict_logits(X)
    shift = logits[:, 1:] - logits[:, [0]]
    assert np.ptp(shift, axis=0).max() < 1e-3
    overall = {g: churned[treatment == g].mean() for g in ("control", "a", "b")}
    assert shift[0, 0] < 0 < shift[0, 1]  # a keeps customers on average, b loses some
    assert overall["a"] < overall["control"] < overall["b"]


def test_additive_learner_weights_count_like_repeated_rows() -> None:
    X, treatment, churned = cells_table(n=3000, seed=8)
    X = np.column_stack([X[:, 0], np.random.default_rng(1).gamma(2.0, 2.0, len(X))])
    twice = np.arange(len(X)) % 3 == 0
    weights = np.where(twice, 2.0, 1.0)
    rows = np.concatenate([np.arange(len(X)), np.flatnonzero(twice)])
    a = AdditiveSClassifier("control", categorical=[0], max_iter=5000).fit(
        X, treatment, churned, sample_weight=weights)
    b = AdditiveSClassifier("control", categorical=[0], max_iter=5000).fit(
        X[rows], treatment[rows], churned[rows])
    # The quantile and spline bases are learned from the rows, so repeated rows move
    # them slightly; predictions agree closely.
    np.testing.assert_allclose(a.predict(X), b.predict(X), atol=5e-3)


def test_additive_learner_handles_missing_values_and_unseen_levels() -> None:
    X, treatment, churned = cells_table(n=3000, seed=9)
    usage = np.random.default_rng(2).gamma(2.0, 2.0, len(X))
    usage[::7] = np.nan
    X = np.column_stack([X[:, 0], usage])
    fitted = AdditiveSClassifier("control", categorical=[0]).fit(X, treatment, churned)
    new = np.array([[7.0, np.nan], [np.nan, 3.0], [1.0, 1e6]])  # unseen level, NaNs, far tail
    out = fitted.predict(new)
    assert out.shape == (3, 2)
    assert np.isfinite(out).all()


@pytest.mark.parametrize(("own_seconds", "expected"), [(3.0, 4), (2.0, 3), (0.0, 1)])
def test_fit_threads_leaves_only_the_cores_other_processes_keep_busy(monkeypatch, own_seconds,
                                                                    expected):
    """Three of four cores busy for a second: our own CPU time is not someone else's load."""
    import time

    from uplift import learners

    start = time.monotonic() - 1.0
    before = learners._CpuSample(start, 1000.0, 500.0, 10.0)
    after = learners._CpuSample(start + 1.0, 1400.0, 600.0, 10.0 + own_seconds)
    monkeypatch.setattr(learners.os, "sched_getaffinity", lambda _: {0, 1, 2, 3})
    monkeypatch.setattr(learners.os, "cpu_count", lambda: 4)
    monkeypatch.setattr(learners, "_CPU_MARK", [before])
    monkeypatch.setattr(learners, "_cpu_sample", lambda: after)
    assert learners.fit_threads() == expected
    assert [after] == learners._CPU_MARK


def test_pooled_s_learner_is_built_and_fitted_without_importing_causalml():
    # Our own S-learner needs no causalml; importing it (about a second) inside the
    # first fit would be counted as fitting time.
    import subprocess
    import sys

    code = (
        "import sys, numpy as np\n"
        "from uplift.learners import make_learner\n"
        "rng = np.random.default_rng(0)\n"
        "X = rng.normal(size=(400, 3)); t = np.array(['control', 'a'] * 200, dtype=object)\n"
        "y = (rng.random(400) < 0.3).astype(int)\n"
        "make_learner('s', 'lightgbm', 0, 'control').fit(X, t, y)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'causalml'))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]"


def _levels_table(levels: int, n: int = 8000, seed: int = 3):
    """A category whose levels set churn and, unrelated to it, whom the offer helps."""
    from scipy.special import expit

    rng = np.random.default_rng(seed)
    level = rng.integers(0, levels, n)
    base = rng.normal(-1.0, 0.6, levels)
    effect = np.where(rng.random(levels) < 0.35, -1.2, 0.3)
    other = rng.normal(size=n)
    treatment = np.where(rng.random(n) < 0.5, "offer", "control").astype(object)
    logit = base[level] + 0.3 * other + (treatment == "offer") * effect[level]
    churned = (rng.random(n) < expit(logit)).astype(int)
    return np.column_stack([level.astype(float), other]), treatment, churned, effect


def _split_kinds(booster) -> set[tuple[int, str]]:
    """(feature, decision type) of every split of a LightGBM booster."""
    found: set[tuple[int, str]] = set()
    stack = [tree["tree_structure"] for tree in booster.dump_model()["tree_info"]]
    while stack:
        node = stack.pop()
        if "split_feature" in node:
            found.add((node["split_feature"], node["decision_type"]))
            stack += [node["left_child"], node["right_child"]]
    return found


@pytest.mark.parametrize(("levels", "native"), [(30, True), (4, False)])
def test_s_learner_splits_many_level_categories_natively(levels, native):
    X, treatment, churned, effect = _levels_table(levels)
    fitted = make_learner("s", "lightgbm", 0, "control", categorical=[0]).fit(
        X, treatment, churned)
    kinds = _split_kinds(fitted.learner.booster_)
    assert ((0, "==") in kinds) is native
    assert ((0, "<=") in kinds) is not native
    assert fitted.native_ == ([0] if native else [])
    # Its predicted effect per level follows the true one (both in churn's sign).
    grid = np.column_stack([np.arange(levels, dtype=float), np.zeros(levels)])
    assert np.corrcoef(fitted.predict(grid)[:, 0], effect)[0, 1] > 0.8


def test_s_learner_on_xgboost_keeps_category_codes():
    X, treatment, churned, _ = _levels_table(30, n=3000)
    fitted = make_learner("s", "xgboost", 0, "control", categorical=[0]).fit(
        X, treatment, churned)
    assert fitted.predict(X[:5]).shape == (5, 1)
