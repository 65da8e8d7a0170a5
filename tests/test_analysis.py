"""RCT readout checked against statistics computed independently in this file."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.proportion import confint_proportions_2indep

from uplift.analysis import ArmEffect, GroupStats, RctResult, SrmWarning, analyze_rct

ARMS = ["discount_20", "free_upgrade", "webinar"]
SHARES = {"control": 0.4, "discount_20": 0.3, "free_upgrade": 0.2, "webinar": 0.1}
TRUE_CHURN = {"control": 0.30, "discount_20": 0.25, "free_upgrade": 0.28, "webinar": 0.31}
TOL = {"rel": 1e-9, "abs": 1e-9}


# --- independent reference implementations ------------------------------------------


def wilson(x: int, n: int, alpha: float) -> tuple[float, float]:
    z = stats.norm.ppf(1 - alpha / 2)
    p = x / n
    center = (x + z**2 / 2) / (n + z**2)
    half = z * math.sqrt(n) / (n + z**2) * math.sqrt(p * (1 - p) + z**2 / (4 * n))
    return center - half, center + half


def newcombe(x1: int, n1: int, x2: int, n2: int, alpha: float) -> tuple[float, float]:
    """Newcombe (1998) method 10 interval for p1 - p2 from the two Wilson intervals."""
    p1, p2 = x1 / n1, x2 / n2
    l1, u1 = wilson(x1, n1, alpha)
    l2, u2 = wilson(x2, n2, alpha)
    d = p1 - p2
    return d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2), d + math.sqrt(
        (u1 - p1) ** 2 + (p2 - l2) ** 2
    )


def pooled_z_pvalue(x1: int, n1: int, x2: int, n2: int) -> float:
    pooled = (x1 + x2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    z = (x1 / n1 - x2 / n2) / se
    return 2 * stats.norm.sf(abs(z))


def adjust(pvalues: list[float], method: str) -> list[float]:
    """Holm step-down, Bonferroni, Benjamini-Hochberg step-up, written out."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    out = [0.0] * m
    if method == "none":
        return list(pvalues)
    if method == "bonferroni":
        return [min(1.0, m * p) for p in pvalues]
    if method == "holm":
        running = 0.0
        for rank, i in enumerate(order):  # rank 0 = smallest p, multiplied by m
            running = max(running, min(1.0, (m - rank) * pvalues[i]))
            out[i] = running
        return out
    if method == "fdr_bh":
        running = 1.0
        for rank in range(m - 1, -1, -1):  # from the largest p down
            i = order[rank]
            running = min(running, m / (rank + 1) * pvalues[i])
            out[i] = min(1.0, running)
        return out
    raise AssertionError(method)


def srm_pvalue(counts: list[int], shares: list[float]) -> float:
    total = sum(counts)
    expected = [total * s for s in shares]
    stat = sum((o - e) ** 2 / e for o, e in zip(counts, expected, strict=True))
    return float(stats.chi2.sf(stat, df=len(counts) - 1))


def expected_metrics(
    treatment: np.ndarray,
    churned: np.ndarray,
    control: str,
    arms: list[str],
    alpha: float,
    correction: str,
    shares: dict[str, float] | None,
) -> dict[str, float]:
    groups = [control, *arms]
    n = {g: int((treatment == g).sum()) for g in groups}
    x = {g: int(churned[treatment == g].sum()) for g in groups}
    rate = {g: x[g] / n[g] for g in groups}
    raw = [pooled_z_pvalue(x[control], n[control], x[a], n[a]) for a in arms]
    adj = adjust(raw, correction)
    out: dict[str, float] = {"n_customers": len(treatment), "n_control": n[control]}
    out.update({f"n_{a}": n[a] for a in arms})
    out["churn_rate_control"] = rate[control]
    out.update({f"churn_rate_{a}": rate[a] for a in arms})
    for i, a in enumerate(arms):
        low, high = newcombe(x[control], n[control], x[a], n[a], alpha)
        out[f"ate_{a}"] = rate[control] - rate[a]
        out[f"ate_{a}_ci_low"] = low
        out[f"ate_{a}_ci_high"] = high
        out[f"ate_{a}_pvalue"] = raw[i]
        out[f"ate_{a}_pvalue_adj"] = adj[i]
    if shares is not None:
        out["srm_pvalue"] = srm_pvalue([n[g] for g in groups], [shares[g] for g in groups])
    out["churn_rate_observed"] = churned.mean()
    return out


def random_table(seed: int, n: int = 20_000) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    groups = list(SHARES)
    treatment = rng.choice(groups, size=n, p=list(SHARES.values()))
    p = np.array([TRUE_CHURN[g] for g in treatment])
    churned = (rng.random(n) < p).astype(int)
    return treatment, churned


def tiny_table(counts: dict[str, tuple[int, int]]) -> tuple[list[str], list[int]]:
    """counts: group -> (churners, n)."""
    treatment: list[str] = []
    churned: list[int] = []
    for g, (x, n) in counts.items():
        treatment += [g] * n
        churned += [1] * x + [0] * (n - x)
    return treatment, churned


# --- tests --------------------------------------------------------------------------


@pytest.mark.parametrize("correction", ["holm", "bonferroni", "fdr_bh", "none"])
@pytest.mark.parametrize(("seed", "alpha"), [(1, 0.05), (2, 0.1), (3, 0.01)])
def test_metrics_match_independent_computation(correction: str, seed: int, alpha: float) -> None:
    treatment, churned = random_table(seed)
    result = analyze_rct(
        treatment,
        churned,
        control="control",
        arms=ARMS,
        allocation=SHARES,
        alpha=alpha,
        correction=correction,
    )
    got = result.metrics()
    want = expected_metrics(treatment, churned, "control", ARMS, alpha, correction, SHARES)
    assert list(got) == list(want)
    for name, value in want.items():
        assert got[name] == pytest.approx(value, **TOL), name
    counts = {k for k in got if k.startswith("n_")}
    assert all(isinstance(got[k], int) for k in counts)
    assert all(isinstance(v, float) for k, v in got.items() if k not in counts)


def test_newcombe_reference_agrees_with_statsmodels() -> None:
    # guards the hand formula above against the library the spec names
    for x1, n1, x2, n2 in [(30, 100, 20, 100), (0, 50, 3, 70), (119, 400, 51, 213)]:
        low, high = confint_proportions_2indep(x1, n1, x2, n2, method="newcomb", compare="diff")
        assert (low, high) == pytest.approx(newcombe(x1, n1, x2, n2, 0.05), abs=1e-12)


def test_tiny_table_closed_form() -> None:
    treatment, churned = tiny_table({"ctrl": (30, 100), "offer": (20, 100)})
    m = analyze_rct(treatment, churned, control="ctrl", arms=["offer"]).metrics()
    z = 0.1 / math.sqrt(0.25 * 0.75 * (2 / 100))
    z95 = stats.norm.ppf(0.975)
    # Wilson interval for 30/100 and 20/100, by hand
    w = {}
    for p in (0.3, 0.2):
        center = (p + z95**2 / 200) / (1 + z95**2 / 100)
        half = z95 / (1 + z95**2 / 100) * math.sqrt(p * (1 - p) / 100 + z95**2 / 40_000)
        w[p] = (center - half, center + half)
    low = 0.1 - math.sqrt((0.3 - w[0.3][0]) ** 2 + (w[0.2][1] - 0.2) ** 2)
    high = 0.1 + math.sqrt((w[0.3][1] - 0.3) ** 2 + (0.2 - w[0.2][0]) ** 2)
    assert m == pytest.approx(
        {
            "n_customers": 200,
            "n_control": 100,
            "n_offer": 100,
            "churn_rate_control": 0.3,
            "churn_rate_offer": 0.2,
            "ate_offer": 0.1,
            "ate_offer_ci_low": low,
            "ate_offer_ci_high": high,
            "ate_offer_pvalue": 2 * stats.norm.sf(z),
            "ate_offer_pvalue_adj": 2 * stats.norm.sf(z),  # one arm: nothing to adjust
            "churn_rate_observed": 0.25,
        },
        rel=1e-9,
        abs=1e-12,
    )
    assert z == pytest.approx(1.632993161855452, rel=1e-12)
    assert -0.0203 < low < -0.0202  # sanity on the hand numbers
    assert 0.2167 < high < 0.2168


def test_metric_names_follow_the_spec() -> None:
    arms = ["a", "b-2", "c.x"]
    treatment, churned = tiny_table(
        {"no_offer": (10, 50), "a": (5, 40), "b-2": (8, 30), "c.x": (2, 20)}
    )
    expected = {"n_customers", "n_control", "churn_rate_control", "churn_rate_observed"}
    for a in arms:
        expected |= {f"n_{a}", f"churn_rate_{a}", f"ate_{a}"}
        expected |= {f"ate_{a}_{s}" for s in ("ci_low", "ci_high", "pvalue", "pvalue_adj")}
    plain = analyze_rct(treatment, churned, control="no_offer", arms=arms)
    assert set(plain.metrics()) == expected
    assert plain.srm_pvalue is None
    assert not plain.srm_detected
    shares = {"no_offer": 0.35, "a": 0.3, "b-2": 0.2, "c.x": 0.15}
    with_alloc = analyze_rct(treatment, churned, control="no_offer", arms=arms, allocation=shares)
    assert set(with_alloc.metrics()) == expected | {"srm_pvalue"}


def test_srm_detected_and_warned_on_skewed_counts() -> None:
    treatment, churned = tiny_table({"control": (1500, 5000), "offer": (1200, 4000)})
    with pytest.warns(SrmWarning, match=r"Sample-ratio mismatch.*control=5,000"):
        result = analyze_rct(
            treatment,
            churned,
            control="control",
            arms=["offer"],
            allocation={"control": 0.5, "offer": 0.5},
        )
    assert result.srm_detected
    assert result.srm_pvalue == pytest.approx(stats.chi2.sf(2 * 500**2 / 4500, df=1), rel=1e-9)
    assert "mismatch detected" in result.to_markdown()


def test_srm_not_detected_on_balanced_counts() -> None:
    treatment, churned = tiny_table({"control": (1500, 5000), "offer": (1200, 4990)})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = analyze_rct(
            treatment,
            churned,
            control="control",
            arms=["offer"],
            allocation={"control": 0.5, "offer": 0.5},
        )
    assert not result.srm_detected
    assert result.srm_pvalue == pytest.approx(srm_pvalue([5000, 4990], [0.5, 0.5]), rel=1e-9)
    assert result.srm_pvalue > 0.9


def test_srm_threshold_is_respected() -> None:
    treatment, churned = tiny_table({"control": (150, 500), "offer": (120, 440)})
    p = srm_pvalue([500, 440], [0.5, 0.5])
    assert 0.01 < p < 0.1
    alloc = {"control": 0.5, "offer": 0.5}
    with pytest.warns(SrmWarning, match="srm_threshold 0.1"):
        flagged = analyze_rct(
            treatment,
            churned,
            control="control",
            arms=["offer"],
            allocation=alloc,
            srm_threshold=0.1,
        )
    assert flagged.srm_detected
    assert not analyze_rct(
        treatment, churned, control="control", arms=["offer"], allocation=alloc
    ).srm_detected


@pytest.mark.parametrize(
    "counts",
    [
        {"control": (0, 50), "a": (0, 40), "b": (3, 30)},  # control and a never churn
        {"control": (50, 50), "a": (40, 40), "b": (10, 30)},  # everybody churns
        {"control": (0, 1), "a": (1, 1), "b": (0, 1)},  # one customer per group
    ],
)
def test_degenerate_tables_do_not_crash(counts: dict[str, tuple[int, int]]) -> None:
    treatment, churned = tiny_table(counts)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning from 0/0 either
        result = analyze_rct(treatment, churned, control="control", arms=["a", "b"])
    metrics = result.metrics()
    assert all(math.isfinite(v) for v in metrics.values())
    assert all(0.0 <= metrics[f"ate_{a}_pvalue"] <= 1.0 for a in ("a", "b"))
    a = result.effects[0]
    if counts["control"][0] / counts["control"][1] == counts["a"][0] / counts["a"][1]:
        assert a.ate == 0.0
        assert a.pvalue == 1.0
        assert a.ci_low < 0.0 < a.ci_high


def test_inputs_as_series_lists_and_categoricals_agree() -> None:
    treatment, churned = random_table(5, n=3000)
    base = analyze_rct(treatment, churned, control="control", arms=ARMS).metrics()
    for t, y in [
        (pd.Series(treatment), pd.Series(churned)),
        (pd.Series(treatment, dtype="category"), churned.astype(bool)),
        (list(treatment), list(churned)),
        (treatment, churned.astype(float)),
    ]:
        assert analyze_rct(t, y, control="control", arms=ARMS).metrics() == base


def test_frame_and_markdown() -> None:
    treatment, churned = random_table(7, n=5000)
    result = analyze_rct(treatment, churned, control="control", arms=ARMS, allocation=SHARES)
    assert isinstance(result, RctResult)
    assert isinstance(result.control_stats, GroupStats)
    assert all(isinstance(e, ArmEffect) for e in result.effects)
    frame = result.to_frame()
    assert list(frame.columns) == [
        "group",
        "n",
        "churners",
        "churn_rate",
        "ate",
        "ci_low",
        "ci_high",
        "pvalue",
        "pvalue_adj",
    ]
    assert list(frame["group"]) == ["control", *ARMS]
    assert frame["n"].sum() == 5000
    assert frame.loc[0, ["ate", "pvalue_adj"]].isna().all()
    m = result.metrics()
    assert frame.set_index("group").loc["webinar", "ci_high"] == m["ate_webinar_ci_high"]
    md = result.to_markdown()
    lines = md.splitlines()
    assert lines[0].startswith("| group |")
    assert len({line.count("|") for line in lines[:6]}) == 1  # every table row has all cells
    assert all(arm in md for arm in ARMS)
    counts = frame.set_index("group")["n"]
    p = srm_pvalue([int(counts[g]) for g in SHARES], list(SHARES.values()))
    assert p >= 0.001  # the table was drawn with these shares
    assert not result.srm_detected
    assert f"SRM check: OK (chi-square p = {p:.4f})" in md
    assert "mismatch detected" not in md


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"treatment": ["control", "a", "zz"], "churned": [0, 1, 0]}, r"neither.*'zz'"),
        ({"treatment": ["control", "a"], "churned": [0, 1, 0]}, "equal length"),
        ({"treatment": ["control", "a"], "churned": [0, 2]}, "only 0 and 1"),
        ({"treatment": ["control", "a"], "churned": [0, np.nan]}, "only 0 and 1"),
        ({"treatment": ["control", "control"], "churned": [0, 1]}, r"no customers.*'a'"),
        ({"correction": "sidak"}, "correction must be one of"),
        ({"alpha": 1.5}, "alpha must be"),
        ({"arms": []}, "at least one offer arm"),
        ({"arms": ["a", "a"]}, "distinct"),
        ({"allocation": {"control": 0.5}}, r"allocation: no share for 'a'"),
        ({"allocation": {"control": 0.5, "a": 0.6}}, "sum to 1"),
    ],
)
def test_bad_input_raises_value_error(kwargs: dict, match: str) -> None:
    args = {"treatment": ["control", "a"], "churned": [0, 1], "control": "control", "arms": ["a"]}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        analyze_rct(**args)


def test_arm_named_control_is_rejected() -> None:
    with pytest.raises(ValueError, match="may not be named 'control'"):
        analyze_rct(["ctrl", "control"], [0, 1], control="ctrl", arms=["control"])
