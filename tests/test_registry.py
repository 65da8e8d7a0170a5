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
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import base_config, use_small_models
from mlflow import MlflowClient

from uplift import registry
from uplift.config import load_config
from uplift.data import load_dataset
from uplift.errors import ModelNotFoundError
from uplift.training import train_models

NAME = "registry-test"
FAST = {"n_estimators": 40}
SERVE_TIMEOUT = 90.0


@dataclass(frozen=True)
class Registered:
    """A small model logged and registered (alias candidate) in a temporary store."""

    folder: Path
    uri: str
    client: MlflowClient
    experiment_id: str
    run_id: str
    model_uri: str
    version: str
    columns: list[str]
    rows: pd.DataFrame
    expected: pd.DataFrame

    def env(self) -> dict[str, str]:
        """A subprocess environment that points MLflow at the store and sends nothing out."""
        # `mlflow models serve` runs `uvicorn` from PATH: put this interpreter's bin first.
        path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
        return {**os.environ, "PATH": path, "MLFLOW_TRACKING_URI": self.uri,
                "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}


@contextlib.contextmanager
def global_store(uri: str) -> Iterator[None]:
    """Make ``uri`` MLflow's global tracking URI for a while.

    ``registry.register`` needs it even though it is given a client: MLflow resolves a
    ``models:/m-...`` source through the global URI, not the client's.
    """
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    with _use_tracking_uri(uri):
        yield


@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory) -> Registered:
    import mlflow

    folder = tmp_path_factory.mktemp("registry")
    mapping = {
        "name": "registry-test", "period": "2026-10",
        "data": {"simulate": {"customers": 4000, "seed": 11}, "value": "monthly_revenue"},
        "arms": base_config()["arms"], "allocation": base_config()["allocation"],
        "model": {"learners": ["s"], "seed": 5},
    }
    config_path = folder / "config.yaml"
    config_path.write_text(yaml.safe_dump(mapping), encoding="utf-8")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:
        use_small_models(mp, FAST["n_estimators"])
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mp.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        cfg = load_config(config_path)
        dataset = load_dataset(cfg)
        model = train_models(dataset, cfg).model
        client = MlflowClient(uri)
        experiment_id = client.create_experiment(
            "registry-test", artifact_location=(folder / "artifacts").as_uri())
        with global_store(uri):
            with mlflow.start_run(experiment_id=experiment_id) as run:
                info = registry.log_model(model, dataset,
                                          config_path.read_text(encoding="utf-8"))
            version = registry.register(client, info.model_uri, NAME, run.info.run_id)

    rows = dataset.frame.head(30).reset_index(drop=True)
    assert {"customer_id", "arm", "churned"} <= set(rows.columns)
    return Registered(
        folder=folder, uri=uri, client=client, experiment_id=experiment_id,
        run_id=run.info.run_id, model_uri=info.model_uri, version=version,
        columns=["churn_risk", *(f"uplift_{arm}" for arm in cfg.arm_names)],
        rows=rows, expected=model.predict(rows),
    )


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


def test_model_carries_config_and_training_profile(registered: Registered) -> None:
    import mlflow.pyfunc

    from uplift.tracking import use_store

    with use_store(registered.uri):
        model = mlflow.pyfunc.load_model(registered.model_uri)
    python_model = model.unwrap_python_model()
    assert python_model.config["name"] == "registry-test"
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
        first = registry.register(client, registered.model_uri, name, registered.run_id)
        second = registry.register(client, registered.model_uri, name, other_run,
                                   alias="other")
    assert (first, second) == ("1", "2")

    def champion() -> str:
        return str(client.get_model_version_by_alias(name, registry.CHAMPION).version)

    assert registry.promote(client, name, version=second) == second
    assert champion() == second
    assert registry.promote(client, name, run_id=registered.run_id) == first
    assert champion() == first
    assert registry.promote(client, name, run_id=other_run) == second
    assert champion() == second
    assert registry.promote(client, name) == first  # the candidate by default
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
