"""Registry of uplift learners: seeded, unfitted causalml estimators by name and base family.

Names are s, gam, t, x, r, dr, uplift_forest and uplift_tree; base families lightgbm and
xgboost (``gam``, the additive S-learner of ``additive.py``, and the trees ignore it).

Choices made here, and why:
- The DR learner is causalml's ``BaseDRLearner`` with *regressors* on the 0/1 outcome:
  ``BaseDRClassifier`` builds its pseudo-outcome from hard 0/1 labels.
- X, R and DR are always given the design's known propensities by the caller
  (``models.py``), so their propensity models are never fitted; the R learner gets a
  trivial propensity learner as a guard.
- The S-learner is one outcome model on every group at once, the group given as
  indicator columns (:class:`PooledSClassifier`): causalml's ``BaseSClassifier`` fits
  one model per offer on that offer's and the control's rows, so each offer's effect
  is learned from a fraction of the test and the structure the offers share (who is
  at risk, who responds at all) is learned again for each. On the decision-quality
  suite the pooled model earns more of the oracle's value than causalml's.
- Base-model settings are tuned for effect estimation on tabular churn data: more
  regularized leaves than library defaults, because effects are a few points of
  churn and over-fitted outcome models turn noise into "uplift".
"""

from __future__ import annotations

import inspect
import logging
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal, NamedTuple

import numpy as np

from .additive import ADDITIVE_DEFAULTS, AdditiveSClassifier
from .config import LEARNERS, ExperimentConfig, LearnerName
from .errors import Problem, did_you_mean

# forestci (imported by causalml's trees) logs an error when the optional duecredit
# package is missing; without a handler Python would print it on stderr.
logging.getLogger("duecredit").addHandler(logging.NullHandler())
logging.getLogger("duecredit").propagate = False

BaseName = Literal["lightgbm", "xgboost"]
TREE_LEARNERS = frozenset({"uplift_forest", "uplift_tree"})
LEARNER_LABELS = {"s": "S-learner", "gam": "additive S-learner", "t": "T-learner",
                  "x": "X-learner", "r": "R-learner", "dr": "DR-learner",
                  "uplift_forest": "uplift forest", "uplift_tree": "uplift tree"}
PROPENSITY_LEARNERS = frozenset({"x", "r", "dr"})
MANY_LEVELS = 10  # category columns with this many levels split natively in the S-learner

# Outcome models: churn probability. Effect models: regressions on imputed effects.
# Every tree may split on the treatment column (colsample 1), and small leaves-per-tree
# keep effects, a few points of churn, from being fitted to noise.
_LGBM_OUTCOME = {"n_estimators": 300, "learning_rate": 0.05, "num_leaves": 15,
                 "min_child_samples": 200, "subsample": 0.8, "subsample_freq": 1,
                 "colsample_bytree": 1.0, "reg_lambda": 1.0, "verbose": -1}
_LGBM_EFFECT = {"n_estimators": 200, "learning_rate": 0.05, "num_leaves": 15,
                "min_child_samples": 400, "subsample": 0.8, "subsample_freq": 1,
                "colsample_bytree": 0.8, "reg_lambda": 5.0, "verbose": -1}
_XGB_OUTCOME = {"n_estimators": 500, "learning_rate": 0.05, "max_depth": 4,
                "min_child_weight": 50, "subsample": 0.8, "colsample_bytree": 1.0,
                "tree_method": "hist", "verbosity": 0}
_XGB_EFFECT = {"n_estimators": 200, "learning_rate": 0.05, "max_depth": 4,
               "min_child_weight": 100, "subsample": 0.8, "colsample_bytree": 0.8,
               "reg_lambda": 5.0, "tree_method": "hist", "verbosity": 0}
_FOREST = {"n_estimators": 50, "max_depth": 6, "min_samples_leaf": 200,
           "min_samples_treatment": 50, "n_reg": 100, "evaluationFunction": "KL",
           "max_features": 10}
_TREE = {"max_depth": 5, "min_samples_leaf": 400, "min_samples_treatment": 100,
         "n_reg": 100, "evaluationFunction": "KL"}


def fit_threads(window: float = 0.2, recent: float = 30.0) -> int:
    """Threads for each base model: this process's cores minus those other processes keep busy.

    LightGBM's threads spin while they wait for each other, so two of them on a core
    another process is using can make a fit many times slower than one thread would
    be. Busy cores are measured from ``/proc/stat`` since the previous call (or since
    this module was imported), less this process's own CPU time, so the measurement
    costs nothing while work goes on. When that was less than ``window`` seconds ago
    this process sleeps for the rest; when more than ``recent`` seconds ago (an idle
    notebook), it measures ``window`` seconds afresh. Elsewhere every core counts as free.
    The thread count does not change the fitted models.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = max(1, cores or 1)
    if cores == 1:
        return 1
    try:
        start = _CPU_MARK[0] if _CPU_MARK else _cpu_sample()
        if time.monotonic() - start.clock > recent:
            start = _cpu_sample()
        wait = window - (time.monotonic() - start.clock)
        if wait > 0:
            time.sleep(wait)
        end = _cpu_sample()
    except (OSError, ValueError, IndexError):
        return cores
    _CPU_MARK[:] = [end]
    return max(1, min(cores, round(cores - _others_busy(start, end))))


class _CpuSample(NamedTuple):
    clock: float  # monotonic seconds
    total: float  # machine jiffies, every state
    idle: float  # machine jiffies idle or waiting on I/O
    own: float  # this process's CPU seconds, every thread


def _cpu_sample() -> _CpuSample:
    with open("/proc/stat", encoding="ascii") as handle:
        fields = [float(x) for x in handle.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
    return _CpuSample(time.monotonic(), sum(fields[:8]), idle, time.process_time())


def _others_busy(start: _CpuSample, end: _CpuSample) -> float:
    """Cores kept busy by other processes between two samples."""
    jiffies, seconds = end.total - start.total, end.clock - start.clock
    if jiffies <= 0 or seconds <= 0:
        return 0.0
    machine = os.cpu_count() or 1
    busy = machine * (1.0 - (end.idle - start.idle) / jiffies)
    return max(0.0, busy - (end.own - start.own) / seconds)


try:
    _CPU_MARK: list[_CpuSample] = [_cpu_sample()]
except (OSError, ValueError, IndexError):
    _CPU_MARK = []


def _prior_classifier() -> Any:
    from sklearn.dummy import DummyClassifier

    return DummyClassifier(strategy="prior")


def base_classifier(base: BaseName, seed: int, n_jobs: int = 1, **params: Any) -> Any:
    """A seeded churn classifier of the base family (``predict_proba`` gives P(churn))."""
    if base == "lightgbm":
        from lightgbm import LGBMClassifier

        return LGBMClassifier(**{**_LGBM_OUTCOME, **params}, random_state=seed, n_jobs=n_jobs)
    if base == "xgboost":
        from xgboost import XGBClassifier

        return XGBClassifier(**{**_XGB_OUTCOME, **params}, random_state=seed, n_jobs=n_jobs)
    raise ValueError(f"unknown base model {base!r}; use 'lightgbm' or 'xgboost'")


def base_regressor(base: BaseName, seed: int, n_jobs: int = 1, *, effect: bool = False,
                   **params: Any) -> Any:
    """A seeded regressor of the base family (outcome or effect regression)."""
    if base == "lightgbm":
        from lightgbm import LGBMRegressor

        defaults = _LGBM_EFFECT if effect else _LGBM_OUTCOME
        return LGBMRegressor(**{**defaults, **params}, random_state=seed, n_jobs=n_jobs)
    if base == "xgboost":
        from xgboost import XGBRegressor

        defaults = _XGB_EFFECT if effect else _XGB_OUTCOME
        return XGBRegressor(**{**defaults, **params}, random_state=seed, n_jobs=n_jobs)
    raise ValueError(f"unknown base model {base!r}; use 'lightgbm' or 'xgboost'")


# Set by the toolkit for every model (from model.seed and the machine), never by params;
# LightGBM's aliases of its seed and thread count are added where it is the base.
_OWN_SETTINGS = frozenset({"control_name", "categorical", "seed", "random_state", "n_jobs",
                           "joblib_prefer", "learner", "nthread", "random_seed"})


def settings_problems(cfg: ExperimentConfig) -> list[Problem]:
    """Settings under ``model.params`` that their learner's models do not take.

    Checked with the config, before anything runs (``uplift validate``, ``uplift run``).
    """
    out = []
    for learner, params in cfg.model.params.items():
        # A misspelt one is offered the learner's own settings (the risk model's are T's).
        known = [key.partition(".")[2] for key in learner_settings(
            "t" if learner == "churn_risk" else learner, cfg.model.base) if "." in key]
        for key, why in unknown_settings(learner, cfg.model.base, params).items():
            out.append(Problem(cfg.source, f"model.params.{learner}.{key}",
                               f"{why}{did_you_mean(key, known)}"))
    return out


def unknown_settings(name: str, base: BaseName, params: Mapping[str, Any]) -> dict[str, str]:
    """The keys of ``params`` that learner ``name`` (or ``churn_risk``) does not take, and why.

    A misspelt setting would otherwise fail the run after its first fits (the additive
    learner's and the trees' constructors refuse it), or be ignored with no more than a
    LightGBM log line. XGBoost's settings are not checked: it takes any booster
    parameter and says which it did not use.
    """
    allowed = _setting_names(name, base)
    own = _OWN_SETTINGS | _lightgbm_aliases("num_threads", "seed")
    out = {}
    for key in params:
        if key in own:
            out[key] = "set by the toolkit (from model.seed, the data and the machine)"
        elif allowed is not None and key not in allowed:
            out[key] = f"not a setting of {name!r}"
    return out


def _setting_names(name: str, base: BaseName) -> frozenset[str] | None:
    """What learner ``name``'s models take as settings; None when that cannot be told."""
    if name == "gam":
        return frozenset(inspect.signature(AdditiveSClassifier).parameters)
    if name in TREE_LEARNERS:
        from causalml.inference.tree import UpliftRandomForestClassifier, UpliftTreeClassifier

        tree = UpliftRandomForestClassifier if name == "uplift_forest" else UpliftTreeClassifier
        return frozenset(inspect.signature(tree).parameters)
    if base != "lightgbm":
        return None
    from lightgbm import LGBMClassifier

    every = _lightgbm_aliases()
    return frozenset({*LGBMClassifier().get_params(), *every}) if every else None


def _lightgbm_aliases(*names: str) -> frozenset[str]:
    """LightGBM's parameters ``names`` (all when none given) with their aliases.

    Its C library lists them; empty when this LightGBM cannot tell.
    """
    try:
        from lightgbm.basic import _ConfigAliases

        table = _ConfigAliases._get_all_param_aliases()
    except (ImportError, AttributeError):
        return frozenset()
    return frozenset(alias for canonical, aliases in table.items()
                     if not names or canonical in names for alias in (canonical, *aliases))


def learner_settings(name: LearnerName, base: BaseName, params: dict[str, Any] | None = None
                     ) -> dict[str, Any]:
    """The settings ``make_learner`` gives learner ``name``: defaults with ``params`` applied.

    Keys are prefixed by the model they set (``outcome.``, ``effect.``, ``tree.``), so a
    run can record exactly what was fitted.
    """
    params = dict(params or {})
    if name in TREE_LEARNERS:
        defaults = _FOREST if name == "uplift_forest" else _TREE
        return {f"tree.{k}": v for k, v in {**defaults, **params}.items()}
    if name == "gam":
        return {f"additive.{k}": v for k, v in {**ADDITIVE_DEFAULTS, **params}.items()}
    outcome = {**(_LGBM_OUTCOME if base == "lightgbm" else _XGB_OUTCOME), **params}
    out = {"base": base, **{f"outcome.{k}": v for k, v in outcome.items()}}
    if name in ("x", "r", "dr"):
        effect = _LGBM_EFFECT if base == "lightgbm" else _XGB_EFFECT
        out.update({f"effect.{k}": v for k, v in effect.items()})
    return out


class PooledSClassifier:
    """S-learner over every group at once: one classifier, the group as indicators.

    The effect of an offer is P(churn | offer) - P(churn | control) predicted by the
    same model, causalml's sign; ``t_groups`` lists the offers in output order.

    Category columns with at least ``MANY_LEVELS`` levels are LightGBM categorical
    features. Their codes are ordered by churn rate, which serves a few levels well but
    scatters, across a 30-level column, the levels an offer works on alike; LightGBM's
    own categorical splits group levels by what they do at each node. On the
    decision-quality suite's 30-level world this lifts the S-learner alone from 67 % to
    85 % of the oracle at 20,000 customers. On columns of a few levels native splits
    lose (on whales, with several thin 3- and 4-level columns, the s + gam ensemble lost
    2.5 points), so they stay codes.
    """

    def __init__(self, learner: Any, control_name: str, categorical: Sequence[int] = ()):
        self.learner = learner
        self.control_name = control_name
        self.categorical = categorical

    def fit(self, X: Any, treatment: Any, y: Any) -> PooledSClassifier:
        """Fit the classifier on the features plus the group indicators."""
        treatment = np.asarray(treatment, dtype=object)
        self.t_groups = np.array(sorted({str(t) for t in treatment} - {self.control_name}),
                                 dtype=object)
        self.groups_ = [self.control_name, *self.t_groups]
        matrix = np.asarray(X, dtype=float)
        self.native_ = [j for j in self.categorical
                        if np.unique(matrix[~np.isnan(matrix[:, j]), j]).size >= MANY_LEVELS]
        kwargs = {}
        if self.native_ and type(self.learner).__module__.startswith("lightgbm"):
            kwargs["categorical_feature"] = list(self.native_)
        self.learner.fit(with_group_flags(matrix, treatment, self.groups_), np.asarray(y),
                         **kwargs)
        return self

    def predict(self, X: Any, verbose: bool = False) -> Any:
        """Per offer (``t_groups`` order), the predicted change in P(churn)."""
        def churn(group: str) -> np.ndarray:
            flags = with_group_flags(X, np.full(len(X), group, dtype=object), self.groups_)
            return self.learner.predict_proba(flags)[:, 1]

        base = churn(self.control_name)
        return np.column_stack([churn(g) - base for g in self.t_groups])


def with_group_flags(matrix: Any, group: Any, groups: list[str]) -> np.ndarray:
    """The feature matrix with one 0/1 column per group of ``groups`` (row's ``group``)."""
    group = np.asarray(group, dtype=object)
    flags = np.column_stack([group == g for g in groups]).astype(float)
    return np.hstack([np.asarray(matrix, dtype=float), flags])


def make_learner(name: LearnerName, base: BaseName, seed: int, control: str,
                 n_jobs: int = 1, params: dict[str, Any] | None = None,
                 categorical: Sequence[int] = ()) -> Any:
    """An unfitted causalml learner for ``name`` on base models of ``base``.

    Args:
        name: One of :data:`LEARNERS`.
        base: Base model family for the meta-learners (trees ignore it).
        seed: Seed of every random step inside the learner.
        control: Treatment value of the control group.
        n_jobs: Threads per base model.
        params: Overrides of the learner's (or, for meta-learners, the outcome
            model's) settings.
        categorical: Indices of the columns holding category codes (for ``gam``,
            which gives each level its own term, and ``s``, which splits columns of
            many levels natively).
    """
    params = dict(params or {})
    if name == "gam":
        return AdditiveSClassifier(control_name=control, categorical=tuple(categorical),
                                   seed=seed, **{**ADDITIVE_DEFAULTS, **params})
    if name in TREE_LEARNERS:
        from causalml.inference.tree import UpliftRandomForestClassifier, UpliftTreeClassifier

        if name == "uplift_forest":
            settings = {**_FOREST, "n_jobs": n_jobs, **params}
            return UpliftRandomForestClassifier(control_name=control, random_state=seed,
                                                joblib_prefer="threads", **settings)
        return UpliftTreeClassifier(control_name=control, random_state=seed, **{**_TREE, **params})

    outcome = base_classifier(base, seed, n_jobs, **params)
    if name == "s":  # our own pooled model: causalml is not needed to build or fit it
        return PooledSClassifier(learner=outcome, control_name=control,
                                 categorical=tuple(categorical))
    from causalml.inference.meta import (
        BaseDRLearner,
        BaseRClassifier,
        BaseTClassifier,
        BaseXClassifier,
    )

    if name == "t":
        return BaseTClassifier(learner=outcome, control_name=control)
    effect = base_regressor(base, seed, n_jobs, effect=True)
    if name == "x":
        return BaseXClassifier(outcome_learner=outcome, effect_learner=effect,
                               control_name=control)
    if name == "r":
        return BaseRClassifier(outcome_learner=outcome, effect_learner=effect,
                               propensity_learner=_prior_classifier(),
                               control_name=control, random_state=seed)
    if name == "dr":
        return BaseDRLearner(control_outcome_learner=base_regressor(base, seed, n_jobs, **params),
                             treatment_outcome_learner=base_regressor(base, seed, n_jobs, **params),
                             treatment_effect_learner=effect, control_name=control)
    raise ValueError(f"unknown learner {name!r}; use one of {', '.join(LEARNERS)}")
