"""Generation: sampling, and the decode loop over the model's KV cache."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from litllm.model import GPT


@dataclass(frozen=True)
class SamplingParams:
    """How the next token is chosen. temperature 0 is greedy."""

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.temperature, (int, float)) or self.temperature < 0:
            raise ValueError(f"temperature must be a number >= 0, got {self.temperature!r}")
        if self.top_k is not None and (not isinstance(self.top_k, int) or self.top_k < 0):
            raise ValueError(f"top_k must be None or an integer >= 0 (0 = no limit), got {self.top_k!r}")
        if not isinstance(self.top_p, (int, float)) or not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p!r}")


def sample(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None = None) -> torch.Tensor:
    """Next token ids (B,) from last-position logits (B, V)."""
    if params.temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / params.temperature
    if params.top_k:
        k = min(params.top_k, logits.shape[-1])
        kth = torch.topk(logits, k, dim=-1).values[..., -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if params.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        # drop a token when the tokens ranked above it already cover top_p; the first always stays
        drop_sorted = cumulative - sorted_logits.softmax(dim=-1) >= params.top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)


@torch.inference_mode()
def generate_tokens(
    model: GPT,
    prompt: Sequence[int] | torch.Tensor,
    max_new_tokens: int,
    params: SamplingParams = SamplingParams(),
    stop_ids: Sequence[int] = (),
    generator: torch.Generator | None = None,
) -> Iterator[int]:
    """Yield new token ids one at a time for a single prompt, decoding one token per step from the KV cache.

    A stop token is yielded and ends the generation.
    """
    device = model.wte.weight.device
    idx = torch.as_tensor(prompt, dtype=torch.long, device=device).view(1, -1)  # (1, T)
    T = idx.shape[1]
    if T == 0:
        raise ValueError("the prompt is empty: give at least one token")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if T + max_new_tokens > model.config.block_size:
        raise ValueError(
            f"prompt of {T} tokens + max_new_tokens={max_new_tokens} exceeds the model's context of "
            f"{model.config.block_size} tokens"
        )
    stop = set(stop_ids)
    model.set_kv_cache(1, T + max_new_tokens)
    try:
        logits = model(idx, 0, last_only=True)  # (1, 1, V)
        pos = T
        for _ in range(max_new_tokens):
            token = sample(logits[:, -1], params, generator)  # (1,)
            token_id = int(token)
            yield token_id
            if token_id in stop or pos >= T + max_new_tokens - 1:
                return
            logits = model(token.view(1, 1), pos)
            pos += 1
    finally:
        model.clear_kv_cache()
