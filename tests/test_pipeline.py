"""`uplift run` end to end on a small simulated test, read back with MlflowClient."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from html import escape
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from conftest import SimulatedRun, base_config, small_params
from mlflow import MlflowClient

from uplift.cli import cli
from uplift.simulate import simulate_customers
from uplift.tracking import (
    TAGS,
    compare_periods,
    logged_metric_names,
    open_client,
    spec_metric_names,
)


def write_config(folder: Path, **changes: object) -> Path:
    mapping = {
        "name": "pipeline-test", "period": "2026-10",
        "description": "Q4 offers (pipeline test)",
        "data": {"simulate": {"customers": 5000, "seed": 8}, "value": "monthly_revenue"},
        "arms": base_config()["arms"], "allocation": base_config()["allocation"],
        "model": {"learners": ["s", "t"], "seed": 2, "params": small_params("s", "t")},
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
    result = CliRunner().invoke(cli, ["run", "config.yaml"])
    assert result.exit_code == 0, (result.output, result.exception)
    summary = [line for line in result.stdout.splitlines() if "Covariate-adjusted" in line]
    assert len(summary) == 1
    assert summary[0].startswith("Covariate-adjusted effects (linear): discount_20 ")
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("run_id: ")
    run_id = last.removeprefix("run_id: ")
    assert (tmp_path / "mlruns" / "mlflow.db").exists()  # the default store, created
    client = MlflowClient("sqlite:///mlruns/mlflow.db")
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert set(TAGS) <= set(run.data.tags)
    assert run.data.tags["period"] == "2026-10"
    shown = {"s": "S-learner (s)", "t": "T-learner (t)", "ensemble": "ensemble (s + t)"}
    assert (f"Selected learner: {shown[run.data.tags['selected_learner']]}; registered "
            "pipeline-model version 1 as 'candidate'") in result.stdout
    arms = ["discount_20", "free_upgrade", "webinar"]
    assert set(run.data.metrics) == logged_metric_names(arms)
    assert spec_metric_names(arms) <= set(run.data.metrics)
    assert run.data.metrics["variance_reduction_discount_20"] > 0.02  # simulated covariates
    children = client.search_runs([run.info.experiment_id],
                                  filter_string=f"tags.`mlflow.parentRunId` = '{run_id}'")
    assert sorted(c.data.tags["learner"] for c in children) == [
        "ensemble", "everyone:discount_20", "everyone:free_upgrade", "everyone:webinar",
        "nobody", "s", "t"]
    assert all(c.info.status == "FINISHED" for c in children)
    version = client.get_model_version_by_alias("pipeline-model", "candidate")
    assert version.run_id == run_id
    assert (tmp_path / "reports" / "2026-10" / "report.html").exists()
    # The training table is the run's dataset input.
    (entry,) = run.inputs.dataset_inputs
    assert entry.dataset.digest == run.data.tags["data_sha256"][:36]
    assert entry.dataset.name == "simulated-5000-seed8"
    assert [t.value for t in entry.tags if t.key == "mlflow.data.context"] == ["training"]
    schema = json.loads(entry.dataset.schema)["mlflow_colspec"]
    assert {"customer_id", "arm", "churned", "tenure_months"} <= {c["name"] for c in schema}
    check_what_the_ui_shows(client, run, children, version, tmp_path)


def check_what_the_ui_shows(client: MlflowClient, run: object, children: list,
                            version: object, tmp_path: Path) -> None:
    """What an analyst reads in the MLflow UI: kind, descriptions, tags, params, names."""
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    note = run.data.tags["mlflow.note.content"]
    assert note.startswith("Q4 offers (pipeline test)\n\n")
    selected = run.data.tags["selected_learner"]
    label = {"s": "S-learner", "t": "T-learner", "ensemble": "ensemble (s + t)"}.get(
        selected, selected)
    assert f"**{label}" in note
    assert "Recommended policy (held-out estimate): churn " in note
    assert re.search(r"reduction [+-]\d+\.\d\d pp \[[+-]\d+\.\d\d pp, [+-]\d+\.\d\d pp\]",
                     note)
    assert re.search(r"net value -?[\d,]+\.\d\d \[-?[\d,]+\.\d\d, -?[\d,]+\.\d\d\] per "
                     "customer", note)
    assert "Baseline churn 30.00% (from baseline.churn_rate)" in note
    assert f"#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}/artifactPath/" \
        "report/report.html" in note
    # Params identify the run: no empty values, the baseline period filled in.
    params = run.data.params
    assert "" not in params.values()
    assert params["baseline_period"] == run.data.tags["baseline_period"] == "2026-09"
    assert "description" not in params
    assert params["model.learners"] == "['s', 't']"
    # Metrics read as people read them (6 significant digits at most).
    assert all(len(f"{v:.15g}".lstrip("-").replace(".", "").lstrip("0")) <= 6
               for v in run.data.metrics.values())
    # Child runs are named for their candidate, the recommended one marked (and the
    # selected model, when a model-free policy is recommended), and last their fit.
    names = [c.info.run_name for c in children]
    assert len([n for n in names if n.endswith(" (recommended)")]) == 1
    plain = sorted(n.removesuffix(" (recommended)").removesuffix(" (selected)")
                   for n in names)
    assert plain[:2] == ["S-learner", "T-learner"]
    assert plain[3] == "ensemble (s + t)"  # the first two learners listed
    assert {plain[2], *plain[4:]} == {"nobody", "discount_20 for everyone",
                                      "free_upgrade for everyone", "webinar for everyone"}
    recommended = [c.data.tags["learner"] for c in children
                   if c.data.tags["recommended"] == "True"]
    assert recommended == [run.data.tags["recommended_policy"]]
    for child in children:
        m = child.data.metrics
        assert "policy_value" not in m
        assert "policy_net_value_per_customer" in m
        low, high = (m[f"policy_net_value_per_customer_ci_{e}"] for e in ("low", "high"))
        assert low < m["policy_net_value_per_customer"] < high or low == high == 0.0
        note_text = child.data.tags["mlflow.note.content"]
        assert note_text.startswith(f"**{child.info.run_name.split(' (')[0]}")
        shown = re.search(r"net value (\S+) \[(\S+), (\S+)\] per customer", note_text)
        assert shown is not None
        assert [float(x.replace(",", "")) for x in shown.groups()] == pytest.approx(
            [m["policy_net_value_per_customer"], low, high], abs=0.006)
        assert ("fit_seconds" in m) != (child.data.tags["learner"] in (
            "nobody", "everyone:discount_20", "everyone:free_upgrade", "everyone:webinar"))
        assert child.data.params["learner"] == child.data.tags["learner"]
        if child.data.tags["learner"] == "ensemble":  # costs and spans its members' fits
            fits = {c.data.tags["learner"]: c.data.metrics.get("fit_seconds") for c in children}
            assert m["fit_seconds"] == pytest.approx(fits["s"] + fits["t"], abs=0.002)
            span = (child.info.end_time - child.info.start_time) / 1000
            assert span == pytest.approx(m["fit_seconds"], abs=0.01)
        if child.data.tags["learner"] == "t":
            assert child.data.params["outcome.n_estimators"] == "40"  # from model.params
            assert child.data.params["base"] == "lightgbm"
            span = (child.info.end_time - child.info.start_time) / 1000
            assert span == pytest.approx(m["fit_seconds"], abs=0.01)
    # The registered version says where it comes from; the model what it takes.
    assert version.tags["period"] == "2026-10"
    assert version.tags["selected_learner"] == selected
    assert version.tags["data_sha256"] == run.data.tags["data_sha256"]
    assert float(version.tags["policy_churn_reduction"]) == pytest.approx(
        run.data.metrics["policy_churn_reduction"], rel=1e-5)
    assert float(version.tags["policy_net_value_per_customer"]) == pytest.approx(
        run.data.metrics["policy_net_value_per_customer"], rel=1e-5)
    assert version.tags["recommended_policy"] == run.data.tags["recommended_policy"]
    periods = compare_periods(client, run.info.experiment_id)
    (row,) = periods.rows  # customers had values
    net = "policy_net_value_per_customer"
    assert (row.policy_net_value_per_customer, row.policy_net_value_per_customer_ci_low,
            row.policy_net_value_per_customer_ci_high) == (
        run.data.metrics[net], run.data.metrics[f"{net}_ci_low"],
        run.data.metrics[f"{net}_ci_high"])
    assert row.recommended_policy == run.data.tags["recommended_policy"]
    (shown_row,) = periods.table().rows
    assert shown_row[2] == run.data.tags["recommended_policy"]  # what the period recommends
    value, low, high = (run.data.metrics[f"{net}{end}"] for end in ("", "_ci_low", "_ci_high"))
    assert shown_row[6] == f"{value:,.2f} [{low:,.2f}, {high:,.2f}]"
    says = ("" if run.data.tags["recommended_policy"] == selected else
            f"; recommends {run.data.tags['recommended_policy']} instead (no model's policy "
            "was clearly better)")
    named = label if label.startswith(selected) else f"{label} ({selected})"  # once
    # The versions table shows a description's first words: they give the policy's worth.
    worth = f"Net value {run.data.metrics[net]:,.2f} per customer"
    recommended = run.data.tags["recommended_policy"]
    if recommended != selected:
        worth += (": offers to nobody" if recommended == "nobody" else
                  f": {recommended.removeprefix('everyone:')} for everyone")
    assert version.description.startswith(f"{worth}. Period 2026-10, {named}{says}. "
                                          "Recommended policy (held-out estimate)")
    assert run.data.tags["data_sha256"][:12] in version.description
    registered = client.get_registered_model("pipeline-model")
    assert "`churn_risk`" in registered.description
    assert "`uplift_<offer>`" in registered.description
    logged = client.get_logged_model(version.source.removeprefix("models:/"))
    assert json.loads(logged.tags["mlflow.modelVersions"]) == [
        {"name": "pipeline-model", "version": version.version}]
    # The logged report shows its plots inside the UI's sandboxed frame: no file paths.
    html = Path(client.download_artifacts(run.info.run_id, "report/report.html",
                                          str(tmp_path))).read_text()
    sources = re.findall(r'<img src="([^"]+)"', html)
    assert len(sources) == 8
    assert all(src.startswith("data:image/png;base64,") for src in sources)
    # The report opens with what the run found, in the words of the command's summary.
    opening = html[html.index("<h2>Summary</h2>"):html.index('<table class="meta">')]
    findings = note.split("\n\n")[1].split("  \n")  # the description's sentences
    findings[0] = findings[0][findings[0].index("Recommended policy (held-out estimate)"):]
    assert findings[-1].startswith("Baseline churn")
    for sentence in findings:
        assert f">{escape(sentence)}</p>" in opening
    assert f"<p>Selected learner: {escape(label)}" in opening


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


def test_a_run_without_a_value_column_is_refused_before_the_store_when_it_needs_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    path = write_config(tmp_path)
    mapping = yaml.safe_load(path.read_text())
    del mapping["data"]["value"]
    # Trained on a file, as on real data (which the export must not need later).
    simulate_customers(5000, 8).customers.to_csv(tmp_path / "train.csv", index=False)
    mapping["data"] = {**mapping["data"], "path": "train.csv", "id": "customer_id"}
    del mapping["data"]["simulate"]
    path.write_text(yaml.safe_dump(mapping))
    need_value = ("Error: config.yaml: data.value: a value column (monthly revenue) is needed "
                  "for policy.objective net_value; name it, or use policy.objective "
                  "churn_reduction")
    result = CliRunner().invoke(cli, ["validate", "config.yaml"])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        need_value,
        "Error: config.yaml: arms[0].cost.revenue_share: 'discount_20' costs a share of "
        "monthly revenue, which needs data.value (the revenue column); without it the "
        "offer would look free"]
    result = CliRunner().invoke(cli, ["run", "config.yaml"])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [f"{need_value} (and 1 more; run uplift validate)"]
    assert not (tmp_path / "mlruns").exists()
    assert CliRunner().invoke(cli, ["analyze", "config.yaml"]).exit_code == 0  # readout: no value
    # Maximising churn reduction needs no value, but a discount's cost still does.
    mapping["policy"] = {"objective": "churn_reduction"}
    path.write_text(yaml.safe_dump(mapping))
    result = CliRunner().invoke(cli, ["validate", "config.yaml"])
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: config.yaml: arms[0].cost.revenue_share:")
    mapping["arms"][0]["cost"] = {"fixed": 3.0}
    path.write_text(yaml.safe_dump(mapping))
    result = CliRunner().invoke(cli, ["validate", "config.yaml"])
    assert result.exit_code == 0, result.output
    # Such a run says nothing of a net value, which would only be minus the cost.
    result = CliRunner().invoke(cli, ["run", "config.yaml"])
    assert result.exit_code == 0, result.output
    assert "(no data.value: no net value)" in result.output
    client = open_client(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    version = client.search_model_versions("name = 'pipeline-model'")[0]
    assert "policy_churn_reduction" in version.tags
    assert "policy_net_value_per_customer" not in version.tags
    assert "net value" not in version.description.replace("no net value", "")
    reduction = client.get_run(version.run_id).data.metrics["policy_churn_reduction"]
    assert version.description.startswith(f"Churn reduction {100 * reduction:+.2f} pp. ")
    run = client.get_run(version.run_id)
    children = client.search_runs([run.info.experiment_id],
                                  f"tags.mlflow.parentRunId = '{run.info.run_id}'")
    assert children
    for child in children:
        assert "net value" not in child.data.tags["mlflow.note.content"]
    # (the revenue column is only a feature here: the config names no value column)
    customers = simulate_customers(2000, 9).customers.drop(columns=["arm", "churned"])
    customers.to_csv(tmp_path / "to_score.csv", index=False)
    # Scoring, comparing and promoting need the config, not the table it trained on.
    (tmp_path / "train.csv").rename(tmp_path / "archived.csv")
    result = CliRunner().invoke(cli, ["export", "--customers", "to_score.csv", "--out",
                                      "recs.csv", "--model", "models:/pipeline-model@candidate"])
    assert result.exit_code == 0, result.output
    assert "(no data.value: no net value)" in result.output
    manifest = json.loads((tmp_path / "recs.csv.manifest.json").read_text())
    assert manifest["value_column"] is None
    assert manifest["rows"] == 2000
    result = CliRunner().invoke(cli, ["export", "--customers", "to_score.csv", "--out",
                                      "again.csv", "--config", "config.yaml",
                                      "--model", "models:/pipeline-model@candidate"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "again.csv").read_bytes() == (tmp_path / "recs.csv").read_bytes()
    assert CliRunner().invoke(cli, ["validate", "config.yaml"]).exit_code == 2  # it reads it
    result = CliRunner().invoke(cli, ["compare", "--config", "config.yaml", "--format", "json"])
    assert result.exit_code == 0, result.output
    (period,) = json.loads(result.output)
    assert period["policy_net_value_per_customer"] is None
    assert period["policy_net_value_per_customer_ci_low"] is None
    assert period["policy_net_value_per_customer_ci_high"] is None
    assert period["recommended_policy"] == run.data.tags["recommended_policy"]
    assert period["policy_churn_reduction"] == pytest.approx(
        run.data.metrics["policy_churn_reduction"])


def run_status(tmp_path: Path) -> tuple[list[str], list]:
    client = open_client(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    experiment = client.get_experiment_by_name("pipeline-test")
    runs = client.search_runs([experiment.experiment_id]) if experiment else []
    return [r.info.status for r in runs], client.search_registered_models()


@pytest.mark.parametrize(("error", "code", "status"), [
    (RuntimeError("boom"), 1, "FAILED"),
    (KeyboardInterrupt(), 130, "KILLED"),
])
def test_failure_while_fitting_ends_the_run_and_registers_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: BaseException, code: int,
    status: str
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    write_config(tmp_path)

    def fail(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr("uplift.pipeline.train_models", fail)
    result = CliRunner().invoke(cli, ["run", "config.yaml"])
    assert result.exit_code == code, result.output
    statuses, models = run_status(tmp_path)
    assert statuses == [status]
    assert models == []


@pytest.mark.parametrize("fork", [True, False])
def test_a_report_that_fails_ends_the_run_failed_and_registers_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fork: bool) -> None:
    """Drawn in a child process beside the logging or here, its error fails the run."""
    from uplift import background

    if fork and not background.can_fork():
        pytest.skip("needs fork and two cores")
    monkeypatch.setattr(background, "can_fork", lambda: fork)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    write_config(tmp_path)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the plot could not be drawn")

    monkeypatch.setattr("uplift.report.write_report", broken)
    result = CliRunner().invoke(cli, ["run", "config.yaml"])
    assert result.exit_code == 1, result.output
    assert "the plot could not be drawn" in result.output
    statuses, models = run_status(tmp_path)
    assert statuses.count("FAILED") == 1  # the run; its candidates' child runs finished
    assert set(statuses) <= {"FAILED", "FINISHED"}
    assert models == []
    assert not (tmp_path / "reports").exists()


def test_a_child_run_caught_half_logged_by_an_interruption_ends_with_its_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second Ctrl-C (or SIGTERM) can land before a candidate's run is ended; none stays
    RUNNING."""
    from mlflow import MlflowClient

    from uplift.tracking import RunRecorder

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    write_config(tmp_path)

    def interrupted(self: RunRecorder, name: str, **kwargs: object) -> None:
        MlflowClient(self.uri).create_run(self.experiment_id, run_name=name,
                                          tags={"mlflow.parentRunId": self.run_id})
        raise KeyboardInterrupt

    monkeypatch.setattr(RunRecorder, "log_child", interrupted)
    result = CliRunner().invoke(cli, ["run", "config.yaml"])
    assert result.exit_code == 130, result.output
    statuses, models = run_status(tmp_path)
    assert sorted(statuses) == ["KILLED", "KILLED"]
    assert models == []


def start_run_process(tmp_path: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "uplift", "run", "config.yaml", *extra],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={k: v for k, v in os.environ.items()
                                 if k != "MLFLOW_TRACKING_URI"})


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_fitting_leaves_no_running_run(tmp_path: Path, sig: int) -> None:
    write_config(tmp_path, data={"simulate": {"customers": 30000, "seed": 8},
                                 "value": "monthly_revenue"},
                 model={"learners": ["s", "x", "uplift_forest"], "seed": 2})
    proc = start_run_process(tmp_path)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if (tmp_path / "mlruns" / "mlflow.db").exists():
                statuses, _ = run_status(tmp_path)
                if statuses == ["RUNNING"]:
                    break
            time.sleep(0.5)
        assert proc.poll() is None, "the run ended before it could be interrupted"
        time.sleep(1.0)  # inside fitting
        proc.send_signal(sig)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    statuses, models = run_status(tmp_path)
    assert statuses in (["KILLED"], ["FAILED"])
    assert models == []


@pytest.mark.slow
def test_two_concurrent_runs_both_finish_with_distinct_versions(tmp_path: Path) -> None:
    write_config(tmp_path)
    first = start_run_process(tmp_path)
    second = start_run_process(tmp_path, "--period", "2026-11")
    outputs = [p.communicate(timeout=600) for p in (first, second)]
    assert [p.returncode for p in (first, second)] == [0, 0], outputs
    client = open_client(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    experiment = client.get_experiment_by_name("pipeline-test")
    runs = client.search_runs([experiment.experiment_id],
                              filter_string="tags.period != ''")
    parents = [r for r in runs if not r.data.tags.get("mlflow.parentRunId")]
    assert sorted(r.info.status for r in parents) == ["FINISHED", "FINISHED"]
    versions = client.search_model_versions("name = 'pipeline-model'")
    assert sorted(int(v.version) for v in versions) == [1, 2]
    assert {v.run_id for v in versions} == {r.info.run_id for r in parents}


def report_folders(tmp_path: Path) -> tuple[Path, Path]:
    """A new report folder and the previous one at its place under reports/."""
    new = tmp_path / "new"
    new.mkdir()
    (new / "report.html").write_text("new")
    target = tmp_path / "reports" / "2026-10"
    target.mkdir(parents=True)
    (target / "report.html").write_text("old")
    return new, target


def test_the_report_folder_is_replaced_whole(tmp_path: Path) -> None:
    from uplift.pipeline import replace_folder

    new, target = report_folders(tmp_path)
    (target / "stale.png").write_text("old plot")
    assert replace_folder(new, target) == target
    assert sorted(p.name for p in target.iterdir()) == ["report.html"]
    assert (target / "report.html").read_text() == "new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["2026-10"]  # nothing aside


def test_a_failed_copy_leaves_the_previous_report(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from uplift import pipeline

    new, target = report_folders(tmp_path)

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(shutil, "copytree", broken)
    with pytest.raises(OSError, match="disk full"):
        pipeline.replace_folder(new, target)
    assert (target / "report.html").read_text() == "old"
    assert sorted(p.name for p in target.parent.iterdir()) == ["2026-10"]


def test_a_notebook_run_can_keep_the_report_elsewhere_or_only_in_mlflow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from uplift.errors import ArgumentError
    from uplift.pipeline import run_experiment

    monkeypatch.chdir(tmp_path)
    config = write_config(tmp_path, data={"simulate": {"customers": 3000, "seed": 8},
                                          "value": "monthly_revenue"},
                          model={"learners": ["s"], "ensemble": False,
                                 "params": small_params("s")})
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    # A report folder that cannot be made is refused before the store or any fitting.
    (tmp_path / "blocked").write_text("a file where the folder would go")
    with pytest.raises(ArgumentError, match=r"reports: cannot keep the report in .*blocked"
                                            r"/2026-10: .*blocked is a file, not a folder"):
        run_experiment(config, tracking_uri=uri, reports=tmp_path / "blocked")
    # Nor can an earlier period's folder be replaced where its parent is read-only.
    (tmp_path / "kept" / "2026-10").mkdir(parents=True)
    real_access = os.access
    monkeypatch.setattr("uplift.pipeline.os.access", lambda path, mode: (
        Path(path) != tmp_path / "kept" and real_access(path, mode)))
    with pytest.raises(ArgumentError, match=r"cannot keep the report in .*kept/2026-10: "
                                            r".*kept is not writable"):
        run_experiment(config, tracking_uri=uri, reports=tmp_path / "kept")
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert not (tmp_path / "store.db").exists()
    result = run_experiment(config, tracking_uri=uri, reports=tmp_path / "elsewhere")
    # The store given to one run is not left behind for the notebook's next one.
    import mlflow

    assert "MLFLOW_TRACKING_URI" not in os.environ
    assert mlflow.get_tracking_uri() != uri
    assert result.report_path == tmp_path / "elsewhere" / "2026-10" / "report.html"
    assert result.report_path.is_file()
    again = run_experiment(config, tracking_uri=uri, period="2026-11", reports=None)
    assert str(again.report_path) == f"runs:/{again.run_id}/report/report.html"
    assert not (tmp_path / "reports").exists()
    adjusted = again.rct.adjusted
    assert adjusted is not None
    assert {k: again.metrics[k] for k in adjusted.metrics()} == adjusted.metrics()
    client = open_client(uri)
    logged = client.get_run(again.run_id).data.metrics
    assert logged["ate_webinar_cuped"] == pytest.approx(again.metrics["ate_webinar_cuped"])


def test_an_unproven_policy_is_replaced_by_nobody_and_the_run_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write_config(tmp_path, data={"simulate": {"customers": 3000, "seed": 8},
                                 "value": "monthly_revenue"},
                 model={"learners": ["s"], "ensemble": False, "params": small_params("s")},
                 policy={"require_ci_above_zero": True})
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    result = CliRunner().invoke(cli, ["run", "config.yaml", "--tracking-uri", uri])
    assert result.exit_code == 0, (result.output, result.exception)
    said = [line for line in result.stdout.splitlines()
            if line.startswith("Recommended policy: nobody (the policy this run would "
                               "otherwise recommend has an estimated net value of ")]
    assert len(said) == 1
    assert "an interval that does not lie above zero; the export applies it)" in said[0]
    client = open_client(uri)
    run = client.get_run(result.stdout.strip().splitlines()[-1].removeprefix("run_id: "))
    assert run.data.tags["recommended_policy"] == "nobody"
    assert run.data.tags["recommended_because"] == "unproven"
    assert run.data.metrics["policy_net_value_per_customer"] == 0.0
    assert run.data.metrics["policy_churn_reduction"] == 0.0
    version = client.get_model_version("pipeline-model", "1")
    assert version.tags["recommended_policy"] == "nobody"
    assert "; recommends nobody instead (the policy this run would" in version.description
    assert version.description.startswith("Net value 0.00 per customer: offers to nobody. ")


def test_the_outcome_lines_set_the_policy_against_the_best_simple_one_when_compared() -> None:
    from uplift.pipeline import outcome_lines

    metrics = {"policy_churn_rate": 0.24, "policy_churn_reduction": 0.055,
               "policy_churn_reduction_ci_low": 0.046, "policy_churn_reduction_ci_high": 0.064,
               "policy_net_value_per_customer": 40.9,
               "policy_net_value_per_customer_ci_low": 15.1,
               "policy_net_value_per_customer_ci_high": 66.8,
               "baseline_churn_rate": 0.31, "churn_reduction_vs_baseline": 0.07}
    plain = outcome_lines(metrics, "baseline.churn_rate", "webinar for everyone")
    assert len(plain) == 2  # nothing to compare with: a simple policy was recommended
    versus = {"policy_net_value_per_customer_vs_simple": -0.5,
              "policy_net_value_per_customer_vs_simple_ci_low": -2.03,
              "policy_net_value_per_customer_vs_simple_ci_high": 1.01,
              "policy_churn_reduction_vs_simple": 0.0385,
              "policy_churn_reduction_vs_simple_ci_low": 0.0293,
              "policy_churn_reduction_vs_simple_ci_high": 0.0477}
    lines = outcome_lines({**metrics, **versus}, "baseline.churn_rate", "webinar for everyone")
    assert lines[0] == plain[0]
    assert lines[2] == plain[1]
    assert lines[1] == ("Against webinar for everyone (the best policy that needs no model), "
                        "same customers: reduction +3.85 pp [+2.93 pp, +4.77 pp], net value "
                        "-0.50 [-2.03, +1.01] per customer")
    assert outcome_lines({**metrics, **versus}, "baseline.churn_rate") == plain  # no label
    # Without customer values the net value is minus the cost: the lines say the cost.
    costs = {"policy_cost_per_customer": 1.72, "policy_cost_per_customer_ci_low": 1.66,
             "policy_cost_per_customer_ci_high": 1.77}
    unvalued = outcome_lines({**metrics, **versus, **costs}, "baseline.churn_rate",
                             "webinar for everyone", valued=False)
    assert unvalued[0] == ("Recommended policy (held-out estimate): churn 24.00%, reduction "
                           "+5.50 pp [+4.60 pp, +6.40 pp], cost 1.72 [1.66, 1.77] per customer "
                           "(no data.value: no net value)")
    assert unvalued[1] == ("Against webinar for everyone (the best policy that needs no "
                           "model), same customers: reduction +3.85 pp [+2.93 pp, +4.77 pp]")
    assert unvalued[2] == plain[1]


def test_a_policy_estimated_below_offering_nobody_gets_a_caution_wherever_it_is_reported(
        simulated_run: SimulatedRun) -> None:
    from dataclasses import replace

    from uplift.offpolicy import Estimate
    from uplift.pipeline import RunResult, _version_description, outcome_lines
    from uplift.report import _policy_section

    training = simulated_run.training
    est = training.policy_estimate
    losing = replace(training, objective="net_value", policy_estimate=replace(
        est, net_value_per_customer=Estimate(-8.46, -36.37, 19.44, 14.2),
        churn_reduction=Estimate(0.012, 0.004, 0.020, 0.004)))
    assert losing.caution == (
        "Caution: the recommended policy's estimated net value (-8.46) is below offering "
        "nobody anything; with policy.require_ci_above_zero: true the run recommends nobody "
        "unless the estimate's interval lies above zero")
    # Only the objective's own figure counts: the churn reduction above is positive.
    assert replace(losing, objective="churn_reduction").caution == ""
    churn = replace(losing, objective="churn_reduction", policy_estimate=replace(
        losing.policy_estimate, churn_reduction=Estimate(-0.0011, -0.0026, 0.0004, 0.0008)))
    assert churn.caution.startswith(
        "Caution: the recommended policy's estimated churn reduction (-0.11 pp) is below")
    for zero in (0.0, 0.5):  # nobody's estimate is exactly zero; no caution at or above it
        assert replace(losing, policy_estimate=replace(
            est, net_value_per_customer=Estimate(zero, -1.0, 1.0, 0.5))).caution == ""

    metrics = {**losing.policy_estimate.metrics(), "n_customers": 1000,
               "churn_rate_observed": 0.3}
    lines = outcome_lines(metrics, "", caution=losing.caution)
    assert lines[1] == losing.caution  # before the baseline line
    assert len(lines) == 3
    assert len(outcome_lines(metrics, "")) == 2
    result = RunResult(run_id="r", experiment_id="1", tracking_uri="sqlite:///x.db",
                       period="2026-10", selected_learner="s", model_name="m",
                       model_version="1", report_path=Path("report.html"), baseline_source="",
                       metrics=metrics, caution=losing.caution)
    assert losing.caution in result.summary_lines()
    # Where the version to promote is picked: the model version's description.
    version = _version_description(simulated_run.cfg, losing, metrics, simulated_run.dataset)
    assert version.startswith(f"Net value -8.46 per customer. Period 2026-10, "
                              f"{losing.chosen.display_name}")
    assert f" per customer. {losing.caution}. Trained on " in version
    assert "Caution" not in _version_description(simulated_run.cfg, replace(
        losing, objective="churn_reduction"), metrics, simulated_run.dataset)
    def texts(result: object) -> list[str]:
        return [getattr(block, "text", "") for block in _policy_section(result).blocks]

    assert losing.caution + "." in texts(losing)
    winning = replace(losing, policy_estimate=replace(
        est, net_value_per_customer=Estimate(0.5, -1.0, 2.0, 0.7)))
    assert not any(t.startswith("Caution") for t in texts(winning))


def test_a_policy_estimated_below_the_best_simple_one_gets_a_caution(
        simulated_run: SimulatedRun) -> None:
    """Kept because the simple policy's lead is not clear, but the analyst is told."""
    from dataclasses import replace

    from uplift.offpolicy import Estimate
    from uplift.pipeline import outcome_lines
    from uplift.report import _policy_section

    training = simulated_run.training
    est = training.policy_estimate
    ahead = replace(training, objective="net_value", simple="everyone:webinar",
                    simple_picks=("everyone:webinar",) * 3,
                    policy_estimate=replace(est, net_value_per_customer=Estimate(
                        18.94, 15.93, 21.95, 1.5)),
                    versus_simple={"net_value": Estimate(0.3, -1.2, 1.8, 0.75),
                                   "churn_reduction": Estimate(-0.001, -0.004, 0.002, 0.0015)})
    assert ahead.caution == ""  # only the objective's own difference counts
    behind = replace(ahead, versus_simple={**ahead.versus_simple,
                                           "net_value": Estimate(-0.85, -2.32, 0.62, 0.75)})
    assert behind.caution == (
        "Caution: the recommended policy's estimated net value is below that of webinar for "
        "everyone on the same customers (difference -0.85 [-2.32, +0.62] per customer); a "
        "policy that needs no model replaces a model's only when it leads by 2 standard "
        "errors and in every fold, which it does not here")
    assert replace(behind, objective="churn_reduction").caution.startswith(
        "Caution: the recommended policy's estimated churn reduction is below that of webinar "
        "for everyone on the same customers (difference -0.10 pp [-0.40 pp, +0.20 pp]); ")
    # Below offering nobody is the graver news, and the one given.
    below_zero = replace(behind, policy_estimate=replace(
        est, net_value_per_customer=Estimate(-2.0, -9.0, 5.0, 3.5)))
    assert "below offering nobody anything" in below_zero.caution
    metrics = {**behind.policy_estimate.metrics(), **behind.versus_metrics(),
               "n_customers": 1000, "churn_rate_observed": 0.3}
    lines = outcome_lines(metrics, "", behind.simple_label, behind.caution)
    assert lines[1].startswith("Against webinar for everyone")
    assert lines[2] == behind.caution
    assert behind.caution + "." in [getattr(b, "text", "") for b in _policy_section(behind).blocks]


def test_run_puts_back_the_callers_sigterm_handler_and_runs_outside_the_main_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A notebook or a test process keeps its own SIGTERM handler after a run, and a
    run started from a worker thread (where no handler can be set) still runs."""
    monkeypatch.chdir(tmp_path)
    write_config(tmp_path, data={"path": "missing.csv", "value": "monthly_revenue"})

    def mine(signum: int, frame: object) -> None:
        raise AssertionError("not called")

    previous = signal.signal(signal.SIGTERM, mine)
    try:
        result = CliRunner().invoke(cli, ["run", "config.yaml"])
        assert result.exit_code == 2, result.output
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, previous)
    outputs: list[tuple[int, str]] = []

    def invoke() -> None:
        done = CliRunner().invoke(cli, ["run", "config.yaml"])
        outputs.append((done.exit_code, done.output))

    worker = threading.Thread(target=invoke)
    worker.start()
    worker.join()
    assert [code for code, _ in outputs] == [2], outputs
    assert "missing.csv" in outputs[0][1]
