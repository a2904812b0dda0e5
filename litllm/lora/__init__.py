"""LoRA and QLoRA: low-rank adapters over a frozen (optionally 4-bit) base, their files, and peft's format."""

from litllm.lora.layers import (
    LoRAConfig,
    LoRAError,
    adapter_names,
    adapter_rows,
    add_adapter,
    merge_adapter,
    use_adapter,
)

__all__ = ["LoRAConfig", "LoRAError", "adapter_names", "adapter_rows", "add_adapter", "merge_adapter", "use_adapter"]
