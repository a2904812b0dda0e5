"""litllm: pretrain, finetune, evaluate, run and serve GPT-style language models on PyTorch Lightning."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from litllm.api import LLM
    from litllm.config import Config


def __getattr__(name: str) -> Any:
    # torch is imported on first use of LLM or Config, not by `import litllm` (the CLI's --help stays fast)
    if name == "LLM":
        from litllm.api import LLM

        return LLM
    if name == "Config":
        from litllm.config import Config

        return Config
    raise AttributeError(f"module 'litllm' has no attribute {name!r}")


__all__ = ["LLM", "Config", "__version__"]
