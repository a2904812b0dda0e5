"""Which CPU kernel multiplies activations by a linear layer's weight at inference, chosen by timing on this CPU.

The fastest way differs from one CPU to the next, and decoding spends nearly all its time there. Measured with
torch 2.13, 2 threads, weights read from memory (not cache), one row (one decoded token):

| CPU | float32 | bfloat16 |
| --- | --- | --- |
| AMD EPYC (Zen 5) | oneDNN 2.0x MKL's `F.linear`; prepacked 2.5x | prepacked oneDNN 1.6x `F.linear`; `torch.mv` 0.6x |
| Intel Xeon (AMX) | `F.linear` = oneDNN | `torch.mv` 1.3x `F.linear` |

Packing takes weights into `cpu_gemm`'s tiles where that C kernel builds and `takes` their dtype (on the EPYC,
against oneDNN's prepacked kernel: float32 1.15x at one row, 1.47x at 16; bfloat16 1.14x and 1.47x), the others
into oneDNN's blocked layout.

So the choice is timed, for each (dtype, one row or several, prepacked or not, threads): on a model's own weights
when the generation engine first runs it (`packing.pack_if_faster`), else on synthetic weights at the first call;
it holds for the rest of the process.

Training is never timed: the float32 kernel of a training step (`training_gemm`: F.linear through BLAS, or oneDNN's
`OneDNNLinear`) rounds differently from the other, and a choice that depended on how busy the machine was when a
process started made the same recipe give different weights. It is a rule instead: `LITLLM_TRAINING_GEMM=linear` or
`onednn` if set, else oneDNN on a non-Intel CPU with AVX-512 (AMD Zen 5: 2.2x MKL's forward, 1.5-2x its backward)
and F.linear elsewhere: on an Intel Xeon with AVX-512 MKL is Intel's own and won (forward and backward of
pythia-160m's layers over 2048 rows, alternated: 238 against oneDNN's 160 GFLOP/s), and on an AVX2 EPYC BLAS was as
fast or faster. With F.linear, a large frozen weight (a LoRA run's base) multiplies through MKL's packed copy of it
(`litllm.cpu.frozen`), by the same rule. A run keeps its kernel in its checkpoints (`training_record`) and a
resumed run takes it back (`follow_training_record`), so that it goes on as it started on any machine, and all ranks
of a run take rank 0's. Inside `training_kernels()` (a training run's validation and tests) inference takes the same
rule instead of its timed choice: the kernels here do not give the same bits as each other, so a logged validation
loss would otherwise depend on timing too.
"""

import contextlib
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F

from litllm.cpu import gemm as cpu_gemm
from litllm.cpu import isa
from litllm.cpu.isa import cpu_model
from litllm.cpu.memory import return_freed_memory

PROBE_BYTES = 16 * 2**20  # weights the probe streams through (the ranking held from 4 to 48 MiB here)
PROBE_SHAPE = (2048, 1024)  # (out, in) of each probe weight: the size of a small model's projections
PROBE_ROWS = 8  # rows of the several-rows probe: a batched decode step

_chosen: dict[tuple, str] = {}


def plain(w: torch.Tensor) -> bool:
    """Whether the kernels here take this weight at all: a plain float32, bfloat16 or float16 CPU tensor."""
    if w.device.type != "cpu" or w.layout != torch.strided or type(w) not in (torch.Tensor, torch.nn.Parameter):
        return False  # quantized or otherwise wrapped weights keep their own kernels
    return w.dtype in (torch.float32, torch.bfloat16, torch.float16)


def onednn_takes(dtype: torch.dtype) -> bool:
    """Whether oneDNN multiplies this dtype here: float32, and bfloat16 where it is native (`isa.native_bfloat16`;
    on AVX2 oneDNN's bfloat16 path is a slow reference one, or refuses)."""
    if not torch.backends.mkldnn.is_available():
        return False
    return dtype == torch.float32 or (dtype == torch.bfloat16 and isa.native_bfloat16())


def onednn_applies(w: torch.Tensor) -> bool:
    """Whether oneDNN takes this weight here: a plain CPU tensor of a dtype it multiplies (`onednn_takes`)."""
    return plain(w) and onednn_takes(w.dtype)


def can_pack(w: torch.Tensor) -> bool:
    """Whether `pack` takes this weight: litllm's kernel (`cpu_gemm`) or oneDNN does, and it has the version
    counter that tells a stale copy."""
    return plain(w) and (cpu_gemm.supports(w) or onednn_applies(w)) and not w.is_inference()


PACK_BLOCK_BYTES = 16 * 2**20  # a weight larger than this (an output head) is packed in blocks of rows

Packed = tuple[torch.Tensor, ...]
"""A weight's consecutive row blocks, packed: one block for most weights, several for a large one. Blocks of a dtype
`cpu_gemm` takes here are in its tiles (when their rows are a multiple of its tile), the others in oneDNN's blocked
layout."""


def pack(w: torch.Tensor, packed_block: Callable[[torch.Tensor], None] | None = None) -> Packed:
    """The packed copy of a weight (`can_pack` must hold), in blocks of at most PACK_BLOCK_BYTES of rows;
    `unpacked` gives the weight back. `packed_block(rows)` is called with each block of w's rows once it is packed."""
    tiles = cpu_gemm.takes(w.dtype)
    step = max(1, PACK_BLOCK_BYTES // max(1, w.shape[1] * w.element_size()))
    if tiles:
        step = max(cpu_gemm.TILE, step // cpu_gemm.TILE * cpu_gemm.TILE)
    blocks: list[torch.Tensor] = []
    try:
        for start in range(0, w.shape[0], step):
            rows = w[start : start + step]
            if tiles and cpu_gemm.supports(rows):
                blocks.append(cpu_gemm.pack(rows))
            else:
                blocks.append(torch.ops.mkldnn._reorder_linear_weight(rows, 16))
            if packed_block is not None:
                packed_block(rows)
    except BaseException:
        if packed_block is not None:  # the rows handed over so far get their values back
            for i, block in enumerate(blocks):
                w[i * step : (i + 1) * step].copy_(dense(block))
        raise
    return tuple(blocks)


def dense(block: torch.Tensor) -> torch.Tensor:
    """The rows of the weight that one packed block holds."""
    return cpu_gemm.unpack(block) if cpu_gemm.is_tiles(block) else block.to_dense()


def out_features(block: torch.Tensor) -> int:
    return cpu_gemm.out_features(block) if cpu_gemm.is_tiles(block) else block.shape[0]


def unpacked(packed: Packed | list[torch.Tensor]) -> torch.Tensor:
    """The plain weight a packed copy was made from. Given a list of blocks, it empties the list as it goes, so that
    each block's memory can go back as soon as its rows are copied: a large head then never exists three times over
    (its packed blocks, their dense copies and the joined weight: pythia-160m float32 peaked at 1.5x the weights when
    a probe that packing lost gave the weights back)."""
    if len(packed) == 1:
        return dense(packed[0])
    blocks = packed if isinstance(packed, list) else list(packed)
    rows = sum(out_features(block) for block in blocks)
    weight = torch.empty(rows, in_features(blocks[0]), dtype=blocks[0].dtype)  # pages are touched as rows are copied
    start = 0
    while blocks:
        block = blocks.pop(0)
        end = start + out_features(block)
        weight[start:end] = dense(block)
        start = end
        del block
        return_freed_memory()
    return weight


def in_features(w: torch.Tensor | Packed) -> int:
    block = w[0] if isinstance(w, tuple) else w
    return cpu_gemm.in_features(block) if cpu_gemm.is_tiles(block) else block.shape[1]


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, packed: Packed | None) -> torch.Tensor:
    """`F.linear(x, weight, bias)` on the CPU without autograd, by the kernel this machine runs fastest."""
    rows = x.numel() // x.shape[-1] if x.shape[-1] else 0
    if rows == 0 or x.dtype != weight.dtype or not plain(weight):
        return F.linear(x, weight, bias)
    if fixed_kernels():  # a training run's evaluation: the training rule, never a timed choice
        return run_nd("onednn" if train_with_onednn(x, weight) else "linear", x, weight, bias, None)
    return run_nd(choose(weight.dtype, rows == 1, packed is not None), x, weight, bias, packed)


def packed_linear(x: torch.Tensor, packed: Packed, bias: torch.Tensor | None) -> torch.Tensor:
    """`F.linear` by the packed copy alone (its weight was released)."""
    return run_nd("packed", x, None, bias, packed)


def run_nd(
    kernel: str, x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, packed: Packed | None
) -> torch.Tensor:
    """`run` on x of any shape (..., in) -> (..., out)."""
    rows = x.numel() // x.shape[-1]
    return run(kernel, x.reshape(rows, -1), weight, bias, packed).view(*x.shape[:-1], -1)


def run(
    kernel: str,
    x: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    packed: Packed | None,
) -> torch.Tensor:
    """One kernel on 2-D `x` (rows, in) -> (rows, out)."""
    if kernel == "mv":
        y = torch.mv(weight, x[0]).unsqueeze(0)
        return y if bias is None else y + bias
    if kernel == "onednn":
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
    if kernel == "packed":
        return run_packed(x, packed, bias)
    return F.linear(x, weight, bias)


def run_packed(x: torch.Tensor, packed: Packed, bias: torch.Tensor | None) -> torch.Tensor:
    """2-D x (rows, in) by a packed weight, block by block into the columns of one output."""
    if len(packed) == 1:
        if cpu_gemm.is_tiles(packed[0]):
            return cpu_gemm.linear(x, packed[0], bias)
        return torch.ops.mkldnn._linear_pointwise(x, packed[0], bias, "none", [], "")
    if all(map(cpu_gemm.is_tiles, packed)) and x.dtype == packed[0].dtype:
        return cpu_gemm.linear_blocks(x, packed, bias)
    out = torch.empty(x.shape[0], sum(out_features(block) for block in packed), dtype=x.dtype)
    start = 0
    for block in packed:
        end = start + out_features(block)
        b = None if bias is None else bias[start:end]
        if cpu_gemm.is_tiles(block):
            cpu_gemm.linear(x, block, b, out=out[:, start:end])
        else:
            out[:, start:end] = torch.ops.mkldnn._linear_pointwise(x, block, b, "none", [], "")
        start = end
    return out


def choose(dtype: torch.dtype, one_row: bool, packed: bool) -> str:
    """The fastest kernel for this case: as recorded by `record` (a model timed on its own weights), else timed on
    synthetic weights on the first call of the process."""
    key = (dtype, one_row, packed, torch.get_num_threads(), isa.active())
    if key not in _chosen:
        _chosen[key] = fastest(dtype, one_row, packed)
    return _chosen[key]


def record(dtype: torch.dtype, one_row: bool, packed: bool, kernel: str) -> None:
    """Make `kernel` the choice for this case from now on in this process."""
    _chosen[(dtype, one_row, packed, torch.get_num_threads(), isa.active())] = kernel


def unpacked_candidates(one_row: bool, dtype: torch.dtype) -> list[str]:
    """The kernels an unpacked weight of this dtype may run on here."""
    return ["linear"] + ["onednn"] * onednn_takes(dtype) + ["mv"] * one_row


@torch.compiler.disable  # timed eagerly, also when first reached from inside a compiled region
@torch.no_grad()
def fastest(dtype: torch.dtype, one_row: bool, packed: bool) -> str:
    """Time each candidate over PROBE_BYTES of synthetic weights; return the fastest."""
    out, inp = PROBE_SHAPE
    count = max(2, PROBE_BYTES // (out * inp * torch.empty((), dtype=dtype).element_size()))
    weights = [torch.full(PROBE_SHAPE, 0.01, dtype=dtype) for _ in range(count)]
    rows = 1 if one_row else PROBE_ROWS
    seconds = {kernel: seconds_per_pass(kernel, rows, weights) for kernel in unpacked_candidates(one_row, dtype)}
    packs = []
    if packed and can_pack(weights[0]):
        while weights:  # one copy at a time: the probe never holds more than PROBE_BYTES
            packs.append(pack(weights.pop()))
        seconds["packed"] = seconds_per_pass("packed", rows, packs)
    del weights, packs
    return_freed_memory()
    return min(seconds, key=seconds.get)


@torch.compiler.disable  # timed eagerly, also when first reached from inside a compiled region
def seconds_per_pass(kernel: str, rows: int, weights: list[torch.Tensor] | list[Packed]) -> float:
    """Seconds of the fastest of 3 passes of `kernel` over all the weights (the packed copies for "packed"), `rows`
    rows of input each, after one warm-up pass."""
    dtype = (weights[0][0] if kernel == "packed" else weights[0]).dtype
    inputs = {in_features(w): torch.full((rows, in_features(w)), 0.5, dtype=dtype) for w in weights}
    passes = []
    for _ in range(4):
        start = time.perf_counter()
        for w in weights:
            if kernel == "packed":
                run(kernel, inputs[in_features(w)], None, None, w)
            else:
                run(kernel, inputs[in_features(w)], w, None, None)
        passes.append(time.perf_counter() - start)
    return_freed_memory()  # oneDNN's reorders of unpacked weights leave freed temporaries behind
    return min(passes[1:])


TRAINING_GEMMS = ("linear", "onednn")
TRAINING_GEMM_SWITCH = "LITLLM_TRAINING_GEMM"
_training_gemm: str | None = None  # this run's kernel (`use_training_gemm`); None: `training_gemm_rule`'s
_fixed = threading.local()  # .depth: how many `training_kernels()` this thread is inside


def autocast_dtype(x: torch.Tensor) -> torch.dtype | None:
    """The lower precision autocast runs matrix products in here (None where it is off)."""
    device = x.device.type  # meta (a model being built) has no autocast
    on = torch.amp.is_autocast_available(device) and torch.is_autocast_enabled(device)
    return torch.get_autocast_dtype(device) if on else None


def train_with_onednn(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether a float32 linear layer trains through `OneDNNLinear` rather than F.linear (BLAS): `training_gemm`."""
    if torch.compiler.is_compiling():  # first, so that tracing drops all of this: compiled graphs lower their own
        return False
    if x.dtype != torch.float32 or weight.dtype != torch.float32 or not onednn_applies(weight):
        return False
    if torch.is_autocast_enabled("cpu"):
        return False  # autocast casts F.linear's inputs itself
    return training_gemm() == "onednn"


def training_gemm() -> str:
    """The float32 training kernel, "linear" or "onednn": the run's (`use_training_gemm`), else `training_gemm_rule`."""
    return _training_gemm or training_gemm_rule()


def training_gemm_rule() -> str:
    """The float32 training kernel from LITLLM_TRAINING_GEMM, else from the CPU's features (never timed): "onednn"
    where the CPU has AVX-512, is not an Intel one (whose BLAS, MKL, is faster there) and torch has oneDNN, else
    "linear"."""
    override = os.environ.get(TRAINING_GEMM_SWITCH, "").strip()
    if override:
        if override not in TRAINING_GEMMS:
            raise ValueError(f"{TRAINING_GEMM_SWITCH}={override!r} is not a training kernel: use linear or onednn")
        return override
    onednn = isa.has_avx512() and not intel_cpu() and torch.backends.mkldnn.is_available()
    return "onednn" if onednn else "linear"


def intel_cpu() -> bool:
    """Whether the CPU is an Intel one (its model name says so), where MKL is the fastest float32 BLAS."""
    return "Intel" in cpu_model()


def use_training_gemm(kernel: str | None) -> None:
    """Make `kernel` ("linear" or "onednn") this process's float32 training kernel; None: `training_gemm_rule`'s."""
    global _training_gemm
    if kernel is not None and kernel not in TRAINING_GEMMS:
        raise ValueError(f"training kernel {kernel!r} is not one of {', '.join(TRAINING_GEMMS)}")
    _training_gemm = kernel


def training_record() -> dict[str, str]:
    """What a checkpoint keeps of its run's training kernel: which one, and on which CPU."""
    return {"kernel": training_gemm(), "cpu": cpu_model()}


def follow_training_record(record: object) -> None:
    """Continue with the kernel of a checkpoint's `training_record`, so that a resumed run computes as the run it
    continues (LITLLM_TRAINING_GEMM, when set, still wins). Warns, naming both, where the kernel or the CPU differ:
    the run then does not go on bit for bit as it would have."""
    if not isinstance(record, dict) or record.get("kernel") not in TRAINING_GEMMS:
        return  # a checkpoint from before kernels were recorded, or not litllm's: this machine's rule
    kernel, cpu = record["kernel"], str(record.get("cpu", ""))
    override = os.environ.get(TRAINING_GEMM_SWITCH, "").strip()
    if override and override != kernel:
        use_training_gemm(training_gemm_rule())
        warnings.warn(
            f"the checkpoint was trained with the {kernel} float32 kernel; continuing with {override} as "
            f"{TRAINING_GEMM_SWITCH} asks: the run will not continue bit for bit",
            stacklevel=2,
        )
        return
    use_training_gemm(kernel)
    if kernel == "onednn" and not torch.backends.mkldnn.is_available():
        warnings.warn(
            "the checkpoint was trained with the onednn float32 kernel, which this torch lacks; continuing with "
            "linear: the run will not continue bit for bit",
            stacklevel=2,
        )
    elif cpu and cpu != cpu_model():
        warnings.warn(
            f"the checkpoint was trained on {cpu!r}, this is {cpu_model() or 'another CPU'!r}; continuing with its "
            f"{kernel} float32 kernel, but the last bits of the weights may differ from a run that stayed there",
            stacklevel=2,
        )


def fixed_kernels() -> bool:
    """Whether this thread is inside `training_kernels()`."""
    return getattr(_fixed, "depth", 0) > 0


@contextlib.contextmanager
def training_kernels() -> Iterator[None]:
    """Inside, inference (no autograd) on this thread takes the training kernel (`train_with_onednn`) instead of
    the timed choice, and no packed copy: a training run's validation and tests give the same bits in any process."""
    _fixed.depth = getattr(_fixed, "depth", 0) + 1
    try:
        yield
    finally:
        _fixed.depth -= 1


def product(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """`F.linear(x, weight, bias)` for 2-D x, through oneDNN where `train_with_onednn` says (a training step's own
    matrix products, outside autograd)."""
    if train_with_onednn(x, weight):
        return run("onednn", x, weight, bias, None)
    return F.linear(x, weight, bias)


class OneDNNLinear(torch.autograd.Function):
    """`F.linear` with oneDNN's matrix products forward and backward (float32 on the CPU): measured 2.2x MKL's
    forward and 1.5-2x its two backward products on an AMD EPYC (Zen 5), where BLAS is slow."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        # only what the wanted gradients need: a frozen weight (LoRA's base) keeps no input alive for backward
        want_x, want_w = ctx.needs_input_grad[:2]
        ctx.save_for_backward(x if want_w else None, weight if want_x else None)
        ctx.has_bias, ctx.x_shape = bias is not None, x.shape
        return run_nd("onednn", x, weight, bias, None)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        g = grad.reshape(-1, grad.shape[-1])  # (rows, out)
        dx = dw = db = None
        if ctx.needs_input_grad[0]:  # g @ W: a linear layer whose weight is W^T
            dx = torch.ops.mkldnn._linear_pointwise(g, weight.t(), None, "none", [], "").view(ctx.x_shape)
        if ctx.needs_input_grad[1]:  # g^T @ x: (out, in)
            dw = torch.ops.mkldnn._linear_pointwise(g.t(), x.reshape(-1, x.shape[-1]).t(), None, "none", [], "")
        if ctx.has_bias and ctx.needs_input_grad[2]:
            db = g.sum(0)
        return dx, dw, db


def chosen() -> dict[str, str]:
    """The choices made so far in this process, e.g. {"torch.float32, 1 row, packed, 2 threads": "packed"}."""
    return {describe(key): kernel for key, kernel in _chosen.items()}


def describe(key: tuple) -> str:
    dtype, one_row, packed, threads, isa_name = key
    rows, layout = "1 row" if one_row else "rows", "packed" if packed else "unpacked"
    return f"{dtype}, {rows}, {layout}, {threads} threads, {isa_name}"
