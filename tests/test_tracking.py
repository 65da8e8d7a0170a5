"""Tracking: URI precedence, the spec's metric names, flattened params."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from uplift.config import load_config
from uplift.errors import ArgumentError, ConfigError
from uplift.tracking import (
    DEFAULT_TRACKING_URI,
    finite_metrics,
    flatten_params,
    logged_metric_names,
    resolve_tracking_uri,
    schema_sample,
    server_problem,
    spec_metric_names,
)

ROOT = Path(__file__).resolve().parents[1]


class _NotHere(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.send_error(404)  # an answer all the same: something listens

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Requests to this machine go straight to it, also where the tests run behind a proxy."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                 "all_proxy"):
        monkeypatch.delenv(name, raising=False)


def _serve(port: int = 0) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", port), _NotHere)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def answering() -> Iterator[str]:
    """The address of a web server on this machine (it answers 404 to everything)."""
    server = _serve()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_tracking_uri_precedence(monkeypatch: pytest.MonkeyPatch, answering: str) -> None:
    cfg = load_config(ROOT / "experiments" / "demo.yaml")
    with_uri = cfg.model_copy(update={"tracking": cfg.tracking.model_copy(
        update={"uri": "sqlite:///from-config.db"})})
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    here = Path.cwd()
    assert resolve_tracking_uri(None, cfg) == f"sqlite:///{here / 'mlruns' / 'mlflow.db'}"
    assert DEFAULT_TRACKING_URI == "sqlite:///mlruns/mlflow.db"
    assert resolve_tracking_uri(None, with_uri) == f"sqlite:///{here / 'from-config.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////data/from-env.db")
    assert resolve_tracking_uri(None, with_uri) == "sqlite:////data/from-env.db"
    assert resolve_tracking_uri(answering, with_uri) == answering


def test_a_server_address_nothing_answers_at_is_refused_at_once(
        monkeypatch: pytest.MonkeyPatch, answering: str) -> None:
    """MLflow would retry it for minutes, then fail with a traceback."""
    from uplift import tracking

    monkeypatch.setattr(tracking, "SERVER_PATIENCE", 0.0)
    assert server_problem(answering) is None
    assert server_problem("sqlite:///mlruns/mlflow.db") is None
    nowhere = f"http://127.0.0.1:{_closed_port()}"
    start = time.perf_counter()
    with pytest.raises(ArgumentError) as caught:
        resolve_tracking_uri(nowhere)
    assert time.perf_counter() - start < 10
    assert caught.value.problems[0].where == "tracking_uri"
    assert str(caught.value) == (f"tracking_uri: no MLflow server answers at {nowhere} "
                                 "(connection refused)")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", nowhere)
    with pytest.raises(ArgumentError, match="^MLFLOW_TRACKING_URI: no MLflow server"):
        resolve_tracking_uri(None)
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    cfg = load_config(ROOT / "experiments" / "demo.yaml")
    cfg = cfg.model_copy(update={"tracking": cfg.tracking.model_copy(update={"uri": nowhere})})
    with pytest.raises(ConfigError) as from_config:
        resolve_tracking_uri(None, cfg)
    assert str(from_config.value).startswith(
        f"{cfg.source}: tracking.uri: no MLflow server answers at {nowhere}")


def test_a_local_store_keeps_its_artifacts_beside_it_wherever_the_command_runs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from uplift.tracking import artifact_root, get_or_create_experiment, open_client

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    uri = f"sqlite:///{tmp_path / 'stores' / 'retention.db'}"
    client = open_client(uri)
    experiment = client.get_experiment(get_or_create_experiment(client, "e", uri))
    assert experiment.artifact_location == (tmp_path / "stores" / "retention-artifacts").as_uri()
    assert artifact_root("http://127.0.0.1:5000") is None  # the server's choice
    monkeypatch.chdir(tmp_path)
    assert artifact_root(resolve_tracking_uri(None)) == (tmp_path / "mlruns").as_uri()


def test_spec_metric_names_for_two_arms() -> None:
    names = spec_metric_names(["discount_20", "webinar"])
    per_arm = {"n_{}", "churn_rate_{}", "ate_{}", "ate_{}_ci_low", "ate_{}_ci_high",
               "ate_{}_pvalue", "ate_{}_pvalue_adj", "qini_{}", "auuc_{}", "policy_share_{}"}
    fixed = {"n_customers", "n_control", "churn_rate_control", "srm_pvalue",
             "policy_churn_rate", "policy_churn_reduction", "policy_churn_reduction_ci_low",
             "policy_churn_reduction_ci_high", "policy_net_value_per_customer",
             "policy_cost_per_customer", "churn_rate_observed", "baseline_churn_rate",
             "churn_reduction_vs_baseline"}
    assert names == fixed | {p.format(a) for p in per_arm for a in ("discount_20", "webinar")}
    assert "srm_pvalue" not in spec_metric_names(["a"], allocation=False)


def test_a_run_logs_the_spec_names_the_adjusted_ones_and_the_net_value_interval() -> None:
    arms = ["discount_20", "webinar"]
    adjusted = {f"ate_{a}_cuped{s}" for a in arms
                for s in ("", "_ci_low", "_ci_high", "_pvalue", "_pvalue_adj")}
    adjusted |= {f"variance_reduction_{a}" for a in arms}
    interval = {"policy_net_value_per_customer_ci_low", "policy_net_value_per_customer_ci_high"}
    versus = {f"policy_{figure}_vs_simple{end}" for figure in
              ("net_value_per_customer", "churn_reduction") for end in ("", "_ci_low", "_ci_high")}
    assert logged_metric_names(arms) == spec_metric_names(arms) | adjusted | interval | versus
    assert logged_metric_names(arms, versus=False) == (
        spec_metric_names(arms) | adjusted | interval)
    assert not (adjusted | interval | versus) & spec_metric_names(arms)


def test_flatten_params_and_finite_metrics() -> None:
    cfg = load_config(ROOT / "experiments" / "demo.yaml")
    params = flatten_params(cfg)
    assert params["policy.objective"] == "net_value"
    assert params["arms.discount_20.cost.revenue_share"] == "0.2"
    assert params["model.learners"] == str(cfg.model.learners)
    assert finite_metrics({"a": 1, "b": float("nan"), "c": float("inf")}) == {"a": 1.0}


def test_flatten_params_keep_what_identifies_the_run_and_nothing_empty() -> None:
    cfg = load_config(ROOT / "experiments" / "demo.yaml")
    params = flatten_params(cfg, baseline_period="2026-09")
    assert "" not in params.values()
    assert params["baseline_period"] == "2026-09"
    assert params["data.simulate.customers"] == "50000"
    assert "description" not in params  # the run's description says it
    assert not any(k.startswith(("policy.budget", "arms.webinar.eligible")) for k in params)
    assert params["policy.min_net_value"] == "0.0"  # a zero is a value, not an empty one


def test_readable_metrics_keep_six_significant_digits() -> None:
    from uplift.tracking import readable

    assert readable(0.27345678912345) == 0.273457
    assert readable(-1.23456789e-7) == -1.23457e-7
    assert readable(50000.0) == 50000.0
    assert readable(123456789.0) == 123457000.0


@pytest.mark.slow
def test_the_ui_lands_on_the_runs_of_the_experiment(tmp_path: Path) -> None:
    import os
    import re
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    import yaml
    from conftest import record_browser_check, require_browser, simulated_config

    from uplift.pipeline import run_experiment

    chromium = require_browser()
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    config = tmp_path / "c.yaml"
    mapping = simulated_config(customers=3000, learners=("s",), name="ui-test")
    mapping["model"]["ensemble"] = False
    config.write_text(yaml.safe_dump(mapping))
    run_experiment(config, tracking_uri=uri, reports=None)
    run_experiment(config, tracking_uri=uri, period="2026-11", reports=None)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true",
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])}
    server = subprocess.Popen([sys.executable, "-m", "uplift", "ui", "--tracking-uri", uri,
                               "--port", str(port)], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True, env=env,
                              start_new_session=True)
    try:
        line = server.stdout.readline()  # type: ignore[union-attr]
        address = re.search(r"at (http://\S+)", line).group(1)  # type: ignore[union-attr]
        assert re.fullmatch(rf"http://127\.0\.0\.1:{port}/#/experiments/\d+/runs", address)
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline, "the MLflow UI did not come up"
                time.sleep(0.5)
        dom = subprocess.run(
            [str(chromium), "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
             "--virtual-time-budget=30000", "--dump-dom", address],
            capture_output=True, text=True, timeout=180, check=False).stdout
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
    text = " ".join(re.sub(r"<[^>]+>", " ", re.sub(r"<(script|style)[^>]*>.*?</\1>", " ",
                                                   dom, flags=re.S)).split())
    assert "Training runs" in text
    assert "2026-10" in text  # the runs, by period
    assert "2026-11" in text
    assert "Token Usage" not in text  # not the GenAI overview
    record_browser_check("MLflow UI runs page")


def test_the_schema_sample_gives_the_whole_tables_types() -> None:
    """A column empty in the first rows, one with gaps, text and numbers: same schema."""
    import numpy as np
    import pandas as pd
    from mlflow.models import infer_signature

    n = 5000
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({
        "customer_id": [f"c{i}" for i in range(n)],
        "late_text": [None] * 4000 + ["gold"] * (n - 4000),
        "late_number": [np.nan] * 4500 + list(rng.normal(size=n - 4500)),
        "gappy": np.where(rng.random(n) < 0.4, np.nan, rng.normal(size=n)),
        "seats": rng.integers(1, 50, n),
        "annual": rng.random(n) < 0.5,
    })
    sample = schema_sample(frame, rows=100)
    assert len(sample) == 102  # the first 100 rows and the two late columns' first values
    assert sample["late_text"].notna().any()
    assert sample["late_number"].notna().any()
    assert infer_signature(sample).inputs == infer_signature(frame).inputs
    assert infer_signature(frame.head(100)).inputs != infer_signature(frame).inputs


def test_compared_periods_count_whole_customers_and_change_without_float_noise() -> None:
    from uplift.tracking import ComparisonResult, PeriodRow

    def period(name: str, customers: float | None, churn: float, reduction: float
               ) -> PeriodRow:
        return PeriodRow(name, "r" + name, "s", "s", customers, churn, 0.3, 0.25, reduction,
                         None, None, None, None, None, None, None)

    # As logged (six significant digits): the plain differences are 0.01458 and -0.0121.
    result = ComparisonResult("e", (period("2026-09", 50000.0, 0.26586, 0.0565049),
                                    period("2026-10", 20000.0, 0.28044, 0.0444049),
                                    period("2026-11", None, 0.28044, 0.0444049)))
    lines = result.to_frame().to_csv(index=False).splitlines()
    assert [line.split(",")[4] for line in lines[1:]] == ["50000", "20000", ""]
    assert lines[2].endswith(",0.01458,-0.0121")
    assert lines[3].endswith(",0.0,0.0")
    assert [row[3] for row in result.table().rows] == ["50,000", "20,000", ""]
    unknown = ComparisonResult("e", (period("2026-09", None, 0.3, 0.01),))
    assert unknown.to_frame()["n_customers"].isna().all()


def test_a_server_that_starts_answering_soon_is_waited_for() -> None:
    """A scheduled run may start beside its tracking server; MLflow would have waited."""
    port = _closed_port()
    servers: list[ThreadingHTTPServer] = []
    starter = threading.Timer(1.5, lambda: servers.append(_serve(port)))
    starter.start()
    try:
        start = time.perf_counter()
        assert server_problem(f"http://127.0.0.1:{port}", patience=8.0) is None
        assert time.perf_counter() - start >= 1.0
    finally:
        starter.join()
        for server in servers:
            server.shutdown()
            server.server_close()
