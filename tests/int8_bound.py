"""How far the int8 kernel may land from the exact product: the documented bound the int8 tests check against."""

from __future__ import annotations

import torch

PIECE = 256  # a row's elements rounded to int16 with one scale (gemm.c's STEP_PIECE steps of pairs)


def int8_error_bound(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """(M, N): the largest |error| of the kernel's x (M, K) @ weight.T (N, K, dequantized) against exact arithmetic.
    Each piece's activations are off by at most 1/65534 of the piece's largest magnitude; float32 adds a few
    roundings of the whole sum of magnitudes on top."""
    x, weight = x.double().abs(), weight.double().abs()
    bound = 1e-6 * (x @ weight.T)
    for start in range(0, x.shape[1], PIECE):
        piece = slice(start, start + PIECE)
        bound += x[:, piece].amax(1, keepdim=True) / 65534 * weight[:, piece].sum(1)
    return bound
