"""Windows containment (a kill-on-close Job Object), run here through a fake of its seam.

The fake records every Windows call in order, so each test checks what Windows would be
asked to do: the child joins the job before it is resumed, it is resumed even when the
job cannot be made, and the job is closed (killing what is left) exactly once.
"""

from __future__ import annotations

import sys
import warnings

import pytest

import ctlwire.transport._contain as contain
import ctlwire.transport._job as job_seam
from ctlwire.transport._job import JobContainment


class FakeWindows:
    """`JobApi` that logs its calls; ``fail`` names calls that raise OSError."""

    def __init__(self, fail: tuple[str, ...] = ()) -> None:
        self.calls: list[tuple[str, int]] = []
        self.fail = fail
        self.next_handle = 100

    def _call(self, name: str, arg: int) -> int:
        self.calls.append((name, arg))
        if name in self.fail:
            raise OSError(5, f"{name} failed (Windows error 5)")
        self.next_handle += 1
        return self.next_handle

    def create_kill_on_close_job(self) -> int:
        return self._call("create_kill_on_close_job", 0)

    def open_process(self, pid: int) -> int:
        return self._call("open_process", pid)

    def assign(self, job: int, process: int) -> None:
        self._call("assign", process)

    def resume(self, process: int) -> None:
        self._call("resume", process)

    def close_handle(self, handle: int) -> None:
        self._call("close_handle", handle)


def test_the_child_joins_the_job_before_it_runs() -> None:
    api = FakeWindows()
    job = JobContainment(api)
    assert job.adopt(4242) is None
    # handles: 101 the process, 102 the job
    assert api.calls == [
        ("open_process", 4242),
        ("create_kill_on_close_job", 0),
        ("assign", 101),
        ("resume", 101),
        ("close_handle", 101),
    ]
    job.close()
    job.close()
    assert api.calls[-1] == ("close_handle", 102)
    assert api.calls.count(("close_handle", 102)) == 1


@pytest.mark.parametrize("failing", ["create_kill_on_close_job", "assign"])
def test_a_job_that_cannot_be_made_still_lets_the_child_run(failing: str) -> None:
    api = FakeWindows(fail=(failing,))
    job = JobContainment(api)
    problem = job.adopt(7)
    assert problem is not None and "cannot be put in a Job Object" in problem
    assert f"{failing} failed" in problem
    names = [name for name, _ in api.calls]
    assert names[-2:] == ["resume", "close_handle"]  # resumed, the process handle closed
    if failing == "assign":  # the job was made: closed again, not leaked
        assert ("close_handle", 102) in api.calls
    calls = len(api.calls)
    job.close()  # nothing left to close
    assert len(api.calls) == calls


def test_prepare_on_windows_starts_suspended_and_closes_the_job_on_release(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    api = FakeWindows()
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setattr(job_seam, "win32_api", lambda: api)
    spawn = contain.prepare(["claude", "--print"])
    assert spawn.argv == ["claude", "--print"]  # no supervisor on Windows
    assert spawn.pass_fds == ()
    assert spawn.creationflags & JobContainment.CREATE_SUSPENDED
    spawn.started(99)
    assert ("open_process", 99) in api.calls and ("resume", 101) in api.calls
    assert ("close_handle", 102) not in api.calls  # the job holds the tree while it runs
    spawn.release()  # what the transport does once it has closed the child
    assert api.calls[-1] == ("close_handle", 102)  # the job: Windows kills what is left


def test_prepare_on_windows_warns_once_when_no_job(monkeypatch: pytest.MonkeyPatch) -> None:
    api = FakeWindows(fail=("assign",))
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setattr(job_seam, "win32_api", lambda: api)
    spawn = contain.prepare(["claude"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        spawn.started(5)
        spawn.release()
    assert len(caught) == 1 and caught[0].category is contain.ContainmentWarning
    assert "the CLI's process tree is not contained" in str(caught[0].message)
    assert ("resume", 101) in api.calls


def test_opting_out_changes_nothing() -> None:
    spawn = contain.prepare(["claude", "-p"], enabled=False, cwd="/srv", env={"A": "1"})
    assert (spawn.argv, spawn.pass_fds, spawn.creationflags) == (["claude", "-p"], (), 0)
    assert (spawn.cwd, spawn.env) == ("/srv", {"A": "1"})
    spawn.started(1)
    spawn.release()  # nothing to release: no supervisor, no job
