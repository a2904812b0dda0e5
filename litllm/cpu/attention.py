"""One-query attention over a CPU KV cache (a decoding step), by a small C kernel compiled on first use.

torch's CPU attention (SDPA's flash kernel) runs one query per row far below memory bandwidth: 16 rows of up to 96
keys with pythia-160m's heads took ~560 us a layer in float32 (~13 GB/s), and a bfloat16 cache was slower still;
batched decoding spent a third of its time there. `attention.c` reads each row's keys and values from memory
once, prefetching ahead: ~185 us for that layer in float32 and ~95 us from a bfloat16 cache (AMD EPYC, 2 threads,
~38 GB/s).

The kernel is built on first use (`litllm.cpu.native`). Without a compiler, or with `LITLLM_CPU_ATTENTION=0`,
`available()` is False and the model keeps torch's kernel.
"""

from __future__ import annotations

import ctypes
import functools

import torch

from litllm.cpu import isa, native

DTYPES = {torch.float32: "attend_float32", torch.bfloat16: "attend_bfloat16"}


@torch.compiler.assume_constant_result  # a compiled graph asks once, while tracing
def available() -> bool:
    """Whether the kernel is built (or builds now) and loads on this machine."""
    return _library(isa.active()) is not None


def kv_cache_dtype(dtype: torch.dtype, device: torch.device | str) -> torch.dtype:
    """The dtype of the KV cache of a model in `dtype`: its own, except float32 for bfloat16 on a CPU where
    this kernel does not build (`available()`).

    Decoding attends with one query per row, and torch's CPU attention kernel runs one bfloat16 query 2-4x slower
    than one float32 query (batch 1-16, 80-1000 keys, AMD EPYC: 266 vs 78 us a layer for one row and 1000 keys), at
    twice the memory (pythia-160m: 72 KiB a token of context instead of 36 KiB). litllm's kernel reads a bfloat16
    cache at half the bytes of a float32 one.
    """
    if dtype == torch.bfloat16 and torch.device(device).type == "cpu" and not available():
        return torch.float32
    return dtype


def supports(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> bool:
    """Whether `attend` takes these tensors: CPU, a float32/bfloat16 cache, contiguous over the head size."""
    return (
        q.device.type == "cpu"
        and k.dtype in DTYPES
        and v.dtype == k.dtype
        and k.stride(-1) == 1
        and v.stride(-1) == 1
        and not q.requires_grad
        and available()
    )


def attend(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, scale: float, cap: float = 0
) -> torch.Tensor:
    """Attention of q (B, nh, 1, hs) to keys lo[b]..hi[b]-1 of k, v (B, nkv, S, hs) of row b: (B, nh, 1, hs) in
    float32. cap > 0 caps the scores at cap * tanh(score / cap). `supports(q, k, v)` must hold."""
    if torch.compiler.is_compiling():  # ctypes cannot be traced: the graph holds one opaque operator
        return _operator(q, k, v, lo, hi, scale, cap)
    return _run(q, k, v, lo, hi, scale, cap)


def _run(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, scale: float, cap: float
) -> torch.Tensor:
    B, nh, _, hs = q.shape
    nkv = k.shape[1]
    S = k.shape[2]
    if q.shape[2] != 1 or k.shape[0] != B or v.shape[:3] != k.shape[:3] or nh % nkv or not lo.shape == hi.shape == (B,):
        raise ValueError(f"one query per row expected: q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}")
    qf = q.to(torch.float32).contiguous()
    lo, hi = lo.to(torch.int64).contiguous(), hi.to(torch.int64).contiguous()
    out = torch.empty(B, nh, 1, hs, dtype=torch.float32)
    status = getattr(_library(isa.active()), DTYPES[k.dtype])(
        qf.data_ptr(), k.data_ptr(), v.data_ptr(), out.data_ptr(), B, nkv, nh // nkv, hs, S,
        k.stride(0), k.stride(1), k.stride(2), v.stride(0), v.stride(1), v.stride(2),
        lo.data_ptr(), hi.data_ptr(), scale, cap, torch.get_num_threads(),
    )  # fmt: skip
    if status == 2:
        raise ValueError(f"key ranges must satisfy 0 <= lo <= hi <= {S} (the keys given), got lo={lo}, hi={hi}")
    if status:
        raise MemoryError("cpu_attention: out of memory for the attention scores")
    return out


def store(cache: torch.Tensor, new: torch.Tensor, positions: torch.Tensor) -> bool:
    """cache[b, :, positions[b]] = new[b, :, 0] for a cache (B, nkv, S, hs) and new (B, nkv, 1, hs) of its dtype, on
    the CPU: one pass over B * nkv rows where torch's indexed assignment took ~30 us a call (a decoding step makes
    two a layer). Returns False, doing nothing, when the kernel does not take these tensors."""
    B, nkv, S, hs = cache.shape
    if (
        torch.compiler.is_compiling()
        or cache.device.type != "cpu"
        or new.dtype != cache.dtype
        or new.shape != (B, nkv, 1, hs)
        or cache.stride(-1) != 1
        or new.stride(-1) != 1
        or positions.dtype != torch.int64
        or not positions.is_contiguous()
        or not available()
    ):
        return False
    if positions.shape != (B,):
        raise ValueError(f"one position per row expected, got positions of shape {tuple(positions.shape)} for {B} rows")
    size = cache.element_size()
    status = _library(isa.active()).store(
        cache.data_ptr(), new.data_ptr(), B, nkv, hs * size, S,
        cache.stride(0) * size, cache.stride(1) * size, cache.stride(2) * size,
        new.stride(0) * size, new.stride(1) * size, positions.data_ptr(),
    )  # fmt: skip
    if status:
        raise ValueError(f"positions must be within 0..{S - 1} (the cache's slots), got {positions.tolist()}")
    return True


@functools.cache
def _library(name: str) -> ctypes.CDLL | None:
    """The kernel built for instruction set `name` (`litllm.cpu.isa`), loaded."""
    lib = native.load(
        "attention.c",
        "LITLLM_CPU_ATTENTION",
        "CPU attention kernel",
        "decoding uses torch's slower one",
        flags=(*isa.build_flags(name), *native.REORDER_SUMS),
    )
    if lib is None:
        return None
    pointer, i64 = ctypes.c_void_p, ctypes.c_int64
    for name in DTYPES.values():
        fn = getattr(lib, name)
        fn.restype = ctypes.c_int
        fn.argtypes = [pointer] * 4 + [i64] * 11 + [pointer] * 2 + [ctypes.c_float] * 2 + [ctypes.c_int]
    lib.store.restype = ctypes.c_int
    lib.store.argtypes = [pointer] * 2 + [i64] * 9 + [pointer]
    return lib


@torch.library.custom_op("litllm::cpu_attention", mutates_args=())
def _operator(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, scale: float, cap: float
) -> torch.Tensor:
    return _run(q, k, v, lo, hi, scale, cap)


@_operator.register_fake
def _(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, scale: float, cap: float):
    return q.new_empty(q.shape, dtype=torch.float32)
