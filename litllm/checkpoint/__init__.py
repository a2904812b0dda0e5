"""Checkpoint directories: litllm's own format, Hugging Face and LitGPT weights in and out, Hub downloads, and
the one resolver from what a user names to a folder.

- `layout`: the files of a checkpoint directory and which format a directory is in (no torch).
- `own`: litllm's format, safetensors beside `model_config.yaml`: save, strict load into a model.
- `loading`: any format as a `Config` (`checkpoint_config`) or a `GPT` (`load_checkpoint`); `convert_to_litllm`.
- `hf_families`: one `HFFamily` record per transformers `model_type` (knobs, config keys, window, tensor rules).
- `hf_config`: config.json <-> `Config`.  `hf`: Hugging Face tensors both ways, `convert_to_hf`.
- `litgpt`: LitGPT configs and weights.  `hub`: downloads (`download`, `cached_checkpoint_dir`; no torch).
- `sources`: `resolve_checkpoint`, a path, local name, catalog name or Hub repo id to a folder (no torch).

The names below load on first use (`from litllm.checkpoint import load_checkpoint`), so importing `layout` or
`sources` does not import torch. Code inside litllm imports from the submodules.
"""

from __future__ import annotations

import importlib
from typing import Any

_NAMES = {
    "CheckpointError": "litllm.errors",
    "HubError": "litllm.errors",
    "WEIGHTS": "litllm.checkpoint.layout",
    "CONFIG": "litllm.checkpoint.layout",
    "TOKENIZER_FILES": "litllm.checkpoint.layout",
    "checkpoint_kind": "litllm.checkpoint.layout",
    "copy_tokenizer_files": "litllm.checkpoint.layout",
    "detect_format": "litllm.checkpoint.layout",
    "load_state_into": "litllm.checkpoint.own",
    "save_checkpoint": "litllm.checkpoint.own",
    "checkpoint_config": "litllm.checkpoint.loading",
    "convert_to_litllm": "litllm.checkpoint.loading",
    "load_checkpoint": "litllm.checkpoint.loading",
    "HF_FAMILIES": "litllm.checkpoint.hf_families",
    "HFFamily": "litllm.checkpoint.hf_families",
    "config_from_hf": "litllm.checkpoint.hf_config",
    "config_to_hf": "litllm.checkpoint.hf_config",
    "convert_to_hf": "litllm.checkpoint.hf",
    "config_from_litgpt": "litllm.checkpoint.litgpt",
    "cached_checkpoint_dir": "litllm.checkpoint.hub",
    "download": "litllm.checkpoint.hub",
    "resolve_checkpoint": "litllm.checkpoint.sources",
}
__all__ = list(_NAMES)


def __getattr__(name: str) -> Any:
    if name not in _NAMES:
        raise AttributeError(f"module 'litllm.checkpoint' has no attribute {name!r}")
    return getattr(importlib.import_module(_NAMES[name]), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
