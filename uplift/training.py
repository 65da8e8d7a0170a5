"""Fit every candidate learner, judge each on held-out rows, pick one, and refit it.

The held-out rows are a seeded split stratified by group and outcome. Each
candidate is scored there by causalml's Qini / AUUC per offer and by the value of
the policy it would recommend, estimated doubly robustly with the design's known
propensities (see ``offpolicy.py``). A learner that fails is reported and skipped;
only when every learner fails is it an error. The chosen learner is then refitted
on all rows (more data, same procedure), while the reported held-out figures
belong to the fit on the training rows, so they stay honest.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .config import ExperimentConfig
from .data import Dataset
from .errors import ConfigError, Problem
from .evaluation import decile_table, split_holdout, uplift_scores
from .learners import fit_threads
from .models import (
    ChurnRiskModel,
    EnsembleUpliftModel,
    LearnerError,
    UpliftModel,
    uplift_column,
)
from .offpolicy import PolicyEstimate, evaluate_policy
from .policy import PolicyResult, build_policy

ENSEMBLE = "ensemble"


class RetentionModel:
    """Churn risk with no offer plus the predicted churn reduction of every offer.

    What gets registered and exported: ``predict`` takes raw customer rows and
    returns ``churn_risk`` and one ``uplift_<arm>`` column per offer.
    """

    def __init__(self, risk: ChurnRiskModel, uplift: UpliftModel | EnsembleUpliftModel,
                 features: Sequence[str]):
        self.risk = risk
        self.uplift = uplift
        self.features = list(features)

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


@dataclass(frozen=True)
class CandidateResult:
    """One learner's held-out performance, or why it failed."""

    learner: str
    metrics: dict[str, float] = field(default_factory=dict)
    deciles: pd.DataFrame | None = None
    fit_seconds: float = 0.0
    error: str | None = None
    members: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True when the learner fitted and was scored."""
        return self.error is None


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

    def to_frame(self) -> pd.DataFrame:
        """One row per candidate learner with its held-out metrics."""
        rows = []
        for cand in self.candidates:
            rows.append({"learner": cand.learner, "selected": cand.learner == self.selected,
                         "fit_seconds": cand.fit_seconds, "error": cand.error,
                         **cand.metrics})
        return pd.DataFrame(rows)

    def to_markdown(self) -> str:
        """The candidates as a Markdown table (mean Qini over offers, policy value, time)."""
        lines = [f"Selected **{self.selected}** by {self.select_by}.", "",
                 "| learner | mean qini | mean auuc | policy value | churn reduction | fit s |",
                 "| --- | ---: | ---: | ---: | ---: | ---: |"]
        for cand in self.candidates:
            if not cand.ok:
                lines.append(f"| {cand.learner} | failed: {cand.error} | | | | |")
                continue
            qini = np.mean([v for k, v in cand.metrics.items() if k.startswith("qini_")])
            auuc = np.mean([v for k, v in cand.metrics.items() if k.startswith("auuc_")])
            name = cand.learner + (f" ({'+'.join(cand.members)})" if cand.members else "")
            lines.append(f"| {name} | {qini:.4f} | {auuc:.4f} | "
                         f"{cand.metrics['policy_value']:.2f} | "
                         f"{100 * cand.metrics['policy_churn_reduction']:+.2f} pp | "
                         f"{cand.fit_seconds:.1f} |")
        return "\n".join(lines) + "\n"


def _seeds(seed: int, n: int) -> list[int]:
    """Independent integer seeds for ``n`` random steps, all derived from ``seed``."""
    return [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(n)]


def design_shares(dataset: Dataset, cfg: ExperimentConfig) -> dict[str, float]:
    """The known assignment probabilities: the allocation, else the observed shares."""
    if cfg.allocation is not None:
        return dict(cfg.allocation)
    counts = dataset.group_counts()
    return {g: float(n) / dataset.n_rows for g, n in counts.items()}


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
        cfg: The experiment config (learners, base, test_size, seed, select_by, policy).
        on_step: Called with a short description as each step starts (progress).

    Returns:
        The refitted chosen model and every candidate's held-out results.

    Raises:
        ConfigError: net-value objective without a value column.
        LearnerError: every candidate learner failed.
    """
    step = on_step or (lambda _: None)
    values = customer_values(dataset, cfg)
    shares = design_shares(dataset, cfg)
    model_cfg = cfg.model
    seed_split, seed_risk, *seed_learners = _seeds(model_cfg.seed, 2 + len(model_cfg.learners))
    learner_seeds = dict(zip(model_cfg.learners, seed_learners, strict=True))
    features = list(dataset.features)
    X = dataset.frame[features]
    treatment = dataset.treatment
    churned = dataset.churned
    train, test = split_holdout(treatment, churned, model_cfg.test_size, seed_split)
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
              seconds: float, members: tuple[str, ...] = ()) -> None:
        policy, estimate = _holdout_policy(uplift, p_control, outcomes, dataset, cfg, test,
                                           values, shares, budget, capacity)
        metrics = uplift_scores(treatment[test], churned[test], uplift, cfg.control,
                                cfg.arm_names)
        metrics.update(_selection_metrics(estimate))
        deciles = decile_table(treatment[test], churned[test], uplift, cfg.control,
                               cfg.arm_names)
        candidates.append(CandidateResult(name, metrics, deciles, seconds, members=members))
        fitted[name] = (model, policy, estimate)
        scored[name] = uplift

    for name, seed in learner_seeds.items():
        step(f"Fitting learner {name}")
        start = time.perf_counter()
        model = _uplift_model(name, dataset, cfg, shares, seed, threads)
        try:
            model.fit(X_train, treatment[train], churned[train])
            fits[name] = time.perf_counter() - start
            uplift = model.predict(X_test)
        except LearnerError as exc:
            candidates.append(CandidateResult(name, error=str(exc),
                                              fit_seconds=time.perf_counter() - start))
            continue
        score(name, model, uplift, time.perf_counter() - start)

    if not fitted:
        reasons = "; ".join(f"{c.learner}: {c.error}" for c in candidates)
        raise LearnerError(f"every candidate learner failed ({reasons})")
    if model_cfg.ensemble and len(fitted) >= 2:
        best = ranked(candidates, model_cfg.select_by, cfg.policy.objective)[:2]
        members = [fitted[name][0] for name in best]
        ensemble = EnsembleUpliftModel(members)
        score(ENSEMBLE, ensemble, sum(scored[n] for n in best) / len(best), 0.0, tuple(best))
    selected = ranked(candidates, model_cfg.select_by, cfg.policy.objective)[0]
    _, policy, estimate = fitted[selected]
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
        holdout_scores=_with_risk(scored[selected], p_control),
    )


def _with_risk(uplift: pd.DataFrame, p_control: np.ndarray) -> pd.DataFrame:
    out = uplift.reset_index(drop=True).copy()
    out.insert(0, "churn_risk", np.asarray(p_control, dtype=float))
    return out


def _risk_model(dataset: Dataset, cfg: ExperimentConfig, seed: int,
                threads: int = 1) -> ChurnRiskModel:
    return ChurnRiskModel(base=cfg.model.base, control=cfg.control,
                          categorical=list(dataset.categorical), seed=seed, n_jobs=threads)


def _uplift_model(name: str, dataset: Dataset, cfg: ExperimentConfig,
                  shares: Mapping[str, float], seed: int, threads: int = 1) -> UpliftModel:
    return UpliftModel(learner=name, base=cfg.model.base, control=cfg.control,
                       arms=cfg.arm_names, propensity=shares,
                       categorical=list(dataset.categorical), seed=seed, n_jobs=threads)


def _holdout_policy(uplift: pd.DataFrame, p_control: np.ndarray,
                    outcomes: Mapping[str, np.ndarray], dataset: Dataset,
                    cfg: ExperimentConfig, test: np.ndarray, values: np.ndarray,
                    shares: Mapping[str, float], budget: float | None,
                    capacity: dict[str, int]) -> tuple[PolicyResult, PolicyEstimate]:
    """The policy a model recommends for the held-out rows, and its DR estimate there."""
    u = uplift[[uplift_column(a) for a in cfg.arm_names]].to_numpy()
    p_arms = np.clip(p_control[:, None] - u, 1e-6, 1 - 1e-6)
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


def _selection_metrics(estimate: PolicyEstimate) -> dict[str, float]:
    return {
        "policy_value": estimate.net_value_per_customer.value,
        "policy_churn_reduction": estimate.churn_reduction.value,
    }


def ranked(candidates: Sequence[CandidateResult], select_by: str,
           objective: str = "net_value") -> list[str]:
    """Fitted candidates' names, best first: by mean Qini over offers, or by policy value.

    With ``select_by: policy_value`` the value is the held-out estimate of the net value
    per customer under the net-value objective, and of the churn reduction under the
    churn-reduction objective. Ties keep the config's order.
    """
    scored = [c for c in candidates if c.ok]
    if not scored:
        raise LearnerError("no candidate learner was fitted")

    def score(c: CandidateResult) -> float:
        if select_by == "policy_value":
            key = "policy_value" if objective == "net_value" else "policy_churn_reduction"
            return c.metrics[key]
        qinis = [v for k, v in c.metrics.items() if k.startswith("qini_")]
        return float(np.mean(qinis)) if qinis else float("-inf")

    return [c.learner for c in sorted(scored, key=score, reverse=True)]
