"""Simulated worlds for the decision-quality suite, each with an exact truth and ceiling.

Every world is a randomized retention-offer test on synthetic customers. Its churn
logit under each group is a known function of

- the observed features (what the customer table holds), and
- hidden traits: standard normal draws independent of the observed features (baseline
  churn propensity beyond the features, each offer's individual responsiveness), and in
  one world the true value of a feature that is missing for some customers.

Because the hidden traits' distribution given the observed features is known, the
expected churn probability given only the observed features, E[p | X], is an integral
the suite computes by Gauss-Hermite quadrature (a product rule over the traits a group's
logit uses; per-customer nodes and weights for a missing feature's posterior). Deciding
with E[p | X] is the best any model of the observed features can do: the ceiling.

The worlds are built here rather than with ``uplift.simulate`` so that they stay fixed
while the package changes, and because the simulator's truth is not exposed as a
function of the observed features. ``today`` reproduces the simulator's formulas.

Each world fixes its own structure (per-level effects of a categorical, for instance,
come from a constant seed); the suite's seed only draws customers. A world's
``config`` is a toolkit config mapping with the data, arms and allocation only.
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
from scipy.special import expit as sigmoid

CONTROL = "control"
VALUE = "monthly_revenue"
SQRT2 = np.sqrt(2.0)
# Quadrature nodes per hidden standard normal, by how many a group's logit uses.
NODES = {1: 16, 2: 10, 3: 6}
MISSING_NODES = 20


def ramp(x: np.ndarray, start: float, end: float) -> np.ndarray:
    """0 up to ``start``, rising linearly to 1 at ``end``."""
    return np.clip((np.asarray(x, dtype=float) - start) / (end - start), 0.0, 1.0)


def labels(names: tuple[str, ...] | list[str], codes: np.ndarray) -> pd.Series:
    """Text column ``names[codes]``."""
    return pd.Series(np.asarray(names, dtype=object)[codes]).astype("str")


def pick(rng: np.random.Generator, n: int, probs: list[float] | np.ndarray) -> np.ndarray:
    """Category codes drawn with ``probs``."""
    cum = np.cumsum(probs)[:-1] / np.sum(probs)
    return (rng.random(n)[:, None] > cum[None, :]).sum(axis=1)


def tenure_months(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.clip(np.floor(rng.gamma(1.1, 20.0, n)) + 1, 1, 120).astype(np.int64)


def gauss_hermite(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights integrating against a standard normal."""
    x, w = np.polynomial.hermite.hermgauss(k)
    return SQRT2 * x, w / np.sqrt(np.pi)


@dataclass(frozen=True)
class Sample:
    """Customers drawn from a world and their truth.

    Attributes:
        customers: The analyst's table: ``customer_id``, features, ``monthly_revenue``,
            the randomly assigned ``arm`` and the observed ``churned``.
        p_true: (n, groups) true churn probability under the control and every arm.
        state: The world's arrays behind the features (for the ceiling).
    """

    customers: pd.DataFrame
    p_true: np.ndarray
    state: dict[str, np.ndarray]


class World:
    """A world: features, arms, allocation, and churn logits per group."""

    name: ClassVar[str]
    title: ClassVar[str]
    hard: ClassVar[str]
    arms: ClassVar[list[dict]]
    allocation: ClassVar[dict[str, float]]
    categorical: ClassVar[list[str]] = []

    @property
    def groups(self) -> list[str]:
        return [CONTROL] + [arm["name"] for arm in self.arms]

    @property
    def key(self) -> int:
        return zlib.crc32(self.name.encode())

    def config(self, path: Path) -> dict:
        """Toolkit config with this world's data, arms and allocation only."""
        data = {"path": str(path), "value": VALUE}
        if self.categorical:
            data["categorical"] = list(self.categorical)
        return {"name": f"decision-{self.name}", "period": "2026-09", "data": data,
                "arms": [dict(arm) for arm in self.arms], "allocation": dict(self.allocation)}

    # ---- what a world defines
    def draw(self, rng: np.random.Generator, n: int) -> tuple[pd.DataFrame, dict]:
        """Observed features (with ``monthly_revenue``) and the arrays behind them."""
        raise NotImplementedError

    def hidden(self, g: int) -> tuple[str, ...]:
        """Names of the hidden traits the logit of group ``g`` uses."""
        raise NotImplementedError

    def logit(self, g: int, s: dict, z: Mapping[str, np.ndarray | float]) -> np.ndarray:
        """Churn logit of group ``g`` (0 = control) given the state and hidden traits."""
        raise NotImplementedError

    def special(self, name: str, s: dict) -> tuple[np.ndarray, np.ndarray] | None:
        """Per-customer (values, weights), each (n, K), for a trait that is not N(0, 1)."""
        return None

    def realized(self, name: str, s: dict, rng: np.random.Generator, n: int) -> np.ndarray:
        """The customers' actual value of a hidden trait."""
        return rng.standard_normal(n)

    # ---- generic machinery
    def sample(self, n: int, seed: int, stream: int) -> Sample:
        """``n`` customers for ``seed``; ``stream`` 0 trains, 1 is the fresh base."""
        rng = np.random.default_rng(np.random.SeedSequence([self.key, seed, stream, n]))
        frame, state = self.draw(rng, n)
        names = sorted({h for g in range(len(self.groups)) for h in self.hidden(g)})
        z = {h: self.realized(h, state, rng, n) for h in names}
        p = np.column_stack([sigmoid(self.logit(g, state, z)) for g in range(len(self.groups))])
        p = np.clip(p, 1e-6, 1 - 1e-6)
        shares = np.array([self.allocation[g] for g in self.groups], dtype=float)
        assigned = pick(rng, n, shares)
        churned = (rng.random(n) < p[np.arange(n), assigned]).astype(np.int64)
        width = max(7, len(str(n)))
        ids = pd.Series(np.arange(1, n + 1)).astype(str).str.zfill(width).radd("C")
        customers = pd.concat([ids.rename("customer_id"), frame.reset_index(drop=True)], axis=1)
        customers["arm"] = labels(self.groups, assigned)
        customers["churned"] = churned
        return Sample(customers=customers, p_true=p, state=state)

    def ceiling(self, sample: Sample) -> np.ndarray:
        """E[p | observed features] per customer and group, by quadrature."""
        s = sample.state
        out = []
        for g in range(len(self.groups)):
            dims = []
            k = NODES.get(len(self.hidden(g)), 6)
            for h in self.hidden(g):
                special = self.special(h, s)
                dims.append((h, *(special if special is not None else gauss_hermite(k))))
            acc = 0.0
            for combo in itertools.product(*[range(np.shape(v)[-1]) for _, v, _ in dims]):
                z, weight = {}, 1.0
                for (h, values, weights), i in zip(dims, combo, strict=True):
                    z[h] = values[..., i]
                    weight = weight * weights[..., i]
                acc = acc + weight * sigmoid(self.logit(g, s, z))
            out.append(np.broadcast_to(acc, (len(sample.p_true),)))
        return np.clip(np.column_stack(out), 1e-6, 1 - 1e-6)


# =========================================================================== worlds


class Today(World):
    name = "today"
    title = "today's simulator: 3 offers, per-kind effects, offers that push some to churn"
    hard = ("effects hinge on thresholds in usage, tenure and idle days; the upgrade and the "
            "webinar harm light and dormant users; NPS missing for the disengaged")
    arms = [
        {"name": "discount_20", "kind": "discount", "cost": {"revenue_share": 0.2, "months": 3}},
        {"name": "free_upgrade", "kind": "free_upgrade", "cost": {"fixed": 6.0},
         "eligible": {"plan": {"not_in": ["premium"]}}},
        {"name": "webinar", "kind": "webinar", "cost": {"fixed": 1.5}},
    ]
    allocation = {"control": 0.4, "discount_20": 0.2, "free_upgrade": 0.2, "webinar": 0.2}
    categorical = ["plan", "contract", "region", "payment_method"]

    def draw(self, rng, n):
        # The simulator's features; engagement shapes them but never enters the outcome.
        tenure = tenure_months(rng, n)
        plan = pick(rng, n, [0.5, 0.35, 0.15])
        premium, standard = plan == 2, plan == 1
        log_seats = np.select([premium, standard], [rng.normal(2.0, 0.9, n),
                                                    rng.normal(0.9, 0.8, n)],
                              rng.normal(0.0, 0.5, n))
        seats = np.clip(np.round(np.exp(log_seats)), 1, 2000).astype(np.int64)
        ls = np.log(seats)
        annual = rng.random(n) < sigmoid(-1.1 + 0.9 * premium + 0.4 * standard + 0.35 * ls
                                         + 0.012 * tenure)
        engagement = 0.3 * (np.log(tenure) - 2.5) + 0.3 * annual + rng.normal(0.0, 1.0, n)
        idle = np.minimum(np.floor(rng.exponential(np.exp(1.4 - 1.1 * engagement))), 365)
        usage = np.round(np.exp(1.5 + 0.55 * engagement + 0.25 * ls + 0.2 * premium
                                + rng.normal(0.0, 0.45, n)) * np.exp(-idle / 25.0), 1)
        tickets = rng.poisson(np.exp(-1.0 + 0.25 * ls + 0.6 * (tenure <= 3)
                                     + rng.normal(0.0, 0.6, n)))
        satisfaction = (0.5 * engagement - 0.35 * (np.minimum(tickets, 6) - 1)
                        + rng.normal(0, 1, n))
        nps = np.clip(np.round(7.0 + 1.6 * satisfaction), 0, 10)
        nps[rng.random(n) < sigmoid(-0.75 - 0.9 * engagement)] = np.nan
        region = pick(rng, n, [0.4, 0.35, 0.15, 0.1])
        pay = pick(rng, n, [0.65, 0.18, 0.17])
        pay[annual & (seats >= 10) & (rng.random(n) < 0.7)] = 3
        auto_renew = rng.random(n) < sigmoid(0.6 + 1.0 * annual + 0.6 * (pay == 0))
        price = np.array([12.0, 29.0, 65.0])[plan]
        revenue = np.round(price * seats**0.92 * np.where(annual, 0.85, 1.0)
                           * np.exp(rng.normal(0, 0.15, n)), 2)
        frame = pd.DataFrame({
            "tenure_months": tenure, "plan": labels(("basic", "standard", "premium"), plan),
            "seats": seats, "contract": labels(("monthly", "annual"), annual.astype(int)),
            "usage_hours": usage, "days_since_login": idle.astype(np.int64),
            "support_tickets": tickets.astype(np.int64),
            "region": labels(("north_america", "europe", "apac", "latam"), region),
            "payment_method": labels(("credit_card", "paypal", "bank_transfer", "invoice"), pay),
            "nps": nps, "auto_renew": auto_renew, VALUE: revenue,
        })
        nps_term = np.where(np.isnan(nps), 0.3, 0.13 * (6.5 - np.nan_to_num(nps)))
        base = (-0.85 + 0.9 * ~annual - 0.4 * np.log1p(usage)
                + 1.0 * sigmoid((idle - 21.0) / 5.0) + 0.22 * np.minimum(tickets, 6) + nps_term
                + 0.9 * np.exp(-tenure / 8.0) - 0.5 * auto_renew - 0.12 * ls
                + np.array([0.0, -0.1, 0.1, 0.25])[region] + 0.15 * (pay == 1))
        dormant = ramp(idle, 14.0, 45.0)
        sens = (np.where(annual, 0.2, 1.0) * np.array([1.0, 0.8, 0.15])[plan]
                * sigmoid((15.0 - usage) / 4.0))
        lower = plan < 2
        effects = [
            -0.4 * sens * (1.0 + 0.4 * (tickets >= 2)),
            lower * (-0.65 * sigmoid((usage - 8.0) / 2.5) * (1.0 + 0.1 * ls)
                     + 0.5 * (1.0 - ramp(usage, 0.5, 2.5))),
            -0.7 * np.exp(-tenure / 6.0) * sigmoid((8.0 - usage) / 2.0) + 1.1 * dormant,
        ]
        return frame, {"base": base, "effects": effects}

    def hidden(self, g):
        return ("noise",) if g == 0 else ("noise", f"resp{g}")

    def logit(self, g, s, z):
        base = s["base"] + 0.35 * z["noise"]
        if g == 0:
            return base
        return base + s["effects"][g - 1] * np.exp(0.25 * z[f"resp{g}"])


class Whales(World):
    name = "whales"
    title = "heavy-tailed revenue: 2 % of accounts carry about half the value; effects by size"
    hard = ("the value sits in a few hundred large accounts whose response to an expensive "
            "account review hinges on usage decline and a hidden situation; discounts cost "
            "a share of revenue, so they pay only on small price-sensitive accounts")
    arms = [
        {"name": "discount_15", "kind": "discount", "cost": {"revenue_share": 0.15, "months": 6}},
        {"name": "account_review", "kind": "other", "cost": {"fixed": 150.0},
         "eligible": {"seats": {"min": 10}}},
        {"name": "success_webinar", "kind": "webinar", "cost": {"fixed": 2.0}},
    ]
    allocation = {"control": 0.4, "discount_15": 0.2, "account_review": 0.2,
                  "success_webinar": 0.2}
    categorical = ["plan", "contract", "region"]

    def draw(self, rng, n):
        tenure = tenure_months(rng, n)
        big = rng.random(n) < 0.02
        seats = np.clip(np.round(np.exp(np.where(big, rng.normal(np.log(50), 0.8, n),
                                                 rng.normal(0.7, 0.8, n)))), 1, 5000)
        seats = seats.astype(np.int64)
        small_plan = pick(rng, n, [0.5, 0.35, 0.15])
        plan = np.where(big, np.where(rng.random(n) < 0.85, 3, 2), small_plan)
        ls = np.log(seats)
        annual = rng.random(n) < sigmoid(-1.0 + 0.5 * ls + 0.01 * tenure)
        usage = np.round(np.exp(rng.normal(1.6 + 0.15 * plan, 0.6, n)), 1)  # hours/seat/week
        trend = np.round(rng.normal(0.0, 0.15, n), 3)  # usage change over the last quarter
        tickets = rng.poisson(np.exp(-1.2 + 0.3 * ls))
        region = pick(rng, n, [0.45, 0.3, 0.15, 0.1])
        nps = np.clip(np.round(7.0 + 2.0 * rng.normal(size=n) - 2.0 * (trend < -0.15)), 0, 10)
        nps[rng.random(n) < 0.3] = np.nan
        price = np.array([8.0, 15.0, 25.0, 45.0])[plan]
        revenue = np.round(price * seats**0.9 * np.exp(rng.normal(0, 0.25, n)), 2)
        frame = pd.DataFrame({
            "tenure_months": tenure,
            "plan": labels(("starter", "team", "business", "enterprise"), plan),
            "seats": seats, "contract": labels(("monthly", "annual"), annual.astype(int)),
            "usage_per_seat": usage, "usage_trend": trend,
            "support_tickets": tickets.astype(np.int64),
            "region": labels(("north_america", "europe", "apac", "latam"), region),
            "nps": nps, VALUE: revenue,
        })
        nps_term = np.where(np.isnan(nps), 0.2, 0.12 * (6.5 - np.nan_to_num(nps)))
        base = (-0.9 + 0.8 * ~annual - 0.35 * np.log1p(usage) - 3.0 * trend
                + 0.18 * np.minimum(tickets, 6) - 0.15 * ls + 0.7 * np.exp(-tenure / 8.0)
                + nps_term)
        sens = ~annual * (plan <= 1) * sigmoid((8.0 - usage) / 3.0)
        decline = ramp(-trend, 0.0, 0.3)
        size = sigmoid((ls - np.log(40.0)) / 0.6)
        return frame, {
            "base": base,
            "discount": -0.8 * sens - 0.1,
            "review_mean": -1.5 * decline * size + 0.3 * (1.0 - decline),
            "webinar": (-0.6 * np.exp(-tenure / 6.0) * sigmoid((4.0 - usage) / 1.5)
                        + 0.6 * ramp(-trend, 0.15, 0.4)),
        }

    def hidden(self, g):
        return ("noise",) if g == 0 else ("noise", f"resp{g}")

    def logit(self, g, s, z):
        base = s["base"] + 0.5 * z["noise"]
        if g == 1:
            return base + s["discount"] * np.exp(0.3 * z["resp1"])
        if g == 2:
            return base + s["review_mean"] + 0.5 * z["resp2"]
        if g == 3:
            return base + s["webinar"] * np.exp(0.3 * z["resp3"])
        return base


class SleepingDogs(World):
    name = "sleeping_dogs"
    title = "sleeping dogs: a save call rescues ~12 % with open complaints, harms the rest"
    hard = ("the call's rescued segment is an interaction of tickets and recent activity, "
            "auto-renewing and dormant customers are pushed out by any contact, and a hidden "
            "shift flips the call's sign near the segment's edge")
    arms = [
        {"name": "save_call", "kind": "other", "cost": {"fixed": 5.0}},
        {"name": "win_back_email", "kind": "other", "cost": {"fixed": 0.2}},
        {"name": "discount_10", "kind": "discount", "cost": {"revenue_share": 0.1, "months": 3}},
    ]
    allocation = {"control": 0.4, "save_call": 0.2, "win_back_email": 0.2, "discount_10": 0.2}
    categorical = ["plan", "contract", "region", "payment_method"]

    def draw(self, rng, n):
        tenure = tenure_months(rng, n)
        plan = pick(rng, n, [0.55, 0.3, 0.15])
        annual = rng.random(n) < sigmoid(-0.9 + 0.6 * plan + 0.01 * tenure)
        activity = rng.normal(0.0, 1.0, n)
        idle = np.minimum(np.floor(rng.exponential(np.exp(1.8 - 0.9 * activity))), 365)
        usage = np.round(np.exp(1.6 + 0.5 * activity + rng.normal(0, 0.5, n))
                         * np.exp(-idle / 30.0), 1)
        tickets = rng.poisson(np.exp(-0.4 + 0.5 * (tenure <= 6) + rng.normal(0, 0.5, n)))
        region = pick(rng, n, [0.4, 0.35, 0.15, 0.1])
        pay = pick(rng, n, [0.6, 0.25, 0.15])
        auto_renew = rng.random(n) < sigmoid(0.3 + 0.8 * annual + 0.5 * (pay == 0))
        revenue = np.round(np.array([15.0, 35.0, 70.0])[plan] * np.exp(rng.normal(0, 0.3, n)), 2)
        frame = pd.DataFrame({
            "tenure_months": tenure, "plan": labels(("basic", "standard", "premium"), plan),
            "contract": labels(("monthly", "annual"), annual.astype(int)),
            "usage_hours": usage, "days_since_login": idle.astype(np.int64),
            "support_tickets": tickets.astype(np.int64),
            "region": labels(("north_america", "europe", "apac", "latam"), region),
            "payment_method": labels(("credit_card", "paypal", "bank_transfer"), pay),
            "auto_renew": auto_renew, VALUE: revenue,
        })
        base = (-1.0 + 0.8 * ~annual - 0.35 * np.log1p(usage)
                + 0.9 * sigmoid((idle - 21.0) / 5.0) + 0.25 * np.minimum(tickets, 6)
                - 0.7 * auto_renew + 0.8 * np.exp(-tenure / 8.0)
                + np.array([0.0, -0.1, 0.1, 0.2])[region])
        rescue = ramp(tickets, 1.0, 3.0) * (1.0 - ramp(idle, 7.0, 21.0))
        dormant = ramp(idle, 14.0, 45.0)
        return frame, {
            "base": base,
            "call": -1.5 * rescue + (1.0 - rescue) * (0.35 + 0.45 * auto_renew + 0.4 * dormant),
            "email": (-0.3 * ramp(idle, 4.0, 15.0) * (1.0 - ramp(idle, 25.0, 50.0))
                      + 0.5 * auto_renew * ramp(idle, 25.0, 60.0)),
            "discount": -0.5 * ~annual * sigmoid((10.0 - usage) / 3.0) - 0.05,
        }

    def hidden(self, g):
        return ("noise",) if g == 0 else ("noise", f"resp{g}")

    def logit(self, g, s, z):
        base = s["base"] + 0.45 * z["noise"]
        if g == 1:
            return base + s["call"] + 0.5 * z["resp1"]
        if g == 2:
            return base + s["email"] * np.exp(0.3 * z["resp2"])
        if g == 3:
            return base + s["discount"] * np.exp(0.3 * z["resp3"])
        return base


class ManyCheap(World):
    name = "many_cheap"
    title = "six cheap offers with small effects on different segments, 22 % control"
    hard = ("each offer moves churn by a point or two in its own segment and slightly "
            "harms others; about 2,600 customers per offer at 20k; choosing among six "
            "near-equal small effects is mostly noise")
    arms = [
        {"name": "push_tips", "kind": "other", "cost": {"fixed": 0.05}},
        {"name": "email_digest", "kind": "other", "cost": {"fixed": 0.1}},
        {"name": "webinar", "kind": "webinar", "cost": {"fixed": 0.6}},
        {"name": "loyalty_badge", "kind": "other", "cost": {"fixed": 0.3}},
        {"name": "price_lock", "kind": "discount", "cost": {"revenue_share": 0.1, "months": 2}},
        {"name": "family_trial", "kind": "free_upgrade", "cost": {"fixed": 0.8},
         "eligible": {"plan": {"not_in": ["family"]}}},
    ]
    allocation = {"control": 0.22, **{arm["name"]: 0.13 for arm in arms}}
    categorical = ["plan", "device", "region", "payment_method"]

    def draw(self, rng, n):
        tenure = tenure_months(rng, n)
        plan = pick(rng, n, [0.5, 0.3, 0.2])
        device = pick(rng, n, [0.45, 0.4, 0.15])
        activity = rng.normal(0.0, 1.0, n)
        idle = np.minimum(np.floor(rng.exponential(np.exp(1.6 - 0.9 * activity))), 365)
        usage = np.round(np.exp(4.2 + 0.6 * activity + 0.2 * plan + rng.normal(0, 0.5, n))
                         * np.exp(-idle / 30.0))  # minutes per week
        nps = np.clip(np.round(7.0 + 2.0 * rng.normal(size=n) + 0.5 * activity), 0, 10)
        nps[rng.random(n) < 0.4] = np.nan
        region = pick(rng, n, [0.3, 0.25, 0.2, 0.15, 0.1])
        pay = pick(rng, n, [0.55, 0.2, 0.15, 0.1])
        revenue = np.round(np.array([9.99, 14.99, 19.99])[plan]
                           * np.where(rng.random(n) < 0.3, 0.8, 1.0), 2)
        frame = pd.DataFrame({
            "tenure_months": tenure, "plan": labels(("lite", "plus", "family"), plan),
            "device": labels(("ios", "android", "web"), device),
            "minutes_per_week": usage, "days_since_login": idle.astype(np.int64),
            "nps": nps, "region": labels(("us", "uk", "de", "fr", "br"), region),
            "payment_method": labels(("card", "paypal", "carrier_billing", "gift_card"), pay),
            VALUE: revenue,
        })
        nps_filled = np.nan_to_num(nps, nan=7.0)
        base = (-0.2 - 0.25 * np.log1p(usage)
                + 0.9 * sigmoid((idle - 14.0) / 4.0) + 0.8 * np.exp(-tenure / 6.0)
                + 0.1 * (6.5 - nps_filled) + 0.3 * (pay == 3) - 0.2 * (plan == 2))
        lapsing = ramp(idle, 3.0, 10.0) * (1.0 - ramp(idle, 20.0, 40.0))
        dormant = ramp(idle, 30.0, 60.0)
        return frame, {
            "base": base,
            "effects": [
                -0.3 * lapsing + 0.2 * dormant,
                -0.3 * (tenure <= 6) * sigmoid((60.0 - usage) / 20.0) + 0.08,
                -0.45 * np.exp(-tenure / 4.0) + 0.1 * (tenure > 12),
                -0.35 * ramp(tenure, 12.0, 36.0) * (nps_filled >= 8) + 0.15 * (nps_filled <= 4),
                -0.4 * ((pay == 2) | (plan == 2)) - 0.08 + 0.2 * (device == 2),
                -0.5 * (device == 0) * ramp(usage, 60.0, 250.0) + 0.25 * (usage < 30),
            ],
        }

    def hidden(self, g):
        return ("noise",) if g == 0 else ("noise", f"resp{g}")

    def logit(self, g, s, z):
        base = s["base"] + 0.45 * z["noise"]
        if g == 0:
            return base
        return base + s["effects"][g - 1] * np.exp(0.35 * z[f"resp{g}"])


class Industries(World):
    name = "industries"
    title = "a 30-level industry (Zipf frequencies) drives risk and which offer works"
    hard = ("risk, the industry pack's effect (strong help, mild help or harm) and price "
            "sensitivity are set per industry; the rarest industries have ~100 customers "
            "at 20k, and ordinal codes carry no order")
    arms = [
        {"name": "industry_pack", "kind": "other", "cost": {"fixed": 4.0}},
        {"name": "discount_20", "kind": "discount", "cost": {"revenue_share": 0.2, "months": 3}},
        {"name": "webinar", "kind": "webinar", "cost": {"fixed": 1.5}},
    ]
    allocation = {"control": 0.4, "industry_pack": 0.2, "discount_20": 0.2, "webinar": 0.2}
    categorical = ["industry", "contract", "region"]
    LEVELS = 30

    def __init__(self) -> None:
        rng = np.random.default_rng(20260901)  # the world's fixed structure
        k = self.LEVELS
        self.freq = 1.0 / (np.arange(k) + 2.0) ** 1.05
        self.risk = rng.normal(0.0, 0.7, k)
        self.pack = rng.permutation(np.repeat([-1.1, -0.25, 0.45], k // 3))
        self.sensitivity = rng.beta(2.0, 2.0, k)
        self.price = np.exp(rng.normal(0.0, 0.35, k))
        order = rng.permutation(k)  # names say nothing about frequency or effect
        self.names = tuple(f"ind_{order[i]:02d}" for i in range(k))

    def draw(self, rng, n):
        tenure = tenure_months(rng, n)
        industry = pick(rng, n, self.freq)
        seats = np.clip(np.round(np.exp(rng.normal(1.0, 0.9, n))), 1, 1000).astype(np.int64)
        annual = rng.random(n) < sigmoid(-0.8 + 0.3 * np.log(seats) + 0.01 * tenure)
        activity = rng.normal(0.0, 1.0, n)
        idle = np.minimum(np.floor(rng.exponential(np.exp(1.5 - 1.0 * activity))), 365)
        usage = np.round(np.exp(1.7 + 0.5 * activity + rng.normal(0, 0.45, n))
                         * np.exp(-idle / 25.0), 1)
        tickets = rng.poisson(np.exp(-1.0 + 0.2 * np.log(seats) + rng.normal(0, 0.5, n)))
        region = pick(rng, n, [0.4, 0.35, 0.15, 0.1])
        revenue = np.round(20.0 * self.price[industry] * seats**0.9
                           * np.exp(rng.normal(0, 0.2, n)), 2)
        frame = pd.DataFrame({
            "industry": labels(self.names, industry), "tenure_months": tenure, "seats": seats,
            "contract": labels(("monthly", "annual"), annual.astype(int)),
            "usage_hours": usage, "days_since_login": idle.astype(np.int64),
            "support_tickets": tickets.astype(np.int64),
            "region": labels(("north_america", "europe", "apac", "latam"), region),
            VALUE: revenue,
        })
        base = (-1.0 + self.risk[industry] + 0.7 * ~annual - 0.3 * np.log1p(usage)
                + 0.8 * sigmoid((idle - 21.0) / 5.0) + 0.2 * np.minimum(tickets, 6)
                + 0.7 * np.exp(-tenure / 8.0))
        return frame, {
            "base": base,
            "pack": self.pack[industry] * (0.6 + 0.4 * sigmoid((usage - 5.0) / 2.0)),
            "discount": (-1.0 * self.sensitivity[industry] * ~annual
                         * sigmoid((12.0 - usage) / 4.0)),
            "webinar": -0.6 * np.exp(-tenure / 6.0) + 0.8 * ramp(idle, 14.0, 45.0),
        }

    def hidden(self, g):
        return ("noise",) if g == 0 else ("noise", f"resp{g}")

    def logit(self, g, s, z):
        base = s["base"] + 0.4 * z["noise"]
        if g == 1:
            return base + s["pack"] + 0.3 * z["resp1"]
        if g == 2:
            return base + s["discount"] * np.exp(0.3 * z["resp2"])
        if g == 3:
            return base + s["webinar"] * np.exp(0.3 * z["resp3"])
        return base


class HalfControl(World):
    name = "half_control"
    title = "unequal allocation: half in control, a rare 5 % concierge arm that pays off big"
    hard = ("the concierge offer is the best choice for new multi-seat accounts but only "
            "5 % of the test got it (1,000 customers at 20k) and its effect carries a hidden "
            "shift; the 30 % discount is expensive; propensities differ by arm")
    arms = [
        {"name": "discount_30", "kind": "discount", "cost": {"revenue_share": 0.3, "months": 3}},
        {"name": "premium_support", "kind": "other", "cost": {"fixed": 8.0}},
        {"name": "concierge", "kind": "other", "cost": {"fixed": 25.0},
         "eligible": {"seats": {"min": 3}}},
    ]
    allocation = {"control": 0.5, "discount_30": 0.3, "premium_support": 0.15,
                  "concierge": 0.05}
    categorical = ["plan", "contract", "region", "payment_method"]

    def draw(self, rng, n):
        tenure = tenure_months(rng, n)
        plan = pick(rng, n, [0.5, 0.35, 0.15])
        seats = np.clip(np.round(np.exp(rng.normal(0.6 + 0.6 * plan, 0.9, n))), 1, 2000)
        seats = seats.astype(np.int64)
        ls = np.log(seats)
        annual = rng.random(n) < sigmoid(-1.0 + 0.5 * plan + 0.3 * ls + 0.01 * tenure)
        activity = rng.normal(0.0, 1.0, n)
        idle = np.minimum(np.floor(rng.exponential(np.exp(1.5 - 1.0 * activity))), 365)
        usage = np.round(np.exp(1.5 + 0.5 * activity + 0.2 * ls + rng.normal(0, 0.45, n))
                         * np.exp(-idle / 25.0), 1)
        tickets = rng.poisson(np.exp(-0.8 + 0.25 * ls + 0.5 * (tenure <= 3)
                                     + rng.normal(0, 0.5, n)))
        nps = np.clip(np.round(7.0 + 1.8 * rng.normal(size=n) - 0.4 * np.minimum(tickets, 5)),
                      0, 10)
        nps[rng.random(n) < sigmoid(-0.8 - 0.8 * activity)] = np.nan
        region = pick(rng, n, [0.4, 0.35, 0.15, 0.1])
        pay = pick(rng, n, [0.6, 0.2, 0.2])
        auto_renew = rng.random(n) < sigmoid(0.5 + 0.9 * annual)
        revenue = np.round(np.array([12.0, 29.0, 65.0])[plan] * seats**0.9
                           * np.exp(rng.normal(0, 0.2, n)), 2)
        frame = pd.DataFrame({
            "tenure_months": tenure, "plan": labels(("basic", "standard", "premium"), plan),
            "seats": seats, "contract": labels(("monthly", "annual"), annual.astype(int)),
            "usage_hours": usage, "days_since_login": idle.astype(np.int64),
            "support_tickets": tickets.astype(np.int64), "nps": nps,
            "region": labels(("north_america", "europe", "apac", "latam"), region),
            "payment_method": labels(("credit_card", "paypal", "invoice"), pay),
            "auto_renew": auto_renew, VALUE: revenue,
        })
        nps_term = np.where(np.isnan(nps), 0.3, 0.12 * (6.5 - np.nan_to_num(nps)))
        base = (-0.9 + 0.8 * ~annual - 0.35 * np.log1p(usage)
                + 0.9 * sigmoid((idle - 21.0) / 5.0) + 0.2 * np.minimum(tickets, 6)
                + nps_term + 0.8 * np.exp(-tenure / 8.0) - 0.4 * auto_renew - 0.1 * ls)
        sens = ~annual * (plan < 2) * sigmoid((10.0 - usage) / 3.0)
        return frame, {
            "base": base,
            "discount": -0.8 * sens,
            "support": -0.9 * ramp(tickets, 1.0, 4.0) + 0.15 * (tickets == 0),
            "concierge": (-1.4 * sigmoid((ls - np.log(8.0)) / 0.5) * np.exp(-tenure / 12.0)
                          + 0.4 * (usage < 2.0)),
        }

    def hidden(self, g):
        return ("noise",) if g == 0 else ("noise", f"resp{g}")

    def logit(self, g, s, z):
        base = s["base"] + 0.45 * z["noise"]
        if g == 1:
            return base + s["discount"] * np.exp(0.3 * z["resp1"])
        if g == 2:
            return base + s["support"] * np.exp(0.3 * z["resp2"])
        if g == 3:
            return base + s["concierge"] + 0.5 * z["resp3"]
        return base


class MissingUsage(World):
    name = "missing_usage"
    title = "the key feature (weekly active minutes) missing for 40 %, mostly for light users"
    hard = ("churn and which offer helps hinge on usage (the upgrade helps heavy users and "
            "harms light ones), and usage is missing not at random: light users and the "
            "legacy app send no telemetry, so a missing value is itself a signal")
    arms = [
        {"name": "free_upgrade", "kind": "free_upgrade", "cost": {"fixed": 6.0},
         "eligible": {"plan": {"not_in": ["premium"]}}},
        {"name": "webinar", "kind": "webinar", "cost": {"fixed": 1.5}},
        {"name": "discount_20", "kind": "discount", "cost": {"revenue_share": 0.2, "months": 3}},
    ]
    allocation = {"control": 0.4, "free_upgrade": 0.2, "webinar": 0.2, "discount_20": 0.2}
    categorical = ["plan", "contract", "app", "region"]
    SD = 0.8  # spread of log usage given the other features
    MISS = (-0.8, -1.3, 1.0)  # missingness logit: intercept, per SD of usage, legacy app

    def draw(self, rng, n):
        tenure = tenure_months(rng, n)
        plan = pick(rng, n, [0.5, 0.35, 0.15])
        seats = np.clip(np.round(np.exp(rng.normal(0.4 + 0.6 * plan, 0.8, n))), 1, 2000)
        seats = seats.astype(np.int64)
        annual = rng.random(n) < sigmoid(-1.0 + 0.5 * plan + 0.3 * np.log(seats))
        idle = np.minimum(np.floor(rng.exponential(6.0, n)), 365).astype(np.int64)
        tickets = rng.poisson(np.exp(-1.0 + 0.5 * (tenure <= 3) + rng.normal(0, 0.5, n)))
        app = pick(rng, n, [0.5, 0.3, 0.2])  # web, mobile, legacy
        region = pick(rng, n, [0.4, 0.35, 0.15, 0.1])
        auto_renew = rng.random(n) < sigmoid(0.5 + 0.9 * annual)
        # Log weekly active minutes, given the features above (its parents).
        mu = (3.0 + 0.25 * plan + 0.15 * np.log(tenure) - 0.03 * np.minimum(idle, 30)
              + 0.1 * np.log(seats))
        v = mu + self.SD * rng.standard_normal(n)
        a, b, c = self.MISS
        missing = rng.random(n) < sigmoid(a + b * (v - mu) / self.SD + c * (app == 2))
        minutes = np.where(missing, np.nan, np.exp(v))
        revenue = np.round(np.array([12.0, 29.0, 65.0])[plan] * seats**0.9
                           * np.exp(rng.normal(0, 0.2, n)), 2)
        frame = pd.DataFrame({
            "tenure_months": tenure, "plan": labels(("basic", "standard", "premium"), plan),
            "seats": seats, "contract": labels(("monthly", "annual"), annual.astype(int)),
            "weekly_active_minutes": minutes, "days_since_login": idle,
            "support_tickets": tickets.astype(np.int64),
            "app": labels(("web", "mobile", "legacy"), app),
            "region": labels(("north_america", "europe", "apac", "latam"), region),
            "auto_renew": auto_renew, VALUE: revenue,
        })
        base = (-0.9 + 0.7 * ~annual + 0.8 * sigmoid((idle - 21.0) / 5.0)
                + 0.2 * np.minimum(tickets, 6) - 0.5 * auto_renew + 0.7 * np.exp(-tenure / 8.0)
                - 0.1 * np.log(seats))
        return frame, {"base": base, "v": v, "mu": mu, "missing": missing, "annual": annual,
                       "tenure": tenure.astype(float), "idle": idle.astype(float),
                       "legacy": (app == 2), "lower": plan < 2}

    def hidden(self, g):
        return ("noise", "v") if g == 0 else ("noise", "v", f"resp{g}")

    def realized(self, name, s, rng, n):
        return s["v"] if name == "v" else rng.standard_normal(n)

    def ceiling(self, sample: Sample) -> np.ndarray:
        # Customers whose usage is observed need no integral over it: split them off.
        out = np.empty_like(sample.p_true)
        missing = sample.state["missing"]
        for rows in (missing, ~missing):
            if rows.any():
                part = Sample(customers=sample.customers.iloc[:0], p_true=sample.p_true[rows],
                              state={k: v[rows] for k, v in sample.state.items()})
                out[rows] = super().ceiling(part)
        return out

    def special(self, name, s):
        if name != "v":
            return None
        if not s["missing"].any():
            return s["v"][:, None], np.ones((len(s["v"]), 1))
        x, w = gauss_hermite(MISSING_NODES)
        mu, miss = s["mu"], s["missing"]
        nodes = mu[:, None] + self.SD * x[None, :]
        a, b, c = self.MISS
        like = sigmoid(a + b * x[None, :] + c * s["legacy"][:, None])  # P(missing | node)
        post = w[None, :] * like
        post = post / post.sum(axis=1, keepdims=True)
        values = np.where(miss[:, None], nodes, s["v"][:, None])
        weights = np.where(miss[:, None], post, w[None, :])
        return values, weights

    def logit(self, g, s, z):
        v = z["v"]
        base = s["base"] - 0.55 * (v - 3.3) + 0.4 * z["noise"]
        if g == 0:
            return base
        if g == 1:
            effect = s["lower"] * (-0.9 * sigmoid((v - 3.7) / 0.3)
                                   + 0.6 * sigmoid((2.7 - v) / 0.3))
        elif g == 2:
            effect = (-0.8 * sigmoid((2.9 - v) / 0.3) * np.exp(-s["tenure"] / 10.0)
                      + 0.5 * ramp(s["idle"], 14.0, 40.0))
        else:
            effect = -0.5 * ~s["annual"] * sigmoid((3.1 - v) / 0.4) - 0.05
        return base + effect * np.exp(0.25 * z[f"resp{g}"])


WORLDS: dict[str, World] = {w.name: w for w in (Today(), Whales(), SleepingDogs(), ManyCheap(),
                                                 Industries(), HalfControl(), MissingUsage())}
