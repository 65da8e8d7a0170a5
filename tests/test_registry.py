"""The registered pyfunc: loaded in a fresh process, served over HTTP, and promoted."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from conftest import REGISTERED, RegisteredStore

from uplift import registry
from uplift.errors import ModelNotFoundError

NAME = REGISTERED
SERVE_TIMEOUT = 90.0


Registered = RegisteredStore


@contextlib.contextmanager
def global_store(uri: str) -> Iterator[None]:
    """Make ``uri`` MLflow's global tracking URI for a while.

    ``registry.register`` needs it even though it is given a client: MLflow resolves a
    ``models:/m-...`` source through the global URI, not the client's.
    """
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    with _use_tracking_uri(uri):
        yield


@pytest.fixture
def registered(registered_store: RegisteredStore) -> RegisteredStore:
    return registered_store


def test_fresh_process_load_equals_in_process(registered: Registered) -> None:
    rows_path = registered.folder / "fresh_rows.parquet"
    out_path = registered.folder / "fresh_predictions.parquet"
    registered.rows.to_parquet(rows_path)
    script = (
        "import sys, mlflow.pyfunc, pandas as pd\n"
        f"model = mlflow.pyfunc.load_model('models:/{NAME}@candidate')\n"
        "model.predict(pd.read_parquet(sys.argv[1])).to_parquet(sys.argv[2])\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(rows_path), str(out_path)],
                          env=registered.env(), cwd=registered.folder, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    loaded = pd.read_parquet(out_path)
    assert list(loaded.columns) == registered.columns
    pd.testing.assert_frame_equal(loaded.reset_index(drop=True),
                                  registered.expected.reset_index(drop=True),
                                  check_exact=False, rtol=1e-12, atol=0.0)


def test_loads_without_the_package_installed(registered: Registered) -> None:
    """The model carries this package's code: a process that cannot import it still loads it."""
    rows_path = registered.folder / "bare_rows.parquet"
    out_path = registered.folder / "bare_predictions.parquet"
    registered.rows.to_parquet(rows_path)
    project = str(Path(__file__).resolve().parents[1])
    script = (
        "import sys\n"
        # Drop the editable install's finder and the project folder from the search path.
        "sys.meta_path = [f for f in sys.meta_path if '__editable__' not in repr(f)]\n"
        f"sys.path = [p for p in sys.path if p not in ('', {project!r})]\n"
        "import importlib.util\n"
        "assert importlib.util.find_spec('uplift') is None, 'uplift is still importable'\n"
        "import mlflow.pyfunc, pandas as pd\n"
        f"model = mlflow.pyfunc.load_model('models:/{NAME}@candidate')\n"
        "import uplift\n"
        "print(uplift.__file__)\n"
        "model.predict(pd.read_parquet(sys.argv[1])).to_parquet(sys.argv[2])\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(rows_path), str(out_path)],
                          env=registered.env(), cwd=registered.folder, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "code" in Path(done.stdout.strip()).parts
    pd.testing.assert_frame_equal(pd.read_parquet(out_path),
                                  registered.expected.reset_index(drop=True),
                                  check_exact=False, rtol=1e-12, atol=0.0)


def test_signature_accepts_missing_values_in_integer_columns(registered: Registered) -> None:
    import mlflow.pyfunc

    from uplift.tracking import use_store

    with use_store(registered.uri):
        model = mlflow.pyfunc.load_model(registered.model_uri)
    rows = registered.rows.copy()
    assert pd.api.types.is_integer_dtype(rows["tenure_months"])
    rows["tenure_months"] = rows["tenure_months"].astype(float)
    rows.loc[0, "tenure_months"] = float("nan")
    inputs = {spec.name: spec.to_dict()["type"]
              for spec in model.metadata.get_input_schema().inputs}
    assert inputs["tenure_months"] == "any"
    assert inputs["plan"] == "string"
    assert inputs["nps"] == "double"
    out = model.predict(rows)
    assert out.notna().all().all()
    expected = registered.expected
    pd.testing.assert_frame_equal(out.iloc[1:].reset_index(drop=True),
                                  expected.iloc[1:].reset_index(drop=True),
                                  check_exact=False, rtol=1e-12, atol=0.0)


def test_raw_rows_with_id_group_and_outcome_predict_quietly(
    registered: Registered, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    import mlflow.pyfunc

    from uplift.tracking import use_store

    with use_store(registered.uri):
        model = mlflow.pyfunc.load_model(registered.model_uri)
    rows = registered.rows  # as in the data file: customer_id, arm and churned included
    assert {"customer_id", "arm", "churned"} <= set(rows.columns)
    with caplog.at_level(logging.DEBUG, logger="mlflow"):
        out = model.predict(rows)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    pd.testing.assert_frame_equal(out.reset_index(drop=True),
                                  registered.expected.reset_index(drop=True),
                                  check_exact=False, rtol=1e-12, atol=0.0)
    optional = [spec.name for spec in model.metadata.get_input_schema().inputs
                if not spec.required]
    assert optional == ["customer_id", "arm", "churned"]
    # A column the data file never had is still worth a word from MLflow.
    with caplog.at_level(logging.WARNING, logger="mlflow"):
        model.predict(rows.assign(crm_segment="a"))
    assert any("crm_segment" in r.getMessage() for r in caplog.records)


def test_model_carries_config_and_training_profile(registered: Registered) -> None:
    import mlflow.pyfunc

    from uplift.tracking import use_store

    with use_store(registered.uri):
        model = mlflow.pyfunc.load_model(registered.model_uri)
    python_model = model.unwrap_python_model()
    assert python_model.config["name"] == registered.mapping["name"]
    profile = python_model.profile
    assert list(profile) == python_model.model.features
    tenure = profile["tenure_months"]
    assert tenure["kind"] == "numeric"
    assert tenure["rows"] == 4000
    assert abs(sum(tenure["shares"]) - 1) < 1e-12
    assert profile["plan"]["kind"] == "categorical"
    assert set(profile["plan"]["categories"]) == {"basic", "standard", "premium"}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_up(url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + SERVE_TIMEOUT
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"the server exited with {server.returncode}:\n"
                        f"{log.read_text(errors='replace')[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    pytest.fail(f"the server did not answer {url} within {SERVE_TIMEOUT:.0f} s:\n"
                f"{log.read_text(errors='replace')[-4000:]}")


def stop(server: subprocess.Popen[bytes]) -> None:
    """Stop the server and the workers it started (its own process group)."""
    if server.poll() is not None:
        return
    try:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=15)
    except ProcessLookupError:
        pass


@pytest.mark.slow
def test_model_serves_over_http(registered: Registered) -> None:
    rows = registered.rows
    assert rows["nps"].isna().any()  # missing values travel as null
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = registered.folder / "serve.log"
    with log.open("wb") as sink:
        server = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "models", "serve", "-m",
             f"models:/{NAME}@candidate", "--env-manager", "local", "-h", "127.0.0.1",
             "-p", str(port), "-w", "1"],
            env=registered.env(), cwd=registered.folder, stdout=sink,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        wait_until_up(f"{base}/ping", server, log)
        # Full float precision (to_json rounds to 10 digits by default); NaN becomes null,
        # booleans true/false, strings stay strings.
        split = json.loads(rows.to_json(orient="split", index=False, double_precision=15))
        request = urllib.request.Request(
            f"{base}/invocations", data=json.dumps({"dataframe_split": split}).encode(),
            headers={"Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            pytest.fail(f"/invocations answered {exc.code}: {exc.read()[:2000]!r}")
    finally:
        stop(server)
    served = pd.DataFrame(body["predictions"])
    assert list(served.columns) == registered.columns
    pd.testing.assert_frame_equal(served, registered.expected.reset_index(drop=True),
                                  check_exact=False, rtol=1e-9, atol=1e-12)


def test_promote_points_champion_at_a_version(registered: Registered) -> None:
    client = registered.client
    name = "registry-promote"
    other_run = client.create_run(registered.experiment_id).info.run_id
    client.set_terminated(other_run)
    with global_store(registered.uri):
        first = registry.register(client, registered.model_uri, name, registered.run_id,
                                  tags={"period": "2026-10"})
        second = registry.register(client, registered.model_uri, name, other_run,
                                   alias="other")
    assert (first, second) == ("1", "2")
    moved = registry.promote(client, name)
    assert moved.describe() == (f"registry-promote 'champion': no version -> version 1 "
                                f"(period 2026-10, run {registered.run_id})")

    def champion() -> str:
        return str(client.get_model_version_by_alias(name, registry.CHAMPION).version)

    moved = registry.promote(client, name, version=second)
    assert moved.describe() == (f"registry-promote 'champion': version 1 -> version 2 "
                                f"(run {other_run})")
    assert champion() == second
    assert registry.promote(client, name, run_id=registered.run_id).version == first
    assert champion() == first
    assert registry.promote(client, name, run_id=other_run).version == second
    assert champion() == second
    assert registry.promote(client, name).version == first  # the candidate by default
    assert champion() == first

    with pytest.raises(ModelNotFoundError, match=r"'registry-promote' has no version 7"):
        registry.promote(client, name, version="7")
    with pytest.raises(ModelNotFoundError,
                       match=r"no version of 'registry-promote' comes from run 0{32}"):
        registry.promote(client, name, run_id="0" * 32)
    with pytest.raises(ModelNotFoundError, match=r"'no-such-model' has no 'candidate' version"):
        registry.promote(client, "no-such-model")
    assert champion() == first  # failed promotions leave the alias alone


def test_register_uses_the_clients_store_not_the_global_one(
    registered: Registered, tmp_path: Path
) -> None:
    import mlflow

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/elsewhere.db")
    try:
        version = registry.register(registered.client, registered.model_uri,
                                    "registry-elsewhere", registered.run_id)
        assert mlflow.get_tracking_uri() == f"sqlite:///{tmp_path}/elsewhere.db"
    finally:
        mlflow.set_tracking_uri(previous)
    assert version == "1"
    assert not (tmp_path / "elsewhere.db").exists()
    alias = registered.client.get_model_version_by_alias("registry-elsewhere", "candidate")
    assert alias.run_id == registered.run_id


def test_experiments_sharing_a_registered_model_are_warned_and_not_crossed(
        tmp_path: Path) -> None:
    import warnings

    from mlflow import MlflowClient

    from uplift.errors import ArgumentError, UpliftWarning

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = {}
    for experiment in ("churn-offers", "onboarding"):
        run = client.create_run(client.create_experiment(experiment))
        client.set_terminated(run.info.run_id)
        runs[experiment] = run.info.run_id
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the first registration has no one to displace
        registry.register(client, f"runs:/{runs['churn-offers']}/model", "shared",
                          runs["churn-offers"])
    with pytest.warns(UpliftWarning, match=r"its 'candidate' was version 1 of experiment "
                                           r"'churn-offers' and is now this run's"):
        registry.register(client, f"runs:/{runs['onboarding']}/model", "shared",
                          runs["onboarding"])
    # The candidate is now the other experiment's: promoting it for churn-offers is refused.
    with pytest.raises(ArgumentError, match=r"version 2 of 'shared' was trained in "
                                            r"experiment 'onboarding', not 'churn-offers'"):
        registry.promote(client, "shared", experiment="churn-offers")
    first = registry.promote(client, "shared", version="1", experiment="churn-offers")
    assert (first.version, first.previous) == ("1", None)  # the refusal moved nothing
    assert registry.promote(client, "shared", experiment="onboarding").version == "2"
