"""Cross-fit every candidate learner, choose the policy to recommend, and estimate it honestly.

The rows are cut into seeded folds stratified by group and outcome (``model.folds``;
one fold is the single held-out split of ``model.test_size``, which ``auto`` uses for
the largest tables). Every candidate and the churn-risk model are fitted once per fold
on the other folds, so every customer gets predictions from models that never saw them.
Each candidate is scored on those out-of-fold predictions by causalml's Qini / AUUC
per offer and by the value of the policy it would recommend, estimated doubly robustly
with the design's assignment probabilities (see ``offpolicy.py``); the policies that
need no model (nobody, one offer for everyone) are candidates too. A learner that fails
is reported and skipped; only when every learner fails is it an error. The selection
rule is rerun fold by fold on the other folds' rows alone, so the reported estimate
includes the selection. The chosen learner is then refitted on all rows, and the
estimate moved to the refitted model's policy, the one the export applies: customers it
treats differently from the out-of-fold policy are valued by the churn-risk model
(``PolicyRows.moved_to``).

Customers are weighed by the probability they were assigned with
(``assignment.assignment_shares``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from .assignment import assignment_shares
from .config import ExperimentConfig
from .data import Dataset
from .errors import ConfigError, Problem
from .evaluation import (
    EVERYONE,
    NOBODY,
    CandidateResult,
    cross_folds,
    decile_table,
    everyone,
    uplift_scores,
)
from .formatting import (
    Paragraph,
    Table,
    gain,
    metric_with_interval,
    money,
    number,
    pp,
    render_markdown,
    with_interval,
)
from .learners import fit_threads, learner_settings
from .models import (
    ChurnRiskModel,
    EnsembleUpliftModel,
    LearnerError,
    RetentionModel,
    UpliftModel,
    check_groups,
    churn_probabilities,
    isotonic_calibrator,
    uplift_column,
)
from .offpolicy import (
    VERSUS_SIMPLE,
    Estimate,
    PolicyEstimate,
    PolicyRows,
    gains_over_chosen,
    policy_rows,
)
from .policy import PolicyResult, budget_curve, build_policy, optimality_warning

__all__ = ["ENSEMBLE", "RetentionModel", "TrainingResult", "assignment_shares",
           "customer_values", "holdout_budget_curve", "train_models"]

# RetentionModel lives in models.py; it is imported here too so that models pickled
# when it lived in this module still load.
ENSEMBLE = "ensemble"
BUDGET_POINTS = 12  # budgets of the held-out budget curve, from 0 to the policy's cost
# A policy that needs no model replaces the best model's only when it beats it by this
# many standard errors of the paired difference of their estimates (and in every fold):
# the best of several such policies is the challenger, so, as for rival learners, a lead
# of one standard error is often luck.
EVIDENCE_Z = 2.0
# A rival model replaces the favourite (the ensemble of the first two learners listed, or
# the first learner) only when it beats it by this many: several rivals each get a chance,
# and with four of them a lead of one standard error happens by luck about half the time.
RIVAL_Z = 2.0
# A candidate's own policy figures (with their intervals), beside its Qini and AUUC.
CANDIDATE_METRICS = ("policy_net_value_per_customer", "policy_churn_reduction")


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
    recommended: str = ""
    """The recommended policy: the selected model's (its name), ``nobody`` or
    ``everyone:<arm>``."""
    folds: int = 1
    """Cross-fitting folds (1: one held-out split)."""
    selection_estimate: PolicyEstimate | None = None
    """The recommended policy's estimate on the rows that chose it: optimistic."""
    reason: str = ""
    """Why a policy that needs no model is recommended: ``beaten`` (it beat the model's
    policy) or ``unproven`` (the interval of the reported estimate reached zero under
    ``policy.require_ci_above_zero``); ``""`` when the selected model's is."""
    declined_estimate: PolicyEstimate | None = None
    """Under ``unproven``: the honest estimate of the policy the run declined."""
    objective: str = "net_value"
    """What the policy maximises: ``net_value`` or ``churn_reduction``."""
    valued: bool = True
    """Whether customers had a value (``data.value``). Without one a kept customer is
    worth nothing, a policy's net value is only minus its cost, and tables leave it out."""
    simple: str = ""
    """The best policy that needs no model (``nobody`` or ``everyone:<arm>``): the one
    most folds chose from the other folds' rows."""
    simple_picks: tuple[str, ...] = ()
    """Per fold (per half of the held-out rows with one split), the simple policy chosen
    on the other folds' rows, which that fold's customers are compared with."""
    versus_simple: dict[str, Estimate] = field(default_factory=dict)
    """What the recommended model's policy earns over the best simple one on the same
    customers, paired: ``net_value`` (per customer) and ``churn_reduction``, each the
    reported estimate's figure minus the simple policy's (so each taken from the rows
    the reported one is: under ``net_value`` the churn figure is the recommended policy's
    own). Each fold's customers are set against the simple policy chosen on the other
    folds, so the simple side gains nothing from being picked on the rows that value it,
    and the interval comes from a bootstrap that makes those choices again (see
    :func:`~uplift.offpolicy.gains_over_chosen`). Empty when the run recommends a policy
    that needs no model."""
    simple_groups: np.ndarray | None = None
    """Each evaluated row's group (``holdout_index`` order) under the simple policy its
    fold was compared with."""

    def versus_metrics(self) -> dict[str, float]:
        """``policy_*_vs_simple`` with their intervals, when a model's policy is recommended."""
        out: dict[str, float] = {}
        for figure, est in self.versus_simple.items():
            name = VERSUS_SIMPLE[figure]
            out.update({name: est.value, f"{name}_ci_low": est.ci_low,
                        f"{name}_ci_high": est.ci_high})
        return out

    @property
    def simple_label(self) -> str:
        """The simple policy compared with, for people (``""`` when not compared).

        When the folds chose different ones, each with the number of folds (or halves)
        that chose it: ``webinar for everyone in 2 of 3 folds, nobody in 1``.
        """
        if not self.versus_simple:
            return ""
        names = {c.learner: c.display_name for c in self.candidates}
        picks = self.simple_picks or (self.simple,)
        counts = {p: picks.count(p) for p in sorted(set(picks), key=picks.index)}
        if len(counts) == 1:
            return names.get(self.simple, self.simple)
        unit = "folds" if self.folds > 1 else "halves"
        ordered = sorted(counts.items(), key=lambda kv: -kv[1])
        return ", ".join(f"{names.get(p, p)} in {n}" + (f" of {len(picks)} {unit}" if i == 0
                                                        else "")
                         for i, (p, n) in enumerate(ordered))

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
        """Per candidate: Qini per offer, mean AUUC, its policy's value, fit time, status."""
        arms = list(self.model.arms)
        net = ["net value / customer"] if self.valued else []
        header = ["candidate", *(f"Qini {a}" for a in arms), "mean AUUC", *net,
                  "churn reduction", "fit s", "status"]
        rows, highlight = [], []
        for i, cand in enumerate(self.candidates):
            if not cand.ok:
                rows.append([cand.label, *[""] * (len(header) - 3), f"{cand.fit_seconds:.1f}",
                             f"failed: {cand.error}"])
                continue
            m = cand.metrics
            status = self.status(cand)
            if status != "ok":
                highlight.append(i)
            model = not cand.model_free
            rows.append([cand.label if model else cand.display_name,
                         *(number(m.get(f"qini_{a}")) if model else "" for a in arms),
                         number(cand.mean_score("auuc")) if model else "",
                         *([money(m.get("policy_net_value_per_customer"))] if net else []),
                         pp(m.get("policy_churn_reduction")),
                         f"{cand.fit_seconds:.1f}" if model else "", status])
        where = ("out-of-fold predictions" if self.folds > 1 else "held-out rows")
        return Table.build(header, rows, numeric=range(1, len(header) - 1),
                           highlight=highlight, title=f"Candidates ({where})")

    def paragraphs(self) -> list[Paragraph]:
        """How the policy was chosen and where the figures come from."""
        rule = ("mean Qini over offers" if self.select_by == "qini" else
                "the doubly robust estimate of its policy's value")
        if self.folds > 1:
            where = (f"Every candidate was fitted {self.folds} times by cross-fitting, so "
                     "every customer was scored by models that never saw them")
            honest = ("each fold's customers valued under the policy this same rule chose "
                      "from the other folds alone")
        else:
            where = ("Every candidate was fitted on the training rows and scored on the "
                     "held-out rows")
            honest = ("each half of the held-out rows valued under the policy this same "
                      "rule chose from the other half alone")
        reported = (
            "it is that of offering nobody anything, zero relative to offering nothing "
            "(see below for why)" if self.recommended == NOBODY else
            f"its objective figure comes from {honest}, which includes the selection "
            "(under the net-value objective the churn and cost figures are the recommended "
            "policy's own out-of-fold estimates, which the selection did not rank on); "
            "customers whom the refitted model treats differently from the out-of-fold "
            "policy are valued by the cross-fitted churn-risk model, so every figure "
            "describes the policy the export applies")
        paragraphs = [Paragraph(
            f"{where}. The model was selected by {rule}: {self.selected}. The table's policy "
            "values are those the choice was made on, so the winner's is optimistic. The "
            f"policy estimate reported for the run is not: {reported}. The selected "
            "learner was then refitted on all rows.")]
        if self.reason == "unproven":
            paragraphs.append(Paragraph(
                f"The run recommends {self.recommended_label}: {self.declined_text}, and "
                "policy.require_ci_above_zero asks for offers only when that interval lies "
                "above zero. The export applies it; the model's predictions are kept for "
                "reference.",
                kind="warn"))
        elif self.recommended != self.selected:
            paragraphs.append(Paragraph(
                f"The run recommends {self.recommended_label}: on the out-of-fold estimates "
                f"it beats the selected model's policy by at least {EVIDENCE_Z:g} standard "
                "errors, and in every fold. The export applies it; the model's predictions are "
                "kept for reference.",
                kind="warn"))
        else:
            paragraphs.append(Paragraph(
                f"The run recommends the {self.selected} policy: no policy that needs no "
                "model (nobody, one offer for everyone) beats it by "
                f"{EVIDENCE_Z:g} standard errors or more and in every fold.{self._versus_text()}"))
        return paragraphs

    def _versus_text(self) -> str:
        """The recommended policy against the best simple one, a sentence (or ``""``)."""
        est = self.versus_simple.get(self.objective)
        if est is None:
            return ""
        what, fmt, unit = _objective_words(self.objective, signed=True)
        level = f"{100 * (1 - self.policy_estimate.alpha):g}%"
        part = "fold" if self.folds > 1 else "half of the held-out rows"
        return (f" Against the best of those, {self.simple_label} (each {part}'s customers "
                f"against the one chosen without them, paired; the interval includes those "
                f"choices): {what} "
                f"{with_interval(est.value, est.ci_low, est.ci_high, fmt)}{unit} ({level} CI).")

    def status(self, cand: CandidateResult) -> str:
        """``recommended``, ``selected model``, ``ok`` or ``failed: <why>``."""
        if not cand.ok:
            return f"failed: {cand.error}"
        return ("recommended" if cand.learner == self.recommended else
                "selected model" if cand.learner == self.selected else "ok")

    def candidate_note(self, cand: CandidateResult) -> str:
        """What one candidate is and what its policy earned, for its child run."""
        what = ("A policy that needs no model" if cand.model_free else
                f"The mean of the {' and '.join(cand.members)} learners' out-of-fold "
                f"predictions (their fits: {cand.fit_seconds:.1f} s)" if cand.members else
                f"Fitted {self.folds} times by cross-fitting ({cand.fit_seconds:.1f} s)"
                if self.folds > 1 else f"Fitted on the training rows ({cand.fit_seconds:.1f} s)")
        if not cand.ok:
            return f"**{cand.display_name}**: failed: {(cand.error or '')[:2000]}."
        status = self.status(cand)
        m = cand.metrics
        rows = "out-of-fold rows" if self.folds > 1 else "held-out rows"
        level = f"{100 * (1 - self.policy_estimate.alpha):g}% CI"
        net = metric_with_interval(m, "policy_net_value_per_customer", money)
        churn = metric_with_interval(m, "policy_churn_reduction", pp)
        figures = (f"net value {net} per customer, churn reduction {churn}" if self.valued
                   else f"churn reduction {churn}")  # no customer values: no net value
        return (f"**{cand.display_name}** ({status}). {what}. Its policy on the {rows}: "
                f"{figures} ({level}). These are the "
                "figures the selection compared, so the best of them is optimistic; the "
                "parent run reports the estimate that includes the selection.")

    @property
    def caution(self) -> str:
        """A warning when the recommended policy is estimated below nobody or a simpler one.

        Below offering nobody is the graver news and the one given; else below the best
        policy that needs no model; ``""`` if neither.

        The run keeps a model's policy unless a policy that needs no model beats it
        clearly, so a policy estimated below zero, or below a simpler one, can be
        recommended; the analyst should know, and know why (and, below zero, the setting
        that declines such a policy).
        """
        what, fmt, unit = _objective_words(self.objective)
        figure = _objective_figure(self.policy_estimate, self.objective).value
        if figure < 0:
            return (f"Caution: the recommended policy's estimated {what} ({fmt(figure)}) is "
                    "below offering nobody anything; with policy.require_ci_above_zero: true "
                    "the run recommends nobody unless the estimate's interval lies above zero")
        behind = self.versus_simple.get(self.objective)
        if behind is None or not behind.value < 0:
            return ""
        _, signed, _ = _objective_words(self.objective, signed=True)
        return (f"Caution: the recommended policy's estimated {what} is below that of "
                f"{self.simple_label} on the same customers (difference "
                f"{with_interval(behind.value, behind.ci_low, behind.ci_high, signed)}{unit}); "
                "a policy that needs no model replaces a model's only when it leads by "
                f"{EVIDENCE_Z:g} standard errors and in every fold, which it does not here")

    @property
    def declined_text(self) -> str:
        """The declined policy's honest estimate of the objective with its CI, for people."""
        est = self.declined_estimate
        if est is None:
            return ""
        what, fmt, unit = _objective_words(self.objective)
        figure = _objective_figure(est, self.objective)
        return (f"the policy this run would otherwise recommend has an estimated {what} of "
                f"{with_interval(figure.value, figure.ci_low, figure.ci_high, fmt)}{unit}, "
                "selection included, an interval that does not lie above zero")

    @property
    def why_recommended(self) -> str:
        """Why the run recommends a policy that needs no model, for people ("" if not)."""
        if self.reason == "unproven":
            return self.declined_text
        return "no model's policy was clearly better" if self.reason else ""

    @property
    def recommended_label(self) -> str:
        """The recommended policy's name for people."""
        cand = next((c for c in self.candidates if c.learner == self.recommended), None)
        return cand.display_name if cand is not None else self.recommended

    def to_markdown(self) -> str:
        """How the learner was chosen, then the candidates as a Markdown table."""
        return render_markdown(self.table(), self.paragraphs())


def _seeds(seed: int, n: int) -> list[int]:
    """Independent integer seeds for ``n`` random steps, all derived from ``seed``."""
    return [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(n)]


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
    """Cross-fit the config's candidate learners, choose a policy, and estimate it honestly.

    Args:
        dataset: The validated experiment data.
        cfg: The experiment config (learners, base, params, folds, test_size, seed,
            select_by, ensemble, policy).
        on_step: Called with a short description as each step starts (progress).

    Returns:
        The refitted chosen model and every candidate's out-of-fold results.

    Raises:
        ConfigError: net-value objective without a value column.
        TrainingDataError: a group of the training rows is too small or has one outcome.
        LearnerError: every candidate learner failed.
    """
    step = on_step or (lambda _: None)
    values = customer_values(dataset, cfg)
    shares = assignment_shares(dataset, cfg)
    model_cfg = cfg.model
    seed_split, seed_risk, *seed_learners, seed_versus = _seeds(
        model_cfg.seed, 3 + len(model_cfg.learners))
    learner_seeds = dict(zip(model_cfg.learners, seed_learners, strict=True))
    features = list(dataset.features)
    X = dataset.frame[features]
    treatment = dataset.treatment
    churned = dataset.churned
    fold = cross_folds(treatment, churned, model_cfg.fold_count(dataset.n_rows),
                       model_cfg.test_size, seed_split)
    n_folds = int(fold.max()) + 1
    for k in range(n_folds):
        check_groups(treatment[fold != k], churned[fold != k], cfg.control, cfg.arm_names,
                     source=dataset.source, column=f"column {dataset.treatment_column!r}")
    rows = np.flatnonzero(fold >= 0)  # every row, or the held-out share of one split

    threads = fit_threads()
    fits: dict[str, float] = {}
    of_folds = "" if n_folds == 1 else " (fold {k} of {n})"

    # One outcome model, cross-fitted, augments every candidate's doubly robust
    # estimate, so that candidates differ only where their policies do. Its isotonic
    # calibration is cross-fitted too: each block of rows is mapped by the one fitted on
    # the other blocks' out-of-fold scores (halves of the held-out rows for one split).
    selection_fold = (fold[rows] if n_folds > 1 else
                      cross_folds(treatment[rows], churned[rows], 2, 0.5, seed_split))
    scores = {g: np.full(dataset.n_rows, np.nan) for g in cfg.groups}
    start = time.perf_counter()
    for k in range(n_folds):
        step("Fitting the churn-risk model" + of_folds.format(k=k + 1, n=n_folds))
        fit, held = fold != k, fold == k
        risk = _risk_model(dataset, cfg, seed_risk, threads, calibrate=False).fit(
            X[fit], treatment[fit], churned[fit])
        for g in cfg.groups:
            scores[g][held] = risk.predict_proba(X[held], g)
    own_scores = np.empty(rows.size)  # each held-out row's score for its own group
    for g in cfg.groups:
        own_scores[treatment[rows] == g] = scores[g][rows][treatment[rows] == g]
    outcomes = {g: np.empty(rows.size) for g in cfg.groups}
    for b in range(int(selection_fold.max()) + 1):
        calibrator = isotonic_calibrator(own_scores[selection_fold != b],
                                         churned[rows][selection_fold != b])
        for g in cfg.groups:
            outcomes[g][selection_fold == b] = calibrator.predict(
                scores[g][rows][selection_fold == b])
    fits["churn_risk"] = time.perf_counter() - start
    step("Refitting the churn-risk model on all rows")
    start = time.perf_counter()
    held_out = (own_scores, churned[rows])
    final_risk = _risk_model(dataset, cfg, seed_risk, threads).fit(X, treatment, churned,
                                                                   held_out=held_out)
    fits["refit_churn_risk"] = time.perf_counter() - start

    candidates: list[CandidateResult] = []
    oof: dict[str, pd.DataFrame] = {}
    last: dict[str, UpliftModel] = {}
    for name, seed in learner_seeds.items():
        start, started = time.perf_counter(), time.time()
        settings = learner_settings(name, cfg.model.base, cfg.model.params.get(name))
        predicted = np.full((dataset.n_rows, len(cfg.arm_names)), np.nan)
        try:
            for k in range(n_folds):
                step(f"Fitting learner {name}" + of_folds.format(k=k + 1, n=n_folds))
                fit, held = fold != k, fold == k
                model = _uplift_model(name, dataset, cfg, shares, seed, threads)
                model.fit(X[fit], treatment[fit], churned[fit])
                predicted[held] = model.predict(X[held]).to_numpy(dtype=float)
        except LearnerError as exc:
            candidates.append(CandidateResult(name, error=str(exc), started=started,
                                              fit_seconds=time.perf_counter() - start,
                                              settings=settings))
            continue
        fits[name] = time.perf_counter() - start
        oof[name] = pd.DataFrame(predicted[rows], columns=[uplift_column(a)
                                                           for a in cfg.arm_names])
        last[name] = model
        candidates.append(CandidateResult(name, fit_seconds=fits[name], started=started,
                                          settings=settings))
    if not oof:
        reasons = "; ".join(f"{c.learner}: {c.error}" for c in candidates)
        raise LearnerError(f"every candidate learner failed ({reasons})")

    step("Choosing the policy")
    # The estimate of what choosing this way earns: each fold's rows valued under the
    # policy chosen on the other folds' rows alone (halves of the held-out rows for one
    # split).
    judge = _Judge(dataset, cfg, rows, values, shares, outcomes,
                   oof, ensemble=model_cfg.ensemble, blocks=selection_fold)
    everywhere = np.ones(rows.size, dtype=bool)
    best, chosen_key = judge.choose(everywhere)
    selected, recommended = judge.name(best), judge.name(chosen_key)
    picks = [judge.choose(selection_fold != k)[1] for k in range(int(selection_fold.max()) + 1)]
    keys, which = _by_fold(picks, selection_fold)
    procedure = PolicyRows.pick([judge.rows(p) for p in keys], which)

    pair = judge.pair
    if pair is not None:  # its fits are its members': it spans them and costs their sum
        parts = [c for c in candidates if c.learner in pair]
        candidates.append(CandidateResult(
            ENSEMBLE, members=pair, started=min(c.started or time.time() for c in parts),
            fit_seconds=sum(c.fit_seconds for c in parts),
            settings={"members": " + ".join(pair)}))
    candidates.extend(CandidateResult(t, settings={"policy": t}) for t in judge.trivial)
    scored = []
    for cand in candidates:
        if not cand.ok:
            scored.append(cand)
            continue
        key = pair if cand.learner == ENSEMBLE else cand.learner
        metrics = {name: v for name, v in judge.rows(key).estimate().metrics().items()
                   if name.startswith(CANDIDATE_METRICS)}
        deciles = None
        if not cand.model_free:
            uplift = judge.uplift(key)
            metrics = {**uplift_scores(treatment[rows], churned[rows], uplift, cfg.control,
                                       cfg.arm_names), **metrics}
            deciles = decile_table(treatment[rows], churned[rows], uplift, cfg.control,
                                   cfg.arm_names)
        scored.append(replace(cand, metrics=metrics, deciles=deciles))
    candidates = scored
    chosen = next(c for c in candidates if c.learner == selected)

    step(f"Refitting {selected} on all rows")
    start = time.perf_counter()
    refit = [_uplift_model(name, dataset, cfg, shares, learner_seeds[name], threads).fit(
        X, treatment, churned) for name in (chosen.members or (selected,))]
    final_uplift = refit[0] if len(refit) == 1 else EnsembleUpliftModel(refit)
    fits[f"refit_{selected}"] = time.perf_counter() - start

    # The policy exported is the refitted model's, which differs from the out-of-fold
    # policies on customers near a decision boundary; there the estimates follow the
    # cross-fitted outcome model (see PolicyRows.moved_to). Every fold is moved, also one
    # whose own choice was another policy: its rows keep the residual terms of the policy
    # chosen without them, so their outcomes never vouch for the recommended one, and
    # the estimate describes the policy the export applies.
    step("Estimating the recommended policy")
    deployed = judge.direct_of(judge.deployed(RetentionModel(
        final_risk, final_uplift, features, fixed_offer=judge.fixed_offer(recommended))).offer)
    direct = {p: judge.direct(p) for p in dict.fromkeys([*keys, chosen_key])}
    own_rows = judge.rows(chosen_key).moved_to(deployed, direct[chosen_key])
    procedure = procedure.moved_to(deployed, PolicyRows.pick([direct[p] for p in keys], which))
    honest = _reported(procedure.estimate(), own_rows.estimate(), cfg.policy.objective)
    reason = "" if recommended == selected else "beaten"
    declined = None
    if (cfg.policy.require_ci_above_zero and recommended != NOBODY
            and not _objective_figure(honest, cfg.policy.objective).ci_low > 0):
        declined = honest
        chosen_key = recommended = NOBODY
        reason = "unproven"
    if recommended == NOBODY:
        # Nobody's value relative to nobody is exactly zero on any rows, so the estimate
        # reported for it owes nothing to how it was chosen. The procedure's would keep
        # the residual terms of the policies other folds chose: noise about zero, whose
        # interval can miss zero where a few customers carry most of the value.
        honest = judge.rows(NOBODY).estimate()
    # The simple policy a fold is compared with is the best one on the other folds, as
    # the model's policy is: the best of several on the same rows would be optimistic.
    simple_picks = [judge.simplest(selection_fold != k)
                    for k in range(int(selection_fold.max()) + 1)]
    trivial_rows = [judge.rows(t) for t in judge.trivial]
    simple_index = [judge.trivial.index(p) for p in simple_picks]
    simple_rows = PolicyRows.pick(trivial_rows, np.asarray(simple_index)[selection_fold])
    simple = max(dict.fromkeys(simple_picks), key=simple_picks.count)
    versus = {} if recommended in judge.trivial else _versus(
        procedure, own_rows, trivial_rows, simple_index, selection_fold,
        cfg.policy.objective, seed_versus)
    policy = judge.policy(chosen_key, exact=True)
    optimality_warning(policy.assignment, "the held-out policy")
    own = judge.rows(chosen_key).estimate()
    trained = {name: RetentionModel(final_risk, model, features) for name, model in last.items()}
    if pair is not None:
        trained[ENSEMBLE] = RetentionModel(final_risk, EnsembleUpliftModel(
            [last[m] for m in pair]), features)
    return TrainingResult(
        model=RetentionModel(final_risk, final_uplift, features,
                             fixed_offer=judge.fixed_offer(recommended)),
        selected=selected, select_by=model_cfg.select_by, candidates=tuple(candidates),
        holdout_policy=policy, holdout_index=rows,
        policy_estimate=honest,
        candidate_models=trained, fit_seconds=fits,
        holdout_scores=_with_risk(judge.uplift(best), judge.p_control), shares=shares,
        recommended=recommended, folds=n_folds,
        selection_estimate=own, reason=reason, declined_estimate=declined,
        objective=cfg.policy.objective, valued=cfg.data.value is not None,
        simple=simple, simple_picks=tuple(simple_picks),
        versus_simple=versus,
        simple_groups=np.asarray(simple_rows.groups, dtype=object)[simple_rows.recommended],
    )


def _objective_words(objective: str, signed: bool = False
                     ) -> tuple[str, Callable[[float], str], str]:
    """What ``objective`` maximises for people: its name, its format and its unit.

    ``signed`` formats a net value with its sign, for a difference between policies.
    """
    if objective == "net_value":
        return "net value", gain if signed else money, " per customer"
    return "churn reduction", pp, ""


def _objective_figure(est: PolicyEstimate, objective: str) -> Estimate:
    """The estimate of what ``objective`` maximises: net value per customer or churn reduction."""
    return est.net_value_per_customer if objective == "net_value" else est.churn_reduction


def _by_fold(picks: list[str | tuple[str, ...]], folds: np.ndarray
             ) -> tuple[list[str | tuple[str, ...]], np.ndarray]:
    """The distinct policies of ``picks`` (one per fold), and each row's index into them."""
    keys = list(dict.fromkeys(picks))
    return keys, np.array([keys.index(p) for p in picks])[folds]


def _versus(procedure: PolicyRows, own: PolicyRows, simple: list[PolicyRows],
            picks: list[int], folds: np.ndarray, objective: str, seed: int
            ) -> dict[str, Estimate]:
    """The reported estimate's figures minus the simple policy each fold chose.

    Each fold's rows are set against ``simple[picks[fold]]``, the simple policy best on
    the other folds' rows, paired row by row, with an interval that includes that
    choice (see :func:`~uplift.offpolicy.gains_over_chosen`). Each figure comes from the
    rows :func:`_reported` takes it from: under ``net_value`` the net value from the
    selection procedure's and the churn reduction from the recommended policy's own;
    under ``churn_reduction`` both from the procedure's.
    """
    churn = own if objective == "net_value" else procedure
    figures = {figure: (rows.values(figure), np.column_stack([s.values(figure) for s in simple]))
               for figure, rows in (("net_value", procedure), ("churn_reduction", churn))}
    return gains_over_chosen(figures, np.column_stack([s.values(objective) for s in simple]),
                             folds, alpha=procedure.alpha, seed=seed, picks=picks)


def _reported(procedure: PolicyEstimate, own: PolicyEstimate, objective: str
              ) -> PolicyEstimate:
    """The estimate a run reports for its recommended policy.

    The selection ranked candidates on the objective, so the winner's own estimate of
    it is optimistic: under ``net_value`` the net value is the selection procedure's
    estimate (each fold valued under the policy chosen without it). The churn and cost
    figures are the recommended policy's own: the selection did not rank on them, and
    the procedure's, which mix the policies different folds chose, would describe no one
    policy. Both come moved to the refitted model's policy. Under ``churn_reduction``
    every figure is the procedure's, so that churn rate and reduction stay consistent.
    """
    if objective != "net_value":
        return procedure
    return replace(own, net_value_per_customer=procedure.net_value_per_customer)


class _Judge:
    """Policies and their doubly robust row values from out-of-fold predictions.

    Every candidate's policy is built for the evaluated rows from its out-of-fold
    predictions and valued there once (cached); :meth:`choose` is the whole selection
    rule on any subset of those rows, so it can be rerun fold by fold.
    """

    def __init__(self, dataset: Dataset, cfg: ExperimentConfig, rows: np.ndarray,
                 values: np.ndarray, shares: Mapping[str, float],
                 outcomes: Mapping[str, np.ndarray], oof: Mapping[str, pd.DataFrame],
                 ensemble: bool, blocks: np.ndarray):
        self.cfg = cfg
        self.blocks = np.asarray(blocks)
        self.frame = dataset.frame.iloc[rows]
        self.treatment = dataset.treatment[rows]
        self.churned = np.asarray(dataset.churned)[rows]
        self.value = values[rows]
        self.shares = shares
        self.outcomes = outcomes
        self.p_control = outcomes[cfg.control]
        self.oof = oof
        self.ensemble = ensemble and len(oof) >= 2
        self.budget, self.capacity = _scaled_limits(cfg, len(rows) / dataset.n_rows)
        self.trivial = [NOBODY, *(everyone(a) for a in cfg.arm_names)]
        self._rows: dict[object, PolicyRows] = {}
        self._offers: dict[object, np.ndarray] = {}
        self._qini: dict[object, dict[str, float]] = {}

    def uplift(self, key: str | tuple[str, ...]) -> pd.DataFrame:
        """Out-of-fold ``uplift_<arm>`` of a learner, or the mean of a pair's."""
        if isinstance(key, tuple):
            return sum(self.oof[m] for m in key) / len(key)
        return self.oof[key]

    @staticmethod
    def name(key: str | tuple[str, ...]) -> str:
        """A candidate's name: a learner's, a model-free policy's, or ``ensemble``."""
        return ENSEMBLE if isinstance(key, tuple) else key

    def fixed_offer(self, name: str) -> str | None:
        """The fixed offer of a model-free policy (the control's name for nobody)."""
        if name == NOBODY:
            return self.cfg.control
        return name[len(EVERYONE):] if name.startswith(EVERYONE) else None

    def policy(self, key: str | tuple[str, ...], exact: bool = False) -> PolicyResult:
        """The policy of a candidate for the evaluated rows.

        A model-free policy orders customers (under a budget or capacity) by the mean
        of every learner's predictions.
        """
        fixed = self.fixed_offer(key) if isinstance(key, str) else None
        source = (tuple(self.oof) if len(self.oof) > 1 else next(iter(self.oof))
                  ) if fixed is not None else key
        _, p_arms = churn_probabilities(_with_risk(self.uplift(source), self.p_control),
                                        self.cfg.arm_names)
        return build_policy(self.p_control, p_arms, self.value, self.frame, self.cfg,
                            budget=self.budget, capacity=self.capacity, exact=exact,
                            fixed_offer=fixed)

    def deployed(self, model: RetentionModel) -> PolicyResult:
        """The policy a fitted model (the refitted one) recommends for the evaluated rows."""
        p_control, p_arms = model.predict_churn(self.frame)
        return build_policy(p_control, p_arms, self.value, self.frame, self.cfg,
                            budget=self.budget, capacity=self.capacity,
                            fixed_offer=model.fixed_offer)

    def offer(self, key: str | tuple[str, ...]) -> np.ndarray:
        """Each evaluated row's group under a candidate's policy (cached)."""
        if key not in self._offers:
            self._offers[key] = self.policy(key).offer
        return self._offers[key]

    def rows(self, key: str | tuple[str, ...]) -> PolicyRows:
        """The doubly robust row values of a candidate's policy (cached)."""
        if key not in self._rows:
            self._rows[key] = self._values(self.offer(key), "doubly robust")
        return self._rows[key]

    def direct(self, key: str | tuple[str, ...]) -> PolicyRows:
        """The outcome model's row values of a candidate's policy (no residual terms)."""
        return self.direct_of(self.offer(key))

    def direct_of(self, offer: np.ndarray) -> PolicyRows:
        """The outcome model's row values of any policy's offers for the evaluated rows."""
        return self._values(offer, "direct")

    def _values(self, offer: np.ndarray, estimator: str) -> PolicyRows:
        cfg = self.cfg
        return policy_rows(offer, self.treatment, self.churned, self.value,
                           control=cfg.control, arms=cfg.arms, propensity=self.shares,
                           horizon_months=cfg.value_horizon_months, alpha=cfg.analysis.alpha,
                           predicted_churn=dict(self.outcomes), estimator=estimator)

    def score(self, key: str | tuple[str, ...], mask: np.ndarray) -> float:
        """What ``select_by`` ranks on the rows of ``mask`` (higher is better)."""
        if self.cfg.model.select_by == "qini" and key not in self.trivial:
            cache = (key, mask.tobytes())
            if cache not in self._qini:
                self._qini[cache] = uplift_scores(
                    self.treatment[mask], self.churned[mask],
                    self.uplift(key)[mask].reset_index(drop=True), self.cfg.control,
                    self.cfg.arm_names)
            qini = [v for k, v in self._qini[cache].items() if k.startswith("qini_")]
            return float(np.mean(qini))
        return self.worth(key, mask)

    @property
    def pair(self) -> tuple[str, ...] | None:
        """The ensemble's members, if ensembling: the first two learners listed that fitted."""
        return tuple(list(self.oof)[:2]) if self.ensemble else None

    @property
    def favourite(self) -> str | tuple[str, ...]:
        """The model a rival must clearly beat: the ensemble, else the first learner."""
        return self.pair or next(iter(self.oof))

    def choose(self, mask: np.ndarray) -> tuple[str | tuple[str, ...], str | tuple[str, ...]]:
        """On the rows of ``mask``: the best model, and the policy to recommend (keys).

        Under ``select_by: policy_value`` the favourite is the ensemble (the average of
        the first two learners listed that fitted), or the first learner without one: a
        single learner replaces it only when its policy beats the favourite's by at least
        ``RIVAL_Z`` standard errors of their paired difference. The best model's policy
        is then recommended unless the best policy that needs no model (nobody, or one
        offer for everyone) beats it by ``EVIDENCE_Z``. Either lead must also hold in
        every fold (see :meth:`_beats`). At 20k customers one policy's net
        value is estimated within tens of currency units per customer, so a small lead of
        any kind is mostly noise; ranking on it picks the luckiest candidate, and the
        suite of worlds finds a fixed favourite ahead.
        """
        pair = self.pair
        models: list[str | tuple[str, ...]] = [*self.oof, *([pair] if pair else [])]
        best = max(models, key=lambda m: self.score(m, mask))
        favourite = self.favourite
        if (self.cfg.model.select_by != "qini" and best != favourite
                and not self._beats(best, favourite, mask, RIVAL_Z)):
            best = favourite
        simple = self.simplest(mask)
        return best, (simple if self._beats(simple, best, mask) else best)

    def simplest(self, mask: np.ndarray) -> str:
        """The best policy that needs no model on the rows of ``mask``."""
        return max(self.trivial, key=lambda t: self.worth(t, mask))

    def _beats(self, key: str | tuple[str, ...], other: str | tuple[str, ...],
               mask: np.ndarray, z: float = EVIDENCE_Z) -> bool:
        """Whether ``key``'s policy beats ``other``'s by ``z`` paired standard errors.

        It must also be ahead in every fold of ``mask``: with revenue concentrated in a
        few accounts, a handful of them in one fold can make a lead of two standard
        errors (the interval assumes no such tail), and that lead is luck.
        """
        objective = self.cfg.policy.objective
        gain = self.rows(key).values(objective) - self.rows(other).values(objective)
        chosen = gain[mask]
        se = float(np.std(chosen, ddof=1) / np.sqrt(chosen.size)) if chosen.size > 1 else np.inf
        if not chosen.mean() > z * se:
            return False
        return all(gain[mask & (self.blocks == b)].mean() > 0
                   for b in np.unique(self.blocks[mask]))

    def worth(self, key: str | tuple[str, ...], mask: np.ndarray) -> float:
        """The objective's estimate (net value or churn reduction per customer) on ``mask``."""
        return float(self.rows(key).values(self.cfg.policy.objective)[mask].mean())


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
                threads: int = 1, calibrate: bool = True) -> ChurnRiskModel:
    return ChurnRiskModel(base=cfg.model.base, control=cfg.control,
                          categorical=list(dataset.categorical), calibrate=calibrate,
                          seed=seed, n_jobs=threads,
                          params=cfg.model.params.get("churn_risk"))


def _uplift_model(name: str, dataset: Dataset, cfg: ExperimentConfig,
                  shares: Mapping[str, float], seed: int, threads: int = 1) -> UpliftModel:
    return UpliftModel(learner=name, base=cfg.model.base, control=cfg.control,
                       arms=cfg.arm_names, propensity=shares,
                       categorical=list(dataset.categorical), seed=seed, n_jobs=threads,
                       params=cfg.model.params.get(name))
