"""Inference checkpoints from training: the module's weights at the end of a run (`ExportFinal`), or a Lightning
`.ckpt` (`litllm export`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from litllm.checkpoint import save_checkpoint
from litllm.checkpoint.layout import WEIGHTS
from litllm.errors import CheckpointError
from litllm.paths import atomic_write_text
from litllm.training.callbacks import checkpoint_damage
from litllm.training.module import GPTModule


def full_state_dict(gpt: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's unsharded weights on CPU (gathers FSDP2 shards)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    state = get_model_state_dict(gpt, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return {k.replace("._checkpoint_wrapped_module", ""): v for k, v in state.items()}


def export_module(module: GPTModule, out_dir: Path, tokenizer_dir: Path, trainer: L.Trainer | None = None) -> None:
    """The module's model as a checkpoint folder in out_dir, or a LoRA run's adapter as an adapter folder."""
    from litllm.model import GPT

    state = full_state_dict(module.gpt)
    if trainer is not None and not trainer.is_global_zero:
        return
    if module.lora is not None:
        export_adapter(module, state, out_dir, tokenizer_dir)
        return
    gpt = GPT.empty(module.config)
    gpt.load_state_dict(state, strict=False)
    with export_errors(out_dir):
        save_checkpoint(gpt, out_dir, tokenizer_dir=tokenizer_dir)
        copy_hyperparameters(Path(out_dir))
    print(f"exported the trained model to {out_dir}")


def export_adapter(module: GPTModule, state: dict[str, torch.Tensor], out_dir: Path, tokenizer_dir: Path) -> None:
    from litllm.lora.files import save_adapter
    from litllm.lora.layers import adapter_tensors

    with export_errors(out_dir):
        save_adapter(out_dir, adapter_tensors(state), module.config, module.lora, module.init_from, tokenizer_dir)
        copy_hyperparameters(Path(out_dir))
    print(f"exported the trained adapter to {out_dir}")


def copy_hyperparameters(out_dir: Path) -> None:
    """The run's resolved recipe (<run>/hyperparameters.yaml), beside what it exported."""
    hparams = out_dir.parent / "hyperparameters.yaml"
    if hparams.is_file():
        atomic_write_text(out_dir / "hyperparameters.yaml", hparams.read_text())


@contextmanager
def export_errors(out_dir: Path) -> Iterator[None]:
    """A failed write (a full disk, a file-size limit) as one OSError naming the file: each file is written
    atomically, so what the folder held before stays readable, and the run's checkpoints are untouched."""
    from safetensors import SafetensorError

    try:
        yield
    except (OSError, SafetensorError) as e:
        if isinstance(e, OSError):
            target, reason = Path(out_dir), e.strerror or " ".join(str(e).split())
        else:  # safetensors' own error: "Error while serializing: I/O error: File too large (os error 27)"
            target, reason = Path(out_dir) / WEIGHTS, " ".join(str(e).split()).rsplit("I/O error: ", 1)[-1]
        error = OSError(f"could not write {str(target)!r} ({reason}); earlier checkpoints and files there are intact")
        error.errno = getattr(e, "errno", None)
        raise error from e


def export_ckpt(ckpt_path: Path, out_dir: Path) -> Path:
    """Turn a Lightning .ckpt of a litllm run into an inference checkpoint directory."""
    from litllm.checkpoint import load_state_into
    from litllm.checkpoint.phases import read_training_checkpoint
    from litllm.model import GPT

    ckpt_path = Path(ckpt_path)
    if ckpt_path.exists() and (damage := checkpoint_damage(ckpt_path)):
        raise CheckpointError(f"cannot export {str(ckpt_path)!r}: it is {damage}")
    config, state = read_training_checkpoint(ckpt_path)
    tokenizer_dir = ckpt_path.parent.parent / "tokenizer"
    if any(".lora." in k for k in state):
        return export_adapter_ckpt(ckpt_path, config, state, Path(out_dir), tokenizer_dir)
    gpt = GPT.empty(config)
    load_state_into(gpt, state, str(ckpt_path))
    with export_errors(Path(out_dir)):
        save_checkpoint(gpt, out_dir, tokenizer_dir=tokenizer_dir if tokenizer_dir.is_dir() else None)
    return Path(out_dir)


def export_adapter_ckpt(ckpt: Path, config: Any, state: dict, out_dir: Path, tokenizer_dir: Path) -> Path:
    """A LoRA run's .ckpt (the adapter alone) as an adapter folder, with the base and options its run recorded."""
    from litllm.lora.files import save_adapter
    from litllm.lora.layers import LoRAConfig, adapter_tensors

    hparams = torch.load(ckpt, map_location="cpu", weights_only=True).get("hyper_parameters") or {}
    if not hparams.get("lora") or not hparams.get("init_from"):
        raise CheckpointError(f"{str(ckpt)!r} holds adapter tensors but not the LoRA options and base of its run")
    lora = LoRAConfig.from_dict(dict(hparams["lora"]))
    with export_errors(out_dir):
        tokenizer = tokenizer_dir if tokenizer_dir.is_dir() else None
        save_adapter(out_dir, adapter_tensors(state), config, lora, hparams["init_from"], tokenizer)
    return out_dir


class ExportFinal(Callback):
    """At the end of training, export an inference checkpoint to <run>/final (rank 0 writes)."""

    def __init__(self, run_dir: Path, tokenizer_dir: Path) -> None:
        self.run_dir, self.tokenizer_dir = run_dir, tokenizer_dir

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        export_module(pl_module, self.run_dir / "final", self.tokenizer_dir, trainer)
