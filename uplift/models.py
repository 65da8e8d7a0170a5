"""Estimators of who each offer keeps: uplift learners, the churn-risk model, and their union.

scikit-learn conventions: ``__init__`` stores arguments, ``fit`` does the work and
returns ``self``, fitted attributes end in ``_``. Arms are named by their strings;
causalml's output columns are mapped to arm names through the learner's own arm
order (``t_groups`` / ``classes_``), never by position. Features are encoded once
(categories to integer codes, missing values kept for the tree learners that
handle them), so every learner takes categorical and missing values.

Sign convention: ``uplift_<arm>`` is the predicted churn *reduction*,
P(churn | control) - P(churn | arm); positive means the offer keeps the customer.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from .assignment import group_shares
from .errors import InputError, Problem, UpliftError
from .learners import (
    PROPENSITY_LEARNERS,
    TREE_LEARNERS,
    BaseName,
    LearnerName,
    base_classifier,
    make_learner,
    with_group_flags,
)

MIN_ROWS_PER_GROUP = 50


class LearnerError(UpliftError):
    """A learner could not be fitted or used; the message says which and why."""


class TrainingDataError(LearnerError, InputError):
    """The training rows cannot teach a learner (a group too small or with one outcome).

    A problem of the data, not of the code: the CLI exits 2 with its one line.
    """


def uplift_column(arm: str) -> str:
    """The spec's column name for an arm's predicted churn reduction."""
    return f"uplift_{arm}"


class FeatureEncoder(BaseEstimator):
    """Turn a customer frame into a float matrix: numbers as they are, categories as codes.

    Category codes follow the categories' churn rate in the training rows (when
    ``fit`` is given the outcome), so one threshold split can separate, say,
    ``premium`` from the other plans; alphabetical codes would put it between
    ``basic`` and ``standard`` and hide it from every tree learner. Unknown
    categories at prediction time and missing values become NaN, which the
    LightGBM / XGBoost base models and causalml's uplift trees handle natively.
    """

    def __init__(self, categorical: Sequence[str] | None = None):
        self.categorical = categorical

    def fit(self, X: pd.DataFrame, y: Sequence[float] | None = None) -> FeatureEncoder:
        """Learn the columns and the (outcome-ordered) categories of categorical columns."""
        listed = set(self.categorical or [])
        self.columns_ = [str(c) for c in X.columns]
        self.categories_: dict[str, pd.Index] = {}
        outcome = None if y is None else pd.Series(np.asarray(y, dtype=float))
        for column in self.columns_:
            series = X[column]
            is_number = (pd.api.types.is_numeric_dtype(series)
                         and not pd.api.types.is_bool_dtype(series))
            if column in listed or not is_number:
                values = series.astype(str).where(series.notna()).reset_index(drop=True)
                if outcome is None:
                    order = sorted(values.dropna().unique())
                else:
                    rates = outcome.groupby(values).mean()
                    order = sorted(rates.index, key=lambda c: (rates[c], c))
                self.categories_[column] = pd.Index(order)
        return self

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        """The float64 matrix of ``X`` (columns in fit order)."""
        missing = [c for c in self.columns_ if c not in X.columns]
        if missing:
            raise LearnerError(f"missing feature column {missing[0]!r}")
        out = np.empty((len(X), len(self.columns_)), dtype=np.float64)
        for j, column in enumerate(self.columns_):
            series = X[column]
            if column in self.categories_:
                # Look up each distinct value once, not every row's text.
                codes, uniques = pd.factorize(series, use_na_sentinel=True)
                lookup = self.categories_[column].get_indexer(pd.Index(uniques).astype(str))
                # A trailing -1 makes factorize's missing-value code (-1) map to "missing".
                values = np.append(lookup, -1)[codes].astype(np.float64)
                values[values < 0] = np.nan
                out[:, j] = values
            elif pd.api.types.is_numeric_dtype(series):
                out[:, j] = series.to_numpy(dtype=np.float64, na_value=np.nan)
            else:
                out[:, j] = pd.to_numeric(series, errors="coerce").to_numpy(
                    dtype=np.float64, na_value=np.nan)
        return out


def check_groups(treatment: np.ndarray, churned: np.ndarray, control: str,
                 arms: Sequence[str], min_rows: int = MIN_ROWS_PER_GROUP, *,
                 source: str | None = None, column: str = "") -> None:
    """Refuse, naming the group, training rows a learner cannot learn from.

    Raises:
        TrainingDataError: a group has fewer than ``min_rows`` rows or only one outcome;
            ``source`` and ``column`` locate the problem (the data file, its group column).
    """
    for group in [control, *arms]:
        mask = treatment == group
        n = int(mask.sum())
        if n < min_rows:
            raise TrainingDataError(Problem(source, column, (
                f"group {group!r} has {n} rows in the training data; at least {min_rows} "
                "are needed to fit uplift models")))
        churners = int(churned[mask].sum())
        if churners in (0, n):
            outcome = "churned" if churners == 0 else "retained"
            raise TrainingDataError(Problem(source, column, (
                f"group {group!r} has no {outcome} customers in the training data; its "
                "effect cannot be learned")))


class UpliftModel(BaseEstimator):
    """One causalml learner fitted on every offer against the control at once.

    Args:
        learner: One of s, gam, t, x, r, dr, uplift_forest, uplift_tree.
        base: Base model family of the meta-learners (lightgbm, xgboost).
        control: Treatment value of the control group.
        arms: Offer names in reporting order (default: sorted offers seen in ``fit``).
        propensity: Known assignment share per group (the design's allocation);
            default: the observed shares. X, R and DR use these and never fit a
            propensity model.
        categorical: Columns to treat as categories (besides non-numeric ones).
        seed: Seed of every random step.
        n_jobs: Threads per base model.
        params: Overrides of the learner's settings.
    """

    def __init__(self, learner: LearnerName = "t", base: BaseName = "lightgbm",
                 control: str = "control", arms: Sequence[str] | None = None,
                 propensity: Mapping[str, float] | None = None,
                 categorical: Sequence[str] | None = None, seed: int = 0, n_jobs: int = 1,
                 params: dict[str, Any] | None = None):
        self.learner = learner
        self.base = base
        self.control = control
        self.arms = arms
        self.propensity = propensity
        self.categorical = categorical
        self.seed = seed
        self.n_jobs = n_jobs
        self.params = params

    def fit(self, X: pd.DataFrame, treatment: Sequence[str], churned: Sequence[int],
            sample_weight: np.ndarray | None = None) -> UpliftModel:
        """Fit the learner on customers' features, assigned group and churn (1 = churned)."""
        treatment = np.asarray(treatment, dtype=object)
        y = np.asarray(churned, dtype=np.int64)
        arms = list(self.arms) if self.arms is not None else sorted(
            {str(t) for t in treatment} - {self.control})
        check_groups(treatment, y, self.control, arms)
        keep = np.isin(treatment, [self.control, *arms])
        X, treatment, y = X[keep], treatment[keep], y[keep]
        if sample_weight is not None:
            sample_weight = np.asarray(sample_weight, dtype=float)[keep]
        self.encoder_ = FeatureEncoder(self.categorical).fit(X, y)
        matrix = self.encoder_.transform(X)
        self.arms_ = arms
        self.shares_ = group_shares(treatment, [self.control, *arms], self.propensity)
        coded = [j for j, c in enumerate(self.encoder_.columns_) if c in self.encoder_.categories_]
        self.learner_ = make_learner(self.learner, self.base, self.seed, self.control,
                                     self.n_jobs, self.params, categorical=coded)
        kwargs: dict[str, Any] = {"X": matrix, "treatment": treatment, "y": y}
        if self.learner in PROPENSITY_LEARNERS:
            kwargs["p"] = self._pair_propensity(len(y))
        if self.learner == "dr":
            kwargs["seed"] = self.seed
        if self.learner in (*TREE_LEARNERS, "gam") and sample_weight is not None:
            kwargs["sample_weight"] = sample_weight
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.learner_.fit(**kwargs)
        except (AssertionError, ValueError, TypeError, IndexError, np.linalg.LinAlgError) as exc:
            raise LearnerError(f"learner {self.learner!r} failed to fit: {exc}") from exc
        return self

    def _pair_propensity(self, n: int) -> dict[str, np.ndarray]:
        """P(offer | offer or control) per arm: what causalml's pairwise fits expect."""
        c = self.shares_[self.control]
        return {arm: np.full(n, self.shares_[arm] / (self.shares_[arm] + c))
                for arm in self.arms_}

    def predict(self, X: pd.DataFrame) -> pd.DataFrame:
        """Predicted churn reduction per offer: columns ``uplift_<arm>`` in ``arms_`` order."""
        matrix = self.encoder_.transform(X)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if self.learner == "uplift_forest":
                full = self.learner_.predict(matrix, full_output=True)
                delta = {arm: full[f"delta_{arm}"].to_numpy() for arm in self.arms_}
            elif self.learner == "uplift_tree":
                probs = np.asarray(self.learner_.predict(matrix))
                order = list(self.learner_.classes_)
                base = probs[:, order.index(self.control)]
                delta = {arm: probs[:, order.index(arm)] - base for arm in self.arms_}
            else:
                kwargs = {"p": self._pair_propensity(len(matrix))} if self.learner in (
                    "x",) else {}
                if self.learner in ("s", "gam", "t", "x", "dr"):
                    kwargs["verbose"] = False
                te = np.asarray(self.learner_.predict(matrix, **kwargs), dtype=float)
                te = te.reshape(len(matrix), -1)
                groups = [str(g) for g in self.learner_.t_groups]
                delta = {arm: te[:, groups.index(arm)] for arm in self.arms_}
        # causalml estimates the change in P(churn); the spec's uplift is its reduction.
        return pd.DataFrame({uplift_column(arm): -delta[arm] for arm in self.arms_},
                            index=X.index)


class ChurnRiskModel(BaseEstimator):
    """P(churn | no offer) per customer, fitted on every row and calibrated.

    All groups train it (the group is a feature), which uses the offer rows too, and
    the prediction sets the group to the control. Isotonic regression maps the base
    model's probabilities to churn rates measured on rows the scoring model did not
    see, which keeps probabilities honest for the cost terms. One base model scores
    every customer; the held-out scores come from the caller's cross-fitting when it
    has them, and from three more fits otherwise.

    Args:
        base: Base model family (lightgbm, xgboost).
        control: Treatment value of the control group.
        categorical: Columns to treat as categories.
        calibrate: Calibrate with isotonic regression on held-out scores.
        seed: Seed of every random step.
        n_jobs: Threads for the base model.
        params: Overrides of the base classifier's settings.
    """

    def __init__(self, base: BaseName = "lightgbm", control: str = "control",
                 categorical: Sequence[str] | None = None, calibrate: bool = True,
                 seed: int = 0, n_jobs: int = 1, params: dict[str, Any] | None = None):
        self.base = base
        self.control = control
        self.categorical = categorical
        self.calibrate = calibrate
        self.seed = seed
        self.n_jobs = n_jobs
        self.params = params

    def fit(self, X: pd.DataFrame, treatment: Sequence[str], churned: Sequence[int],
            held_out: tuple[np.ndarray, np.ndarray] | None = None) -> ChurnRiskModel:
        """Fit on features plus the assigned group; churned is 1 for churn.

        ``held_out`` is ``(scores, churned)``: uncalibrated probabilities that models
        like this one gave rows outside their own training rows (each row's own group),
        with those rows' outcomes. Without it a calibrated model cross-fits 3 folds.
        """
        treatment = np.asarray(treatment, dtype=object)
        outcome = np.asarray(churned, dtype=np.int64)
        self.encoder_ = FeatureEncoder(self.categorical).fit(X, churned)
        self.groups_ = sorted({str(t) for t in treatment})
        matrix = self._design(self.encoder_.transform(X), treatment)
        model = base_classifier(self.base, self.seed, self.n_jobs, **(self.params or {}))
        self.calibrator_ = None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if self.calibrate and held_out is None:
                from sklearn.base import clone
                from sklearn.model_selection import StratifiedKFold, cross_val_predict

                folds = StratifiedKFold(n_splits=3, shuffle=True, random_state=self.seed)
                held_out = (cross_val_predict(clone(model), matrix, outcome, cv=folds,
                                              method="predict_proba")[:, 1], outcome)
            self.model_ = model.fit(matrix, outcome)
        if self.calibrate:
            self.calibrator_ = isotonic_calibrator(*held_out)
        return self

    def _design(self, matrix: np.ndarray, treatment: np.ndarray) -> np.ndarray:
        return with_group_flags(matrix, treatment, self.groups_)

    def predict_proba(self, X: pd.DataFrame, group: str | None = None,
                      calibrated: bool = True) -> np.ndarray:
        """P(churn | group) per row; the control group by default.

        ``calibrated=False`` gives the base model's own probability, the score that
        :func:`isotonic_calibrator` maps.
        """
        treatment = np.full(len(X), group or self.control, dtype=object)
        matrix = self._design(self.encoder_.transform(X), treatment)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scores = self.model_.predict_proba(matrix)[:, 1]
        # Models pickled before calibration moved out of the base model have no calibrator_.
        calibrator = getattr(self, "calibrator_", None)
        return calibrator.predict(scores) if calibrated and calibrator is not None else scores


# A block of customers who all churned (or all stayed) is not a certainty: a risk of
# exactly 0 or 1 would make every offer's change of churn vanish at the clip.
RISK_FLOOR = 1e-3


def isotonic_calibrator(scores: np.ndarray, churned: np.ndarray) -> Any:
    """Isotonic regression of held-out churn on held-out scores, kept off 0 and 1."""
    from sklearn.isotonic import IsotonicRegression

    return IsotonicRegression(y_min=RISK_FLOOR, y_max=1.0 - RISK_FLOOR,
                              out_of_bounds="clip").fit(
        np.asarray(scores, dtype=float), np.asarray(churned, dtype=float))


class EnsembleUpliftModel(BaseEstimator):
    """The average of several fitted uplift models' predictions.

    Learners err in different places (an S-learner borrows strength across offers, an
    uplift forest splits on effect differences directly); averaging the best of them
    cancels part of each one's noise, which matters most with few customers.

    Args:
        members: Fitted :class:`UpliftModel` instances over the same arms.
    """

    def __init__(self, members: Sequence[UpliftModel]):
        self.members = members

    @property
    def arms_(self) -> list[str]:
        """Offer names in column order."""
        return list(self.members[0].arms_)

    @property
    def learner(self) -> str:
        """``ensemble:<a>+<b>``, naming the members' learners."""
        return "ensemble:" + "+".join(m.learner for m in self.members)

    def predict(self, X: pd.DataFrame) -> pd.DataFrame:
        """Mean of the members' ``uplift_<arm>`` columns."""
        frames = [m.predict(X) for m in self.members]
        return sum(frames[1:], frames[0]) / len(frames)


class RetentionModel:
    """Churn risk with no offer plus the predicted churn reduction of every offer.

    What gets registered and exported: ``predict`` takes raw customer rows and
    returns ``churn_risk`` and one ``uplift_<arm>`` column per offer.

    ``fixed_offer`` is set when the run found no model's policy better than a simple
    one: the control's name (offer nobody anything) or an arm's name (that offer for
    every eligible customer). The export then applies it; the predictions stay
    informative.
    """

    fixed_offer: str | None = None  # models pickled before it existed load with None

    def __init__(self, risk: ChurnRiskModel, uplift: UpliftModel | EnsembleUpliftModel,
                 features: Sequence[str], fixed_offer: str | None = None):
        self.risk = risk
        self.uplift = uplift
        self.features = list(features)
        self.fixed_offer = fixed_offer

    @property
    def arms(self) -> list[str]:
        """Offer names in column order."""
        return list(self.uplift.arms_)

    @property
    def learner(self) -> str:
        """The uplift learner's name."""
        return self.uplift.learner

    def predict(self, customers: pd.DataFrame) -> pd.DataFrame:
        """``churn_risk`` and ``uplift_<arm>`` for every row of ``customers``."""
        X = customers[self.features]
        out = self.uplift.predict(X)
        out.insert(0, "churn_risk", self.risk.predict_proba(X))
        return out

    def predict_churn(self, customers: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """P(churn | no offer) (n,) and P(churn | offer) (n, k), clipped to (0, 1)."""
        return churn_probabilities(self.predict(customers), self.arms)


def churn_probabilities(scores: pd.DataFrame, arms: Sequence[str]
                        ) -> tuple[np.ndarray, np.ndarray]:
    """P(churn | no offer) (n,) and P(churn | offer) (n, k) from a model's predictions.

    ``scores`` holds ``churn_risk`` and ``uplift_<arm>``; offer probabilities are
    clipped to (0, 1).
    """
    p_control = scores["churn_risk"].to_numpy(dtype=float)
    uplift = scores[[uplift_column(a) for a in arms]].to_numpy(dtype=float)
    return p_control, np.clip(p_control[:, None] - uplift, 1e-6, 1 - 1e-6)
