"""Off-policy evaluation: hand-computed values, validation, and coverage on simulations."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from uplift.config import ArmConfig
from uplift.offpolicy import Estimate, PolicyEstimate, PolicyRows, evaluate_policy, policy_rows
from uplift.simulate import DEFAULT_ALLOCATION, simulate_customers

# ----------------------------------------------------------------- a tiny hand-made table

TINY_ARMS = [
    ArmConfig(name="A", cost={"fixed": 2.0}),
    ArmConfig(name="B", cost={"revenue_share": 0.1, "months": 3}),
]
TINY_PROP = {"c": 0.5, "A": 0.25, "B": 0.25}
#                   0    1    2    3    4    5    6    7
TINY_T = np.array(["c", "c", "A", "A", "B", "B", "c", "A"])
TINY_Y = np.array([1, 0, 0, 1, 0, 1, 0, 1])
TINY_V = np.array([10.0, 20.0, 10.0, 30.0, 20.0, 40.0, 10.0, 10.0])
TINY_REC = np.array(["A", "B", "A", "c", "B", "B", "c", "c"])
H = 12.0


def tiny(rec=TINY_REC, **kwargs) -> PolicyEstimate:
    kwargs.setdefault("estimator", "ipw")
    return evaluate_policy(rec, TINY_T, TINY_Y, kwargs.pop("value", TINY_V), control="c",
                           arms=TINY_ARMS, propensity=TINY_PROP, horizon_months=H,
                           **kwargs)  # fmt: skip


def check(est: Estimate, rows: list[float] | np.ndarray, z: float = 1.959963984540054) -> None:
    rows = np.asarray(rows, dtype=float)
    se = rows.std(ddof=1) / math.sqrt(len(rows))
    assert est.value == pytest.approx(rows.mean(), abs=1e-12)
    assert est.se == pytest.approx(se, abs=1e-12)
    assert est.ci_low == pytest.approx(rows.mean() - z * se, abs=1e-9)
    assert est.ci_high == pytest.approx(rows.mean() + z * se, abs=1e-9)


def test_ipw_by_hand() -> None:
    est = tiny()
    # Horvitz-Thompson: 1{T = g} * Y / e_g, per row.
    psi_c = [2, 0, 0, 0, 0, 0, 0, 0]  # row 0: control churner / 0.5
    psi_p = [0, 0, 0, 0, 0, 4, 0, 0]  # row 5: B churner / 0.25, sent to B
    cost = [2, 0.3 * 20 * 1, 2, 0, 0.3 * 20 * 1, 0.3 * 40 * (1 - 4), 0, 0]
    net = [2 * 10 * H - 2, -6, -2, 0, -6, -4 * 40 * H + 36, 0, 0]
    assert est.method == "ipw"
    assert est.n == 8
    check(est.churn_rate_no_offer, psi_c)
    check(est.churn_rate, psi_p)
    check(est.churn_reduction, np.subtract(psi_c, psi_p))
    check(est.cost_per_customer, cost)
    check(est.net_value_per_customer, net)
    assert est.churn_reduction.value == pytest.approx(-0.25)
    assert est.cost_per_customer.value == pytest.approx(-2.5)  # IPW is not range-respecting
    assert est.net_value_per_customer.value == pytest.approx(-207.5)
    assert est.shares == {"c": 3 / 8, "A": 2 / 8, "B": 3 / 8}


def test_hajek_is_post_stratified_by_the_policys_segments() -> None:
    est = tiny(estimator="hajek")
    # Segments: A = rows 0, 2; B = rows 1, 4, 5; c = rows 3, 6, 7.
    # Churn under the recommendation: A 0/1 (row 2), B 1/2 (rows 4, 5), c 0/1 (row 6).
    assert est.churn_rate.value == pytest.approx(2 / 8 * 0 + 3 / 8 * 0.5 + 3 / 8 * 0)
    # Churn with no offer: control rows of each segment: A 1/1, B 0/1, c 0/1.
    assert est.churn_rate_no_offer.value == pytest.approx(2 / 8 * 1)
    assert est.churn_reduction.value == pytest.approx(0.25 - 3 / 16)
    assert est.method == "hajek"


def test_auto_is_hajek_without_predictions_and_dr_with() -> None:
    assert tiny(estimator="auto").method == "hajek"
    pred = {g: np.full(8, 0.3) for g in TINY_PROP}
    assert tiny(estimator="auto", predicted_churn=pred).method == "doubly robust"


@pytest.mark.parametrize("estimator", ["doubly robust", "direct"])
def test_dr_and_direct_by_hand(estimator: str) -> None:
    rng = np.random.default_rng(3)
    pred = {g: rng.uniform(0.1, 0.6, 8) for g in TINY_PROP}
    est = tiny(estimator=estimator, predicted_churn=pred)
    residual = 1.0 if estimator == "doubly robust" else 0.0  # direct: predictions alone
    mu_c = pred["c"]
    mu_p = np.array([pred[r][i] for i, r in enumerate(TINY_REC)])
    e_p = np.array([TINY_PROP[r] for r in TINY_REC])
    psi_c = mu_c + residual * (TINY_T == "c") / 0.5 * (TINY_Y - mu_c)
    psi_p = mu_p + residual * (TINY_T == TINY_REC) / e_p * (TINY_Y - mu_p)
    fixed = np.array([{"c": 0, "A": 2, "B": 0}[r] for r in TINY_REC])
    share = np.array([{"c": 0, "A": 0, "B": 0.3}[r] for r in TINY_REC])
    cost = fixed + share * TINY_V * (1 - psi_p)
    assert est.method == estimator
    check(est.churn_rate, psi_p)
    check(est.churn_rate_no_offer, psi_c)
    check(est.churn_reduction, psi_c - psi_p)
    check(est.cost_per_customer, cost)
    check(est.net_value_per_customer, (psi_c - psi_p) * TINY_V * H - cost)


def test_direct_needs_predictions() -> None:
    with pytest.raises(ValueError, match="direct estimator needs predicted_churn"):
        tiny(estimator="direct")


def tiny_rows(rec: np.ndarray, estimator: str, pred: dict) -> PolicyRows:
    return policy_rows(rec, TINY_T, TINY_Y, TINY_V, control="c", arms=TINY_ARMS,
                       propensity=TINY_PROP, horizon_months=H, predicted_churn=pred,
                       estimator=estimator)


def test_rows_moved_to_another_policy_keep_their_value_where_the_policies_agree() -> None:
    rng = np.random.default_rng(5)
    pred = {g: rng.uniform(0.1, 0.6, 8) for g in TINY_PROP}
    new_rec = TINY_REC.copy()
    new_rec[[1, 3]] = ["A", "B"]  # the new policy differs on rows 1 and 3 only
    old_dr = tiny_rows(TINY_REC, "doubly robust", pred)
    moved = old_dr.moved_to(tiny_rows(new_rec, "direct", pred),
                            tiny_rows(TINY_REC, "direct", pred))
    new_dr = tiny_rows(new_rec, "doubly robust", pred)
    agree = new_rec == TINY_REC
    for attr in ("churn", "churn_no_offer", "cost", "net"):
        np.testing.assert_allclose(getattr(moved, attr)[agree], getattr(new_dr, attr)[agree])
    # Row 1 (control, kept, value 20): from B to A, the model's change of churn and cost.
    mu = {g: pred[g][1] for g in pred}
    assert moved.churn[1] == pytest.approx(old_dr.churn[1] + mu["A"] - mu["B"])
    assert moved.net[1] == pytest.approx(
        old_dr.net[1] + ((mu["c"] - mu["A"]) * 20 * H - 2.0)
        - ((mu["c"] - mu["B"]) * 20 * H - 0.3 * 20 * (1 - mu["B"])))
    assert moved.estimate().shares == new_dr.estimate().shares


@pytest.mark.parametrize("estimator", ["ipw", "hajek", "doubly robust"])
def test_all_control_policy_changes_nothing(estimator: str) -> None:
    pred = {g: np.full(8, 0.4) for g in TINY_PROP} if estimator == "doubly robust" else None
    est = tiny(rec=np.array(["c"] * 8), estimator=estimator, predicted_churn=pred)
    for zero in (est.churn_reduction, est.net_value_per_customer, est.cost_per_customer):
        assert zero == Estimate(0.0, 0.0, 0.0, 0.0)
    assert est.churn_rate == est.churn_rate_no_offer
    assert est.shares == {"c": 1.0, "A": 0.0, "B": 0.0}
    assert est.metrics()["policy_share_A"] == 0.0


def test_dr_with_perfect_predictions_is_the_truth() -> None:
    # Deterministic potential outcomes: perfect predictions leave no residual, so
    # the estimate is the true mean whatever the assignment.
    rng = np.random.default_rng(0)
    n = 500
    y_pot = {g: (rng.random(n) < p).astype(int) for g, p in (("c", 0.3), ("A", 0.2), ("B", 0.25))}
    t = rng.choice(["c", "A", "B"], n, p=[0.5, 0.25, 0.25])
    y = np.array([y_pot[g][i] for i, g in enumerate(t)])
    v = rng.gamma(2.0, 20.0, n)
    rec = rng.choice(["c", "A", "B"], n)
    est = evaluate_policy(rec, t, y, v, control="c", arms=TINY_ARMS, propensity=TINY_PROP,
                          horizon_months=H, predicted_churn=y_pot)  # fmt: skip
    y_pi = np.array([y_pot[r][i] for i, r in enumerate(rec)])
    cost = np.select([rec == "A", rec == "B"], [2.0, 0.3 * v * (1 - y_pi)], 0.0)
    assert est.churn_rate.value == pytest.approx(y_pi.mean(), abs=1e-12)
    assert est.churn_rate_no_offer.value == pytest.approx(y_pot["c"].mean(), abs=1e-12)
    assert est.churn_reduction.value == pytest.approx((y_pot["c"] - y_pi).mean(), abs=1e-12)
    assert est.cost_per_customer.value == pytest.approx(cost.mean(), abs=1e-9)
    truth_net = ((1 - y_pi) * v * H - cost - (1 - y_pot["c"]) * v * H).mean()
    assert est.net_value_per_customer.value == pytest.approx(truth_net, abs=1e-9)


def test_alpha_sets_the_interval_level() -> None:
    wide, narrow = tiny(alpha=0.05).churn_rate_no_offer, tiny(alpha=0.5).churn_rate_no_offer
    assert wide.se == narrow.se
    assert narrow.ci_high - narrow.ci_low < wide.ci_high - wide.ci_low
    assert narrow.ci_high - narrow.value == pytest.approx(0.6744897501960817 * narrow.se)


def test_without_value_money_is_nan_unless_costs_are_fixed() -> None:
    est = tiny(value=None)
    assert math.isnan(est.net_value_per_customer.value)
    assert math.isnan(est.cost_per_customer.value)  # B has a revenue share
    assert not math.isnan(est.churn_reduction.value)
    fixed_only = tiny(rec=np.array(["A", "c", "A", "c", "c", "c", "c", "c"]), value=None)
    assert fixed_only.cost_per_customer.value == pytest.approx(2 * 2 / 8)
    se = np.std([2, 0, 2, 0, 0, 0, 0, 0], ddof=1) / math.sqrt(8)
    assert fixed_only.cost_per_customer.se == pytest.approx(se)
    assert math.isnan(fixed_only.metrics()["policy_net_value_per_customer"])


def test_metrics_frame_and_markdown() -> None:
    est = tiny()
    metrics = est.metrics()
    spec = {"policy_churn_rate", "policy_churn_reduction", "policy_churn_reduction_ci_low",
            "policy_churn_reduction_ci_high", "policy_net_value_per_customer",
            "policy_cost_per_customer", "policy_share_A", "policy_share_B"}  # fmt: skip
    assert spec <= set(metrics)
    assert {k for k in metrics if k.startswith("policy_share_")} == {"policy_share_A",
                                                                     "policy_share_B"}
    assert all(k.startswith("policy_") and isinstance(v, float) for k, v in metrics.items())
    assert metrics["policy_churn_reduction"] == est.churn_reduction.value
    assert metrics["policy_churn_reduction_ci_low"] == est.churn_reduction.ci_low
    assert metrics["policy_share_B"] == 3 / 8
    frame = est.to_frame()
    assert list(frame.columns) == ["estimate", "value", "ci_low", "ci_high", "se"]
    assert frame.set_index("estimate").loc["churn_reduction", "value"] == est.churn_reduction.value
    text = est.to_markdown()
    assert "| churn reduction |" in text
    assert "95% CI" in text
    assert "ipw" in text


def test_accepts_series_and_bools() -> None:
    est = evaluate_policy(pd.Series(TINY_REC), pd.Series(TINY_T, dtype="category"),
                          pd.Series(TINY_Y.astype(bool)), pd.Series(TINY_V), control="c",
                          arms=TINY_ARMS, propensity=TINY_PROP, horizon_months=H,
                          estimator="ipw")  # fmt: skip
    assert est.churn_reduction == tiny().churn_reduction


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"rec": TINY_REC[:7]}, "treatment has 8 rows"),
        ({"rec": np.array(["A", "B", "A", "c", "B", "B", "c", "X"])}, "'X'"),
        ({"t": np.array(["c", "c", "A", "A", "B", "B", "c", "Z"])}, "treatment holds .*'Z'"),
        ({"t": np.array(["c", "c", "A", "A", "B", "B", "c", None], dtype=object)}, "<missing>"),
        ({"y": np.array([1, 0, 0, 1, 0, 2, 0, 1])}, "0/1"),
        ({"v": np.array([10.0, np.nan, 10, 30, 20, 40, 10, 10])}, "value holds 1 missing"),
        ({"v": TINY_V[:5]}, "value has 5 rows"),
        ({"prop": {"c": 0.5, "A": 0.25}}, "missing \\['B'\\]"),
        ({"prop": {"c": 0.5, "A": 0.25, "B": 0.25, "D": 0.0}}, "unknown \\['D'\\]"),
        ({"prop": {"c": 0.5, "A": 0.5, "B": 0.0}}, "positive"),
        ({"prop": {"c": 0.5, "A": 0.3, "B": 0.3}}, "sum to 1"),
        ({"alpha": 1.5}, "alpha"),
        ({"horizon_months": -1}, "horizon_months"),
        ({"estimator": "dr"}, "estimator must be one of"),
        ({"estimator": "doubly robust"}, "needs predicted_churn"),
        ({"predicted_churn": {"c": np.full(8, 0.3), "A": np.full(8, 0.3)}}, "missing \\['B'\\]"),
        ({"predicted_churn": {"c": np.full(8, 0.3), "A": np.full(8, 0.3), "B": np.full(8, 1.3)}},
         "probabilities"),
        ({"predicted_churn": {"c": np.full(8, 0.3), "Q": np.full(8, 0.3)}}, "unknown groups"),
        ({"arms": [ArmConfig(name="c"), ArmConfig(name="A"), ArmConfig(name="B")]}, "control"),
        ({"arms": []}, "non-empty"),
    ],
)
def test_bad_input_is_a_clear_value_error(change: dict, message: str) -> None:
    kwargs = {"control": "c", "arms": change.get("arms", TINY_ARMS),
              "propensity": change.get("prop", TINY_PROP), "horizon_months": H}  # fmt: skip
    for key in ("alpha", "horizon_months", "estimator", "predicted_churn"):
        if key in change:
            kwargs[key] = change[key]
    with pytest.raises(ValueError, match=message):
        evaluate_policy(change.get("rec", TINY_REC), change.get("t", TINY_T),
                        change.get("y", TINY_Y), change.get("v", TINY_V), **kwargs)  # fmt: skip


def test_group_without_randomized_rows_is_refused() -> None:
    t = np.array(["c", "c", "A", "A", "A", "A", "c", "A"])  # nobody randomized to B
    with pytest.raises(ValueError, match="no held-out row was randomized to 'B'"):
        evaluate_policy(TINY_REC, t, TINY_Y, TINY_V, control="c", arms=TINY_ARMS,
                        propensity=TINY_PROP, horizon_months=H)  # fmt: skip
    # ... but a policy that never sends anyone to B does not need B's rows.
    rec = np.where(TINY_REC == "B", "A", TINY_REC)
    est = evaluate_policy(rec, t, TINY_Y, TINY_V, control="c", arms=TINY_ARMS,
                          propensity=TINY_PROP, horizon_months=H)  # fmt: skip
    assert est.shares["B"] == 0.0


# ----------------------------------------------------------------- simulated tests

ARMS = [
    ArmConfig(name="discount_20", kind="discount", cost={"revenue_share": 0.2, "months": 3}),
    ArmConfig(name="free_upgrade", kind="free_upgrade", cost={"fixed": 6.0}),
    ArmConfig(name="webinar", kind="webinar", cost={"fixed": 1.5}),
]
GROUPS = ["control", "discount_20", "free_upgrade", "webinar"]
FIXED = np.array([0.0, 0.0, 6.0, 1.5])
SHARE = np.array([0.0, 0.6, 0.0, 0.0])


def true_net(p: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, groups) expected cost and net value under every group."""
    cost = FIXED + (1 - p) * SHARE * v[:, None]
    return cost, (p[:, [0]] - p) * v[:, None] * H - cost


def simulated_case(n: int, seed: int) -> tuple[dict, dict, dict]:
    """Held-out rows, a policy fixed apart from their outcomes, its truth and predictions."""
    sim = simulate_customers(n, seed)
    p = sim.truth[[f"p_churn_{g}" for g in GROUPS]].to_numpy()
    v = sim.customers["monthly_revenue"].to_numpy()
    rng = np.random.default_rng([seed, 99])  # independent of the outcomes and assignment
    cost, net = true_net(p, v)
    noisy = net + rng.normal(0, 10.0, net.shape)
    rec = np.where(noisy.max(axis=1) > 0, noisy.argmax(axis=1), 0)
    rows = np.arange(n)
    truth = {"churn_rate": p[rows, rec].mean(),
             "churn_reduction": (p[:, 0] - p[rows, rec]).mean(),
             "net_value_per_customer": net[rows, rec].mean(),
             "cost_per_customer": cost[rows, rec].mean()}  # fmt: skip
    logit = np.log(p / (1 - p)) + rng.normal(0, 0.4, p.shape)  # an imperfect outcome model
    pred = dict(zip(GROUPS, (1 / (1 + np.exp(-logit))).T, strict=True))
    data = {"recommended": np.array(GROUPS, dtype=object)[rec],
            "treatment": sim.customers["arm"], "churned": sim.customers["churned"], "value": v}
    return data, truth, pred


COMMON = {"control": "control", "arms": ARMS, "propensity": DEFAULT_ALLOCATION,
          "horizon_months": H}  # fmt: skip


@pytest.mark.parametrize("estimator", ["ipw", "hajek", "doubly robust"])
def test_estimates_land_near_the_truth(estimator: str) -> None:
    data, truth, pred = simulated_case(60_000, 11)
    extra = {"predicted_churn": pred} if estimator == "doubly robust" else {}
    est = evaluate_policy(**data, **COMMON, estimator=estimator, **extra)
    for attr, target in truth.items():
        e = getattr(est, attr)
        assert abs(e.value - target) < 4 * e.se, (attr, e, target)
    shares = np.bincount(pd.Categorical(data["recommended"], GROUPS).codes, minlength=4) / 60_000
    assert list(est.shares.values()) == pytest.approx(shares)
    assert 0.05 < est.shares["control"] < 0.95


@pytest.mark.slow
def test_coverage_and_unbiasedness_over_replications() -> None:
    reps, n = 60, 25_000
    attrs = ("churn_rate", "churn_reduction", "net_value_per_customer")
    covered = {(k, a): 0 for k in ("ipw", "hajek", "doubly robust") for a in attrs}
    errors: dict[tuple[str, str], list[float]] = {key: [] for key in covered}
    width = {key: 0.0 for key in covered}
    for r in range(reps):
        data, truth, pred = simulated_case(n, 1000 + r)
        for kind in ("ipw", "hajek", "doubly robust"):
            extra = {"predicted_churn": pred} if kind == "doubly robust" else {}
            est = evaluate_policy(**data, **COMMON, estimator=kind, **extra)
            for attr in attrs:
                e = getattr(est, attr)
                covered[kind, attr] += e.ci_low <= truth[attr] <= e.ci_high
                errors[kind, attr].append(e.value - truth[attr])
                width[kind, attr] += e.ci_high - e.ci_low
    for key, hits in covered.items():
        assert hits / reps >= 0.90, (key, hits / reps)
        err = np.array(errors[key])
        assert abs(err.mean()) < 3.5 * err.std(ddof=1) / math.sqrt(reps), key  # no visible bias
    for attr in attrs:  # the augmentations only remove variance
        assert width["hajek", attr] < width["ipw", attr]
        assert width["doubly robust", attr] < width["ipw", attr]


def test_a_gain_over_another_policy_is_the_paired_difference_worked_by_hand() -> None:
    from uplift.offpolicy import gains_over_chosen

    # Four customers, half randomized to the offer (cost 1, value 10 over one month), by
    # plain IPW: psi_i(g) = 1{T_i = g} / 0.5 * churned_i.
    treatment = ["c", "c", "a", "a"]
    churned = [1, 0, 0, 1]
    kwargs = {"control": "c", "arms": [ArmConfig(name="a", cost={"fixed": 1.0})],
              "propensity": {"c": 0.5, "a": 0.5}, "horizon_months": 1.0, "estimator": "ipw"}
    everyone = policy_rows(["a"] * 4, treatment, churned, [10.0] * 4, **kwargs)
    nobody = policy_rows(["c"] * 4, treatment, churned, [10.0] * 4, **kwargs)
    # Offer for all, row by row: no-offer churn (2, 0, 0, 0) minus churn (0, 0, 0, 2), times
    # 10, minus 1: net (19, -1, -1, -21); churn reduction (2, 0, 0, -2). Nobody: all zero.
    figures = {f: (everyone.values(f), nobody.values(f)[:, None])
               for f in ("net_value", "churn_reduction")}
    gain = gains_over_chosen(figures, nobody.values("net_value")[:, None],
                             np.array([0, 1, 0, 1]), alpha=0.05, seed=3)
    assert gain["net_value"].value == pytest.approx(-1.0)
    assert gain["churn_reduction"].value == pytest.approx(0.0)
    # Against itself nothing is gained, with no uncertainty: the pairing is row by row.
    same = gains_over_chosen({"net_value": (everyone.net, everyone.net[:, None])},
                             everyone.net[:, None], np.array([0, 1, 0, 1]), alpha=0.05,
                             seed=3)["net_value"]
    assert (same.value, same.se) == (0.0, 0.0)


# --------------------------------------------- a gain over an alternative chosen per fold


def chosen_alternative_test(rng: np.random.Generator, n: int = 3000) -> tuple[np.ndarray, ...]:
    """Rows of a policy and of three alternatives with equal true means, in three folds.

    Each row's values share a term (the customer's own outcome), and the alternatives
    are noisy, so which one looks best is chance: the setting where the folds' choices
    make their errors depend on each other. Returns own, options, folds, the true gain
    over each alternative (3 for all).
    """
    folds = rng.permutation(np.arange(n) % 3)
    shared = rng.normal(0.0, 20.0, n)
    options = shared[:, None] + rng.normal(0.0, 60.0, (n, 3))
    own = 3.0 + shared + rng.normal(0.0, 20.0, n)
    return own, options, folds, np.full(3, 3.0)


def test_a_gain_over_a_chosen_alternative_covers_the_truth_choice_included() -> None:
    from uplift.offpolicy import gains_over_chosen

    rng = np.random.default_rng(5)
    covered, paired_covered = [], []
    for rep in range(200):
        own, options, folds, true_gain = chosen_alternative_test(rng)
        est = gains_over_chosen({"gain": (own, options)}, options, folds, alpha=0.05,
                                seed=rep)["gain"]
        picks = [int(np.argmax(options[folds != k].mean(axis=0))) for k in range(3)]
        rows = own - options[np.arange(own.size), np.asarray(picks)[folds]]
        assert est.value == pytest.approx(rows.mean())  # each fold against its own pick
        truth = true_gain[np.asarray(picks)[folds]].mean()
        covered.append(est.ci_low <= truth <= est.ci_high)
        se = rows.std(ddof=1) / math.sqrt(rows.size)
        paired_covered.append(abs(rows.mean() - truth) <= 1.96 * se)
    assert np.mean(covered) >= 0.93
    # The row-wise paired interval misses here: the choice is what the bootstrap adds.
    assert np.mean(paired_covered) < 0.9


@pytest.mark.parametrize("behind", [None, 40.0])
def test_without_a_close_choice_the_bootstrap_error_is_the_paired_one(behind: float | None
                                                                       ) -> None:
    from uplift.offpolicy import gains_over_chosen

    rng = np.random.default_rng(6)
    ratios = []
    for rep in range(40):
        folds = rng.integers(0, 3, 4000)
        own = rng.normal(1.0, 10.0, 4000)
        other = 0.3 * own + rng.normal(0.0, 30.0, 4000)
        options = other[:, None]
        if behind is not None:  # two more alternatives, far behind: never chosen
            options = np.column_stack([other, other - behind + rng.normal(0.0, 30.0, 4000),
                                       other - behind])
        est = gains_over_chosen({"gain": (own, options)}, options, folds, alpha=0.05,
                                seed=rep)["gain"]
        rows = own - other
        se = rows.std(ddof=1) / math.sqrt(rows.size)  # nothing to choose: the closed form
        assert est.value == pytest.approx(rows.mean())
        assert (est.ci_low, est.ci_high) == pytest.approx(
            (est.value - 1.959963984540054 * est.se, est.value + 1.959963984540054 * est.se))
        ratios.append(est.se / se)
    assert np.mean(ratios) == pytest.approx(1.0, abs=0.03)
    assert max(abs(np.asarray(ratios) - 1.0)) < 0.2


def test_a_gain_over_a_chosen_alternative_takes_given_picks_and_refuses_one_fold() -> None:
    from uplift.offpolicy import gains_over_chosen

    own = np.array([5.0, 1.0, 2.0, 4.0])
    options = np.array([[1.0, 0.0], [0.0, 3.0], [2.0, 1.0], [0.0, 2.0]])
    folds = np.array([0, 1, 0, 1])

    def gain(**kwargs: object) -> Estimate:
        return gains_over_chosen({"gain": (own, options)}, options, folds, alpha=0.05,
                                 **kwargs)["gain"]

    # Fold 0 (rows 0, 2) against column 1, fold 1 (rows 1, 3) against column 0: gains
    # 5 - 0, 2 - 1 and 1 - 0, 4 - 0.
    est = gain(seed=1, picks=[1, 0])
    assert est.value == pytest.approx((5.0 + 1.0 + 1.0 + 4.0) / 4)
    # Chosen here: fold 0 by fold 1's means (0, 2.5) takes column 1; fold 1 by fold 0's
    # means (1.5, 0.5) takes column 0, the same.
    assert gain(seed=1) == est
    assert gain(seed=2) != est
    # Given picks are the ones used: both folds against column 0 (gains 4, 0 | 1, 4).
    assert gain(seed=1, picks=[0, 0]).value == pytest.approx((4.0 + 0.0 + 1.0 + 4.0) / 4)
    with pytest.raises(ValueError, match="each of the 2 folds"):
        gain(seed=1, picks=[0])
    with pytest.raises(ValueError, match="figure 'gain'"):
        gains_over_chosen({"gain": (own[:3], options)}, options, folds, alpha=0.05, seed=1)
    # Figures given together share the bootstrap's weights: each as when given alone.
    both = gains_over_chosen({"gain": (own, options), "twice": (2 * own, 2 * options)},
                             options, folds, alpha=0.05, seed=1)
    assert both["gain"] == est
    assert both["twice"].value == pytest.approx(2 * est.value)
    assert both["twice"].se == pytest.approx(2 * est.se)
    with pytest.raises(ValueError, match="two folds"):
        gains_over_chosen({"gain": (own, options)}, options, np.zeros(4, dtype=int),
                          alpha=0.05, seed=1)
