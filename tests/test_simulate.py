"""Tests of the synthetic customer base: determinism, schema, randomization, truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from uplift.simulate import (
    DEFAULT_ALLOCATION,
    DEFAULT_ARMS,
    DEFAULT_CONTROL,
    Simulation,
    simulate_customers,
)

FEATURES = [
    "tenure_months", "plan", "seats", "contract", "usage_hours", "days_since_login",
    "support_tickets", "region", "payment_method", "nps", "auto_renew",
]  # fmt: skip
CUSTOMER_COLUMNS = ["customer_id", *FEATURES, "monthly_revenue", "arm", "churned"]
DEFAULT_GROUPS = [DEFAULT_CONTROL] + [name for name, _ in DEFAULT_ARMS]


@pytest.fixture(scope="module")
def sim() -> Simulation:
    return simulate_customers(20_000, 11)


def _binomial_tol(p: float, n: int, k: float = 5.0) -> float:
    return k * np.sqrt(max(p * (1 - p), 1e-4) / n)


# --- determinism -------------------------------------------------------------------------------


def test_same_inputs_give_identical_frames():
    a = simulate_customers(5_000, 3, period="2026-10")
    b = simulate_customers(5_000, 3, period="2026-10")
    pd.testing.assert_frame_equal(a.customers, b.customers)
    pd.testing.assert_frame_equal(a.truth, b.truth)


def test_default_allocation_same_as_explicit():
    a = simulate_customers(5_000, 3)
    b = simulate_customers(5_000, 3, allocation=DEFAULT_ALLOCATION, arms=DEFAULT_ARMS)
    pd.testing.assert_frame_equal(a.customers, b.customers)


@pytest.mark.parametrize(
    "kwargs",
    [{"seed": 4}, {"seed": 3, "period": "2026-11"}, {"seed": 3, "period": "2025-10"}],
)
def test_other_seed_or_period_gives_other_customers(kwargs):
    base = simulate_customers(5_000, 3, period="2026-10")
    other = simulate_customers(5_000, **{"period": "2026-10", **kwargs})
    assert not base.customers.equals(other.customers)
    assert not np.allclose(base.truth["p_churn_control"], other.truth["p_churn_control"])


def test_global_numpy_seed_is_not_used():
    np.random.seed(0)
    a = simulate_customers(2_000, 5)
    np.random.seed(1)
    b = simulate_customers(2_000, 5)
    pd.testing.assert_frame_equal(a.customers, b.customers)


# --- schema --------------------------------------------------------------------------------------


def test_customer_columns_and_dtypes(sim):
    c = sim.customers
    assert list(c.columns) == CUSTOMER_COLUMNS
    for col in ["tenure_months", "seats", "days_since_login", "support_tickets", "churned"]:
        assert pd.api.types.is_integer_dtype(c[col]), col
    for col in ["usage_hours", "nps", "monthly_revenue"]:
        assert pd.api.types.is_float_dtype(c[col]), col
    for col in ["customer_id", "plan", "contract", "region", "payment_method", "arm"]:
        assert pd.api.types.is_string_dtype(c[col]), col
        assert c[col].notna().all(), col
    assert pd.api.types.is_bool_dtype(c["auto_renew"])
    assert len(c) == 20_000


def test_truth_columns(sim):
    t = sim.truth
    assert list(t.columns) == ["customer_id", "monthly_revenue"] + [
        f"p_churn_{g}" for g in DEFAULT_GROUPS
    ]
    pd.testing.assert_series_equal(t["customer_id"], sim.customers["customer_id"])
    pd.testing.assert_series_equal(t["monthly_revenue"], sim.customers["monthly_revenue"])
    probs = t.filter(like="p_churn_").to_numpy()
    assert ((probs > 0) & (probs < 1)).all()


def test_ids_unique_and_zero_padded(sim):
    ids = sim.customers["customer_id"]
    assert ids.is_unique
    assert ids.str.fullmatch(r"C\d{7}").all()
    assert ids.iloc[0] == "C0000001"


def test_feature_values_are_plausible(sim):
    c = sim.customers
    assert (c["seats"] >= 1).all()
    assert (c["tenure_months"] >= 1).all()
    assert (c["usage_hours"] >= 0).all()
    assert (c["days_since_login"] >= 0).all()
    assert (c["support_tickets"] >= 0).all()
    assert (c["monthly_revenue"] > 0).all()
    assert set(c["churned"].unique()) <= {0, 1}
    assert set(c["plan"]) == {"basic", "standard", "premium"}
    assert set(c["contract"]) == {"monthly", "annual"}
    assert set(c["arm"]) == set(DEFAULT_GROUPS)
    nps = c["nps"].dropna()
    assert ((nps >= 0) & (nps <= 10)).all()
    assert 0.2 < c["nps"].isna().mean() < 0.5


def test_nps_missingness_follows_engagement(sim):
    c = sim.customers
    idle = c["days_since_login"] > 14
    assert c.loc[idle, "nps"].isna().mean() > c.loc[~idle, "nps"].isna().mean()


def test_revenue_is_concentrated(sim):
    c = sim.customers
    revenue = np.sort(c["monthly_revenue"].to_numpy())[::-1]
    top_fifth = revenue[: len(revenue) // 5].sum() / revenue.sum()
    assert top_fifth > 0.5
    by_plan = c.groupby("plan")["monthly_revenue"].mean()
    assert by_plan["premium"] > by_plan["standard"] > by_plan["basic"]
    assert np.corrcoef(np.log(c["seats"]), np.log(c["monthly_revenue"]))[0, 1] > 0.3


# --- randomization and truth ----------------------------------------------------------------------


def test_allocation_observed_within_tolerance():
    n = 40_000
    allocation = {"control": 0.5, "discount_20": 0.1, "free_upgrade": 0.15, "webinar": 0.25}
    arms = simulate_customers(n, 21, allocation=allocation).customers["arm"]
    shares = arms.value_counts(normalize=True)
    for group, p in allocation.items():
        assert abs(shares[group] - p) < _binomial_tol(p, n), group


def test_churned_matches_truth_per_group():
    n = 50_000
    s = simulate_customers(n, 8)
    c, t = s.customers, s.truth
    for group in DEFAULT_GROUPS:
        rows = (c["arm"] == group).to_numpy()
        expected = t.loc[rows, f"p_churn_{group}"].mean()
        observed = c.loc[rows, "churned"].mean()
        assert abs(observed - expected) < _binomial_tol(expected, int(rows.sum())), group


def test_churn_depends_on_features_as_documented(sim):
    c, p = sim.customers, sim.truth["p_churn_control"]
    assert p[c["contract"] == "monthly"].mean() > p[c["contract"] == "annual"].mean()
    assert p[c["days_since_login"] > 30].mean() > p[c["days_since_login"] <= 7].mean()
    assert p[c["tenure_months"] <= 3].mean() > p[c["tenure_months"] > 24].mean()
    assert p[c["support_tickets"] >= 3].mean() > p[c["support_tickets"] == 0].mean()


@pytest.mark.parametrize("arm", ["webinar", "free_upgrade"])
def test_effects_are_heterogeneous_in_sign(sim, arm):
    uplift = sim.truth["p_churn_control"] - sim.truth[f"p_churn_{arm}"]
    assert (uplift > 0.01).mean() > 0.02
    assert (uplift < -0.01).mean() > 0.02


def test_offers_act_on_the_documented_segments(sim):
    c, t = sim.customers, sim.truth
    control = t["p_churn_control"]
    discount = control - t["p_churn_discount_20"]
    upgrade = control - t["p_churn_free_upgrade"]
    webinar = control - t["p_churn_webinar"]
    monthly_basic = (c["contract"] == "monthly") & (c["plan"] == "basic")
    annual_premium = (c["contract"] == "annual") & (c["plan"] == "premium")
    assert discount[monthly_basic].mean() > 3 * discount[annual_premium].mean()
    assert (upgrade[c["plan"] == "premium"] == 0).all()
    dormant = c["days_since_login"] > 45
    assert (webinar[dormant] < 0).mean() > 0.9
    assert webinar[(c["tenure_months"] <= 3) & (c["usage_hours"] < 3)].mean() > 0


def test_average_effects_are_modest(sim):
    t = sim.truth
    for arm in DEFAULT_GROUPS[1:]:
        ate = (t["p_churn_control"] - t[f"p_churn_{arm}"]).mean()
        assert -0.02 < ate < 0.1, arm
    assert 0.2 < t["p_churn_control"].mean() < 0.4


def test_custom_arms_kinds_and_control():
    arms = [("promo", "discount"), ("call", "other"), ("onboard", "webinar")]
    s = simulate_customers(10_000, 2, arms=arms, control="holdout")
    assert set(s.customers["arm"]) == {"holdout", "promo", "call", "onboard"}
    assert list(s.truth.columns[2:]) == [
        "p_churn_holdout", "p_churn_promo", "p_churn_call", "p_churn_onboard",
    ]  # fmt: skip
    shares = s.customers["arm"].value_counts(normalize=True)
    assert abs(shares["holdout"] - 0.4) < _binomial_tol(0.4, 10_000)
    assert abs(shares["call"] - 0.2) < _binomial_tol(0.2, 10_000)
    other = s.truth["p_churn_holdout"] - s.truth["p_churn_call"]
    assert other.abs().mean() < 0.05


def test_single_arm_defaults_to_forty_percent_control():
    s = simulate_customers(10_000, 2, arms=[("upgrade", "free_upgrade")])
    share = (s.customers["arm"] == "control").mean()
    assert abs(share - 0.4) < _binomial_tol(0.4, 10_000)


def test_period_shifts_base_churn_by_season():
    winter = simulate_customers(50_000, 1, period="2026-01").truth["p_churn_control"]
    summer = simulate_customers(50_000, 1, period="2026-07").truth["p_churn_control"]
    diff = winter.mean() - summer.mean()
    assert 0 < diff < 0.1


def test_one_customer():
    s = simulate_customers(1, 0)
    assert len(s.customers) == 1
    assert len(s.truth) == 1


# --- argument validation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_customers": 0}, "n_customers"),
        ({"n_customers": -5}, "n_customers"),
        ({"n_customers": 2.5}, "n_customers"),
        ({"seed": -1}, "seed"),
        ({"seed": "7"}, "seed"),
        ({"period": "2026-13"}, "period"),
        ({"period": "2026-1"}, "period"),
        ({"period": "Oct 2026"}, "period"),
        ({"arms": [("x", "coupon")]}, "arms.*kind"),
        ({"arms": []}, "arms"),
        ({"arms": [("a", "discount"), ("a", "webinar")]}, "arms"),
        ({"arms": [("control", "discount")]}, "arms"),
        ({"arms": ["discount"]}, "arms"),
        ({"control": ""}, "control"),
        ({"allocation": {"control": 0.5, "discount_20": 0.5}}, "allocation"),
        ({"allocation": {**DEFAULT_ALLOCATION, "extra": 0.0}}, "allocation"),
        ({"allocation": {**DEFAULT_ALLOCATION, "control": 0.5}}, "allocation.*sum"),
        (
            {"allocation": {"control": 1.0, "discount_20": 0.0, "free_upgrade": 0, "webinar": 0}},
            "allocation.*positive",
        ),
        ({"allocation": {**DEFAULT_ALLOCATION, "control": "x"}}, "allocation"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, match):
    args = {"n_customers": 100, "seed": 1, **kwargs}
    with pytest.raises(ValueError, match=match):
        simulate_customers(args.pop("n_customers"), args.pop("seed"), **args)
