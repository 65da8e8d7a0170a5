"""``run_experiment``: config, data, readout, models, policy, baseline, report, MLflow.

The one orchestrator the CLI and notebooks call. Everything that can fail on bad
input or in computation happens before the first MLflow call, so bad input creates
no run; logging happens inside a context-managed run (an exception, Ctrl-C or
SIGTERM ends it FAILED, never RUNNING), and the model is registered only after the
run has finished.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from . import __version__
from .analysis import RctResult, analyze_dataset
from .config import ExperimentConfig, load_config, parse_period
from .data import Dataset, load_dataset
from .errors import ConfigError, Problem
from .training import TrainingResult, train_models


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
    seconds: dict[str, float] = field(default_factory=dict)

    def to_frame(self) -> pd.DataFrame:
        """The logged metrics as a two-column table."""
        return pd.DataFrame(sorted(self.metrics.items()), columns=["metric", "value"])


def prepare_run(config_path: str | Path, period: str | None = None
                ) -> tuple[ExperimentConfig, Dataset]:
    """Load and validate the config and data, with ``period`` overriding the config's."""
    cfg = load_config(config_path)
    if period is not None:
        try:
            parse_period(period)
        except ValueError as exc:
            raise ConfigError(Problem(None, "--period", str(exc))) from None
        cfg = cfg.model_copy(update={"period": period})  # keeps the file's source and sha256
    if cfg.period is None:
        raise ConfigError(Problem(str(config_path), "period",
                                  "required for uplift run (or give --period YYYY-MM)"))
    return cfg, load_dataset(cfg)


def collect_metrics(rct: RctResult, training: TrainingResult,
                    baseline: float | None) -> dict[str, float]:
    """Every metric of SPEC section 4 for the run (baseline ones only when known)."""
    metrics: dict[str, float] = dict(rct.metrics())
    selected = next(c for c in training.candidates if c.learner == training.selected)
    metrics.update({k: v for k, v in selected.metrics.items()
                    if k.startswith(("qini_", "auuc_"))})
    metrics.update(training.policy_estimate.metrics())
    if baseline is not None:
        metrics["baseline_churn_rate"] = baseline
        metrics["churn_reduction_vs_baseline"] = baseline - metrics["policy_churn_rate"]
    return metrics


def run_experiment(config_path: str | Path, tracking_uri: str | None = None,
                   period: str | None = None,
                   on_step: Callable[[str], None] | None = None) -> RunResult:
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

    Returns:
        The finished run's ids, metrics, model version and report path.
    """
    import mlflow

    from . import registry, tracking

    step = on_step or (lambda _: None)
    seconds: dict[str, float] = {}
    clock = time.perf_counter()
    step("Validating config and data")
    cfg, dataset = prepare_run(config_path, period)
    step("Analyzing the randomized test")
    rct = analyze_dataset(dataset, cfg)
    config_text = Path(config_path).read_text(encoding="utf-8")
    seconds["prepare"] = time.perf_counter() - clock

    uri = tracking.resolve_tracking_uri(tracking_uri, cfg)
    client = tracking.open_client(uri)
    experiment_id = tracking.get_or_create_experiment(client, cfg.name, uri)
    mlflow.set_tracking_uri(uri)
    baseline_period = cfg.resolved_baseline_period()
    with tempfile.TemporaryDirectory() as tmp, mlflow.start_run(
            experiment_id=experiment_id, run_name=cfg.period) as run:
        try:
            mlflow.set_tags({"period": cfg.period, "baseline_period": baseline_period or "",
                             "config_sha256": cfg.sha256 or "", "data_sha256": dataset.sha256,
                             "uplift_version": __version__})
            mlflow.log_params(tracking.flatten_params(cfg))
            outcome = _fit_and_log(cfg, dataset, rct, client, experiment_id, baseline_period,
                                   config_text, Path(tmp), step, seconds)
        except KeyboardInterrupt:
            mlflow.end_run(status="KILLED")
            raise
    training, metrics, baseline_source, info, report_dir = outcome

    register_start = time.perf_counter()
    version = registry.register(client, info.model_uri, cfg.tracking.registered_model,
                                run.info.run_id)
    seconds["register"] = time.perf_counter() - register_start
    seconds["total"] = time.perf_counter() - clock
    return RunResult(
        run_id=run.info.run_id, experiment_id=experiment_id, tracking_uri=uri,
        period=cfg.period, selected_learner=training.selected,
        model_name=cfg.tracking.registered_model, model_version=version, metrics=metrics,
        report_path=report_dir / "report.html", baseline_source=baseline_source,
        seconds=seconds,
    )


def _fit_and_log(cfg: ExperimentConfig, dataset: Dataset, rct: RctResult, client: object,
                 experiment_id: str, baseline_period: str | None, config_text: str,
                 tmp: Path, step: Callable[[str], None], seconds: dict[str, float]) -> tuple:
    """Everything inside the active run: models, baseline, report, metrics, artifacts, model."""
    import mlflow

    from . import registry, tracking
    from .report import write_report

    clock = time.perf_counter()
    training = train_models(dataset, cfg, on_step=step)
    seconds["models"] = time.perf_counter() - clock
    seconds["fits"] = sum(training.fit_seconds.values())
    mlflow.set_tag("selected_learner", training.selected)
    baseline, baseline_source = tracking.find_baseline(client, experiment_id, baseline_period,
                                                       cfg)
    metrics = collect_metrics(rct, training, baseline)

    clock = time.perf_counter()
    step("Writing the report")
    report_dir = tmp / "report"
    write_report(report_dir, cfg=cfg, dataset=dataset, rct=rct, training=training,
                 baseline_churn_rate=baseline, baseline_source=baseline_source,
                 run_id=mlflow.active_run().info.run_id)
    seconds["report"] = time.perf_counter() - clock

    clock = time.perf_counter()
    step("Logging to MLflow")
    spec_names = tracking.spec_metric_names(cfg.arm_names)
    mlflow.log_metrics(tracking.finite_metrics(
        {k: v for k, v in metrics.items() if k in spec_names}))
    mlflow.log_dict(tracking.finite_metrics(metrics), "metrics/all_metrics.json")
    for cand in training.candidates:
        with mlflow.start_run(experiment_id=experiment_id, run_name=cand.learner, nested=True):
            mlflow.set_tags({"learner": cand.learner, "period": cfg.period,
                             "selected": str(cand.learner == training.selected),
                             **({"error": cand.error[:5000]} if cand.error else {}),
                             **({"members": "+".join(cand.members)} if cand.members else {})})
            mlflow.log_metrics(tracking.finite_metrics(
                {**cand.metrics, "fit_seconds": cand.fit_seconds}))
            if cand.deciles is not None:
                mlflow.log_table(cand.deciles, "deciles.json")
    mlflow.log_text(config_text, "config/experiment.yaml")
    mlflow.log_artifacts(str(report_dir), "report")
    log_start = time.perf_counter()
    info = registry.log_model(training.model, dataset, config_text)
    seconds["log_model"] = time.perf_counter() - log_start
    seconds["tracking"] = time.perf_counter() - clock
    mlflow.log_dict({**seconds, "fit_seconds": training.fit_seconds}, "timings.json")

    target = Path("reports") / str(cfg.period)
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(report_dir, target)
    return training, metrics, baseline_source, info, target
