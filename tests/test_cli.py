"""The command line edge: exit codes, one-line errors that name the culprit, nothing written."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner
from conftest import base_config, make_table, set_key
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest

from uplift.adjustment import adjusted_metric_names
from uplift.cli import cli
from uplift.design import solve_sample_size

Setup = Callable[[Path], list[str]]


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in folder.rglob("*")
    }


def with_config(
    *changes: tuple[str, object],
    table: Callable[[pd.DataFrame], pd.DataFrame] = lambda t: t,
    command: str = "analyze",
    data_name: str = "customers.csv",
    extra: tuple[str, ...] = (),
) -> Setup:
    """A setup writing a (changed) table and config, returning the CLI args."""

    def setup(tmp: Path) -> list[str]:
        frame = table(make_table(600, seed=3))
        if data_name.endswith(".parquet"):
            frame.to_parquet(tmp / data_name, index=False)
        else:
            frame.to_csv(tmp / data_name, index=False)
        mapping = base_config(data_name)
        for key, value in changes:
            mapping = set_key(mapping, key, value)
        (tmp / "config.yaml").write_text(yaml.safe_dump(mapping, sort_keys=False))
        return [command, "config.yaml", *extra]

    return setup


def raw_config(text: str) -> Setup:
    def setup(tmp: Path) -> list[str]:
        (tmp / "config.yaml").write_text(text)
        return ["analyze", "config.yaml"]

    return setup


def args_only(*args: str) -> Setup:
    return lambda tmp: list(args)


def corrupt_parquet(tmp: Path) -> list[str]:
    with_config(("data.path", "customers.parquet"), data_name="customers.parquet")(tmp)
    (tmp / "customers.parquet").write_bytes(b"PAR1 truncated")
    return ["analyze", "config.yaml"]


BAD_INPUTS: list[tuple[str, Setup, list[str]]] = [
    # config keys and values
    (
        "unknown-key",
        with_config(("policy.budgt", 5)),
        ["config.yaml: policy.budgt: unknown key (did you mean 'budget'?)"],
    ),
    (
        "bad-correction",
        with_config(("analysis.correction", "hlm")),
        ["config.yaml: analysis.correction:", "'hlm'"],
    ),
    ("bad-period", with_config(("period", "2026-13")), ["config.yaml: period:", "YYYY-MM"]),
    (
        "alpha-out-of-range",
        with_config(("analysis.alpha", 1.5)),
        ["config.yaml: analysis.alpha: must be < 1"],
    ),
    (
        "negative-cost",
        with_config(("arms.2.cost.fixed", -2)),
        ["config.yaml: arms[2].cost.fixed: must be >= 0"],
    ),
    (
        "duplicate-arm",
        with_config(("arms.1.name", "discount_20"), ("allocation", None)),
        ["config.yaml: arms[1].name:", "more than one arm"],
    ),
    (
        "arm-named-control",
        with_config(("arms.0.name", "control"), ("allocation", None)),
        ["config.yaml: arms[0].name:", "control"],
    ),
    (
        "allocation-unknown",
        with_config(("allocation.webinr", 0.1)),
        ["config.yaml: allocation.webinr:", "did you mean 'webinar'"],
    ),
    (
        "allocation-sum",
        with_config(("allocation.webinar", 0.3)),
        ["config.yaml: allocation:", "sum to 1"],
    ),
    (
        "capacity-unknown",
        with_config(("policy.capacity", {"webnar": 10})),
        ["config.yaml: policy.capacity.webnar:"],
    ),
    (
        "unknown-learner",
        with_config(("model.learners", ["t", "causal_forest"])),
        ["config.yaml: model.learners[1]:"],
    ),
    (
        "filter-operator",
        with_config(("arms.1.eligible", {"plan": {"exclude": ["premium"]}})),
        ["config.yaml: arms[1].eligible.plan.exclude: unknown key"],
    ),
    (
        "share-without-months",
        with_config(("arms.0.cost", {"revenue_share": 0.2})),
        ["config.yaml: arms[0].cost:", "months"],
    ),
    (
        "data-path-missing",
        with_config(("data.path", "gone.csv")),
        ["config.yaml: data.path: file not found: gone.csv"],
    ),
    (
        "data-path-extension",
        with_config(("data.path", "customers.xlsx")),
        ["config.yaml: data.path:", "customers.xlsx"],
    ),
    (
        "path-and-simulate",
        with_config(("data.simulate", {"customers": 500})),
        ["config.yaml: data:", "exactly one"],
    ),
    ("config-missing", args_only("analyze", "nope.yaml"), ["nope.yaml: file not found"]),
    (
        "config-yaml-syntax",
        raw_config("name: [oops\narms: 1\n"),
        ["config.yaml: line", "invalid YAML"],
    ),
    ("config-not-mapping", raw_config("- a\n- b\n"), ["config.yaml:", "mapping"]),
    # data files and columns
    (
        "no-treatment-column",
        with_config(table=lambda t: t.drop(columns="arm")),
        ["customers.csv: column 'arm': not found"],
    ),
    (
        "outcome-renamed",
        with_config(table=lambda t: t.rename(columns={"churned": "Churn"})),
        ["customers.csv: column 'churned': not found"],
    ),
    (
        "bad-outcome-value",
        with_config(
            table=lambda t: t.assign(churned=t["churned"].astype(str).where(t.index != 4, "maybe"))
        ),
        ["customers.csv: column 'churned': value 'maybe'", "row 5"],
    ),
    (
        "unknown-arm-value",
        with_config(table=lambda t: t.assign(arm=t["arm"].where(t.index != 2, "discout_20"))),
        ["customers.csv: column 'arm': value 'discout_20'", "did you mean 'discount_20'"],
    ),
    (
        "duplicate-id",
        with_config(
            table=lambda t: t.assign(customer_id=t["customer_id"].where(t.index != 9, "C000000"))
        ),
        ["customers.csv: column 'customer_id': duplicate id 'C000000'"],
    ),
    (
        "arm-absent",
        with_config(table=lambda t: t[t["arm"] != "free_upgrade"]),
        ["customers.csv: column 'arm': group 'free_upgrade' has no rows"],
    ),
    (
        "arm-one-outcome",
        with_config(table=lambda t: t.assign(churned=t["churned"].where(t["arm"] != "webinar", 1))),
        ["customers.csv: column 'churned': group 'webinar' has no retained customers"],
    ),
    (
        "negative-value",
        with_config(table=lambda t: t.assign(monthly_revenue=-t["monthly_revenue"])),
        ["customers.csv: column 'monthly_revenue': negative value"],
    ),
    (
        "text-value",
        with_config(table=lambda t: t.assign(monthly_revenue="lots")),
        ["customers.csv: column 'monthly_revenue': must be numeric"],
    ),
    (
        "feature-missing",
        with_config(("data.features", ["plan", "seats"])),
        ["customers.csv: column 'seats': not found (data.features[1])"],
    ),
    (
        "eligible-column-missing",
        with_config(("arms.1.eligible", {"contract": {"in": ["monthly"]}})),
        ["customers.csv: column 'contract': not found (arms[free_upgrade].eligible)"],
    ),
    (
        "empty-table",
        with_config(table=lambda t: t.iloc[:0]),
        ["customers.csv: the table has no rows"],
    ),
    ("corrupt-parquet", corrupt_parquet, ["customers.parquet: cannot read the table"]),
    (
        "srm-fail",
        with_config(
            ("analysis.on_srm", "fail"),
            (
                "allocation",
                {"control": 0.7, "discount_20": 0.1, "free_upgrade": 0.1, "webinar": 0.1},
            ),
        ),
        ["customers.csv: column 'arm': sample ratio mismatch"],
    ),
    (
        "design-data-broken",
        with_config(table=lambda t: t.drop(columns="churned"), command="design"),
        ["customers.csv: column 'churned': not found"],
    ),
    # arguments
    (
        "simulate-customers-zero",
        args_only("simulate", "--customers", "0", "--seed", "1", "--out", "c.csv"),
        ["--customers: must be at least 1"],
    ),
    (
        "simulate-customers-text",
        args_only("simulate", "--customers", "many", "--out", "c.csv"),
        ["'--customers'"],
    ),
    (
        "simulate-out-extension",
        args_only("simulate", "--customers", "10", "--out", "c.txt"),
        ["--out:", "c.txt"],
    ),
    (
        "simulate-period",
        args_only("simulate", "--customers", "10", "--out", "c.csv", "--period", "2026-13"),
        ["--period:", "YYYY-MM"],
    ),
    (
        "simulate-truth-is-out",
        args_only("simulate", "--customers", "10", "--out", "c.csv", "--truth", "c.csv"),
        ["--truth:"],
    ),
    ("simulate-missing-out", args_only("simulate", "--customers", "10"), ["'--out'"]),
    ("analyze-format", with_config(extra=("--format", "xml")), ["'--format'", "xml"]),
    ("design-n", with_config(command="design", extra=("--n", "1")), ["--n: must be at least 2"]),
    (
        "design-churn-rate",
        with_config(command="design", extra=("--churn-rate", "1.5")),
        ["--churn-rate:"],
    ),
    (
        "design-mde-too-large",
        with_config(("analysis.mde", 0.5), command="design", extra=("--churn-rate", "0.3")),
        ["config.yaml: analysis.mde:"],
    ),
    (
        "cuped-covariate-not-a-column",
        with_config(("analysis.cuped", {"covariates": ["nps", "tenure_month"]})),
        ["customers.csv: column 'tenure_month': not found (analysis.cuped.covariates[1])",
         "did you mean 'tenure_months'"],
    ),
    (
        "cuped-exclude-outcome",
        with_config(("analysis.cuped", {"exclude": ["churned"]})),
        ["config.yaml: analysis.cuped.exclude[0]: 'churned' is the outcome column"],
    ),
    (
        "cuped-method",
        with_config(("analysis.cuped", {"method": "cubic"})),
        ["config.yaml: analysis.cuped.method: must be one of 'linear' or 'model', got 'cubic'"],
    ),
    (
        "design-variance-reduction",
        with_config(command="design", extra=("--variance-reduction", "1.2")),
        ["--variance-reduction: must be in [0, 1), got 1.2"],
    ),
    (
        "design-from-run-and-reduction",
        with_config(command="design", extra=("--from-run", "--variance-reduction", "0.2")),
        ["--from-run: give --variance-reduction or --from-run, not both"],
    ),
    (
        "design-from-run-no-store",
        with_config(command="design",
                    extra=("--from-run", "--tracking-uri", "sqlite:///nowhere.db")),
        ["--from-run: no MLflow store at sqlite:///", "nowhere.db"],
    ),
    (
        "learner-setting-misspelt",
        with_config(("model.params", {"gam": {"CC": 0.1}}), command="run"),
        ["config.yaml: model.params.gam.CC: not a setting of 'gam' (did you mean 'C'?)"],
    ),
    (
        "lightgbm-setting-misspelt",
        with_config(("model.params", {"s": {"n_estimatorz": 50}}), command="validate"),
        ["config.yaml: model.params.s.n_estimatorz: not a setting of 's'",
         "(did you mean 'n_estimators'?)"],
    ),
    (
        "lightgbm-thread-alias",
        with_config(("model.params", {"s": {"num_threads": 8}}), command="validate"),
        ["config.yaml: model.params.s.num_threads: set by the toolkit"],
    ),
    (
        "learner-seed-in-params",
        with_config(("model.params", {"churn_risk": {"random_state": 3}}), command="run"),
        ["config.yaml: model.params.churn_risk.random_state: set by the toolkit"],
    ),
    (
        "tracking-uri-scheme",
        args_only("compare", "--experiment", "demo", "--tracking-uri", "foo://bar"),
        ["--tracking-uri: MLflow cannot keep runs at 'foo://bar': unknown scheme 'foo'"],
    ),
    (
        "config-tracking-uri-scheme",
        with_config(("tracking.uri", "s3://bucket/runs"), command="run"),
        ["config.yaml: tracking.uri: MLflow cannot keep runs at 's3://bucket/runs'"],
    ),
    (
        "yaml-no-read-as-false",
        with_config(("control", False), command="validate"),
        ["config.yaml: control: must be a non-empty text value, got False", "quote it"],
    ),
    ("unknown-option", with_config(extra=("--colour",)), ["--colour"]),
    ("unknown-command", args_only("analyse", "config.yaml"), ["analyse"]),
]


@pytest.mark.parametrize(
    ("setup", "fragments"), [pytest.param(s, f, id=i) for i, s, f in BAD_INPUTS]
)
def test_bad_input_exits_2_with_one_named_line_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setup: Setup, fragments: list[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    args = setup(tmp_path)
    before = snapshot(tmp_path)
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, (result.output, result.exception)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert "Traceback" not in result.output
    assert snapshot(tmp_path) == before


def test_there_are_at_least_30_distinct_bad_inputs() -> None:
    assert len({name for name, _, _ in BAD_INPUTS}) >= 30


def test_validate_lists_every_problem_of_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    table = make_table(600, seed=3)
    table.loc[4, "churned"] = 7
    table.loc[2, "arm"] = "discout_20"
    table.loc[9, "customer_id"] = "C000000"
    table.loc[1, "monthly_revenue"] = -1
    table.to_csv("customers.csv", index=False)
    Path("config.yaml").write_text(yaml.safe_dump(base_config()))
    result = CliRunner().invoke(cli, ["validate", "config.yaml"])
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 4
    assert all(line.startswith("Error: customers.csv: column ") for line in lines)
    for column in ("'churned'", "'arm'", "'customer_id'", "'monthly_revenue'"):
        assert any(column in line for line in lines)


def test_validate_lists_every_config_problem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    mapping = set_key(set_key(base_config(), "policy.budgt", 1), "analysis.alpha", 3)
    mapping = set_key(mapping, "model.base", "catboost")
    Path("config.yaml").write_text(yaml.safe_dump(mapping))
    make_table(100).to_csv("customers.csv", index=False)
    result = CliRunner().invoke(cli, ["validate", "config.yaml"])
    assert result.exit_code == 2
    assert len(result.stderr.splitlines()) == 3


def test_validate_clean(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project.parent)
    result = CliRunner().invoke(cli, ["validate", "config.yaml"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("OK: config.yaml: 2,000 customers")
    assert result.stderr == ""


def test_validate_names_the_features_it_chose(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    table = make_table(400)
    extra = [f"score_{i:02d}" for i in range(12)]
    table = table.assign(**{name: np.arange(len(table)) % (i + 2) for i, name in enumerate(extra)})
    table.to_csv("customers.csv", index=False)
    Path("config.yaml").write_text(yaml.safe_dump(base_config()))
    auto = CliRunner().invoke(cli, ["validate", "config.yaml"])
    assert auto.exit_code == 0, auto.output
    # 4 columns of the table plus 12 more: the first 12 by name, then a count.
    assert "; 16 features (auto: tenure_months, plan, nps, monthly_revenue, score_00" in auto.stdout
    assert "score_07 and 4 more)" in auto.stdout
    assert "score_08" not in auto.stdout

    listed = set_key(base_config(), "data.features", ["tenure_months", "plan"])
    Path("config.yaml").write_text(yaml.safe_dump(listed))
    chosen = CliRunner().invoke(cli, ["validate", "config.yaml"])
    assert chosen.exit_code == 0, chosen.output
    assert chosen.stdout.rstrip().endswith("; 2 features")


def test_verbose_shows_the_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with_config(("policy.budgt", 5))(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "uplift", "analyze", "config.yaml", "--verbose"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "Traceback" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("Error: config.yaml: policy.budgt")


def test_real_entry_point_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with_config(table=lambda t: t.drop(columns="arm"))(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "uplift", "analyze", "config.yaml"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr == (
        "Error: customers.csv: column 'arm': not found (data.treatment): the table must come "
        "from a randomized test, with the group each customer was assigned to (control or an "
        "offer) in a column that data.treatment names\n")
    assert proc.stdout == ""


def test_internal_error_exits_1(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project.parent)

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("kaput")

    monkeypatch.setattr("uplift.analysis.analyze_dataset", boom)
    result = CliRunner().invoke(cli, ["analyze", "config.yaml"])
    assert result.exit_code == 1
    assert result.stderr.strip() == ("Internal error: RuntimeError: kaput (rerun with --verbose)")


# --------------------------------------------------------------------------- readout numbers


def independent_readout(
    frame: pd.DataFrame,
    arms: list[str],
    alpha: float,
    method: str,
    allocation: dict[str, float] | None,
) -> dict[str, float]:
    """The readout computed straight from statsmodels / scipy on the rows."""
    churn = frame["churned"].to_numpy()
    group = frame["arm"].to_numpy()
    c = group == "control"
    out = {
        "n_customers": float(len(frame)),
        "n_control": float(c.sum()),
        "churn_rate_control": churn[c].mean(),
        "churn_rate_observed": churn.mean(),
    }
    pvalues = []
    for arm in arms:
        a = group == arm
        out[f"n_{arm}"] = float(a.sum())
        out[f"churn_rate_{arm}"] = churn[a].mean()
        out[f"ate_{arm}"] = churn[c].mean() - churn[a].mean()
        low, high = confint_proportions_2indep(
            churn[c].sum(),
            c.sum(),
            churn[a].sum(),
            a.sum(),
            method="newcomb",
            compare="diff",
            alpha=alpha,
        )
        out[f"ate_{arm}_ci_low"], out[f"ate_{arm}_ci_high"] = low, high
        _, p = proportions_ztest([churn[c].sum(), churn[a].sum()], [c.sum(), a.sum()])
        out[f"ate_{arm}_pvalue"] = p
        pvalues.append(p)
    adjusted = pvalues if method == "none" else multipletests(pvalues, alpha, method)[1]
    for arm, p in zip(arms, adjusted, strict=True):
        out[f"ate_{arm}_pvalue_adj"] = p
    if allocation:
        counts = [out["n_control"]] + [out[f"n_{a}"] for a in arms]
        shares = [allocation["control"]] + [allocation[a] for a in arms]
        out["srm_pvalue"] = stats.chisquare(counts, np.array(shares) * len(frame)).pvalue
    return out


@pytest.mark.parametrize("correction", ["holm", "bonferroni", "fdr_bh", "none"])
def test_analyze_json_equals_statsmodels(
    project: Path, monkeypatch: pytest.MonkeyPatch, table: pd.DataFrame, correction: str
) -> None:
    monkeypatch.chdir(project.parent)
    mapping = set_key(base_config(), "analysis.correction", correction)
    mapping = set_key(mapping, "analysis.alpha", 0.1)
    project.write_text(yaml.safe_dump(mapping))
    result = CliRunner().invoke(cli, ["analyze", "config.yaml", "--format", "json"])
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    arms = ["discount_20", "free_upgrade", "webinar"]
    want = independent_readout(table, arms, 0.1, correction, mapping["allocation"])
    assert set(got) == set(want) | set(adjusted_metric_names(arms))
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=1e-9, rel=0), key


def test_analyze_json_on_simulated_data_equals_statsmodels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same check on the simulator's output, written and read back by the CLI."""
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    sim = runner.invoke(
        cli, ["simulate", "--customers", "20000", "--seed", "11", "--out", "sim.parquet"]
    )
    assert sim.exit_code == 0, sim.output
    mapping = set_key(base_config("sim.parquet"), "data.features", "auto")
    Path("config.yaml").write_text(yaml.safe_dump(mapping))
    result = runner.invoke(cli, ["analyze", "config.yaml", "--format", "json"])
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    frame = pd.read_parquet("sim.parquet")
    arms = ["discount_20", "free_upgrade", "webinar"]
    want = independent_readout(frame, arms, 0.05, "holm", mapping["allocation"])
    assert set(got) == set(want) | set(adjusted_metric_names(arms))
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=1e-9, rel=0), key


def test_analyze_closed_form_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Control 30/100 churned, one offer 20/100: every number by hand."""
    monkeypatch.chdir(tmp_path)
    rows = [("control", 1)] * 30 + [("control", 0)] * 70 + [("offer", 1)] * 20 + [("offer", 0)] * 80
    frame = pd.DataFrame(rows, columns=["arm", "churned"])
    frame.insert(0, "customer_id", range(len(frame)))
    frame.to_csv("t.csv", index=False)
    mapping = {
        "name": "t",
        "data": {"path": "t.csv"},
        "arms": [{"name": "offer"}],
        "allocation": {"control": 0.5, "offer": 0.5},
    }
    Path("config.yaml").write_text(yaml.safe_dump(mapping))
    result = CliRunner().invoke(cli, ["analyze", "config.yaml", "--format", "json"])
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    z = 0.1 / np.sqrt(0.25 * 0.75 * (2 / 100))
    assert got["ate_offer"] == pytest.approx(0.1, abs=1e-12)
    assert got["ate_offer_pvalue"] == pytest.approx(2 * stats.norm.sf(z), abs=1e-12)
    assert got["ate_offer_pvalue_adj"] == pytest.approx(2 * stats.norm.sf(z), abs=1e-12)
    assert got["srm_pvalue"] == pytest.approx(1.0, abs=1e-12)

    def wilson(x: int, n: int) -> tuple[float, float]:
        q = stats.norm.ppf(0.975)
        p = x / n
        centre = (p + q * q / (2 * n)) / (1 + q * q / n)
        half = q / (1 + q * q / n) * np.sqrt(p * (1 - p) / n + q * q / (4 * n * n))
        return centre - half, centre + half

    (l1, u1), (l2, u2) = wilson(30, 100), wilson(20, 100)
    low = 0.1 - np.sqrt((0.3 - l1) ** 2 + (u2 - 0.2) ** 2)
    high = 0.1 + np.sqrt((u1 - 0.3) ** 2 + (0.2 - l2) ** 2)
    assert got["ate_offer_ci_low"] == pytest.approx(low, abs=1e-9)
    assert got["ate_offer_ci_high"] == pytest.approx(high, abs=1e-9)


def test_analyze_table_and_markdown(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project.parent)
    runner = CliRunner()
    table = runner.invoke(cli, ["analyze", "config.yaml"])
    assert table.exit_code == 0, table.output
    for group in ("control", "discount_20", "free_upgrade", "webinar"):
        assert group in table.stdout
    markdown = runner.invoke(cli, ["analyze", "config.yaml", "--format", "markdown"])
    assert markdown.exit_code == 0
    assert markdown.stdout.count("\n|") >= 5


def test_srm_warns_by_default_on_one_line(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project.parent)
    skewed = {"control": 0.7, "discount_20": 0.1, "free_upgrade": 0.1, "webinar": 0.1}
    project.write_text(yaml.safe_dump(set_key(base_config(), "allocation", skewed)))
    result = CliRunner().invoke(cli, ["analyze", "config.yaml", "--format", "json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["srm_pvalue"] < 0.001
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("Warning: ")


# --------------------------------------------------------------------------- simulate, design


def test_simulate_is_byte_identical_per_seed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    digests = []
    for name in ("a", "b"):
        result = runner.invoke(
            cli,
            [
                "simulate",
                "--customers",
                "3000",
                "--seed",
                "5",
                "--out",
                f"{name}/c.csv",
                "--truth",
                f"{name}/t.parquet",
                "--period",
                "2026-10",
                "--quiet",
            ],
        )
        assert result.exit_code == 0, result.output
        assert result.stdout == ""
        digests.append(
            [hashlib.sha256(Path(name, f).read_bytes()).hexdigest() for f in ("c.csv", "t.parquet")]
        )
    assert digests[0] == digests[1]
    other = runner.invoke(
        cli, ["simulate", "--customers", "3000", "--seed", "6", "--out", "c/c.csv"]
    )
    assert other.exit_code == 0
    assert hashlib.sha256(Path("c/c.csv").read_bytes()).hexdigest() != digests[0][0]
    assert sorted(os.listdir("a")) == ["c.csv", "t.parquet"]  # no temporary files left


def test_simulate_with_config_uses_its_arms(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    make_table(50).to_csv("customers.csv", index=False)
    mapping = base_config()
    mapping["arms"] = [
        {"name": "call", "kind": "other"},
        {"name": "gift", "kind": "discount", "cost": {"fixed": 2}},
    ]
    mapping["allocation"] = {"control": 0.5, "call": 0.25, "gift": 0.25}
    Path("config.yaml").write_text(yaml.safe_dump(mapping))
    result = CliRunner().invoke(
        cli, ["simulate", "--customers", "2000", "--out", "s.csv", "--config", "config.yaml"]
    )
    assert result.exit_code == 0, result.output
    assert set(pd.read_csv("s.csv")["arm"]) == {"control", "call", "gift"}


def test_design_round_trips_through_the_cli(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project.parent)
    runner = CliRunner()
    first = runner.invoke(cli, ["design", "config.yaml", "--churn-rate", "0.3", "--format", "json"])
    assert first.exit_code == 0, first.output
    need = json.loads(first.stdout)
    assert need["control_rate_source"] == "--churn-rate"
    back = runner.invoke(
        cli,
        [
            "design",
            "config.yaml",
            "--churn-rate",
            "0.3",
            "--n",
            str(need["n_total"]),
            "--format",
            "json",
        ],
    )
    assert back.exit_code == 0, back.output
    assert json.loads(back.stdout)["mde"] == pytest.approx(0.02, rel=0.01)


def test_design_takes_control_churn_from_the_data(
    project: Path, monkeypatch: pytest.MonkeyPatch, table: pd.DataFrame
) -> None:
    monkeypatch.chdir(project.parent)
    result = CliRunner().invoke(cli, ["design", "config.yaml", "--format", "json"])
    assert result.exit_code == 0, result.output
    rate = table.loc[table["arm"] == "control", "churned"].mean()
    assert json.loads(result.stdout)["control_rate"] == pytest.approx(rate, abs=1e-12)


def test_no_arguments_prints_help() -> None:
    result = CliRunner().invoke(cli, [])
    assert result.exit_code == 0
    assert result.stdout.startswith("Usage: ")
    for command in ("analyze", "design", "simulate", "validate"):
        assert command in result.stdout


def test_design_with_a_variance_reduction_keeps_the_plain_keys(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(project.parent)
    runner = CliRunner()
    args = ["design", "config.yaml", "--churn-rate", "0.3", "--format", "json"]
    plain = json.loads(runner.invoke(cli, args).stdout)
    result = runner.invoke(cli, [*args, "--variance-reduction", "0.3"])
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    assert {k: got[k] for k in plain} == plain
    assert set(got) - set(plain) == {"variance_reduction", "variance_reduction_source",
                                     "n_per_group_cuped", "n_total_cuped"}
    assert got["n_total_cuped"] / got["n_total"] == pytest.approx(0.7, abs=1e-3)
    table = runner.invoke(cli, [*args[:-2], "--variance-reduction", "0.3"])
    assert f"{got['n_total_cuped']:,} customers instead of {got['n_total']:,}" in " ".join(
        table.stdout.split())
    mde = json.loads(runner.invoke(cli, [*args, "--n", "20000", "--variance-reduction",
                                         "0.3"]).stdout)
    assert mde["mde_cuped"] < mde["mde"]


def test_design_from_run_reads_the_last_runs_reductions(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    monkeypatch.chdir(project.parent)
    uri = f"sqlite:///{project.parent / 'store.db'}"
    client = mlflow.MlflowClient(uri)
    experiment = client.create_experiment("retention-test")
    older = client.create_run(experiment, tags={"period": "2026-09"})
    client.log_metric(older.info.run_id, "variance_reduction_discount_20", 0.9)
    client.set_terminated(older.info.run_id)
    latest = client.create_run(experiment, tags={"period": "2026-10"})
    for arm, value in {"discount_20": 0.3, "free_upgrade": 0.1, "webinar": -0.01}.items():
        client.log_metric(latest.info.run_id, f"variance_reduction_{arm}", value)
    client.set_terminated(latest.info.run_id)
    result = CliRunner().invoke(cli, ["design", "config.yaml", "--churn-rate", "0.3",
                                      "--from-run", "--tracking-uri", uri, "--format", "json"])
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    assert got["variance_reduction"] == {"discount_20": 0.3, "free_upgrade": 0.1, "webinar": 0.0}
    assert got["variance_reduction_source"] == f"run {latest.info.run_id} (2026-10)"
    expected = solve_sample_size(0.3, 0.02, control="control", arms=list(got["n_per_group"])[1:],
                                 allocation=base_config()["allocation"],
                                 variance_reduction=got["variance_reduction"])
    assert got["n_total_cuped"] == expected.adjusted_n_total == got["n_total"]  # webinar: none
    empty = client.create_experiment("no-metrics")
    run = client.create_run(empty)
    client.set_terminated(run.info.run_id)
    mapping = set_key(base_config(), "name", "no-metrics")
    project.write_text(yaml.safe_dump(mapping))
    bad = CliRunner().invoke(cli, ["design", "config.yaml", "--from-run", "--tracking-uri", uri])
    assert bad.exit_code == 2
    assert bad.stderr.startswith(f"Error: --from-run: run {run.info.run_id} logged no "
                                 "variance_reduction_<arm>")


def test_ui_refuses_a_port_another_server_listens_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    monkeypatch.chdir(tmp_path)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        result = CliRunner().invoke(cli, ["ui", "--port", str(port), "--tracking-uri",
                                          f"sqlite:///{tmp_path}/mlflow.db"])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"Error: --port: cannot serve on 127.0.0.1:{port} ")
    assert "choose another --port" in result.stderr
    assert list(tmp_path.iterdir()) == []  # no store created, no server started
