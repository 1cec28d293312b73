"""Windows containment: the CLI, started suspended, is put in a kill-on-close Job Object.

Every process the CLI starts is in the job too, and Windows ends them all when the
job's last handle closes: when the transport releases it, or when this process dies in
any way. The Windows calls sit behind `JobApi`, one small seam: `Win32JobApi` makes
them with ctypes (no dependency), and `JobContainment` holds the logic, which the tests
run on Linux through a fake of the seam. Never run on a real Windows machine yet.
"""

from __future__ import annotations

import ctypes
from typing import Any, Protocol


class JobApi(Protocol):
    """The Windows calls containment needs; each raises OSError on failure."""

    def create_kill_on_close_job(self) -> int: ...

    def open_process(self, pid: int) -> int: ...

    def assign(self, job: int, process: int) -> None: ...

    def resume(self, process: int) -> None: ...

    def close_handle(self, handle: int) -> None: ...


class JobContainment:
    """One child's job: made and filled before the child runs any code."""

    CREATE_SUSPENDED = 0x4

    def __init__(self, api: JobApi) -> None:
        self.api = api
        self.job: int | None = None

    def adopt(self, pid: int) -> str | None:
        """Put the suspended ``pid`` in a new job, then let it run. Returns why it is not
        contained (None: it is); the child runs either way."""
        process = self.api.open_process(pid)
        problem = None
        try:
            try:
                self.job = self.api.create_kill_on_close_job()
                self.api.assign(self.job, process)
            except OSError as exc:
                problem = f"it cannot be put in a Job Object: {exc}"
                self.close()
            self.api.resume(process)
        finally:
            self.api.close_handle(process)
        return problem

    def close(self) -> None:
        """Close the job: whatever is still in it is killed."""
        job, self.job = self.job, None
        if job is not None:
            self.api.close_handle(job)


# What the Windows headers call these, and the structures SetInformationJobObject takes.
_KILL_ON_JOB_CLOSE = 0x2000
_EXTENDED_LIMIT_INFORMATION = 9
_PROCESS_RIGHTS = 0x0001 | 0x0100 | 0x0800  # TERMINATE | SET_QUOTA | SUSPEND_RESUME


class _BasicLimits(ctypes.Structure):
    _fields_ = [
        ("PerProcessUserTimeLimit", ctypes.c_int64),
        ("PerJobUserTimeLimit", ctypes.c_int64),
        ("LimitFlags", ctypes.c_uint32),
        ("MinimumWorkingSetSize", ctypes.c_size_t),
        ("MaximumWorkingSetSize", ctypes.c_size_t),
        ("ActiveProcessLimit", ctypes.c_uint32),
        ("Affinity", ctypes.c_size_t),
        ("PriorityClass", ctypes.c_uint32),
        ("SchedulingClass", ctypes.c_uint32),
    ]


class _ExtendedLimits(ctypes.Structure):
    _fields_ = [
        ("BasicLimitInformation", _BasicLimits),
        ("IoInfo", ctypes.c_uint64 * 6),
        ("ProcessMemoryLimit", ctypes.c_size_t),
        ("JobMemoryLimit", ctypes.c_size_t),
        ("PeakProcessMemoryUsed", ctypes.c_size_t),
        ("PeakJobMemoryUsed", ctypes.c_size_t),
    ]


class Win32JobApi:
    """`JobApi` through kernel32 and ntdll (Windows only)."""

    def __init__(self) -> None:
        loader: Any = getattr(ctypes, "WinDLL")  # noqa: B009 - absent off Windows
        self.kernel32 = loader("kernel32", use_last_error=True)
        self.ntdll = loader("ntdll")
        self.kernel32.CreateJobObjectW.restype = ctypes.c_void_p
        self.kernel32.OpenProcess.restype = ctypes.c_void_p

    def _fail(self, call: str) -> OSError:
        code = getattr(ctypes, "get_last_error")()  # noqa: B009 - Windows only
        return OSError(code, f"{call} failed (Windows error {code})")

    def create_kill_on_close_job(self) -> int:
        job = self.kernel32.CreateJobObjectW(None, None)
        if not job:
            raise self._fail("CreateJobObjectW")
        limits = _ExtendedLimits()
        limits.BasicLimitInformation.LimitFlags = _KILL_ON_JOB_CLOSE
        if not self.kernel32.SetInformationJobObject(
            ctypes.c_void_p(job),
            _EXTENDED_LIMIT_INFORMATION,
            ctypes.byref(limits),
            ctypes.sizeof(limits),
        ):
            error = self._fail("SetInformationJobObject")
            self.close_handle(job)
            raise error
        return int(job)

    def open_process(self, pid: int) -> int:
        process = self.kernel32.OpenProcess(_PROCESS_RIGHTS, False, pid)
        if not process:
            raise self._fail("OpenProcess")
        return int(process)

    def assign(self, job: int, process: int) -> None:
        if not self.kernel32.AssignProcessToJobObject(
            ctypes.c_void_p(job), ctypes.c_void_p(process)
        ):
            raise self._fail("AssignProcessToJobObject")

    def resume(self, process: int) -> None:
        status = self.ntdll.NtResumeProcess(ctypes.c_void_p(process))
        if status != 0:
            raise OSError(status, f"NtResumeProcess failed (status {status:#x})")

    def close_handle(self, handle: int) -> None:
        self.kernel32.CloseHandle(ctypes.c_void_p(handle))


def win32_api() -> JobApi:
    return Win32JobApi()
