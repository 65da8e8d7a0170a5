"""RCT readout of a randomized retention-offer test (SPEC section 4).

Per group: customers and churn rate. Per offer arm, against the control: the churn
reduction ``ate = churn_rate_control - churn_rate_arm`` (positive = the offer keeps
customers), its Newcombe score interval, a two-sided pooled z-test p-value and that
p-value adjusted over the arms. When planned shares are given, a chi-square test for
sample-ratio mismatch (SRM) of the group counts. With ``analysis.cuped`` the readout
also carries each effect adjusted for pre-treatment covariates (``adjustment.py``).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace

import numpy as np
import pandas as pd
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest

from .adjustment import AdjustedResult, adjust_dataset
from .assignment import srm_pvalue
from .config import CORRECTIONS, Correction, ExperimentConfig, check_allocation
from .data import Dataset
from .errors import DataError, Problem, UpliftWarning
from .formatting import Paragraph, Table, interval, pct, pp, pval, render_markdown

__all__ = [
    "CORRECTIONS",
    "ArmEffect",
    "GroupStats",
    "RctResult",
    "SrmWarning",
    "analyze_dataset",
    "analyze_rct",
]


class SrmWarning(UpliftWarning):
    """The group counts do not match the planned allocation (sample-ratio mismatch)."""


@dataclass(frozen=True)
class GroupStats:
    """Size and churn of one group."""

    n: int
    churners: int
    churn_rate: float


@dataclass(frozen=True)
class ArmEffect:
    """One offer arm against the control; ``ate`` > 0 means the offer reduces churn."""

    arm: str
    n: int
    churners: int
    churn_rate: float
    ate: float
    ci_low: float
    ci_high: float
    pvalue: float
    pvalue_adj: float


# to_frame columns: the group name, then ArmEffect's fields (n, churners, ..., pvalue_adj).
_FRAME_COLUMNS = ("group", *(f.name for f in fields(ArmEffect) if f.name != "arm"))


@dataclass(frozen=True)
class RctResult:
    """The RCT readout: control stats, one effect per arm, SRM test, adjusted effects."""

    control: str
    control_stats: GroupStats
    effects: tuple[ArmEffect, ...]
    n_customers: int
    churn_rate_observed: float
    srm_pvalue: float | None
    srm_detected: bool
    alpha: float
    correction: str
    adjusted: AdjustedResult | None = None
    """The covariate-adjusted effects (``analysis.cuped``), when there were covariates."""

    def metrics(self) -> dict[str, float]:
        """The SPEC section 4 metrics, then the adjusted ones; ``control`` is the literal word.

        Returns:
            ``n_customers``, ``n_control``, ``n_<arm>``, ``churn_rate_control``,
            ``churn_rate_<arm>``, ``ate_<arm>`` with ``_ci_low``, ``_ci_high``,
            ``_pvalue``, ``_pvalue_adj``, ``srm_pvalue`` (only when an allocation was
            given) and ``churn_rate_observed``; with an adjustment also
            ``ate_<arm>_cuped`` (with the same suffixes) and ``variance_reduction_<arm>``.
        """
        out: dict[str, float] = {
            "n_customers": self.n_customers,
            "n_control": self.control_stats.n,
        }
        out.update({f"n_{e.arm}": e.n for e in self.effects})
        out["churn_rate_control"] = float(self.control_stats.churn_rate)
        out.update({f"churn_rate_{e.arm}": float(e.churn_rate) for e in self.effects})
        for e in self.effects:
            out[f"ate_{e.arm}"] = float(e.ate)
            out[f"ate_{e.arm}_ci_low"] = float(e.ci_low)
            out[f"ate_{e.arm}_ci_high"] = float(e.ci_high)
            out[f"ate_{e.arm}_pvalue"] = float(e.pvalue)
            out[f"ate_{e.arm}_pvalue_adj"] = float(e.pvalue_adj)
        if self.srm_pvalue is not None:
            out["srm_pvalue"] = float(self.srm_pvalue)
        out["churn_rate_observed"] = float(self.churn_rate_observed)
        if self.adjusted is not None:
            out.update(self.adjusted.metrics())
        return out

    def to_frame(self) -> pd.DataFrame:
        """One row per group, control first; effect columns are NaN for the control."""
        c = self.control_stats
        rows = [
            {"group": self.control, "n": c.n, "churners": c.churners, "churn_rate": c.churn_rate}
        ]
        rows += [
            {"group": e.arm, **{k: getattr(e, k) for k in _FRAME_COLUMNS[1:]}} for e in self.effects
        ]
        frame = pd.DataFrame(rows, columns=list(_FRAME_COLUMNS))
        return frame.astype({"n": "int64", "churners": "int64"})

    def table(self) -> Table:
        """The readout as displayed everywhere: per group, the effect vs the control.

        With an adjustment, each offer's row is followed by its covariate-adjusted
        (``CUPED``) effect, interval and p-values in the same columns, and its variance
        reduction in a last column.
        """
        level = f"{100 * (1 - self.alpha):g}%"
        c = self.control_stats
        adj = self.adjusted
        name = self.control if self.control == "control" else f"{self.control} (control)"
        header = ["group", "customers", "churners", "churn rate", "churn reduction",
                  f"{level} CI", "p-value", f"adjusted p ({self.correction})"]
        blank = [""] * (len(header) + (adj is not None) - 4)
        rows = [[name, f"{c.n:,}", f"{c.churners:,}", pct(c.churn_rate), *blank]]
        for e in self.effects:
            rows.append([e.arm, f"{e.n:,}", f"{e.churners:,}", pct(e.churn_rate), pp(e.ate),
                         interval(e.ci_low, e.ci_high, pp), pval(e.pvalue),
                         pval(e.pvalue_adj), *([""] if adj is not None else [])])
            if adj is not None:
                a = adj.effect(e.arm)
                rows.append([f"{e.arm} (CUPED)", "", "", "", pp(a.ate),
                             interval(a.ci_low, a.ci_high, pp), pval(a.pvalue),
                             pval(a.pvalue_adj), pct(a.variance_reduction)])
        if adj is not None:
            header.append("variance reduction")
        return Table.build(header, rows, numeric=range(1, len(header)),
                           title=f"Churn by group, effect vs {self.control} "
                                 "(positive = fewer churn)")

    def paragraphs(self) -> list[Paragraph]:
        """What the table means, and the sample-ratio check."""
        out = [Paragraph(
            f"{self.n_customers:,} customers, observed churn {pct(self.churn_rate_observed)}. "
            "Churn reduction = control churn rate - offer churn rate in percentage points "
            "(positive = fewer churn), with Newcombe's score interval; two-sided pooled "
            f"z-test, p-values adjusted over offers by {self.correction}.")]
        if self.srm_pvalue is None:
            out.append(Paragraph("SRM check: not run (no planned allocation given)."))
        elif self.srm_detected:
            out.append(Paragraph(
                f"SRM check: sample-ratio mismatch detected (chi-square p = "
                f"{pval(self.srm_pvalue)}); the group sizes do not match the allocation, so "
                "the effects above may be biased.", "warn"))
        else:
            out.append(Paragraph(f"SRM check: OK (chi-square p = {pval(self.srm_pvalue)}); "
                                 "the group sizes match the planned allocation."))
        if self.adjusted is not None:
            out += self.adjusted.paragraphs()
        return out

    def adjusted_summary(self) -> str | None:
        """One line: each offer's adjusted effect beside the plain one (None without one)."""
        return None if self.adjusted is None else self.adjusted.summary()

    def to_markdown(self) -> str:
        """The readout table and its notes in Markdown."""
        return render_markdown(self.table(), self.paragraphs())


def analyze_rct(
    treatment: Sequence[str] | np.ndarray | pd.Series,
    churned: Sequence[int] | np.ndarray | pd.Series,
    *,
    control: str,
    arms: Sequence[str],
    allocation: Mapping[str, float] | None = None,
    alpha: float = 0.05,
    correction: Correction = "holm",
    srm_threshold: float = 0.001,
) -> RctResult:
    """Analyze a randomized test: churn per group, effect of each arm vs the control.

    Args:
        treatment: Group name per customer (the control or one of ``arms``).
        churned: 0/1 per customer, 1 = churned; same length as ``treatment``.
        control: Name of the no-offer group.
        arms: Names of the offer arms, in reporting order.
        allocation: Planned share per group; enables the SRM chi-square test.
        alpha: Significance level; the CIs have coverage ``1 - alpha``.
        correction: Multiple-testing adjustment of the p-values over the arms.
        srm_threshold: SRM is flagged (and warned about) when its p-value is below this.

    Returns:
        The readout; a :class:`SrmWarning` is issued when SRM is detected.

    Raises:
        ValueError: On inconsistent inputs (lengths, unknown or empty groups, non-0/1
            outcomes, bad options).

    Example:
        >>> res = analyze_rct(["c"] * 100 + ["a"] * 100, [1] * 30 + [0] * 70 + [1] * 20 + [0] * 80,
        ...                   control="c", arms=["a"])
        >>> round(res.metrics()["ate_a"], 6)
        0.1
    """
    arms = list(arms)
    groups = [control, *arms]
    _check_options(groups, alpha, correction, srm_threshold)
    shares = check_allocation(allocation, groups) if allocation is not None else None

    labels = treatment if isinstance(treatment, pd.Series) else np.asarray(treatment, dtype=object)
    y = np.asarray(churned)
    if y.ndim != 1 or len(labels) != len(y):
        raise ValueError(
            f"treatment and churned must be 1-d and of equal length, got {len(labels)} and {len(y)}"
        )
    if y.dtype.kind not in "biuf":
        raise ValueError(f"churned must be numeric 0/1, got dtype {y.dtype}")
    y = y.astype(np.float64, copy=False)
    if y.size and not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("churned must contain only 0 and 1 (1 = churned); found other values")

    codes, uniques = pd.factorize(labels, use_na_sentinel=True)
    if (codes < 0).any():
        raise ValueError("treatment contains missing values")
    unknown = sorted(str(u) for u in uniques if u not in set(groups))
    if unknown:
        raise ValueError(f"treatment has values that are neither the control nor an arm: {unknown}")
    sizes = np.bincount(codes, minlength=len(uniques))
    counts = np.bincount(codes, weights=y, minlength=len(uniques))
    index = {str(u): i for i, u in enumerate(uniques)}
    empty = [g for g in groups if g not in index]
    if empty:
        raise ValueError(f"no customers in group(s) {empty}; every group needs rows")
    n = np.array([int(sizes[index[g]]) for g in groups])
    x = np.array([round(float(counts[index[g]])) for g in groups])

    rates = x / n
    control_stats = GroupStats(n=int(n[0]), churners=int(x[0]), churn_rate=float(rates[0]))
    pvalues = [_pooled_z_pvalue(x[0], n[0], x[i], n[i]) for i in range(1, len(groups))]
    if correction == "none":
        adjusted = list(pvalues)
    else:
        adjusted = list(multipletests(pvalues, alpha=alpha, method=correction)[1])
    effects = []
    for i, arm in enumerate(arms, start=1):
        low, high = confint_proportions_2indep(
            x[0], n[0], x[i], n[i], method="newcomb", compare="diff", alpha=alpha
        )
        effects.append(
            ArmEffect(
                arm=arm,
                n=int(n[i]),
                churners=int(x[i]),
                churn_rate=float(rates[i]),
                ate=float(rates[0] - rates[i]),
                ci_low=float(low),
                ci_high=float(high),
                pvalue=float(pvalues[i - 1]),
                pvalue_adj=float(adjusted[i - 1]),
            )
        )

    n_total = int(n.sum())
    srm_p: float | None = None
    srm_detected = False
    if shares is not None:
        srm_p = srm_pvalue(n, [shares[g] for g in groups])
        srm_detected = bool(srm_p < srm_threshold)
        if srm_detected:
            observed = ", ".join(
                f"{g}={k:,} ({k / n_total:.1%} vs {shares[g]:.1%} planned)"
                for g, k in zip(groups, n, strict=True)
            )
            warnings.warn(
                f"Sample-ratio mismatch: group sizes differ from the planned allocation "
                f"(chi-square p = {srm_p:.3g} < srm_threshold {srm_threshold:g}): "
                f"{observed}. Check the randomization and the data pipeline; the effect "
                "estimates may be biased.",
                SrmWarning,
                stacklevel=2,
            )

    return RctResult(
        control=control,
        control_stats=control_stats,
        effects=tuple(effects),
        n_customers=n_total,
        churn_rate_observed=float(x.sum() / n_total),
        srm_pvalue=srm_p,
        srm_detected=srm_detected,
        alpha=float(alpha),
        correction=correction,
    )


def _pooled_z_pvalue(x1: int, n1: int, x2: int, n2: int) -> float:
    """Two-sided pooled z-test p-value; 1.0 when the pooled variance is zero (equal rates)."""
    pooled = (x1 + x2) / (n1 + n2)
    if pooled <= 0.0 or pooled >= 1.0:
        return 1.0  # both groups all-0 or all-1: the rates are identical
    _, pvalue = proportions_ztest(np.array([x1, x2]), np.array([n1, n2]))
    return float(pvalue)


def _check_options(groups: list[str], alpha: float, correction: str, srm_threshold: float) -> None:
    if len(groups) < 2:
        raise ValueError("arms must name at least one offer arm")
    if len(set(groups)) != len(groups):
        raise ValueError(f"control and arms must be distinct names, got {groups}")
    if "control" in groups[1:]:
        raise ValueError(
            "an arm may not be named 'control': its metrics would clash with n_control "
            "and churn_rate_control"
        )
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be strictly between 0 and 1, got {alpha}")
    if correction not in CORRECTIONS:
        raise ValueError(f"correction must be one of {CORRECTIONS}, got {correction!r}")
    if not 0.0 < srm_threshold < 1.0:
        raise ValueError(f"srm_threshold must be strictly between 0 and 1, got {srm_threshold}")


def analyze_dataset(dataset: Dataset, cfg: ExperimentConfig, *, adjust: bool = True
                    ) -> RctResult:
    """The readout of a loaded dataset with the config's analysis settings.

    With ``analysis.on_srm: fail`` a sample-ratio mismatch raises a ``DataError``
    naming the data file and the treatment column; with ``warn`` it is a warning.
    With ``adjust`` (and ``analysis.cuped.enabled``) the covariate-adjusted effects
    are added (``RctResult.adjusted``); ``uplift validate`` skips them.
    """
    settings = cfg.analysis
    with warnings.catch_warnings():
        if settings.on_srm == "fail":
            warnings.simplefilter("ignore", SrmWarning)
        result = analyze_rct(
            dataset.treatment,
            dataset.churned,
            control=cfg.control,
            arms=cfg.arm_names,
            allocation=cfg.allocation,
            alpha=settings.alpha,
            correction=settings.correction,
            srm_threshold=settings.srm_threshold,
        )
    if result.srm_detected and settings.on_srm == "fail":
        observed = result.to_frame().set_index("group")["n"] / result.n_customers
        planned = cfg.allocation or {}
        shares = ", ".join(f"{g} {observed[g]:.1%} vs {planned[g]:.1%}" for g in cfg.groups)
        raise DataError(Problem(
            dataset.source,
            f"column {dataset.treatment_column!r}",
            f"sample ratio mismatch against the allocation (chi-square p = "
            f"{result.srm_pvalue or 0:.3g} < analysis.srm_threshold {settings.srm_threshold:g}; "
            f"{shares}); analysis.on_srm is 'fail'",
        ))
    if adjust:
        result = replace(result, adjusted=adjust_dataset(dataset, cfg))
    return result
