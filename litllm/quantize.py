"""Weight-only quantization of a GPT's linear layers.

- "bnb.nf4", "bnb.int8": the transformer layers as bitsandbytes layers (CPU and GPU). Lightning's bitsandbytes
  precision plugin refuses the CPU, so the layers are swapped in directly. The embedding and the output head stay in
  full precision: they are a small share of a large model and the most sensitive to error.
- "int8": litllm's own CPU kernel (`litllm.cpu.int8`): int8 weights with a float32 scale per output, widened in
  registers, for decoding on memory-bound CPUs. The transformer layers and an output head not tied to the embedding
  are quantized (the head is a large share of a small model's bytes a token); the embedding stays as it is.
"""

from __future__ import annotations

import torch
import torch.nn as nn

MODES = ("bnb.nf4", "bnb.int8", "int8")


def quantize_model(model: nn.Module, mode: str) -> nn.Module:
    """Quantize `model` in place: every nn.Linear inside `model.h` (the blocks) by its bitsandbytes counterpart, or
    for "int8" by litllm's `Int8Linear` (the untied output head too)."""
    if mode not in MODES:
        raise ValueError(f"quantize must be one of {', '.join(MODES)} (or None), got {mode!r}")
    if mode == "int8":
        from litllm.cpu.int8 import quantize_int8

        return quantize_int8(model)
    import bitsandbytes as bnb  # only here: importing it is slow and prints notices

    for block in model.h:
        for parent in list(block.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, nn.Linear):
                    setattr(parent, name, _quantized(bnb, child, mode))
    return model


def _quantized(bnb, linear: nn.Linear, mode: str) -> nn.Module:
    if hasattr(linear, "unpack"):
        linear.unpack()  # a litllm Linear whose weight was released to a packed copy: its values first
    weight, bias, device = linear.weight.data, linear.bias, linear.weight.device
    if mode == "bnb.nf4":
        layer = bnb.nn.Linear4bit(
            linear.in_features, linear.out_features, bias=bias is not None, compute_dtype=weight.dtype, quant_type="nf4"
        )
        layer.weight = bnb.nn.Params4bit(weight.cpu(), requires_grad=False, quant_type="nf4")
    else:
        layer = bnb.nn.Linear8bitLt(
            linear.in_features, linear.out_features, bias=bias is not None, has_fp16_weights=False
        )
        layer.weight = bnb.nn.Int8Params(weight.cpu(), requires_grad=False, has_fp16_weights=False)
    if bias is not None:
        layer.bias = nn.Parameter(bias.data.cpu(), requires_grad=False)
    return layer.to(device)  # moving the layer is what quantizes its weight


def is_quantized(model: nn.Module) -> bool:
    """Whether any layer of `model` holds quantized weights (bitsandbytes' or litllm's int8)."""
    return any(type(m).__module__.startswith(("bitsandbytes", "litllm.cpu.int8")) for m in model.modules())


def weight_bytes(model: nn.Module) -> int:
    """Bytes the model's parameters and buffers take (quantized weights at their packed size)."""
    tensors = {id(t): t for t in [*model.parameters(), *model.buffers()]}
    return sum(t.numel() * t.element_size() for t in tensors.values() if isinstance(t, torch.Tensor))
