"""Covariate-adjusted readout (CUPED): the same effects with tighter intervals.

Pre-treatment covariates predict churn; removing the part of churn they explain
shrinks the variance of each offer's effect estimate, so the same test gives a
narrower interval. Two methods, each giving the churn reduction ``control - offer``:

- ``linear``: Lin's (2013) interacted regression, per offer on the control and offer
  rows only, ``churned ~ 1 + T + Xc + T:Xc`` with ``Xc`` the covariates centered at
  the mean of those rows; the effect is minus the coefficient of ``T``, with HC2
  (leverage-corrected) robust standard errors, fitted by statsmodels OLS. Categories
  are one-hot with the most frequent level as reference (levels with fewer than 2
  customers in some group, and all beyond the 20 most frequent, join the reference);
  a missing number gets an indicator column and the mean (the indicator makes the
  estimate independent of the value imputed). Deterministic: no random step.
- ``model``: a K-fold cross-fitted LightGBM churn model on the covariates only
  (never the group), fitted on every group and predicting each row from the folds
  that did not contain it; its risk score, calibrated by a least-squares line in each
  group, is the outcome model of the augmented inverse-propensity (doubly robust)
  estimator with the design's known assignment probabilities, averaged over every
  customer of the test; the standard error is that of its influence function.
  Folds and LightGBM seeds derive from ``model.seed`` and the fixed word
  :data:`SEED_STREAM`.

Variance reduction per offer = 1 - adjusted variance / plain variance, the plain one
being the unpooled variance of the difference of proportions,
``p_c (1 - p_c) / n_c + p_a (1 - p_a) / n_a``. Intervals and p-values are normal
(two-sided) at ``1 - alpha``; p-values are adjusted over offers as in the plain readout.

Covariates must be measured before the assignment: a column the offer can change (a
post-treatment column) biases the estimate. A covariate that is constant, entirely
missing or collinear with earlier ones is left out with an :class:`AdjustmentWarning`;
with fewer than 2 customers per covariate column in a group the linear method keeps
fewer covariates (in the order given) and says so.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import norm
from statsmodels.regression.linear_model import OLS
from statsmodels.stats.multitest import multipletests

from .assignment import assignment_shares
from .config import CORRECTIONS, CUPED_METHODS, Correction, CupedMethod, ExperimentConfig
from .data import Dataset
from .errors import UpliftWarning
from .formatting import Paragraph, Table, interval, pct, pp, pval, render_markdown, with_interval

__all__ = ["AdjustedEffect", "AdjustedResult", "AdjustmentWarning", "adjust_dataset",
           "adjust_effects", "adjusted_metric_names", "cross_fit_predictions",
           "resolve_covariates"]

MIN_LEVEL_ROWS = 2  # customers a category level (or missing indicator) needs in every group
MAX_LEVELS = 20  # one-hot columns per categorical covariate at most
ROWS_PER_COLUMN = 2  # customers per covariate column a group needs (linear method)
SEED_STREAM = 0xC0FED  # mixed with model.seed: folds and LightGBM seeds of the model method
_TOL = 1e-7  # a column closer than this (relative) to the span of earlier ones is collinear
SUFFIXES = ("_cuped", "_cuped_ci_low", "_cuped_ci_high", "_cuped_pvalue", "_cuped_pvalue_adj")


class AdjustmentWarning(UpliftWarning):
    """A covariate was left out of the adjustment, or fewer covariates were used."""


def adjusted_metric_names(arms: Sequence[str]) -> list[str]:
    """``ate_<arm>_cuped`` (with CI, p-value, adjusted p) and ``variance_reduction_<arm>``."""
    return [name for arm in arms
            for name in (*(f"ate_{arm}{s}" for s in SUFFIXES), f"variance_reduction_{arm}")]


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class AdjustedEffect:
    """One offer's covariate-adjusted churn reduction beside the plain one."""

    arm: str
    n: int
    ate: float
    se: float
    ci_low: float
    ci_high: float
    pvalue: float
    pvalue_adj: float
    plain_ate: float
    plain_se: float
    variance_reduction: float
    columns: int
    """Covariate columns the estimate used (one-hot levels and indicators counted)."""


@dataclass(frozen=True)
class AdjustedResult:
    """The covariate-adjusted effects of every offer, the method and what it used."""

    control: str
    method: str
    effects: tuple[AdjustedEffect, ...]
    covariates: tuple[str, ...]
    alpha: float
    correction: str
    notes: tuple[str, ...] = ()
    r2: float | None = None
    """``model`` method: out-of-fold R-squared of the churn model on every row."""

    def effect(self, arm: str) -> AdjustedEffect:
        """The adjusted effect of ``arm``."""
        return next(e for e in self.effects if e.arm == arm)

    def metrics(self) -> dict[str, float]:
        """Per offer ``ate_<arm>_cuped`` (``_ci_low``, ``_ci_high``, ``_pvalue``, ``_pvalue_adj``).

        Returns:
            Those five and ``variance_reduction_<arm>`` for every offer, in offer order.
        """
        out: dict[str, float] = {}
        for e in self.effects:
            values = (e.ate, e.ci_low, e.ci_high, e.pvalue, e.pvalue_adj)
            out.update({f"ate_{e.arm}{s}": float(v) for s, v in zip(SUFFIXES, values,
                                                                    strict=True)})
            out[f"variance_reduction_{e.arm}"] = float(e.variance_reduction)
        return out

    def to_frame(self) -> pd.DataFrame:
        """One row per offer with every field of :class:`AdjustedEffect`."""
        return pd.DataFrame([vars(e) for e in self.effects])

    def describe(self) -> str:
        """The method in a few words, as the tables' notes say it."""
        if self.method == "linear":
            how = "Lin's regression with offer-by-covariate interactions, HC2 standard errors"
        else:
            how = ("cross-fitted LightGBM churn model as the outcome model of the doubly "
                   "robust estimator with the design's propensities")
            if self.r2 is not None:
                how += f"; out-of-fold R² {self.r2:.3f}"
        return f"{self.method}: {how}"

    def table(self) -> Table:
        """Per offer: plain and adjusted churn reduction, the adjusted CI and p-values."""
        level = f"{100 * (1 - self.alpha):g}%"
        rows = [[e.arm, f"{e.n:,}", pp(e.plain_ate), pp(e.ate),
                 interval(e.ci_low, e.ci_high, pp), pval(e.pvalue), pval(e.pvalue_adj),
                 f"{100 * e.plain_se:.3f} -> {100 * e.se:.3f}", pct(e.variance_reduction),
                 str(e.columns)] for e in self.effects]
        return Table.build(
            ["offer", "customers", "plain reduction", "adjusted reduction", f"{level} CI",
             "p-value", f"adjusted p ({self.correction})", "std. error (pp)",
             "variance reduction", "covariate columns"], rows, numeric=range(1, 10),
            title=f"Covariate-adjusted effect vs {self.control} ({self.method})")

    def paragraphs(self) -> list[Paragraph]:
        """What the adjustment did, and every covariate it left out."""
        names = ", ".join(self.covariates) if self.covariates else "none"
        out = [Paragraph(
            f"CUPED: effects adjusted for pre-treatment covariates ({self.describe()}). "
            f"Covariates: {names}. Variance reduction = 1 - adjusted variance / plain "
            "variance (plain: unpooled p(1-p)/n per group); the adjusted interval is "
            "normal, its p-values two-sided and adjusted over offers by "
            f"{self.correction}.")]
        out += [Paragraph(note, "note") for note in self.notes]
        return out

    def to_markdown(self) -> str:
        """The adjusted table and its notes in Markdown."""
        return render_markdown(self.table(), self.paragraphs())

    def summary(self) -> str:
        """One line per run: each offer's adjusted effect, its CI and variance reduction."""
        parts = [f"{e.arm} {with_interval(e.ate, e.ci_low, e.ci_high, pp)} (plain "
                 f"{pp(e.plain_ate)}; variance -{pct(e.variance_reduction)})"
                 for e in self.effects]
        return f"Covariate-adjusted effects ({self.method}): " + "; ".join(parts)


# --------------------------------------------------------------------------- covariates


def _is_categorical(series: pd.Series, listed: bool) -> bool:
    numeric = pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
    return listed or not numeric


def _labels(series: pd.Series) -> pd.Series:
    """Category labels as text; a missing value is its own level, ``(missing)``."""
    return series.astype(str).where(series.notna(), "(missing)").reset_index(drop=True)


def _screen(frame: pd.DataFrame, categorical: set[str]) -> tuple[list[str], list[str]]:
    """Covariates worth using: not entirely missing and not constant; and why others aren't."""
    kept, notes = [], []
    for column in frame.columns:
        series = frame[column]
        if series.isna().all():
            notes.append(f"covariate {column!r} is missing in every row; left out")
        elif series.nunique(dropna=False) < 2:
            notes.append(f"covariate {column!r} is constant; left out")
        else:
            kept.append(column)
    return kept, notes


def _linear_design(frame: pd.DataFrame, codes: np.ndarray, n_groups: int,
                   categorical: set[str]) -> tuple[np.ndarray, list[str], list[str], list[str]]:
    """The covariate columns of the linear method: (matrix, labels, owners, notes).

    Args:
        frame: The screened covariates, one row per customer.
        codes: Group index per row (0 .. n_groups - 1).
        n_groups: Number of groups; levels and indicators need rows in every one.
        categorical: Covariates to one-hot even when numeric.
    """
    columns: list[np.ndarray] = []
    labels: list[str] = []
    owners: list[str] = []
    notes: list[str] = []

    def per_group(mask: np.ndarray) -> np.ndarray:
        return np.bincount(codes[mask], minlength=n_groups)

    for name in frame.columns:
        series = frame[name]
        if _is_categorical(series, name in categorical):
            text = _labels(series)
            level_codes, levels = pd.factorize(text)
            per_level = np.zeros((len(levels), n_groups), dtype=np.int64)
            np.add.at(per_level, (level_codes, codes), 1)
            counts, fewest = per_level.sum(axis=1), per_level.min(axis=1)
            order = sorted(range(len(levels)), key=lambda i: (-counts[i], levels[i]))
            ok = [levels[i] for i in order[1:] if fewest[i] >= MIN_LEVEL_ROWS][:MAX_LEVELS]
            if not ok:
                notes.append(f"covariate {name!r}: no level besides {levels[order[0]]!r} has "
                             f"{MIN_LEVEL_ROWS} customers in every group; left out")
            for level in ok:
                columns.append((text == level).to_numpy(dtype=float))
                labels.append(f"{name}={level}")
                owners.append(name)
            continue
        values = series.to_numpy(dtype=float, na_value=np.nan)
        missing = np.isnan(values)
        filled = np.where(missing, np.nanmean(values), values)
        if np.ptp(filled) > 0:
            columns.append(filled)
            labels.append(name)
            owners.append(name)
        if missing.any() and min(per_group(missing).min(),
                                 per_group(~missing).min()) >= MIN_LEVEL_ROWS:
            columns.append(missing.astype(float))
            labels.append(f"{name} missing")
            owners.append(name)
    matrix = np.column_stack(columns) if columns else np.empty((len(frame), 0))
    return matrix, labels, owners, notes


def _independent(matrix: np.ndarray) -> np.ndarray:
    """Which columns are not (nearly) in the span of the columns before them.

    The diagonal of R in an unpivoted QR is each column's distance from the span of
    the earlier ones.
    """
    if matrix.shape[1] == 0:
        return np.zeros(0, dtype=bool)
    r = np.linalg.qr(matrix, mode="r")
    norms = np.linalg.norm(matrix, axis=0)
    return np.abs(np.diag(r)) > _TOL * np.maximum(norms, np.finfo(float).tiny)


# --------------------------------------------------------------------------- linear


def _lin_fit(y: np.ndarray, t: np.ndarray, x: np.ndarray) -> tuple[float, float, np.ndarray]:
    """Lin's interacted OLS on one offer's rows: (coefficient of T, its HC2 error, columns kept).

    A covariate column collinear with the offer indicator and the columns before it
    in these rows is left out, with its interaction; so is an interaction alone when
    its covariate is constant within a group.
    """
    xc = x - x.mean(axis=0)
    design = np.column_stack([np.ones(len(y)), t, xc, t[:, None] * xc])
    keep = _independent(design)
    p = x.shape[1]
    keep[2 + p:] &= keep[2:2 + p]  # no interaction without its main effect
    fit = OLS(y, design[:, keep]).fit(cov_type="HC2")
    return float(fit.params[1]), float(fit.bse[1]), keep[2:2 + p]


def _fit_offer(y: np.ndarray, t: np.ndarray, x: np.ndarray, owners: list[str],
               offer: str) -> tuple[float, float, int, list[str]]:
    """The linear estimate for one offer, keeping ``ROWS_PER_COLUMN`` customers per column.

    Returns the coefficient of T, its standard error, the covariate columns used and
    notes on what was left out.
    """
    notes: list[str] = []
    smallest = int(min(t.sum(), len(t) - t.sum()))
    budget = smallest // ROWS_PER_COLUMN
    order = list(dict.fromkeys(owners))
    chosen: list[str] = []
    used = 0
    for name in order:
        width = owners.count(name)
        if used + width <= budget:
            chosen.append(name)
            used += width
    left = [n for n in order if n not in chosen]
    if left:
        notes.append(f"{offer}: {smallest:,} customers in its smaller group allow {budget} "
                     f"covariate columns ({ROWS_PER_COLUMN} customers each); left out "
                     f"{', '.join(map(repr, left))}")
    while True:
        cols = np.array([o in chosen for o in owners], dtype=bool)
        coef, se, kept = _lin_fit(y, t, x[:, cols])
        if np.isfinite(se) or not chosen:
            break
        dropped = chosen.pop()  # a customer alone on a column: HC2 is undefined
        notes.append(f"{offer}: covariate {dropped!r} left out (a customer with leverage 1 "
                     "makes the robust standard error undefined)")
    names = [o for o, c in zip(owners, cols, strict=True) if c]
    lost = list(dict.fromkeys(o for o, k in zip(names, kept, strict=True) if not k))
    if lost:
        notes.append(f"{offer}: {', '.join(map(repr, lost))} collinear with the offer or the "
                     "covariates before it in the rows of this offer and the control (a "
                     "column the offer changes?); left out")
    return coef, se, int(kept.sum()), notes


# --------------------------------------------------------------------------- model


def _fold_of_rows(n: int, folds: int, seed: int) -> tuple[np.ndarray, list[int]]:
    """A balanced random fold per row and one LightGBM seed per fold, both from ``seed``."""
    fold_seq, *model_seqs = np.random.SeedSequence([int(seed), SEED_STREAM]).spawn(folds + 1)
    fold = np.random.default_rng(fold_seq).permutation(n) % folds
    return fold, [int(s.generate_state(1)[0] % 2**31) for s in model_seqs]


def cross_fit_predictions(x: np.ndarray, y: np.ndarray, *, folds: int, seed: int,
                          make_model: Callable[[int], Any],
                          fit_params: Mapping[str, Any] | None = None) -> np.ndarray:
    """Out-of-fold P(churn): each row predicted by a model fitted on the other folds only.

    Args:
        x: Covariate matrix (never the group).
        y: 0/1 churn per row.
        folds: Number of folds K.
        seed: Derives the fold of each row and each fold model's seed.
        make_model: ``make_model(seed)`` returns an unfitted classifier.
        fit_params: Passed to every ``fit``.
    """
    fold, seeds = _fold_of_rows(len(y), folds, seed)
    out = np.empty(len(y))
    for k in range(folds):
        test = fold == k
        model = make_model(seeds[k]).fit(x[~test], y[~test], **(fit_params or {}))
        out[test] = model.predict_proba(x[test])[:, 1]
    return out


def _tree_matrix(frame: pd.DataFrame, categorical: set[str]) -> tuple[np.ndarray, list[int]]:
    """Numbers as they are (NaN kept), categories as sorted integer codes (missing NaN)."""
    columns, cats = [], []
    for j, name in enumerate(frame.columns):
        series = frame[name]
        if _is_categorical(series, name in categorical):
            text = series.astype(str).where(series.notna())
            codes = pd.Categorical(text, categories=sorted(text.dropna().unique())).codes
            columns.append(np.where(codes < 0, np.nan, codes).astype(float))
            cats.append(j)
        else:
            columns.append(series.to_numpy(dtype=float, na_value=np.nan))
    return np.column_stack(columns), cats


def _aipw(y: np.ndarray, labels: np.ndarray, risk: np.ndarray, control: str, arm: str,
          shares: Mapping[str, float]) -> tuple[float, float]:
    """Doubly robust churn reduction of ``arm`` over every row, and its influence-function SE.

    The outcome model of each group is a least-squares line in the risk score, fitted
    on that group's rows; ``shares`` are the known assignment probabilities.
    """
    mu, term = {}, np.zeros(len(y))
    for group, sign in ((control, 1.0), (arm, -1.0)):
        rows = labels == group
        a = np.column_stack([np.ones(int(rows.sum())), risk[rows]])
        coef = np.linalg.lstsq(a, y[rows], rcond=None)[0]
        mu[group] = coef[0] + coef[1] * risk
        term += sign * np.where(rows, y - mu[group], 0.0) / shares[group]
    psi = mu[control] - mu[arm] + term
    return float(psi.mean()), float(psi.std(ddof=1) / np.sqrt(len(y)))


# --------------------------------------------------------------------------- entry points


def adjust_effects(
    covariates: pd.DataFrame,
    treatment: Sequence[str] | np.ndarray | pd.Series,
    churned: Sequence[int] | np.ndarray | pd.Series,
    *,
    control: str,
    arms: Sequence[str],
    method: CupedMethod = "linear",
    categorical: Sequence[str] = (),
    alpha: float = 0.05,
    correction: Correction = "holm",
    propensities: Mapping[str, float] | None = None,
    folds: int = 5,
    seed: int = 0,
    params: Mapping[str, Any] | None = None,
    n_jobs: int | None = None,
) -> AdjustedResult:
    """Covariate-adjusted churn reduction of each offer vs the control (see the module docs).

    Args:
        covariates: Pre-treatment covariates, one row per customer (only those: never
            the group, the outcome or the id).
        treatment: Group name per customer (the control or one of ``arms``).
        churned: 0/1 per customer, 1 = churned.
        control: Name of the no-offer group.
        arms: The offers, in reporting order.
        method: ``linear`` (interacted regression) or ``model`` (cross-fitted LightGBM,
            doubly robust).
        categorical: Covariates to treat as categories even when numeric (text and
            booleans always are).
        alpha: The intervals have coverage ``1 - alpha``.
        correction: Adjustment of the p-values over offers.
        propensities: Assignment probability per group (``model``); default the
            observed shares.
        folds: Cross-fitting folds (``model``).
        seed: Derives the folds and LightGBM seeds (``model``).
        params: LightGBM settings (``model``).
        n_jobs: LightGBM threads (``model``); default the idle cores.

    Returns:
        The adjusted effects; an :class:`AdjustmentWarning` for each covariate left out.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> x = rng.normal(size=4000)
        >>> group = np.where(rng.random(4000) < 0.5, "c", "a")
        >>> y = (rng.random(4000) < 0.5 + 0.4 * np.tanh(x) - 0.05 * (group == "a")).astype(int)
        >>> res = adjust_effects(pd.DataFrame({"x": x}), group, y, control="c", arms=["a"])
        >>> 0.15 < res.effects[0].variance_reduction < 0.3
        True
    """
    if method not in CUPED_METHODS:
        raise ValueError(f"method must be one of {CUPED_METHODS}, got {method!r}")
    if correction not in CORRECTIONS:
        raise ValueError(f"correction must be one of {CORRECTIONS}, got {correction!r}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be strictly between 0 and 1, got {alpha}")
    groups = [control, *arms]
    labels = np.asarray(treatment, dtype=object).astype(str)
    y = np.asarray(churned, dtype=float)
    if len(covariates) != len(y) or len(labels) != len(y):
        raise ValueError("covariates, treatment and churned must have one row per customer")
    for group in groups:
        if not (labels == group).any():
            raise ValueError(f"no customers in group {group!r}")
    if isinstance(folds, bool) or not isinstance(folds, int) or not 2 <= folds <= len(y):
        raise ValueError(f"folds must be a whole number from 2 to the rows, got {folds!r}")
    inside = np.isin(labels, groups)
    frame = covariates.set_axis([str(c) for c in covariates.columns], axis=1)
    frame = frame.reset_index(drop=True)[inside].reset_index(drop=True)
    labels, y = labels[inside], y[inside]
    listed = {str(c) for c in categorical}
    names, notes = _screen(frame, listed)
    _warn(notes)

    with _blas_threads(n_jobs):
        if method == "linear":
            names, rows, more = _linear_rows(frame[names], labels, y, groups, listed)
            r2 = None
        else:
            shares = dict(propensities) if propensities is not None else {
                g: float(np.mean(labels == g)) for g in groups}
            risk = _cross_fit_risk(frame[names], y, listed, folds, seed, params, n_jobs)
            r2 = float(1 - np.sum((y - risk) ** 2) / np.sum((y - y.mean()) ** 2))
            rows = [(*_aipw(y, labels, risk, control, arm, shares), len(y), len(names))
                    for arm in arms]
            more = []
    notes += more

    z = float(norm.ppf(1 - alpha / 2))
    pvalues = [float(2 * norm.sf(abs(ate / se))) if se > 0 else 1.0 for ate, se, *_ in rows]
    adjusted = (list(pvalues) if correction == "none"
                else list(multipletests(pvalues, alpha=alpha, method=correction)[1]))
    effects = []
    for arm, (ate, se, n, width), p, p_adj in zip(arms, rows, pvalues, adjusted, strict=True):
        y_c, y_a = y[labels == control], y[labels == arm]
        p_c, p_a = y_c.mean(), y_a.mean()
        plain_var = p_c * (1 - p_c) / len(y_c) + p_a * (1 - p_a) / len(y_a)
        effects.append(AdjustedEffect(
            arm=arm, n=n, ate=ate, se=se, ci_low=ate - z * se, ci_high=ate + z * se, pvalue=p,
            pvalue_adj=float(p_adj), plain_ate=float(p_c - p_a),
            plain_se=float(np.sqrt(plain_var)),
            variance_reduction=float(1 - se**2 / plain_var) if plain_var > 0 else 0.0,
            columns=width))
    return AdjustedResult(control=control, method=method, effects=tuple(effects),
                          covariates=tuple(names), alpha=float(alpha), correction=correction,
                          notes=tuple(notes), r2=r2)


def _warn(notes: Sequence[str]) -> None:
    for note in notes:
        warnings.warn(f"Covariate adjustment: {note}", AdjustmentWarning, stacklevel=3)


@contextlib.contextmanager
def _blas_threads(n_jobs: int | None) -> Iterator[None]:
    """Linear algebra on the idle cores only: spinning BLAS threads on busy ones crawl."""
    from threadpoolctl import threadpool_limits

    from .learners import fit_threads

    with threadpool_limits(limits=n_jobs or fit_threads(), user_api="blas"):
        yield


def _linear_rows(frame: pd.DataFrame, labels: np.ndarray, y: np.ndarray, groups: list[str],
                 categorical: set[str]
                 ) -> tuple[list[str], list[tuple[float, float, int, int]], list[str]]:
    """The linear method for every offer: (covariates used, (ate, se, n, columns), notes)."""
    codes = np.array([groups.index(g) for g in labels])
    x, _, owners, notes = _linear_design(frame, codes, len(groups), categorical)
    keep = _independent(x - x.mean(axis=0))
    for owner in dict.fromkeys(o for o, k in zip(owners, keep, strict=True) if not k):
        partly = any(k for o, k in zip(owners, keep, strict=True) if o == owner)
        notes.append(f"covariate {owner!r} is collinear with the covariates before it"
                     + (" (some of its columns)" if partly else "") + "; left out")
    x, owners = x[:, keep], [o for o, k in zip(owners, keep, strict=True) if k]
    _warn(notes)
    control, rows, more = groups[0], [], []
    for arm in groups[1:]:
        pair = (labels == control) | (labels == arm)
        t = (labels[pair] == arm).astype(float)
        coef, se, width, said = _fit_offer(y[pair], t, x[pair], owners, arm)
        rows.append((-coef, se, int(pair.sum()), width))
        more += said
    _warn(more)
    return list(dict.fromkeys(owners)), rows, notes + more


def _cross_fit_risk(frame: pd.DataFrame, y: np.ndarray, categorical: set[str], folds: int,
                    seed: int, params: Mapping[str, Any] | None,
                    n_jobs: int | None) -> np.ndarray:
    """Out-of-fold churn risk from LightGBM on the covariates (the mean when there are none)."""
    if frame.shape[1] == 0:
        return np.full(len(y), y.mean())
    from .learners import base_classifier, fit_threads

    x, cats = _tree_matrix(frame, categorical)
    threads = n_jobs or fit_threads()
    return cross_fit_predictions(
        x, y, folds=folds, seed=seed,
        make_model=lambda s: base_classifier("lightgbm", s, threads, **dict(params or {})),
        fit_params={"categorical_feature": cats} if cats else None)


def resolve_covariates(dataset: Dataset, cfg: ExperimentConfig) -> list[str]:
    """The covariates of ``analysis.cuped``: the listed ones, or (``auto``) the features.

    Never the id, the group, the outcome or a column of ``analysis.cuped.exclude``.
    """
    cuped = cfg.analysis.cuped
    chosen = list(dataset.features) if cuped.covariates == "auto" else list(cuped.covariates)
    never = {dataset.id_column, dataset.treatment_column, dataset.outcome_column,
             *cuped.exclude}
    return [c for c in chosen if c not in never]


def adjust_dataset(dataset: Dataset, cfg: ExperimentConfig) -> AdjustedResult | None:
    """The covariate-adjusted readout of a dataset with ``analysis.cuped``; None if disabled.

    Also None when there are no covariates (a table of ids, groups and outcomes only).
    The ``model`` method uses the assignment probabilities the learners use (the
    allocation, or the observed shares under a sample-ratio mismatch).
    """
    cuped = cfg.analysis.cuped
    names = resolve_covariates(dataset, cfg)
    if not cuped.enabled or not names:
        return None
    categorical = set(dataset.categorical) | set(cfg.data.categorical or [])
    return adjust_effects(
        dataset.frame[names], dataset.treatment, dataset.churned, control=cfg.control,
        arms=cfg.arm_names, method=cuped.method, categorical=sorted(categorical & set(names)),
        alpha=cfg.analysis.alpha, correction=cfg.analysis.correction,
        propensities=assignment_shares(dataset, cfg) if cuped.method == "model" else None,
        folds=cuped.folds, seed=cfg.model.seed, params=cuped.params)
