"""Where a model's weights go for generating, and in which dtype: Lightning precision names and dtype names, the
default device, the "sequential" spread of the blocks over several GPUs, and the KV cache cap."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from litllm.model import GPT

PRECISIONS = {"32-true": torch.float32, "bf16-true": torch.bfloat16, "16-true": torch.float16, "64-true": torch.float64}
MIXED = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


def precision_dtypes(precision: str | None) -> tuple[torch.dtype | None, torch.dtype | None]:
    """(dtype to cast the weights to, dtype to autocast to) of a Lightning precision name or a dtype name."""
    if precision is None:
        return None, None
    if precision in PRECISIONS:
        return PRECISIONS[precision], None
    if precision in MIXED:
        return None, MIXED[precision]
    if precision in DTYPES:
        return DTYPES[precision], None
    raise ValueError(f"unknown precision {precision!r}; accepted: {', '.join([*PRECISIONS, *MIXED, *DTYPES])}")


def spread_layers(model: GPT, devices: list[torch.device]) -> list[Any]:
    """Generation strategy "sequential": the blocks in contiguous groups over `devices`, the embeddings on the first
    and the final norm and head on the last (the first when the head is the embedding). Each part moves its inputs to
    where its weights are when it runs (so a later `.to()` of the whole model keeps working), and the logits go to
    the embedding's device. Returns the hooks' handles."""
    n, head = len(model.h), model.lm_head
    head.to(devices[0] if head.weight is model.wte.weight else devices[-1])
    model.ln_f.to(head.weight.device)
    handles = [model.ln_f.register_forward_pre_hook(lambda _, args: to_device(args, head.weight.device))]
    for i, block in enumerate(model.h):
        block.to(devices[i * len(devices) // n])
        handles.append(block.register_forward_pre_hook(lambda b, args: to_device(args, next(b.parameters()).device)))
    handles.append(model.register_forward_hook(lambda m, args, out: out.to(m.wte.weight.device)))
    return handles


def to_device(value: Any, device: torch.device) -> Any:
    """`value` with every tensor in it (in tuples, lists and dataclasses such as attention masks) on `device`."""
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, (tuple, list)):
        return type(value)(to_device(v, device) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        moved = {f.name: to_device(getattr(value, f.name), device) for f in dataclasses.fields(value) if f.init}
        return dataclasses.replace(value, **moved)
    return value


def check_kv_cache_size(size: int | str | None, block_size: int) -> int | str | None:
    if size is None or size == "max_model_supported":
        return size
    if not isinstance(size, int) or isinstance(size, bool) or not 2 <= size <= block_size:
        raise ValueError(
            f"fixed_kv_cache_size must be 'max_model_supported', None or an integer in 2..{block_size} (the model's "
            f"block_size), got {size!r}"
        )
    return size


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def resolve_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; accepted: {', '.join(DTYPES)}")
    return DTYPES[dtype]
