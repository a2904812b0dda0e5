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

from litllm.errors import MissingDependencyError

MODES = ("bnb.nf4", "bnb.fp4", "bnb.int8", "int8")


def quantize_model(model: nn.Module, mode: str, double_quant: bool = True) -> nn.Module:
    """Quantize `model` in place: every nn.Linear inside `model.h` (the blocks) by its bitsandbytes counterpart, or
    for "int8" by litllm's `Int8Linear` (the untied output head too). double_quant (bitsandbytes' default): the
    4-bit modes quantize their scales too."""
    if mode not in MODES:
        raise ValueError(f"quantize must be one of {', '.join(MODES)} (or None), got {mode!r}")
    if mode == "int8":
        from litllm.cpu.int8 import quantize_int8

        return quantize_int8(model)
    try:
        import bitsandbytes as bnb  # only here: importing it is slow and prints notices
    except ImportError:
        raise MissingDependencyError(f"quantize={mode!r} needs bitsandbytes: pip install bitsandbytes") from None

    for block in model.h:
        for parent in list(block.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, nn.Linear):
                    setattr(parent, name, _quantized(bnb, child, mode, double_quant))
    return model


def _quantized(bnb, linear: nn.Linear, mode: str, double_quant: bool = False) -> nn.Module:
    if hasattr(linear, "unpack"):
        linear.unpack()  # a litllm Linear whose weight was released to a packed copy: its values first
    weight, bias, device = linear.weight.data, linear.bias, linear.weight.device
    if mode in ("bnb.nf4", "bnb.fp4"):
        kind = mode.removeprefix("bnb.")
        layer = bnb.nn.Linear4bit(
            linear.in_features, linear.out_features, bias=bias is not None, compute_dtype=weight.dtype, quant_type=kind
        )
        layer.weight = bnb.nn.Params4bit(
            weight.cpu(), requires_grad=False, quant_type=kind, compress_statistics=double_quant
        )
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


def is_4bit(layer: nn.Module) -> bool:
    return type(layer._parameters.get("weight")).__name__ == "Params4bit"


def dequantized_weight(layer: nn.Module) -> torch.Tensor:
    """A bitsandbytes 4-bit layer's weight as a plain (out, in) tensor."""
    import bitsandbytes.functional as bnbf

    return bnbf.dequantize_4bit(layer.weight.data, layer.weight.quant_state)


def dense_linear(layer: nn.Module) -> nn.Module:
    """A litllm `Linear` holding a 4-bit layer's dequantized weight (in its compute dtype), frozen."""
    from litllm.cpu.packing import Linear

    weight = dequantized_weight(layer)
    dtype = layer.compute_dtype or torch.float32
    plain = Linear(layer.in_features, layer.out_features, bias=layer.bias is not None, device=weight.device)
    plain.weight = nn.Parameter(weight.to(dtype), requires_grad=False)
    if layer.bias is not None:
        plain.bias = nn.Parameter(layer.bias.detach().to(dtype), requires_grad=False)
    return plain


def dequantize_model(model: nn.Module) -> nn.Module:
    """Replace each bitsandbytes 4-bit layer of `model` by a `dense_linear`, in place."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if is_4bit(child):
                setattr(parent, name, dense_linear(child))
    return model
