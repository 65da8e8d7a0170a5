"""Offer assignment under a budget and per-offer capacities (SPEC section 3).

Each customer gets at most one offer; the total score of the chosen offers is maximised
subject to a budget on their total cost and a cap on customers per offer (a multiple-choice
knapsack with side constraints). Not greedy first-come:

1. If everyone's best offer fits the limits, that is optimal (vectorised).
2. Else the Lagrangian dual D(lam, mu) is minimised by a trust-region cutting-plane method
   (master LP: ``scipy.optimize.linprog``). Large problems start from a sample's dual, and
   customers whose best option cannot change inside the trust region are summed once.
   D at any multipliers >= 0 is an upper bound on the optimum.
3. An incumbent: the best reduced options, repaired to feasibility, greedily filled.
4. Reduced-cost fixing: objective(x) = D - sum(losses) - slack terms (all >= 0), so a
   better assignment only moves customers whose loss is within the gap D - incumbent.
   When many are free, a MILP over the most marginal ones first improves the incumbent;
   when few are, an exact MILP (``scipy.optimize.milp``, HiGHS) over them returns the
   optimum and a proven bound. Both MILPs are limited by branch-and-bound nodes, never by
   wall-clock time, so the answer does not depend on the machine's speed or load.

Small problems (and, in tests, 2,000 customers) come out proven optimal. From ~10^4
customers a gap of 1e-10..1e-7 of the objective may remain, reported as ``gap``: closing it
is a real-valued knapsack proof that branch-and-bound cannot finish in seconds.
"""

from __future__ import annotations

import math
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from numbers import Integral, Real

import numpy as np
from scipy import sparse
from scipy.optimize import LinearConstraint, linprog, milp

__all__ = ["REL_TOL", "Assignment", "assign_offers", "assign_offers_by_budget"]

REL_TOL = 1e-9
"""Relative tolerance: of the budget (a total this close to it counts as within it) and of
the objective (a solution this close to the proven bound counts as optimal)."""

_MAX_DUAL_ITER = 150
_DUAL_TOL = 1e-11  # relative precision the dual is minimised to
_SAMPLE = 40_000  # customers in the sample whose dual warm-starts a large problem
_FILL_LIMIT = 50_000  # candidates the greedy fill looks at
_EXACT_FREE = 300  # free customers few enough for the exact MILP
_CORE = 200  # marginal customers re-optimised first when more are free
_CORE_NODES = 100  # branch-and-bound nodes for the core (it only improves the incumbent)
_EXACT_NODES = 1_000  # branch-and-bound nodes for the exact step
_NUDGE = 1e-9  # relative step off a crossing of the budget sweep, to order ties


@dataclass(frozen=True)
class Assignment:
    """Which offer each customer gets, with the solver's certificate.

    Attributes:
        choice: (n,) index of the chosen offer per customer, -1 for no offer.
        objective: Sum of the score over the chosen offers.
        total_cost: Sum of the cost over the chosen offers.
        counts: (k,) customers per offer.
        budget_multiplier: Lagrange multiplier (shadow price) of the budget; 0 if none/slack.
        capacity_multipliers: (k,) Lagrange multipliers of the capacities.
        upper_bound: A proven upper bound on the optimum; equals ``objective`` when the
            assignment is proven optimal.
        free_customers: Most customers handed to one MILP step (everyone else was fixed
            by reduced-cost arguments or kept their offer); 0 when none was needed.
    """

    choice: np.ndarray
    objective: float
    total_cost: float
    counts: np.ndarray
    budget_multiplier: float
    capacity_multipliers: np.ndarray
    upper_bound: float
    free_customers: int = field(default=0)

    @property
    def gap(self) -> float:
        """How far the objective may be below the optimum (``upper_bound - objective``)."""
        return max(0.0, self.upper_bound - self.objective)

    @property
    def optimal(self) -> bool:
        """True when the objective is proven optimal up to the relative tolerance."""
        return self.gap <= REL_TOL * max(1.0, abs(self.upper_bound))


def assign_offers(
    score: np.ndarray,
    cost: np.ndarray,
    *,
    eligible: np.ndarray | None = None,
    budget: float | None = None,
    capacity: Sequence[int | None] | None = None,
    min_score: float = 0.0,
    exact: bool = True,
) -> Assignment:
    """Choose at most one offer per customer to maximise the total score under the limits.

    Args:
        score: (n, k) value of giving customer i offer a (e.g. expected net value).
        cost: (n, k) non-negative expected cost of giving customer i offer a.
        eligible: (n, k) bool; False pairs are never chosen. None: all eligible.
        budget: Cap on the total cost of the chosen offers; None for no cap. A total
            within ``REL_TOL`` (relative) of the budget counts as within it.
        capacity: Per offer, a cap on its customers (None for no cap); None for no caps.
        min_score: Only offers with a score strictly above this may be chosen (an offer
            with a score <= 0 never improves the total and is never chosen either).
        exact: False skips the MILP steps and returns the Lagrangian assignment (repaired
            and filled, always feasible) with its proven upper bound: within a few
            customers' worth of the optimum and many times faster under a budget.

    Returns:
        The assignment, with its objective, the multipliers and a proven upper bound
        (``optimal`` when they agree to ``REL_TOL``; from ~10^4 customers on, a gap of
        up to ~1e-7 of the objective may be left, the knapsack's integrality gap).

    Raises:
        ValueError: on arrays of the wrong shape or with non-finite or negative values,
            a negative budget or an invalid capacity.
    """
    score, cost, allowed, limit, caps = _validate(score, cost, eligible, budget, capacity,
                                                  min_score)
    return _assign(score, cost, allowed, limit, caps, min_score, exact)


def assign_offers_by_budget(
    score: np.ndarray,
    cost: np.ndarray,
    budgets: Sequence[float | None],
    *,
    eligible: np.ndarray | None = None,
    capacity: Sequence[int | None] | None = None,
    min_score: float = 0.0,
) -> list[Assignment]:
    """The Lagrangian assignment at each of several budgets, checking the inputs once.

    Where only the budget binds (no capacity does), its multiplier is found exactly: the
    customers' choices change only where two of their options' reduced scores cross, so a
    bisection over those crossings finds the first multiplier whose choices fit the budget,
    the dual's minimiser. The choices just above it (within the budget), just below it
    (over it, then repaired) and at it, each filled greedily, are the candidates; the best
    is returned, with the dual's value as its proven upper bound. Where a capacity binds,
    the answer is ``assign_offers(..., exact=False)``'s. Budgets that rule out no offer
    (none costs more) share the checks and the solver.

    Args:
        score: (n, k) value of giving customer i offer a.
        cost: (n, k) non-negative expected cost of giving customer i offer a.
        budgets: Caps on the total cost, each a non-negative number (or None for no cap).
        eligible: (n, k) bool; False pairs are never chosen. None: all eligible.
        capacity: Per offer, a cap on its customers (None for no cap); None for no caps.
        min_score: Only offers with a score strictly above this may be chosen.

    Returns:
        One feasible assignment per budget, in the given order.

    Raises:
        ValueError: as :func:`assign_offers` does.
    """
    score, cost, allowed, _, caps = _validate(score, cost, eligible, None, capacity, min_score)
    limits = [_limit(budget) for budget in budgets]
    allowed &= score > max(float(min_score), 0.0)
    grid = _breakpoints(score, cost, allowed)
    dearest = float(cost.max(initial=0.0, where=allowed))
    shared: _Options | None = None  # for the budgets that rule no offer out: all alike
    out = []
    for limit in limits:
        if limit is not None and limit >= dearest:
            if shared is None:
                shared = _Options(score, cost, allowed.copy(), caps.copy(), None)
            out.append(shared.assign(limit, False, grid))
        else:
            out.append(_Options(score, cost, allowed.copy(), caps.copy(), limit).assign(
                limit, False, grid))
    return out


def _assign(score: np.ndarray, cost: np.ndarray, allowed: np.ndarray, limit: float | None,
            caps: np.ndarray, min_score: float, exact: bool) -> Assignment:
    """Solve checked inputs (``allowed`` and ``caps`` are changed in place)."""
    allowed &= score > max(float(min_score), 0.0)
    return _Options(score, cost, allowed, caps, limit).assign(limit, exact)


class _Options:
    """The offers a budget leaves open, with what every budget as large shares.

    A budget rules out the offers that cost more than it; a cap above an offer's eligible
    count never binds. ``allowed`` and ``caps`` are changed in place.
    """

    def __init__(self, score: np.ndarray, cost: np.ndarray, allowed: np.ndarray,
                 caps: np.ndarray, limit: float | None) -> None:
        allowed[:, caps == 0] = False
        if limit is not None:
            allowed &= cost <= limit
        caps[allowed.sum(axis=0) <= caps] = np.inf  # a cap above the eligible count never binds
        self.score, self.cost, self.allowed, self.caps = score, cost, allowed, caps
        self.spread = float(np.where(allowed, cost, 0.0).max(axis=1, initial=0.0).sum())
        self.best = _best_offers(score, cost, allowed)
        self._sweeper: _Solver | None = None

    def assign(self, limit: float | None, exact: bool,
               grid: np.ndarray | None = None) -> Assignment:
        """The assignment under ``limit`` (at most the one these options were made for).

        With ``grid`` (the crossings of :func:`_breakpoints`), a problem where only the
        budget binds is solved by :meth:`_Solver.sweep` instead of the cutting-plane dual.
        """
        score, cost, allowed, caps = self.score, self.cost, self.allowed, self.caps
        n, k = score.shape
        if limit is not None and self.spread <= limit:
            limit = None  # even everyone's dearest offer fits
        if _feasible(self.best, cost, limit, caps):
            return _result(self.best.copy(), score, cost, k, 0.0, np.zeros(k), None, 0)

        rows = np.flatnonzero(allowed.any(axis=1))
        if grid is not None and grid.size and limit is not None and np.isinf(caps).all():
            if self._sweeper is None:  # one for every budget: only its limit changes
                self._sweeper = _Solver(score[rows].T, cost[rows].T, allowed[rows].T, limit,
                                        caps, exact)
            solver = self._sweeper
            solver.limit = limit
            sub_choice, upper = solver.sweep(grid)
            free = 0
        else:
            solver = _Solver(score[rows].T, cost[rows].T, allowed[rows].T, limit, caps, exact)
            sub_choice, upper, free = solver.solve()
        choice = np.full(n, -1, dtype=np.intp)
        choice[rows] = sub_choice
        return _result(choice, score, cost, k, solver.lam, solver.mu, upper, free)


# --------------------------------------------------------------------------- validation


def _validate(
    score: np.ndarray, cost: np.ndarray, eligible: np.ndarray | None, budget: float | None,
    capacity: Sequence[int | None] | None, min_score: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float | None, np.ndarray]:
    """Check the inputs and return them as float/bool arrays, the budget limit and caps."""
    score = _matrix(score, "score")
    cost = _matrix(cost, "cost")
    if cost.shape != score.shape:
        raise ValueError(f"cost has shape {cost.shape}, score has shape {score.shape}")
    if (cost < 0).any():
        raise ValueError("cost must be non-negative")
    n, k = score.shape
    if eligible is None:
        allowed = np.ones((n, k), dtype=bool)
    else:
        allowed = np.asarray(eligible)
        if allowed.shape != score.shape:
            raise ValueError(f"eligible has shape {allowed.shape}, score has shape {score.shape}")
        integer = np.issubdtype(allowed.dtype, np.integer)
        if allowed.dtype != bool and not (integer and np.isin(allowed, (0, 1)).all()):
            raise ValueError("eligible must be a boolean array")
        allowed = allowed.astype(bool, copy=True)
    if not isinstance(min_score, Real) or math.isnan(min_score):
        raise ValueError(f"min_score must be a number, got {min_score!r}")
    limit = _limit(budget)
    caps = np.full(k, np.inf)
    if capacity is not None:
        if isinstance(capacity, (str, bytes)) or len(capacity) != k:
            raise ValueError(f"capacity must have one entry per offer ({k})")
        for a, cap in enumerate(capacity):
            if cap is None:
                continue
            if isinstance(cap, bool) or not isinstance(cap, Integral) or cap < 0:
                raise ValueError(f"capacity[{a}] must be a non-negative integer or None, "
                                 f"got {cap!r}")
            caps[a] = int(cap)
    return score, cost, allowed, limit, caps


def _limit(budget: float | None) -> float | None:
    """The budget with its ``REL_TOL`` allowance (None: no cap), else ValueError."""
    if budget is None:
        return None
    if isinstance(budget, bool) or not isinstance(budget, Real) or not budget >= 0:
        raise ValueError(f"budget must be a non-negative number or None, got {budget!r}")
    return float(budget) + REL_TOL * max(1.0, float(budget)) if math.isfinite(budget) else None


def _breakpoints(score: np.ndarray, cost: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """Sorted multipliers > 0 at which two options of a customer tie in reduced score.

    Option a's reduced score is ``score - lam * cost``, no offer's is 0, so a customer's
    best option can change only where two of these lines cross: between consecutive
    values the Lagrangian choice of every customer is constant. Options allowed in a
    sub-problem (fewer of them) cross at a subset of these.
    """
    k = score.shape[1]
    parts = []
    for a in range(k):
        on = allowed[:, a] & (cost[:, a] > 0)
        parts.append(score[on, a] / cost[on, a])
        for b in range(a + 1, k):
            on = allowed[:, a] & allowed[:, b] & (cost[:, a] != cost[:, b])
            parts.append((score[on, a] - score[on, b]) / (cost[on, a] - cost[on, b]))
    grid = np.concatenate(parts) if parts else np.zeros(0)
    return np.unique(grid[(grid > 0) & np.isfinite(grid)])


def _matrix(values: np.ndarray, name: str) -> np.ndarray:
    """``values`` as a finite 2-D float array, else ValueError naming it."""
    try:
        array = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a numeric array") from None
    if array.ndim != 2:
        raise ValueError(f"{name} must be 2-D (customers x offers), got {array.ndim}-D")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} has missing or infinite values")
    return array


# --------------------------------------------------------------------------- helpers


def _best_offers(score: np.ndarray, cost: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """Per customer the allowed offer of highest score (ties: cheapest, then first), or -1."""
    n, k = score.shape
    if k == 0 or n == 0:
        return np.full(n, -1, dtype=np.intp)
    masked = np.where(allowed, score, -np.inf)
    top = masked.max(axis=1)
    tied_cost = np.where(masked == top[:, None], cost, np.inf)
    choice = tied_cost.argmin(axis=1).astype(np.intp)
    choice[~np.isfinite(top)] = -1
    return choice


def _usage(choice: np.ndarray, cost: np.ndarray, k: int) -> tuple[float, np.ndarray]:
    """Total cost and customers per offer of an assignment."""
    chosen = np.flatnonzero(choice >= 0)
    total = float(cost[chosen, choice[chosen]].sum()) if chosen.size else 0.0
    return total, np.bincount(choice[chosen], minlength=k)[:k]


def _feasible(choice: np.ndarray, cost: np.ndarray, limit: float | None, caps: np.ndarray) -> bool:
    total, counts = _usage(choice, cost, cost.shape[1])
    return (limit is None or total <= limit) and bool((counts <= caps).all())


def _result(choice: np.ndarray, score: np.ndarray, cost: np.ndarray, k: int, lam: float,
            mu: np.ndarray, upper: float | None, free: int) -> Assignment:
    chosen = np.flatnonzero(choice >= 0)
    objective = float(score[chosen, choice[chosen]].sum()) if chosen.size else 0.0
    total, counts = _usage(choice, cost, k)
    upper = objective if upper is None else max(float(upper), objective)
    return Assignment(choice=choice, objective=objective, total_cost=total, counts=counts,
                      budget_multiplier=float(lam), capacity_multipliers=np.asarray(mu, float),
                      upper_bound=upper, free_customers=int(free))


# --------------------------------------------------------------------------- solver


class _Solver:
    """Dual, incumbent, reduced-cost fixing and MILP over customers with an allowed offer.

    Arrays are offer-major, (k, m), so each offer's column is contiguous. Disallowed pairs
    have score -inf and cost 0, so their reduced profit is -inf for any multipliers.
    """

    def __init__(self, score: np.ndarray, cost: np.ndarray, allowed: np.ndarray,
                 limit: float | None, caps: np.ndarray, exact: bool = True) -> None:
        self.allowed = np.ascontiguousarray(allowed)
        self.score_raw = np.ascontiguousarray(score)
        self.S = np.where(self.allowed, self.score_raw, -np.inf)
        self.C = np.where(self.allowed, cost, 0.0)
        self.limit = limit
        self.caps = caps
        self.capped = np.flatnonzero(np.isfinite(caps))
        self.exact = exact
        self.k, self.m = self.S.shape
        self.lam = 0.0
        self.mu = np.zeros(self.k)
        self._buf = np.empty_like(self.S)
        self._ends: tuple[np.ndarray, ...] | None = None  # see sweep

    # ----------------------------------------------------------------- dual

    @property
    def dims(self) -> int:
        return int(self.limit is not None) + self.capped.size

    def _split(self, y: np.ndarray) -> tuple[float, np.ndarray]:
        mu = np.zeros(self.k)
        offset = int(self.limit is not None)
        mu[self.capped] = y[offset:]
        return (float(y[0]) if offset else 0.0), mu

    def _reduced(self, lam: float, mu: np.ndarray) -> np.ndarray:
        """Reduced profits score - lam * cost - mu (a reused buffer)."""
        out = self._buf
        np.multiply(self.C, lam, out=out)
        np.subtract(self.S, out, out=out)
        out -= mu[:, None]
        return out

    def _best(self, reduced: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each customer's best option (-1 = none) and its reduced profit (>= 0)."""
        best = reduced[0].copy()
        arg = np.zeros(reduced.shape[1], dtype=np.intp)
        for a in range(1, self.k):
            better = reduced[a] > best
            np.maximum(best, reduced[a], out=best)
            arg[better] = a
        none = ~(best > 0)
        arg[none] = -1
        best[none] = 0.0
        return arg, best

    def _restrict(self, lo: np.ndarray, hi: np.ndarray) -> None:
        """Cache the customers whose best option is the same anywhere in the box [lo, hi].

        Reduced profits fall as the multipliers grow, so over the box each lies between its
        value at ``hi`` and at ``lo``. A customer whose best option at ``hi`` is at least
        every other option at ``lo`` is decided: it enters the dual as a fixed sum. Only the
        others are evaluated at each iteration.
        """
        top = self._reduced(*self._split(lo)).copy()
        arg, floor = self._best(self._reduced(*self._split(hi)))
        has = np.flatnonzero(arg >= 0)
        top[arg[has], has] = -np.inf
        rival = top.max(axis=0)
        rival[has] = np.maximum(rival[has], 0.0)  # no offer competes with the best offer
        decided = floor >= rival
        pick = np.flatnonzero(decided & (arg >= 0))
        rest = np.flatnonzero(~decided)
        self._box = (lo.copy(), hi.copy())
        self._fixed = (np.bincount(arg[pick], weights=self.S[arg[pick], pick], minlength=self.k),
                       np.bincount(arg[pick], weights=self.C[arg[pick], pick], minlength=self.k),
                       np.bincount(arg[pick], minlength=self.k))
        self._rest = (np.ascontiguousarray(self.S[:, rest]), np.ascontiguousarray(self.C[:, rest]))

    def _evaluate(self, y: np.ndarray) -> tuple[float, np.ndarray]:
        """Dual value D(y) and a subgradient (limit - used) per constraint; y in the box."""
        lam, mu = self._split(y)
        score, cost = self._rest
        reduced = score - lam * cost - mu[:, None]
        arg, best = self._best(reduced)
        sum_s, sum_c, counts = self._fixed
        value = float(best.sum()) + float((sum_s - lam * sum_c - mu * counts).sum())
        counts = counts + np.bincount(arg + 1, minlength=self.k + 1)[1:]
        grad = []
        if self.limit is not None:
            used = float(sum_c.sum())
            used += sum(float(cost[a].sum(where=arg == a)) for a in range(self.k))
            value += lam * self.limit
            grad.append(self.limit - used)
        for a in self.capped:
            value += mu[a] * self.caps[a]
            grad.append(self.caps[a] - counts[a])
        return value, np.asarray(grad, dtype=float)

    def _upper_box(self) -> np.ndarray:
        """Multipliers beyond which the dual only grows (nothing is chosen any more)."""
        bounds = []
        if self.limit is not None:
            pos = self.allowed & (self.C > 0)
            ratio = np.divide(self.S, self.C, out=np.zeros_like(self.S), where=pos)
            bounds.append(float(ratio.max(initial=0.0)))
        for a in self.capped:
            bounds.append(float(self.S[a].max(initial=0.0, where=self.allowed[a])))
        return np.asarray(bounds) * 1.01 + 1e-12

    def _minimise_dual(self) -> tuple[np.ndarray, float]:
        """Minimise the dual with a trust-region cutting-plane method; return (y, D)."""
        upper = self._upper_box()
        y_best = np.zeros(self.dims)
        delta = upper.copy()
        if self.m > 2 * _SAMPLE:
            y_best = self._sample_start(upper)
            delta = np.maximum(0.05 * y_best, 1e-3 * upper)
        self._restrict(np.maximum(0.0, y_best - 2 * delta), np.minimum(upper, y_best + 2 * delta))
        d_best, grad = self._evaluate(y_best)
        cuts_g, cuts_b = [grad], [d_best - grad @ y_best]
        lower = -np.inf
        for _ in range(_MAX_DUAL_ITER):
            eps = _DUAL_TOL * max(1.0, abs(d_best))
            lo = np.maximum(0.0, y_best - delta)
            hi = np.minimum(upper, y_best + delta)
            step = _master(np.asarray(cuts_g), np.asarray(cuts_b), lo, hi)
            if step is None:  # numerical trouble in the tiny LP: keep the best point so far
                break
            y, model = np.clip(step[0], lo, hi), step[1]
            slack = 1e-9 * (upper + 1.0)
            inside = ((y > lo + slack) | (lo <= 0.0)) & ((y < hi - slack) | (hi >= upper))
            if inside.all():
                lower = max(lower, model)
            if d_best - lower <= eps:
                break
            if d_best - model <= eps:  # no progress possible inside the region: widen it
                delta = delta * 4.0
                continue
            box_lo, box_hi = self._box
            outside = (lo < box_lo).any() or (hi > box_hi).any()
            loose = (hi - lo < 0.25 * (box_hi - box_lo)).all()  # the box could shrink a lot
            if outside or (loose and self._rest[0].shape[1] > 0.1 * self.m):
                self._restrict(np.maximum(0.0, y_best - 2 * delta),
                               np.minimum(upper, y_best + 2 * delta))
            value, grad = self._evaluate(y)
            cuts_g.append(grad)
            cuts_b.append(value - grad @ y)
            if value <= d_best - 0.1 * (d_best - model):
                if not inside.all():
                    delta = delta * 2.0
                y_best, d_best = y, value
            elif value > d_best:
                delta = np.maximum(delta * 0.5, 1e-12 * (upper + 1.0))
        return y_best, d_best

    def _sample_start(self, upper: np.ndarray) -> np.ndarray:
        """Dual multipliers of a random sample with proportionally scaled limits."""
        rng = np.random.default_rng(0)
        pick = np.sort(rng.choice(self.m, size=_SAMPLE, replace=False))
        share = _SAMPLE / self.m
        limit = None if self.limit is None else self.limit * share
        caps = np.where(np.isfinite(self.caps), self.caps * share, np.inf)
        sample = _Solver(self.score_raw[:, pick], self.C[:, pick], self.allowed[:, pick],
                         limit, caps)
        y, _ = sample._minimise_dual()
        return np.minimum(y, upper)

    # ----------------------------------------------------------------- primal

    def _usage(self, choice: np.ndarray) -> tuple[float, np.ndarray]:
        """Total cost and customers per offer of an assignment."""
        total = sum(float(self.C[a].sum(where=choice == a)) for a in range(self.k))
        return total, np.bincount(choice + 1, minlength=self.k + 1)[1:]

    def _feasible(self, choice: np.ndarray) -> bool:
        total, counts = self._usage(choice)
        return (self.limit is None or total <= self.limit) and bool((counts <= self.caps).all())

    def _objective(self, choice: np.ndarray) -> float:
        chosen = np.flatnonzero(choice >= 0)
        return float(self.score_raw[choice[chosen], chosen].sum())

    def _incumbent(self, reduced: np.ndarray, arg: np.ndarray) -> np.ndarray:
        """The best reduced options, repaired to feasibility and filled greedily."""
        choice = arg.copy()
        for a in self.capped:  # keep the cap's worth with the largest reduced profit
            members = np.flatnonzero(choice == a)
            excess = members.size - int(self.caps[a])
            if excess > 0:
                order = np.argsort(reduced[a, members], kind="stable")
                choice[members[order[:excess]]] = -1
        while self.limit is not None and (excess := self._usage(choice)[0] - self.limit) > 0:
            # Drop the lowest score per unit of cost first (again if rounding left excess).
            chosen = np.flatnonzero(choice >= 0)
            costs = self.C[choice[chosen], chosen]
            chosen, costs = chosen[costs > 0], costs[costs > 0]
            order = np.argsort(self.score_raw[choice[chosen], chosen] / costs, kind="stable")
            stop = int(np.searchsorted(np.cumsum(costs[order]), excess)) + 1
            choice[chosen[order[:stop]]] = -1
        self._fill(choice, reduced)
        return choice

    def _fill(self, choice: np.ndarray, reduced: np.ndarray) -> None:
        """Give left-over budget and capacity to unassigned customers, closest to the margin."""
        total, counts = self._usage(choice)
        left = np.inf if self.limit is None else self.limit - total
        cap_left = self.caps - counts
        idle = np.flatnonzero(choice < 0)
        open_arms = np.flatnonzero(cap_left > 0)
        if idle.size == 0 or open_arms.size == 0:
            return
        fits = self.C[np.ix_(open_arms, idle)] <= left
        sub = np.where(fits, reduced[np.ix_(open_arms, idle)], -np.inf)
        pick = sub.argmax(axis=0)
        value = sub[pick, np.arange(idle.size)]
        keep = np.isfinite(value)
        idle, pick, value = idle[keep], open_arms[pick[keep]], value[keep]
        if idle.size > _FILL_LIMIT:
            top = np.argpartition(-value, _FILL_LIMIT)[:_FILL_LIMIT]
            idle, pick, value = idle[top], pick[top], value[top]
        order = np.argsort(-value, kind="stable")
        for i, a in zip(idle[order].tolist(), pick[order].tolist(), strict=True):
            if cap_left[a] > 0 and self.C[a, i] <= left:
                choice[i] = a
                cap_left[a] -= 1
                left -= self.C[a, i]

    def sweep(self, grid: np.ndarray) -> tuple[np.ndarray, float]:
        """Budget only: (choice, proven upper bound) at the dual's exact minimiser.

        ``grid`` holds every multiplier where a customer's choice may change
        (:func:`_breakpoints`); the choices are constant between them, and their cost
        falls as the multiplier grows. A bisection over those intervals, evaluating only
        the customers whose choice differs between its two ends, finds the first interval
        whose choices fit the budget; the crossing below it minimises the dual. The choices
        of that interval, of the one below (repaired) and at the crossing itself (its ties
        left out), each filled as in :meth:`solve`, are the candidates: the best is
        returned, with the dual's value at the crossing as its bound. ``limit`` may change
        between calls.
        """
        if self.limit is None or self.capped.size:
            raise ValueError("the sweep solves problems where only a budget binds")
        limit = self.limit
        if self._ends is None or self._ends[0] is not grid:  # the same for every limit
            points = np.concatenate([grid[:1] / 2, (grid[:-1] + grid[1:]) / 2,
                                     2 * grid[-1:] + 1])
            self._ends = (grid, points, self._best(self.S - points[0] * self.C)[0],
                          self._best(self.S - points[-1] * self.C)[0])
        _, points, first, last = self._ends

        def choose(lam: float, cols: np.ndarray) -> np.ndarray:
            return self._best(self.S[:, cols] - lam * self.C[:, cols])[0]

        def spent(arg: np.ndarray, cols: np.ndarray) -> float:
            on = arg >= 0
            return float(self.C[arg[on], cols[on]].sum())

        everyone = np.arange(self.m)
        below = first.copy()  # choices of interval lo
        hi = 0
        if spent(below, everyone) > limit:
            lo, hi = 0, points.size - 1
            above = last.copy()  # choices of interval hi
            differ = below != above
            active = np.flatnonzero(differ)
            fixed = spent(above[~differ], everyone[~differ])
            while hi - lo > 1:
                mid = (lo + hi) // 2
                pick = choose(float(points[mid]), active)
                if fixed + spent(pick, active) <= limit:
                    hi = mid
                    above[active] = pick
                else:
                    lo = mid
                    below[active] = pick
                same = below[active] == above[active]
                fixed += spent(above[active[same]], active[same])
                active = active[~same]
            candidates = [(above, points[hi]), (below, points[hi - 1])]
        else:
            candidates = [(below, points[0])]
        self.lam = float(grid[hi - 1]) if hi > 0 else 0.0
        at_crossing, best = self._best(self._reduced(self.lam, self.mu))
        upper = float(best.sum()) + self.lam * limit
        if hi > 0:
            candidates.append((at_crossing, self.lam))  # its ties left out
        choices, values = [], []
        for arg, inside in candidates:
            # Fill by the reduced scores just beside the crossing, on the side of the
            # choices: exactly at it, options that tie there are ordered as they come.
            lam = self.lam + float(np.clip(inside - self.lam, -_NUDGE * self.lam,
                                           _NUDGE * self.lam))
            choices.append(self._incumbent(self._reduced(lam, self.mu), arg))
            values.append(self._objective(choices[-1]))
        pick = int(np.argmax(values))  # on a tie, the first
        return choices[pick], max(upper, values[pick])

    def solve(self) -> tuple[np.ndarray, float, int]:
        """Return (choice, proven upper bound, most customers given to one MILP)."""
        y, d_value = self._minimise_dual()
        self.lam, self.mu = self._split(y)
        reduced = self._reduced(self.lam, self.mu)
        arg, best = self._best(reduced)
        choice = self._incumbent(reduced, arg)
        incumbent = self._objective(choice)
        tol = REL_TOL * max(1.0, abs(d_value))
        most = 0
        if d_value - incumbent <= tol or not self.exact:
            return choice, max(d_value, incumbent), most
        free, open_opt, none_open = self._free(reduced, best, d_value - incumbent, tol)
        if free.size > _EXACT_FREE:
            # Too many to prove at once: first improve the incumbent on the most marginal
            # customers (the others keep their current offer); its smaller gap frees fewer.
            core = self._core(free, open_opt, reduced, best, choice, arg)
            most = core.size
            options = best[None, core] - reduced[:, core] <= d_value - incumbent + tol
            on = np.flatnonzero(choice[core] >= 0)
            options[choice[core[on]], on] = True  # the incumbent stays possible
            keep = choice.copy()
            keep[core] = -1
            sol, _ = self._milp(core, options, np.ones(core.size, dtype=bool), keep, tol,
                                _CORE_NODES)
            if sol is not None:
                keep[core] = sol
                if (value := self._objective(keep)) > incumbent and self._feasible(keep):
                    choice, incumbent = keep, value
            if d_value - incumbent <= tol:
                return choice, d_value, most
            free, open_opt, none_open = self._free(reduced, best, d_value - incumbent, tol)
        upper = d_value
        if free.size <= _EXACT_FREE:
            # A better assignment keeps everyone else's best option: solve the rest exactly.
            most = max(most, free.size)
            fixed = arg.copy()
            fixed[free] = -1
            sol, res_upper = self._milp(free, open_opt, none_open, fixed, tol, _EXACT_NODES)
            upper = min(upper, max(incumbent, self._objective(fixed) + res_upper))
            if sol is not None:
                fixed[free] = sol
                if (value := self._objective(fixed)) > incumbent and self._feasible(fixed):
                    choice, incumbent = fixed, value
        return choice, max(upper, incumbent), most

    def _free(self, reduced: np.ndarray, best: np.ndarray, gap: float,
              tol: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Reduced-cost fixing: options whose loss exceeds the gap are in no better assignment.

        Returns the customers with more than one option left, and for them which offers
        (k, f) and whether no offer (f,) are still open.
        """
        margin = gap + tol + 1e-12 * (float(best.sum()) + 1.0)
        open_opt = best[None, :] - reduced <= margin  # -inf reduced -> +inf loss
        none_open = best <= margin
        free = np.flatnonzero(open_opt.sum(axis=0) + none_open >= 2)
        return free, open_opt[:, free], none_open[free]

    def _core(self, free: np.ndarray, open_opt: np.ndarray, reduced: np.ndarray,
              best: np.ndarray, choice: np.ndarray, arg: np.ndarray) -> np.ndarray:
        """The ``_CORE`` free customers closest to a tie between two of their options."""
        loss = np.where(open_opt, best[None, free] - reduced[:, free], np.inf)
        loss = np.vstack([loss, best[free][None, :]])  # the no-offer option
        loss[arg[free], np.arange(free.size)] = np.inf  # their best option (-1: no offer)
        runner_up = loss.min(axis=0)
        runner_up[choice[free] != arg[free]] = -1.0  # moved by repair or fill: always in
        return np.sort(free[np.argsort(runner_up, kind="stable")[:_CORE]])

    def _milp(self, idx: np.ndarray, options: np.ndarray, none_open: np.ndarray,
              fixed: np.ndarray, tol: float, node_limit: int) -> tuple[np.ndarray | None, float]:
        """Best offers for customers ``idx`` given everyone else's in ``fixed``.

        Customer ``idx[j]`` may get the offers open in ``options[:, j]``, and no offer if
        ``none_open[j]``. Returns their choice (None if none was found or none exists) and
        an upper bound on their total score (-inf when no choice respects the limits).
        Node-limited, so the answer does not depend on the machine's speed.
        """
        used, counts = self._usage(fixed)
        caps = self.caps - counts
        limit = None if self.limit is None else self.limit - used
        if (limit is not None and limit < 0) or (caps < 0).any():
            return None, -np.inf  # the others alone break a limit
        arm, pos = np.nonzero(options & self.allowed[:, idx])  # variables: (offer, customer)
        f, nvar = idx.size, arm.size
        if nvar == 0:
            return (np.full(f, -1, dtype=np.intp), 0.0) if none_open.all() else (None, -np.inf)
        values = self.score_raw[arm, idx[pos]]
        costs = self.C[arm, idx[pos]]
        scale = float(np.abs(values).max()) or 1.0
        cmax = float(costs.max()) or 1.0
        rows = [sparse.csr_array((np.ones(nvar), (pos, np.arange(nvar))), shape=(f, nvar))]
        rows += [sparse.csr_array(costs[None, :] / cmax)] if limit is not None else []
        rows += [sparse.csr_array((arm == a).astype(float)[None, :]) for a in self.capped]
        matrix = sparse.vstack(rows, format="csr")
        lower = np.r_[np.where(none_open, 0.0, 1.0), np.full(len(rows) - 1, -np.inf)]
        settings = {"node_limit": node_limit, "mip_rel_gap": 0.0,
                    "mip_abs_gap": 0.25 * tol / scale}
        bounds: list[float] = []
        for _ in range(3):  # HiGHS's feasibility tolerance may overspend: tighten, re-solve
            upper = np.r_[np.ones(f), [limit / cmax] if limit is not None else [],
                          caps[self.capped]]
            with warnings.catch_warnings(), _quiet_stdout():
                warnings.filterwarnings("ignore", "Unrecognized options", RuntimeWarning)
                res = milp(-values / scale, integrality=np.ones(nvar), bounds=(0, 1),
                           constraints=LinearConstraint(matrix, lower, upper), options=settings)
            bound = res.get("mip_dual_bound")
            ub = np.inf if bound is None or not np.isfinite(bound) else -bound * scale
            ub = -np.inf if res.status == 2 else ub  # infeasible
            bounds.append(ub)  # only the first is a bound: later solves are tightened
            if res.x is None:
                return None, bounds[0]
            take = np.round(res.x) > 0.5
            over = 0.0 if limit is None else float(costs[take].sum()) - limit
            if over <= 0:
                sol = np.full(f, -1, dtype=np.intp)
                sol[pos[take]] = arm[take]
                return sol, bounds[0]
            limit -= over + REL_TOL * cmax
        return None, bounds[0]


@contextmanager
def _quiet_stdout() -> Iterator[None]:
    """Send the process's stdout (fd 1) to devnull for a while.

    HiGHS 1.x prints stray debug lines from C++ (ERGO-Code/HiGHS#2783), which would
    corrupt output such as ``--format json`` on stdout.
    """
    saved = None
    try:
        if sys.stdout is not None:
            sys.stdout.flush()
        saved = os.dup(1)
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 1)
        finally:
            os.close(devnull)
    except (OSError, ValueError):  # no usable descriptor 1: nothing to silence
        pass
    try:
        yield
    finally:
        if saved is not None:
            os.dup2(saved, 1)
            os.close(saved)


def _master(grads: np.ndarray, offsets: np.ndarray, lo: np.ndarray,
            hi: np.ndarray) -> tuple[np.ndarray, float] | None:
    """Minimise max_j(offsets_j + grads_j . y) over the box [lo, hi]; (y, value) or None."""
    dims = grads.shape[1]
    a_ub = np.hstack([grads, -np.ones((grads.shape[0], 1))])
    c = np.zeros(dims + 1)
    c[-1] = 1.0
    bounds = [(float(lo[d]), float(hi[d])) for d in range(dims)] + [(None, None)]
    res = linprog(c, A_ub=a_ub, b_ub=-offsets, bounds=bounds, method="highs")
    if res.status != 0 or res.x is None:
        return None
    return res.x[:dims], float(res.x[-1])
