"""Covariate adjustment checked against statsmodels fits and closed forms built in this file."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
import yaml
from conftest import base_config, make_table, set_key
from scipy import stats

from uplift.adjustment import (
    AdjustmentWarning,
    adjust_dataset,
    adjust_effects,
    adjusted_metric_names,
    cross_fit_predictions,
    resolve_covariates,
)
from uplift.analysis import analyze_dataset
from uplift.config import load_config
from uplift.data import load_dataset

ARMS = ["a", "b"]


def hand_table(n: int = 900, seed: int = 0) -> pd.DataFrame:
    """Three groups; a number, a number with gaps, a category, a flag; churn depends on them."""
    rng = np.random.default_rng(seed)
    group = rng.choice(["control", "a", "b"], size=n, p=[0.4, 0.3, 0.3])
    x1 = rng.normal(size=n)
    x2 = rng.gamma(2.0, 3.0, size=n)
    x2[rng.random(n) < 0.15] = np.nan
    cat = rng.choice(["red", "green", "blue"], size=n, p=[0.5, 0.3, 0.2])
    flag = rng.random(n) < 0.4
    logit = (-0.8 + 0.9 * x1 - 0.1 * np.nan_to_num(x2, nan=8.0) + 0.7 * (cat == "blue")
             + 0.5 * flag - 0.4 * (group == "a") + 0.3 * x1 * (group == "b"))
    churned = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return pd.DataFrame({"group": group, "x1": x1, "x2": x2, "cat": cat, "flag": flag,
                         "churned": churned})


def reference_lin(frame: pd.DataFrame, arm: str, columns: list[str]) -> tuple[float, float]:
    """Lin's regression written out: dummies by pandas, missing as 0 plus an indicator, HC2."""
    rows = frame[frame["group"].isin(["control", arm])].reset_index(drop=True)
    x = pd.DataFrame(index=rows.index)
    for column in columns:
        values = rows[column]
        if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            dummies = pd.get_dummies(values.astype(str), prefix=column, drop_first=True)
            x = x.join(dummies.astype(float))
        else:
            x[column] = values.fillna(0.0)
            if values.isna().any():
                x[f"{column}_missing"] = values.isna().astype(float)
    xc = x - x.mean()
    t = (rows["group"] == arm).astype(float)
    design = pd.concat([t.rename("T"), xc, xc.mul(t, axis=0).add_prefix("T_")], axis=1)
    fit = sm.OLS(rows["churned"].astype(float), sm.add_constant(design)).fit(cov_type="HC2")
    return -float(fit.params["T"]), float(fit.bse["T"])


def linear(frame: pd.DataFrame, columns: list[str], **kwargs: object):
    return adjust_effects(frame[columns], frame["group"], frame["churned"], control="control",
                          arms=ARMS, **kwargs)


# --------------------------------------------------------------------------- linear


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_linear_equals_an_independent_statsmodels_fit(seed: int) -> None:
    frame = hand_table(seed=seed)
    columns = ["x1", "x2", "cat", "flag"]
    result = linear(frame, columns, alpha=0.1)
    z = stats.norm.ppf(0.95)
    raw = []
    for arm in ARMS:
        ate, se = reference_lin(frame, arm, columns)
        got = result.effect(arm)
        assert got.ate == pytest.approx(ate, abs=1e-9, rel=0)
        assert got.se == pytest.approx(se, abs=1e-9, rel=0)
        assert (got.ci_low, got.ci_high) == pytest.approx((ate - z * se, ate + z * se), abs=1e-9)
        p = 2 * stats.norm.sf(abs(ate / se))
        assert got.pvalue == pytest.approx(p, abs=1e-9)
        raw.append(p)
        y_c = frame.loc[frame["group"] == "control", "churned"]
        y_a = frame.loc[frame["group"] == arm, "churned"]
        plain_var = y_c.var(ddof=0) / len(y_c) + y_a.var(ddof=0) / len(y_a)
        assert got.plain_ate == pytest.approx(y_c.mean() - y_a.mean(), abs=1e-12)
        assert got.variance_reduction == pytest.approx(1 - se**2 / plain_var, abs=1e-9)
        assert got.n == len(y_c) + len(y_a)
        assert got.columns == 6  # x1, x2 and its indicator, two cat levels, flag
    low, high = sorted(raw)
    holm = {min(raw): 2 * low, max(raw): max(2 * low, high)}
    for arm, p in zip(ARMS, raw, strict=True):
        assert result.effect(arm).pvalue_adj == pytest.approx(min(1.0, holm[p]), abs=1e-12)


def test_the_readout_metrics_use_the_spec_names() -> None:
    result = linear(hand_table(), ["x1"])
    assert list(result.metrics()) == adjusted_metric_names(ARMS)
    assert adjusted_metric_names(["a"]) == [
        "ate_a_cuped", "ate_a_cuped_ci_low", "ate_a_cuped_ci_high", "ate_a_cuped_pvalue",
        "ate_a_cuped_pvalue_adj", "variance_reduction_a"]


def test_linear_is_exactly_reproducible() -> None:
    frame = hand_table()
    first = linear(frame, ["x1", "x2", "cat"]).metrics()
    assert linear(frame.copy(), ["x1", "x2", "cat"]).metrics() == first


def assert_same_fit(result, frame: pd.DataFrame, columns: list[str]) -> None:
    for arm in ARMS:
        ate, se = reference_lin(frame, arm, columns)
        assert result.effect(arm).ate == pytest.approx(ate, abs=1e-9, rel=0)
        assert result.effect(arm).se == pytest.approx(se, abs=1e-9, rel=0)


@pytest.mark.parametrize(("column", "values", "message"), [
    ("same", lambda f: 3.0, "covariate 'same' is constant"),
    ("empty", lambda f: np.nan, "covariate 'empty' is missing in every row"),
    ("copy", lambda f: 2 * f["x1"] - 1, "covariate 'copy' is collinear"),
    ("label", lambda f: "one", "covariate 'label' is constant"),
])
def test_unusable_covariates_are_left_out_with_a_warning(column: str, values, message: str
                                                         ) -> None:
    frame = hand_table()
    frame[column] = values(frame)
    with pytest.warns(AdjustmentWarning, match=message):
        result = linear(frame, ["x1", column, "cat"])
    assert column not in result.covariates
    assert any(message in note for note in result.notes)
    assert_same_fit(result, frame, ["x1", "cat"])


def test_a_column_that_copies_the_assignment_is_left_out() -> None:
    """A post-treatment leak: 'got an offer' is collinear with the offer in each pair."""
    frame = hand_table()
    frame["offered"] = (frame["group"] != "control").astype(float)
    with pytest.warns(AdjustmentWarning, match="'offered' collinear with the offer"):
        result = linear(frame, ["x1", "offered"])
    assert_same_fit(result, frame, ["x1"])


def test_rare_levels_join_the_reference_and_the_errors_stay_finite() -> None:
    frame = hand_table()
    first_a = frame.index[frame["group"] == "a"][0]
    frame.loc[first_a, "cat"] = "purple"  # one customer, in one group only
    result = linear(frame, ["x1", "cat"])
    merged = frame.assign(cat=frame["cat"].replace("purple", "red"))  # red: the most frequent
    assert_same_fit(result, merged, ["x1", "cat"])
    assert all(np.isfinite(e.se) for e in result.effects)


def test_a_text_column_unique_per_customer_is_left_out() -> None:
    frame = hand_table()
    frame["email"] = [f"c{i}@example.com" for i in range(len(frame))]
    with pytest.warns(AdjustmentWarning, match="'email': no level besides"):
        result = linear(frame, ["x1", "email"])
    assert result.covariates == ("x1",)
    assert_same_fit(result, frame, ["x1"])


def test_few_customers_per_covariate_fall_back_to_the_first_covariates() -> None:
    rng = np.random.default_rng(5)
    n = 60
    frame = pd.DataFrame(rng.normal(size=(n, 15)), columns=[f"c{i}" for i in range(15)])
    frame["group"] = ["control"] * 20 + ["a"] * 20 + ["b"] * 20
    frame["churned"] = (rng.random(n) < 0.4).astype(int)
    columns = [f"c{i}" for i in range(15)]
    with pytest.warns(AdjustmentWarning, match="allow 10 covariate columns"):
        result = linear(frame, columns)
    assert all(e.columns == 10 for e in result.effects)
    assert_same_fit(result, frame, columns[:10])
    assert any("left out 'c10', 'c11', 'c12', 'c13', 'c14'" in n for n in result.notes)


def test_bad_arguments_are_refused() -> None:
    frame = hand_table()
    with pytest.raises(ValueError, match="method must be one of"):
        linear(frame, ["x1"], method="cubic")
    with pytest.raises(ValueError, match="no customers in group 'c'"):
        adjust_effects(frame[["x1"]], frame["group"], frame["churned"], control="control",
                       arms=["a", "c"])


# --------------------------------------------------------------------------- model


class Memorizer:
    """Predicts the outcome of rows it was fitted on (by their id in column 0), else 0.5."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def fit(self, x: np.ndarray, y: np.ndarray) -> Memorizer:
        self.seen_ = dict(zip(x[:, 0].tolist(), y.tolist(), strict=True))
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        p = np.array([self.seen_.get(v, 0.5) for v in x[:, 0].tolist()])
        return np.column_stack([1 - p, p])


def test_no_row_is_predicted_by_a_model_that_saw_it() -> None:
    rng = np.random.default_rng(0)
    x = np.column_stack([np.arange(500.0), rng.normal(size=500)])
    y = (rng.random(500) < 0.3).astype(float)
    seeds = []

    def make(seed: int) -> Memorizer:
        seeds.append(seed)
        return Memorizer(seed)

    out = cross_fit_predictions(x, y, folds=5, seed=11, make_model=make)
    assert np.all(out == 0.5)
    assert len(set(seeds)) == 5  # one seed per fold
    again: list[int] = []
    cross_fit_predictions(x, y, folds=5, seed=11,
                          make_model=lambda s: again.append(s) or Memorizer(s))
    assert again == seeds  # the folds' seeds derive from the seed alone


def test_model_without_usable_covariates_is_the_plain_difference() -> None:
    """A constant risk score: estimate = difference of rates, variance = plain * N / (N - 1)."""
    frame = hand_table()
    frame["same"] = 1.0
    shares = {"control": 0.5, "a": 0.25, "b": 0.25}
    with pytest.warns(AdjustmentWarning, match="constant"):
        result = adjust_effects(frame[["same"]], frame["group"], frame["churned"],
                                control="control", arms=ARMS, method="model",
                                propensities=shares)
    n = len(frame)
    y_c = frame.loc[frame["group"] == "control", "churned"]
    for arm in ARMS:
        y_a = frame.loc[frame["group"] == arm, "churned"]
        got = result.effect(arm)
        assert got.ate == pytest.approx(y_c.mean() - y_a.mean(), abs=1e-12)
        # influence function with known propensities pi: sum of squares over N (N - 1)
        ss = (len(y_c) * y_c.var(ddof=0) / shares["control"] ** 2
              + len(y_a) * y_a.var(ddof=0) / shares[arm] ** 2)
        assert got.se**2 == pytest.approx(ss / (n * (n - 1)), rel=1e-9)
        assert got.n == n


def test_model_estimate_is_the_calibrated_regression_estimator() -> None:
    """With per-group least-squares lines on the risk score, the estimator is closed-form."""
    frame = hand_table(n=3000, seed=3)
    params = {"n_estimators": 30, "min_child_samples": 50}
    result = adjust_effects(frame[["x1", "x2", "cat"]], frame["group"], frame["churned"],
                            control="control", arms=ARMS, method="model", params=params,
                            seed=4, n_jobs=1)
    again = adjust_effects(frame[["x1", "x2", "cat"]], frame["group"], frame["churned"],
                           control="control", arms=ARMS, method="model", params=params,
                           seed=4, n_jobs=1)
    assert again.metrics() == result.metrics()  # deterministic from the seed
    other = adjust_effects(frame[["x1", "x2", "cat"]], frame["group"], frame["churned"],
                           control="control", arms=ARMS, method="model", params=params,
                           seed=5, n_jobs=1)
    assert other.metrics() != result.metrics()
    assert result.r2 is not None
    assert 0.02 < result.r2 < 0.5
    for e in result.effects:
        assert e.variance_reduction > 0.02
        assert e.ci_low < e.ate < e.ci_high


# --------------------------------------------------------------------------- datasets


def write_project(folder: Path, **cuped: object) -> Path:
    make_table(1500, seed=2).to_csv(folder / "customers.csv", index=False)
    mapping = set_key(base_config(), "analysis.cuped", dict(cuped))
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(mapping))
    return path


def test_covariates_never_include_the_roles_or_excluded_columns(tmp_path: Path) -> None:
    cfg = load_config(write_project(tmp_path, exclude=["plan"]))
    dataset = load_dataset(cfg)
    names = resolve_covariates(dataset, cfg)
    assert names == ["tenure_months", "nps", "monthly_revenue"]
    assert not {"customer_id", "arm", "churned", "plan"} & set(names)
    result = adjust_dataset(dataset, cfg)
    assert result is not None
    assert result.covariates == ("tenure_months", "nps", "monthly_revenue")
    frame = dataset.frame
    direct = adjust_effects(frame[names], dataset.treatment, dataset.churned,
                            control="control", arms=cfg.arm_names)
    assert direct.metrics() == result.metrics()


def test_the_plain_readout_is_unchanged_by_the_adjustment(tmp_path: Path) -> None:
    cfg = load_config(write_project(tmp_path))
    off = load_config(write_project(tmp_path, enabled=False))
    dataset = load_dataset(cfg)
    with_adjustment = analyze_dataset(dataset, cfg).metrics()
    plain = analyze_dataset(dataset, off).metrics()
    assert analyze_dataset(dataset, off).adjusted is None
    assert {k: with_adjustment[k] for k in plain} == plain  # the same numbers, bit for bit
    assert set(with_adjustment) - set(plain) == set(adjusted_metric_names(cfg.arm_names))


def test_listed_covariates_and_the_model_method_from_the_config(tmp_path: Path) -> None:
    cfg = load_config(write_project(tmp_path, method="model", covariates=["tenure_months"],
                                    folds=3, params={"n_estimators": 20}))
    dataset = load_dataset(cfg)
    result = adjust_dataset(dataset, cfg)
    assert result is not None
    assert result.method == "model"
    assert result.covariates == ("tenure_months",)
    assert adjust_dataset(dataset, cfg).metrics() == result.metrics()


def test_a_table_without_features_has_no_adjustment(tmp_path: Path) -> None:
    frame = make_table(800)[["customer_id", "arm", "churned"]]
    frame.to_csv(tmp_path / "customers.csv", index=False)
    mapping = base_config()
    mapping["data"].pop("value")
    mapping["arms"][1].pop("eligible")
    mapping["policy"] = {"objective": "churn_reduction"}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(mapping))
    cfg = load_config(tmp_path / "config.yaml")
    with warnings.catch_warnings():
        warnings.simplefilter("error", AdjustmentWarning)
        assert analyze_dataset(load_dataset(cfg), cfg).adjusted is None


# --------------------------------------------------------------------------- coverage


@pytest.mark.slow
def test_both_methods_cover_the_true_effect_over_100_simulated_tests(tmp_path: Path) -> None:
    """Coverage of 95 % intervals over 100 simulated tests x 3 offers, against the truth.

    The truth is each offer's mean effect over every simulated customer (2.4M); 300
    intervals put a correct 95 % coverage within [0.91, 0.99] with probability > 0.99.
    """
    from uplift.simulate import simulate_customers

    arms = ["discount_20", "free_upgrade", "webinar"]
    covered = {"linear": [], "model": []}
    truth_sum = np.zeros(3)
    estimates = {"linear": [], "model": []}
    customers = 0
    for rep in range(100):
        sim = simulate_customers(8000, seed=1000 + rep)
        c, t = sim.customers, sim.truth
        truth_sum += [(t["p_churn_control"] - t[f"p_churn_{a}"]).sum() for a in arms]
        customers += len(t)
        cov = c.drop(columns=["customer_id", "arm", "churned"])
        for method in covered:
            result = adjust_effects(cov, c["arm"], c["churned"], control="control", arms=arms,
                                    method=method, seed=rep, n_jobs=1,
                                    params={"n_estimators": 60, "learning_rate": 0.1})
            estimates[method].append([(e.ci_low, e.ate, e.ci_high) for e in result.effects])
    truth = truth_sum / customers
    for method, values in estimates.items():
        values = np.array(values)  # (reps, arms, 3)
        hits = (values[:, :, 0] <= truth) & (truth <= values[:, :, 2])
        assert 0.91 <= hits.mean() <= 0.99, (method, hits.mean(axis=0))
        bias = values[:, :, 1].mean(axis=0) - truth
        se = values[:, :, 1].std(axis=0, ddof=1) / np.sqrt(len(values))
        assert np.all(np.abs(bias) < 3.5 * se), (method, bias, se)
