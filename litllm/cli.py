"""The `litllm` command. Each subcommand is a typed function whose signature is its command line.

torch and lightning are imported inside the commands, so `litllm --help` stays fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal, Optional, Union

from litllm.config import UnknownModelError


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
    from litllm.checkpoint import download as fetch

    out = fetch(repo_id, access_token=access_token, tokenizer_only=tokenizer_only, out_dir=out_dir)
    print(f"saved to {out}")


def print_model_list() -> None:
    from litllm.config import registry_rows

    rows = registry_rows()
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
    from litllm.checkpoint import convert_to_litllm

    print(f"saved to {convert_to_litllm(checkpoint_dir, out_dir, dtype=resolve_dtype(dtype))}")


def to_hf(checkpoint_dir: Path, out_dir: Path) -> None:
    """Convert a litllm checkpoint directory into a Hugging Face model directory (transformers loads it).

    Args:
        checkpoint_dir: litllm checkpoint directory.
        out_dir: Folder to write config.json, model.safetensors and the tokenizer files to.
    """
    from litllm.checkpoint import convert_to_hf

    print(f"saved to {convert_to_hf(checkpoint_dir, out_dir)}")


def generate(
    source: str,
    prompt: Optional[str] = None,
    max_new_tokens: int = 50,
    temperature: float = 0.8,
    top_k: Optional[int] = None,
    top_p: float = 1.0,
    seed: Optional[int] = None,
    stream: bool = False,
    init: Literal["pretrained", "random"] = "pretrained",
    tokenizer_dir: Optional[Path] = None,
    device: Optional[str] = None,
    dtype: Optional[str] = None,
) -> None:
    """Generate a continuation of a prompt.

    Args:
        source: Checkpoint directory, Hub repo id, or model name (with --init random).
        prompt: Text to continue.
        max_new_tokens: Most tokens to generate.
        temperature: Sampling temperature; 0 is greedy.
        top_k: Sample among the k most likely tokens only.
        top_p: Sample among the most likely tokens whose probabilities add up to top_p.
        seed: Random seed for reproducible sampling.
        stream: Print text as it is generated.
        init: `pretrained` loads weights; `random` builds a named config with fresh weights.
        tokenizer_dir: Tokenizer folder (needed with --init random).
        device: cpu, cuda, cuda:1, ... (default: cuda if available).
        dtype: float32, bfloat16 or float16 (default: the checkpoint's).
    """
    from litllm.api import LLM

    if prompt is None:
        raise ValueError("--prompt is required: the text to continue")
    llm = LLM.load(source, init=init, tokenizer_dir=tokenizer_dir, device=device, dtype=dtype)
    kwargs = dict(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)
    if stream:
        for piece in llm.generate(prompt, stream=True, **kwargs):
            print(piece, end="", flush=True)
        print()
    else:
        print(llm.generate(prompt, **kwargs))


def export(checkpoint: Path, out_dir: Path) -> None:
    """Export a training run's Lightning checkpoint (.ckpt) as an inference checkpoint directory.

    Args:
        checkpoint: A .ckpt file written by `litllm pretrain` or `litllm finetune`.
        out_dir: Folder to write model.safetensors, model_config.yaml and the tokenizer files to.
    """
    from litllm.training import export_ckpt

    print(f"saved to {export_ckpt(checkpoint, out_dir)}")


def tokenizer_train(
    out: Path,
    files: Union[list[str], str, None] = None,
    corpus: Optional[str] = None,
    vocab_size: int = 8192,
    special_tokens: Optional[list[str]] = None,
    max_bytes: Optional[int] = None,
) -> None:
    """Train a byte-level BPE tokenizer.

    Args:
        out: Folder to write tokenizer.json and tokenizer_config.json to (must not hold a tokenizer already).
        files: Text files or globs to train on (one, or a list: --files '[a.txt, "b/*.md"]').
        corpus: `stdlib` (the Python standard library's source) or a folder of text files.
        vocab_size: Number of tokens, special tokens included.
        special_tokens: Special tokens to reserve (default: <|endoftext|>).
        max_bytes: Train on at most this many bytes of the corpus.
    """
    from litllm.tokenizer_train import train_tokenizer

    kwargs = {} if special_tokens is None else {"special_tokens": special_tokens}
    files = [files] if isinstance(files, str) else files
    path = train_tokenizer(
        files=files, corpus=corpus, vocab_size=vocab_size, out=str(out), max_bytes=max_bytes, **kwargs
    )
    print(f"saved to {path}")


COMMANDS = {
    "download": download,
    "convert": {"to_litllm": to_litllm, "to_hf": to_hf},
    "generate": generate,
    "export": export,
    "tokenizer": {"train": tokenizer_train},
}
TRAINING_COMMANDS = {
    "pretrain": "train a model from scratch (LightningCLI: --config recipe.yaml, --model.*, --data.*, --trainer.*)",
    "finetune": "train from a checkpoint on SFT data (same options as pretrain)",
    "evaluate": "loss, perplexity and bits per byte of a checkpoint on a dataset",
}


def user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean the user asked for something impossible: shown as one line, exit 2."""
    from litllm.checkpoint import HubError

    return (ValueError, OSError, UnknownModelError, HubError)


def RawEpilogFormatter():  # noqa: N802 - a class factory, so jsonargparse is imported only when needed
    from jsonargparse import DefaultHelpFormatter

    class Formatter(DefaultHelpFormatter):
        def _fill_text(self, text: str, width: int, indent: str) -> str:
            return "".join(indent + line for line in text.splitlines(keepends=True))

    return Formatter


def main(argv: list[str] | None = None) -> None:
    from jsonargparse import CLI

    argv = sys.argv[1:] if argv is None else argv
    epilog = "training subcommands (each has its own --help):\n" + "\n".join(
        f"    {name:<10} {text}" for name, text in TRAINING_COMMANDS.items()
    )
    try:
        if argv and argv[0] in TRAINING_COMMANDS:
            from litllm.training import run_training

            run_training(argv[0], argv[1:])
        else:
            CLI(
                COMMANDS,
                args=argv,
                as_positional=True,
                epilog=epilog,
                formatter_class=RawEpilogFormatter(),
                exit_on_error=False,
            )
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:  # output piped into a reader that closed early (`| head`)
        sys.stderr.close()
        sys.exit(0)
    except Exception as e:
        from jsonargparse import ArgumentError

        if isinstance(e, ArgumentError):
            command = " ".join(a for a in argv[:2] if not a.startswith("-"))
            print(f"litllm: error: {e} (see `litllm {command} --help`)", file=sys.stderr)
            sys.exit(2)
        if not isinstance(e, user_errors()):
            raise
        print(f"litllm: error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
