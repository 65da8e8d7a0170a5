"""MLflow tracking: where the store is, the spec's metric names, runs, baselines, comparisons.

One of the few modules that import mlflow (with ``registry.py`` and ``cli.py``).
Metric and tag names are built here and nowhere else, because dashboards and
scripts read them (SPEC section 4).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pandas as pd

from .config import ExperimentConfig, tracking_uri_problem
from .errors import ArgumentError, ArgumentProblem, ConfigError, Problem
from .formatting import Table, money, pct, pp, with_interval

DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"
DEFAULT_ARTIFACT_ROOT = "mlruns"
TAGS = ("period", "baseline_period", "config_sha256", "data_sha256", "uplift_version",
        "selected_learner")


# --------------------------------------------------------------------------- names


def metric_n(group: str) -> str:
    """``n_<group>`` (``n_control`` for the control, whatever it is called)."""
    return f"n_{group}"


def metric_ate(arm: str, suffix: str = "") -> str:
    """``ate_<arm>`` plus an optional suffix (``_ci_low``, ``_pvalue_adj``, ...)."""
    return f"ate_{arm}{suffix}"


def spec_metric_names(arms: Iterable[str], *, allocation: bool = True,
                      baseline: bool = True) -> set[str]:
    """Every metric name SPEC section 4 fixes for a run with these offers."""
    arms = list(arms)
    names = {"n_customers", "n_control", "churn_rate_control", "churn_rate_observed",
             "policy_churn_rate", "policy_churn_reduction", "policy_churn_reduction_ci_low",
             "policy_churn_reduction_ci_high", "policy_net_value_per_customer",
             "policy_cost_per_customer"}
    for arm in arms:
        names |= {metric_n(arm), f"churn_rate_{arm}", f"qini_{arm}", f"auuc_{arm}",
                  f"policy_share_{arm}"}
        names |= {metric_ate(arm, s) for s in ("", "_ci_low", "_ci_high", "_pvalue",
                                               "_pvalue_adj")}
    if allocation:
        names.add("srm_pvalue")
    if baseline:
        names |= {"baseline_churn_rate", "churn_reduction_vs_baseline"}
    return names


def logged_metric_names(arms: Iterable[str], *, allocation: bool = True,
                        baseline: bool = True, versus: bool = True) -> set[str]:
    """What a run may log as MLflow metrics: the SPEC's names and a few more.

    ``versus``: the run recommends a model's policy, which it compares with the best
    simple one (``policy_*_vs_simple``).

    The adjusted readout's names (``ate_<arm>_cuped``, ..., ``variance_reduction_<arm>``),
    the net value's interval (``POLICY_INTERVALS``) and the recommended policy against the
    best one that needs no model (``policy_*_vs_simple``) extend the SPEC's list;
    ``spec_metric_names`` stays exactly the SPEC's.
    """
    from .adjustment import adjusted_metric_names
    from .offpolicy import VERSUS_SIMPLE

    arms = list(arms)
    compared = {f"{name}{end}" for name in VERSUS_SIMPLE.values()
                for end in ("", "_ci_low", "_ci_high")} if versus else set()
    return spec_metric_names(arms, allocation=allocation, baseline=baseline) | set(
        adjusted_metric_names(arms)) | set(POLICY_INTERVALS) | compared


# The policy's net value interval, beside the churn reduction's that the SPEC names.
POLICY_INTERVALS = ("policy_net_value_per_customer_ci_low",
                    "policy_net_value_per_customer_ci_high")


def finite_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    """The metrics MLflow can store: finite numbers only (NaN means "not estimable")."""
    out = {}
    for key, value in metrics.items():
        number = float(value)
        if math.isfinite(number):
            out[key] = number
    return out


# --------------------------------------------------------------------------- store


def quiet_mlflow(verbose: bool = False) -> None:
    """Silence MLflow's info lines and download bars (its errors stay), unless ``verbose``."""
    import logging

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    if not verbose:
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "ERROR")
        import mlflow  # noqa: F401 - configures its loggers on import; override after

        logging.getLogger("mlflow").setLevel(logging.ERROR)
        logging.getLogger("alembic").setLevel(logging.ERROR)


def resolve_tracking_uri(option: str | None, cfg: ExperimentConfig | None = None) -> str:
    """``--tracking-uri`` > env ``MLFLOW_TRACKING_URI`` > ``tracking.uri`` > the default.

    A relative sqlite path is made absolute against the working directory: MLflow
    caches stores by URI, so a relative one would follow the first directory used.
    """
    env = os.environ.get("MLFLOW_TRACKING_URI")
    sources = (("tracking_uri", option), ("MLFLOW_TRACKING_URI", env),
               ("tracking.uri", cfg.tracking.uri if cfg is not None else None))
    where, uri = next(((w, u) for w, u in sources if u), ("", DEFAULT_TRACKING_URI))
    # A config's tracking.uri was checked when the config was read.
    checked = where in ("tracking_uri", "MLFLOW_TRACKING_URI")
    reason = (tracking_uri_problem(uri) if checked else None) or server_problem(uri)
    if reason:
        if where == "tracking.uri":
            raise ConfigError(Problem(cfg.source if cfg is not None else None, where, reason))
        kind = ArgumentProblem if where == "tracking_uri" else Problem  # the CLI's --tracking-uri
        raise ArgumentError(kind(None, where, reason))
    return _absolute_sqlite(uri)


SERVER_PATIENCE = 15.0
"""Seconds a tracking server that is starting may take to answer before a run gives up."""


def server_problem(uri: str, connect_timeout: float = 10.0,
                   patience: float | None = None) -> str | None:
    """Why no server answers at an ``http(s)://`` tracking URI, or None (any other URI).

    MLflow would retry a refused or unknown address for minutes, then fail with a
    traceback; a request to the server's health page, tried again for ``patience``
    seconds (:data:`SERVER_PATIENCE`: a server may be starting), tells sooner. Only an
    address nothing listens at, a host name nothing resolves, or no connection within
    ``connect_timeout`` seconds is a problem: any HTTP answer counts (a proxy's or a
    login's refusal too), and so does anything that fails after connecting (TLS, a
    client certificate), which MLflow's own settings may handle.
    """
    if urlsplit(uri).scheme.lower() not in ("http", "https"):
        return None
    deadline = time.monotonic() + (SERVER_PATIENCE if patience is None else patience)
    pause = 1.0
    while True:
        reason = _unreachable(uri, connect_timeout)
        if reason is None:
            return None
        if time.monotonic() + pause > deadline:
            return f"no MLflow server answers at {uri} ({reason})"
        time.sleep(pause)
        pause *= 2


def _unreachable(uri: str, connect_timeout: float) -> str | None:
    """Why one request to ``uri``'s health page could not connect, or None."""
    import requests
    from urllib3.exceptions import NewConnectionError

    try:
        requests.get(uri.rstrip("/") + "/health", timeout=(connect_timeout, 60.0),
                     allow_redirects=False)
    except requests.exceptions.ConnectTimeout:
        return f"no connection within {connect_timeout:g} s"
    except requests.exceptions.ConnectionError as exc:
        reason = getattr(exc.args[0], "reason", None) if exc.args else None
        if not isinstance(reason, NewConnectionError):  # refused or no such host
            return None
        cause = re.search(r"\[Errno -?\d+\] ([^'\")]+)", str(reason))
        why = cause.group(1).strip().rstrip(".") if cause else "connection failed"
        return why[:1].lower() + why[1:]
    except requests.exceptions.RequestException:
        return None
    return None


def _absolute_sqlite(uri: str) -> str:
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        return prefix + str(Path(uri[len(prefix):]).expanduser().resolve())
    return uri


def is_default_store(uri: str) -> bool:
    """True for the default store of the working directory."""
    return uri == _absolute_sqlite(DEFAULT_TRACKING_URI)


def artifact_root(uri: str) -> str | None:
    """Where a new experiment keeps artifacts: with its local sqlite store.

    The default store keeps them in ``mlruns/``, the database's folder; another sqlite
    file in ``<its name>-artifacts/`` beside it, so a store moves or is backed up whole
    (MLflow would use ``mlruns/`` of whatever folder the command ran in). Other stores
    leave it to their server (None).
    """
    if is_default_store(uri):
        return Path(DEFAULT_ARTIFACT_ROOT).resolve().as_uri()
    prefix = "sqlite:///"
    path = uri[len(prefix):] if uri.startswith(prefix) else ""
    if path and path != ":memory:":
        database = Path(path).expanduser()
        return database.with_name(f"{database.stem}-artifacts").resolve().as_uri()
    return None


def prepare_store(uri: str) -> None:
    """Create the folder of a local sqlite store on first use."""
    prefix = "sqlite:///"
    if uri.startswith(prefix):
        Path(uri[len(prefix):]).expanduser().parent.mkdir(parents=True, exist_ok=True)


@contextlib.contextmanager
def use_store(uri: str) -> Iterator[None]:
    """Point MLflow's global tracking URI at ``uri`` for a while, then restore it exactly.

    MLflow resolves ``models:/...`` URIs (loading, and a logged model's source when
    registering) through the global URI, not through a client's. Setting it also sets
    the ``MLFLOW_TRACKING_URI`` environment variable, which is put back as it was.
    """
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    before = os.environ.get("MLFLOW_TRACKING_URI")
    try:
        with _use_tracking_uri(uri):
            yield
    finally:
        if before is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = before


def open_client(uri: str) -> Any:
    """An MlflowClient on ``uri`` whose store is created and migrated, one process at a time.

    Two runs started at once on a new sqlite store would otherwise both run MLflow's
    schema migrations and one would fail; a lock file beside the database serializes
    that first use.
    """
    from mlflow import MlflowClient

    prepare_store(uri)
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        return MlflowClient(uri)
    import fcntl

    lock_path = Path(uri[len(prefix):]).expanduser().with_suffix(".lock")
    with open(lock_path, "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            client = MlflowClient(uri)
            client.search_experiments(max_results=1)
            client.search_registered_models(max_results=1)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return client


EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
"""The tag that opens an experiment in MLflow 3's UI on its training runs, not GenAI views."""


def get_or_create_experiment(client: Any, name: str, uri: str) -> str:
    """The id of experiment ``name``, created (with the default artifact root) if missing.

    It carries :data:`EXPERIMENT_KIND`, also when it was created without it.
    """
    found = client.get_experiment_by_name(name)
    if found is None:
        try:
            return client.create_experiment(name, artifact_location=artifact_root(uri),
                                            tags=EXPERIMENT_KIND)
        except Exception:  # noqa: BLE001 - a concurrent run may have created it first
            found = client.get_experiment_by_name(name)
            if found is None:
                raise
    for key, value in EXPERIMENT_KIND.items():
        if found.tags.get(key) != value:
            client.set_experiment_tag(found.experiment_id, key, value)
    return found.experiment_id


def ui_address(client: Any, port: int, experiment: str | None = None) -> str:
    """Where a user should land in the MLflow UI: an experiment's training runs.

    The named experiment, else the only one of the store besides MLflow's ``Default``;
    the UI's start page when there is no such single experiment. The experiment gets
    :data:`EXPERIMENT_KIND` if it lacks it, so its page opens on the runs.
    """
    root = f"http://127.0.0.1:{port}/"
    if experiment is not None:
        found = client.get_experiment_by_name(experiment)
        candidates = [found] if found is not None else []
    else:
        candidates = [e for e in client.search_experiments() if e.name != "Default"]
    if len(candidates) != 1:
        return root
    found = candidates[0]
    for key, value in EXPERIMENT_KIND.items():  # stores from before the tag existed
        if found.tags.get(key) != value:
            client.set_experiment_tag(found.experiment_id, key, value)
    return f"{root}#/experiments/{found.experiment_id}/runs"


def flatten_params(cfg: ExperimentConfig, baseline_period: str | None = None
                   ) -> dict[str, str]:
    """What identifies a run, as MLflow params: the config's set values under dotted keys.

    Unset and empty values are left out (the whole config is an artifact), the free-text
    description too (it is the run's description); ``baseline_period`` is the one the run
    compares with.
    """
    out: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), item)
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for i, item in enumerate(value):
                label = item.get("name", i) if isinstance(item, dict) else i
                walk(f"{prefix}.{label}", item)
        elif value is not None and value != "" and value != []:
            out[prefix] = str(value)

    raw = cfg.model_dump(mode="json", by_alias=True, exclude_none=True)
    raw.pop("description", None)
    if baseline_period:
        raw["baseline_period"] = baseline_period
    walk("", raw)
    return {k: v[:6000] for k, v in out.items()}


def readable(value: float) -> float:
    """A metric rounded to 6 significant digits, as people read it in the UI."""
    return float(f"{value:.6g}")


# --------------------------------------------------------------------------- reading runs


def find_baseline(client: Any, experiment_id: str, baseline_period: str | None,
                  cfg: ExperimentConfig) -> tuple[float | None, str]:
    """Baseline churn: the latest finished run of ``baseline_period``, else the config's.

    Returns the rate (None when unknown) and where it came from.
    """
    if baseline_period:
        runs = client.search_runs(
            [experiment_id],
            filter_string=f"tags.period = '{baseline_period}' and attributes.status = 'FINISHED'",
            order_by=["attributes.start_time DESC"], max_results=20,
        )
        for run in runs:
            rate = run.data.metrics.get("churn_rate_observed")
            if rate is not None and not run.data.tags.get("mlflow.parentRunId"):
                return float(rate), f"run {run.info.run_id} ({baseline_period})"
    if cfg.baseline.churn_rate is not None:
        return cfg.baseline.churn_rate, "baseline.churn_rate"
    return None, "unknown"


def latest_variance_reductions(client: Any, experiment_id: str, arms: Iterable[str]
                               ) -> tuple[dict[str, float], str, str]:
    """``variance_reduction_<arm>`` of the latest finished run of an experiment.

    Returns the measured reductions of the offers that have one, the run id and its
    period; raises LookupError when there is no finished run (the message says so).
    """
    runs = client.search_runs([experiment_id], filter_string="attributes.status = 'FINISHED'",
                              order_by=["attributes.start_time DESC"], max_results=50)
    for run in runs:
        if run.data.tags.get("mlflow.parentRunId"):
            continue
        found = {arm: float(run.data.metrics[f"variance_reduction_{arm}"]) for arm in arms
                 if f"variance_reduction_{arm}" in run.data.metrics}
        return found, run.info.run_id, run.data.tags.get("period", "")
    raise LookupError("no finished run")


def schema_sample(frame: pd.DataFrame, rows: int = 1000) -> pd.DataFrame:
    """The first ``rows`` rows plus each column's first non-missing row, in table order.

    Enough to infer the table's column types without reading every value.
    """
    positions = set(range(min(rows, len(frame))))
    for _, column in frame.items():
        positions.update(np.flatnonzero(column.notna().to_numpy())[:1].tolist())
    return frame.iloc[sorted(positions)]


@dataclass(frozen=True)
class PeriodRow:
    """One period's latest finished run, as ``uplift compare`` lists it."""

    period: str
    run_id: str
    selected_learner: str
    recommended_policy: str
    n_customers: float | None
    churn_rate_observed: float | None
    churn_rate_control: float | None
    policy_churn_rate: float | None
    policy_churn_reduction: float | None
    policy_churn_reduction_ci_low: float | None
    policy_churn_reduction_ci_high: float | None
    policy_net_value_per_customer: float | None
    policy_net_value_per_customer_ci_low: float | None
    policy_net_value_per_customer_ci_high: float | None
    baseline_churn_rate: float | None
    churn_reduction_vs_baseline: float | None


@dataclass(frozen=True)
class ComparisonResult:
    """The periods of an experiment, oldest first, with their change from the one before."""

    experiment: str
    rows: tuple[PeriodRow, ...]

    def to_frame(self) -> pd.DataFrame:
        """One row per period: every field, then the changes from the previous period.

        The changes are ``delta_churn_rate_observed`` and ``delta_policy_churn_reduction``,
        rounded off the float noise of subtracting two logged figures; customer counts
        are whole numbers.
        """
        frame = pd.DataFrame([asdict(r) for r in self.rows])
        if not frame.empty:
            numbers = {name: pd.to_numeric(frame[name], errors="coerce") for name in
                       ("n_customers", "churn_rate_observed", "policy_churn_reduction")}
            frame["n_customers"] = numbers.pop("n_customers").round().astype("Int64")
            for name, values in numbers.items():
                frame[f"delta_{name}"] = values.diff().round(12)
        return frame

    def table(self) -> Table:
        """The periods as displayed: what each recommends, its estimates with CIs, the changes."""
        rows = []
        for record in self.to_frame().to_dict("records"):
            customers = record["n_customers"]
            rows.append([
                record["period"], record["selected_learner"], record["recommended_policy"],
                "" if _missing(customers) else f"{int(customers):,}",
                pct(record["churn_rate_observed"], ""),
                _with_ci(record, "policy_churn_reduction", pp),
                _with_ci(record, "policy_net_value_per_customer", money),
                pp(record["churn_reduction_vs_baseline"], ""),
                pp(record.get("delta_churn_rate_observed"), ""),
                pp(record.get("delta_policy_churn_reduction"), "")])
        return Table.build(
            ["period", "learner", "recommends", "customers", "observed churn",
             "policy churn reduction [CI]", "net value / customer [CI]", "vs baseline",
             "change in observed churn", "change in policy reduction"], rows,
            numeric=range(3, 10), title=f"{self.experiment}: periods")

    def to_markdown(self) -> str:
        """The periods as a Markdown table."""
        return self.table().to_markdown()


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _with_ci(record: Mapping[str, Any], name: str, fmt: Callable[[float | None], str]) -> str:
    """A period's estimate ``name`` with its interval; empty when the run logged none."""
    value, low, high = (None if _missing(record.get(key)) else record[key]
                        for key in (name, f"{name}_ci_low", f"{name}_ci_high"))
    return "" if value is None else with_interval(value, low, high, lambda x: fmt(x, ""))


def compare_periods(client: Any, experiment_id: str, experiment: str = "") -> ComparisonResult:
    """One row per period (its latest finished parent run), oldest first."""
    runs = client.search_runs([experiment_id], filter_string="attributes.status = 'FINISHED'",
                              order_by=["attributes.start_time DESC"], max_results=5000)
    latest: dict[str, Any] = {}
    for run in runs:
        if run.data.tags.get("mlflow.parentRunId"):
            continue
        period = run.data.tags.get("period")
        if period and period not in latest:
            latest[period] = run
    names = [f.name for f in fields(PeriodRow)][4:]
    rows = tuple(
        PeriodRow(period=period, run_id=latest[period].info.run_id,
                  selected_learner=latest[period].data.tags.get("selected_learner", ""),
                  recommended_policy=latest[period].data.tags.get("recommended_policy", ""),
                  **{name: _period_metric(latest[period], name) for name in names})
        for period in sorted(latest))
    return ComparisonResult(experiment, rows)


def _period_metric(run: Any, name: str) -> float | None:
    """A run's metric for the periods table; no net value for a run without customer values.

    A run whose config named no value column (no ``data.value`` param) valued a kept
    customer at nothing, so its logged net value (and its interval) is only minus the
    offers' cost.
    """
    if (name.startswith("policy_net_value_per_customer")
            and "data.value" not in run.data.params):
        return None
    return run.data.metrics.get(name)


# --------------------------------------------------------------------------- the run


class RunRecorder:
    """What ``uplift run`` records in its open MLflow run: every MLflow call of a run.

    Obtained from :func:`start_run`; the pipeline says what to record, this says how.
    """

    def __init__(self, run: Any, experiment_id: str, uri: str):
        self.run = run
        self.experiment_id = experiment_id
        self.uri = uri

    @property
    def run_id(self) -> str:
        """The run's id."""
        return str(self.run.info.run_id)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        """Set tags on the run."""
        import mlflow

        mlflow.set_tags(dict(tags))

    def log_params(self, params: Mapping[str, str]) -> None:
        """Log params on the run."""
        import mlflow

        mlflow.log_params(dict(params))

    def log_metrics(self, metrics: Mapping[str, float]) -> None:
        """Log the finite ones of ``metrics`` (MLflow cannot store NaN), readably rounded."""
        import mlflow

        mlflow.log_metrics({k: readable(v) for k, v in finite_metrics(metrics).items()})

    def set_description(self, text: str) -> None:
        """The run's description, shown (as Markdown) on its page in the UI."""
        import mlflow

        mlflow.set_tag("mlflow.note.content", text)

    def log_dict(self, data: Mapping[str, Any], path: str) -> None:
        """Store ``data`` as a JSON artifact at ``path``."""
        import mlflow

        mlflow.log_dict(dict(data), path)

    def log_text(self, text: str, path: str) -> None:
        """Store ``text`` as an artifact at ``path``."""
        import mlflow

        mlflow.log_text(text, path)

    def log_folder(self, folder: Path, path: str) -> None:
        """Store every file of ``folder`` under the artifact folder ``path``."""
        import mlflow

        mlflow.log_artifacts(str(folder), path)

    def log_dataset(self, frame: pd.DataFrame, *, name: str, digest: str,
                    source: str | None) -> None:
        """Record the training table as the run's dataset input (name, digest, source, schema).

        MLflow keeps at most 36 characters of a digest, so a longer one (a sha256) is
        cut to its first 36; the run's ``data_sha256`` tag keeps it whole.
        """
        import warnings

        import mlflow
        from mlflow.data import from_pandas
        from mlflow.models import infer_signature

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # MLflow's hints about integer columns
            dataset = from_pandas(frame, source=source, name=name, digest=digest[:36])
            # MLflow would infer the schema by visiting every value of every text column
            # (seconds per million rows); a sample that holds each column's first
            # non-missing value gives the same types. A cached property, so set once.
            dataset.__dict__["schema"] = infer_signature(schema_sample(frame)).inputs
            mlflow.log_input(dataset, context="training")

    def end_children(self, status: str) -> None:
        """End this run's child runs still RUNNING (an interruption while one was logged)."""
        from mlflow import MlflowClient

        client = MlflowClient(self.uri)
        for child in client.search_runs(
                [self.experiment_id],
                filter_string=(f"tags.mlflow.parentRunId = '{self.run_id}' "
                               "and attributes.status = 'RUNNING'")):
            client.set_terminated(child.info.run_id, status=status)

    def log_child(self, name: str, *, tags: Mapping[str, str], metrics: Mapping[str, float],
                  params: Mapping[str, Any] | None = None,
                  tables: Mapping[str, pd.DataFrame] | None = None,
                  started: float | None = None, seconds: float = 0.0) -> None:
        """One nested child run: tags, params, finite metrics, tables (JSON artifacts).

        It spans ``started`` (seconds since the epoch) to ``started + seconds``, the time
        its model took to fit, rather than the moment it was logged. One that fails or is
        interrupted half-logged is ended by its run (:func:`start_run`).
        """
        from mlflow import MlflowClient
        from mlflow.entities import Metric, Param

        client = MlflowClient(self.uri)
        start_ms = int(1000 * (started if started is not None else time.time()))
        child = client.create_run(self.experiment_id, start_time=start_ms, run_name=name,
                                  tags={"mlflow.parentRunId": self.run_id, **tags})
        run_id = child.info.run_id
        client.log_batch(
            run_id,
            metrics=[Metric(k, readable(v), start_ms, 0)
                     for k, v in finite_metrics(metrics).items()],
            params=[Param(k, str(v)[:6000]) for k, v in (params or {}).items()])
        for path, table in (tables or {}).items():
            client.log_table(run_id, table, path)
        client.set_terminated(run_id, end_time=start_ms + int(1000 * seconds))


@contextlib.contextmanager
def start_run(uri: str, experiment_id: str, run_name: str) -> Iterator[RunRecorder]:
    """Open the run of ``uplift run``: ended FINISHED, FAILED on an error, KILLED on Ctrl-C.

    A candidate's child run that an error or an interruption caught half-logged is
    ended with it.
    Also points MLflow's global tracking URI at ``uri`` while the run is open (logging a
    model needs it), and puts it back afterwards: a notebook's next run without a URI
    must not find this one's in ``MLFLOW_TRACKING_URI``.
    """
    import mlflow

    with use_store(uri), mlflow.start_run(experiment_id=experiment_id,
                                          run_name=run_name) as run:
        recorder = RunRecorder(run, experiment_id, uri)
        try:
            yield recorder
        except KeyboardInterrupt:
            recorder.end_children("KILLED")
            mlflow.end_run(status="KILLED")
            raise
        except BaseException:
            recorder.end_children("FAILED")
            raise
