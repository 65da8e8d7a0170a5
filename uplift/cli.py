"""The ``uplift`` command line: parse arguments, call the library, render results.

A thin edge over the Python API. Errors are mapped in one place
(:meth:`UpliftGroup.main`): bad input (``InputError`` and click's usage errors)
prints exactly one ``Error: ...`` line on stderr and exits 2; anything else is
an internal error (exit 1). ``--verbose`` shows tracebacks.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import json
import os
import sys
import threading
import traceback
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import click

from . import __version__
from .errors import ArgumentError, InputError, Problem, UpliftWarning
from .formatting import NO_NET_VALUE, Paragraph, Table

_STATE = {"verbose": False, "quiet": False}


def _set_flag(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        _STATE[str(param.name)] = True


def _common_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--verbose`` and ``--quiet`` on the group and on every command."""
    func = click.option("--verbose", is_flag=True, expose_value=False, callback=_set_flag,
                        help="Show tracebacks and library warnings.")(func)
    return click.option("--quiet", is_flag=True, expose_value=False, callback=_set_flag,
                        help="No progress display and no summary lines.")(func)


class UpliftGroup(click.Group):
    """A click group that maps every error to one stderr line and the spec's exit codes."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             **extra: Any) -> Any:
        """Run the CLI; never let a traceback or a usage banner reach the user unasked."""
        argv = list(sys.argv[1:] if args is None else args)
        _STATE.update(verbose="--verbose" in argv, quiet="--quiet" in argv)
        code = 0
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                result = super().main(argv, prog_name or "uplift", complete_var,
                                      standalone_mode=False, **extra)
                code = result if isinstance(result, int) else 0
            except click.exceptions.NoArgsIsHelpError as exc:
                click.echo(exc.ctx.get_help() if exc.ctx else exc.format_message())
                code = 0
            except click.exceptions.Abort:
                click.echo("Aborted.", err=True)
                code = 130
            except click.ClickException as exc:
                click.echo(f"Error: {_one_line(exc.format_message())}", err=True)
                code = exc.exit_code
            except InputError as exc:
                if _STATE["verbose"]:
                    traceback.print_exc()
                click.echo(f"Error: {_one_line(exc.message(self.option_names()))}", err=True)
                code = 2
            except Exception as exc:  # noqa: BLE001 - the one place internal errors are caught
                if _STATE["verbose"]:
                    traceback.print_exc()
                click.echo(f"Internal error: {type(exc).__name__}: {_one_line(str(exc))} "
                           "(rerun with --verbose)", err=True)
                code = 1
            if code == 0:
                _show_warnings(caught)
        if standalone_mode:
            sys.exit(code)
        return code

    def option_names(self) -> dict[str, str]:
        """Each command parameter's name and the option that sets it.

        The library's messages name parameters (``chunk_size``); the user typed options
        (``--chunk-size``).
        """
        names: dict[str, str] = {}
        for command in self.commands.values():
            for param in command.params:
                if isinstance(param, click.Option) and param.name:
                    long = [o for o in param.opts if o.startswith("--")]
                    names.setdefault(param.name, long[0] if long else param.opts[0])
        return names


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _show_warnings(caught: list[warnings.WarningMessage]) -> None:
    """Our own warnings as ``Warning: ...`` lines; library warnings only with --verbose.

    Ours show with --quiet too: a scheduled job's log should keep them.
    """
    for item in caught:
        ours = issubclass(item.category, UpliftWarning)
        if ours or _STATE["verbose"]:
            prefix = "Warning" if ours else f"{item.category.__name__}"
            click.echo(f"{prefix}: {_one_line(str(item.message))}", err=True)


def _quiet_mlflow() -> None:
    """MLflow's info lines and download bars are noise in our output; keep its errors."""
    from .tracking import quiet_mlflow

    quiet_mlflow(verbose=_STATE["verbose"])


def _progress() -> bool:
    from .progress import progress_enabled

    return progress_enabled(_STATE["quiet"])


def _say(text: str) -> None:
    if not _STATE["quiet"]:
        click.echo(text)


def _console(width: int = 160) -> Any:
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else width)


def _print_table(table: Table, paragraphs: Sequence[Paragraph] = (), width: int = 160) -> None:
    """A result's display table (and its notes) on the terminal."""
    from rich.table import Table as RichTable
    from rich.text import Text

    view = RichTable(title=table.title or None)
    for j, name in enumerate(table.header):
        view.add_column(name, justify="right" if j in table.numeric else "left")
    for i, row in enumerate(table.rows):
        view.add_row(*(Text(c) for c in row), style="bold" if i in table.highlight else None)
    console = _console(width)
    console.print(view)
    for paragraph in paragraphs:
        prefix = "Warning: " if paragraph.kind == "warn" else ""
        console.print(Text(prefix + paragraph.text))


@click.group(cls=UpliftGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="uplift")
@_common_options
def cli() -> None:
    """Retention offer tests: readout, power, uplift models, offer policy, MLflow tracking."""


CONFIG_ARG = click.argument("config", type=click.Path(dir_okay=False))
TRACKING_OPTION = click.option("--tracking-uri", default=None,
                               help="MLflow store (default: env MLFLOW_TRACKING_URI, "
                                    "tracking.uri, else sqlite:///mlruns/mlflow.db).")


# --------------------------------------------------------------------------- simulate


@cli.command()
@click.option("--customers", type=int, required=True, help="Number of customers to simulate.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@click.option("--out", type=click.Path(dir_okay=False), required=True,
              help="Customer table to write (.csv, .csv.gz or .parquet).")
@click.option("--truth", type=click.Path(dir_okay=False), default=None,
              help="Also write each customer's true churn probability under every group.")
@click.option("--period", default=None, help="Period YYYY-MM; other periods give other customers.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="Take the arms, allocation, control and period from this config.")
@_common_options
def simulate(customers: int, seed: int, out: str, truth: str | None, period: str | None,
             config_path: str | None) -> None:
    """Simulate a subscription customer base with a randomized retention-offer test."""
    from .config import load_config, parse_period
    from .progress import step
    from .simulate import simulate_customers
    from .tables import table_format, write_table

    problems = []
    if customers < 1:
        problems.append(Problem(None, "--customers", f"must be at least 1, got {customers}"))
    if seed < 0:
        problems.append(Problem(None, "--seed", f"must be 0 or more, got {seed}"))
    for option, path in (("--out", out), ("--truth", truth)):
        if path is not None and table_format(path) is None:
            problems.append(Problem(None, option, f"must end in .csv, .csv.gz or .parquet: {path}"))
    if truth is not None and Path(truth).resolve() == Path(out).resolve():
        problems.append(Problem(None, "--truth", "must be another file than --out"))
    if period is not None:
        try:
            parse_period(period)
        except ValueError as exc:
            problems.append(Problem(None, "--period", str(exc)))
    if problems:
        raise ArgumentError(problems)
    kwargs: dict[str, Any] = {"period": period}
    if config_path is not None:
        cfg = load_config(config_path, data_file=False)
        kwargs = {"period": period or cfg.period, "arms": [(a.name, a.kind) for a in cfg.arms],
                  "allocation": cfg.allocation, "control": cfg.control}
    with step(f"Simulating {customers:,} customers", _progress()):
        result = simulate_customers(customers, seed, **kwargs)
    targets = [(out, result.customers)] + ([(truth, result.truth)] if truth else [])
    for path, _ in targets:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    with step(f"Writing {out}", _progress()):
        for path, frame in targets:
            write_table(frame, path)
    _say(f"Wrote {customers:,} customers to {out}" + (f" and their truth to {truth}" if truth
                                                       else ""))


# --------------------------------------------------------------------------- validate

AUTO_SHOWN = 12  # feature names ``validate`` prints when data.features is auto


@cli.command()
@CONFIG_ARG
@_common_options
def validate(config: str) -> None:
    """Check a config and its data; list every problem; exit 0 only when clean."""
    from .analysis import analyze_dataset
    from .config import collect_config_problems, run_problems
    from .data import collect_data_problems
    from .errors import DataError
    from .learners import settings_problems

    cfg, problems = collect_config_problems(config)
    dataset = None
    if cfg is not None:
        dataset, problems = collect_data_problems(cfg)
        problems = [*settings_problems(cfg), *run_problems(cfg), *problems]
    if dataset is not None and cfg is not None:
        try:
            analyze_dataset(dataset, cfg, adjust=False)  # the sample-ratio check
        except DataError as exc:
            problems.extend(exc.problems)
    if problems or dataset is None:
        for problem in problems:
            click.echo(f"Error: {_one_line(str(problem))}", err=True)
        click.get_current_context().exit(2)
        return
    for note in dataset.notes:
        click.echo(f"Warning: {dataset.source}: {note}", err=True)
    counts = dataset.group_counts()
    groups = ", ".join(f"{g} {n:,}" for g, n in counts.items())
    features = f"{len(dataset.features)} features"
    if cfg.data.features == "auto":
        # Chosen for the analyst, so named: a column the offer could change (measured
        # after the test began) must come out of data.features before any model sees it.
        shown = ", ".join(dataset.features[:AUTO_SHOWN])
        more = len(dataset.features) - AUTO_SHOWN
        features += f" (auto: {shown}" + (f" and {more} more" if more > 0 else "") + ")"
    _say(f"OK: {config}: {dataset.n_rows:,} customers ({groups}); {features}")


# --------------------------------------------------------------------------- analyze


@cli.command()
@CONFIG_ARG
@click.option("--format", "fmt", type=click.Choice(["table", "json", "markdown"]),
              default="table", show_default=True, help="Output format.")
@_common_options
def analyze(config: str, fmt: str) -> None:
    """The RCT readout: churn per group, effect vs control with CI and adjusted p, SRM."""
    from .analysis import analyze_dataset
    from .config import load_config
    from .data import load_dataset
    from .progress import step

    cfg = load_config(config)
    with step("Reading data", _progress()):
        dataset = load_dataset(cfg)
    result = analyze_dataset(dataset, cfg)
    if fmt == "json":
        click.echo(json.dumps(result.metrics(), indent=2, allow_nan=False))
    elif fmt == "markdown":
        click.echo(result.to_markdown())
    else:
        _print_table(result.table(), result.paragraphs())


# --------------------------------------------------------------------------- design


@cli.command()
@CONFIG_ARG
@click.option("--n", "n_total", type=int, default=None,
              help="Total customers available: report the reachable MDE instead.")
@click.option("--churn-rate", type=float, default=None,
              help="Control churn rate to plan for (default: baseline.churn_rate, else the data).")
@click.option("--variance-reduction", type=float, default=None,
              help="Share of the variance a covariate-adjusted readout removes, in [0, 1): "
                   "also print the design with it.")
@click.option("--from-run", is_flag=True,
              help="Take each offer's variance reduction from the last finished run of the "
                   "experiment.")
@TRACKING_OPTION
@click.option("--format", "fmt", type=click.Choice(["table", "json", "markdown"]),
              default="table", show_default=True, help="Output format.")
@_common_options
def design(config: str, n_total: int | None, churn_rate: float | None,
           variance_reduction: float | None, from_run: bool, tracking_uri: str | None,
           fmt: str) -> None:
    """Power analysis: customers per group to detect analysis.mde, or the MDE for --n."""
    from .config import load_config
    from .design import solve_mde, solve_sample_size

    if n_total is not None and n_total < 2:
        raise ArgumentError(Problem(None, "--n", f"must be at least 2, got {n_total}"))
    if churn_rate is not None and not 0 < churn_rate < 1:
        raise ArgumentError(Problem(None, "--churn-rate", f"must be in (0, 1), got {churn_rate}"))
    if variance_reduction is not None and not 0 <= variance_reduction < 1:
        raise ArgumentError(Problem(None, "--variance-reduction",
                                    f"must be in [0, 1), got {variance_reduction}"))
    if variance_reduction is not None and from_run:
        raise ArgumentError(Problem(None, "--from-run",
                                    "give --variance-reduction or --from-run, not both"))
    cfg = load_config(config)
    reduction: float | dict[str, float] | None = variance_reduction
    reduction_source = "--variance-reduction"
    notes: list[Paragraph] = []
    if from_run:
        reduction, reduction_source, notes = _measured_reductions(cfg, tracking_uri)
    rate, source = _control_rate(cfg, churn_rate)
    a = cfg.analysis
    common = {"control": cfg.control, "arms": cfg.arm_names, "allocation": cfg.allocation,
              "alpha": a.alpha, "power": a.power, "correction": a.correction,
              "variance_reduction": reduction}
    try:
        if n_total is None:
            result = solve_sample_size(rate, a.mde, **common)
        else:
            result = solve_mde(n_total, rate, **common)
    except ValueError as exc:
        where = "--n" if n_total is not None else "analysis.mde"
        file = None if n_total is not None else config
        raise ArgumentError(Problem(file, where, str(exc))) from None
    if fmt == "json":
        payload = {"control_rate": result.control_rate, "control_rate_source": source,
                   "mde": result.mde, "alpha": result.alpha,
                   "alpha_per_test": result.alpha_per_test, "power": result.power,
                   "correction": result.correction, "n_per_group": result.n_per_group,
                   "n_total": result.n_total}
        if result.variance_reduction is not None:
            payload.update(variance_reduction=result.variance_reduction,
                           variance_reduction_source=reduction_source)
            if result.adjusted_n_per_group is not None:
                payload.update(n_per_group_cuped=result.adjusted_n_per_group,
                               n_total_cuped=result.adjusted_n_total)
            else:
                payload["mde_cuped"] = result.adjusted_mde
        click.echo(json.dumps(payload, indent=2))
    elif fmt == "markdown":
        click.echo(result.to_markdown())
    else:
        notes.insert(0, Paragraph(f"Control churn rate from {source}."))
        if result.variance_reduction is not None:
            notes.insert(1, Paragraph(f"Variance reduction from {reduction_source}."))
        _print_table(result.table(), [*notes, *result.paragraphs()])


def _measured_reductions(cfg: Any, tracking_uri: str | None
                         ) -> tuple[dict[str, float], str, list[Paragraph]]:
    """Each offer's variance reduction measured by the experiment's last finished run."""
    from .tracking import latest_variance_reductions, open_client, resolve_tracking_uri

    _quiet_mlflow()
    uri = resolve_tracking_uri(tracking_uri, cfg)
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        raise ArgumentError(Problem(None, "--from-run", f"no MLflow store at {uri} (no run yet)"))
    client = open_client(uri)
    found = client.get_experiment_by_name(cfg.name)
    if found is None:
        raise ArgumentError(Problem(None, "--from-run", f"no experiment {cfg.name!r} in {uri}"))
    try:
        measured, run_id, period = latest_variance_reductions(client, found.experiment_id,
                                                              cfg.arm_names)
    except LookupError:
        raise ArgumentError(Problem(None, "--from-run", (
            f"experiment {cfg.name!r} has no finished run in {uri}"))) from None
    if not measured:
        raise ArgumentError(Problem(None, "--from-run", (
            f"run {run_id} logged no variance_reduction_<arm> metric (was "
            "analysis.cuped disabled, or the table without covariates?)")))
    notes = []
    missing = [arm for arm in cfg.arm_names if arm not in measured]
    if missing:
        notes.append(Paragraph(f"No variance reduction measured for {', '.join(missing)}: "
                               "planned without one.", "note"))
    if any(v < 0 for v in measured.values()):
        notes.append(Paragraph("A negative measured reduction (the adjustment did not help) "
                               "counts as none.", "note"))
    reduction = {arm: max(0.0, min(measured.get(arm, 0.0), 0.99)) for arm in cfg.arm_names}
    return reduction, f"run {run_id}" + (f" ({period})" if period else ""), notes


def _control_rate(cfg: Any, override: float | None) -> tuple[float, str]:
    """The control churn rate to plan with, and where it came from."""
    if override is not None:
        return override, "--churn-rate"
    if cfg.baseline.churn_rate is not None:
        return cfg.baseline.churn_rate, "baseline.churn_rate"
    from .data import load_dataset

    dataset = load_dataset(cfg)
    control = dataset.treatment == cfg.control
    return float(dataset.churned[control].mean()), f"the control group of {dataset.source}"


# --------------------------------------------------------------------------- run


@cli.command()
@CONFIG_ARG
@TRACKING_OPTION
@click.option("--period", default=None, help="Period YYYY-MM (overrides the config's).")
@_common_options
def run(config: str, tracking_uri: str | None, period: str | None) -> None:
    """The main job: readout, models, policy, baseline, report, MLflow run and model."""
    import signal

    from .pipeline import run_experiment
    from .progress import steps

    def terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # ends the MLflow run as failed, registers nothing

    # Only the main thread may set handlers; a caller's own handler is put back afterwards.
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, terminate) if main else None
    _quiet_mlflow()
    gc.freeze()  # the libraries imported so far live as long as the process: never rescan them
    try:
        with steps(_progress()) as update:
            result = run_experiment(config, tracking_uri=tracking_uri, period=period,
                                    on_step=update)
    finally:
        gc.unfreeze()
        if main:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
    for line in result.summary_lines():
        _say(line)
    click.echo(f"run_id: {result.run_id}")


@cli.command()
@click.option("--experiment", default=None, help="Experiment name (default: the config's).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="Config naming the experiment and the store.")
@TRACKING_OPTION
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json", "markdown"]),
              default="table", show_default=True, help="Output format.")
@_common_options
def compare(experiment: str | None, config_path: str | None, tracking_uri: str | None,
            fmt: str) -> None:
    """One row per period: what it recommends, churn reduction and net value with CIs, deltas."""
    from .config import load_config
    from .tracking import compare_periods, open_client, resolve_tracking_uri

    _quiet_mlflow()
    cfg = load_config(config_path, data_file=False) if config_path else None
    name = experiment or (cfg.name if cfg else None)
    if name is None:
        raise ArgumentError(Problem(None, "--experiment", "give --experiment or --config"))
    uri = resolve_tracking_uri(tracking_uri, cfg)
    client = open_client(uri)
    found = client.get_experiment_by_name(name)
    if found is None:
        raise ArgumentError(Problem(None, "--experiment", f"no experiment {name!r} in {uri}"))
    result = compare_periods(client, found.experiment_id, name)
    frame = result.to_frame()
    if fmt == "csv":
        click.echo(frame.to_csv(index=False), nl=False)
    elif fmt == "json":
        click.echo(frame.to_json(orient="records", indent=2))
    elif fmt == "markdown":
        click.echo(result.to_markdown())
    else:
        _print_table(result.table(), width=200)


@cli.command()
@click.option("--version", "version", default=None, help="Model version to promote.")
@click.option("--run", "run_id", default=None, help="Promote the version logged by this run.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="Config naming the registered model and the store.")
@TRACKING_OPTION
@_common_options
def promote(version: str | None, run_id: str | None, config_path: str | None,
            tracking_uri: str | None) -> None:
    """Point the registry alias 'champion' at a model version (default: the candidate)."""
    from .config import load_config
    from .registry import promote as promote_version
    from .tracking import open_client, resolve_tracking_uri

    if version is not None and run_id is not None:
        raise ArgumentError(Problem(None, "--version", "give --version or --run, not both"))
    _quiet_mlflow()
    cfg = load_config(config_path, data_file=False) if config_path else None
    name = cfg.tracking.registered_model if cfg else "retention-uplift"
    client = open_client(resolve_tracking_uri(tracking_uri, cfg))
    promoted = promote_version(client, name, version=version, run_id=run_id,
                               experiment=cfg.name if cfg else None)
    _say(promoted.describe())


@cli.command()
@click.option("--customers", required=True, type=click.Path(dir_okay=False),
              help="Customer table to score (.csv, .csv.gz or .parquet).")
@click.option("--out", required=True,
              help="File to write (.csv or .parquet); {date} becomes today (YYYY-MM-DD).")
@click.option("--model", "model_uri", default=None,
              help="MLflow model URI (default: models:/<registered_model>@champion).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="Config whose economics, eligibility, budget and capacity override the "
                   "model's own (and whose tracking settings name the store and model).")
@click.option("--holdout", type=float, default=None,
              help="Share of customers held out with no offer (default: policy.holdout).")
@click.option("--engine", type=click.Choice(["pandas", "spark"]), default="pandas",
              show_default=True, help="Scoring engine.")
@click.option("--spark-master", default=None,
              help="Spark master URL for --engine spark (default: local[*]).")
@click.option("--chunk-size", type=int, default=200_000, show_default=True,
              help="Customers scored at a time by the pandas engine (bounds memory).")
@TRACKING_OPTION
@_common_options
def export(customers: str, out: str, model_uri: str | None, config_path: str | None,
           holdout: float | None, engine: str, spark_master: str | None, chunk_size: int,
           tracking_uri: str | None) -> None:
    """Score customers with a registered model and write one recommendation per customer."""
    from .export import export_recommendations
    from .progress import steps

    _quiet_mlflow()
    done = [0]
    with steps(_progress()) as update:
        def advance(n: int) -> None:
            done[0] += n
            update(f"Scoring customers ({engine}): {done[0]:,}")

        result = export_recommendations(
            customers, out, model_uri=model_uri, config=config_path, holdout=holdout,
            engine=engine, spark_master=spark_master, chunk_size=chunk_size,
            tracking_uri=tracking_uri, on_step=update, advance=advance)
    m = result.manifest
    offers = ", ".join(f"{k} {v:,}" for k, v in m["offers"].items())
    source = (f" (version {m['model_version']})" if m["model_version"] else
              f" (run {m['run_id']})" if m["run_id"] else "")
    _say(f"Scored {m['rows']:,} customers with {m['model_uri']}{source}: {offers}; "
         f"{m['holdout']:,} held out")
    net = (f", expected net value {m['expected_net_value']:,.2f}" if m.get("value_column")
           else f" {NO_NET_VALUE}")
    _say(f"Expected cost {m['expected_cost']:,.2f}{net}")
    _say(f"Wrote {result.path} and {result.manifest_path} in {result.seconds:.1f} s")


@cli.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="Config naming the store.")
@TRACKING_OPTION
@click.option("--port", type=click.IntRange(1, 65535), default=5000, show_default=True,
              help="Port on 127.0.0.1.")
@_common_options
def ui(config_path: str | None, tracking_uri: str | None, port: int) -> None:
    """Start the MLflow UI on the project's tracking store (127.0.0.1 only)."""
    import subprocess

    from .config import load_config
    from .tracking import artifact_root, open_client, resolve_tracking_uri, ui_address

    cfg = load_config(config_path, data_file=False) if config_path else None
    uri = resolve_tracking_uri(tracking_uri, cfg)
    _check_port_free(port)
    _quiet_mlflow()
    address = ui_address(open_client(uri), port, cfg.name if cfg else None)
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
               "--host", "127.0.0.1", "--port", str(port)]
    root = artifact_root(uri)
    if root:
        command += ["--default-artifact-root", root]
    _say(f"MLflow UI for {uri} at {address} (Ctrl-C to stop)")
    sys.stdout.flush()
    raise SystemExit(subprocess.call(command))


def _check_port_free(port: int) -> None:
    """Refuse a port another server listens on: the address printed would show its pages.

    MLflow's server would only log the failed bind and exit with status 0.
    """
    import socket

    def refuse(reason: str) -> NoReturn:
        raise ArgumentError(Problem(None, "--port", (
            f"cannot serve on 127.0.0.1:{port} ({reason}); another server may be listening "
            "there: choose another --port")))

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        if probe.connect_ex(("127.0.0.1", port)) == 0:  # a server answers, on any address
            refuse("a server answers there")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            refuse(str(exc.strerror or exc))


def main() -> None:
    """Console entry point.

    Cyclic garbage collection runs a tenth as often as Python's default: a run creates
    millions of objects that live until it ends, and the default thresholds scan the
    growing heap again and again (about a second of a 50k-customer run). When the
    command is done, the process ends at once (see :func:`_exit_now`).
    """
    gc.set_threshold(10_000, 10, 10)
    _exit_now(cli.main(standalone_mode=False))


def _exit_now(code: int) -> NoReturn:
    """End the process without Python's shutdown.

    By the time a command returns, its results are on disk and only its output is
    pending. Python's shutdown then tears down, one by one, the two thousand modules
    that MLflow, causalml and pandas import, which takes a second or more. The steps
    of shutdown that matter still run, in its order: thread pools are told to stop and
    running threads are waited for, exit handlers (MLflow's, logging's) run and output
    is flushed; only the teardown is skipped.
    """
    threading._shutdown()  # type: ignore[attr-defined]  # what shutdown does first
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)
