"""``run_experiment``: config, data, readout, models, policy, baseline, report, MLflow.

The one orchestrator the CLI and notebooks call. Everything that can fail on bad
input happens before the run starts, so bad input creates no run. Fitting happens
inside the run (``tracking.start_run``: an exception, Ctrl-C or SIGTERM ends it
FAILED or KILLED, never RUNNING), and the model is registered only after the run
has finished. Every MLflow call goes through ``tracking`` and ``registry``.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import pandas as pd

from . import __version__
from .analysis import RctResult, analyze_dataset
from .background import Background
from .config import ExperimentConfig, load_config, parse_period, run_problems
from .data import Dataset, load_dataset
from .errors import ArgumentError, ArgumentProblem, ConfigError, Problem
from .evaluation import NOBODY
from .formatting import NO_NET_VALUE, Paragraph, gain, metric_with_interval, money, pct, pp
from .learners import settings_problems
from .offpolicy import VERSUS_SIMPLE
from .tables import current_umask
from .training import TrainingResult, holdout_budget_curve, train_models

if TYPE_CHECKING:
    from .tracking import RunRecorder

DEFAULT_REPORTS = Path("reports")


@dataclass(frozen=True)
class RunResult:
    """What a run produced: ids, the logged metrics and where the report is."""

    run_id: str
    experiment_id: str
    tracking_uri: str
    period: str
    selected_learner: str
    model_name: str
    model_version: str
    metrics: dict[str, float]
    report_path: Path
    baseline_source: str
    recommended: str = ""
    """A policy that needs no model, when the run recommends one instead of the model's."""
    why_recommended: str = ""
    """Why it does, for people."""
    seconds: dict[str, float] = field(default_factory=dict)
    rct: RctResult | None = None
    """The readout, with its covariate-adjusted effects when there are some."""
    selected_label: str = ""
    """The selected learner for people, e.g. ``ensemble (s + gam)`` or ``S-learner (s)``."""
    simple_label: str = ""
    """The best policy that needs no model, when the recommended one is a model's."""
    caution: str = ""
    """A warning when the recommended policy is estimated below offering nobody."""
    valued: bool = True
    """Whether customers had a value (``data.value``), without which no net value means much."""

    def to_frame(self) -> pd.DataFrame:
        """The logged metrics as a two-column table."""
        return pd.DataFrame(sorted(self.metrics.items()), columns=["metric", "value"])

    def summary_lines(self) -> list[str]:
        """What the run found, for people: the period, the model, the policy, the baseline."""
        m = self.metrics
        adjusted = self.rct.adjusted_summary() if self.rct is not None else None
        lines = [f"Period {self.period}: {int(m['n_customers']):,} customers, observed churn "
                 f"{pct(m['churn_rate_observed'])}",
                 *([adjusted] if adjusted else []),
                 f"Selected learner: {self.selected_label or self.selected_learner}; "
                 f"registered {self.model_name} "
                 f"version {self.model_version} as 'candidate'",
                 *([f"Recommended policy: {self.recommended} ({self.why_recommended}; the "
                    "export applies it)"] if self.recommended else []),
                 *outcome_lines(self.metrics, self.baseline_source, self.simple_label,
                                self.caution, self.valued),
                 f"Report: {self.report_path}"]
        t = self.seconds
        if {"total", "fits", "report", "report_wait", "tracking", "register"} <= set(t):
            lines.append(f"Time: {t['total']:.1f} s (model fits {t['fits']:.1f} s, MLflow "
                         f"logging {t['tracking']:.1f} s, report {t['report']:.1f} s "
                         f"({t['report_wait']:.1f} s after the logging), registering "
                         f"{t['register']:.2f} s)")
        return lines


def _learner_label(display_name: str, learner: str) -> str:
    """``ensemble (s + gam)`` as is; ``S-learner`` with its config name: ``S-learner (s)``."""
    return display_name if display_name.startswith(learner) else f"{display_name} ({learner})"


def outcome_lines(metrics: dict[str, float], baseline_source: str,
                  simple_label: str = "", caution: str = "", valued: bool = True) -> list[str]:
    """The policy's held-out estimate and the baseline comparison, one line each.

    When the metrics compare the recommended policy with the best one that needs no
    model (``simple_label``), that comparison follows the estimate, on its line, and a
    ``caution`` (:attr:`TrainingResult.caution`) after it. Without customer values
    (``valued`` false: no ``data.value``) a kept customer is worth nothing to the
    metrics, so the lines give the policy's cost instead of a net value. The run's
    summary and its description in MLflow say them this way.
    """
    m = metrics
    economics = (f"net value {metric_with_interval(m, 'policy_net_value_per_customer', money)}"
                 if valued else
                 f"cost {metric_with_interval(m, 'policy_cost_per_customer', money)}")
    policy = (f"Recommended policy (held-out estimate): churn {pct(m['policy_churn_rate'])}, "
              f"reduction {metric_with_interval(m, 'policy_churn_reduction', pp)}, "
              f"{economics} per customer{'' if valued else ' ' + NO_NET_VALUE}")
    net, churn = VERSUS_SIMPLE["net_value"], VERSUS_SIMPLE["churn_reduction"]
    versus = [f"Against {simple_label} (the best policy that needs no model), same customers: "
              f"reduction {metric_with_interval(m, churn, pp)}"
              + (f", net value {metric_with_interval(m, net, gain)} per customer" if valued
                 else "")
              ] if simple_label and net in m and churn in m else []
    if "baseline_churn_rate" in m:
        baseline = (f"Baseline churn {pct(m['baseline_churn_rate'])} (from {baseline_source}); "
                    f"policy vs baseline {pp(m['churn_reduction_vs_baseline'])}")
    else:
        baseline = ("Baseline churn: unknown (no run for the baseline period and no "
                    "baseline.churn_rate)")
    return [policy, *versus, *([caution] if caution else []), baseline]


def prepare_run(config_path: str | Path, period: str | None = None
                ) -> tuple[ExperimentConfig, Dataset]:
    """Load and validate the config and data, with ``period`` overriding the config's."""
    cfg = load_config(config_path)
    if period is not None:
        try:
            parse_period(period)
        except ValueError as exc:
            raise ConfigError(ArgumentProblem(None, "period", str(exc))) from None
        cfg = cfg.model_copy(update={"period": period})  # keeps the file's source and sha256
    if cfg.period is None:
        raise ConfigError(Problem(str(config_path), "period",
                                  "required: the period the test ran in (YYYY-MM), here or "
                                  "given to the run"))
    problems = [*settings_problems(cfg), *run_problems(cfg)]
    if problems:
        raise ConfigError(problems)
    return cfg, load_dataset(cfg)


def collect_metrics(rct: RctResult, training: TrainingResult,
                    baseline: float | None) -> dict[str, float]:
    """Every metric of SPEC section 4 for the run (baseline ones only when known).

    The readout's covariate-adjusted metrics come with it, when it has them.
    """
    metrics: dict[str, float] = dict(rct.metrics())
    metrics.update({k: v for k, v in training.chosen.metrics.items()
                    if k.startswith(("qini_", "auuc_"))})
    metrics.update(training.policy_estimate.metrics())
    metrics.update(training.versus_metrics())
    if baseline is not None:
        metrics["baseline_churn_rate"] = baseline
        metrics["churn_reduction_vs_baseline"] = baseline - metrics["policy_churn_rate"]
    return metrics


def run_experiment(config_path: str | Path, tracking_uri: str | None = None,
                   period: str | None = None,
                   on_step: Callable[[str], None] | None = None,
                   reports: str | os.PathLike[str] | None = DEFAULT_REPORTS) -> RunResult:
    """The main job: validate, then inside one MLflow run model, decide, compare, report, log.

    Bad input is refused before anything touches the store. The run starts after
    validation, so an error or an interrupt while fitting ends it FAILED or KILLED;
    the model is registered only once the run has FINISHED.

    Args:
        config_path: The experiment config file.
        tracking_uri: MLflow store (else env MLFLOW_TRACKING_URI, else tracking.uri, else
            the default ``sqlite:///mlruns/mlflow.db``).
        period: Overrides the config's period (YYYY-MM).
        on_step: Called with a short description as each step starts.
        reports: Folder that receives a copy of the report as ``<period>/`` (replaced
            whole, by renames, never half-written); None keeps it only in MLflow.

    Returns:
        The finished run's ids, metrics, model version and report path.
    """
    from . import registry, tracking

    step = on_step or (lambda _: None)
    seconds: dict[str, float] = {}
    clock = time.perf_counter()
    step("Validating config and data")
    cfg, dataset = prepare_run(config_path, period)
    if reports is not None:
        _check_reports_folder(Path(reports) / str(cfg.period))
    step("Analyzing the randomized test")
    rct = analyze_dataset(dataset, cfg)
    config_text = Path(config_path).read_text(encoding="utf-8")
    seconds["prepare"] = time.perf_counter() - clock

    uri = tracking.resolve_tracking_uri(tracking_uri, cfg)
    client = tracking.open_client(uri)
    experiment_id = tracking.get_or_create_experiment(client, cfg.name, uri)
    baseline_period = cfg.resolved_baseline_period()
    with tempfile.TemporaryDirectory() as tmp, tracking.start_run(
            uri, experiment_id, str(cfg.period)) as run:
        run.set_tags({"period": str(cfg.period), "baseline_period": baseline_period or "",
                      "config_sha256": cfg.sha256 or "", "data_sha256": dataset.sha256,
                      "uplift_version": __version__})
        run.log_params(tracking.flatten_params(cfg, baseline_period))
        run.log_dataset(dataset.frame, name=_dataset_name(cfg, dataset), digest=dataset.sha256,
                        source=cfg.data.path)

        start = time.perf_counter()
        training = train_models(dataset, cfg, on_step=step)
        seconds["models"] = time.perf_counter() - start
        seconds["fits"] = sum(training.fit_seconds.values())
        run.set_tags({"selected_learner": training.selected,
                      "recommended_policy": training.recommended,
                      "recommended_because": training.reason or "selected model"})
        baseline, baseline_source = tracking.find_baseline(client, experiment_id,
                                                           baseline_period, cfg)
        metrics = collect_metrics(rct, training, baseline)

        # The report is drawn in a child process while this one logs to MLflow (here,
        # before the logging, where there is no child).
        start = time.perf_counter()
        step("Writing the report and logging to MLflow")
        report_dir = Path(tmp) / "report"
        with Background(_write_report, report_dir, cfg=cfg, dataset=dataset, rct=rct,
                        training=training, baseline_churn_rate=baseline,
                        baseline_source=baseline_source, run_id=run.run_id,
                        summary=_report_summary(training, metrics, baseline_source)
                        ) as report:
            waited = time.perf_counter() - start
            logged = tracking.logged_metric_names(cfg.arm_names)
            run.log_metrics({k: v for k, v in metrics.items() if k in logged})
            run.log_dict(tracking.finite_metrics(metrics), "metrics/all_metrics.json")
            _log_candidates(run, training, str(cfg.period))
            run.log_text(config_text, "config/experiment.yaml")
            run.set_description(_description(cfg, training, metrics, baseline_source,
                                              experiment_id, run.run_id))
            log_start = time.perf_counter()
            info = registry.log_model(training.model, dataset, config_text)
            seconds["log_model"] = time.perf_counter() - log_start
            wait = time.perf_counter()
            seconds["report"] = report.result()
            seconds["report_wait"] = waited + time.perf_counter() - wait
        run.log_folder(report_dir, "report")
        seconds["tracking"] = time.perf_counter() - start - seconds["report_wait"]
        run.log_dict({**seconds, "fit_seconds": training.fit_seconds}, "timings.json")
        copy = None if reports is None else replace_folder(report_dir,
                                                           Path(reports) / str(cfg.period))

    register_start = time.perf_counter()
    version = registry.register(
        client, info.model_uri, cfg.tracking.registered_model, run.run_id,
        description=_version_description(cfg, training, metrics, dataset),
        tags={"period": str(cfg.period), "selected_learner": training.selected,
              "recommended_policy": training.recommended,
              "data_sha256": dataset.sha256,
              **{name: f"{metrics[name]:.6g}" for name in
                 ("policy_churn_reduction",
                  *(["policy_net_value_per_customer"] if training.valued else []))
                 if math.isfinite(metrics[name])}},
        model_id=getattr(info, "model_id", None))
    seconds["register"] = time.perf_counter() - register_start
    seconds["total"] = time.perf_counter() - clock
    return RunResult(
        run_id=run.run_id, experiment_id=experiment_id, tracking_uri=uri,
        period=str(cfg.period), selected_learner=training.selected,
        selected_label=_learner_label(training.chosen.display_name, training.selected),
        simple_label=training.simple_label,
        recommended=training.recommended_label if training.recommended != training.selected
        else "", why_recommended=training.why_recommended,
        model_name=cfg.tracking.registered_model, model_version=version, metrics=metrics,
        report_path=(copy if copy is not None else Path(f"runs:/{run.run_id}/report")) /
        "report.html", baseline_source=baseline_source, seconds=seconds, rct=rct,
        caution=training.caution, valued=training.valued,
    )


def _write_report(folder: Path, *, cfg: ExperimentConfig, dataset: Dataset, rct: RctResult,
                  training: TrainingResult, **details: object) -> float:
    """Write the run's report with its budget curve; the seconds it took."""
    from .report import write_report

    start = time.perf_counter()
    write_report(folder, cfg=cfg, dataset=dataset, rct=rct, training=training,
                 budget_curve=holdout_budget_curve(training, dataset, cfg), **details)
    return time.perf_counter() - start


def _dataset_name(cfg: ExperimentConfig, dataset: Dataset) -> str:
    if cfg.data.path is not None:
        return Path(cfg.data.path).name
    sim = cfg.data.simulate
    return f"simulated-{sim.customers}-seed{sim.seed}" if sim is not None else dataset.source


def _log_candidates(run: RunRecorder, training: TrainingResult, period: str) -> None:
    """One child run per candidate learner: held-out metrics, settings, decile table.

    Each is named for its learner (``T-learner``, ``ensemble (x + t)``; the selected one
    says so) and spans the time its fit took.
    """
    for cand in training.candidates:
        selected = cand.learner == training.selected
        recommended = cand.learner == training.recommended
        tags = {"learner": cand.learner, "period": period, "selected": str(selected),
                "recommended": str(recommended),
                "mlflow.note.content": training.candidate_note(cand)}
        if cand.error:
            tags["error"] = cand.error[:5000]
        if cand.members:
            tags["members"] = "+".join(cand.members)
        tables = {"deciles.json": cand.deciles} if cand.deciles is not None else {}
        suffix = " (recommended)" if recommended else " (selected)" if selected else ""
        run.log_child(cand.display_name + suffix, tags=tags,
                      params={"learner": cand.learner, **cand.settings},
                      metrics={**cand.metrics,
                               **({} if cand.model_free else {"fit_seconds": cand.fit_seconds})},
                      tables=tables, started=cand.started, seconds=cand.fit_seconds)


def _findings(training: TrainingResult, metrics: dict[str, float], baseline_source: str
              ) -> list[str]:
    """What the run found, a sentence each: the policy's estimate, the comparisons."""
    return outcome_lines(metrics, baseline_source, training.simple_label, training.caution,
                         valued=training.valued)


def _report_summary(training: TrainingResult, metrics: dict[str, float],
                    baseline_source: str) -> list[Paragraph]:
    """The report's opening: the model selected, what is recommended, and its findings."""
    learner = _learner_label(training.chosen.display_name, training.selected)
    return [Paragraph(f"Selected learner: {learner}{_recommends(training)}."),
            *(Paragraph(f"{line}.", "warn" if line == training.caution else "")
              for line in _findings(training, metrics, baseline_source))]


def _description(cfg: ExperimentConfig, training: TrainingResult, metrics: dict[str, float],
                 baseline_source: str, experiment_id: str, run_id: str) -> str:
    """The run's description in MLflow: the config's, then what the run found."""
    lines = _findings(training, metrics, baseline_source)
    link = f"#/experiments/{experiment_id}/runs/{run_id}/artifactPath/report/report.html"
    parts = [cfg.description or "",
             f"**{training.chosen.display_name}** selected{_recommends(training)}. "
             + "  \n".join(f"{line}." for line in lines),
             f"[Open the report]({link}) (also under Artifacts: report/report.html)."]
    return "\n\n".join(p for p in parts if p)


def _recommends(training: TrainingResult) -> str:
    """``; recommends <policy> ...`` when a model-free policy was recommended, else ``""``."""
    if training.recommended == training.selected:
        return ""
    return f"; recommends {training.recommended_label} instead ({training.why_recommended})"


def _headline(training: TrainingResult, metrics: dict[str, float]) -> str:
    """The recommended policy's worth in a few words, and what it is when no model's."""
    if training.valued and training.objective == "net_value":
        figure = f"Net value {money(metrics['policy_net_value_per_customer'])} per customer"
    else:
        figure = f"Churn reduction {pp(metrics['policy_churn_reduction'])}"
    if training.recommended == training.selected:
        return figure
    policy = "offers to nobody" if training.recommended == NOBODY else training.recommended_label
    return f"{figure}: {policy}"


def _version_description(cfg: ExperimentConfig, training: TrainingResult,
                         metrics: dict[str, float], dataset: Dataset) -> str:
    """A model version's description: what its policy is worth, where it comes from.

    It opens with the objective's figure, because MLflow's table of versions, where the
    version to promote is picked, shows only the description's first words.
    """
    policy = outcome_lines(metrics, "", valued=training.valued)[0]
    caution = f" {training.caution}." if training.caution else ""
    learner = _learner_label(training.chosen.display_name, training.selected)
    return (f"{_headline(training, metrics)}. Period {cfg.period}, {learner}"
            f"{_recommends(training)}. "
            f"{policy}.{caution} Trained on {dataset.n_rows:,} customers of {dataset.source} "
            f"(data sha256 {dataset.sha256[:12]}).")


def _check_reports_folder(target: Path) -> None:
    """Refuse, before any fitting, a report folder that could not be written at the end.

    :func:`replace_folder` writes beside ``target``, in its parent (made when missing),
    and replaces ``target`` itself when it is there.
    """
    def refuse(problem: str) -> NoReturn:
        raise ArgumentError(ArgumentProblem(
            None, "reports", f"cannot keep the report in {target}: {problem}"))

    if target.exists() and not target.is_dir():
        refuse(f"{target} is a file, not a folder")
    folder = next(f for f in (target.parent, *target.parent.parents) if f.exists())
    if not folder.is_dir():
        refuse(f"{folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        refuse(f"{folder} is not writable")


def replace_folder(source: Path, target: Path) -> Path:
    """Put a copy of ``source`` at ``target``, replacing what was there by renames.

    The copy is written beside ``target`` under a temporary name, then renamed into
    place; a folder already there is first renamed aside and removed afterwards, so
    ``target`` is never half-written.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    fresh = Path(tempfile.mkdtemp(prefix=f".{target.name}.uplift-", dir=target.parent))
    old = None
    try:
        shutil.copytree(source, fresh, dirs_exist_ok=True)
        os.chmod(fresh, 0o777 & ~current_umask())
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.uplift-old-", dir=target.parent))
            os.replace(target, old / target.name)
        os.replace(fresh, target)
    except BaseException:
        shutil.rmtree(fresh, ignore_errors=True)
        if old is not None and not target.exists() and (old / target.name).exists():
            os.replace(old / target.name, target)  # put the previous report back
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return target
