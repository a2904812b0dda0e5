"""Copies of a frozen weight (a LoRA run's base) kept while it is unchanged: its cast for autocast, and MKL's packed
layout for its float32 products.

A copy is kept per weight and per kind, and dropped when the weight's storage or version counter moves (an optimizer
step, `load_state_dict`, a merge), when the weight is freed, or by `forget()` (the end of a training run). None is
kept in a distributed run: FSDP gathers a sharded weight for each use and frees it after, and a kept copy would hold
every layer whole.

**Packed products.** BLAS (MKL) copies both matrices of every product into its own blocked layout before it
multiplies. For a frozen weight that copy is the same at every step, and it is ~10% of a float32 LoRA step of
pythia-160m (batch 2 x 128; 2-core Intel Xeon with AVX-512, profiled with perf: MKL's copy routines 14.5% of the
step, most of it the weights, which are 3-9x the activations there). MKL can keep a matrix packed
(`cblas_sgemm_pack`, in torch as `torch.ops.mkl._mkl_reorder_linear_weight` and `_mkl_linear`): on that Xeon the
products of a block and of the output head ran at 300-305 GFLOP/s packed against 258-281 (blocks) and 240 against 191
(the head's forward) unpacked. Kept for the forward product of every frozen linear layer of PACK_BYTES or more and
for the output head's backward one too (its input gradient, the largest product of the step after the head's
forward), `benchmarks/finetune.py` (pythia-160m, 32-true, LoRA on query and value) ran 446-477 tokens/s against
414-431 before (peft 355-394 in the same runs), and the memory they add is one copy of those weights (each pack is
allocated larger than it fills; only the pages it writes are resident). The blocks' backward products stay unpacked:
packing them too would add as much memory again, which takes a LoRA run of pythia-160m past 0.6x the memory of full
finetuning, for a gain within that host's noise. A packed product rounds differently from the unpacked one (float32
round-off, not the same sums), so it is a rule, not a timed choice: it applies wherever the float32 training kernel is
BLAS (`kernels.training_gemm() == "linear"`) and torch has MKL, in every process alike.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable

import torch

from litllm.cpu import kernels, memory

# smallest weight packed: below it packing saved nothing measurable (2-core Xeon, 256 rows: 0.19 MiB 0.93-1.08x,
# 1 MiB 1.04x, 2 MiB 1.07-1.17x, 4 MiB 1.16-1.21x)
PACK_BYTES = 2**20

_kept: dict[tuple[int, object], tuple] = {}  # (id of a weight, kind) -> (weak reference, data_ptr, version, copy)


def kept(weight: torch.Tensor, kind: object, make: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """`make(weight)` (given the weight detached), made once per kind and kept while the weight is unchanged."""
    key = (id(weight), kind)
    entry = _kept.get(key)
    if entry is not None and entry[0]() is not weight:  # the id of a freed weight, taken by another
        entry = None
    if entry is None:
        weakref.finalize(weight, _kept.pop, key, None)
    if entry is None or entry[1:3] != (weight.data_ptr(), weight._version):
        _kept.pop(key, None)  # the stale copy goes before its successor is made
        entry = (weakref.ref(weight), weight.data_ptr(), weight._version, make(weight.detach()))
        _kept[key] = entry
    return entry[3]


def forget() -> None:
    """Drop every kept copy (a training run's end: its packed copies are as large as the weights)."""
    _kept.clear()


def cast(weight: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A frozen weight (no gradient) in `dtype`, cast once and kept while the weight is unchanged: autocast casts
    again at every use a weight that does not train (it caches only leaves that require grad), which for a LoRA run's
    base in bf16-mixed was ~80 ms of a ~310 ms pythia-160m step on 2 cores. The same rounding as autocast's, so the
    step computes the same numbers."""
    if weight.requires_grad or weight.dtype == dtype or torch.distributed.is_initialized():
        return weight.to(dtype)
    return kept(weight, dtype, lambda w: w.to(dtype))


@functools.cache
def mkl_packs() -> bool:
    """Whether this torch has MKL's packed float32 products (x86-64 builds)."""
    if not torch.backends.mkl.is_available():
        return False
    return hasattr(torch.ops.mkl, "_mkl_reorder_linear_weight") and hasattr(torch.ops.mkl, "_mkl_linear")


def packs_apply(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether x @ weight.T runs on a kept packed copy: a frozen float32 CPU weight of PACK_BYTES or more and float32
    x, without autocast, where the float32 training kernel is BLAS, outside a distributed run and a compiled graph."""
    if torch.compiler.is_compiling() or weight.requires_grad or not kernels.plain(weight) or x.numel() == 0:
        return False
    if x.dtype != torch.float32 or weight.dtype != torch.float32 or torch.is_autocast_enabled("cpu"):
        return False
    if weight.numel() * weight.element_size() < PACK_BYTES:
        return False
    return mkl_packs() and not torch.distributed.is_initialized() and kernels.training_gemm() == "linear"


def product(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, transposed: bool = False):
    """x (rows, in) @ weight.T + bias through weight's kept packed copy; transposed: x (rows, out) @ weight, the
    product that gives weight's input its gradient (a copy of its own). The same values as the unpacked product up to
    float32 round-off, for any number of rows (a pack does not depend on them; tests/test_frozen.py)."""
    x = x.contiguous()  # MKL reads x's rows at its own stride
    packed = packed_copy(weight, x.shape[0], transposed)
    return torch.ops.mkl._mkl_linear(x, packed, weight.t() if transposed else weight, bias, x.shape[0])


def packed_copy(weight: torch.Tensor, rows: int, transposed: bool = False) -> torch.Tensor:
    """weight's kept packed copy (of weight.T if transposed), made for products of `rows` rows if not kept yet."""
    return kept(weight, "packed, transposed" if transposed else "packed", functools.partial(pack, rows, transposed))


def pack(rows: int, transposed: bool, weight: torch.Tensor) -> torch.Tensor:
    """MKL's packed copy of weight (of weight.T if transposed) as the right-hand matrix of a product of `rows` rows.
    Its buffer is larger than the copy it holds (2.6x pythia-160m's qkv weight): freed memory kept for reuse
    (`memory.keep_freed_memory`) is handed back first, so that only the pages the copy writes become resident."""
    memory.return_freed_memory()
    return torch.ops.mkl._mkl_reorder_linear_weight(weight.t().contiguous() if transposed else weight, rows)


class PackedLinear(torch.autograd.Function):
    """`F.linear` of a frozen weight (`packs_apply`): the forward through its packed copy, the input's gradient by
    the plain product (g @ W), as autograd's own."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(weight)
        ctx.has_bias = bias is not None
        rows = x.numel() // x.shape[-1]
        return product(x.reshape(rows, x.shape[-1]), weight, bias).view(*x.shape[:-1], -1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        (weight,) = ctx.saved_tensors
        g = grad.reshape(-1, grad.shape[-1])  # (rows, out)
        dx = (g @ weight).view(*grad.shape[:-1], -1) if ctx.needs_input_grad[0] else None
        db = g.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return dx, None, db
