"""Inference checkpoints from training: the module's weights at the end of a run (`ExportFinal`), or a Lightning
`.ckpt` (`litllm export`)."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from litllm.checkpoint import save_checkpoint
from litllm.paths import atomic_write_text
from litllm.training.module import GPTModule


def full_state_dict(gpt: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's unsharded weights on CPU (gathers FSDP2 shards)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    state = get_model_state_dict(gpt, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return {k.replace("._checkpoint_wrapped_module", ""): v for k, v in state.items()}


def export_module(module: GPTModule, out_dir: Path, tokenizer_dir: Path, trainer: L.Trainer | None = None) -> None:
    from litllm.model import GPT

    state = full_state_dict(module.gpt)
    if trainer is not None and not trainer.is_global_zero:
        return
    gpt = GPT.empty(module.config)
    gpt.load_state_dict(state, strict=False)
    save_checkpoint(gpt, out_dir, tokenizer_dir=tokenizer_dir)
    hparams = Path(out_dir).parent / "hyperparameters.yaml"
    if hparams.is_file():
        atomic_write_text(Path(out_dir) / "hyperparameters.yaml", hparams.read_text())
    print(f"exported the trained model to {out_dir}")


def export_ckpt(ckpt_path: Path, out_dir: Path) -> Path:
    """Turn a Lightning .ckpt of a litllm run into an inference checkpoint directory."""
    from litllm.checkpoint import load_state_into
    from litllm.checkpoint.phases import read_training_checkpoint
    from litllm.model import GPT

    ckpt_path = Path(ckpt_path)
    config, state = read_training_checkpoint(ckpt_path)
    gpt = GPT.empty(config)
    load_state_into(gpt, state, str(ckpt_path))
    tokenizer_dir = ckpt_path.parent.parent / "tokenizer"
    save_checkpoint(gpt, out_dir, tokenizer_dir=tokenizer_dir if tokenizer_dir.is_dir() else None)
    return Path(out_dir)


class ExportFinal(Callback):
    """At the end of training, export an inference checkpoint to <run>/final (rank 0 writes)."""

    def __init__(self, run_dir: Path, tokenizer_dir: Path) -> None:
        self.run_dir, self.tokenizer_dir = run_dir, tokenizer_dir

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        export_module(pl_module, self.run_dir / "final", self.tokenizer_dir, trainer)
