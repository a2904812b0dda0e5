"""The files of a checkpoint directory, and which format a directory is in.

A litllm checkpoint directory holds `model.safetensors`, `model_config.yaml` and the tokenizer's files
(`tokenizer.json` or `tokenizer.model`, `tokenizer_config.json`, `generation_config.json`), plus
`prompt_style.yaml` when the chat format is known. A Hugging Face one holds `config.json` and `*.safetensors`; a
LitGPT one `model_config.yaml` and `lit_model.pth`.

Standard library only: the local model registry and the CLI's listings read layouts without importing torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from litllm.errors import CheckpointError
from litllm.paths import atomic_copy

WEIGHTS = "model.safetensors"
CONFIG = "model_config.yaml"
HF_CONFIG = "config.json"
LITGPT_WEIGHTS = "lit_model.pth"
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer.model",
    "tokenizer_config.json",
    "generation_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "prompt_style.yaml",
)
# weight files that are Python pickles (lit_model.pth is read with torch.load(weights_only=True) instead)
PICKLED_WEIGHTS = ("*.bin", "*.pt", "*.ckpt")
LAYOUTS = (
    f"{CONFIG} + {WEIGHTS} (litllm), {HF_CONFIG} + *.safetensors (Hugging Face) or {CONFIG} + {LITGPT_WEIGHTS} (LitGPT)"
)

Format = Literal["litllm", "hf", "litgpt"]


def checkpoint_kind(path: Path) -> Format | None:
    """'litllm', 'hf' or 'litgpt' when `path` is a checkpoint directory litllm loads, else None."""
    if not path.is_dir():
        return None
    if (path / CONFIG).is_file() and (path / WEIGHTS).is_file():
        return "litllm"
    if (path / HF_CONFIG).is_file() and any(path.glob("*.safetensors")):
        return "hf"
    if (path / CONFIG).is_file() and (path / LITGPT_WEIGHTS).is_file():
        return "litgpt"
    return None


def detect_format(path: Path) -> Format:
    """'litllm', 'hf' or 'litgpt' for a checkpoint directory; a CheckpointError says what is missing."""
    if not path.exists():
        raise FileNotFoundError(f"checkpoint directory {str(path)!r} does not exist")
    if not path.is_dir():
        raise CheckpointError(f"{str(path)!r} is not a directory")
    kind = checkpoint_kind(path)
    if kind is not None:
        return kind
    pickled = sorted(p.name for pattern in PICKLED_WEIGHTS for p in path.glob(pattern))
    if pickled:
        raise CheckpointError(
            f"{str(path)!r} holds only pickled PyTorch weights ({', '.join(pickled[:3])}), which litllm refuses to "
            "load because unpickling can run arbitrary code; convert them to safetensors first"
        )
    if (path / CONFIG).is_file():
        raise CheckpointError(f"{str(path)!r} has {CONFIG} but no weights file ({WEIGHTS} or {LITGPT_WEIGHTS})")
    raise CheckpointError(f"{str(path)!r} is not a checkpoint: expected {LAYOUTS}")


def copy_tokenizer_files(src: Path, dst: Path, skip: tuple[str, ...] = ()) -> None:
    """Copy the tokenizer files (and chat format) that `src` has into `dst`, except those named in `skip`."""
    for name in TOKENIZER_FILES:
        if name not in skip and (src / name).is_file():
            atomic_copy(src / name, dst / name)


__all__ = [
    "CONFIG",
    "HF_CONFIG",
    "LAYOUTS",
    "LITGPT_WEIGHTS",
    "PICKLED_WEIGHTS",
    "TOKENIZER_FILES",
    "WEIGHTS",
    "checkpoint_kind",
    "copy_tokenizer_files",
    "detect_format",
]
