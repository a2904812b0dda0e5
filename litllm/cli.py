"""The `litllm` command. Each subcommand is a typed function whose signature is its command line.

torch and lightning are imported inside the commands, so `litllm --help` stays fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal, Optional

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


COMMANDS = {
    "download": download,
    "convert": {"to_litllm": to_litllm, "to_hf": to_hf},
    "generate": generate,
}


def user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean the user asked for something impossible: shown as one line, exit 2."""
    from litllm.checkpoint import HubError

    return (ValueError, OSError, UnknownModelError, HubError)


def main(argv: list[str] | None = None) -> None:
    from jsonargparse import CLI

    try:
        CLI(COMMANDS, args=argv, as_positional=True)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:  # output piped into a reader that closed early (`| head`)
        sys.stderr.close()
        sys.exit(0)
    except Exception as e:
        if not isinstance(e, user_errors()):
            raise
        print(f"litllm: error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
