"""Weight-only quantization of a GPT's transformer layers with bitsandbytes layers (CPU and GPU).

Lightning's bitsandbytes precision plugin refuses the CPU, so the layers are swapped in directly. The embedding and
the output head stay in full precision: they are a small share of a large model and the most sensitive to error.
"""

from __future__ import annotations

import torch
import torch.nn as nn

MODES = ("bnb.nf4", "bnb.int8")


def quantize_model(model: nn.Module, mode: str) -> nn.Module:
    """Replace every nn.Linear inside `model.h` (the blocks) by its bitsandbytes counterpart, in place."""
    if mode not in MODES:
        raise ValueError(f"quantize must be one of {', '.join(MODES)} (or None), got {mode!r}")
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
    """Whether any layer of `model` holds bitsandbytes-quantized weights."""
    return any(type(m).__module__.startswith("bitsandbytes") for m in model.modules())


def weight_bytes(model: nn.Module) -> int:
    """Bytes the model's parameters and buffers take (quantized weights at their packed size)."""
    tensors = {id(t): t for t in [*model.parameters(), *model.buffers()]}
    return sum(t.numel() * t.element_size() for t in tensors.values() if isinstance(t, torch.Tensor))
