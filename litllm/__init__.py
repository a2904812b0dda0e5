"""litllm: pretrain, finetune, evaluate, run and serve GPT-style language models on PyTorch Lightning."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from litllm.api import LLM
    from litllm.config import Config
    from litllm.errors import UnknownModelError
    from litllm.inference.constraints import schema_dsl


def __getattr__(name: str) -> Any:
    # torch is imported on first use of LLM or Config, not by `import litllm` (the CLI's --help stays fast)
    if name == "LLM":
        from litllm.api import LLM

        return LLM
    if name == "Config":
        from litllm.config import Config

        return Config
    if name == "UnknownModelError":
        from litllm.errors import UnknownModelError

        return UnknownModelError
    if name in MODEL_API:
        import litllm.llm_api

        return getattr(litllm.llm_api, name)
    if name == "schema_dsl":
        from litllm.inference.constraints import schema_dsl

        return schema_dsl
    raise AttributeError(f"module 'litllm' has no attribute {name!r}")


# the llm-style API over the local model registry (litllm/model_api.py)
MODEL_API = (
    "Attachment",
    "get_model",
    "get_async_model",
    "get_models",
    "get_async_models",
    "set_alias",
    "remove_alias",
    "set_default_model",
    "get_default_model",
)

__all__ = ["LLM", "Config", "UnknownModelError", "__version__", "schema_dsl", *MODEL_API]
