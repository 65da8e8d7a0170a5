from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import yaml
from conftest import base_config, set_key

from uplift.config import (
    AUTO_FOLDS_MAX_ROWS,
    ModelConfig,
    collect_config_problems,
    load_config,
    parse_period,
    previous_period,
)
from uplift.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def problems_for(tmp_path: Path, mapping: dict) -> list[str]:
    (tmp_path / "customers.csv").write_text("customer_id,arm,churned\n")
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(mapping, sort_keys=False))
    _, problems = collect_config_problems(path)
    return [f"{p.where}: {p.message}" for p in problems]


def test_demo_config_loads_with_spec_arms() -> None:
    cfg = load_config(ROOT / "experiments" / "demo.yaml")
    assert cfg.arm_names == ["discount_20", "free_upgrade", "webinar"]
    assert cfg.control == "control"
    assert cfg.data.simulate is not None
    assert cfg.arm("discount_20").cost.revenue_share == 0.2


def test_sha256_is_of_the_file_bytes(project: Path) -> None:
    cfg = load_config(project)
    assert cfg.sha256 == hashlib.sha256(project.read_bytes()).hexdigest()
    assert cfg.source == str(project)


def test_data_path_is_resolved_against_the_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sub = tmp_path / "experiments"
    (tmp_path / "data").mkdir()
    sub.mkdir()
    (tmp_path / "data" / "c.csv").write_text("customer_id,arm,churned\n")
    (sub / "x.yaml").write_text(yaml.safe_dump(base_config("../data/c.csv")))
    monkeypatch.chdir(tmp_path / "data")  # anywhere else than the config's folder
    cfg = load_config(sub / "x.yaml")
    assert Path(cfg.data.path) == (tmp_path / "data" / "c.csv").resolve()


def test_baseline_period_defaults_to_the_month_before(project: Path) -> None:
    cfg = load_config(project)
    assert cfg.baseline_period is None
    assert cfg.resolved_baseline_period() == "2026-09"
    assert cfg.resolved_baseline_period("2027-01") == "2026-12"
    assert previous_period("2026-01") == "2025-12"


@pytest.mark.parametrize("bad", ["2026-13", "2026-00", "26-10", "2026/10", "2026-1"])
def test_parse_period_rejects(bad: str) -> None:
    with pytest.raises(ValueError, match="YYYY-MM"):
        parse_period(bad)


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("policy.budgt", 10, "policy.budgt: unknown key (did you mean 'budget'?)"),
        ("arms.1.cost.fixd", 1, "arms[1].cost.fixd: unknown key (did you mean 'fixed'?)"),
        ("features", "auto", "features: unknown key (did you mean 'data.features'?)"),
        ("analysis.correction", "hlm",
         "analysis.correction: must be one of 'holm', 'bonferroni', 'fdr_bh' or 'none', "
         "got 'hlm' (did you mean 'holm'?)"),
        ("period", "2026-13", "period: must be a period 'YYYY-MM', got '2026-13'"),
        ("period", 202610, "period: must be a period 'YYYY-MM' in quotes, got 202610"),
        ("analysis.alpha", 1.5, "analysis.alpha: must be < 1, got 1.5"),
        ("arms.2.cost.fixed", -1.5, "arms[2].cost.fixed: must be >= 0, got -1.5"),
        ("policy.capacity", {"webinar": -1}, "policy.capacity.webinar: must be >= 0, got -1"),
        ("model.learners", ["t", "xx"], "model.learners[1]: must be one of"),
        ("data.outcome_event", "stay", "data.outcome_event: must be one of 'churn' or"),
        ("name", ..., "name: required key is missing"),
        ("arms.0.cost", {"revenue_share": 0.2},
         "arms[0].cost: 'months' is required with a revenue_share"),
        ("arms.1.eligible", {"plan": {"inn": ["premium"]}},
         "arms[1].eligible.plan.inn: unknown key (did you mean 'in'?)"),
        ("arms.1.eligible", {"tenure_months": {"min": 5, "max": 2}},
         "arms[1].eligible.tenure_months: min (5) is above max (2)"),
        ("arms.0.name", "discount 20%", "arms[0].name: arm name 'discount 20%' may use only"),
        ("arms.0.name", "control", "arms[0].name: 'control' is the control's name"),
        ("arms.1.name", "discount_20", "arms[1].name: 'discount_20' is used by more than one arm"),
        ("allocation.webinr", 0.1, "allocation.webinr: not an arm or the control "
                                   "(did you mean 'webinar'?)"),
        ("allocation.webinar", 0.3, "allocation: shares must sum to 1, they sum to 1.1"),
        ("policy.capacity", {"webnar": 5},
         "policy.capacity.webnar: not an offer (did you mean 'webinar'?)"),
        ("data.path", "nowhere.csv", "data.path: file not found: "),
        ("data.path", "customers.xlsx", "data.path: must end in .csv, .csv.gz or .parquet"),
        ("data.simulate", {"customers": 1000}, "data: give exactly one of 'path'"),
        ("data.outcome", "arm", "data.outcome: column 'arm' is already the treatment column"),
        ("data.features", ["plan", "churned"], "data.features[1]: 'churned' is the outcome"),
        ("baseline_period", "2026-11", "baseline_period: '2026-11' is not before period"),
        ("model.test_size", 0, "model.test_size: must be > 0, got 0"),
        ("baseline.churn_rate", 1.2, "baseline.churn_rate: must be <= 1, got 1.2"),
        ("arms", [], "arms: must be a non-empty list"),
        ("analysis.cuped", {"method": "cubic"},
         "analysis.cuped.method: must be one of 'linear' or 'model', got 'cubic'"),
        ("analysis.cuped", {"metod": "model"},
         "analysis.cuped.metod: unknown key (did you mean 'method'?)"),
        ("analysis.cuped", {"exclude": ["arm"]},
         "analysis.cuped.exclude[0]: 'arm' is the treatment column, which is never a covariate"),
        ("analysis.cuped", {"covariates": ["plan", "churned"]},
         "analysis.cuped.covariates[1]: 'churned' is the outcome column; an adjustment never"),
        ("analysis.cuped", {"covariates": ["plan", "plan"]},
         "analysis.cuped.covariates[1]: 'plan' is listed twice"),
        ("analysis.cuped", {"covariates": ["plan"], "exclude": ["plan"]},
         "analysis.cuped.covariates[0]: 'plan' is also in analysis.cuped.exclude"),
        ("analysis.cuped", {"folds": 1}, "analysis.cuped.folds: must be >= 2, got 1"),
        ("model.folds", 0, "model.folds: must be >= 1 or 'auto', got 0"),
        ("model.folds", "three", "model.folds: must be a whole number or 'auto', got 'three'"),
    ],
)
def test_each_invalid_key_gives_one_named_problem(
    tmp_path: Path, key: str, value: object, expected: str
) -> None:
    mapping = set_key(base_config(), key, value)
    if key.endswith(".name"):
        mapping = set_key(mapping, "allocation", ...)  # renaming an arm also breaks allocation
    problems = problems_for(tmp_path, mapping)
    assert len(problems) == 1, problems
    assert problems[0].startswith(expected), problems


def test_allocation_must_name_every_group(tmp_path: Path) -> None:
    mapping = set_key(base_config(), "allocation", {"control": 0.5, "discount_20": 0.5})
    assert problems_for(tmp_path, mapping) == ["allocation: no share for 'free_upgrade', 'webinar'"]


def test_several_problems_are_all_collected(tmp_path: Path) -> None:
    mapping = set_key(base_config(), "policy.budgt", 1)
    mapping = set_key(mapping, "analysis.alpha", 2)
    mapping = set_key(mapping, "model.seed", -1)
    assert len(problems_for(tmp_path, mapping)) == 3


def test_load_config_raises_first_problem_and_count(tmp_path: Path) -> None:
    mapping = set_key(set_key(base_config(), "policy.budgt", 1), "analysis.alpha", 2)
    (tmp_path / "customers.csv").write_text("x\n")
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(mapping))
    with pytest.raises(ConfigError, match=r"c\.yaml: .* \(and 1 more; run uplift validate\)"):
        load_config(path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: [unclosed\n", "line 2: invalid YAML"),
        ("", "expected a mapping of keys, the file is empty"),
        ("- a\n- b\n", "expected a mapping of keys, the file is a list"),
        ("name: a\npolicy:\n  budget: 1\n  budget: 2\n",
         "line 4: invalid YAML: duplicate key 'budget'"),
    ],
)
def test_unreadable_config_files(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=expected):
        load_config(path)


def test_keys_merged_with_an_anchor_may_be_overridden(project: Path) -> None:
    text = project.read_text()
    path = project.parent / "merged.yaml"
    mapping = yaml.safe_load(text)
    mapping.pop("arms")
    body = yaml.safe_dump(mapping)
    path.write_text(body + (
        "arms:\n"
        "  - {name: discount_20, kind: discount, cost: &share {revenue_share: 0.2, months: 3}}\n"
        "  - {name: free_upgrade, kind: free_upgrade, cost: {fixed: 6.0}}\n"
        "  - {name: webinar, kind: webinar, cost: {<<: *share, revenue_share: 0.1}}\n"))
    cfg = load_config(path)
    assert cfg.arms[2].cost.revenue_share == 0.1
    assert cfg.arms[2].cost.months == 3


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nope.yaml: file not found"):
        load_config(tmp_path / "nope.yaml")


def test_config_with_bom_and_crlf_loads(tmp_path: Path) -> None:
    (tmp_path / "customers.csv").write_text("customer_id,arm,churned\n")
    text = yaml.safe_dump(base_config()).replace("\n", "\r\n")
    path = tmp_path / "c.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert load_config(path).name == "retention-test"


def test_filter_operator_in_is_read_by_its_yaml_name(project: Path) -> None:
    mapping = set_key(base_config(), "arms.1.eligible", {"plan": {"in": ["basic"]}})
    project.write_text(yaml.safe_dump(mapping))
    rule = load_config(project).arm("free_upgrade").eligible["plan"]
    assert rule.in_ == ["basic"]


def test_auto_folds_cross_fit_small_tests_and_split_the_largest() -> None:
    auto = ModelConfig()
    assert auto.folds == "auto"
    assert auto.fold_count(20_000) == 3
    assert auto.fold_count(AUTO_FOLDS_MAX_ROWS) == 3
    assert auto.fold_count(AUTO_FOLDS_MAX_ROWS + 1) == 1
    assert ModelConfig(folds=5).fold_count(10_000_000) == 5
    assert ModelConfig(folds=1).fold_count(1_000) == 1
