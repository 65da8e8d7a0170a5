"""The README cannot drift from the code: every option, key and command is documented."""

from __future__ import annotations

import re
import typing
from pathlib import Path

import click
import pytest
from pydantic import BaseModel

from uplift.cli import cli
from uplift.config import ExperimentConfig

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def command_options() -> list[tuple[str, str]]:
    out = []
    for name, command in cli.commands.items():
        for param in command.params:
            if isinstance(param, click.Option):
                out.extend((name, opt) for opt in param.opts if opt.startswith("--"))
    return out


def config_keys(model: type[BaseModel] = ExperimentConfig, prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        key = field.alias or name
        keys.append(prefix + key)
        for arg in [field.annotation, *typing.get_args(field.annotation)]:
            inner = [arg, *typing.get_args(arg)]
            for candidate in inner:
                if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                    keys.extend(config_keys(candidate, prefix + key + "."))
    return sorted(set(keys))


@pytest.mark.parametrize(("command", "option"), command_options())
def test_every_cli_option_is_in_the_readme(command: str, option: str) -> None:
    assert f"uplift {command}" in README
    assert option in README, f"{option} of `uplift {command}` is not documented"


@pytest.mark.parametrize("key", config_keys())
def test_every_config_key_is_in_the_readme(key: str) -> None:
    leaf = key.split(".")[-1]
    assert re.search(rf"(^|[\s{{,]){re.escape(leaf)}:", README, re.M), f"{key} not documented"


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
