"""Work beside the caller: a forked child's value and errors come back as if run inline."""

from __future__ import annotations

import os
import pickle
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest

from uplift import background
from uplift.background import Background, BackgroundError
from uplift.errors import UpliftWarning

needs_fork = pytest.mark.skipif(not background.can_fork(),
                                reason="needs fork and two cores")


def _pid_and(value: int) -> tuple[int, int]:
    return os.getpid(), value * 2


def _fail() -> None:
    raise ValueError("no such column 'plan'")


class _Unpicklable(Exception):
    def __init__(self, message: str, extra: object):
        super().__init__(message)
        self.extra = extra

    def __reduce__(self) -> object:
        raise pickle.PicklingError("not this one")


def _fail_unpicklably() -> None:
    raise _Unpicklable("drawing failed", object())


class _Unrebuildable(Exception):
    def __init__(self, message: str, column: str):
        super().__init__(f"{message}: {column}")


def _fail_unrebuildably() -> None:
    raise _Unrebuildable("bad value", "plan")


def _warn_and_give(value: int) -> int:
    warnings.warn("3 rows dropped", UpliftWarning, stacklevel=1)
    return value


def _start_grandchild_and_wait(record: str) -> None:
    with Background(_sleep, 60) as inner:
        Path(record).write_text(str(inner._process.pid))
        time.sleep(60)


def _die() -> None:
    os._exit(3)


def _sleep(seconds: float) -> None:
    time.sleep(seconds)


@needs_fork
def test_the_work_runs_in_another_process_and_its_value_comes_back() -> None:
    with Background(_pid_and, 21) as job:
        pid, value = job.result()
    assert value == 42
    assert pid != os.getpid()


def test_without_fork_the_work_runs_here_with_the_same_value(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(background, "can_fork", lambda: False)
    with Background(_pid_and, 21) as job:
        assert job.result() == (os.getpid(), 42)


@needs_fork
def test_an_error_of_the_work_is_raised_by_result_with_its_type_and_traceback() -> None:
    job = Background(_fail)
    with pytest.raises(ValueError, match="no such column 'plan'") as caught:
        job.result()
    assert "in _fail" in str(caught.value.__cause__)  # where the child raised it


def test_without_fork_an_error_of_the_work_is_raised_at_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(background, "can_fork", lambda: False)
    with pytest.raises(ValueError, match="no such column 'plan'"):
        Background(_fail)


@needs_fork
@pytest.mark.parametrize(("work", "message"), [
    (_fail_unpicklably, "_Unpicklable: drawing failed"),  # does not pickle there
    (_fail_unrebuildably, "_Unrebuildable: bad value: plan"),  # does not unpickle here
    (_die, "ended before it finished"),  # no word at all
])
def test_what_cannot_come_back_as_it_was_comes_back_as_text(
        work: Callable[[], None], message: str) -> None:
    job = Background(work)
    with pytest.raises(BackgroundError, match=message):
        job.result()


@needs_fork
def test_the_works_warnings_are_issued_here() -> None:
    job = Background(_warn_and_give, 7)
    with pytest.warns(UpliftWarning, match="3 rows dropped"):
        assert job.result() == 7


@needs_fork
def test_stopping_a_child_stops_its_own_children(tmp_path: Path) -> None:
    record = tmp_path / "grandchild.pid"
    with Background(_start_grandchild_and_wait, str(record)) as job:
        deadline = time.monotonic() + 30
        while not record.exists() or not record.read_text():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        grandchild = int(record.read_text())
        job.stop()
    deadline = time.monotonic() + 15
    while _alive(grandchild):
        assert time.monotonic() < deadline, "the grandchild outlived its parent"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().split(") ")[-1][:1] not in ("Z", "X")
    except FileNotFoundError:
        return False


@needs_fork
def test_leaving_the_block_on_an_error_stops_the_child_at_once() -> None:
    def interrupted() -> None:
        with Background(_sleep, 60) as job:
            started.append(job._process)
            raise KeyboardInterrupt

    started: list = []
    start = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        interrupted()
    assert time.perf_counter() - start < 10
    assert not started[0].is_alive()


def test_a_fork_that_fails_leaves_the_work_to_this_process(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Out of memory or processes for a child, the report is still drawn, here."""
    import multiprocessing.process

    def no_child(self: object) -> None:
        raise OSError(12, "Cannot allocate memory")

    monkeypatch.setattr(background, "can_fork", lambda: True)
    monkeypatch.setattr(multiprocessing.process.BaseProcess, "start", no_child)
    with Background(_pid_and, 21) as job:
        assert job.result() == (os.getpid(), 42)
