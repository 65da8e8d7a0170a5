"""Work that runs in a forked process beside the caller, on a machine with a core to spare.

A run's report is drawn by matplotlib on one core while the run logs to MLflow on
another. A forked child shares the parent's memory as it was at the fork, so nothing is
pickled on the way in: only the result (a small value) travels back, through a pipe.
Where there is no safe ``fork`` (Windows; macOS, whose system libraries are not safe in
a forked child), only one core, or no memory or process left for a child, the work runs
at once in the caller, with the same result and the same errors.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import sys
import traceback
from collections.abc import Callable
from types import TracebackType
from typing import Any, Generic, TypeVar

T = TypeVar("T")
STOP_SECONDS = 10.0
"""How long a child that was asked to stop may take before it is killed."""


class BackgroundError(RuntimeError):
    """The work failed in the child in a way that could not be sent back as it was."""


class _RemoteTraceback(Exception):
    """Where the child's exception was raised: its traceback as text, as the cause."""

    def __init__(self, text: str):
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return self.text


def _usable_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def can_fork() -> bool:
    """Whether work can run beside the caller: Linux's ``fork`` and two cores or more."""
    return (sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()
            and _usable_cores() > 1)


def _pickles(thing: object) -> bool:
    try:
        pickle.dumps(thing)
    except Exception:  # noqa: BLE001 - whatever stops it
        return False
    return True


def _stop(signum: int, frame: object) -> None:
    raise SystemExit(1)


def _child(conn: Any, fn: Callable[..., Any], args: tuple[Any, ...],
           kwargs: dict[str, Any]) -> None:
    """Run the work in the forked child, send back what came of it, and end at once.

    The child leaves the terminal's Ctrl-C to the parent, which stops it (SIGTERM, here
    an exit that still stops the child's own children). It writes through streams of its
    own: the parent's may have been locked by one of its threads at the moment of the
    fork, a lock no one would ever release here. It collects no garbage (that would copy
    the parent's memory page by page), and it ends without Python's exit steps.
    """
    import gc
    import signal
    import warnings

    code = 0
    try:
        gc.disable()
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, _stop)
        for name, fd in (("stdout", 1), ("stderr", 2)):
            with contextlib.suppress(OSError):
                setattr(sys, name, open(fd, "w", closefd=False))  # noqa: SIM115
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("default")
            try:
                ok, value, text = True, fn(*args, **kwargs), ""
            except BaseException as exc:  # noqa: BLE001 - every failure goes back
                ok, value, text = False, exc, "".join(traceback.format_exception(exc))
        try:
            packed: bytes | None = pickle.dumps(value)
        except Exception:  # noqa: BLE001 - a value or an exception that does not pickle
            packed = None
        notes = [(w.category if _pickles(w.category) else UserWarning, str(w.message))
                 for w in caught]
        conn.send_bytes(pickle.dumps((ok, packed, type(value).__name__, text.strip(), notes)))
    except BaseException:  # noqa: BLE001 - nothing may escape a forked child
        code = 1
    finally:
        os._exit(code)


class Background(Generic[T]):
    """``fn(*args, **kwargs)`` computed in a forked child while the caller goes on.

    :meth:`result` waits for it and returns its value or raises its exception (with the
    child's traceback as its cause), and re-issues the warnings the work gave. Used as a
    context manager, leaving the block early (an error, Ctrl-C) stops the child, so
    nothing is left running behind an error. Without a child the work runs in the
    constructor, and its exception is raised there.
    """

    def __init__(self, fn: Callable[..., T], *args: Any, **kwargs: Any):
        self._value: Any = None
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
        self._value = fn(*args, **kwargs)

    def result(self) -> T:
        """Wait for the work; its return value, or its exception raised here."""
        import warnings

        if self._process is None:
            return self._value
        try:
            ok, packed, kind, text, notes = pickle.loads(self._conn.recv_bytes())
        except EOFError:
            self._end()
            raise BackgroundError("the background process ended before it finished") from None
        self._end()
        for category, message in notes:
            warnings.warn(message, category, stacklevel=2)
        try:
            value = pickle.loads(packed) if packed is not None else None
        except Exception:  # noqa: BLE001 - it pickled there but cannot be rebuilt here
            packed = None
        if packed is None:
            raise BackgroundError(text or f"its result ({kind}) could not be sent back")
        if ok:
            self._value = value
            return value
        raise value from _RemoteTraceback(text)

    def _end(self, stop: bool = False) -> None:
        """Reap the child (asked to stop first when ``stop``; killed if it lingers).

        The request to stop is repeated: one that arrives while the child is still being
        set up after the fork, before it listens, is lost.
        """
        import time

        process, self._process = self._process, None
        if process is None:
            return
        deadline = time.monotonic() + STOP_SECONDS
        while process.is_alive() and time.monotonic() < deadline:
            if stop:
                process.terminate()
            process.join(0.2 if stop else STOP_SECONDS)
        if process.is_alive():
            process.kill()
            process.join()
        self._conn.close()

    def stop(self) -> None:
        """End the child now if it is still running (its work is abandoned)."""
        self._end(stop=True)

    def __enter__(self) -> Background[T]:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
