"""Fit every candidate learner, judge each on held-out rows, pick one, and refit it.

The held-out rows are a seeded split stratified by group and outcome. Each
candidate is scored there by causalml's Qini / AUUC per offer and by the value of
the policy it would recommend, estimated doubly robustly with the design's
assignment probabilities (see ``offpolicy.py``). A learner that fails is reported and
skipped; only when every learner fails is it an error. The chosen learner is then
refitted on all rows (more data, same procedure), while the reported held-out figures
belong to the fit on the training rows.

Assignment probabilities: the config's ``allocation`` when the group counts agree
with it, else the observed shares. A sample-ratio mismatch (the check of
``analysis.srm_threshold``) shows the planned shares are not what the data were drawn
with; the observed shares are then the estimate of the real assignment probabilities,
and weighting by the plan would bias every learner that uses propensities (X, R, DR)
and the off-policy estimate.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .analysis import srm_pvalue
from .config import ExperimentConfig
from .data import Dataset
from .errors import ConfigError, Problem
from .evaluation import CandidateResult, decile_table, select, split_holdout, uplift_scores
from .formatting import Paragraph, Table, money, number, pp, render_markdown
from .learners import fit_threads, learner_settings
from .models import (
    ChurnRiskModel,
    EnsembleUpliftModel,
    LearnerError,
    RetentionModel,
    UpliftModel,
    check_groups,
    churn_probabilities,
    group_shares,
)
from .offpolicy import PolicyEstimate, evaluate_policy
from .policy import PolicyResult, budget_curve, build_policy, optimality_warning

__all__ = ["ENSEMBLE", "RetentionModel", "TrainingResult", "assignment_shares",
           "customer_values", "holdout_budget_curve", "train_models"]

# RetentionModel lives in models.py; it is imported here too so that models pickled
# when it lived in this module still load.
ENSEMBLE = "ensemble"
BUDGET_POINTS = 12  # budgets of the held-out budget curve, from 0 to the policy's cost


@dataclass(frozen=True)
class TrainingResult:
    """The chosen model, every candidate's held-out results and the policy estimate."""

    model: RetentionModel
    selected: str
    select_by: str
    candidates: tuple[CandidateResult, ...]
    holdout_policy: PolicyResult
    policy_estimate: PolicyEstimate
    holdout_index: np.ndarray
    candidate_models: dict[str, RetentionModel] = field(default_factory=dict)
    fit_seconds: dict[str, float] = field(default_factory=dict)
    """Seconds spent in each model fit: the churn-risk model, each candidate, the refits."""
    holdout_scores: pd.DataFrame | None = None
    """The selected candidate's ``churn_risk`` and ``uplift_<arm>`` on the held-out rows."""
    shares: dict[str, float] = field(default_factory=dict)
    """The assignment probability per group the learners and estimates used."""

    @property
    def chosen(self) -> CandidateResult:
        """The selected candidate's held-out results."""
        return next(c for c in self.candidates if c.learner == self.selected)

    def to_frame(self) -> pd.DataFrame:
        """One row per candidate learner with its held-out metrics."""
        rows = []
        for cand in self.candidates:
            rows.append({"learner": cand.learner, "selected": cand.learner == self.selected,
                         "fit_seconds": cand.fit_seconds, "error": cand.error,
                         **cand.metrics})
        return pd.DataFrame(rows)

    def table(self) -> Table:
        """Per candidate: Qini per offer, mean AUUC, its policy's held-out value, fit time."""
        arms = list(self.model.arms)
        header = ["learner", *(f"Qini {a}" for a in arms), "mean AUUC", "net value / customer",
                  "churn reduction", "fit s", "status"]
        rows, highlight = [], []
        for i, cand in enumerate(self.candidates):
            if not cand.ok:
                rows.append([cand.label, *[""] * (len(header) - 3), f"{cand.fit_seconds:.1f}",
                             f"failed: {cand.error}"])
                continue
            m = cand.metrics
            selected = cand.learner == self.selected
            if selected:
                highlight.append(i)
            rows.append([cand.label, *(number(m.get(f"qini_{a}")) for a in arms),
                         number(cand.mean_score("auuc")),
                         money(m.get("policy_net_value_per_customer")),
                         pp(m.get("policy_churn_reduction")), f"{cand.fit_seconds:.1f}",
                         "selected" if selected else "ok"])
        return Table.build(header, rows, numeric=range(1, len(header) - 1),
                           highlight=highlight, title="Candidate learners (held-out rows)")

    def paragraphs(self) -> list[Paragraph]:
        """How the learner was chosen and where the figures come from."""
        rule = ("mean held-out Qini over offers" if self.select_by == "qini"
                else "held-out policy value")
        return [Paragraph(
            f"Selected {self.selected} by {self.select_by} ({rule}). Every figure is "
            "measured on the held-out rows for the model fitted on the training rows; the "
            "selected learner was then refitted on all rows.")]

    def to_markdown(self) -> str:
        """How the learner was chosen, then the candidates as a Markdown table."""
        return render_markdown(self.table(), self.paragraphs())


def _seeds(seed: int, n: int) -> list[int]:
    """Independent integer seeds for ``n`` random steps, all derived from ``seed``."""
    return [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(n)]


def assignment_shares(dataset: Dataset, cfg: ExperimentConfig) -> dict[str, float]:
    """The probability each group was assigned with (see the module docs).

    The allocation when the group counts are consistent with it (sample-ratio check
    p-value at least ``analysis.srm_threshold``); else, or without an allocation, the
    observed shares.
    """
    planned = cfg.allocation
    if planned is not None:
        counts = dataset.group_counts()
        p = srm_pvalue(counts.to_numpy(), [planned[g] for g in cfg.groups])
        if p < cfg.analysis.srm_threshold:
            planned = None
    return group_shares(dataset.treatment, cfg.groups, planned)


def customer_values(dataset: Dataset, cfg: ExperimentConfig) -> np.ndarray:
    """Monthly revenue per customer; required by the net-value objective."""
    if dataset.value_column is None:
        if cfg.policy.objective == "net_value":
            raise ConfigError(Problem(cfg.source, "data.value", "a value column (monthly "
                                      "revenue) is needed for policy.objective net_value"))
        return np.zeros(dataset.n_rows)
    return dataset.frame[dataset.value_column].to_numpy(dtype=float)


def _scaled_limits(cfg: ExperimentConfig, share: float) -> tuple[float | None, dict[str, int]]:
    """Budget and capacities scaled to a subset holding ``share`` of the customers."""
    budget = None if cfg.policy.budget is None else cfg.policy.budget * share
    capacity = {k: int(np.floor(v * share)) for k, v in cfg.policy.capacity.items()}
    return budget, capacity


def train_models(dataset: Dataset, cfg: ExperimentConfig,
                 on_step: Callable[[str], None] | None = None) -> TrainingResult:
    """Fit the config's candidate learners, select one, and estimate its policy.

    Args:
        dataset: The validated experiment data.
        cfg: The experiment config (learners, base, params, test_size, seed, select_by,
            policy).
        on_step: Called with a short description as each step starts (progress).

    Returns:
        The refitted chosen model and every candidate's held-out results.

    Raises:
        ConfigError: net-value objective without a value column.
        TrainingDataError: a group of the training rows is too small or has one outcome.
        LearnerError: every candidate learner failed.
    """
    step = on_step or (lambda _: None)
    values = customer_values(dataset, cfg)
    shares = assignment_shares(dataset, cfg)
    model_cfg = cfg.model
    seed_split, seed_risk, *seed_learners = _seeds(model_cfg.seed, 2 + len(model_cfg.learners))
    learner_seeds = dict(zip(model_cfg.learners, seed_learners, strict=True))
    features = list(dataset.features)
    X = dataset.frame[features]
    treatment = dataset.treatment
    churned = dataset.churned
    train, test = split_holdout(treatment, churned, model_cfg.test_size, seed_split)
    check_groups(treatment[train], churned[train], cfg.control, cfg.arm_names,
                 source=dataset.source, column=f"column {dataset.treatment_column!r}")
    X_train, X_test = X.iloc[train], X.iloc[test]

    threads = fit_threads()
    fits: dict[str, float] = {}
    step("Fitting the churn-risk model")
    start = time.perf_counter()
    risk = _risk_model(dataset, cfg, seed_risk, threads).fit(X_train, treatment[train],
                                                              churned[train])
    fits["churn_risk"] = time.perf_counter() - start
    # One outcome model augments every candidate's doubly robust estimate, so that
    # candidates differ only where their policies do.
    outcomes = {g: risk.predict_proba(X_test, g) for g in cfg.groups}
    p_control = outcomes[cfg.control]
    budget, capacity = _scaled_limits(cfg, len(test) / dataset.n_rows)

    candidates: list[CandidateResult] = []
    fitted: dict[str, tuple[UpliftModel | EnsembleUpliftModel, PolicyResult, PolicyEstimate]] = {}
    scored: dict[str, pd.DataFrame] = {}

    def score(name: str, model: UpliftModel | EnsembleUpliftModel, uplift: pd.DataFrame,
              seconds: float, members: tuple[str, ...] = (), started: float | None = None,
              settings: dict | None = None) -> None:
        policy, estimate = _holdout_policy(uplift, p_control, outcomes, dataset, cfg, test,
                                           values, shares, budget, capacity)
        metrics = uplift_scores(treatment[test], churned[test], uplift, cfg.control,
                                cfg.arm_names)
        metrics.update(policy_net_value_per_customer=estimate.net_value_per_customer.value,
                       policy_churn_reduction=estimate.churn_reduction.value)
        deciles = decile_table(treatment[test], churned[test], uplift, cfg.control,
                               cfg.arm_names)
        candidates.append(CandidateResult(name, metrics, deciles, seconds, members=members,
                                          started=started, settings=settings or {}))
        fitted[name] = (model, policy, estimate)
        scored[name] = uplift

    for name, seed in learner_seeds.items():
        step(f"Fitting learner {name}")
        start, started = time.perf_counter(), time.time()
        model = _uplift_model(name, dataset, cfg, shares, seed, threads)
        settings = learner_settings(name, cfg.model.base, cfg.model.params.get(name))
        try:
            model.fit(X_train, treatment[train], churned[train])
            fits[name] = time.perf_counter() - start
            uplift = model.predict(X_test)
        except LearnerError as exc:
            candidates.append(CandidateResult(name, error=str(exc), started=started,
                                              fit_seconds=time.perf_counter() - start,
                                              settings=settings))
            continue
        score(name, model, uplift, time.perf_counter() - start, started=started,
              settings=settings)

    if not fitted:
        reasons = "; ".join(f"{c.learner}: {c.error}" for c in candidates)
        raise LearnerError(f"every candidate learner failed ({reasons})")
    if model_cfg.ensemble and len(fitted) >= 2:
        best = select(candidates, model_cfg.select_by, cfg.policy.objective, n=2)
        members = [fitted[name][0] for name in best]
        ensemble = EnsembleUpliftModel(members)
        score(ENSEMBLE, ensemble, sum(scored[n] for n in best) / len(best), 0.0, tuple(best),
              started=time.time(), settings={"members": " + ".join(best)})
    selected = select(candidates, model_cfg.select_by, cfg.policy.objective)[0]
    _, policy, estimate = fitted[selected]
    optimality_warning(policy.assignment, "the held-out policy")
    chosen = next(c for c in candidates if c.learner == selected)

    step(f"Refitting {selected} on all rows")
    start = time.perf_counter()
    refit = [_uplift_model(name, dataset, cfg, shares, learner_seeds[name], threads).fit(
        X, treatment, churned) for name in (chosen.members or (selected,))]
    final_uplift = refit[0] if len(refit) == 1 else EnsembleUpliftModel(refit)
    fits[f"refit_{selected}"] = time.perf_counter() - start
    start = time.perf_counter()
    final_risk = _risk_model(dataset, cfg, seed_risk, threads).fit(X, treatment, churned)
    fits["refit_churn_risk"] = time.perf_counter() - start
    trained = {name: RetentionModel(risk, model, features)
               for name, (model, _, _) in fitted.items()}
    return TrainingResult(
        model=RetentionModel(final_risk, final_uplift, features),
        selected=selected, select_by=model_cfg.select_by, candidates=tuple(candidates),
        holdout_policy=policy, policy_estimate=estimate, holdout_index=test,
        candidate_models=trained, fit_seconds=fits,
        holdout_scores=_with_risk(scored[selected], p_control), shares=shares,
    )


def holdout_budget_curve(training: TrainingResult, dataset: Dataset, cfg: ExperimentConfig,
                         points: int = BUDGET_POINTS) -> pd.DataFrame:
    """What each budget buys on the held-out rows, with the selected model's predictions.

    Budgets run from 0 to the cost of the policy without a budget (plus the config's
    budget, scaled to the held-out share, when it is above that); capacities stay as
    applied. Each point is the Lagrangian policy (feasible, near-optimal, fast). See
    :func:`uplift.policy.budget_curve` for the columns.
    """
    scores = training.holdout_scores
    idx = np.asarray(training.holdout_index)
    if scores is None or len(scores) != len(idx):
        raise ValueError("training.holdout_scores must hold the held-out rows' predictions")
    rows = dataset.frame.iloc[idx]
    p_control, p_arms = churn_probabilities(scores, cfg.arm_names)
    value = customer_values(dataset, cfg)[idx]
    policy = training.holdout_policy
    capacity = dict(policy.capacity or {})
    full = build_policy(p_control, p_arms, value, rows, cfg, budget=None, capacity=capacity)
    budgets = list(np.linspace(0.0, full.total_cost, points))
    if policy.budget is not None and policy.budget > full.total_cost:
        budgets.append(float(policy.budget))
    return budget_curve(p_control, p_arms, value, rows, cfg, budgets, capacity=capacity,
                        exact=False)


def _with_risk(uplift: pd.DataFrame, p_control: np.ndarray) -> pd.DataFrame:
    out = uplift.reset_index(drop=True).copy()
    out.insert(0, "churn_risk", np.asarray(p_control, dtype=float))
    return out


def _risk_model(dataset: Dataset, cfg: ExperimentConfig, seed: int,
                threads: int = 1) -> ChurnRiskModel:
    return ChurnRiskModel(base=cfg.model.base, control=cfg.control,
                          categorical=list(dataset.categorical), seed=seed, n_jobs=threads,
                          params=cfg.model.params.get("churn_risk"))


def _uplift_model(name: str, dataset: Dataset, cfg: ExperimentConfig,
                  shares: Mapping[str, float], seed: int, threads: int = 1) -> UpliftModel:
    return UpliftModel(learner=name, base=cfg.model.base, control=cfg.control,
                       arms=cfg.arm_names, propensity=shares,
                       categorical=list(dataset.categorical), seed=seed, n_jobs=threads,
                       params=cfg.model.params.get(name))


def _holdout_policy(uplift: pd.DataFrame, p_control: np.ndarray,
                    outcomes: Mapping[str, np.ndarray], dataset: Dataset,
                    cfg: ExperimentConfig, test: np.ndarray, values: np.ndarray,
                    shares: Mapping[str, float], budget: float | None,
                    capacity: dict[str, int]) -> tuple[PolicyResult, PolicyEstimate]:
    """The policy a model recommends for the held-out rows, and its DR estimate there."""
    _, p_arms = churn_probabilities(_with_risk(uplift, p_control), cfg.arm_names)
    frame = dataset.frame.iloc[test]
    policy = build_policy(p_control, p_arms, values[test], frame, cfg, budget=budget,
                          capacity=capacity)
    estimate = evaluate_policy(
        policy.offer, dataset.treatment[test], dataset.churned[test], values[test],
        control=cfg.control, arms=cfg.arms, propensity=shares,
        horizon_months=cfg.value_horizon_months, alpha=cfg.analysis.alpha,
        predicted_churn=dict(outcomes),
    )
    return policy, estimate
