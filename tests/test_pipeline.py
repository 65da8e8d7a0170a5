"""`uplift run` end to end on a small simulated test, read back with MlflowClient."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from conftest import base_config
from mlflow import MlflowClient

from uplift.cli import cli
from uplift.models import UpliftModel
from uplift.tracking import TAGS, spec_metric_names

FAST = {"n_estimators": 40}


@pytest.fixture(autouse=True)
def fast_learners(monkeypatch: pytest.MonkeyPatch) -> None:
    original = UpliftModel.__init__

    def init(self: UpliftModel, *args: object, **kwargs: object) -> None:
        original(self, *args, **kwargs)
        if self.learner in ("s", "t"):
            self.params = FAST

    monkeypatch.setattr(UpliftModel, "__init__", init)


def write_config(folder: Path, **changes: object) -> Path:
    mapping = {
        "name": "pipeline-test", "period": "2026-10",
        "data": {"simulate": {"customers": 5000, "seed": 8}, "value": "monthly_revenue"},
        "arms": base_config()["arms"], "allocation": base_config()["allocation"],
        "model": {"learners": ["s", "t"], "seed": 2},
        "baseline": {"churn_rate": 0.3},
        "tracking": {"registered_model": "pipeline-model"},
        **changes,
    }
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(mapping))
    return path


@pytest.mark.slow
def test_run_logs_every_spec_name_child_runs_and_registers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    write_config(tmp_path)
    result = CliRunner().invoke(cli, ["run", "config.yaml", "--quiet"])
    assert result.exit_code == 0, (result.output, result.exception)
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("run_id: ")
    run_id = last.removeprefix("run_id: ")
    assert (tmp_path / "mlruns" / "mlflow.db").exists()  # the default store, created
    client = MlflowClient("sqlite:///mlruns/mlflow.db")
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert set(TAGS) <= set(run.data.tags)
    assert run.data.tags["period"] == "2026-10"
    arms = ["discount_20", "free_upgrade", "webinar"]
    assert set(run.data.metrics) == spec_metric_names(arms)
    children = client.search_runs([run.info.experiment_id],
                                  filter_string=f"tags.`mlflow.parentRunId` = '{run_id}'")
    assert sorted(c.data.tags["learner"] for c in children) == ["ensemble", "s", "t"]
    assert all(c.info.status == "FINISHED" for c in children)
    version = client.get_model_version_by_alias("pipeline-model", "candidate")
    assert version.run_id == run_id
    assert (tmp_path / "reports" / "2026-10" / "report.html").exists()


def test_bad_config_creates_no_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    path = write_config(tmp_path)
    mapping = yaml.safe_load(path.read_text())
    mapping["policy"] = {"budgt": 5}
    path.write_text(yaml.safe_dump(mapping))
    result = CliRunner().invoke(cli, ["run", "config.yaml"])
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: config.yaml: policy.budgt: unknown key")
    assert not (tmp_path / "mlruns").exists()
