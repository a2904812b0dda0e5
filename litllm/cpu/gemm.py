"""Linear layers on the CPU by a small C kernel (`gemm.c`) on weights packed in tiles: the matrix products of
decoding steps, which oneDNN's prepacked kernel ran below what memory can feed.

A weight (N, K) is packed as N/16 tiles (`pack`); `linear` multiplies rows of activations by it, a chunk of rows per
pass over the weight, prefetching far ahead. Weights stay in their dtype (float32, bfloat16, float16, or int8 with a
scale per output: `litllm.quantize`'s "int8") and are widened to float32 in registers; int8 weights multiply
activations rounded to int16 (a scale per 256 of a row's elements) in integer pairs, summed in int32. Measured on an
AMD EPYC (Zen 5), 2 threads, pythia-160m's block shapes with the weights read from memory, against oneDNN's
prepacked kernel: float32 1.16x at 1 row, 1.45x at 16 rows (~330 GFLOP/s), 0.97x at 64-1024 rows (a prompt);
bfloat16 1.14x at 1 row, 1.47x at 16, but 0.85x at 256 (oneDNN's blocking wins on long prompts). Those 16 rows
were then one pass of a 16-row kernel; on an Intel Xeon (Ice Lake) two passes of 8 rows with x broadcast in a
register ran pythia-160m's products at 16 rows 1.3x (float32) and 1.6x (bfloat16) faster, and they replaced it on
every AVX-512 CPU (not re-measured on Zen 5). A row's result does not depend on the other rows (every output is
summed in the same order), so batched decoding computes each row bit for bit as alone. On a CPU with AMX (Intel
Sapphire Rapids and later) bfloat16 weights whose width is a multiple of 32 go to AMX's tile product at every row
count: on an Intel Xeon of that class, pythia-160m's products at 16 rows ran 2.8x (64 rows 4.6x) faster than on the
AVX-512 dot products, and 4% slower at 1 row. On an AMD EPYC (Zen 4) forced to AVX2, three changes took float32
products at 16 rows from ~100 to ~160 GFLOP/s and the Scheduler's batch 16 of pythia-160m from ~310 to ~470 tokens/s:
6 rows per pass for float32 and float16 (was 4), a line of W loaded once into registers for all the rows, and every
pass over an L2-resident panel prefetching its share of the next panel (128 KiB panels), so that memory streams the
weights during all the passes. The same prefetching made the AVX-512 build's 16-row float32 products 1.25x faster.

Built on first use for the active instruction set (`litllm.cpu.isa`: amx, avx512, avx2 or generic; one library each, so
that a test can run every path the CPU executes). Without a compiler, or with `LITLLM_CPU_GEMM=0`,
`litllm.cpu.kernels` packs weights for oneDNN instead.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Sequence

import torch

from litllm.cpu import isa, native

TILE = 16  # outputs per tile


@torch.compiler.assume_constant_result  # a compiled graph asks once, while tracing
def available() -> bool:
    """Whether the kernel is built (or builds now) and loads on this machine, for the active instruction set."""
    return _library(isa.active()) is not None


def takes(dtype: torch.dtype) -> bool:
    """Whether weights of this dtype are packed in tiles here: float32 and bfloat16 on every build, float16 where
    the instruction set converts it (F16C: avx2, avx512)."""
    if dtype not in (torch.float32, torch.bfloat16, torch.float16) or not available():
        return False
    return dtype != torch.float16 or isa.active() != "generic"


def dot_products() -> bool:
    """Whether bfloat16 weights are multiplied by the CPU's bfloat16 dot products (else widened by a shift)."""
    return available() and bool(_library(isa.active()).bfloat16_dot_products())


def supports(w: torch.Tensor) -> bool:
    """Whether `pack` takes this weight: a 2-D CPU tensor of a dtype the kernel `takes` (or int8, see `pack_int8`),
    with rows a multiple of TILE (and for bfloat16 an even number of columns)."""
    return (
        w.device.type == "cpu"
        and w.dim() == 2
        and w.shape[0] % TILE == 0
        and (w.dtype not in (torch.bfloat16, torch.int8) or w.shape[1] % 2 == 0)
        and (takes(w.dtype) or (w.dtype == torch.int8 and available()))
    )


def pack(w: torch.Tensor) -> torch.Tensor:
    """w (N, K) as N/TILE tiles of its rows TILE*b..TILE*b+TILE-1: (K, TILE), transposed; bfloat16 and int8
    (K/2, TILE, 2), pairs of consecutive columns side by side."""
    if not supports(w):
        raise ValueError(
            f"cpu_gemm packs 2-D float32, float16 (or bfloat16 and int8, with an even number of columns) CPU weights "
            f"with rows a multiple of {TILE}, got {w.dtype} {tuple(w.shape)}"
        )
    n, k = w.shape
    if w.dtype in (torch.bfloat16, torch.int8):
        return w.detach().view(n // TILE, TILE, k // 2, 2).permute(0, 2, 1, 3).contiguous()
    return w.detach().view(n // TILE, TILE, k).transpose(1, 2).contiguous()


def is_tiles(packed: torch.Tensor) -> bool:
    """Whether a packed weight is in tiles (a plain tensor), not oneDNN's blocked layout."""
    if packed.layout != torch.strided:
        return False
    return (packed.dim() == 3 and packed.shape[2] == TILE) or (packed.dim() == 4 and packed.shape[2:] == (TILE, 2))


def out_features(tiles: torch.Tensor) -> int:
    return tiles.shape[0] * TILE


def in_features(tiles: torch.Tensor) -> int:
    return tiles.shape[1] * (2 if tiles.dim() == 4 else 1)


def unpack(tiles: torch.Tensor) -> torch.Tensor:
    """The weight (N, K) that `pack` made these tiles from."""
    rows = tiles.permute(0, 2, 1, 3) if tiles.dim() == 4 else tiles.transpose(1, 2)
    return rows.reshape(out_features(tiles), in_features(tiles))


ACTIVATIONS = {torch.int8: (torch.float32, torch.bfloat16)}  # x's dtypes for weights not of their own dtype


def linear(
    x: torch.Tensor,
    tiles: torch.Tensor,
    bias: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
    scale: torch.Tensor | None = None,
) -> torch.Tensor:
    """x (M, K) @ W^T (+ bias) for W packed in `tiles`, into `out` (M, N) if given (rows of it may be strided, as a
    column slice of a wider output is), else a new tensor. x, bias and out are of W's dtype; for int8 tiles, of
    float32 or bfloat16, with `scale` (N,) float32 multiplying each output's sum."""
    m, k = x.shape
    n, dtype = out_features(tiles), x.dtype
    if (
        dtype not in ACTIVATIONS.get(tiles.dtype, (tiles.dtype,))
        or k != in_features(tiles)
        or not tiles.is_contiguous()
    ):
        wanted = " or ".join(str(d) for d in ACTIVATIONS.get(tiles.dtype, (tiles.dtype,)))
        raise ValueError(f"cpu_gemm.linear: {wanted} x (M, {in_features(tiles)}) expected, got {x.dtype} {(m, k)}")
    if tiles.dtype == torch.int8:
        if scale is None or scale.shape != (n,) or scale.dtype != torch.float32:
            raise ValueError(f"cpu_gemm.linear: int8 tiles need a float32 scale of shape ({n},)")
        scale = scale.contiguous()
    if x.stride(1) != 1:
        x = x.contiguous()
    if bias is not None:
        if bias.shape != (n,) or bias.dtype != dtype:
            raise ValueError(f"cpu_gemm.linear: bias of shape ({n},) in {dtype} expected, got {tuple(bias.shape)}")
        bias = bias.contiguous()
    if out is None:
        out = torch.empty(m, n, dtype=dtype)
    elif out.shape != (m, n) or out.dtype != dtype or out.stride(1) != 1:
        raise ValueError(f"cpu_gemm.linear: out must be {dtype} ({m}, {n}) with contiguous rows")
    if m == 0:
        return out
    lib = _library(isa.active())
    args = (x.data_ptr(), x.stride(0), tiles.data_ptr())
    rest = (0 if bias is None else bias.data_ptr(), out.data_ptr(), out.stride(0), m, n, k, torch.get_num_threads())
    if tiles.dtype == torch.int8:
        status = lib.linear_int8(*args, scale.data_ptr(), *rest, int(dtype == torch.bfloat16))
    else:
        status = getattr(lib, KERNELS[dtype])(*args, *rest)
    if status:
        raise MemoryError("cpu_gemm: out of memory for the activations' copy")
    return out


def linear_blocks(x: torch.Tensor, blocks: Sequence[torch.Tensor], bias: torch.Tensor | None = None) -> torch.Tensor:
    """x (M, K) @ W^T (+ bias) into one new (M, N) output, for W packed as consecutive row blocks of tiles of x's dtype
    (`kernels.pack`'s copy of a large weight, an output head): what `linear` gives block by block into column slices,
    with the checks made once and one kernel call a block (pythia-160m's bfloat16 head, 5 blocks: its Python took 0.25
    ms of a decoding step, now 0.12-0.13)."""
    widths = [out_features(b) for b in blocks]
    m, k = x.shape
    n, dtype = sum(widths), x.dtype
    if any(b.dtype != dtype or in_features(b) != k or not b.is_contiguous() for b in blocks) or dtype not in KERNELS:
        raise ValueError(f"cpu_gemm.linear_blocks: tiles of x's dtype {dtype} and width {k} expected")
    if bias is not None and (bias.shape != (n,) or bias.dtype != dtype):
        raise ValueError(f"cpu_gemm.linear_blocks: bias of shape ({n},) in {dtype} expected, got {tuple(bias.shape)}")
    x = x if x.stride(1) == 1 else x.contiguous()
    bias = None if bias is None else bias.contiguous()
    out = torch.empty(m, n, dtype=dtype)
    if m == 0:
        return out
    kernel, size, threads = getattr(_library(isa.active()), KERNELS[dtype]), x.element_size(), torch.get_num_threads()
    start = 0
    for block, width in zip(blocks, widths, strict=True):
        at = start * size
        b = 0 if bias is None else bias.data_ptr() + at
        if kernel(x.data_ptr(), x.stride(0), block.data_ptr(), b, out.data_ptr() + at, n, m, width, k, threads):
            raise MemoryError("cpu_gemm: out of memory for the activations' copy")
        start += width
    return out


KERNELS = {torch.float32: "linear_float32", torch.bfloat16: "linear_bfloat16", torch.float16: "linear_float16"}


@functools.cache
def _library(name: str) -> ctypes.CDLL | None:
    """The kernel built for instruction set `name`, loaded (None without a compiler or with LITLLM_CPU_GEMM=0)."""
    # sums are not reordered (no REORDER_SUMS), so that every row's are the same whatever the kernel's width;
    # multiply-adds are fused, as every width does
    # -O2: the same inner loops as -O3 (explicit vectors, unrolled by pragmas) in 2.9 s of compiling instead of 8.2
    # on AMD processors a single pass over the weights (decoding) prefetches into L2 (gemm.c's STREAM_LOCALITY): on a
    # Zen 4 EPYC pythia-160m's batch-1 products ran 1.05-1.2x faster than prefetching into L1
    stream = ("-DSTREAM_LOCALITY=2",) if isa.amd_cpu() else ()
    flags = (*isa.build_flags(name), "-ffp-contract=fast", "-O2", *stream)
    lib = native.load("gemm.c", "LITLLM_CPU_GEMM", "CPU matrix kernel", "linear layers use oneDNN's", flags)
    if lib is None:
        return None
    if lib.isa() != isa.LEVEL[name]:
        raise OSError(f"cpu_gemm: the {name} build reports instruction set level {lib.isa()}")
    pointer, i64, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
    for kernel in KERNELS.values():
        fn = getattr(lib, kernel)
        fn.restype = i32
        fn.argtypes = [pointer, i64, pointer, pointer, pointer, i64, i64, i64, i64, i32]
    lib.linear_int8.restype = i32
    lib.linear_int8.argtypes = [pointer, i64, pointer, pointer, pointer, pointer, i64, i64, i64, i64, i32, i32]
    lib.isa.restype = lib.bfloat16_dot_products.restype = i32
    return lib
