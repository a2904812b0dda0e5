"""litllm: pretrain, finetune, evaluate, run and serve GPT-style language models on PyTorch Lightning.

Every name the LitGPT, llm and nanochat documents import is here (`from litllm import LLM, GPT, GPTConfig, Engine,
HuggingFaceTokenizer, load_model`, `litllm.get_model(...)`), imported on first use: `import litllm` loads no torch,
so the CLI's --help stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from litllm.api import LLM
    from litllm.checkpoint.phases import load_model
    from litllm.config import Config, GPTConfig
    from litllm.embeddings import (
        EmbeddingModel,
        get_default_embedding_model,
        get_embedding_model,
        get_embedding_models,
        set_default_embedding_model,
    )
    from litllm.errors import UnknownModelError
    from litllm.inference.constraints import schema_dsl
    from litllm.inference.engine import Engine
    from litllm.llm_api import (
        Attachment,
        get_async_model,
        get_async_models,
        get_default_model,
        get_model,
        get_models,
        remove_alias,
        set_alias,
        set_default_model,
    )
    from litllm.lora.layers import LoRAConfig
    from litllm.model import GPT
    from litllm.tasks import Task, TaskMixture, TaskSequence, evaluate_task, get_task, list_tasks, register_task
    from litllm.tokenizer import HuggingFaceTokenizer, Tokenizer
    from litllm.training.module import GPTModule

# public name -> the module that defines it
LAZY = {
    "LLM": "litllm.api",
    "Config": "litllm.config",
    "GPTConfig": "litllm.config",
    "GPT": "litllm.model",
    "Engine": "litllm.inference.engine",
    "Tokenizer": "litllm.tokenizer",
    "HuggingFaceTokenizer": "litllm.tokenizer",
    "load_model": "litllm.checkpoint.phases",
    "UnknownModelError": "litllm.errors",
    "schema_dsl": "litllm.inference.constraints",
    "GPTModule": "litllm.training.module",
    "LoRAConfig": "litllm.lora.layers",
    # nanochat's Task framework (`from tasks.common import Task` becomes `from litllm import Task`)
    **dict.fromkeys(
        ("Task", "TaskMixture", "TaskSequence", "evaluate_task", "get_task", "list_tasks", "register_task"),
        "litllm.tasks",
    ),
    # the llm-style API over the local model registry
    **dict.fromkeys(
        (
            "Attachment",
            "get_model",
            "get_async_model",
            "get_models",
            "get_async_models",
            "set_alias",
            "remove_alias",
            "set_default_model",
            "get_default_model",
        ),
        "litllm.llm_api",
    ),
    **dict.fromkeys(
        (
            "EmbeddingModel",
            "get_embedding_model",
            "get_embedding_models",
            "set_default_embedding_model",
            "get_default_embedding_model",
        ),
        "litllm.embeddings",
    ),
}


def __getattr__(name: str) -> Any:
    if name not in LAZY:
        raise AttributeError(f"module 'litllm' has no attribute {name!r}")
    value = getattr(importlib.import_module(LAZY[name]), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *LAZY])


__all__ = ["__version__", *LAZY]
