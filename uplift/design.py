"""Power analysis for the next retention test: customers needed, or the reachable MDE.

Each offer arm is compared with the control by a two-sided pooled z-test of two
proportions. The sample size is statsmodels'
``samplesize_proportions_2indep_onetail``: pooled variance under the null,
unpooled under the alternative, far tail ignored (the textbook formula)::

    n_arm = (z_{1-a/2} sqrt(pbar (1 - pbar) (1 + 1/r))
             + z_{1-b} sqrt(p_a (1 - p_a) + p_c (1 - p_c) / r))^2 / mde^2

with ``p_c`` the control churn rate, ``p_a = p_c - mde``, ``r = n_control / n_arm`` and
``pbar = (p_a + r p_c) / (1 + r)``. Ignoring the far tail makes the true power at
most ``a/2`` higher than asked, never lower.

Several arms: ``alpha_per_test = alpha / k`` for holm, bonferroni and fdr_bh. That is
exact for Bonferroni and conservative for the others: Holm's first (strictest) step
tests at ``alpha / k``, and Benjamini-Hochberg's threshold for a single true effect
among ``k`` nulls is also ``alpha / k``, so powering every arm at ``alpha / k``
guarantees the power whatever the other arms do.

A covariate-adjusted readout (``analysis.cuped``) removing a share ``R`` of an arm's
variance scales both variances of the formula by ``1 - R``, so that arm needs
``(1 - R)`` times the customers (exactly, before rounding up); with ``variance_reduction``
both designs are given, the plain one and the adjusted one.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import brentq
from statsmodels.stats.proportion import samplesize_proportions_2indep_onetail

from .config import CORRECTIONS, check_allocation
from .formatting import Paragraph, Table, pct

__all__ = ["DesignResult", "solve_mde", "solve_sample_size"]


@dataclass(frozen=True)
class DesignResult:
    """A test design: per-test alpha, customers per group and the detectable effect."""

    control_rate: float
    mde: float
    alpha: float
    alpha_per_test: float
    power: float
    correction: str
    n_per_group: dict[str, int]
    n_total: int
    variance_reduction: dict[str, float] | None = None
    """Share of each arm's variance a covariate adjustment removes, when planned with one."""
    adjusted_n_per_group: dict[str, int] | None = None
    """Customers per group with the adjustment (sample-size designs)."""
    adjusted_n_total: int | None = None
    adjusted_mde: float | None = None
    """The MDE reachable with the adjustment (MDE designs)."""

    def to_frame(self) -> pd.DataFrame:
        """One row per group (control first): group, role, share, n, expected churn rate.

        With a planned adjustment also ``n_cuped`` (sample-size designs) and the arm's
        ``variance_reduction``.
        """
        control = next(iter(self.n_per_group))
        rows = [
            {
                "group": g,
                "role": "control" if g == control else "offer",
                "share": n / self.n_total,
                "n": n,
                "churn_rate": self.control_rate if g == control else self.control_rate - self.mde,
            }
            for g, n in self.n_per_group.items()
        ]
        columns = ["group", "role", "share", "n", "churn_rate"]
        if self.adjusted_n_per_group is not None:
            for row in rows:
                row["n_cuped"] = self.adjusted_n_per_group[row["group"]]
            columns.append("n_cuped")
        if self.variance_reduction is not None:
            for row in rows:
                row["variance_reduction"] = self.variance_reduction.get(row["group"])
            columns.append("variance_reduction")
        return pd.DataFrame(rows, columns=columns)

    def table(self) -> Table:
        """Customers per group (control first) with their share and expected churn.

        With a planned adjustment, the customers needed with it follow the plain ones.
        """
        adjusted = self.adjusted_n_per_group
        rows = []
        for row in self.to_frame().itertuples(index=False):
            control = row.role == "control" and row.group != "control"
            cells = [f"{row.group} (control)" if control else row.group,
                     f"{100 * row.share:.1f}%", f"{row.n:,}"]
            if adjusted is not None:
                cells.append(f"{adjusted[row.group]:,}")
            rows.append([*cells, pct(row.churn_rate)])
        total = ["total", "100.0%", f"{self.n_total:,}"]
        if adjusted is not None:
            total.append(f"{self.adjusted_n_total:,}")
        rows.append([*total, ""])
        header = ["group", "share", "customers"]
        if adjusted is not None:
            header.append("customers with CUPED")
        header.append("expected churn")
        return Table.build(header, rows, numeric=range(1, len(header)),
                           highlight=[len(rows) - 1], title="Customers needed per group")

    def paragraphs(self) -> list[Paragraph]:
        """What the design detects, at which power and level, with and without an adjustment."""
        k = len(self.n_per_group) - 1
        out = [Paragraph(
            f"Detect a churn reduction of {100 * self.mde:.2f} pp (control churn "
            f"{pct(self.control_rate)} -> {pct(self.control_rate - self.mde)}) with power "
            f"{self.power:g} in each of {k} offer arm(s), two-sided alpha {self.alpha:g} "
            f"({self.correction}: {self.alpha_per_test:.4g} per test).")]
        if self.variance_reduction is None:
            return out
        shares = sorted(set(self.variance_reduction.values()))
        removed = (pct(shares[0]) if len(shares) == 1 else ", ".join(
            f"{a} {pct(r)}" for a, r in self.variance_reduction.items()))
        if self.adjusted_n_total is not None:
            cut = 1 - self.adjusted_n_total / self.n_total
            out.append(Paragraph(
                f"With a covariate-adjusted readout (CUPED) removing {removed} of the "
                f"variance: {self.adjusted_n_total:,} customers instead of {self.n_total:,} "
                f"({pct(cut)} fewer)."))
        elif self.adjusted_mde is not None:
            out.append(Paragraph(
                f"With a covariate-adjusted readout (CUPED) removing {removed} of the "
                f"variance: a churn reduction of {100 * self.adjusted_mde:.2f} pp instead of "
                f"{100 * self.mde:.2f} pp."))
        return out

    def to_markdown(self) -> str:
        """The summary sentence, then a Markdown table of the groups."""
        return "\n".join(p.to_markdown() + "\n" for p in self.paragraphs()) + "\n" + \
            self.table().to_markdown()


def solve_sample_size(
    control_rate: float,
    mde: float,
    *,
    control: str,
    arms: Sequence[str],
    allocation: Mapping[str, float] | None = None,
    alpha: float = 0.05,
    power: float = 0.8,
    correction: str = "holm",
    variance_reduction: float | Mapping[str, float] | None = None,
) -> DesignResult:
    """Customers needed so that every arm-vs-control test detects a churn reduction ``mde``.

    Args:
        control_rate: Expected churn rate without an offer, in (0, 1).
        mde: Absolute churn reduction to detect; the arm churn rate is ``control_rate - mde``.
        control: Name of the control group.
        arms: Names of the offer arms.
        allocation: Planned share per group (summing to 1); default equal shares.
        alpha: Family-wise two-sided significance level.
        power: Power wanted for each arm's test.
        correction: holm, bonferroni, fdr_bh (all powered at ``alpha / k``) or none.
        variance_reduction: Share of the variance in [0, 1) a covariate adjustment
            removes, for every arm or per arm; also gives the design with it.

    Returns:
        The design; ``n_per_group`` is ``ceil(N * share)`` for the smallest real ``N``
        at which every arm reaches the power, and ``n_total`` its sum; with a
        ``variance_reduction`` also ``adjusted_n_per_group`` and ``adjusted_n_total``.

    Example:
        >>> solve_sample_size(0.3, 0.05, control="control", arms=["offer"]).n_per_group
        {'control': 1251, 'offer': 1251}
    """
    shares, alpha_per_test = _check(
        control_rate, alpha, power, correction, control, arms, allocation
    )
    mde = _check_mde(mde, control_rate)
    reduction = _check_reduction(variance_reduction, list(shares)[1:])

    def groups(scale: Mapping[str, float] | None) -> dict[str, int]:
        n_real = float(_required_total(mde, control_rate, shares, alpha_per_test, power, scale))
        # The 1e-9 keeps float noise (N * share = 1000.0000000002) from adding a customer.
        return {g: max(1, math.ceil(n_real * s - 1e-9)) for g, s in shares.items()}

    n_per_group = groups(None)
    adjusted = None if reduction is None else groups({a: 1 - r for a, r in reduction.items()})
    return DesignResult(
        control_rate=float(control_rate),
        mde=float(mde),
        alpha=float(alpha),
        alpha_per_test=alpha_per_test,
        power=float(power),
        correction=correction,
        n_per_group=n_per_group,
        n_total=sum(n_per_group.values()),
        variance_reduction=reduction,
        adjusted_n_per_group=adjusted,
        adjusted_n_total=None if adjusted is None else sum(adjusted.values()),
    )


def solve_mde(
    n_total: int,
    control_rate: float,
    *,
    control: str,
    arms: Sequence[str],
    allocation: Mapping[str, float] | None = None,
    alpha: float = 0.05,
    power: float = 0.8,
    correction: str = "holm",
    variance_reduction: float | Mapping[str, float] | None = None,
) -> DesignResult:
    """Smallest churn reduction every arm's test detects with ``n_total`` customers.

    The inverse of :func:`solve_sample_size` (same formula, solved for ``mde`` by brentq):
    the MDE is the effect at which the group sizes ``n_total * share`` are just enough.

    Args:
        n_total: Customers in the test, all groups together.
        control_rate: Expected churn rate without an offer, in (0, 1).
        control: Name of the control group.
        arms: Names of the offer arms.
        allocation: Planned share per group (summing to 1); default equal shares.
        alpha: Family-wise two-sided significance level.
        power: Power wanted for each arm's test.
        correction: holm, bonferroni, fdr_bh (all powered at ``alpha / k``) or none.
        variance_reduction: Share of the variance in [0, 1) a covariate adjustment
            removes, for every arm or per arm; also gives the MDE with it.

    Returns:
        The design; ``n_per_group`` splits ``n_total`` by the shares (largest remainders);
        with a ``variance_reduction`` also ``adjusted_mde``.

    Raises:
        ValueError: When ``n_total`` is too small to detect even the largest possible
            reduction (arm churn 0), or on invalid arguments.

    Example:
        >>> round(solve_mde(2502, 0.3, control="control", arms=["offer"]).mde, 4)
        0.05
    """
    shares, alpha_per_test = _check(
        control_rate, alpha, power, correction, control, arms, allocation
    )
    whole = isinstance(n_total, numbers.Real) and not isinstance(n_total, bool)
    if not (whole and float(n_total).is_integer()):
        raise ValueError(f"n_total must be a whole number of customers, got {n_total!r}")
    n_total = int(n_total)
    if n_total <= 0:
        raise ValueError(f"n_total must be positive, got {n_total}")
    reduction = _check_reduction(variance_reduction, list(shares)[1:])
    mde = _smallest_mde(n_total, control_rate, shares, alpha_per_test, power, None)
    adjusted = None if reduction is None else _smallest_mde(
        n_total, control_rate, shares, alpha_per_test, power,
        {a: 1 - r for a, r in reduction.items()})
    return DesignResult(
        control_rate=float(control_rate),
        mde=float(mde),
        alpha=float(alpha),
        alpha_per_test=alpha_per_test,
        power=float(power),
        correction=correction,
        n_per_group=_apportion(n_total, shares),
        n_total=n_total,
        variance_reduction=reduction,
        adjusted_mde=adjusted,
    )


def _smallest_mde(n_total: int, control_rate: float, shares: dict[str, float],
                  alpha_per_test: float, power: float,
                  scale: Mapping[str, float] | None) -> float:
    """The smallest churn reduction ``n_total`` customers detect (variances times ``scale``)."""

    def excess(m: float) -> float:
        return float(_required_total(m, control_rate, shares, alpha_per_test, power,
                                     scale)) - n_total

    largest = control_rate * (1 - 1e-9)  # arm churn (almost) 0: the largest reduction
    if excess(largest) > 0:
        need = excess(largest) + n_total
        raise ValueError(
            f"n_total={n_total} is too small to detect any churn reduction: even removing all "
            f"churn (mde = control_rate = {control_rate:g}) needs about {math.ceil(need)} customers"
        )
    # The smallest mde that n_total reaches. Required N falls with mde for power >= 0.5; a
    # coarse log grid first brackets the first crossing, so powers below 0.5 (where it need
    # not be monotone) also give the smallest root.
    grid = np.geomspace(control_rate * 1e-9, largest, 200)
    ok = _required_total(grid, control_rate, shares, alpha_per_test, power, scale) <= n_total
    first = int(np.argmax(ok))
    if first == 0:
        return float(grid[0])
    return float(brentq(excess, grid[first - 1], grid[first], xtol=1e-14, rtol=1e-12,
                        maxiter=500))


def _required_total(
    mde: float | np.ndarray,
    control_rate: float,
    shares: dict[str, float],
    alpha_per_test: float,
    power: float,
    scale: Mapping[str, float] | None = None,
) -> np.ndarray:
    """Smallest real total N at which every arm's test reaches ``power`` (vectorized in mde).

    ``scale`` multiplies an arm's variances (``1 - variance reduction``), and so its n.
    """
    groups = list(shares)
    control_share = shares[groups[0]]
    need = np.zeros(np.shape(mde))
    for arm in groups[1:]:
        # sample 1 = arm (rate control_rate - mde), sample 2 = control, ratio = n_control / n_arm
        n_arm = samplesize_proportions_2indep_onetail(
            diff=-np.asarray(mde, dtype=float),
            prop2=control_rate,
            power=power,
            ratio=control_share / shares[arm],
            alpha=alpha_per_test,
            alternative="two-sided",
        )
        factor = 1.0 if scale is None else scale[arm]
        need = np.maximum(need, factor * n_arm / shares[arm])
    return need


def _apportion(n_total: int, shares: dict[str, float]) -> dict[str, int]:
    """Split ``n_total`` into whole groups by the shares (largest remainder method)."""
    exact = {g: n_total * s for g, s in shares.items()}
    counts = {g: math.floor(v) for g, v in exact.items()}
    left = n_total - sum(counts.values())
    for g in sorted(exact, key=lambda g: counts[g] - exact[g])[:left]:
        counts[g] += 1
    return counts


def _check_reduction(value: float | Mapping[str, float] | None, arms: list[str]
                     ) -> dict[str, float] | None:
    """A variance reduction in [0, 1) per arm (one number applies to every arm)."""
    if value is None:
        return None
    given = value if isinstance(value, Mapping) else dict.fromkeys(arms, value)
    out = {}
    for arm in arms:
        if arm not in given:
            raise ValueError(f"variance_reduction has no value for arm {arm!r}")
        r = given[arm]
        if not (isinstance(r, numbers.Real) and not isinstance(r, bool) and 0 <= r < 1):
            raise ValueError(f"variance_reduction must be in [0, 1), got {r!r}"
                             + (f" for arm {arm!r}" if isinstance(value, Mapping) else ""))
        out[arm] = float(r)
    return out


def _check_mde(mde: float, control_rate: float) -> float:
    if not (isinstance(mde, numbers.Real) and math.isfinite(mde) and mde > 0):
        raise ValueError(f"mde must be a positive churn reduction, got {mde!r}")
    if control_rate - mde <= 0:
        raise ValueError(
            f"mde={mde:g} must be below control_rate={control_rate:g}: the offer's churn "
            "rate control_rate - mde must stay above 0"
        )
    return float(mde)


def _check(
    control_rate: float,
    alpha: float,
    power: float,
    correction: str,
    control: str,
    arms: Sequence[str],
    allocation: Mapping[str, float] | None,
) -> tuple[dict[str, float], float]:
    """Validate the common arguments; return (shares control first, alpha per test)."""
    for name, value in (("control_rate", control_rate), ("alpha", alpha), ("power", power)):
        if not (isinstance(value, numbers.Real) and 0.0 < value < 1.0):
            raise ValueError(f"{name} must be strictly between 0 and 1, got {value!r}")
    if correction not in CORRECTIONS:
        raise ValueError(f"correction must be one of {CORRECTIONS}, got {correction!r}")
    groups = [control, *arms]
    if len(groups) < 2:
        raise ValueError("arms must name at least one offer arm")
    if len(set(groups)) != len(groups):
        raise ValueError(f"control and arms must be distinct names, got {groups}")
    if allocation is None:
        shares = {g: 1.0 / len(groups) for g in groups}
    else:
        shares = check_allocation(allocation, groups)
    k = len(groups) - 1
    alpha_per_test = float(alpha) if correction == "none" else float(alpha) / k
    return shares, alpha_per_test
