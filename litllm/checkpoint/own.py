"""litllm's own checkpoint format: safetensors weights beside a `model_config.yaml`, never a pickle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from litllm.checkpoint.layout import CONFIG, WEIGHTS, copy_tokenizer_files
from litllm.config import Config
from litllm.errors import CheckpointError
from litllm.paths import atomic_path, read_yaml_mapping


def save_safetensors(state: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    """Write `state` as a safetensors file, atomically."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().contiguous() for k, v in state.items()}
    with atomic_path(Path(path)) as tmp:
        save_file(tensors, str(tmp), metadata=metadata or {"format": "pt"})


def load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file; a CheckpointError names a file that cannot be read."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        if isinstance(e, OSError) or not Path(path).is_file():  # missing, unreadable: not a damaged file
            raise CheckpointError(f"cannot read weights file {str(path)!r}: {e}") from e
        raise CheckpointError(
            f"cannot read weights file {str(path)!r}: truncated or corrupted ({' '.join(str(e).split())}): "
            "re-export or re-download it"
        ) from e


def read_yaml(path: Path) -> dict[str, Any]:
    """A YAML file that must hold a mapping (a `model_config.yaml`)."""
    return read_yaml_mapping(path, "mapping of config fields", CheckpointError)


def state_for_saving(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's weights, without the tied head (it is the embedding) and without non-persistent buffers."""
    state = model.state_dict()
    if model.config.tie_embeddings:
        state.pop("lm_head.weight", None)
    return state


def save_checkpoint(model: torch.nn.Module, out_dir: str | Path, tokenizer_dir: str | Path | None = None) -> Path:
    """Write `model` (a `GPT`) as a litllm checkpoint directory, copying tokenizer files from `tokenizer_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if tokenizer_dir is not None and Path(tokenizer_dir).resolve() != out.resolve():
        copy_tokenizer_files(Path(tokenizer_dir), out)
    save_safetensors(state_for_saving(model), out / WEIGHTS)
    model.config.save(out / CONFIG)  # last: a directory with a config and weights is a finished one
    return out


def read_own_config(path: Path) -> Config:
    """The config of a litllm checkpoint directory; a CheckpointError names a file that is not one."""
    return Config.from_dict(read_yaml(path / CONFIG), source=str(path / CONFIG))


def read_own(path: Path) -> tuple[Config, dict[str, torch.Tensor]]:
    """The config and weights of a litllm checkpoint directory."""
    return read_own_config(path), load_safetensors(path / WEIGHTS)


def load_state_into(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Copy `state` into `model`, naming any missing, unexpected or mis-shaped tensor."""
    expected = model.state_dict()
    if model.config.tie_embeddings:
        expected.pop("lm_head.weight", None)
        state = {k: v for k, v in state.items() if k != "lm_head.weight"}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing tensors {first_names(missing)}")
        if unexpected:
            parts.append(f"unexpected tensors {first_names(unexpected)}")
        raise CheckpointError(f"{source} does not match its config: {'; '.join(parts)}")
    for name, tensor in state.items():
        if tensor.shape != expected[name].shape:
            raise CheckpointError(
                f"{source}: tensor {name!r} has shape {tuple(tensor.shape)}, "
                f"the config expects {tuple(expected[name].shape)}"
            )
    model.load_state_dict(state, strict=False, assign=False)


def first_names(names: list[str], n: int = 5) -> str:
    """The first `n` names, comma-separated, with ' ...' when there are more."""
    return f"{', '.join(names[:n])}{' ...' if len(names) > n else ''}"


__all__ = [
    "load_safetensors",
    "load_state_into",
    "read_own",
    "read_own_config",
    "read_yaml",
    "save_checkpoint",
    "save_safetensors",
    "state_for_saving",
]
