"""The `LLM` facade: load a model from anywhere litllm understands, and generate text with it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import torch

from litllm.checkpoint import (
    CheckpointError,
    cached_checkpoint_dir,
    detect_format,
    download,
    load_checkpoint,
    save_checkpoint,
)
from litllm.config import Config, UnknownModelError, named_configs
from litllm.engine import SamplingParams, generate_tokens
from litllm.model import GPT
from litllm.tokenizer import Tokenizer

REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


class LLM:
    """A `GPT`, its `Tokenizer` and its `Config`, ready to generate."""

    def __init__(self, model: GPT, tokenizer: Tokenizer, checkpoint_dir: Path | None = None) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.checkpoint_dir = checkpoint_dir
        check_vocab_fits(tokenizer, model.config)

    @property
    def config(self) -> Config:
        return self.model.config

    @property
    def device(self) -> torch.device:
        return self.model.wte.weight.device

    @classmethod
    def load(
        cls,
        source: str | Path | Config,
        init: Literal["pretrained", "random"] = "pretrained",
        tokenizer_dir: str | Path | None = None,
        device: str | torch.device | None = None,
        dtype: torch.dtype | str | None = None,
        seed: int = 0,
    ) -> LLM:
        """Load a litllm, Hugging Face or LitGPT checkpoint directory, a Hub repo id or a registry name.

        init="random" builds a named config (or a `Config`) with fresh weights and needs `tokenizer_dir`.
        """
        device = torch.device(device) if device is not None else default_device()
        dtype = resolve_dtype(dtype)
        if init == "random":
            config = source if isinstance(source, Config) else Config.from_name(str(source))
            if tokenizer_dir is None:
                raise ValueError("init='random' needs tokenizer_dir: a folder with tokenizer.json or tokenizer.model")
            tokenizer = Tokenizer(tokenizer_dir)
            check_vocab_fits(tokenizer, config)
            torch.manual_seed(seed)
            with torch.device(device):
                model = GPT(config)
            model.reset_parameters()
            model.to(dtype or torch.float32).eval()
            return cls(model, tokenizer)
        if init != "pretrained":
            raise ValueError(f"init must be 'pretrained' or 'random', got {init!r}")
        if isinstance(source, Config):
            raise ValueError(
                "init='pretrained' needs a checkpoint path, a Hub repo id or a registry name, not a Config"
            )
        checkpoint_dir = resolve_checkpoint(str(source))
        model = load_checkpoint(checkpoint_dir, device=device, dtype=dtype)
        tokenizer = Tokenizer(tokenizer_dir or checkpoint_dir)
        return cls(model, tokenizer, checkpoint_dir)

    def generate(
        self,
        prompt: str,
        max_new_tokens: int = 50,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float = 1.0,
        stream: bool = False,
        seed: int | None = None,
    ) -> str | Iterator[str]:
        """The continuation of `prompt`; with stream=True an iterator of text pieces as they are decoded."""
        if not isinstance(prompt, str):
            raise TypeError(f"prompt must be a string, got {type(prompt).__name__}")
        if not prompt:
            raise ValueError("prompt is empty")
        params = SamplingParams(temperature, top_k, top_p)
        ids = self.tokenizer.encode(prompt)
        limit = self.config.block_size
        if len(ids) >= limit:
            raise ValueError(f"prompt is {len(ids)} tokens long; the model's context is {limit} tokens")
        max_new_tokens = min(max_new_tokens, limit - len(ids)) if max_new_tokens >= 1 else max_new_tokens
        generator = torch.Generator(device=self.device).manual_seed(seed) if seed is not None else None
        tokens = generate_tokens(self.model, ids, max_new_tokens, params, self.tokenizer.stop_ids, generator)
        pieces = self.stream_text(tokens)
        return pieces if stream else "".join(pieces)

    def stream_text(self, tokens: Iterator[int]) -> Iterator[str]:
        """Text pieces for a stream of token ids: whole UTF-8 characters only, stop tokens left out."""
        decoder = self.tokenizer.stream_decoder()
        stop = set(self.tokenizer.stop_ids)
        for token in tokens:
            if token in stop:
                break
            piece = decoder.push(token)
            if piece:
                yield piece
        tail = decoder.flush()
        if tail:
            yield tail

    def save(self, out_dir: str | Path) -> Path:
        """Write a litllm checkpoint directory that `LLM.load` reads back identically."""
        out = save_checkpoint(self.model, out_dir, tokenizer_dir=self.tokenizer.checkpoint_dir)
        return out


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def resolve_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; accepted: {', '.join(DTYPES)}")
    return DTYPES[dtype]


def resolve_checkpoint(source: str) -> Path:
    """The local checkpoint directory for a path, a Hub repo id (downloaded once) or a registry name."""
    path = Path(source).expanduser()
    if path.exists():
        detect_format(path)
        return path
    repo_id = source
    if not REPO_ID.match(source):
        try:
            repo_id = Config.from_name(source).hf_repo or ""
        except UnknownModelError as e:
            raise FileNotFoundError(
                f"{source!r} is neither an existing directory, a Hub repo id (org/name) nor a known model name ({e})"
            ) from None
        if not repo_id:
            raise CheckpointError(f"model {source!r} has no published weights; use init='random' to train it")
    cached = cached_checkpoint_dir(repo_id)
    if cached.is_dir():
        try:
            detect_format(cached)
            return cached
        except (CheckpointError, FileNotFoundError):
            pass  # an unfinished earlier download: fetch again
    if path.is_absolute() or source.startswith("."):
        raise FileNotFoundError(f"checkpoint directory {source!r} does not exist")
    return download(repo_id)


def check_vocab_fits(tokenizer: Tokenizer, config: Config) -> None:
    if tokenizer.vocab_size > config.vocab_size:
        raise ValueError(
            f"the tokenizer has {tokenizer.vocab_size} tokens but the model's vocab_size is {config.vocab_size}: "
            "they do not belong together"
        )


__all__ = ["LLM", "named_configs"]
