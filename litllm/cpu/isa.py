"""Which x86-64 instruction set litllm's C kernels are built for: the best this CPU runs, or the one
`LITLLM_CPU_ISA` names.

- amx (avx512 and AMX's tiles with bfloat16, Intel Sapphire Rapids and later): as avx512, and bfloat16 weights
  multiplied 16 rows x 16 outputs x 32 k's at a time by AMX tile instructions, at every row count (batch 1 too).
- avx512 (needs avx512f, bw, dq, vl): 8 rows x 2 tiles per pass over the weights, a 16-wide sum per register, each
  row's x broadcast once per step into a register; bfloat16 by the CPU's dot products where it has avx512_bf16,
  else widened by a shift.
- avx2 (avx2, fma, f16c, bmi2): 6 rows per pass (4 for bfloat16 and int8), a sum in two of the 16 registers;
  bfloat16 widened by a shift, float16 by F16C.
- generic (any x86-64): 2 rows per pass, no fused multiply-adds: correct everywhere, not fast.

Most laptops, cloud VMs, AMD Zen 2/3 and Intel servers before Sapphire Rapids run avx2; forcing a lower ISA on a
better CPU (`LITLLM_CPU_ISA=avx2`) builds and runs that path here, so that every path is tested and benchmarked on
one machine. The ISA also decides what litllm treats as native: oneDNN's bfloat16 products and the float32 training
kernel rule count as native only under avx512 (`native_bfloat16`); the default training precision is bf16-mixed only
where the CPU also multiplies bfloat16 in hardware (`bfloat16_training`: avx512_bf16 or AMX). To make
torch's own kernels behave as on an AVX2 CPU too, set `ONEDNN_MAX_CPU_ISA=AVX2`, `ATEN_CPU_CAPABILITY=avx2` and
`MKL_ENABLE_INSTRUCTIONS=AVX2` before torch starts (`emulation_environment`; the benchmarks' `--isa` does).
On other architectures there is one build, "generic", for the machine's own instruction set.
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
from collections.abc import Iterator

from litllm.cpu.native import cpu_identity

ISAS = ("amx", "avx512", "avx2", "generic")  # best first
SWITCH = "LITLLM_CPU_ISA"
AVX512 = ("avx512f", "avx512bw", "avx512dq", "avx512vl", "avx2", "fma", "f16c")
NEEDS = {
    "amx": (*AVX512, "amx_tile", "amx_bf16"),
    "avx512": AVX512,
    "avx2": ("avx2", "fma", "f16c", "bmi2"),
    "generic": (),
}
# compiler flags of each build: avx512 only ever builds on a CPU that has it, so it may use all the CPU has
NO_AMX = ("-mno-amx-tile", "-mno-amx-bf16", "-mno-amx-int8")
FLAGS = {
    "amx": ("-march=native", "-mprefer-vector-width=512"),  # Intel tunings would split 512-bit loads
    "avx512": ("-march=native", "-mprefer-vector-width=512", *NO_AMX),
    "avx2": ("-mavx", "-mavx2", "-mfma", "-mf16c", "-mbmi", "-mbmi2", "-mtune=native"),
    "generic": ("-mtune=native",),
}
LEVEL = {"amx": 3, "avx512": 2, "avx2": 1, "generic": 0}  # what gemm.c's isa() answers for each build
# torch's own switches that make its kernels run as on a CPU with only this ISA
EMULATION = {
    "amx": {},
    "avx512": {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"},  # oneDNN without AMX (a CPU with at most avx512_bf16)
    "avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "generic": {"ONEDNN_MAX_CPU_ISA": "SSE41", "ATEN_CPU_CAPABILITY": "default", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"},
}

_forced: str | None = None  # `use`'s choice, over the environment's


def is_x86() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64")


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (/proc/cpuinfo; empty elsewhere)."""
    flags: set[str] = set()
    for line in cpu_identity().splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
    return frozenset(flags)


def cpu_model() -> str:
    """The processor's model name ("" where /proc/cpuinfo does not say)."""
    for line in cpu_identity().splitlines():
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    return ""


def amd_cpu() -> bool:
    """Whether the processor is an AMD one (its model name says so)."""
    return "AMD" in cpu_model()


@functools.cache
def supported() -> tuple[str, ...]:
    """The ISAs this CPU runs, best first ("generic" always)."""
    if not is_x86():
        return ("generic",)
    return tuple(name for name in ISAS if all(flag in cpu_flags() for flag in NEEDS[name]))


def check(name: str) -> str:
    """`name` if this CPU runs it; else a ValueError naming it and what is accepted here."""
    if name not in ISAS:
        raise ValueError(
            f"{SWITCH}={name!r} is not an instruction set litllm builds for: use {', '.join(ISAS)} or auto"
        )
    if name not in supported():
        missing = [flag for flag in NEEDS[name] if flag not in cpu_identity()]
        raise ValueError(
            f"{SWITCH}={name!r}: this CPU lacks {', '.join(missing) or name}; it runs {', '.join(supported())}"
        )
    return name


def active() -> str:
    """The ISA the kernels are built for in this process: `use`'s, else `LITLLM_CPU_ISA`'s (auto or unset: the best
    this CPU runs)."""
    return _forced or _from_environment()


@functools.cache  # read once: decoding asks for every linear layer
def _from_environment() -> str:
    value = os.environ.get(SWITCH, "").strip().lower()
    return supported()[0] if value in ("", "auto") else check(value)


@contextlib.contextmanager
def use(name: str) -> Iterator[None]:
    """Inside, the kernels run the `name` build (tests run every path the CPU can execute this way)."""
    global _forced
    previous, _forced = _forced, check(name)
    try:
        yield
    finally:
        _forced = previous


def has_avx512() -> bool:
    """Whether the kernels run an AVX-512 path here (amx or avx512: the CPU has AVX-512 and LITLLM_CPU_ISA does not
    ask for less)."""
    return LEVEL[active()] >= LEVEL["avx512"]


def native_bfloat16() -> bool:
    """Whether bfloat16 products count as native here: the active ISA is amx or avx512 and torch's oneDNN does them
    (AVX-512 cores; without avx512_bf16 oneDNN still converts in registers at full vector width). On AVX2 oneDNN
    falls back to a slow reference path, or refuses."""
    import torch

    return has_avx512() and torch.backends.mkldnn.is_available() and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


BF16_HARDWARE = ("avx512_bf16", "amx_bf16")  # flags of CPUs that multiply bfloat16 in hardware


def bfloat16_training() -> bool:
    """Whether bf16-mixed trains faster than float32 here: bfloat16 is native (`native_bfloat16`) and multiplied in
    hardware (avx512_bf16 or AMX). Without them oneDNN widens bfloat16 in registers: on an AVX-512 Intel Xeon without
    avx512_bf16 its bfloat16 product ran at 61 GFLOP/s against float32's 272, and training at 0.58x float32's speed."""
    return native_bfloat16() and any(flag in cpu_flags() for flag in BF16_HARDWARE)


def build_flags(name: str) -> tuple[str, ...]:
    """The compiler flags of the `name` build on this machine."""
    return FLAGS[name] if is_x86() else ("-march=native",)


def emulation_environment(name: str) -> dict[str, str]:
    """The environment that makes a new process run as on a CPU with only ISA `name`: litllm's kernels and torch's."""
    return {SWITCH: check(name), **EMULATION[name]}


def run_as(name: str | None) -> None:
    """Run this script again as on a CPU with only ISA `name` (`emulation_environment`), unless its environment
    already says so; None or "auto" does nothing. For benchmarks: torch reads its switches when it starts, so the
    process is replaced (`os.execve`) before any work; processes it starts inherit the environment."""
    if name in (None, "auto"):
        return
    import sys

    wanted = emulation_environment(name)
    if all(os.environ.get(key) == value for key, value in wanted.items()):
        return
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **wanted})
