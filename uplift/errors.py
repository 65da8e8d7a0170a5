"""Exceptions of the toolkit and the one shape every input problem is reported in.

The library raises; only the CLI turns these into exit codes and stderr lines.
``InputError`` and its subclasses mean "the user's input is wrong" (exit 2);
anything else escaping the library is an internal error (exit 1).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input, located as precisely as we can.

    Attributes:
        file: The file at fault as the user named it (config, data file), or
            ``None`` for command-line arguments.
        where: The config key path (``policy.budget``), ``column 'arm'`` or an
            option name (``--customers``); empty when the whole file is at fault.
        message: What is wrong, in words an analyst understands.
    """

    file: str | None
    where: str
    message: str

    def __str__(self) -> str:
        parts = [p for p in (self.file, self.where) if p]
        parts.append(self.message)
        return ": ".join(parts)


@dataclass(frozen=True)
class ArgumentProblem(Problem):
    """A problem with an argument of a library call; ``where`` is the parameter's name.

    The library names its own parameters (``holdout``, ``chunk_size``); the CLI shows
    them as the options that feed them (``--holdout``, ``--chunk-size``).
    """


def did_you_mean(word: object, choices: Iterable[object]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices`` to ``word``, else ``""``."""
    match = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (its type when empty), at most ``limit`` chars."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:limit]


class UpliftError(Exception):
    """Base class of every error the toolkit raises on purpose."""


class InputError(UpliftError):
    """Bad input (config, data, arguments, missing model): the CLI exits with code 2.

    Built from one or more problems; the message is the first problem, plus a
    pointer to ``uplift validate`` when there are more.
    """

    def __init__(self, problems: Problem | Iterable[Problem]):
        if isinstance(problems, Problem):
            problems = [problems]
        self.problems: list[Problem] = list(problems)
        if not self.problems:
            raise ValueError("an InputError needs at least one problem")
        super().__init__(self._summary())

    def _summary(self) -> str:
        return self.message()

    def message(self, options: Mapping[str, str] | None = None) -> str:
        """The one-line message; ``options`` renames parameters (``chunk_size``) in it.

        Only locations of :class:`ArgumentProblem` are renamed, so the CLI can show the
        option a parameter came from (``--chunk-size``).
        """
        problem = self.problems[0]
        if options and isinstance(problem, ArgumentProblem) and problem.where in options:
            problem = Problem(problem.file, options[problem.where], problem.message)
        first = str(problem)
        extra = len(self.problems) - 1
        if extra:
            first += f" (and {extra} more; run uplift validate)"
        return first


class ConfigError(InputError):
    """The experiment config is missing, unreadable or invalid."""


class DataError(InputError):
    """A data file, or a column or value in it, is missing or invalid."""


class ArgumentError(InputError):
    """A command-line argument is invalid."""


class ModelNotFoundError(InputError):
    """The requested model, version or alias does not exist."""


class UpliftWarning(UserWarning):
    """A statistical or data caveat the user should see (SRM, dropped columns, small arms)."""
