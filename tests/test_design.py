"""Power analysis checked against the textbook two-proportion formula written out here."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from uplift.design import DesignResult, solve_mde, solve_sample_size

RATES = [0.05, 0.1, 0.2, 0.3, 0.5]
MDES = [0.005, 0.01, 0.02, 0.05, 0.1]
GRID = [(p, m) for p in RATES for m in MDES if m < p]
ARM_NAMES = ["a", "b", "c", "d"]


def allocations(k: int) -> dict[str, dict[str, float] | None]:
    """Equal (None), control-heavy, and arms of different sizes, for k arms."""
    arms = ARM_NAMES[:k]
    weights = [1.0 + i for i in range(k)]  # arm i gets weight i + 1
    uneven = {"control": 0.3} | {
        a: 0.7 * w / sum(weights) for a, w in zip(arms, weights, strict=True)
    }
    return {
        "equal": None,
        "control_heavy": {"control": 0.4} | {a: 0.6 / k for a in arms},
        "uneven": uneven,
    }


def closed_form_n_arm(p_c: float, mde: float, r: float, alpha: float, power: float) -> float:
    """Customers in the arm: pooled null variance, unpooled alternative, r = n_control / n_arm."""
    p_a = p_c - mde
    pbar = (p_a + r * p_c) / (1 + r)
    z_a = stats.norm.ppf(1 - alpha / 2)
    z_b = stats.norm.ppf(power)
    root = z_a * math.sqrt(pbar * (1 - pbar) * (1 + 1 / r)) + z_b * math.sqrt(
        p_a * (1 - p_a) + p_c * (1 - p_c) / r
    )
    return root**2 / mde**2


def closed_form_total(
    p_c: float, mde: float, shares: dict[str, float], alpha_test: float, power: float
) -> float:
    """Smallest real N such that every arm (n = N * share) gets the power."""
    return max(
        closed_form_n_arm(p_c, mde, shares["control"] / s, alpha_test, power) / s
        for g, s in shares.items()
        if g != "control"
    )


def hand_power(p_c: float, mde: float, n_c: float, n_a: float, alpha: float) -> float:
    """One-tail normal power of the two-sided pooled z-test at these group sizes."""
    p_a = p_c - mde
    pbar = (n_a * p_a + n_c * p_c) / (n_a + n_c)
    se0 = math.sqrt(pbar * (1 - pbar) * (1 / n_a + 1 / n_c))
    se1 = math.sqrt(p_a * (1 - p_a) / n_a + p_c * (1 - p_c) / n_c)
    return stats.norm.cdf((mde - stats.norm.ppf(1 - alpha / 2) * se0) / se1)


def shares_of(k: int, allocation: dict[str, float] | None) -> dict[str, float]:
    groups = ["control", *ARM_NAMES[:k]]
    return allocation or {g: 1 / len(groups) for g in groups}


@pytest.mark.parametrize(("rate", "mde"), GRID)
def test_sample_size_matches_closed_form(rate: float, mde: float) -> None:
    for k in range(1, 5):
        for alloc in allocations(k).values():
            for correction, alpha_test in [("holm", 0.05 / k), ("none", 0.05)]:
                shares = shares_of(k, alloc)
                res = solve_sample_size(
                    rate,
                    mde,
                    control="control",
                    arms=ARM_NAMES[:k],
                    allocation=alloc,
                    correction=correction,
                )
                n_star = closed_form_total(rate, mde, shares, alpha_test, 0.8)
                assert res.alpha_per_test == pytest.approx(alpha_test, rel=1e-12)
                assert list(res.n_per_group) == list(shares)
                assert res.n_total == sum(res.n_per_group.values())
                assert res.n_total == pytest.approx(n_star, rel=0.01)
                for g, s in shares.items():
                    assert res.n_per_group[g] == pytest.approx(n_star * s, rel=0.01)
                    assert res.n_per_group[g] >= n_star * s - 1e-6
                # every arm's test reaches the power at the integer sizes
                for a in ARM_NAMES[:k]:
                    n_c, n_a = res.n_per_group["control"], res.n_per_group[a]
                    assert hand_power(rate, mde, n_c, n_a, alpha_test) >= 0.8 - 1e-9


@pytest.mark.parametrize(("rate", "mde"), [(0.3, 0.02), (0.1, 0.01), (0.5, 0.05), (0.05, 0.005)])
@pytest.mark.parametrize("power", [0.8, 0.9])
def test_sample_size_is_smallest(rate: float, mde: float, power: float) -> None:
    arms = ["a", "b", "c"]
    res = solve_sample_size(rate, mde, control="control", arms=arms, power=power)
    n = res.n_per_group["a"]
    assert hand_power(rate, mde, n, n, 0.05 / 3) >= power
    assert hand_power(rate, mde, n - 1, n - 1, 0.05 / 3) < power  # one fewer per group is short


@pytest.mark.parametrize(("rate", "mde"), GRID[::2])
@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("kind", ["equal", "control_heavy", "uneven"])
def test_round_trip_mde_to_n_to_mde(rate: float, mde: float, k: int, kind: str) -> None:
    kw = {"control": "control", "arms": ARM_NAMES[:k], "allocation": allocations(k)[kind]}
    design = solve_sample_size(rate, mde, **kw)
    back = solve_mde(design.n_total, rate, **kw)
    assert back.mde <= mde + 1e-12  # rounding up customers can only shrink the MDE
    assert back.mde == pytest.approx(mde, rel=0.01)
    assert back.n_total == design.n_total


@pytest.mark.parametrize("n_total", [2_000, 10_000, 50_000, 300_000])
@pytest.mark.parametrize("rate", [0.1, 0.3, 0.5])
@pytest.mark.parametrize("k", [1, 2, 4])
def test_round_trip_n_to_mde_to_n(n_total: int, rate: float, k: int) -> None:
    kw = {"control": "control", "arms": ARM_NAMES[:k], "allocation": allocations(k)["uneven"]}
    res = solve_mde(n_total, rate, **kw)
    assert sum(res.n_per_group.values()) == n_total
    assert solve_sample_size(rate, res.mde, **kw).n_total == pytest.approx(n_total, rel=0.01)
    # at the MDE the binding arm (the smallest) has exactly the power, by the hand formula
    shares = shares_of(k, kw["allocation"])
    powers = [
        hand_power(rate, res.mde, n_total * shares["control"], n_total * shares[a], 0.05 / k)
        for a in kw["arms"]
    ]
    assert min(powers) == pytest.approx(0.8, abs=1e-6)


def test_low_power_still_round_trips() -> None:
    kw = {"control": "control", "arms": ["a", "b"]}
    res = solve_mde(5000, 0.2, power=0.3, **kw)
    assert 0 < res.mde < 0.2
    assert solve_sample_size(0.2, res.mde, power=0.3, **kw).n_total == pytest.approx(5000, rel=0.01)


def test_correction_sets_alpha_per_test() -> None:
    arms = ["a", "b", "c"]
    results = {
        c: solve_sample_size(0.3, 0.03, control="control", arms=arms, correction=c)
        for c in ("holm", "bonferroni", "fdr_bh", "none")
    }
    for c in ("holm", "bonferroni", "fdr_bh"):
        assert results[c].alpha_per_test == pytest.approx(0.05 / 3)
        assert results[c].n_total == results["holm"].n_total
        assert results[c].correction == c
    assert results["none"].alpha_per_test == 0.05
    assert results["none"].n_total < results["holm"].n_total
    one_arm = [
        solve_sample_size(0.3, 0.03, control="control", arms=["a"], correction=c)
        for c in ("holm", "none")
    ]
    assert one_arm[0].alpha_per_test == one_arm[1].alpha_per_test == 0.05
    assert one_arm[0].n_total == one_arm[1].n_total
    mdes = {
        c: solve_mde(20_000, 0.3, control="control", arms=arms, correction=c).mde for c in results
    }
    assert mdes["none"] < mdes["holm"] == mdes["bonferroni"] == mdes["fdr_bh"]


@pytest.mark.parametrize(
    ("control_share", "bigger_than_equal"),
    [
        (0.4, False),  # 1/0.2 + 1/0.4 = 7.5 < 1/0.25 + 1/0.25 = 8: a bigger control helps
        (0.1, True),  # 1/0.3 + 1/0.1 = 13.3 > 8: a starved control hurts
    ],
)
def test_unequal_allocation(control_share: float, bigger_than_equal: bool) -> None:
    arms = ["a", "b", "c"]
    alloc = {"control": control_share} | {a: (1 - control_share) / 3 for a in arms}
    equal = solve_sample_size(0.3, 0.03, control="control", arms=arms)
    unequal = solve_sample_size(0.3, 0.03, control="control", arms=arms, allocation=alloc)
    # the variance of each comparison scales with 1/share_arm + 1/share_control
    assert (unequal.n_total > equal.n_total) is bigger_than_equal
    expected = closed_form_total(0.3, 0.03, alloc, 0.05 / 3, 0.8)
    assert unequal.n_total == pytest.approx(expected, rel=0.01)
    assert unequal.n_per_group["control"] == pytest.approx(control_share * expected, rel=0.01)


def test_uneven_arms_are_driven_by_the_smallest() -> None:
    alloc = {"control": 0.4, "big": 0.4, "small": 0.2}
    res = solve_sample_size(0.2, 0.02, control="control", arms=["big", "small"], allocation=alloc)
    n_small = closed_form_n_arm(0.2, 0.02, 0.4 / 0.2, 0.025, 0.8)
    assert res.n_per_group["small"] == pytest.approx(n_small, rel=0.01)
    assert res.n_per_group["big"] == pytest.approx(2 * n_small, rel=0.01)


def test_frame_and_markdown() -> None:
    res = solve_sample_size(0.3, 0.03, control="ctrl", arms=["a", "b"])
    assert isinstance(res, DesignResult)
    frame = res.to_frame()
    assert list(frame["group"]) == ["ctrl", "a", "b"]
    assert list(frame["n"]) == list(res.n_per_group.values())
    assert frame["churn_rate"].tolist() == pytest.approx([0.3, 0.27, 0.27])
    md = res.to_markdown()
    assert f"{res.n_total:,}" in md
    assert "ctrl (control)" in md
    assert "0.025 per test" in md


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ({"control_rate": 0.0}, "control_rate must be strictly between 0 and 1"),
        ({"control_rate": 1.2}, "control_rate must be strictly between 0 and 1"),
        ({"mde": 0.0}, "mde must be a positive"),
        ({"mde": -0.01}, "mde must be a positive"),
        ({"mde": 0.3}, r"mde=0.3 must be below control_rate=0.3"),
        ({"mde": 0.5}, "must be below control_rate"),
        ({"alpha": 0.0}, "alpha must be"),
        ({"power": 1.0}, "power must be"),
        ({"correction": "sidak"}, "correction must be one of"),
        ({"arms": []}, "at least one offer arm"),
        ({"arms": ["control"]}, "distinct"),
        ({"allocation": {"control": 0.5, "a": 0.5}}, r"allocation: no share for 'b'"),
        ({"allocation": {"control": 0.5, "a": 0.3, "b": 0.3}}, "sum to 1"),
        ({"allocation": {"control": 0.5, "a": 0.5, "b": 0.0}}, "between 0 and 1"),
    ],
)
def test_sample_size_value_errors(args: dict, match: str) -> None:
    kw = {"control_rate": 0.3, "mde": 0.02, "control": "control", "arms": ["a", "b"]} | args
    with pytest.raises(ValueError, match=match):
        solve_sample_size(**kw)


@pytest.mark.parametrize(
    ("n_total", "match"),
    [
        (10, "n_total=10 is too small to detect any churn reduction"),
        (0, "n_total must be positive"),
        (-5, "n_total must be positive"),
        (2500.5, "n_total must be a whole number"),
        (float("nan"), "n_total must be a whole number"),
    ],
)
def test_mde_value_errors(n_total: float, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        solve_mde(n_total, 0.3, control="control", arms=["a", "b"])


# --------------------------------------------------------------------------- variance reduction


def closed_form_n_arm_scaled(p_c: float, mde: float, r: float, alpha: float, power: float,
                             scale: float) -> float:
    """The textbook formula with both variances multiplied by ``scale`` = 1 - R."""
    p_a = p_c - mde
    pbar = (p_a + r * p_c) / (1 + r)
    z_a, z_b = stats.norm.ppf(1 - alpha / 2), stats.norm.ppf(power)
    v0 = scale * pbar * (1 - pbar) * (1 + 1 / r)
    v1 = scale * (p_a * (1 - p_a) + p_c * (1 - p_c) / r)
    return (z_a * math.sqrt(v0) + z_b * math.sqrt(v1)) ** 2 / mde**2


@pytest.mark.parametrize(("rate", "mde"), GRID[::3])
@pytest.mark.parametrize("reduction", [0.1, 0.3, 0.5])
@pytest.mark.parametrize("kind", ["equal", "uneven"])
def test_variance_reduction_matches_the_scaled_closed_form(rate: float, mde: float,
                                                           reduction: float, kind: str) -> None:
    k = 3
    alloc = allocations(k)[kind]
    shares = shares_of(k, alloc)
    res = solve_sample_size(rate, mde, control="control", arms=ARM_NAMES[:k], allocation=alloc,
                            variance_reduction=reduction)
    plain = solve_sample_size(rate, mde, control="control", arms=ARM_NAMES[:k], allocation=alloc)
    assert res.n_per_group == plain.n_per_group  # the plain design is unchanged
    n_star = max(closed_form_n_arm_scaled(rate, mde, shares["control"] / s, 0.05 / k, 0.8,
                                          1 - reduction) / s
                 for g, s in shares.items() if g != "control")
    assert res.adjusted_n_per_group is not None
    for g, s in shares.items():
        assert res.adjusted_n_per_group[g] == math.ceil(n_star * s - 1e-9)
    assert res.adjusted_n_total == sum(res.adjusted_n_per_group.values())
    # "about R fewer customers": exact but for rounding each group up
    assert res.adjusted_n_total / res.n_total == pytest.approx(1 - reduction, abs=8 / res.n_total)


def test_per_arm_reductions_need_the_arm_that_gains_least() -> None:
    arms = ["a", "b"]
    res = solve_sample_size(0.3, 0.03, control="control", arms=arms,
                            variance_reduction={"a": 0.4, "b": 0.1})
    both_small = solve_sample_size(0.3, 0.03, control="control", arms=arms,
                                   variance_reduction=0.1)
    assert res.adjusted_n_total == both_small.adjusted_n_total
    assert res.variance_reduction == {"a": 0.4, "b": 0.1}


@pytest.mark.parametrize("reduction", [0.2, 0.3])
def test_mde_with_a_variance_reduction_has_the_power(reduction: float) -> None:
    """At the adjusted MDE the hand power, standard errors scaled by sqrt(1 - R), is 0.8."""
    n_total, rate = 20_000, 0.3
    res = solve_mde(n_total, rate, control="control", arms=["a", "b"],
                    variance_reduction=reduction)
    m, n_g = res.adjusted_mde, n_total / 3
    assert m is not None
    assert m < res.mde
    p_a = rate - m
    se0 = math.sqrt((1 - reduction) * (p_a + rate) / 2 * (1 - (p_a + rate) / 2) * 2 / n_g)
    se1 = math.sqrt((1 - reduction) * (p_a * (1 - p_a) + rate * (1 - rate)) / n_g)
    power = stats.norm.cdf((m - stats.norm.ppf(1 - 0.025 / 2) * se0) / se1)
    assert power == pytest.approx(0.8, abs=1e-6)


@pytest.mark.parametrize(("value", "match"), [
    (1.0, r"variance_reduction must be in \[0, 1\), got 1.0"),
    (-0.1, r"variance_reduction must be in \[0, 1\)"),
    ({"a": 0.2}, "variance_reduction has no value for arm 'b'"),
    ({"a": 0.2, "b": 2}, "got 2 for arm 'b'"),
])
def test_variance_reduction_errors(value: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        solve_sample_size(0.3, 0.02, control="control", arms=["a", "b"],
                          variance_reduction=value)


def test_design_views_show_both_designs() -> None:
    res = solve_sample_size(0.3, 0.03, control="control", arms=["a"], variance_reduction=0.3)
    assert list(res.to_frame()["n_cuped"]) == list(res.adjusted_n_per_group.values())
    table = res.table()
    assert "customers with CUPED" in table.header
    assert table.rows[-1][3] == f"{res.adjusted_n_total:,}"
    assert f"{res.adjusted_n_total:,} customers instead of {res.n_total:,}" in res.to_markdown()
