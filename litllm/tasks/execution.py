"""Run a generated Python program and say whether it passed: the checker of the coding tasks (HumanEval, MBPP).

This is NOT a security sandbox. It stops accidents of honest but wrong code (an infinite loop, a runaway
allocation, a stray file, a network call), not an attacker: a program runs as the same user as the caller, can
read what that user can read, can raise its own soft limits when run as root, and can leave its process group
with setsid(). Run untrusted code inside a container or a VM.

Each program runs in a fresh `python -I` (no user site, no PYTHON* variables, no current folder on sys.path) with
a small environment (no tokens of the caller), in a temporary working folder removed afterwards, as the leader of
its own session and process group. Before the program starts, a prelude in the child:
- moves it into a new, empty network namespace where the kernel allows it (unshare(CLONE_NEWNET));
- sets limits with `resource.setrlimit`: address space (memory_mb), CPU seconds (timeout + 1) and file size;
- makes every socket creation raise PermissionError, whether or not the namespace was given.
The limits are set in the child's prelude rather than in `preexec_fn`, which Python documents as unsafe in a
process with threads (run_programs starts programs from a thread pool, and a model server has threads).
RLIMIT_NPROC is not set: root ignores it, and for other users it counts every process of the user, the caller's
included, so no value both stops a fork bomb and lets a program start a helper process.
When the program ends, or at the timeout, the whole process group is killed with SIGKILL; the program itself is
reaped. Whatever the program does, the caller gets a `ProgramResult`, never an exception.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO

STATUSES = ("passed", "failed", "timeout", "killed")
DETAIL_CHARS = 1000  # the tail of stderr a result keeps
OUTPUT_BYTES = 64 * 1024  # how much of stdout and stderr is read back
FILE_SIZE_MB = 8  # the largest file (stdout and stderr included) a program may write
SOCKET_REFUSED = "network access is disabled for programs run by litllm"

# Runs in the child as `python -I -c PRELUDE program.py memory_bytes cpu_seconds file_bytes`.
PRELUDE = f"""
import resource, runpy, sys
try:
    import ctypes
    ctypes.CDLL(None, use_errno=True).unshare(0x40000000)  # CLONE_NEWNET: a namespace with no network
except Exception:
    pass
for _which, _value in zip(
    (resource.RLIMIT_AS, resource.RLIMIT_CPU, resource.RLIMIT_FSIZE), (int(v) for v in sys.argv[2:5])
):
    try:
        resource.setrlimit(_which, (_value, _value))
    except (ValueError, OSError):
        pass
import _socket, socket
class _NoSocket(socket.socket):
    def __init__(self, *args, **kwargs):
        raise PermissionError({SOCKET_REFUSED!r})
def _refuse(*args, **kwargs):
    raise PermissionError({SOCKET_REFUSED!r})
socket.socket = socket.SocketType = _socket.socket = _NoSocket
socket.socketpair = socket.fromfd = socket.create_connection = socket.create_server = _refuse
_socket.socketpair = _refuse
del _which, _value, _NoSocket, _refuse
sys.argv = sys.argv[1:2]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@dataclass(frozen=True)
class ProgramResult:
    """How a program ended: `status` is "passed" (exit code 0), "failed" (a non-zero exit: a failed assert, an
    exception), "timeout" (past the wall-clock or CPU-time limit) or "killed" (out of memory, or ended by a
    signal); `detail` is the tail of its stderr (or why it was stopped) and `output` the tail of its stdout."""

    passed: bool
    status: str
    detail: str
    output: str = ""


def run_program(source: str, timeout: float = 10.0, memory_mb: int = 1024) -> ProgramResult:
    """Run `source` as a Python program in a fresh, limited subprocess and say how it ended (see the module)."""
    _check_limits(timeout, memory_mb)
    try:
        return _run(source, timeout, memory_mb)
    except Exception as err:  # the caller scores programs: a failure to run one is a failed sample, not a crash
        return ProgramResult(False, "failed", f"could not run the program: {type(err).__name__}: {err}")


def run_programs(
    sources: Sequence[str], timeout: float = 10.0, memory_mb: int = 1024, workers: int = 2
) -> list[ProgramResult]:
    """Run several programs, `workers` at a time, and give their results in the order of `sources`."""
    _check_limits(timeout, memory_mb)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an int >= 1, got {workers!r}")
    if isinstance(sources, str):
        raise TypeError("run_programs takes a list of programs; run one program with run_program(source)")
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda source: run_program(source, timeout, memory_mb), sources))


def _check_limits(timeout: float, memory_mb: int) -> None:
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
        raise ValueError(f"timeout must be a number of seconds > 0, got {timeout!r}")
    if isinstance(memory_mb, bool) or not isinstance(memory_mb, int) or memory_mb < 64:
        raise ValueError(f"memory_mb must be an int >= 64 (the interpreter needs some), got {memory_mb!r}")


def _run(source: str, timeout: float, memory_mb: int) -> ProgramResult:
    folder = tempfile.mkdtemp(prefix="litllm-program-")
    try:
        program = os.path.join(folder, "program.py")
        with open(program, "w", encoding="utf-8") as file:
            file.write(source)
        with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
            limits = [str(memory_mb * 1024 * 1024), str(int(timeout) + 1), str(FILE_SIZE_MB * 1024 * 1024)]
            process = subprocess.Popen(
                [sys.executable, "-I", "-c", PRELUDE, program, *limits],
                cwd=folder,
                env=_environment(folder),
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,  # its own session and process group, killed as one
            )
            timed_out = _wait(process, timeout)
            return _result(process.returncode, timed_out, timeout, _tail(stdout), _tail(stderr))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _environment(folder: str) -> dict[str, str]:
    """The child's whole environment: no variables (tokens, keys) of the caller."""
    return {"PATH": os.defpath, "HOME": folder, "TMPDIR": folder, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}


def _wait(process: subprocess.Popen, timeout: float) -> bool:
    """Wait for the program and say whether it timed out; its whole group is killed either way (even when the
    caller is interrupted), and the program reaped."""
    try:
        process.wait(timeout=timeout)
        return False
    except subprocess.TimeoutExpired:
        return True
    finally:
        _kill_group(process.pid)  # the pid stays reserved as the group's id while any member lives
        process.wait()


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is already gone
        os.killpg(pgid, signal.SIGKILL)


def _tail(file: IO[bytes]) -> str:
    size = file.seek(0, os.SEEK_END)
    file.seek(max(0, size - OUTPUT_BYTES))
    return file.read().decode("utf-8", errors="replace")


def _result(returncode: int, timed_out: bool, timeout: float, stdout: str, stderr: str) -> ProgramResult:
    detail = stderr[-DETAIL_CHARS:]
    if timed_out:
        return ProgramResult(False, "timeout", _join(f"timed out after {timeout:g} s", detail), stdout)
    if returncode == 0:
        return ProgramResult(True, "passed", detail, stdout)
    if returncode < 0:
        number = -returncode
        name = signal.Signals(number).name if number in signal.valid_signals() else f"signal {number}"
        if number == signal.SIGXCPU:
            return ProgramResult(False, "timeout", _join(f"past its CPU-time limit ({name})", detail), stdout)
        return ProgramResult(False, "killed", _join(f"killed by {name}", detail), stdout)
    if _last_line(stderr).startswith("MemoryError"):
        return ProgramResult(False, "killed", _join("out of memory (past its memory limit)", detail), stdout)
    return ProgramResult(False, "failed", detail or f"exit code {returncode}", stdout)


def _last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else ""


def _join(reason: str, detail: str) -> str:
    keep = max(0, DETAIL_CHARS - len(reason) - 1)
    return f"{reason}\n{detail[-keep:]}" if detail.strip() and keep else reason
