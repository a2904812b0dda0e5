"""Weight-only int8 linear layers for CPU decoding: `quantize="int8"` (`litllm.quantize`).

Each output's weights are scaled by their largest magnitude (scale = max |w| / 127, one float32 per output row) and
rounded to int8, a quarter of float32's bytes and half of bfloat16's. Batch-1 decoding reads every weight once a
token and is bound by memory bandwidth, so it runs up to that much faster. litllm's tile kernel (`cpu_gemm`) rounds
the activations to int16 with a scale per 256 elements of a row (an error of at most 1/65534 of the largest of those
256, against bfloat16's 1/512 of each element), multiplies them with the int8 weights in integers, summed in int32,
and applies both scales in float32: sign-extending int8 pairs and multiplying them as integers is what keeps up with
memory, where widening every weight to a float did not. The rounding error of a weight is at most half a step
(max |w| / 254); the weights are what int8 changes.
"""

from __future__ import annotations

from collections import Counter

import torch
import torch.nn as nn
import torch.nn.functional as F

from litllm.cpu import gemm as cpu_gemm

LEVELS = 127  # int8 values used: -127..127, symmetric


def quantize_rows(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(q, scale): w ~= q * scale[:, None], q int8 in -127..127, scale float32 (one per row; 1 for an all-zero row)."""
    w = w.detach().float()
    scale = w.abs().amax(dim=1) / LEVELS
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = torch.round(w / scale[:, None]).clamp_(-LEVELS, LEVELS).to(torch.int8)
    return q, scale


class Int8Linear(nn.Module):
    """A frozen linear layer with int8 weights and a float32 scale per output, for inference on the CPU.

    On the CPU (float32 or bfloat16 activations) it runs litllm's tile kernel on weights kept in its tiles (rows
    padded with zeros to a multiple of its tile); anywhere else, or with autograd on, it multiplies by the
    dequantized weight."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        if linear.weight.device.type != "cpu":
            raise ValueError(
                f"quantize='int8' is litllm's CPU kernel; the model is on {linear.weight.device.type}: use 'bnb.int8'"
            )
        self.in_features, self.out_features = linear.in_features, linear.out_features
        q, scale = quantize_rows(linear.weight)
        bias = None if linear.bias is None else linear.bias.detach().clone()
        self.tiled = cpu_gemm.available() and self.in_features % 2 == 0  # the kernel takes pairs of columns
        if self.tiled:  # zero rows past the real outputs: the kernel takes whole tiles
            pad = -self.out_features % cpu_gemm.TILE
            q = cpu_gemm.pack(torch.cat([q, q.new_zeros(pad, self.in_features)]))
            scale = torch.cat([scale, scale.new_ones(pad)])
            bias = None if bias is None else torch.cat([bias, bias.new_zeros(pad)])
        self.register_buffer("qweight", q)
        self.register_buffer("scale", scale)
        self.register_buffer("bias", bias)

    def int8_weight(self) -> torch.Tensor:
        """The (out, in) int8 weight."""
        q = cpu_gemm.unpack(self.qweight) if self.tiled else self.qweight
        return q[: self.out_features]

    def dequantized(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The weight this layer multiplies by, (out, in) in `dtype`."""
        return (self.int8_weight().float() * self.scale[: self.out_features, None].float()).to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.out_features
        bias = None if self.bias is None else self.bias.to(x.dtype)
        if not (
            self.tiled
            and x.device.type == "cpu"
            and x.dtype in (torch.float32, torch.bfloat16)
            and not (torch.is_grad_enabled() and x.requires_grad)
            and x.numel() > 0
        ):
            return F.linear(x, self.dequantized(x.dtype).to(x.device), None if bias is None else bias[:n].to(x.device))
        scale = self.scale if self.scale.dtype == torch.float32 else self.scale.float()  # a model.to(dtype) casts it
        y = cpu_gemm.linear(x.reshape(-1, x.shape[-1]), self.qweight, bias, scale=scale)
        return (y if y.shape[1] == n else y[:, :n]).reshape(*x.shape[:-1], n)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def quantize_int8(model: nn.Module, head: bool = True) -> nn.Module:
    """Replace every nn.Linear inside `model.h` (the blocks) and, with `head`, an output head not tied to the
    embedding (`lm_head`) by an `Int8Linear`, in place."""
    uses = Counter(id(p) for _, p in model.named_parameters(remove_duplicate=False))
    for block in model.h:
        for parent in list(block.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, nn.Linear):
                    setattr(parent, name, Int8Linear(_plain(child)))
    lm_head = getattr(model, "lm_head", None)
    if head and isinstance(lm_head, nn.Linear) and uses[id(lm_head.weight)] == 1:
        model.lm_head = Int8Linear(_plain(lm_head))
    return model


def _plain(linear: nn.Linear) -> nn.Linear:
    if hasattr(linear, "unpack"):
        linear.unpack()  # a litllm Linear whose weight was released to a packed copy: its values first
    return linear
