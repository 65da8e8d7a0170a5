"""A seeded synthetic subscription customer base with a randomized retention-offer test.

The simulation gives what an analyst's data file would hold (features, revenue, the
randomly assigned group and the observed churn) together with the truth that real
data never has: every customer's churn probability under every group. Offers act
heterogeneously by kind, including customers an offer pushes to churn, so that RCT
readouts, uplift learners and policies can be checked against known answers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
from scipy.special import expit as _sigmoid

from .config import check_allocation, parse_period

DEFAULT_CONTROL = "control"
DEFAULT_ARMS: tuple[tuple[str, str], ...] = (
    ("discount_20", "discount"),
    ("free_upgrade", "free_upgrade"),
    ("webinar", "webinar"),
)
DEFAULT_ALLOCATION: dict[str, float] = {
    "control": 0.4,
    "discount_20": 0.2,
    "free_upgrade": 0.2,
    "webinar": 0.2,
}
ARM_KINDS: tuple[str, ...] = ("discount", "free_upgrade", "webinar", "other")

FEATURES: tuple[str, ...] = (
    "tenure_months", "plan", "seats", "contract", "usage_hours", "days_since_login",
    "support_tickets", "region", "payment_method", "nps", "auto_renew",
)  # fmt: skip

_PLANS = ("basic", "standard", "premium")
_CONTRACTS = ("monthly", "annual")
_REGIONS = ("north_america", "europe", "apac", "latam")
_PAYMENTS = ("credit_card", "paypal", "bank_transfer", "invoice")
# Intercept of the baseline churn logit, calibrated so control churn is about 0.30.
_BASE_INTERCEPT = -0.85


@dataclass(frozen=True)
class Simulation:
    """A simulated customer base and its hidden truth.

    Attributes:
        customers: What an analyst's data file would contain: ``customer_id``,
            the features, ``monthly_revenue``, the assigned ``arm`` and ``churned``.
        truth: Per customer ``customer_id``, ``monthly_revenue`` and the true churn
            probability ``p_churn_<group>`` under the control and under every arm.
    """

    customers: pd.DataFrame
    truth: pd.DataFrame


def _labels(names: Sequence[str], codes: np.ndarray) -> pd.arrays.ArrowStringArray:
    """String column ``names[codes]`` built in Arrow (much faster than from numpy strings)."""
    return pd.array(pa.array(list(names), pa.string()).take(pa.array(codes)), dtype="str")


def _ramp(x: np.ndarray, start: float, end: float) -> np.ndarray:
    """0 up to ``start``, rising linearly to 1 at ``end``: a threshold with no tails."""
    return np.clip((x - start) / (end - start), 0.0, 1.0)


def _check_groups(arms: Sequence[tuple[str, str]] | None, control: str) -> list[tuple[str, str]]:
    """Validated ``(name, kind)`` pairs of the arms (the control excluded)."""
    if not isinstance(control, str) or not control.strip():
        raise ValueError(f"control must be a non-empty group name, got {control!r}")
    if arms is None:
        return list(DEFAULT_ARMS)
    if isinstance(arms, (str, Mapping)) or not isinstance(arms, Sequence) or not arms:
        raise ValueError(f"arms must be a non-empty sequence of (name, kind) pairs, got {arms!r}")
    pairs: list[tuple[str, str]] = []
    seen = {control}
    for arm in arms:
        if isinstance(arm, str) or not isinstance(arm, Sequence) or len(arm) != 2:
            raise ValueError(f"arms must be (name, kind) pairs, got {arm!r}")
        name, kind = arm
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"arms: arm name must be a non-empty string, got {name!r}")
        if name in seen:
            what = "the control's name" if name == control else "used twice"
            raise ValueError(f"arms: group name {name!r} is {what}")
        if kind not in ARM_KINDS:
            raise ValueError(
                f"arms: unknown kind {kind!r} for arm {name!r}; expected one of {ARM_KINDS}"
            )
        seen.add(name)
        pairs.append((name, kind))
    return pairs


def _check_allocation(allocation: Mapping[str, float] | None, groups: list[str]) -> np.ndarray:
    """Shares per group in ``groups`` order; default 40 % control, the rest split equally."""
    if allocation is None:
        if groups == list(DEFAULT_ALLOCATION):  # bit-identical to passing it explicitly
            allocation = DEFAULT_ALLOCATION
        else:
            rest = 0.6 / (len(groups) - 1)
            allocation = {g: 0.4 if i == 0 else rest for i, g in enumerate(groups)}
    check_allocation(allocation, groups)
    shares = np.array([float(allocation[g]) for g in groups])
    return shares / shares.sum()


def _features(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Draw correlated customer features, revenue and hidden traits."""
    tenure = np.clip(np.floor(rng.gamma(1.1, 20.0, n)) + 1, 1, 120).astype(np.int64)
    plan = (rng.random(n)[:, None] > np.array([0.5, 0.85])).sum(axis=1)  # 0/1/2
    premium, standard = plan == 2, plan == 1
    log_seats = np.select(
        [premium, standard], [rng.normal(2.0, 0.9, n), rng.normal(0.9, 0.8, n)],
        rng.normal(0.0, 0.5, n),
    )  # fmt: skip
    seats = np.clip(np.round(np.exp(log_seats)), 1, 2000).astype(np.int64)
    ls = np.log(seats)
    annual = rng.random(n) < _sigmoid(-1.1 + 0.9 * premium + 0.4 * standard + 0.35 * ls
                                       + 0.012 * tenure)  # fmt: skip
    # Engagement: a hidden trait behind usage, logins, NPS and whether NPS is answered.
    engagement = 0.3 * (np.log(tenure) - 2.5) + 0.3 * annual + rng.normal(0.0, 1.0, n)
    idle = np.minimum(np.floor(rng.exponential(np.exp(1.4 - 1.1 * engagement))), 365)
    usage = np.exp(1.5 + 0.55 * engagement + 0.25 * ls + 0.2 * premium
                   + rng.normal(0.0, 0.45, n)) * np.exp(-idle / 25.0)  # fmt: skip
    usage = np.round(usage, 1)
    tickets = rng.poisson(np.exp(-1.0 + 0.25 * ls + 0.6 * (tenure <= 3)
                                 + rng.normal(0.0, 0.6, n)))  # fmt: skip
    satisfaction = 0.5 * engagement - 0.35 * (np.minimum(tickets, 6) - 1) + rng.normal(0, 1, n)
    nps = np.clip(np.round(7.0 + 1.6 * satisfaction), 0, 10)
    nps[rng.random(n) < _sigmoid(-0.75 - 0.9 * engagement)] = np.nan
    region = (rng.random(n)[:, None] > np.array([0.4, 0.75, 0.9])).sum(axis=1)
    pay = (rng.random(n)[:, None] > np.array([0.65, 0.83])).sum(axis=1)  # card/paypal/bank
    pay[annual & (seats >= 10) & (rng.random(n) < 0.7)] = 3  # large annual accounts: invoice
    auto_renew = rng.random(n) < _sigmoid(0.6 + 1.0 * annual + 0.6 * (pay == 0))
    price = np.array([12.0, 29.0, 65.0])[plan]
    revenue = price * seats**0.92 * np.where(annual, 0.85, 1.0) * np.exp(rng.normal(0, 0.15, n))
    return {
        "tenure_months": tenure, "plan": plan, "seats": seats, "annual": annual,
        "usage_hours": usage, "days_since_login": idle.astype(np.int64),
        "support_tickets": tickets.astype(np.int64), "region": region, "payment": pay,
        "nps": nps, "auto_renew": auto_renew, "monthly_revenue": np.round(revenue, 2),
    }  # fmt: skip


def _baseline_logit(
    f: dict[str, np.ndarray], rng: np.random.Generator, season: float
) -> np.ndarray:
    """Churn logit with no offer: smooth, with thresholds, plus unobserved noise."""
    nps = f["nps"]
    nps_term = np.where(np.isnan(nps), 0.3, 0.13 * (6.5 - np.nan_to_num(nps)))
    return (
        _BASE_INTERCEPT + season
        + 0.9 * ~f["annual"]
        - 0.4 * np.log1p(f["usage_hours"])
        + 1.0 * _sigmoid((f["days_since_login"] - 21.0) / 5.0)
        + 0.22 * np.minimum(f["support_tickets"], 6)
        + nps_term
        + 0.9 * np.exp(-f["tenure_months"] / 8.0)
        - 0.5 * f["auto_renew"]
        - 0.12 * np.log(f["seats"])
        + np.array([0.0, -0.1, 0.1, 0.25])[f["region"]]
        + 0.15 * (f["payment"] == 1)
        + rng.normal(0.0, 0.35, len(nps))
    )  # fmt: skip


def _effect(kind: str, f: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Change of the churn logit an offer of ``kind`` causes (negative = keeps the customer)."""
    usage, idle = f["usage_hours"], f["days_since_login"]
    tenure, plan = f["tenure_months"], f["plan"]
    dormant = _ramp(idle, 14.0, 45.0)
    if kind == "discount":
        # Price sensitive: monthly contracts, low-to-mid usage, lower plans.
        sensitivity = (np.where(f["annual"], 0.2, 1.0) * np.array([1.0, 0.8, 0.15])[plan]
                       * _sigmoid((15.0 - usage) / 4.0))  # fmt: skip
        effect = -0.4 * sensitivity * (1.0 + 0.4 * (f["support_tickets"] >= 2))
    elif kind == "free_upgrade":
        # Engaged users on a lower plan gain; very light users find it complex.
        lower = plan < 2
        effect = lower * (-0.65 * _sigmoid((usage - 8.0) / 2.5) * (1.0 + 0.1 * np.log(f["seats"]))
                          + 0.5 * (1.0 - _ramp(usage, 0.5, 2.5)))  # fmt: skip
    elif kind == "webinar":
        # Onboarding helps new light users; dormant customers are reminded they pay.
        effect = (-0.7 * np.exp(-tenure / 6.0) * _sigmoid((8.0 - usage) / 2.0)
                  + 1.1 * dormant)  # fmt: skip
    else:
        # Generic contact: a small help for customers with open issues, irks the dormant.
        effect = -0.3 * _sigmoid(f["support_tickets"] - 2.5) + 0.25 * dormant - 0.05
    # Unobserved individual responsiveness: scales the effect, never flips its sign.
    return effect * np.exp(rng.normal(0.0, 0.25, len(usage)))


def simulate_customers(
    n_customers: int,
    seed: int,
    *,
    period: str | None = None,
    arms: Sequence[tuple[str, str]] | None = None,
    allocation: Mapping[str, float] | None = None,
    control: str = DEFAULT_CONTROL,
) -> Simulation:
    """Simulate a subscription base that ran a randomized retention-offer test.

    Args:
        n_customers: Number of customers (>= 1).
        seed: Non-negative integer seed; the same inputs give identical frames.
        period: Optional ``YYYY-MM``; mixed into the seed (another period gives other
            customers) and shifts the baseline churn slightly by season.
        arms: ``(name, kind)`` pairs, kind in discount|free_upgrade|webinar|other;
            default :data:`DEFAULT_ARMS`.
        allocation: Share of customers per group including the control; default
            40 % control and the rest split equally (:data:`DEFAULT_ALLOCATION` for
            the default arms).
        control: Name of the no-offer group.

    Returns:
        The customers as an analyst would see them, and the per-group truth.

    Raises:
        ValueError: When an argument is invalid; the message names it.
    """
    if isinstance(n_customers, bool) or not isinstance(n_customers, (int, np.integer)):
        raise ValueError(f"n_customers must be an integer, got {n_customers!r}")
    if n_customers < 1:
        raise ValueError(f"n_customers must be at least 1, got {n_customers}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    entropy = [int(seed)]
    season = 0.0
    if period is not None:
        year, month = parse_period(period)
        entropy.append(year * 12 + month)
        season = 0.12 * math.cos(2.0 * math.pi * (month - 1) / 12.0)  # peak in January
    arm_pairs = _check_groups(arms, control)
    groups = [control] + [name for name, _ in arm_pairs]
    shares = _check_allocation(allocation, groups)
    n = int(n_customers)
    rng = np.random.default_rng(np.random.SeedSequence(entropy))

    f = _features(rng, n)
    base = _baseline_logit(f, rng, season)
    probs = np.empty((n, len(groups)))
    probs[:, 0] = _sigmoid(base)
    for j, (_, kind) in enumerate(arm_pairs, start=1):
        probs[:, j] = _sigmoid(base + _effect(kind, f, rng))
    probs = np.clip(probs, 1e-6, 1.0 - 1e-6)
    assigned = rng.choice(len(groups), size=n, p=shares)
    churned = (rng.random(n) < probs[np.arange(n), assigned]).astype(np.int64)

    width = max(7, len(str(n)))
    ids = pd.Series(np.arange(1, n + 1)).astype(str).str.zfill(width).radd("C")
    customers = pd.DataFrame(
        {
            "customer_id": ids,
            "tenure_months": f["tenure_months"],
            "plan": _labels(_PLANS, f["plan"]),
            "seats": f["seats"],
            "contract": _labels(_CONTRACTS, f["annual"].astype(np.int64)),
            "usage_hours": f["usage_hours"],
            "days_since_login": f["days_since_login"],
            "support_tickets": f["support_tickets"],
            "region": _labels(_REGIONS, f["region"]),
            "payment_method": _labels(_PAYMENTS, f["payment"]),
            "nps": f["nps"],
            "auto_renew": f["auto_renew"],
            "monthly_revenue": f["monthly_revenue"],
            "arm": _labels(groups, assigned),
            "churned": churned,
        }
    )
    truth = pd.DataFrame({"customer_id": ids, "monthly_revenue": f["monthly_revenue"]})
    for j, group in enumerate(groups):
        truth[f"p_churn_{group}"] = probs[:, j]
    return Simulation(customers=customers, truth=truth)
