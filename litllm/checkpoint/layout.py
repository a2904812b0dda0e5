"""The files of a checkpoint directory, and which format a directory is in.

A litllm checkpoint directory holds `model.safetensors`, `model_config.yaml` and the tokenizer's files
(`tokenizer.json` or `tokenizer.model`, `tokenizer_config.json`, `generation_config.json`), plus
`prompt_style.yaml` when the chat format is known. A Hugging Face one holds `config.json` and `*.safetensors`; a
LitGPT one `model_config.yaml` and `lit_model.pth`. A nanoGPT checkpoint is its `ckpt.pt` (or the folder holding
it): a torch pickle whose top-level keys include `model_args` and `model`, recognised here by the names its pickle
holds (read as opcodes, never run) and loaded with `torch.load(weights_only=True)` by `litllm.checkpoint.nanogpt`.

Standard library only: the local model registry and the CLI's listings read layouts without importing torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from litllm.errors import CheckpointError
from litllm.paths import atomic_copy

WEIGHTS = "model.safetensors"
CONFIG = "model_config.yaml"
ADAPTER_WEIGHTS = "adapter.safetensors"  # a LoRA run's final/ (litllm.lora.files): the adapter, not the model
ADAPTER_CONFIG = "adapter_config.yaml"
HF_CONFIG = "config.json"
LITGPT_WEIGHTS = "lit_model.pth"
NANOGPT_CKPT = "ckpt.pt"
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer.model",
    "tokenizer_config.json",
    "generation_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "prompt_style.yaml",
)
# weight files that are Python pickles (lit_model.pth and a nanoGPT ckpt.pt are read with weights_only=True instead)
PICKLED_WEIGHTS = ("*.bin", "*.pt", "*.ckpt")
LAYOUTS = (
    f"{CONFIG} + {WEIGHTS} (litllm), {HF_CONFIG} + *.safetensors (Hugging Face), {CONFIG} + {LITGPT_WEIGHTS} "
    f"(LitGPT) or a nanoGPT {NANOGPT_CKPT}"
)

REFUSED_PICKLE = (
    "a Python pickle but not a nanoGPT checkpoint (a torch archive of a dict with 'model_args' and 'model'), and "
    "litllm refuses to load other pickles because unpickling can run arbitrary code; convert the weights to "
    "safetensors first"
)

Format = Literal["litllm", "hf", "litgpt", "nanogpt"]


def checkpoint_kind(path: Path) -> Format | None:
    """'litllm', 'hf', 'litgpt' or 'nanogpt' when `path` is a checkpoint litllm loads, else None.

    Every format is a directory, except that a nanoGPT checkpoint may also be named by its `ckpt.pt` file."""
    if path.is_file():
        return "nanogpt" if is_nanogpt_checkpoint(path) else None
    if not path.is_dir():
        return None
    if (path / CONFIG).is_file() and (path / WEIGHTS).is_file():
        return "litllm"
    if (path / HF_CONFIG).is_file() and any(path.glob("*.safetensors")):
        return "hf"
    if (path / CONFIG).is_file() and (path / LITGPT_WEIGHTS).is_file():
        return "litgpt"
    if is_nanogpt_checkpoint(path / NANOGPT_CKPT):
        return "nanogpt"
    return None


def nanogpt_file(path: Path) -> Path | None:
    """The nanoGPT `ckpt.pt` that `path` is or holds, or None."""
    if checkpoint_kind(path) != "nanogpt":
        return None
    return path if path.is_file() else path / NANOGPT_CKPT


def is_nanogpt_checkpoint(path: Path) -> bool:
    """Whether `path` is a torch zip archive whose pickle names `model_args` and `model` (nanoGPT's train.py).

    The pickle's opcodes are listed, never executed; whether it loads under weights_only is decided when it is read.
    """
    import pickletools  # here: `litllm --help` reads no checkpoint
    import zipfile

    try:
        if not path.is_file() or not zipfile.is_zipfile(path):
            return False
        with zipfile.ZipFile(path) as archive:
            pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
            if len(pickles) != 1:
                return False
            data = archive.read(pickles[0])
        names = {arg for _, arg, _ in pickletools.genops(data) if isinstance(arg, str)}
    except (OSError, zipfile.BadZipFile, ValueError, EOFError):  # unreadable, or not a pickle: not nanoGPT's
        return False
    return {"model_args", "model"} <= names


def detect_format(path: Path) -> Format:
    """The format of a checkpoint directory (or nanoGPT `ckpt.pt`); a CheckpointError says what is missing."""
    if not path.exists():
        raise FileNotFoundError(f"checkpoint directory {str(path)!r} does not exist")
    kind = checkpoint_kind(path)
    if kind is not None:
        return kind
    if not path.is_dir():
        if any(path.match(pattern) for pattern in PICKLED_WEIGHTS):
            raise CheckpointError(f"{str(path)!r} is {REFUSED_PICKLE}")
        raise CheckpointError(f"{str(path)!r} is not a directory (nor a nanoGPT {NANOGPT_CKPT})")
    pickled = sorted(p.name for pattern in PICKLED_WEIGHTS for p in path.glob(pattern))
    if pickled:
        raise CheckpointError(
            f"{str(path)!r} holds only pickled PyTorch weights ({', '.join(pickled[:3])}): each is {REFUSED_PICKLE}"
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
    "NANOGPT_CKPT",
    "PICKLED_WEIGHTS",
    "TOKENIZER_FILES",
    "WEIGHTS",
    "checkpoint_kind",
    "copy_tokenizer_files",
    "detect_format",
    "is_nanogpt_checkpoint",
    "nanogpt_file",
]
