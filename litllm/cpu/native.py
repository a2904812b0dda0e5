"""Small C kernels compiled on first use: `load("attention.c", switch="LITLLM_CPU_ATTENTION", ...)`.

Each source next to this file is built with the system's C compiler (`$CC`, else `cc`) for an instruction set
(`litllm.cpu.isa`: the best this CPU runs, or `LITLLM_CPU_ISA`'s), with OpenMP, into
`$LITLLM_HOME/kernels/<stem>-<hash>.so`, once per source, compiler, flags and CPU, and loaded with ctypes. OpenMP
resolves to the runtime torch has already loaded, so the kernels share its threads. Without a compiler, on a
platform other than Linux, or with the kernel's switch set to 0, `load` returns None and the caller keeps torch's
way.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import sys
import threading
import warnings
from pathlib import Path

from litllm.paths import atomic_path, litllm_home

FLAGS = ["-O3", "-fopenmp", "-fPIC", "-shared", "-fno-math-errno"]
REORDER_SUMS = ["-fassociative-math", "-fno-signed-zeros", "-fno-trapping-math"]
# lets the compiler vectorize a dot product's sum (-fassociative-math needs the other two); -ffast-math is left out:
# it would assume no infinities
_build_lock = threading.Lock()


def load(source: str, switch: str, what: str, fallback: str, flags: tuple[str, ...] = ()) -> ctypes.CDLL | None:
    """The library built from `source` (a file next to this module) with FLAGS and `flags` (those of an instruction
    set among them: `litllm.cpu.isa.build_flags`), or None if the environment variable `switch` is 0 or it cannot be
    built; then one warning says so: "could not build its {what} ({error}); {fallback}"."""
    if os.environ.get(switch, "1") == "0" or not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(str(build(Path(__file__).with_name(source), flags)))
    except (OSError, subprocess.SubprocessError) as err:
        warnings.warn(
            f"litllm could not build its {what} ({err}); {fallback}. Install a C compiler with OpenMP (gcc) or set "
            f"{switch}=0 to silence this.",
            stacklevel=4,
        )
        return None


def build(source: Path, flags: tuple[str, ...] = ()) -> Path:
    """The shared library of `source`, compiled now unless this source, compiler, flags and CPU already have one."""
    compiler = os.environ.get("CC") or "cc"
    if shutil.which(compiler) is None:
        raise OSError(f"no C compiler: {compiler!r} is not on PATH")
    version = _compiler_version(compiler)
    flags = (*FLAGS, *flags)
    key = hashlib.sha256("\0".join([source.read_text(), compiler, version, *flags, cpu_identity()]).encode())
    target = litllm_home() / "kernels" / f"cpu_{source.stem}-{key.hexdigest()[:16]}.so"
    with _build_lock:
        if not target.exists():
            # atomic: another process building the same file sees all of it or nothing
            with atomic_path(target) as tmp:
                done = subprocess.run([compiler, *flags, str(source), "-o", str(tmp)], capture_output=True, text=True)
                if done.returncode != 0:
                    raise OSError(f"{compiler} failed: {done.stderr.strip()[-500:]}")
    return target


@functools.cache  # once per process, not once per kernel
def _compiler_version(compiler: str) -> str:
    return subprocess.run([compiler, "--version"], capture_output=True, text=True, check=True).stdout


@functools.cache
def cpu_identity() -> str:
    """What -march=native compiles for: the processor's model and feature flags."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return ""
    return "\n".join(sorted({line for line in lines if line.startswith(("model name", "flags"))}))
