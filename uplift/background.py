"""Work that runs in a forked process beside the caller, on a machine with a core to spare.

A run's report is drawn by matplotlib on one core while the run logs to MLflow on
another. A forked child shares the parent's memory as it was at the fork, so nothing is
pickled on the way in: only the result (a small value) travels back, through a pipe.
Where there is no safe ``fork`` (Windows; macOS, whose system libraries are not safe in
a forked child), only one core, or no memory or process left for a child, the work runs
at once in the caller, with the same result and the same errors.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import traceback
from collections.abc import Callable
from types import TracebackType
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class BackgroundError(RuntimeError):
    """The work failed in the child in a way that could not be sent back as it was."""


def _usable_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def can_fork() -> bool:
    """Whether work can run beside the caller: Linux's ``fork`` and two cores or more."""
    return (sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()
            and _usable_cores() > 1)


def _child(conn: Any, fn: Callable[..., Any], args: tuple[Any, ...],
           kwargs: dict[str, Any]) -> None:
    try:
        outcome: tuple[bool, Any] = (True, fn(*args, **kwargs))
    except BaseException as exc:  # noqa: BLE001 - every failure goes back to the parent
        outcome = (False, exc)
    try:
        conn.send(outcome)
    except Exception:  # the value or the exception does not pickle
        detail = "".join(traceback.format_exception(outcome[1])) if not outcome[0] else (
            f"its result ({type(outcome[1]).__name__}) could not be sent back")
        conn.send((False, BackgroundError(detail.strip())))
    finally:
        conn.close()


class Background(Generic[T]):
    """``fn(*args, **kwargs)`` computed in a forked child while the caller goes on.

    :meth:`result` waits for it and returns its value or raises its exception. Used as
    a context manager, leaving the block early (an error, Ctrl-C) stops the child, so
    nothing is left running or half-written behind an error.
    """

    def __init__(self, fn: Callable[..., T], *args: Any, **kwargs: Any):
        self._value: Any = None
        self._error: BaseException | None = None
        self._process: Any = None
        self._conn: Any = None
        if can_fork():
            context = multiprocessing.get_context("fork")
            self._conn, child_end = context.Pipe(duplex=False)
            process = context.Process(target=_child, args=(child_end, fn, args, kwargs),
                                      daemon=False)
            try:
                process.start()
            except OSError:  # no memory or no process left for a child: work here
                self._conn.close()
            else:
                self._process = process
                return
            finally:
                child_end.close()
        try:
            self._value = fn(*args, **kwargs)
        except Exception as exc:
            self._error = exc

    def result(self) -> T:
        """Wait for the work; its return value, or its exception raised here."""
        if self._process is not None:
            try:
                ok, value = self._conn.recv()
            except EOFError:
                self._process.join()
                ok, value = False, BackgroundError(
                    f"the background process ended with code {self._process.exitcode} "
                    "before it finished")
            self._conn.close()
            self._process.join()
            self._process = None
            self._value, self._error = (value, None) if ok else (None, value)
        if self._error is not None:
            raise self._error
        return self._value

    def stop(self) -> None:
        """End the child now if it is still running (its work is abandoned)."""
        if self._process is not None:
            self._process.terminate()
            self._process.join()
            self._conn.close()
            self._process = None

    def __enter__(self) -> Background[T]:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
