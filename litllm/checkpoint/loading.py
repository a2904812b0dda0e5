"""Any checkpoint directory litllm reads (its own, Hugging Face, LitGPT; a nanoGPT ckpt.pt too) as a `Config` or a
`GPT`, and converted to litllm's format."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from litllm.checkpoint.hf import read_hf, read_hf_config
from litllm.checkpoint.hf_config import config_from_hf
from litllm.checkpoint.layout import CONFIG, Format, detect_format
from litllm.checkpoint.litgpt import config_from_litgpt, read_litgpt
from litllm.checkpoint.nanogpt import read_nanogpt
from litllm.checkpoint.own import load_state_into, read_own, read_yaml, save_checkpoint
from litllm.config import Config
from litllm.errors import CheckpointError
from litllm.paths import write_json

if TYPE_CHECKING:
    from litllm.model import GPT

READERS: dict[Format, Callable[[Path], tuple[Config, dict[str, torch.Tensor]]]] = {
    "litllm": read_own,
    "hf": read_hf,
    "litgpt": read_litgpt,
    "nanogpt": read_nanogpt,
}


def checkpoint_config(path: str | Path) -> Config:
    """The Config of a litllm, Hugging Face or LitGPT checkpoint directory, without reading its weights (a nanoGPT
    ckpt.pt, one pickle, is read whole)."""
    path = Path(path)
    fmt = detect_format(path)
    if fmt == "litllm":
        return Config.from_file(path / CONFIG)
    if fmt == "hf":
        return config_from_hf(read_hf_config(path))
    if fmt == "nanogpt":
        return read_nanogpt(path)[0]  # tie_embeddings depends on the weights
    return config_from_litgpt(read_yaml(path / CONFIG))


def load_checkpoint(
    path: str | Path, device: torch.device | str | None = None, dtype: torch.dtype | None = None
) -> GPT:
    """Build the `GPT` stored in a litllm, Hugging Face or LitGPT checkpoint directory."""
    from litllm.model import GPT  # here, not at the top: the model and its CPU kernels load when a model is built

    path = Path(path)
    config, state = READERS[detect_format(path)](path)
    if not state:
        raise CheckpointError(f"{str(path)!r}: the weights file holds no tensors")
    model = GPT.empty(config, device or "cpu")
    target = dtype or next(iter(state.values())).dtype
    if not target.is_floating_point:
        target = torch.float32
    model.to(target)
    load_state_into(model, {k: v.to(target) for k, v in state.items()}, f"{str(path)!r}")
    return model.eval()


def convert_to_litllm(src: str | Path, out_dir: str | Path, dtype: torch.dtype | None = None) -> Path:
    """Write a Hugging Face (or LitGPT) checkpoint directory as a litllm checkpoint directory."""
    src, out = Path(src), Path(out_dir)
    model = load_checkpoint(src, dtype=dtype)
    save_checkpoint(model, out, tokenizer_dir=src)
    hf_config = src / "config.json"
    gen = src / "generation_config.json"
    if hf_config.is_file() and not gen.is_file():  # keep bos/eos ids that only config.json states
        ids = {k: v for k, v in read_hf_config(src).items() if k in ("bos_token_id", "eos_token_id") and v is not None}
        if ids and not (out / "generation_config.json").is_file():
            write_json(out / "generation_config.json", ids)
    return out


__all__ = ["checkpoint_config", "convert_to_litllm", "load_checkpoint"]
