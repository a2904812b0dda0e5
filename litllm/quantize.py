"""Weight-only quantization of a GPT's linear layers.

- "bnb.nf4", "bnb.int8": the transformer layers as bitsandbytes layers (CPU and GPU). Lightning's bitsandbytes
  precision plugin refuses the CPU, so the layers are swapped in directly. The embedding and the output head stay in
  full precision (they are a small share of a large model and the most sensitive to error), unless the head is
  asked for (QLoRA's `quantize_head`).
- "int8": litllm's own CPU kernel (`litllm.cpu.int8`): int8 weights with a float32 scale per output, widened in
  registers, for decoding on memory-bound CPUs. The transformer layers and an output head not tied to the embedding
  are quantized (the head is a large share of a small model's bytes a token); the embedding stays as it is.
"""

from __future__ import annotations

import logging
import math
from types import ModuleType
from typing import Any

import torch
import torch.nn as nn

from litllm.errors import MissingDependencyError

MODES = ("bnb.nf4", "bnb.fp4", "bnb.int8", "int8")
QUANTIZE_BYTES = 16 * 2**20  # float32 rows of a weight quantized to 4 bits at once


def quantize_model(model: nn.Module, mode: str, double_quant: bool = True, head: bool = False) -> nn.Module:
    """Quantize `model` in place: every nn.Linear inside `model.h` (the blocks) by its bitsandbytes counterpart, or
    for "int8" by litllm's `Int8Linear` (the untied output head too). double_quant (bitsandbytes' default): the
    4-bit modes quantize their scales too. head: with bitsandbytes, an output head not tied to the embedding too.
    Layers already quantized, and layers not loaded yet (on the meta device), are left as they are."""
    if mode not in MODES:
        raise ValueError(f"quantize must be one of {', '.join(MODES)} (or None), got {mode!r}")
    if mode == "int8":
        from litllm.cpu.int8 import quantize_int8

        return quantize_int8(model)
    try:
        bnb = import_bitsandbytes()  # only here: importing it is slow
    except ImportError:
        raise MissingDependencyError(f"quantize={mode!r} needs bitsandbytes: pip install bitsandbytes") from None

    for block in model.h:
        for parent in list(block.modules()):
            for name, child in list(parent.named_children()):
                if _quantizable(child):
                    setattr(parent, name, _quantized(bnb, child, mode, double_quant))
    lm_head = model.lm_head
    if head and _quantizable(lm_head) and lm_head.weight is not model.wte.weight:
        model.lm_head = _quantized(bnb, lm_head, mode, double_quant)
    return model


# the loggers of bitsandbytes' import-time warnings, which are not for litllm's users: on a CPU with avx512_bf16,
# bitsandbytes 0.50 fetches a CPU 4-bit product kernel from the Hugging Face Hub as it is imported (the `kernels`
# package, which transformers installs, logging that offline it skips its publisher check), and warns on every run where
# it cannot have it. litllm's 4-bit layers never take that kernel (`_quantized` turns bitsandbytes' CPU repacking off).
BNB_IMPORT_LOGGERS = ("bitsandbytes", "kernels")


def import_bitsandbytes() -> ModuleType:
    """bitsandbytes, imported without its warnings about the Hub kernel it looks for (`BNB_IMPORT_LOGGERS`)."""
    quiet = [logging.getLogger(name) for name in BNB_IMPORT_LOGGERS]
    levels = [logger.level for logger in quiet]
    for logger in quiet:
        logger.setLevel(logging.ERROR)
    try:
        import bitsandbytes
    finally:
        for logger, level in zip(quiet, levels, strict=True):
            logger.setLevel(level)
    return bitsandbytes


def _quantizable(layer: nn.Module) -> bool:
    """A plain linear layer holding loaded weights (not a bitsandbytes one already, not on the meta device)."""
    plain = isinstance(layer, nn.Linear) and not type(layer).__module__.startswith("bitsandbytes")
    return plain and not layer.weight.is_meta


def _quantized(bnb, linear: nn.Linear, mode: str, double_quant: bool = False) -> nn.Module:
    if hasattr(linear, "unpack"):
        linear.unpack()  # a litllm Linear whose weight was released to a packed copy: its values first
    weight, bias, device = linear.weight.data, linear.bias, linear.weight.device
    if mode in ("bnb.nf4", "bnb.fp4"):
        kind = mode.removeprefix("bnb.")
        # on the meta device: no float weight of its own to initialise, only to be replaced
        sizes = linear.in_features, linear.out_features
        layer = bnb.nn.Linear4bit(*sizes, bias is not None, weight.dtype, quant_type=kind, device="meta")
        packed, state = quantize_4bit_rows(weight, kind, double_quant)
        layer.weight = bnb.nn.Params4bit(
            packed, quant_state=state, blocksize=state.blocksize, compress_statistics=double_quant, quant_type=kind,
            bnb_quantized=True,
        )  # fmt: skip
        # bitsandbytes would repack the weight on its first eval forward on a CPU with avx512_bf16 (its scales cast to
        # bfloat16): other numbers on those CPUs than on the rest, and a layout `dequantized_weight` cannot read
        layer.support_avx512bf16_for_cpu = False
    else:
        layer = bnb.nn.Linear8bitLt(
            linear.in_features, linear.out_features, bias=bias is not None, has_fp16_weights=False
        )
        layer.weight = bnb.nn.Int8Params(weight.cpu(), requires_grad=False, has_fp16_weights=False)
    if bias is not None:
        layer.bias = nn.Parameter(bias.data.cpu(), requires_grad=False)
    return layer.to(device)  # moving the layer is what quantizes an 8-bit weight


def quantize_4bit_rows(
    weight: torch.Tensor, kind: str, double_quant: bool, blocksize: int = 64
) -> tuple[torch.Tensor, Any]:
    """bitsandbytes' `quantize_4bit` of an (out, in) weight, done a block of rows at a time (its CPU kernel makes
    several float copies of what it quantizes: a whole output head's would be a few times the head): the same packed
    bytes (out·in / 2, 1) and `QuantState` as one call."""
    import bitsandbytes.functional as bnbf

    step = whole_blocks(weight.shape[1], blocksize)
    rows = max(step, QUANTIZE_BYTES // (4 * weight.shape[1]) // step * step)
    parts = [
        bnbf.quantize_4bit(weight[i : i + rows], blocksize=blocksize, compress_statistics=False, quant_type=kind)
        for i in range(0, weight.shape[0], rows)
    ]
    packed, absmax = torch.cat([p for p, _ in parts]), torch.cat([s.absmax for _, s in parts])
    like = dict(shape=weight.shape, dtype=weight.dtype, blocksize=blocksize, code=parts[0][1].code, quant_type=kind)
    if not double_quant:
        return packed, bnbf.QuantState(absmax=absmax, **like)
    offset = absmax.mean()  # as `quantize_4bit` does: the scales less their mean, in 8 bits, blocks of 256
    scales, state2 = bnbf.quantize_blockwise(absmax - offset, blocksize=256)
    return packed, bnbf.QuantState(absmax=scales, offset=offset, state2=state2, **like)


def whole_blocks(width: int, blocksize: int) -> int:
    """The fewest rows of an (out, width) weight that fill whole quantization blocks of its row-major values: a block
    of rows starting at a multiple of it starts a quantization block (and a byte of the packed weight)."""
    return blocksize // math.gcd(width, blocksize)


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

    stored_layout(layer)
    return bnbf.dequantize_4bit(layer.weight.data, layer.weight.quant_state)


def stored_layout(layer: nn.Module) -> None:
    """Undo, in place, the CPU repacking bitsandbytes applies to a 4-bit layer it made itself (litllm's own layers
    never repack: `_quantized`), so that the weight reads as `quantize_4bit` stores it."""
    from bitsandbytes.functional import _convert_weight_packed_for_cpu_inverse

    weight = layer.weight
    if getattr(weight.quant_state, "packing_format_for_cpu", False):
        weight.data, weight.quant_state = _convert_weight_packed_for_cpu_inverse(weight.data, weight.quant_state)


class Weight4bit:
    """A bitsandbytes 4-bit layer's (out, in) weight read a block of rows at a time, each block dequantized alone: for
    a loss that applies a 4-bit output head itself, never holding the whole head in float."""

    def __init__(self, layer: nn.Module) -> None:
        import bitsandbytes.functional as bnbf

        stored_layout(layer)
        state = layer.weight.quant_state
        self.packed, self.state, self.shape = layer.weight.data, state, state.shape  # packed: (out·in / 2, 1) uint8
        absmax = state.absmax  # one scale per `blocksize` weights of the row-major weight
        if state.nested:  # double quantization: the scales are 8-bit themselves; in float32, 1/8 of the packed bytes
            absmax = bnbf.dequantize_blockwise(absmax, state.state2) + state.offset
        self.absmax = absmax.float()
        self.row_step = whole_blocks(self.shape[1], state.blocksize)

    def rows(self, start: int, stop: int) -> torch.Tensor:
        """Rows start:stop (start a multiple of `row_step`) dequantized, (stop - start, in), in the layer's dtype."""
        import bitsandbytes.functional as bnbf

        width, state = self.shape[1], self.state
        first, last = start * width, stop * width  # where the rows start and end in the row-major weight
        part = bnbf.QuantState(
            absmax=self.absmax[first // state.blocksize : -(-last // state.blocksize)],
            shape=torch.Size((stop - start, width)),
            code=state.code,
            blocksize=state.blocksize,
            quant_type=state.quant_type,
            dtype=state.dtype,
        )
        return bnbf.dequantize_4bit(self.packed[first // 2 : -(-last // 2)], part)


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
