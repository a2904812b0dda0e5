"""float32 linear layers on the CPU by a small C kernel (`cpu_gemm.c`) on weights packed in tiles: the matrix
products of decoding steps, which oneDNN's prepacked kernel ran below what memory can feed.

A weight (N, K) is packed as N/16 tiles (K, 16) (`pack`); `linear` multiplies rows of activations by it, 16 rows
per pass over the weight, prefetching far ahead. Measured on an AMD EPYC (Zen 5), 2 threads, pythia-160m's block
shapes with the weights read from memory, against oneDNN's prepacked kernel: 1.16x at 1 row, 1.45x at 16 rows
(~330 GFLOP/s), 0.94x at 256+ rows (a prompt). A row's result does not depend on the other rows (every output is
summed in the same order), so batched decoding computes each row bit for bit as alone.

Built on first use (`litllm.native`); without a compiler, or with `LITLLM_CPU_GEMM=0`, `available()` is False and
`litllm.kernels` packs weights for oneDNN instead.
"""

from __future__ import annotations

import ctypes
import functools

import torch

from litllm import native

TILE = 16  # outputs per tile


@torch.compiler.assume_constant_result  # a compiled graph asks once, while tracing
def available() -> bool:
    """Whether the kernel is built (or builds now) and loads on this machine."""
    return _library() is not None


def supports(w: torch.Tensor) -> bool:
    """Whether `pack` takes this weight: a 2-D float32 CPU tensor whose rows are a multiple of TILE."""
    return (
        w.device.type == "cpu" and w.dtype == torch.float32 and w.dim() == 2 and w.shape[0] % TILE == 0 and available()
    )


def pack(w: torch.Tensor) -> torch.Tensor:
    """w (N, K) as N/TILE tiles (K, TILE): tile b holds rows TILE*b..TILE*b+TILE-1, transposed."""
    if not supports(w):
        raise ValueError(f"cpu_gemm packs 2-D float32 CPU weights with rows a multiple of {TILE}, got {w.shape}")
    n, k = w.shape
    return w.detach().view(n // TILE, TILE, k).transpose(1, 2).contiguous()


def is_tiles(packed: torch.Tensor) -> bool:
    """Whether a packed weight is in tiles (a plain tensor), not oneDNN's blocked layout."""
    return packed.layout == torch.strided and packed.dim() == 3 and packed.shape[2] == TILE


def out_features(tiles: torch.Tensor) -> int:
    return tiles.shape[0] * TILE


def unpack(tiles: torch.Tensor) -> torch.Tensor:
    """The weight (N, K) that `pack` made these tiles from."""
    return tiles.transpose(1, 2).reshape(out_features(tiles), tiles.shape[1])


def linear(
    x: torch.Tensor, tiles: torch.Tensor, bias: torch.Tensor | None = None, out: torch.Tensor | None = None
) -> torch.Tensor:
    """x (M, K) @ W^T (+ bias) for W packed in `tiles`, into `out` (M, N) if given (rows of it may be strided, as a
    column slice of a wider output is), else a new tensor."""
    m, k = x.shape
    n = out_features(tiles)
    if x.dtype != torch.float32 or tiles.dtype != torch.float32 or k != tiles.shape[1] or not tiles.is_contiguous():
        raise ValueError(f"cpu_gemm.linear: float32 x (M, {tiles.shape[1]}) expected, got {x.dtype} {tuple(x.shape)}")
    if x.stride(1) != 1:
        x = x.contiguous()
    if bias is not None:
        if bias.shape != (n,) or bias.dtype != torch.float32:
            raise ValueError(f"cpu_gemm.linear: bias of shape ({n},) in float32 expected, got {tuple(bias.shape)}")
        bias = bias.contiguous()
    if out is None:
        out = torch.empty(m, n, dtype=torch.float32)
    elif out.shape != (m, n) or out.dtype != torch.float32 or out.stride(1) != 1:
        raise ValueError(f"cpu_gemm.linear: out must be float32 ({m}, {n}) with contiguous rows")
    if m == 0:
        return out
    status = _library().linear_float32(
        x.data_ptr(), x.stride(0), tiles.data_ptr(), 0 if bias is None else bias.data_ptr(),
        out.data_ptr(), out.stride(0), m, n, k, torch.get_num_threads(),
    )  # fmt: skip
    if status:
        raise MemoryError("cpu_gemm: out of memory for the activations' copy")
    return out


@functools.cache
def _library() -> ctypes.CDLL | None:
    lib = native.load("cpu_gemm.c", "LITLLM_CPU_GEMM", "CPU matrix kernel", "linear layers use oneDNN's")
    if lib is None:
        return None
    pointer, i64 = ctypes.c_void_p, ctypes.c_int64
    lib.linear_float32.restype = ctypes.c_int
    lib.linear_float32.argtypes = [pointer, i64, pointer, pointer, pointer, i64, i64, i64, i64, ctypes.c_int]
    return lib
