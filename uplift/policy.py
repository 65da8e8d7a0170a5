"""The offer policy: which offer each customer gets (SPEC section 3).

Costs and value per customer i and offer a, with p_i,a = P(churn_i | a)::

    uplift_i,a = p_i,control - p_i,a
    cost_i,a   = fixed_a + (1 - p_i,a) * revenue_share_a * value_i * months_a
    net_i,a    = uplift_i,a * value_i * value_horizon_months - cost_i,a

:func:`score_offers` values every offer for every customer (the run's policy and the
export both start there); :func:`choose_offers` hands the scores to
:func:`uplift.optimize.assign_offers`, which respects the budget and the per-offer
capacities exactly (not first-come); :func:`build_policy` does both. The result,
:class:`PolicyResult`, names the recommended group per customer and sums up the
policy's economics.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from .config import ArmConfig, ExperimentConfig, FilterConfig
from .errors import UpliftWarning
from .formatting import Paragraph, Table, money, pct, pp, render_markdown
from .optimize import REL_TOL, Assignment, assign_offers, assign_offers_by_budget

__all__ = [
    "REL_TOL",
    "Assignment",
    "OfferScores",
    "PolicyResult",
    "assign_offers",
    "budget_curve",
    "build_policy",
    "capacity_list",
    "choose_offers",
    "eligibility",
    "offer_threshold",
    "net_values",
    "offer_costs",
    "optimality_warning",
    "picked",
    "score_offers",
]

_FRAME_COLUMNS = ("group", "customers", "share", "cost", "net_value", "mean_uplift")
_DEFAULT: Any = object()  # "not given": use the config's value


# --------------------------------------------------------------------------- economics


def offer_costs(p_arms: np.ndarray, value: np.ndarray, arms: Sequence[ArmConfig]) -> np.ndarray:
    """Expected cost of giving each customer each offer.

    ``fixed_a + (1 - p_i,a) * revenue_share_a * value_i * months_a``: the fixed part is
    paid for every offer made, the revenue share only by customers who stay.

    Args:
        p_arms: (n, k) P(churn | offer a), offers in the order of ``arms``.
        value: (n,) monthly revenue per customer.
        arms: The offers' configs.

    Returns:
        (n, k) expected cost.
    """
    p_arms = _probabilities(p_arms, "p_arms", ndim=2)
    value = _values(value, p_arms.shape[0])
    if p_arms.shape[1] != len(arms):
        raise ValueError(f"p_arms has {p_arms.shape[1]} columns for {len(arms)} offers")
    fixed = np.array([arm.cost.fixed for arm in arms], dtype=float)
    share = np.array([arm.cost.revenue_share * arm.cost.share_months for arm in arms], dtype=float)
    return fixed[None, :] + (1.0 - p_arms) * value[:, None] * share[None, :]


def net_values(
    p_control: np.ndarray,
    p_arms: np.ndarray,
    value: np.ndarray,
    arms: Sequence[ArmConfig],
    horizon_months: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Expected net value and cost of each offer for each customer.

    Args:
        p_control: (n,) P(churn | no offer).
        p_arms: (n, k) P(churn | offer a).
        value: (n,) monthly revenue per customer.
        arms: The offers' configs, in the column order of ``p_arms``.
        horizon_months: Months of revenue a kept customer is worth (``value_horizon_months``).

    Returns:
        ``(net, cost)``, both (n, k): ``net = (p_control - p_arm) * value * horizon - cost``.
    """
    p_control = _probabilities(p_control, "p_control", ndim=1)
    p_arms = _probabilities(p_arms, "p_arms", ndim=2)
    if p_arms.shape[0] != p_control.shape[0]:
        raise ValueError(f"p_arms has {p_arms.shape[0]} rows, p_control {p_control.shape[0]}")
    if isinstance(horizon_months, bool) or not (
        isinstance(horizon_months, (int, float)) and math.isfinite(horizon_months)
        and horizon_months > 0
    ):
        raise ValueError(f"horizon_months must be a positive number, got {horizon_months!r}")
    cost = offer_costs(p_arms, value, arms)
    worth = np.asarray(value, dtype=float) * float(horizon_months)
    net = (p_control[:, None] - p_arms) * worth[:, None] - cost
    return net, cost


def _probabilities(values: np.ndarray, name: str, ndim: int) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if array.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got {array.ndim}-D")
    if not np.isfinite(array).all() or (array < 0).any() or (array > 1).any():
        raise ValueError(f"{name} must hold probabilities in [0, 1] (no missing values)")
    return array


def _values(values: np.ndarray, n: int) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if array.shape != (n,):
        raise ValueError(f"value must have shape ({n},), got {array.shape}")
    if not np.isfinite(array).all() or (array < 0).any():
        raise ValueError("value must be non-negative numbers (no missing values)")
    return array


# --------------------------------------------------------------------------- eligibility


def eligibility(frame: pd.DataFrame, arms: Sequence[ArmConfig]) -> np.ndarray:
    """Which customers may get which offer, from the arms' ``eligible`` filters.

    Every filter of an arm must hold. ``in`` / ``not_in`` compare values (as text when the
    column is text; a missing value never is ``in`` a list and always is ``not_in`` it);
    ``min`` / ``max`` are inclusive bounds on numeric columns that a missing value fails.

    Args:
        frame: Customer rows holding the filtered columns.
        arms: The offers' configs.

    Returns:
        (n, k) bool, True where customer i may get offer a.

    Raises:
        ValueError: when a filtered column is missing, or ``min``/``max`` is used on a
            column that is not numeric.
    """
    out = np.ones((len(frame), len(arms)), dtype=bool)
    for a, arm in enumerate(arms):
        for column, rule in (arm.eligible or {}).items():
            if column not in frame.columns:
                raise ValueError(f"offer {arm.name!r}: eligibility column {column!r} "
                                 "is not in the data")
            out[:, a] &= _rule_mask(frame[column], rule, f"offer {arm.name!r}: column {column!r}")
    return out


def _rule_mask(series: pd.Series, rule: FilterConfig, where: str) -> np.ndarray:
    """True where the column's value passes every operator of ``rule``."""
    numeric = pd.api.types.is_numeric_dtype(series)
    present = series.notna().to_numpy()
    mask = np.ones(len(series), dtype=bool)
    if rule.in_ is not None or rule.not_in is not None:
        keys = series.astype(float) if numeric else series.astype(str)  # missing: masked below
        if rule.in_ is not None:
            mask &= keys.isin(_listed(rule.in_, numeric)).to_numpy() & present
        if rule.not_in is not None:
            mask &= ~keys.isin(_listed(rule.not_in, numeric)).to_numpy() | ~present
    if rule.min is not None or rule.max is not None:
        if not numeric:
            raise ValueError(f"{where}: min/max need a numeric column, it holds text")
        number = series.astype(float).to_numpy()
        if rule.min is not None:
            mask &= present & (number >= rule.min)
        if rule.max is not None:
            mask &= present & (number <= rule.max)
    return mask


def _listed(items: Sequence[Any], numeric: bool) -> list[Any]:
    """The ``in``/``not_in`` items as the column's keys: floats, or text spellings."""
    out: list[Any] = []
    for item in items:
        if item is None or (isinstance(item, float) and math.isnan(item)):
            continue  # a missing value is never "in" a list
        if numeric:
            try:
                out.append(float(item))
            except (TypeError, ValueError):
                continue  # text cannot equal a number
        elif isinstance(item, bool):
            out.extend([str(item), str(item).lower()])
        elif isinstance(item, float) and item.is_integer():
            out.extend([str(item), str(int(item))])
        else:
            out.append(str(item))
    return out


# --------------------------------------------------------------------------- policy


@dataclass(frozen=True)
class PolicyResult:
    """The recommended offer per customer and the policy's economics.

    Attributes:
        arms: Offer names, in config order.
        control: The no-offer group's name.
        offer: (n,) recommended group per customer (the control name = no offer).
        net_value: (n,) expected net value of the recommended offer (0 for the control).
        uplift: (n,) predicted churn reduction of the recommended offer (0 for the control).
        cost: (n,) expected cost of the recommended offer (0 for the control).
        assignment: The optimizer's answer (choice indices, multipliers, bound); its
            ``objective`` is the total score of the offers made (net value or churn
            reduction).
        objective: ``net_value`` or ``churn_reduction``, what was maximised.
        budget: The budget applied (None: none).
        capacity: The capacities applied, per offer name.
    """

    arms: tuple[str, ...]
    control: str
    offer: np.ndarray
    net_value: np.ndarray
    uplift: np.ndarray
    cost: np.ndarray
    assignment: Assignment
    objective: str = "net_value"
    budget: float | None = None
    capacity: Mapping[str, int] | None = None

    @property
    def groups(self) -> tuple[str, ...]:
        """The control followed by every offer."""
        return (self.control, *self.arms)

    @property
    def n_customers(self) -> int:
        """Number of customers the policy covers."""
        return int(self.offer.shape[0])

    def counts(self) -> dict[str, int]:
        """Customers per group, control first."""
        choice = self.assignment.choice
        counts = np.bincount(choice + 1, minlength=len(self.arms) + 1)
        return {g: int(c) for g, c in zip(self.groups, counts, strict=True)}

    def shares(self) -> dict[str, float]:
        """Share of customers per group, control first (all 0 when there are no customers)."""
        n = self.n_customers
        return {g: (c / n if n else 0.0) for g, c in self.counts().items()}

    @property
    def total_cost(self) -> float:
        """Expected cost of all recommended offers."""
        return float(self.cost.sum())

    @property
    def total_net_value(self) -> float:
        """Expected net value of all recommended offers."""
        return float(self.net_value.sum())

    @property
    def net_value_per_customer(self) -> float:
        """Expected net value per customer covered (0 without customers)."""
        return self.total_net_value / self.n_customers if self.n_customers else 0.0

    @property
    def cost_per_customer(self) -> float:
        """Expected offer cost per customer covered (0 without customers)."""
        return self.total_cost / self.n_customers if self.n_customers else 0.0

    @property
    def churn_reduction_per_customer(self) -> float:
        """Predicted churn reduction per customer covered (0 without customers)."""
        return float(self.uplift.sum()) / self.n_customers if self.n_customers else 0.0

    def to_frame(self) -> pd.DataFrame:
        """One row per group, control first: customers, share, cost, net value, mean uplift.

        ``cost`` and ``net_value`` are the group's expected totals; ``mean_uplift`` is the
        mean predicted churn reduction of its customers (NaN for an empty offer group).
        """
        choice = self.assignment.choice
        n = self.n_customers
        rows = []
        for index, group in enumerate(self.groups, start=-1):
            member = choice == index
            count = int(member.sum())
            rows.append({
                "group": group,
                "customers": count,
                "share": count / n if n else 0.0,
                "cost": float(self.cost[member].sum()),
                "net_value": float(self.net_value[member].sum()),
                "mean_uplift": float(self.uplift[member].mean()) if count else math.nan,
            })
        frame = pd.DataFrame(rows, columns=list(_FRAME_COLUMNS))
        return frame.astype({"customers": "int64"})

    def table(self, valued: bool = True) -> Table:
        """Per group (control first) and in total: customers, share, expected cost and value.

        Without customer values (``valued`` false) the net value, only minus the cost,
        is left out.
        """
        rows = []
        for row in self.to_frame().itertuples(index=False):
            control = row.group == self.control
            rows.append([f"{row.group} (no offer)" if control else str(row.group),
                         f"{row.customers:,}", pct(row.share), money(row.cost),
                         *([money(row.net_value)] if valued else []),
                         "" if control else pp(row.mean_uplift, "")])
        rows.append(["total", f"{self.n_customers:,}", pct(1.0 if self.n_customers else 0.0),
                     money(self.total_cost),
                     *([money(self.total_net_value)] if valued else []), ""])
        header = ["group", "customers", "share", "expected cost",
                  *(["expected net value"] if valued else []), "mean predicted uplift"]
        return Table.build(header, rows, numeric=range(1, len(header)),
                           highlight=[len(rows) - 1], title="Recommended offers")

    def paragraphs(self) -> list[Paragraph]:
        """What was maximised, under which limits, and whether it is proven optimal."""
        limits = []
        if self.budget is not None:
            limits.append(f"budget {money(self.budget)} ({money(self.total_cost)} used)")
        counts = self.counts()
        limits += [f"{name} capacity {cap:,} ({counts.get(name, 0):,} used)"
                   for name, cap in (self.capacity or {}).items()]
        status = "proven optimal" if self.assignment.optimal else (
            f"within {self.assignment.gap:,.4g} of the optimum")
        aim = "net value" if self.objective == "net_value" else "churn reduction"
        return [Paragraph(f"Maximises expected {aim}; "
                          f"{'; '.join(limits) if limits else 'no budget or capacity limits'}; "
                          f"{status}.")]

    def to_markdown(self) -> str:
        """The groups as a Markdown table, then the limits and optimality."""
        return render_markdown(self.table(), self.paragraphs())


@dataclass(frozen=True)
class OfferScores:
    """What each offer would do for each customer: rows are customers, columns offers.

    Attributes:
        uplift: Predicted churn reduction, ``p_control - p_offer``.
        cost: Expected cost of making the offer.
        net: Expected net value, ``uplift * value * horizon - cost``.
        eligible: The offer's ``eligible`` filters let the customer have it.
        score: What the objective maximises: ``net`` (net value) or ``uplift``.
        min_score: An offer is made only when its score is above this:
            ``policy.min_net_value`` under the net-value objective, 0 under churn reduction.
    """

    uplift: np.ndarray
    cost: np.ndarray
    net: np.ndarray
    eligible: np.ndarray
    score: np.ndarray
    min_score: float

    @property
    def allowed(self) -> np.ndarray:
        """Offers that may be made: eligible and scoring above ``min_score``."""
        return self.eligible & (self.score > self.min_score)


def score_offers(p_control: np.ndarray, p_arms: np.ndarray, value: np.ndarray,
                 frame: pd.DataFrame, cfg: ExperimentConfig,
                 fixed_offer: str | None = None) -> OfferScores:
    """Uplift, cost, net value, eligibility and the objective's score of every offer.

    The one place offers are valued: the run's policy and the export both start here.

    Args:
        p_control: (n,) P(churn | no offer).
        p_arms: (n, k) P(churn | offer), columns in ``cfg.arm_names`` order.
        value: (n,) monthly revenue per customer.
        frame: The customers' rows (for the eligibility filters), n rows.
        cfg: The experiment config (arms, costs, horizon, objective, min_net_value).
        fixed_offer: A policy that ignores the predictions: the control's name offers
            nobody anything, an arm's name offers that arm to every eligible customer
            (budget and capacities still apply, best predicted customers first).
    """
    if len(frame) != np.shape(p_control)[0]:
        raise ValueError(f"frame has {len(frame)} rows, p_control {np.shape(p_control)[0]}")
    net, cost = net_values(p_control, p_arms, value, cfg.arms, cfg.value_horizon_months)
    uplift = np.asarray(p_control, dtype=float)[:, None] - np.asarray(p_arms, dtype=float)
    score = uplift if cfg.policy.objective == "churn_reduction" else net
    eligible = eligibility(frame, cfg.arms)
    if fixed_offer is not None:
        eligible &= np.asarray(cfg.arm_names, dtype=object)[None, :] == fixed_offer
    return OfferScores(uplift=uplift, cost=cost, net=net, eligible=eligible,
                       score=score, min_score=offer_threshold(cfg, fixed_offer))


def offer_threshold(cfg: ExperimentConfig, fixed_offer: str | None = None) -> float:
    """The score an offer must beat: ``policy.min_net_value``, or 0 for churn reduction.

    Under a fixed offer for everyone (``fixed_offer`` an arm's name) every eligible
    customer gets it whatever its predicted score: the threshold is minus infinity.
    """
    if fixed_offer is not None and fixed_offer in cfg.arm_names:
        return -math.inf
    return 0.0 if cfg.policy.objective == "churn_reduction" else float(cfg.policy.min_net_value)


def choose_offers(score: np.ndarray, cost: np.ndarray, allowed: np.ndarray, *,
                  min_score: float = 0.0, budget: float | None = None,
                  capacity: Sequence[int | None] | None = None,
                  exact: bool = True) -> Assignment:
    """At most one offer per customer: the most total score the budget and capacities allow.

    Offers that add to the total (score above 0 and ``min_score``) are assigned by
    :func:`~uplift.optimize.assign_offers`, optimally under the limits. With a negative
    ``min_score``, offers scoring in ``(min_score, 0]`` are losses the user accepts: they
    go, each customer's best one, highest first, to customers left without an offer, as
    far as the budget and capacities that remain allow. Without limits that gives every
    customer their best allowed offer; under a binding limit a loss never displaces a
    gain, so the total is never lowered to make room for losses.

    Args:
        score: (n, k) what the objective maximises (net value or churn reduction).
        cost: (n, k) expected cost (counts against the budget).
        allowed: (n, k) bool, the offers that may be made (``OfferScores.allowed``).
        min_score: The score an offer must exceed.
        budget: Cap on total expected cost; None for none.
        capacity: Per offer, a cap on its customers (None: no cap).
        exact: False stops at the optimizer's Lagrangian assignment (fast, near-optimal).

    Returns:
        The assignment; its ``objective`` is the total score of all offers made, its
        ``upper_bound`` the proven bound on it.
    """
    score = np.asarray(score, dtype=float)
    allowed = np.asarray(allowed, dtype=bool) & (score > min_score)
    gains = allowed & (score > 0)
    result = assign_offers(score, cost, eligible=gains, budget=budget, capacity=capacity,
                           exact=exact)
    losses = allowed & ~gains
    if min_score >= 0 or not losses.any():
        return result
    choice = result.choice.copy()
    cost = np.asarray(cost, dtype=float)
    n, k = score.shape
    left = math.inf if budget is None else budget + REL_TOL * max(1.0, budget) - result.total_cost
    caps = np.array([math.inf if c is None else c for c in (capacity or [None] * k)], float)
    room = caps - result.counts
    open_rows = np.flatnonzero((choice < 0) & losses.any(axis=1))
    masked = np.where(losses[open_rows], score[open_rows], -np.inf)
    tied = np.where(masked == masked.max(axis=1, keepdims=True), cost[open_rows], np.inf)
    best = tied.argmin(axis=1)
    value = masked[np.arange(open_rows.size), best]
    added = 0.0
    for j in np.argsort(-value, kind="stable"):
        row, offer = open_rows[j], best[j]
        if room[offer] >= 1 and cost[row, offer] <= left:
            choice[row] = offer
            room[offer] -= 1
            left -= cost[row, offer]
            added += value[j]
    made = np.flatnonzero(choice >= 0)
    return replace(
        result, choice=choice, objective=result.objective + added,
        total_cost=float(cost[made, choice[made]].sum()),
        counts=np.bincount(choice[made], minlength=k)[:k],
        upper_bound=result.upper_bound + added)


def _choose_offers_by_budget(score: np.ndarray, cost: np.ndarray, allowed: np.ndarray,
                             budgets: Sequence[float], *, min_score: float = 0.0,
                             capacity: Sequence[int | None] | None = None
                             ) -> list[Assignment]:
    """:func:`choose_offers` with ``exact=False`` at each budget, the inputs checked once.

    The offers that add to the total are assigned by
    :func:`~uplift.optimize.assign_offers_by_budget` (the budget's multiplier found
    exactly when no capacity binds). When losses are accepted (a negative ``min_score``),
    each budget is :func:`choose_offers`'s: the losses fill what the gains leave, so a
    better assignment of the gains need not give a better total.
    """
    score = np.asarray(score, dtype=float)
    allowed = np.asarray(allowed, dtype=bool) & (score > min_score)
    gains = allowed & (score > 0)
    if min_score < 0 and (allowed & ~gains).any():
        return [choose_offers(score, cost, allowed, min_score=min_score, budget=budget,
                              capacity=capacity, exact=False) for budget in budgets]
    return assign_offers_by_budget(score, cost, budgets, eligible=gains, capacity=capacity)


def optimality_warning(assignment: Assignment, what: str) -> None:
    """Warn (``UpliftWarning``) when an assignment is not proven optimal, saying how close."""
    if assignment.optimal:
        return
    scale = max(1.0, abs(assignment.upper_bound))
    warnings.warn(f"{what}: the offer assignment is not proven optimal; it is within "
                  f"{assignment.gap:,.4g} ({assignment.gap / scale:.1e} of the total) of the "
                  "best possible", UpliftWarning, stacklevel=3)


def capacity_list(capacity: Mapping[str, int], names: Sequence[str]) -> list[int | None]:
    """Per-offer capacities in column order (None: no cap), checked against the offer names."""
    unknown = [key for key in capacity if key not in names]
    if unknown:
        raise ValueError(f"capacity for unknown offer(s): {', '.join(map(repr, unknown))}")
    for name, cap in capacity.items():
        if isinstance(cap, bool) or not isinstance(cap, (int, np.integer)) or cap < 0:
            raise ValueError(f"capacity of {name!r} must be a whole number >= 0, got {cap!r}")
    return [capacity.get(name) for name in names]


def build_policy(
    p_control: np.ndarray,
    p_arms: np.ndarray,
    value: np.ndarray,
    frame: pd.DataFrame,
    cfg: ExperimentConfig,
    *,
    budget: float | None = _DEFAULT,
    capacity: Mapping[str, int] | None = _DEFAULT,
    exact: bool = True,
    fixed_offer: str | None = None,
) -> PolicyResult:
    """Recommend an offer (or none) per customer under the config's objective and limits.

    ``objective: net_value`` maximises the total net value of the offers made; an offer
    is made only when its net value exceeds ``policy.min_net_value``, so a negative
    ``min_net_value`` accepts that much loss per offer (see :func:`choose_offers`): without
    limits each customer gets the best offer that nets more than ``min_net_value``
    (SPEC 3). ``churn_reduction`` maximises the total predicted churn reduction over
    offers that reduce churn. Costs count against the budget either way.

    Args:
        p_control: (n,) P(churn | no offer).
        p_arms: (n, k) P(churn | offer), columns in ``cfg.arm_names`` order.
        value: (n,) monthly revenue per customer.
        frame: The customers' rows (for the eligibility filters), n rows.
        cfg: The experiment config (arms, costs, horizon, policy).
        budget: Cap on total expected cost; default ``cfg.policy.budget``, None for none.
        capacity: Customers per offer name; default ``cfg.policy.capacity``, None for none.
        exact: False stops at the Lagrangian assignment (feasible, near-optimal, fast);
            see :func:`~uplift.optimize.assign_offers`.
        fixed_offer: Nobody (the control's name) or one offer for every eligible
            customer (an arm's name) instead of the predictions' choice; see
            :func:`score_offers`.

    Returns:
        The recommended groups with their net value, uplift and cost.
    """
    names = cfg.arm_names
    offers = score_offers(p_control, p_arms, value, frame, cfg, fixed_offer)
    budget = cfg.policy.budget if budget is _DEFAULT else budget
    capacity = dict(cfg.policy.capacity) if capacity is _DEFAULT else dict(capacity or {})
    caps = capacity_list(capacity, names)
    assignment = choose_offers(offers.score, offers.cost, offers.allowed,
                               min_score=offers.min_score, budget=budget, capacity=caps,
                               exact=exact)
    return _policy_result(offers, assignment, cfg, budget, capacity)


def _policy_result(offers: OfferScores, assignment: Assignment, cfg: ExperimentConfig,
                   budget: float | None, capacity: Mapping[str, int]) -> PolicyResult:
    """The policy an assignment of the scored offers makes."""
    choice = assignment.choice
    rows = np.flatnonzero(choice >= 0)
    offer = np.full(choice.shape[0], cfg.control, dtype=object)
    offer[rows] = np.asarray(cfg.arm_names, dtype=object)[choice[rows]]
    return PolicyResult(
        arms=tuple(cfg.arm_names), control=cfg.control, offer=offer,
        net_value=picked(offers.net, choice), uplift=picked(offers.uplift, choice),
        cost=picked(offers.cost, choice), assignment=assignment,
        objective=cfg.policy.objective, budget=budget,
        capacity={k: int(v) for k, v in capacity.items()},
    )


def picked(matrix: np.ndarray, choice: np.ndarray) -> np.ndarray:
    """Each row's entry in its chosen column (0 where no offer was chosen)."""
    out = np.zeros(choice.shape[0])
    rows = np.flatnonzero(choice >= 0)
    out[rows] = matrix[rows, choice[rows]]
    return out


def budget_curve(
    p_control: np.ndarray,
    p_arms: np.ndarray,
    value: np.ndarray,
    frame: pd.DataFrame,
    cfg: ExperimentConfig,
    budgets: Sequence[float] | np.ndarray,
    *,
    capacity: Mapping[str, int] | None = _DEFAULT,
    exact: bool = True,
) -> pd.DataFrame:
    """The optimal policy's economics at each of several budgets.

    The offers are scored once (:func:`score_offers`, the config's objective); each row
    is the best policy that spends at most that budget, as :func:`build_policy` finds it
    with ``exact=True``. With ``exact=False`` each row is a Lagrangian policy, feasible
    and within a few customers' worth of the best: when no capacity binds and no loss is
    accepted (no negative ``min_net_value``), the best of the Lagrangian policies at and
    beside the budget's exact multiplier, found by a bisection over the multipliers where
    a customer's choice changes (:func:`~uplift.optimize.assign_offers_by_budget`);
    otherwise ``build_policy(..., exact=False)``'s.

    Args:
        p_control: (n,) P(churn | no offer).
        p_arms: (n, k) P(churn | offer), columns in ``cfg.arm_names`` order.
        value: (n,) monthly revenue per customer.
        frame: The customers' rows (for the eligibility filters), n rows.
        cfg: The experiment config (arms, costs, horizon, policy).
        budgets: Caps on total expected cost, each >= 0.
        capacity: Customers per offer name; default ``cfg.policy.capacity``, None for none.
        exact: False for the fast Lagrangian policies (see above).

    Returns:
        One row per budget, in the given order: ``budget``, ``cost`` (expected total),
        ``net_value`` (expected total), ``churn_reduction`` (predicted, per customer)
        and ``customers_treated`` (customers given an offer).
    """
    budgets = [float(budget) for budget in np.asarray(budgets, dtype=float).ravel()]
    for budget in budgets:
        if not math.isfinite(budget) or budget < 0:
            raise ValueError(f"budgets must be finite numbers >= 0, got {budget!r}")
    offers = score_offers(p_control, p_arms, value, frame, cfg)
    capacity = dict(cfg.policy.capacity) if capacity is _DEFAULT else dict(capacity or {})
    caps = capacity_list(capacity, cfg.arm_names)
    if exact:
        assignments = [choose_offers(offers.score, offers.cost, offers.allowed,
                                     min_score=offers.min_score, budget=budget,
                                     capacity=caps)
                       for budget in budgets]
    else:
        assignments = _choose_offers_by_budget(offers.score, offers.cost, offers.allowed,
                                               budgets, min_score=offers.min_score,
                                               capacity=caps)
    rows = []
    for budget, assignment in zip(budgets, assignments, strict=True):
        policy = _policy_result(offers, assignment, cfg, budget, capacity)
        rows.append({
            "budget": budget,
            "cost": policy.total_cost,
            "net_value": policy.total_net_value,
            "churn_reduction": policy.churn_reduction_per_customer,
            "customers_treated": int((assignment.choice >= 0).sum()),
        })
    columns = ["budget", "cost", "net_value", "churn_reduction", "customers_treated"]
    return pd.DataFrame(rows, columns=columns).astype({"customers_treated": "int64"})
