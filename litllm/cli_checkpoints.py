"""The `litllm` commands that read and write checkpoints: download, convert (Hugging Face, peft), export (a training
run's .ckpt) and merge_lora. Each imports what it needs when it runs, so `litllm --help` stays fast."""

from __future__ import annotations

from pathlib import Path
from typing import Optional


def download(
    repo_id: str,
    access_token: Optional[str] = None,
    tokenizer_only: bool = False,
    out_dir: Optional[Path] = None,
) -> None:
    """Download a Hugging Face Hub model (safetensors and tokenizer files) and convert it to litllm format.

    Args:
        repo_id: Hub repo id such as `Qwen/Qwen2.5-0.5B`, or `list` to print the models litllm knows by name.
        access_token: Hub token for gated or private repos (default: $HF_TOKEN).
        tokenizer_only: Fetch only the tokenizer files.
        out_dir: Where to write the litllm checkpoint (default: $LITLLM_HOME/checkpoints/<repo_id>).
    """
    if repo_id == "list":
        print_model_list()
        return
    from litllm.checkpoint.hub import download as fetch

    out = fetch(repo_id, access_token=access_token, tokenizer_only=tokenizer_only, out_dir=out_dir)
    print(f"saved to {out}")


def print_model_list() -> None:
    from litllm.catalog import catalog_rows

    rows = catalog_rows()
    width = max(len(name) for name, _, _ in rows)
    for name, family, repo in rows:
        print(f"{name:<{width}}  {family:<10}  {repo or '(no published weights)'}")


def to_litllm(checkpoint_dir: Path, out_dir: Path, dtype: Optional[str] = None) -> None:
    """Convert a Hugging Face (or LitGPT) checkpoint directory into a litllm checkpoint directory.

    Args:
        checkpoint_dir: Folder with config.json and *.safetensors (or model_config.yaml and lit_model.pth).
        out_dir: Folder to write model.safetensors, model_config.yaml and the tokenizer files to.
        dtype: Cast the weights (float32, bfloat16, float16); default keeps the stored dtype.
    """
    from litllm.api import resolve_dtype
    from litllm.checkpoint.loading import convert_to_litllm

    print(f"saved to {convert_to_litllm(checkpoint_dir, out_dir, dtype=resolve_dtype(dtype))}")


def to_hf(checkpoint_dir: Path, out_dir: Path) -> None:
    """Convert a litllm checkpoint directory into a Hugging Face model directory (transformers loads it).

    Args:
        checkpoint_dir: litllm checkpoint directory.
        out_dir: Folder to write config.json, model.safetensors and the tokenizer files to.
    """
    from litllm.checkpoint.hf import convert_to_hf

    print(f"saved to {convert_to_hf(checkpoint_dir, out_dir)}")


def to_peft(adapter: Path, out_dir: Path) -> None:
    """Convert a litllm LoRA adapter (a folder, or a run whose final/ holds one) into a Hugging Face peft adapter."""
    from litllm.lora.peft import to_peft as convert

    print(f"saved to {convert(adapter, out_dir)}")


def from_peft(peft_dir: Path, out_dir: Path, base: Optional[str] = None) -> None:
    """Convert a Hugging Face peft LoRA adapter (adapter_config.json, adapter_model.safetensors) into a litllm one.

    Args:
        base: The base model (a path, name or Hub repo id); default: the adapter's base_model_name_or_path.
    """
    from litllm.lora.peft import from_peft as convert

    print(f"saved to {convert(peft_dir, out_dir, base=base)}")


def export(checkpoint: Path, out_dir: Path) -> None:
    """Export a training run's Lightning checkpoint (.ckpt) as an inference checkpoint directory.

    Args:
        checkpoint: A .ckpt file written by `litllm pretrain` or `litllm finetune` (a LoRA run's: an adapter folder).
        out_dir: Folder to write model.safetensors, model_config.yaml and the tokenizer files to.
    """
    from litllm.training.export import export_ckpt

    print(f"saved to {export_ckpt(checkpoint, out_dir)}")


def merge_lora(source: Path, out_dir: Path) -> None:
    """Fold a LoRA adapter into its base: a full checkpoint whose logits equal the base with the adapter unmerged
    (a base trained in 4-bit is dequantized first).

    Args:
        source: An adapter folder (adapter.safetensors + adapter_config.yaml), or a LoRA run whose final/ holds one.
        out_dir: Folder to write the merged checkpoint to (model.safetensors, model_config.yaml, tokenizer files).
    """
    from litllm.lora.files import merge_to_checkpoint

    print(f"saved to {merge_to_checkpoint(source, out_dir)}")
