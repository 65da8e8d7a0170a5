"""The README cannot drift from the code: every option, key and command is documented."""

from __future__ import annotations

import re
import types
import typing
from pathlib import Path

import click
import pytest
import yaml
from pydantic import BaseModel

from uplift.cli import cli
from uplift.config import ExperimentConfig

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


COMMON_OPTIONS = ("--verbose", "--quiet")  # on every command, documented once


def command_options() -> list[tuple[str, str]]:
    out = []
    for name, command in cli.commands.items():
        for param in command.params:
            if isinstance(param, click.Option):
                out.extend((name, opt) for opt in param.opts
                           if opt.startswith("--") and opt not in COMMON_OPTIONS)
    return out


def command_row(command: str) -> str:
    """The README's row of the commands table for ``uplift <command>``."""
    rows = [line for line in README.splitlines()
            if re.match(rf"\| `uplift {re.escape(command)}[ `]", line)]
    assert len(rows) == 1, f"`uplift {command}` needs exactly one row in the commands table"
    return rows[0]


def _inner_model(annotation: object) -> tuple[str, type[BaseModel]] | None:
    """``("", M)`` for M or M | None, ``("[]", M)`` for list[M], ``(".*", M)`` for dict[str, M]."""
    members = [a for a in typing.get_args(annotation) if a is not type(None)] \
        if typing.get_origin(annotation) in (typing.Union, types.UnionType) else [annotation]
    for member in members:
        if isinstance(member, type) and issubclass(member, BaseModel):
            return "", member
        origin, args = typing.get_origin(member), typing.get_args(member)
        last = args[-1] if args else None
        if isinstance(last, type) and issubclass(last, BaseModel):
            if origin is list:
                return "[]", last
            if origin is dict:
                return ".*", last
    return None


def config_keys(model: type[BaseModel] = ExperimentConfig, prefix: str = "") -> list[str]:
    """Every key of the schema by its full path: ``arms[].eligible.*.not_in``."""
    keys = []
    for name, field in model.model_fields.items():
        key = prefix + (field.alias or name)
        keys.append(key)
        inner = _inner_model(field.annotation)
        if inner is not None:
            keys.extend(config_keys(inner[1], key + inner[0] + "."))
    return sorted(set(keys))


def documented_keys(value: object, model: type[BaseModel] = ExperimentConfig,
                    prefix: str = "") -> set[str]:
    """The full paths of the keys a YAML example in the README sets, by the schema."""
    out: set[str] = set()
    if not isinstance(value, dict):
        return out
    for key, item in value.items():
        field = next((f for n, f in model.model_fields.items() if key in (n, f.alias)), None)
        if field is None:
            continue
        path = prefix + key
        out.add(path)
        inner = _inner_model(field.annotation)
        if inner is None:
            continue
        kind, child = inner
        if kind == "" and isinstance(item, dict):
            out |= documented_keys(item, child, path + ".")
        elif kind == "[]" and isinstance(item, list):
            for element in item:
                out |= documented_keys(element, child, path + "[].")
        elif kind == ".*" and isinstance(item, dict):
            for element in item.values():
                out |= documented_keys(element, child, path + ".*.")
    return out


README_KEYS = set().union(*(documented_keys(yaml.safe_load(block)) for block in
                            re.findall(r"```yaml\n(.*?)```", README, re.S)))


@pytest.mark.parametrize(("command", "option"), command_options())
def test_every_cli_option_is_in_its_commands_row(command: str, option: str) -> None:
    assert re.search(rf"{re.escape(option)}\b", command_row(command)), (
        f"{option} of `uplift {command}` is not in its row of the commands table")


def test_common_options_are_documented() -> None:
    for option in COMMON_OPTIONS:
        assert f"`{option}`" in README


@pytest.mark.parametrize("key", config_keys())
def test_every_config_key_is_in_a_readme_example(key: str) -> None:
    assert key in README_KEYS, f"{key} is not set in any YAML example of the README"


def test_the_readme_examples_are_valid_configs_but_for_the_data_source(tmp_path: Path) -> None:
    from uplift.config import check_config

    block = yaml.safe_load(re.findall(r"```yaml\n(.*?)```", README, re.S)[0])
    block["data"].pop("path")
    block["data"]["simulate"] = {"customers": 1000, "seed": 1}
    cfg, problems = check_config(block, "README.md", tmp_path)
    assert problems == []
    assert cfg is not None


def test_readme_lists_every_command() -> None:
    for name in cli.commands:
        assert f"`uplift {name}" in README, name


def test_ci_runs_the_readme_commands() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    assert "readme_command demo-command" in script
    assert "readme_command test-command" in script
    for marker in ("<!-- demo-command -->", "<!-- test-command -->"):
        assert README.count(marker) == 1


@pytest.mark.slow
@pytest.mark.parametrize("block", re.findall(r"```python\n(.*?)```", README, re.S),
                         ids=lambda b: b.splitlines()[0][:40])
def test_readme_python_examples_run(block: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    exec(compile(block, "README.md", "exec"), {})


def test_every_metric_a_run_logs_beyond_the_spec_is_in_the_readme() -> None:
    from uplift.tracking import logged_metric_names, spec_metric_names

    extra = logged_metric_names(["an_offer"]) - spec_metric_names(["an_offer"])
    assert extra  # the adjusted readout, the net value's interval, the simple comparison
    for name in sorted(extra):
        base = re.sub(r"_(ci_low|ci_high|pvalue_adj|pvalue)$", "", name)
        assert f"`{base.replace('an_offer', '<arm>')}" in README, name
