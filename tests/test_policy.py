"""Offer policy: costs and net values by hand, eligibility filters, and the optimizer checked
against brute-force enumeration and an independent MILP."""

from __future__ import annotations

import itertools
import math
import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import base_config
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import sparse
from scipy.optimize import LinearConstraint, milp

from uplift import optimize
from uplift.config import ArmConfig, ExperimentConfig
from uplift.errors import UpliftWarning
from uplift.optimize import assign_offers_by_budget
from uplift.policy import (
    REL_TOL,
    Assignment,
    PolicyResult,
    assign_offers,
    budget_curve,
    build_policy,
    choose_offers,
    eligibility,
    net_values,
    offer_costs,
    optimality_warning,
    score_offers,
)

SPEC_ARMS = [
    ArmConfig.model_validate({"name": "discount_20", "cost": {"revenue_share": 0.2, "months": 3}}),
    ArmConfig.model_validate({"name": "free_upgrade", "cost": {"fixed": 6.0}}),
    ArmConfig.model_validate({"name": "webinar", "cost": {"fixed": 1.5}}),
]


# --- independent reference: enumerate every assignment -------------------------------


def brute_force(
    score: np.ndarray,
    cost: np.ndarray,
    eligible: np.ndarray,
    budget: float | None,
    capacity: list[int | None] | None,
    min_score: float,
) -> float:
    """The best total score over all (k+1)^n assignments that respect every rule."""
    n, k = score.shape
    combos = np.array(list(itertools.product(range(-1, k), repeat=n)), dtype=int)
    combos = combos.reshape(len(combos), n)
    rows = np.arange(n)
    pick = np.maximum(combos, 0)
    chosen = combos >= 0
    allowed = eligible[rows, pick] & (score[rows, pick] > min_score)
    valid = np.all(~chosen | allowed, axis=1)
    value = np.where(chosen, score[rows, pick], 0.0).sum(axis=1)
    if budget is not None:
        spend = np.where(chosen, cost[rows, pick], 0.0).sum(axis=1)
        valid &= spend <= budget + REL_TOL * max(1.0, budget)
    for a, cap in enumerate(capacity or []):
        if cap is not None:
            valid &= (combos == a).sum(axis=1) <= cap
    return float(value[valid].max())


def random_instance(rng: np.random.Generator) -> dict[str, Any]:
    """Small instances with negatives, exact ties, free offers, and mostly binding limits."""
    n = int(rng.choice([0, 1, 2, 3, 4, 5, 5, 6, 6, 7, 7, 7]))
    k = int(rng.integers(1, 4))
    if rng.random() < 0.5:
        score = rng.integers(-3, 6, size=(n, k)).astype(float)  # many exact ties
    else:
        score = rng.normal(1.0, 2.0, size=(n, k))
    if rng.random() < 0.5:
        cost = rng.choice([0.0, 0.5, 1.5, 2.0, 6.0], size=(n, k))
    else:
        cost = np.round(rng.random((n, k)) * 4, 3)
    eligible = rng.random((n, k)) < 0.75
    min_score = float(rng.choice([0.0, 0.0, 0.5, -1.0]))
    # What everyone's best offer would use, so that most limits bind.
    best = np.where(eligible & (score > max(min_score, 0.0)), score, -np.inf).argmax(axis=1)
    taken = np.isfinite(np.where(eligible & (score > max(min_score, 0)), score, -np.inf).max(
        axis=1, initial=-np.inf))
    spend = float(cost[np.arange(n), best][taken].sum())
    counts = np.bincount(best[taken], minlength=k)
    budget: float | None
    draw = rng.random()
    if draw < 0.15:
        budget = None
    elif draw < 0.2:
        budget = 0.0
    elif draw < 0.4 and n:
        # exactly the cost of a random assignment: a fit to the cent is possible
        pick = rng.integers(0, k, size=n)
        budget = float(cost[np.arange(n), pick][rng.random(n) < 0.5].sum())
    else:
        budget = float(np.round(rng.uniform(0.2, 0.9) * spend, 2))
    capacity: list[int | None] | None = None
    if rng.random() < 0.7:
        capacity = [None if rng.random() < 0.25 else int(rng.integers(0, counts[a] + 1))
                    for a in range(k)]
    return {"score": score, "cost": cost, "eligible": eligible, "budget": budget,
            "capacity": capacity, "min_score": min_score}


def check_feasible(result: Assignment, inst: dict[str, Any]) -> None:
    score, cost = inst["score"], inst["cost"]
    n, k = score.shape
    choice = result.choice
    assert choice.shape == (n,)
    assert choice.dtype.kind == "i"
    assert ((choice >= -1) & (choice < k)).all()
    rows = np.flatnonzero(choice >= 0)
    assert inst["eligible"][rows, choice[rows]].all()
    assert (score[rows, choice[rows]] > inst["min_score"]).all()
    total = float(cost[rows, choice[rows]].sum())
    counts = np.bincount(choice[rows], minlength=k)
    if inst["budget"] is not None:
        assert total <= inst["budget"] + REL_TOL * max(1.0, inst["budget"])
    for a, cap in enumerate(inst["capacity"] or []):
        if cap is not None:
            assert counts[a] <= cap
    assert result.objective == pytest.approx(float(score[rows, choice[rows]].sum()), abs=1e-9)
    assert result.total_cost == pytest.approx(total, abs=1e-9)
    np.testing.assert_array_equal(result.counts, counts)
    assert result.budget_multiplier >= 0
    assert result.capacity_multipliers.shape == (k,)
    assert (result.capacity_multipliers >= 0).all()
    assert result.upper_bound >= result.objective


# --- the optimizer against brute force ------------------------------------------------


@pytest.mark.parametrize("seed", range(300))
def test_assignment_equals_brute_force(seed: int) -> None:
    inst = random_instance(np.random.default_rng(seed))
    result = assign_offers(**inst)
    check_feasible(result, inst)
    best = brute_force(**inst)
    assert result.objective == pytest.approx(best, rel=1e-9, abs=1e-9)
    assert result.optimal
    assert result.upper_bound >= best - 1e-9


@pytest.mark.parametrize("seed", range(40))
def test_sampled_warm_start_and_cached_dual_stay_exact(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A 2-customer "sample" warm-starts the dual; its box cache decides customers early.
    monkeypatch.setattr(optimize, "_SAMPLE", 2)
    rng = np.random.default_rng(1000 + seed)
    inst = random_instance(rng)
    while inst["score"].shape[0] < 5 or (inst["budget"] is None and inst["capacity"] is None):
        inst = random_instance(rng)
    result = assign_offers(**inst)
    check_feasible(result, inst)
    assert result.objective == pytest.approx(brute_force(**inst), rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("seed", range(40))
def test_core_step_alone_gives_a_feasible_answer_and_a_valid_bound(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Force the large-instance path: a 2-customer core, no exact step.
    monkeypatch.setattr(optimize, "_EXACT_FREE", 0)
    monkeypatch.setattr(optimize, "_CORE", 2)
    inst = random_instance(np.random.default_rng(2000 + seed))
    result = assign_offers(**inst)
    check_feasible(result, inst)
    best = brute_force(**inst)
    assert result.objective <= best + 1e-9
    assert result.upper_bound >= best - 1e-9
    if result.optimal:
        assert result.objective == pytest.approx(best, rel=1e-9, abs=1e-9)


@st.composite
def instances(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(0, 5))
    k = draw(st.integers(1, 3))
    values = st.sampled_from([-2.0, -0.5, 0.0, 0.5, 1.0, 1.0, 2.5, 4.0])
    costs = st.sampled_from([0.0, 0.5, 1.0, 1.5, 6.0])
    score = np.array(draw(st.lists(values, min_size=n * k, max_size=n * k))).reshape(n, k)
    cost = np.array(draw(st.lists(costs, min_size=n * k, max_size=n * k))).reshape(n, k)
    eligible = np.array(draw(st.lists(st.booleans(), min_size=n * k, max_size=n * k)),
                        dtype=bool).reshape(n, k)
    budget = draw(st.one_of(st.none(), st.sampled_from([0.0, 0.5, 1.5, 2.0, 3.0, 7.5])))
    capacity = draw(st.one_of(st.none(), st.lists(st.one_of(st.none(), st.integers(0, n)),
                                                  min_size=k, max_size=k)))
    min_score = draw(st.sampled_from([0.0, 0.5, -1.0]))
    return {"score": score, "cost": cost, "eligible": eligible, "budget": budget,
            "capacity": capacity, "min_score": min_score}


@settings(max_examples=150, deadline=None)
@given(instances())
def test_assignment_equals_brute_force_property(inst: dict[str, Any]) -> None:
    result = assign_offers(**inst)
    check_feasible(result, inst)
    assert result.objective == pytest.approx(brute_force(**inst), rel=1e-9, abs=1e-9)
    assert result.optimal


# --- the optimizer: edge cases --------------------------------------------------------


def test_no_customers_and_no_offers() -> None:
    result = assign_offers(np.zeros((0, 3)), np.zeros((0, 3)), budget=5.0, capacity=[1, 1, 1])
    assert result.choice.shape == (0,)
    assert result.objective == 0.0
    assert result.optimal
    np.testing.assert_array_equal(result.counts, [0, 0, 0])
    empty = assign_offers(np.zeros((4, 0)), np.zeros((4, 0)))
    np.testing.assert_array_equal(empty.choice, [-1, -1, -1, -1])


def test_unconstrained_takes_each_best_offer_cheapest_on_ties() -> None:
    score = np.array([[1.0, 3.0, 3.0], [-1.0, 0.0, -2.0], [2.0, 2.0, 2.0], [5.0, 1.0, 0.5]])
    cost = np.array([[0.0, 4.0, 2.0], [1.0, 1.0, 1.0], [3.0, 1.0, 1.0], [9.0, 0.0, 0.0]])
    result = assign_offers(score, cost)
    np.testing.assert_array_equal(result.choice, [2, -1, 1, 0])
    assert result.objective == 10.0
    assert result.upper_bound == 10.0
    assert result.budget_multiplier == 0.0


def test_single_offer_budget_picks_best_value_for_money() -> None:
    score = np.array([[10.0], [6.0], [5.0], [1.0]])
    cost = np.array([[10.0], [5.0], [5.0], [1.0]])
    result = assign_offers(score, cost, budget=10.0)
    # 6 + 5 (cost 10) beats 10 (cost 10) and 10 + ... nothing else fits
    np.testing.assert_array_equal(result.choice, [-1, 0, 0, -1])
    assert result.objective == 11.0
    assert result.total_cost == 10.0
    assert result.optimal


def test_zero_budget_allows_only_free_offers() -> None:
    score = np.array([[3.0, 1.0], [2.0, 4.0]])
    cost = np.array([[1.0, 0.0], [0.0, 2.0]])
    result = assign_offers(score, cost, budget=0.0)
    np.testing.assert_array_equal(result.choice, [1, 0])
    assert result.total_cost == 0.0


def test_zero_capacity_closes_an_offer() -> None:
    score = np.array([[3.0, 1.0], [2.0, 4.0], [5.0, 0.5]])
    cost = np.zeros((3, 2))
    result = assign_offers(score, cost, capacity=[None, 0])
    np.testing.assert_array_equal(result.choice, [0, 0, 0])
    result = assign_offers(score, cost, capacity=[1, 0])
    np.testing.assert_array_equal(result.choice, [-1, -1, 0])


def test_capacity_goes_to_the_customers_worth_most() -> None:
    score = np.array([[3.0], [9.0], [1.0], [7.0]])
    result = assign_offers(score, np.ones((4, 1)), capacity=[2])
    np.testing.assert_array_equal(result.choice, [-1, 0, -1, 0])
    assert result.objective == 16.0


def test_nobody_eligible_or_nothing_worth_it() -> None:
    score = np.array([[3.0, 1.0], [2.0, 4.0]])
    cost = np.ones((2, 2))
    none = assign_offers(score, cost, eligible=np.zeros((2, 2), dtype=bool), budget=1.0)
    np.testing.assert_array_equal(none.choice, [-1, -1])
    low = assign_offers(score, cost, min_score=4.0, budget=10.0, capacity=[1, 1])
    np.testing.assert_array_equal(low.choice, [-1, -1])
    negative = assign_offers(-score, cost, min_score=-10.0)
    np.testing.assert_array_equal(negative.choice, [-1, -1])


def test_min_score_is_strict() -> None:
    score = np.array([[0.5, 0.6]])
    result = assign_offers(score, np.zeros((1, 2)), min_score=0.6)
    np.testing.assert_array_equal(result.choice, [-1])
    result = assign_offers(score, np.zeros((1, 2)), min_score=0.5)
    np.testing.assert_array_equal(result.choice, [1])


def test_budget_tolerance_is_relative_and_tiny() -> None:
    score = np.array([[1.0], [1.0], [1.0]])
    cost = np.array([[0.1], [0.2], [0.3]])
    # 0.1 + 0.2 = 0.30000000000000004 fits a budget of 0.3 (float rounding, not overspend)
    result = assign_offers(score, cost, budget=0.3)
    assert result.objective == 2.0
    over = assign_offers(score, cost, budget=0.3 - 1e-6)
    assert over.objective == 1.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"score": np.zeros(3), "cost": np.zeros(3)}, "2-D"),
        ({"score": np.zeros((2, 2)), "cost": np.zeros((2, 3))}, "shape"),
        ({"score": np.array([[np.nan]]), "cost": np.zeros((1, 1))}, "missing or infinite"),
        ({"score": np.zeros((1, 1)), "cost": np.array([[np.inf]])}, "missing or infinite"),
        ({"score": np.zeros((1, 1)), "cost": np.array([[-1.0]])}, "non-negative"),
        ({"score": [["a"]], "cost": np.zeros((1, 1))}, "numeric"),
        ({"eligible": np.ones((1, 2), dtype=bool)}, "eligible has shape"),
        ({"eligible": np.full((2, 2), 0.5)}, "boolean"),
        ({"budget": -1.0}, "budget"),
        ({"budget": math.nan}, "budget"),
        ({"budget": "10"}, "budget"),
        ({"capacity": [1]}, "one entry per offer"),
        ({"capacity": [1, -1]}, "capacity\\[1\\]"),
        ({"capacity": [1, 2.5]}, "capacity\\[1\\]"),
        ({"capacity": [True, None]}, "capacity\\[0\\]"),
        ({"min_score": math.nan}, "min_score"),
    ],
)
def test_invalid_inputs_are_rejected(kwargs: dict[str, Any], match: str) -> None:
    args: dict[str, Any] = {"score": np.ones((2, 2)), "cost": np.ones((2, 2))}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        assign_offers(**args)


def test_integer_eligibility_and_infinite_budget_are_accepted() -> None:
    result = assign_offers(np.ones((2, 2)), np.ones((2, 2)), eligible=np.array([[1, 0], [0, 0]]),
                           budget=math.inf)
    np.testing.assert_array_equal(result.choice, [0, -1])


# --- the optimizer on larger instances ------------------------------------------------


def realistic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    value = np.round(rng.gamma(2.0, 20.0, n), 2)
    risk = rng.beta(2.0, 5.0, n)
    effect = np.column_stack([rng.normal(0.20, 0.15, n), rng.normal(0.10, 0.10, n),
                              rng.normal(0.03, 0.06, n)])
    p_arms = np.clip(risk[:, None] * (1.0 - effect), 0.0, 1.0)
    net, cost = net_values(risk, p_arms, value, SPEC_ARMS, 12.0)
    eligible = np.ones((n, 3), dtype=bool)
    eligible[:, 1] = rng.random(n) >= 0.2
    return net, cost, eligible


def reference_milp(net: np.ndarray, cost: np.ndarray, eligible: np.ndarray, budget: float,
                   capacity: list[int | None]) -> Any:
    """The whole instance as one MILP, solved directly by HiGHS."""
    n = net.shape[0]
    i, a = np.nonzero(eligible & (net > 0))
    nvar = i.size
    rows = [sparse.csr_array((np.ones(nvar), (i, np.arange(nvar))), shape=(n, nvar)),
            sparse.csr_array(cost[i, a][None, :])]
    upper = [np.ones(n), [budget]]
    for arm, cap in enumerate(capacity):
        if cap is not None:
            rows.append(sparse.csr_array((a == arm).astype(float)[None, :]))
            upper.append([cap])
    constraint = LinearConstraint(sparse.vstack(rows), -np.inf, np.concatenate(upper))
    return milp(-net[i, a], integrality=np.ones(nvar), bounds=(0, 1), constraints=constraint,
                options={"mip_rel_gap": 1e-9, "time_limit": 60})


@pytest.mark.parametrize("seed", [0, 1])
def test_medium_instance_matches_a_direct_milp(seed: int) -> None:
    net, cost, eligible = realistic(2000, seed)
    free = assign_offers(net, cost, eligible=eligible)
    budget = round(0.3 * free.total_cost, 2)
    capacity = [None, int(free.counts[1] // 2), int(free.counts[2] // 2)]
    result = assign_offers(net, cost, eligible=eligible, budget=budget, capacity=capacity)
    check_feasible(result, {"score": net, "cost": cost, "eligible": eligible, "budget": budget,
                            "capacity": capacity, "min_score": 0.0})
    assert result.counts[1] == capacity[1]
    assert result.budget_multiplier > 0
    ref = reference_milp(net, cost, eligible, budget, capacity)
    assert ref.status == 0
    assert result.objective == pytest.approx(-ref.fun, rel=1e-9)
    assert result.optimal


@pytest.mark.parametrize("seed", [0, 1])
def test_lagrangian_only_is_feasible_near_optimal_and_bounded(seed: int) -> None:
    net, cost, eligible = realistic(2000, seed)
    free = assign_offers(net, cost, eligible=eligible)
    budget = round(0.3 * free.total_cost, 2)
    capacity = [None, int(free.counts[1] // 2), int(free.counts[2] // 2)]
    ref = reference_milp(net, cost, eligible, budget, capacity)
    assert ref.status == 0
    best = -ref.fun
    quick = assign_offers(net, cost, eligible=eligible, budget=budget, capacity=capacity,
                          exact=False)
    check_feasible(quick, {"score": net, "cost": cost, "eligible": eligible, "budget": budget,
                           "capacity": capacity, "min_score": 0.0})
    assert quick.objective <= best * (1 + 1e-12)
    assert quick.upper_bound >= best * (1 - 1e-9)
    # Within a few customers' worth of the optimum: less than the largest single net value.
    assert best - quick.objective <= net.max()
    assert quick.objective >= 0.99 * best


# --- the optimizer at several budgets at once -------------------------------------------


def several_budgets(inst: dict[str, Any]) -> list[float | None]:
    """From nothing to everyone's dearest offer, and the instance's own budget."""
    top = float(np.where(inst["eligible"], inst["cost"], 0.0).max(axis=1, initial=0.0).sum())
    return [0.0, *(round(f * top, 2) for f in (0.1, 0.25, 0.5, 0.8)), top, inst["budget"]]


@pytest.mark.parametrize("seed", range(200))
def test_budget_sweep_is_feasible_bounded_and_never_below_each_budgets_lagrangian(
    seed: int,
) -> None:
    inst = random_instance(np.random.default_rng(3000 + seed))
    if seed % 2:
        inst["capacity"] = None  # only a budget binds: the sweep
    budgets = several_budgets(inst)
    results = assign_offers_by_budget(inst["score"], inst["cost"], budgets,
                                      eligible=inst["eligible"], capacity=inst["capacity"],
                                      min_score=inst["min_score"])
    assert len(results) == len(budgets)
    for budget, result in zip(budgets, results, strict=True):
        case = {**inst, "budget": budget}
        check_feasible(result, case)
        best = brute_force(**case)
        assert result.objective <= best + 1e-9
        assert result.upper_bound >= best - 1e-9
        alone = assign_offers(**case, exact=False)
        assert result.objective >= alone.objective - 1e-9 * max(1.0, abs(alone.objective))


@pytest.mark.parametrize("seed", [0, 1])
def test_budget_sweep_on_a_medium_instance_is_within_a_customer_of_the_optimum(
    seed: int,
) -> None:
    net, cost, eligible = realistic(2000, seed)
    free = assign_offers(net, cost, eligible=eligible)
    budgets = [round(f * free.total_cost, 2) for f in (0.05, 0.3, 0.9)]
    results = assign_offers_by_budget(net, cost, budgets, eligible=eligible)
    for budget, result in zip(budgets, results, strict=True):
        check_feasible(result, {"score": net, "cost": cost, "eligible": eligible,
                                "budget": budget, "capacity": None, "min_score": 0.0})
        alone = assign_offers(net, cost, eligible=eligible, budget=budget, exact=False)
        assert result.objective >= alone.objective - 1e-9 * abs(alone.objective)
        best = assign_offers(net, cost, eligible=eligible, budget=budget)  # with its bound
        assert result.objective <= best.upper_bound * (1 + 1e-12)
        assert result.upper_bound >= best.objective * (1 - 1e-9)
        assert best.upper_bound - result.objective <= net.max()
        assert result.budget_multiplier > 0


def test_budget_sweep_under_a_binding_capacity_is_each_budgets_lagrangian() -> None:
    net, cost, eligible = realistic(2000, 0)
    free = assign_offers(net, cost, eligible=eligible)
    capacity = [None, int(free.counts[1] // 2), None]
    budgets = [0.0, round(0.2 * free.total_cost, 2), round(0.6 * free.total_cost, 2)]
    results = assign_offers_by_budget(net, cost, budgets, eligible=eligible, capacity=capacity)
    for budget, result in zip(budgets, results, strict=True):
        alone = assign_offers(net, cost, eligible=eligible, budget=budget, capacity=capacity,
                              exact=False)
        np.testing.assert_array_equal(result.choice, alone.choice)
        assert (result.objective, result.upper_bound) == (alone.objective, alone.upper_bound)


@pytest.mark.slow
def test_large_instance_respects_limits_with_a_tiny_gap() -> None:
    net, cost, eligible = realistic(20_000, 3)
    free = assign_offers(net, cost, eligible=eligible)
    budget = round(0.25 * free.total_cost, 2)
    capacity = [None, int(free.counts[1] // 3), int(free.counts[2] // 2)]
    for limits in ({"budget": budget}, {"capacity": capacity},
                   {"budget": budget, "capacity": capacity}):
        result = assign_offers(net, cost, eligible=eligible, **limits)
        check_feasible(result, {"score": net, "cost": cost, "eligible": eligible,
                                "budget": limits.get("budget"),
                                "capacity": limits.get("capacity"), "min_score": 0.0})
        assert result.gap <= 1e-6 * abs(result.upper_bound)
        assert result.objective < free.objective


# --- costs, net values, eligibility ---------------------------------------------------


def test_offer_costs_follow_the_spec_formula() -> None:
    p_arms = np.array([[0.2, 0.3, 0.4], [1.0, 0.0, 0.5]])
    value = np.array([50.0, 10.0])
    cost = offer_costs(p_arms, value, SPEC_ARMS)
    expected = np.array([
        [0.0 + 0.8 * 0.2 * 50.0 * 3, 6.0, 1.5],
        [0.0 + 0.0 * 0.2 * 10.0 * 3, 6.0, 1.5],
    ])
    np.testing.assert_allclose(cost, expected, rtol=1e-12)
    mixed = ArmConfig.model_validate({"name": "mix", "cost": {"fixed": 2.0, "revenue_share": 0.5,
                                                              "months": 2}})
    np.testing.assert_allclose(offer_costs(np.array([[0.25]]), np.array([40.0]), [mixed]),
                               [[2.0 + 0.75 * 0.5 * 40.0 * 2]])


def test_net_values_follow_the_spec_formula() -> None:
    p_control = np.array([0.5, 0.1])
    p_arms = np.array([[0.2, 0.3, 0.4], [0.1, 0.05, 0.2]])
    value = np.array([50.0, 10.0])
    net, cost = net_values(p_control, p_arms, value, SPEC_ARMS, 12.0)
    for i in range(2):
        for a in range(3):
            uplift = p_control[i] - p_arms[i, a]
            arm = SPEC_ARMS[a].cost
            c = arm.fixed + (1 - p_arms[i, a]) * arm.revenue_share * value[i] * arm.share_months
            assert cost[i, a] == pytest.approx(c, rel=1e-12)
            assert net[i, a] == pytest.approx(uplift * value[i] * 12.0 - c, rel=1e-12)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((np.array([0.5]), np.array([[1.5, 0.1, 0.1]]), np.array([1.0])), "p_arms"),
        ((np.array([np.nan]), np.array([[0.1, 0.1, 0.1]]), np.array([1.0])), "p_control"),
        ((np.array([0.5, 0.5]), np.array([[0.1, 0.1, 0.1]]), np.array([1.0])), "rows"),
        ((np.array([0.5]), np.array([[0.1, 0.1]]), np.array([1.0])), "columns"),
        ((np.array([0.5]), np.array([[0.1, 0.1, 0.1]]), np.array([-1.0])), "value"),
        ((np.array([0.5]), np.array([[0.1, 0.1, 0.1]]), np.array([1.0, 2.0])), "value"),
    ],
)
def test_net_values_reject_bad_inputs(args: tuple[np.ndarray, ...], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        net_values(*args, SPEC_ARMS, 12.0)


def test_net_values_reject_a_bad_horizon() -> None:
    with pytest.raises(ValueError, match="horizon"):
        net_values(np.array([0.5]), np.array([[0.1, 0.1, 0.1]]), np.array([1.0]), SPEC_ARMS, 0)


def arm(name: str, eligible: dict[str, Any] | None = None) -> ArmConfig:
    return ArmConfig.model_validate({"name": name, "eligible": eligible})


def test_eligibility_filters() -> None:
    frame = pd.DataFrame({
        "plan": ["basic", "premium", None, "standard", "premium"],
        "tenure": [1.0, 5.0, 12.0, np.nan, 3.0],
        "code": pd.array([1, 2, None, 4, 1], dtype="Int64"),
        "region": pd.Categorical(["n", "s", "n", None, "e"]),
    })
    arms = [
        arm("all"),
        arm("not_premium", {"plan": {"not_in": ["premium"]}}),
        arm("in_plans", {"plan": {"in": ["basic", "premium"]}}),
        arm("tenure_3_12", {"tenure": {"min": 3, "max": 12}}),
        arm("code_in", {"code": {"in": [1, "4"]}}),
        arm("both", {"plan": {"not_in": ["basic"]}, "tenure": {"min": 4}}),
        arm("region", {"region": {"in": ["n", "e"]}}),
        arm("region_not", {"region": {"not_in": ["n"]}}),
    ]
    got = eligibility(frame, arms)
    expected = np.array([
        [1, 1, 1, 1, 1],
        [1, 0, 1, 1, 0],  # missing plan is "not in" the list
        [1, 1, 0, 0, 1],  # missing plan is never "in" the list
        [0, 1, 1, 0, 1],  # inclusive bounds; missing tenure fails
        [1, 0, 0, 1, 1],  # numbers listed as text still match a numeric column
        [0, 1, 1, 0, 0],  # every filter must hold
        [1, 0, 1, 0, 1],
        [0, 1, 0, 1, 1],
    ], dtype=bool).T
    np.testing.assert_array_equal(got, expected)


def test_eligibility_compares_text_columns_as_text() -> None:
    frame = pd.DataFrame({"segment": ["1", "2", "x", "1.5"], "flag": [True, False, True, False]})
    arms = [arm("seg", {"segment": {"in": [1, 1.5]}}), arm("flag", {"flag": {"in": [True]}})]
    np.testing.assert_array_equal(eligibility(frame, arms),
                                  np.array([[1, 0, 0, 1], [1, 0, 1, 0]], dtype=bool).T)


def test_eligibility_errors_name_the_offer_and_column() -> None:
    frame = pd.DataFrame({"plan": ["basic"]})
    with pytest.raises(ValueError, match="offer 'x'.*'tenure'.*not in the data"):
        eligibility(frame, [arm("x", {"tenure": {"min": 1}})])
    with pytest.raises(ValueError, match="offer 'x'.*'plan'.*numeric"):
        eligibility(frame, [arm("x", {"plan": {"min": 1}})])


def test_eligibility_without_filters_and_without_rows() -> None:
    assert eligibility(pd.DataFrame({"a": [1, 2]}), [arm("x"), arm("y")]).all()
    assert eligibility(pd.DataFrame({"a": []}), [arm("x", {"a": {"min": 0}})]).shape == (0, 1)


# --- build_policy ---------------------------------------------------------------------


def config(**policy: Any) -> ExperimentConfig:
    raw = base_config()
    raw["policy"] = policy
    return ExperimentConfig.model_validate(raw)


def customers(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                    pd.DataFrame]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"plan": rng.choice(["basic", "standard", "premium"], size=n),
                          "monthly_revenue": np.round(rng.gamma(2.0, 20.0, n), 2)})
    p_control = rng.beta(2.0, 5.0, n)
    effect = rng.normal([0.15, 0.10, 0.02], [0.2, 0.15, 0.08], size=(n, 3))
    p_arms = np.clip(p_control[:, None] * (1 - effect), 0.0, 1.0)
    return p_control, p_arms, frame["monthly_revenue"].to_numpy(), frame


def test_net_value_policy_without_limits_takes_each_best_offer() -> None:
    p_control, p_arms, value, frame = customers()
    cfg = config()
    policy = build_policy(p_control, p_arms, value, frame, cfg)
    net, cost = net_values(p_control, p_arms, value, cfg.arms, cfg.value_horizon_months)
    net = np.where(eligibility(frame, cfg.arms), net, -np.inf)
    best = net.max(axis=1)
    want = np.where(best > 0, np.asarray(cfg.arm_names, dtype=object)[net.argmax(axis=1)],
                    cfg.control)
    np.testing.assert_array_equal(policy.offer, want)
    np.testing.assert_allclose(policy.net_value, np.where(best > 0, best, 0.0))
    assert not ((policy.offer == "free_upgrade") & (frame["plan"] == "premium")).any()
    assert (policy.uplift[policy.offer == cfg.control] == 0).all()
    assert (policy.cost[policy.offer == cfg.control] == 0).all()
    assert policy.assignment.optimal


def test_net_value_policy_respects_min_net_value_budget_and_capacity() -> None:
    p_control, p_arms, value, frame = customers()
    cfg = config(min_net_value=5.0, budget=300.0, capacity={"webinar": 10})
    policy = build_policy(p_control, p_arms, value, frame, cfg)
    offered = policy.offer != cfg.control
    assert (policy.net_value[offered] > 5.0).all()
    assert policy.total_cost <= 300.0 * (1 + REL_TOL)
    assert policy.counts()["webinar"] <= 10
    assert policy.budget == 300.0
    assert policy.capacity == {"webinar": 10}
    # explicit arguments override the config (e.g. scaled to another population)
    wider = build_policy(p_control, p_arms, value, frame, cfg, budget=None, capacity=None)
    assert wider.total_cost > 300.0
    assert wider.total_net_value >= policy.total_net_value


@pytest.mark.parametrize(("policy", "capacity", "same"), [
    ({}, None, False),
    ({"objective": "churn_reduction"}, None, False),
    ({}, {"discount_20": 40}, True),  # a capacity binds: each budget's own solve
    ({"min_net_value": -1.0}, None, True),  # losses accepted: each budget's own solve
])
def test_fast_budget_curve_is_each_budgets_lagrangian_policy_or_better(
    policy: dict[str, Any], capacity: dict[str, int] | None, same: bool,
) -> None:
    p_control, p_arms, value, frame = customers(1500, seed=3)
    cfg = config(**policy)  # free_upgrade is not for premium customers
    full = build_policy(p_control, p_arms, value, frame, cfg, budget=None, capacity=capacity)
    budgets = np.linspace(0.0, full.total_cost, 7)
    curve = budget_curve(p_control, p_arms, value, frame, cfg, budgets, capacity=capacity,
                         exact=False)
    aim = cfg.policy.objective
    for row, budget in zip(curve.to_dict("records"), budgets, strict=True):
        alone = build_policy(p_control, p_arms, value, frame, cfg, budget=float(budget),
                             capacity=capacity, exact=False)
        want = {"budget": float(budget), "cost": alone.total_cost,
                "net_value": alone.total_net_value,
                "churn_reduction": alone.churn_reduction_per_customer,
                "customers_treated": int((alone.offer != cfg.control).sum())}
        assert row["cost"] <= budget * (1 + REL_TOL)
        if same:
            assert row == want
        else:
            assert row[aim] >= want[aim] - 1e-9 * max(1.0, abs(want[aim]))


def test_negative_min_net_value_allows_small_losses() -> None:
    p_control = np.array([0.30, 0.30])
    p_arms = np.array([[0.30, 0.30, 0.29], [0.30, 0.30, 0.30]])
    value = np.array([10.0, 10.0])
    frame = pd.DataFrame({"plan": ["basic", "basic"]})
    # webinar: customer 0 nets 0.01 * 10 * 12 - 1.5 = -0.3; customer 1 nets -1.5
    kept = build_policy(p_control, p_arms, value, frame, config(min_net_value=-1.0))
    assert list(kept.offer) == ["webinar", "control"]
    assert kept.net_value[0] == pytest.approx(-0.3)
    strict = build_policy(p_control, p_arms, value, frame, config(min_net_value=0.0))
    assert list(strict.offer) == ["control", "control"]


def test_churn_reduction_policy_never_offers_what_does_not_reduce_churn() -> None:
    p_control, p_arms, value, frame = customers(seed=1)
    p_arms[:50] = np.minimum(p_control[:50, None] + 0.05, 1.0)  # nothing helps these 50
    cfg = config(objective="churn_reduction", budget=400.0)
    policy = build_policy(p_control, p_arms, value, frame, cfg)
    offered = policy.offer != cfg.control
    assert offered.any()
    assert (policy.uplift[offered] > 0).all()
    assert not offered[:50].any()
    assert policy.total_cost <= 400.0 * (1 + REL_TOL)
    assert policy.objective == "churn_reduction"
    assert policy.assignment.objective == pytest.approx(policy.uplift.sum())


def test_policy_result_summaries() -> None:
    p_control, p_arms, value, frame = customers()
    cfg = config(budget=500.0, capacity={"free_upgrade": 20})
    policy = build_policy(p_control, p_arms, value, frame, cfg)
    assert isinstance(policy, PolicyResult)
    shares = policy.shares()
    assert list(shares) == ["control", *cfg.arm_names]
    assert sum(shares.values()) == pytest.approx(1.0)
    table = policy.to_frame()
    assert list(table["group"]) == ["control", *cfg.arm_names]
    assert list(table.columns) == ["group", "customers", "share", "cost", "net_value",
                                   "mean_uplift"]
    assert table["customers"].sum() == len(frame)
    assert table["cost"].sum() == pytest.approx(policy.total_cost)
    assert table["net_value"].sum() == pytest.approx(policy.total_net_value)
    assert table.loc[0, "cost"] == 0.0
    assert policy.net_value_per_customer == pytest.approx(policy.total_net_value / len(frame))
    assert policy.cost_per_customer == pytest.approx(policy.total_cost / len(frame))
    text = policy.to_markdown()
    for name in cfg.groups:
        assert name in text
    assert "budget 500.00" in text
    assert "free_upgrade capacity 20" in text


def test_policy_with_no_customers() -> None:
    cfg = config(budget=10.0)
    policy = build_policy(np.zeros(0), np.zeros((0, 3)), np.zeros(0),
                          pd.DataFrame({"plan": pd.Series([], dtype=str)}), cfg)
    assert policy.offer.shape == (0,)
    assert policy.shares() == {g: 0.0 for g in cfg.groups}
    assert policy.to_frame()["customers"].sum() == 0
    assert policy.net_value_per_customer == 0.0
    assert "control" in policy.to_markdown()


def test_policy_rejects_unknown_capacity_and_mismatched_rows() -> None:
    p_control, p_arms, value, frame = customers(n=10)
    with pytest.raises(ValueError, match="unknown offer"):
        build_policy(p_control, p_arms, value, frame, config(), capacity={"nope": 3})
    with pytest.raises(ValueError, match="capacity of 'webinar'"):
        build_policy(p_control, p_arms, value, frame, config(), capacity={"webinar": -1})
    with pytest.raises(ValueError, match="rows"):
        build_policy(p_control, p_arms, value, frame.iloc[:5], config())


# --- accepted losses (a negative min_net_value), optimality, machine speed ------------


def test_a_negative_min_net_value_never_trades_a_gain_for_losses() -> None:
    # One budget of 10: customer 0's offer nets +5 and costs 10; customers 1 and 2 each
    # net -1 and cost 5. Losses down to -10 are accepted, so all three offers may be made,
    # but the budget buys either the gain or the two losses: the gain it is.
    score = np.array([[5.0], [-1.0], [-1.0]])
    cost = np.array([[10.0], [5.0], [5.0]])
    result = choose_offers(score, cost, np.ones((3, 1), dtype=bool), min_score=-10.0,
                           budget=10.0)
    assert result.choice.tolist() == [0, -1, -1]
    assert result.objective == 5.0
    # Without the budget every offer above the threshold is made, losses included.
    free = choose_offers(score, cost, np.ones((3, 1), dtype=bool), min_score=-10.0)
    assert free.choice.tolist() == [0, 0, 0]
    assert free.objective == 3.0
    assert free.optimal


def test_build_policy_maximises_true_net_value_under_a_negative_min_net_value() -> None:
    p_control, p_arms, value, frame = customers(seed=3)
    loose = config(min_net_value=-3.0, budget=200.0)
    strict = config(min_net_value=0.0, budget=200.0)
    with_losses = build_policy(p_control, p_arms, value, frame, loose)
    gains_only = build_policy(p_control, p_arms, value, frame, strict)
    # The same budget never earns less because losses are allowed.
    assert with_losses.total_net_value >= gains_only.total_net_value - 1e-9
    assert with_losses.total_cost <= 200.0 * (1 + REL_TOL)
    offered = with_losses.offer != loose.control
    assert (with_losses.net_value[offered] > -3.0).all()


def best_gain(score: np.ndarray, cost: np.ndarray, budget: float) -> float:
    """The best total of positive scores one offer can earn under the budget, by enumeration."""
    best = 0.0
    for combo in itertools.product([False, True], repeat=score.shape[0]):
        take = np.array(combo)
        if (score[take, 0] > 0).all() and cost[take, 0].sum() <= budget + 1e-9:
            best = max(best, float(score[take, 0].sum()))
    return best


@pytest.mark.parametrize("seed", range(25))
def test_losses_fill_only_what_the_best_gains_leave(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 7
    score = rng.integers(-4, 5, size=(n, 1)).astype(float)
    cost = rng.integers(1, 6, size=(n, 1)).astype(float)
    budget = float(rng.integers(3, 20))
    result = choose_offers(score, cost, np.ones((n, 1), dtype=bool), min_score=-2.5,
                           budget=budget)
    made = result.choice >= 0
    gains = made & (score[:, 0] > 0)
    # The gains are the best the budget can buy: losses displaced none of them.
    assert score[gains, 0].sum() == pytest.approx(best_gain(score, cost, budget))
    assert cost[made, 0].sum() <= budget * (1 + REL_TOL)
    assert (score[made, 0] > -2.5).all()
    assert result.objective == pytest.approx(score[made, 0].sum())
    # Every accepted loss left out is one the remaining budget cannot pay for.
    left = budget - cost[made, 0].sum()
    skipped = ~made & (score[:, 0] > -2.5) & (score[:, 0] <= 0)
    assert (cost[skipped, 0] > left - 1e-9).all()


def test_the_offer_scores_are_what_the_spec_formula_says() -> None:
    p_control, p_arms, value, frame = customers(n=50, seed=4)
    cfg = config(min_net_value=1.5)
    offers = score_offers(p_control, p_arms, value, frame, cfg)
    net, cost = net_values(p_control, p_arms, value, cfg.arms, cfg.value_horizon_months)
    np.testing.assert_array_equal(offers.net, net)
    np.testing.assert_array_equal(offers.cost, cost)
    np.testing.assert_array_equal(offers.uplift, p_control[:, None] - p_arms)
    np.testing.assert_array_equal(offers.score, net)
    assert offers.min_score == 1.5
    np.testing.assert_array_equal(offers.allowed,
                                  eligibility(frame, cfg.arms) & (net > 1.5))
    reduction = score_offers(p_control, p_arms, value, frame,
                             config(objective="churn_reduction", min_net_value=1.5))
    np.testing.assert_array_equal(reduction.score, p_control[:, None] - p_arms)
    assert reduction.min_score == 0.0


def test_an_assignment_not_proven_optimal_is_said_on_stderr_with_its_gap() -> None:
    proven = Assignment(choice=np.array([0]), objective=10.0, total_cost=1.0,
                        counts=np.array([1]), budget_multiplier=0.0,
                        capacity_multipliers=np.zeros(1), upper_bound=10.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        optimality_warning(proven, "customers.csv")
    loose = Assignment(choice=np.array([0]), objective=10.0, total_cost=1.0,
                       counts=np.array([1]), budget_multiplier=0.0,
                       capacity_multipliers=np.zeros(1), upper_bound=10.5)
    with pytest.warns(UpliftWarning, match=r"customers.csv: the offer assignment is not "
                      r"proven optimal; it is within 0\.5 \(4\.8e-02 of the total\)"):
        optimality_warning(loose, "customers.csv")


def test_the_milp_steps_have_no_wall_clock_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[dict[str, Any]] = []
    real = optimize.milp

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(dict(kwargs.get("options") or {}))
        return real(*args, **kwargs)

    monkeypatch.setattr(optimize, "milp", spy)
    rng = np.random.default_rng(7)
    score = rng.uniform(0, 10, size=(400, 3))
    cost = rng.uniform(1, 5, size=(400, 3))
    result = assign_offers(score, cost, budget=300.0, capacity=[40, None, 60])
    assert seen, "the instance should need a MILP step"
    assert all("time_limit" not in options and options["node_limit"] > 0 for options in seen)
    assert result.total_cost <= 300.0 * (1 + REL_TOL)
