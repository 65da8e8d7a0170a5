"""Off-policy evaluation: what a recommended offer policy will do, from randomized rows.

A randomized test gave each customer a group (the control or an offer) with known
probabilities ``e_g`` (the design's allocation). A model fitted on *other* rows
recommends a group ``pi_i`` for each held-out customer. On the held-out rows we
estimate the policy's churn rate, its churn reduction against offering nobody
anything, its cost and its net value per customer (SPEC sections 3 and 4).

Every quantity is linear in the per-row estimated potential churn outcomes
``psi_i(g)`` for ``g`` = the control and ``g`` = ``pi_i``::

    psi_i(g) = mu_i(g) + 1{T_i = g} / e_g * (Y_i - mu_i(g))
    churn_i  = psi_i(pi_i)                 no_offer_i = psi_i(control)
    cost_i   = fixed_a + revenue_share_a * months_a * value_i * (1 - psi_i(a)),  a = pi_i
    net_i    = (psi_i(control) - psi_i(a)) * value_i * H - cost_i   (both 0 when a = control)

Each estimate is the mean of its row values and its confidence interval the normal
approximation ``mean +- z * sd / sqrt(n)`` of those same values. Churn reduction
and net value are differences computed row by row, so the pairing (the same
customer under control and under the policy) is used; for customers the policy
leaves in the control both terms are identical and contribute exactly zero.

Four choices of the augmentation ``mu``:

* ``"doubly robust"`` (default when ``predicted_churn`` is given): ``mu`` is the
  model's P(churn | group). It should come from a model not fitted on these rows.
* ``"hajek"`` (default otherwise): ``mu_i(g)`` is the observed churn rate among rows
  the policy sends where it sends row i and the randomization put in g, i.e. the
  self-normalised (Hajek) IPW estimate within each of the policy's segments (an
  empty cell falls back to g's overall rate). Its interval treats these rates as
  known, which is negligible unless a cell has only a few rows.
* ``"ipw"``: ``mu = 0``, the plain Horvitz-Thompson estimator.
* ``"direct"``: ``psi_i(g) = mu_i(g)``, the model's prediction alone (no residual
  term). Not an estimate to report by itself (it is as biased as the model); it values
  the change between two policies on the rows where they differ
  (:meth:`PolicyRows.moved_to`).

Because the propensities are known (the test was randomized), the first three are
unbiased for a policy fixed independently of the evaluation rows (Hajek up to
O(1/n)); the augmentation only removes variance. The coverage benchmark
(``benchmarks/bench_offpolicy_coverage.py``: 100 simulated tests of 25,000
held-out rows, a LightGBM T-learner policy) finds all three at nominal 95 %
coverage for churn rate, churn reduction and net value; relative to plain IPW,
Hajek's intervals are 8-16 % narrower and DR's (with the T-learner's own
predictions) 15-20 % narrower. Hajek is therefore the default without
predictions: it needs no model, and its churn estimates do not even depend on
the exact propensities (only its intervals and money terms do).

Without ``value`` (no revenue column) nothing in money can be estimated: the net
value is NaN, and so is the cost when any customer is sent to an arm with a
revenue share (fixed costs need no revenue).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy.stats import norm

from .formatting import Paragraph, Table, interval, money, pct, pp, render_markdown

if TYPE_CHECKING:
    from .config import ArmConfig

__all__ = ["ESTIMATORS", "Estimate", "PolicyEstimate", "PolicyRows", "evaluate_policy",
           "gains_over_chosen", "policy_rows"]

ESTIMATORS: tuple[str, ...] = ("auto", "doubly robust", "hajek", "ipw", "direct")


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its standard error and confidence interval."""

    value: float
    ci_low: float
    ci_high: float
    se: float


# (attribute, label, metric name) of each estimate, in display order.
_ROWS: tuple[tuple[str, str, str], ...] = (
    ("churn_rate", "churn rate", "policy_churn_rate"),
    ("churn_rate_no_offer", "churn rate with no offer", "policy_churn_rate_no_offer"),
    ("churn_reduction", "churn reduction", "policy_churn_reduction"),
    ("net_value_per_customer", "net value per customer", "policy_net_value_per_customer"),
    ("cost_per_customer", "cost per customer", "policy_cost_per_customer"),
)


# The recommended policy against the best one that needs no model, per objective.
VERSUS_SIMPLE = {"net_value": "policy_net_value_per_customer_vs_simple",
                 "churn_reduction": "policy_churn_reduction_vs_simple"}

_FORMATS = {"net_value_per_customer": money, "cost_per_customer": money, "churn_reduction": pp}


@dataclass(frozen=True)
class PolicyEstimate:
    """Off-policy estimates of a recommended policy on held-out randomized rows.

    Attributes:
        method: ``"doubly robust"``, ``"hajek"``, ``"ipw"`` or ``"direct"`` (see the
            module docs).
        n: Held-out customers used.
        alpha: The intervals are at level ``1 - alpha``.
        churn_rate: The policy's churn rate.
        churn_rate_no_offer: The churn rate with everyone in the control.
        churn_reduction: ``churn_rate_no_offer - churn_rate`` (positive = kept).
        net_value_per_customer: Value of the customers kept over the horizon minus
            the offers' cost, per held-out customer, relative to offering nothing.
        cost_per_customer: Offer cost per held-out customer.
        shares: Share of held-out customers the policy sends to each group.
        control: Name of the no-offer group.
    """

    method: str
    n: int
    alpha: float
    churn_rate: Estimate
    churn_rate_no_offer: Estimate
    churn_reduction: Estimate
    net_value_per_customer: Estimate
    cost_per_customer: Estimate
    shares: dict[str, float]
    control: str = "control"

    def metrics(self) -> dict[str, float]:
        """SPEC section 4 ``policy_*`` metrics plus a few extras.

        Returns:
            ``policy_churn_rate``, ``policy_churn_reduction`` with ``_ci_low`` and
            ``_ci_high``, ``policy_net_value_per_customer``, ``policy_cost_per_customer``
            and ``policy_share_<arm>`` per offer arm (SPEC names); extras:
            ``policy_n_customers``, ``_ci_low``/``_ci_high`` of the churn rate, net value
            and cost, and ``policy_churn_rate_no_offer`` with its interval. Values not
            estimable without revenue are NaN.
        """
        out: dict[str, float] = {}
        for attr, _, name in _ROWS:
            est: Estimate = getattr(self, attr)
            out[name] = float(est.value)
            out[f"{name}_ci_low"] = float(est.ci_low)
            out[f"{name}_ci_high"] = float(est.ci_high)
        for group, share in self.shares.items():
            if group != self.control:
                out[f"policy_share_{group}"] = float(share)
        out["policy_n_customers"] = float(self.n)
        return out

    def to_frame(self) -> pd.DataFrame:
        """One row per estimate: ``estimate``, ``value``, ``ci_low``, ``ci_high``, ``se``."""
        rows = [{"estimate": attr, **asdict(getattr(self, attr))} for attr, _, _ in _ROWS]
        return pd.DataFrame(rows, columns=["estimate", *(f.name for f in fields(Estimate))])

    def table(self, valued: bool = True) -> Table:
        """Each estimate with its confidence interval (no net value when not ``valued``).

        Without customer values (``valued`` false) the net value is only minus the cost.
        """
        level = f"{100 * (1 - self.alpha):g}%"
        rows = []
        for attr, label, _ in _ROWS:
            if attr == "net_value_per_customer" and not valued:
                continue
            est: Estimate = getattr(self, attr)
            fmt = _FORMATS.get(attr, pct)
            rows.append([label, fmt(est.value), interval(est.ci_low, est.ci_high, fmt)])
        return Table.build(["estimate", "value", f"{level} CI"], rows, numeric={1, 2},
                           title="The policy's held-out estimates")

    def paragraphs(self, valued: bool = True) -> list[Paragraph]:
        """Where the estimates come from and what they are relative to."""
        shares = ", ".join(f"{g} {pct(s)}" for g, s in self.shares.items())
        figures = "churn reduction and net value are" if valued else "churn reduction is"
        return [Paragraph(
            f"Policy sends: {shares}. Estimated on {self.n:,} held-out randomized customers "
            f"({self.method} estimator, known propensities); {figures} relative to giving "
            "nobody an offer.")]

    def to_markdown(self, valued: bool = True) -> str:
        """A Markdown table of the estimates, then the policy's shares and the method."""
        return render_markdown(self.table(valued), self.paragraphs(valued))


@dataclass(frozen=True)
class PolicyRows:
    """Each row's influence values of a policy's estimates (see the module docs).

    Kept per row so that policies can be compared on any subset of the rows, and rows
    of different policies combined (the estimate of a selection procedure whose
    choice differs between folds), with the same intervals as :func:`evaluate_policy`.

    Attributes:
        method: The estimator that produced them.
        alpha: Intervals are at level ``1 - alpha``.
        groups: The control first, then the arms.
        recommended: (n,) index into ``groups`` of each row's recommended group.
        churn: (n,) ``psi_i(pi_i)``, the row's churn under the policy.
        churn_no_offer: (n,) ``psi_i(control)``.
        cost: (n,) the row's offer cost.
        net: (n,) the row's net value relative to no offer.
    """

    method: str
    alpha: float
    groups: tuple[str, ...]
    recommended: np.ndarray
    churn: np.ndarray
    churn_no_offer: np.ndarray
    cost: np.ndarray
    net: np.ndarray

    def values(self, objective: str) -> np.ndarray:
        """Per row: net value (``net_value``) or churn reduction (``churn_reduction``)."""
        return self.net if objective == "net_value" else self.churn_no_offer - self.churn

    @staticmethod
    def pick(parts: Sequence[PolicyRows], which: np.ndarray) -> PolicyRows:
        """Row i from ``parts[which[i]]``: the policies' rows over the same customers."""
        which = np.asarray(which, dtype=np.intp)
        rows = np.arange(which.size)

        def take(attr: str) -> np.ndarray:
            return np.stack([getattr(p, attr) for p in parts])[which, rows]

        return replace(parts[0], recommended=take("recommended"), churn=take("churn"),
                       churn_no_offer=take("churn_no_offer"), cost=take("cost"),
                       net=take("net"))

    def moved_to(self, new: PolicyRows, old: PolicyRows) -> PolicyRows:
        """These rows, moved from policy ``old`` to policy ``new`` by their direct values.

        ``new`` and ``old`` are the two policies' ``"direct"`` rows over the same
        customers: each row keeps its own value plus what the model says the change of
        offer is worth, ``mu_i(new_i) - mu_i(old_i)``, which is zero where the policies
        agree. So where ``old`` is the policy these rows were valued under, a row that
        ``new`` treats alike keeps its doubly robust value, and the others are valued
        by the model: the estimate of ``new`` for a policy that was fitted on these
        rows, whose own residual terms would be optimistic.
        """
        return replace(self, recommended=new.recommended,
                       churn=self.churn + new.churn - old.churn,
                       churn_no_offer=self.churn_no_offer + new.churn_no_offer
                       - old.churn_no_offer,
                       cost=self.cost + new.cost - old.cost, net=self.net + new.net - old.net)

    def estimate(self) -> PolicyEstimate:
        """The estimates with their normal-approximation intervals."""
        n, k = len(self.churn), len(self.groups)
        z = float(norm.ppf(1.0 - self.alpha / 2.0))
        shares = np.bincount(self.recommended, minlength=k) / max(n, 1)
        return PolicyEstimate(
            method=self.method,
            n=n,
            alpha=self.alpha,
            churn_rate=_estimate(self.churn, z),
            churn_rate_no_offer=_estimate(self.churn_no_offer, z),
            churn_reduction=_estimate(self.churn_no_offer - self.churn, z),
            net_value_per_customer=_estimate(self.net, z),
            cost_per_customer=_estimate(self.cost, z),
            shares=dict(zip(self.groups, shares.tolist(), strict=True)),
            control=self.groups[0],
        )


def evaluate_policy(*args: Any, **kwargs: Any) -> PolicyEstimate:
    """Estimate a policy's churn, churn reduction, cost and net value with CIs.

    Takes the arguments of :func:`policy_rows`; the estimates are the means of its row
    values.
    """
    return policy_rows(*args, **kwargs).estimate()


def policy_rows(
    recommended: Sequence[str] | np.ndarray | pd.Series,
    treatment: Sequence[str] | np.ndarray | pd.Series,
    churned: Sequence[int] | np.ndarray | pd.Series,
    value: Sequence[float] | np.ndarray | pd.Series | None,
    *,
    control: str,
    arms: Sequence[ArmConfig],
    propensity: Mapping[str, float],
    horizon_months: float,
    alpha: float = 0.05,
    predicted_churn: Mapping[str, Sequence[float] | np.ndarray | pd.Series] | None = None,
    estimator: str = "auto",
) -> PolicyRows:
    """Each row's contribution to a policy's churn, churn reduction, cost and net value.

    Args:
        recommended: (n,) group the policy gives each held-out customer.
        treatment: (n,) group the randomization actually assigned.
        churned: (n,) observed churn, 0/1 (or bool).
        value: (n,) monthly revenue; None makes net value (and revenue-share cost) NaN.
        control: Name of the no-offer group.
        arms: The offers, each with ``name`` and ``cost.fixed``, ``cost.revenue_share``,
            ``cost.share_months`` (e.g. :class:`uplift.config.ArmConfig`).
        propensity: Known P(group) of the randomization for the control and every arm.
        horizon_months: Months of revenue a kept customer is worth (``H``).
        alpha: Intervals are at level ``1 - alpha``.
        predicted_churn: Optional model P(churn | group), (n,) per group; needed for
            the control and every group the policy recommends.
        estimator: ``"auto"`` (doubly robust with predictions, else Hajek),
            ``"doubly robust"``, ``"hajek"``, ``"ipw"`` (Horvitz-Thompson) or
            ``"direct"`` (the predictions alone).

    Returns:
        The row values; ``.estimate()`` gives the estimates with CIs.

    Raises:
        ValueError: On inconsistent lengths, unknown group names, bad propensities,
            non-0/1 churn, non-finite values or predictions, or a group the policy
            needs that no held-out row was randomized to.
    """
    groups, fixed, share_cost = _arm_table(control, arms)
    e = _propensities(propensity, groups)
    alpha = _number(alpha, "alpha")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha!r}")
    horizon = _number(horizon_months, "horizon_months")
    if horizon < 0:
        raise ValueError(f"horizon_months must be a non-negative number, got {horizon_months!r}")
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    if estimator == "auto":
        estimator = "hajek" if predicted_churn is None else "doubly robust"
    if estimator in ("doubly robust", "direct") and predicted_churn is None:
        raise ValueError(f"the {estimator} estimator needs predicted_churn")

    rec = _codes(recommended, groups, "recommended")
    n = len(rec)
    if n == 0:
        raise ValueError("no held-out rows to evaluate the policy on")
    treat = _codes(treatment, groups, "treatment", n)
    y = _vector(churned, "churned", n)
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("churned must hold only 0/1 (or true/false) values")
    v = None if value is None else _vector(value, "value", n)

    k = len(groups)
    counts = np.bincount(treat, minlength=k)
    used = np.flatnonzero(np.bincount(rec, minlength=k))
    for g in sorted({0, *used.tolist()}):
        if counts[g] == 0:
            raise ValueError(
                f"no held-out row was randomized to {groups[g]!r}, which the evaluation "
                "needs; its churn cannot be estimated"
            )

    if estimator in ("doubly robust", "direct"):
        mu_c, mu_p = _predictions(predicted_churn or {}, groups, rec, used, n)
    elif estimator == "hajek":
        cell = rec * k + treat  # (segment, randomized group) cell of each row
        size = np.bincount(cell, minlength=k * k)
        rates = np.bincount(cell, weights=y, minlength=k * k) / np.maximum(size, 1)
        pooled = np.bincount(treat, weights=y, minlength=k) / np.maximum(counts, 1)
        rates = np.where(size > 0, rates, np.tile(pooled, k))  # empty cell: group's rate
        mu_c, mu_p = rates[rec * k], rates[rec * k + rec]
    else:
        mu_c = mu_p = np.zeros(n)
    inv_e = 1.0 / e
    residual = 0.0 if estimator == "direct" else 1.0
    psi_c = mu_c + residual * (treat == 0) * inv_e[0] * (y - mu_c)
    psi_p = mu_p + residual * (treat == rec) * inv_e[rec] * (y - mu_p)

    if v is None:
        needs_value = bool((share_cost[used] > 0).any())
        cost = np.full(n, np.nan) if needs_value else fixed[rec]
        net = np.full(n, np.nan)
    else:
        cost = fixed[rec] + share_cost[rec] * v * (1.0 - psi_p)
        net = (psi_c - psi_p) * v * horizon - cost
    return PolicyRows(method=estimator, alpha=alpha, groups=tuple(groups), recommended=rec,
                      churn=psi_p, churn_no_offer=psi_c, cost=np.asarray(cost, dtype=float),
                      net=net)


def _number(x: Any, what: str) -> float:
    """A finite float from a plain number; ValueError otherwise."""
    if isinstance(x, bool) or not isinstance(x, (int, float, np.integer, np.floating)):
        raise ValueError(f"{what} must be a number, got {x!r}")
    if not math.isfinite(float(x)):
        raise ValueError(f"{what} must be finite, got {x!r}")
    return float(x)


BOOTSTRAP_REPLICATES = 200
"""Replicates of :func:`gains_over_chosen`'s bootstrap: its standard error within about 5 %."""


def gains_over_chosen(figures: Mapping[str, tuple[np.ndarray, np.ndarray]], score: np.ndarray,
                      folds: np.ndarray, *, alpha: float, seed: int,
                      picks: Sequence[int] | None = None,
                      replicates: int = BOOTSTRAP_REPLICATES) -> dict[str, Estimate]:
    """What a policy earns over the alternative each fold would choose, choice included.

    Each fold's rows are compared with the alternative whose ``score`` is highest on
    the other folds' rows, so the alternative is never chosen on the rows that value
    it. That is not enough for the row-wise interval: whether the folds choose alike
    depends on every fold's outcomes, so the folds' errors are correlated (a fold whose
    rows flatter one alternative steers the others' choice to it) and the paired
    interval is too narrow when the alternatives are close. Each interval here is the
    point estimate plus or minus ``z`` standard errors of a Bayesian bootstrap
    (exponential weights per row, shared by the figures) that makes every fold's choice
    again in each replicate.

    Args:
        figures: Per figure, the policy's row values ``(n,)`` and each alternative's
            ``(n, m)`` (see :class:`PolicyRows`).
        score: (n, m) each alternative's row values of what the choice maximises.
        folds: (n,) each row's fold, 0 to K - 1 with K >= 2.
        alpha: The intervals are at level ``1 - alpha``.
        seed: Seeds the bootstrap weights.
        picks: Each fold's alternative (a column of the options), when the caller has
            chosen them already by the same rule; else chosen here.
        replicates: Bootstrap replicates.

    Returns:
        Per figure, the mean gain with its interval.
    """
    score = np.asarray(score, dtype=float)
    folds = np.asarray(folds, dtype=np.intp)
    if score.ndim != 2 or folds.shape != (score.shape[0],):
        raise ValueError(f"score must be (n, m) and folds (n,), got {score.shape} and "
                         f"{folds.shape}")
    n, m = score.shape
    n_folds = int(folds.max()) + 1 if folds.size else 0
    if n_folds < 2:
        raise ValueError("the choice needs at least two folds: each is compared with the "
                         "alternative chosen on the others")
    if picks is not None and (len(picks) != n_folds or not all(0 <= p < m for p in picks)):
        raise ValueError(f"picks must give one of the {m} alternatives for each of the "
                         f"{n_folds} folds, got {list(picks)}")
    names = list(figures)
    # One matrix, rows in fold order: a weight, the score, then per figure own and options.
    columns = [np.ones((n, 1)), score]
    for name in names:
        own, options = (np.asarray(a, dtype=float) for a in figures[name])
        if own.shape != (n,) or options.shape != (n, m):
            raise ValueError(f"figure {name!r}: own must be ({n},) and options ({n}, {m}), "
                             f"got {own.shape} and {options.shape}")
        columns += [own[:, None], options]
    order = np.argsort(folds, kind="stable")
    table = np.hstack(columns)[order]
    bounds = np.concatenate([[0], np.cumsum(np.bincount(folds, minlength=n_folds))])
    parts = [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]

    def gains(weights: np.ndarray, chosen: np.ndarray | None = None) -> np.ndarray:
        """(replicates, figures): each replicate's mean gain of each figure."""
        sums = np.stack([weights[:, p] @ table[p] for p in parts], axis=1)  # (r, K, cols)
        total = sums[..., 0]
        if chosen is None:  # (replicates, folds): the best on the other folds' rows
            score_sum = sums[..., 1:1 + m]
            chosen = ((score_sum.sum(axis=1, keepdims=True) - score_sum) / (
                total.sum(axis=1, keepdims=True) - total)[..., None]).argmax(axis=2)
        out = []
        for f in range(len(names)):
            at = 1 + m + f * (1 + m)
            taken = np.take_along_axis(sums[..., at + 1:at + 1 + m], chosen[..., None],
                                       axis=2)[..., 0]
            out.append((sums[..., at] - taken).sum(axis=1) / total.sum(axis=1))
        return np.stack(out, axis=1)

    values = gains(np.ones((1, n)),
                   None if picks is None else np.asarray([picks], dtype=np.intp))[0]
    rng = np.random.default_rng(seed)
    chunk = max(1, 4_000_000 // max(n, 1))  # bounds the weights' memory
    draws = np.concatenate([
        gains(rng.standard_exponential((min(chunk, replicates - start), n)))
        for start in range(0, replicates, chunk)])
    z = float(norm.ppf(1.0 - alpha / 2.0))
    out = {}
    for f, name in enumerate(names):
        value = float(values[f])
        if not math.isfinite(value):
            out[name] = Estimate(math.nan, math.nan, math.nan, math.nan)
            continue
        se = float(np.std(draws[:, f], ddof=1))
        out[name] = Estimate(value, value - z * se, value + z * se, se)
    return out


def _estimate(rows: np.ndarray, z: float) -> Estimate:
    """Mean of per-row influence values with a normal-approximation interval."""
    n = len(rows)
    mean = float(np.mean(rows))
    if not math.isfinite(mean):
        return Estimate(math.nan, math.nan, math.nan, math.nan)
    se = float(np.std(rows, ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    return Estimate(mean, mean - z * se, mean + z * se, se)


def _arm_table(control: str, arms: Sequence[ArmConfig]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Group names (control first), fixed cost and revenue share x months per group."""
    if not isinstance(control, str) or not control:
        raise ValueError(f"control must be a non-empty group name, got {control!r}")
    if isinstance(arms, (str, Mapping)) or not isinstance(arms, Sequence) or not arms:
        raise ValueError("arms must be a non-empty sequence of arm configs")
    groups, fixed, share = [control], [0.0], [0.0]
    for arm in arms:
        try:
            name, cost = arm.name, arm.cost
            terms = (float(cost.fixed), float(cost.revenue_share), float(cost.share_months))
        except (AttributeError, TypeError, ValueError):
            raise ValueError(
                f"arms: expected configs with name and cost.fixed, cost.revenue_share, "
                f"cost.share_months; got {arm!r}"
            ) from None
        if name in groups:
            what = "the control's name" if name == control else "used by two arms"
            raise ValueError(f"arms: group name {name!r} is {what}")
        if not all(math.isfinite(t) and t >= 0 for t in terms):
            raise ValueError(f"arms: cost of {name!r} must be non-negative numbers, got {terms}")
        groups.append(name)
        fixed.append(terms[0])
        share.append(terms[1] * terms[2])
    return groups, np.array(fixed), np.array(share)


def _propensities(propensity: Mapping[str, float], groups: list[str]) -> np.ndarray:
    """Known assignment probabilities in ``groups`` order, validated."""
    if not isinstance(propensity, Mapping):
        raise ValueError(f"propensity must map group names to probabilities, got {propensity!r}")
    missing = [g for g in groups if g not in propensity]
    unknown = [g for g in propensity if g not in groups]
    if missing or unknown:
        raise ValueError(f"propensity must give exactly the groups {groups}; "
                         f"missing {missing}, unknown {unknown}")  # fmt: skip
    try:
        e = np.array([float(propensity[g]) for g in groups])
    except (TypeError, ValueError):
        raise ValueError(f"propensity values must be numbers, got {dict(propensity)}") from None
    if not (np.isfinite(e).all() and (e > 0).all()):
        raise ValueError(f"propensities must be positive, got {dict(propensity)}")
    if abs(e.sum() - 1.0) > 1e-6:
        raise ValueError(f"propensities must sum to 1, they sum to {e.sum():.6g}")
    return e


def _codes(values: Any, groups: list[str], what: str, n: int | None = None) -> np.ndarray:
    """Index into ``groups`` of each value; ValueError naming unknown values."""
    if isinstance(values, str) or np.ndim(values) != 1:
        raise ValueError(f"{what} must be a one-dimensional array of group names")
    if n is not None and len(values) != n:
        raise ValueError(f"{what} has {len(values)} rows, recommended has {n}")
    raw, uniques = pd.factorize(values if isinstance(values, pd.Series) else np.asarray(values))
    index = {g: i for i, g in enumerate(groups)}
    lookup = np.array([index.get(u, -1) for u in uniques] + [-1], dtype=np.intp)
    codes = lookup[raw]  # factorize marks missing values -1: the lookup's last entry
    if (codes < 0).any():
        bad = [u for u in uniques if u not in index][:5]
        bad += ["<missing>"] if (raw < 0).any() else []
        raise ValueError(
            f"{what} holds values that are not the control or an arm: "
            f"{', '.join(map(repr, bad))} (groups: {groups})"
        )
    return codes


def _vector(values: Any, what: str, n: int) -> np.ndarray:
    """A finite float vector of length ``n``; ValueError otherwise."""
    if isinstance(values, str) or np.ndim(values) != 1:
        raise ValueError(f"{what} must be a one-dimensional array")
    if len(values) != n:
        raise ValueError(f"{what} has {len(values)} rows, recommended has {n}")
    try:
        out = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must hold numbers") from None
    if not np.isfinite(out).all():
        bad = int((~np.isfinite(out)).sum())
        raise ValueError(f"{what} holds {bad} missing or infinite values")
    return out


def _predictions(
    predicted: Mapping[str, Any],
    groups: list[str],
    rec: np.ndarray,
    used: np.ndarray,
    n: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Predicted churn under the control and under each row's recommended group."""
    if not isinstance(predicted, Mapping):
        raise ValueError("predicted_churn must map group names to arrays")
    unknown = [g for g in predicted if g not in groups]
    if unknown:
        raise ValueError(f"predicted_churn has unknown groups {unknown} (groups: {groups})")
    needed = [groups[g] for g in sorted({0, *used.tolist()})]
    missing = [g for g in needed if g not in predicted]
    if missing:
        raise ValueError(f"predicted_churn needs the groups {needed}; missing {missing}")
    mu = np.zeros((len(groups), n))
    for name in needed:
        pred = _vector(predicted[name], f"predicted_churn[{name!r}]", n)
        if ((pred < 0) | (pred > 1)).any():
            raise ValueError(f"predicted_churn[{name!r}] must be probabilities in [0, 1]")
        mu[groups.index(name)] = pred
    return mu[0], mu[rec, np.arange(n)]





