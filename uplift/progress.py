"""Progress display: a spinner or bar on a terminal, nothing in logs or with ``--quiet``.

The one module that knows how progress is drawn; the rest of the code only says
which step it is in.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator


def progress_enabled(quiet: bool) -> bool:
    """Show progress only when not quiet and stderr is a terminal."""
    return not quiet and sys.stderr.isatty()


@contextlib.contextmanager
def step(description: str, enabled: bool) -> Iterator[None]:
    """Show a spinner with ``description`` while the block runs (when enabled)."""
    if not enabled:
        yield
        return
    from rich.console import Console

    with Console(stderr=True).status(description):
        yield


@contextlib.contextmanager
def steps(enabled: bool) -> Iterator[Callable[[str], None]]:
    """A spinner whose text each step replaces; yields ``update(description)``."""
    if not enabled:
        yield lambda text: None
        return
    from rich.console import Console

    with Console(stderr=True).status("Starting") as status:
        yield lambda text: status.update(text)
