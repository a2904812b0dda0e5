"""Embeddings from any litllm model, in the style of Simon Willison's `llm` library.

    model = litllm.get_embedding_model("tiny")
    vector = model.embed("a sentence")              # n_embd floats, unit length
    vectors = list(model.embed_multi(["one", "two"], batch_size=16))

How a text becomes a vector:
- it is tokenized as the checkpoint tokenizes a prompt (a BOS first where the checkpoint adds one), and cut to
  the model's context: a text longer than `block_size` tokens is embedded from its first `block_size` tokens,
  the rest is dropped;
- the transformer runs once over the tokens, and the final norm's outputs (the hidden states the output head
  would read; no logits are computed) are averaged over the text's tokens (mean pooling), then scaled to unit
  L2 norm, so a dot product of two vectors is their cosine similarity;
- the empty text (or one with no tokens) is embedded as the BOS token alone; a tokenizer without a BOS token
  makes it a ValueError.

Texts of a batch are right-padded to the longest one; attention is causal, so a text's tokens never see the
padding after them, and the pooling counts the text's own tokens only: a text gets the same vector in any
batch as alone (to float rounding). The model loads on first use, once per process and checkpoint (shared with
`litllm.get_model`'s prompts). torch is imported then, not by importing this module.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING

from litllm.errors import UnknownModelError
from litllm.llm_api import find, load_llm
from litllm.local_models import get_default_embedding_model, list_models, set_default_embedding_model

if TYPE_CHECKING:
    import threading

    import torch

    from litllm.api import LLM


class EmbeddingModel:
    """Embeds texts with a litllm model: mean-pooled final hidden states, L2-normalised (see the module's doc).

    `source` is anything `LLM.load` takes: a registry name or alias, a checkpoint folder, a Hub repo id.
    """

    supports_text = True
    supports_binary = False
    batch_size = 16
    """Texts per forward pass in `embed_multi` when it is given no batch_size."""

    def __init__(self, source: str | Path, model_id: str | None = None) -> None:
        self.source = source
        self.model_id = model_id if model_id is not None else str(source)
        self._loaded: tuple[LLM, threading.Lock] | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.model_id}>"

    def llm(self) -> LLM:
        """The loaded `LLM` (loaded on first call, then shared)."""
        return self._load()[0]

    def embed(self, text: str) -> list[float]:
        """The unit-length embedding vector of `text` (n_embd floats)."""
        return self.embed_batch([text])[0]

    def embed_multi(self, texts: Iterable[str], batch_size: int | None = None) -> Iterator[list[float]]:
        """The vector of each text in turn, embedded `batch_size` texts per forward pass (default: `batch_size`)."""
        size = self.batch_size if batch_size is None else batch_size
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {size!r}")
        items = iter(texts)
        while batch := list(islice(items, size)):
            yield from self.embed_batch(batch)

    def embed_batch(self, texts: Iterable[str]) -> list[list[float]]:
        """The vectors of `texts`, embedded together in one forward pass."""
        texts = list(texts)
        for text in texts:
            if not isinstance(text, str):
                raise TypeError(f"{self.model_id} embeds text (str), got {type(text).__name__}: {text!r:.60}")
        if not texts:
            return []
        llm, lock = self._load()
        ids = [self.token_ids(text) for text in texts]
        return pooled_hidden_states(llm, ids, lock).tolist()

    def token_ids(self, text: str) -> list[int]:
        """The tokens `text` is embedded from: as a prompt is tokenized, cut to the context, BOS for no text."""
        llm = self.llm()
        ids = llm.tokenizer.encode(text, max_length=llm.config.block_size)
        if ids:
            return ids
        if llm.tokenizer.bos_id is None:
            raise ValueError(
                f"cannot embed {text!r} with {self.model_id}: the text has no tokens, and the tokenizer has no "
                "BOS token to stand for it"
            )
        return [llm.tokenizer.bos_id]

    def _load(self) -> tuple[LLM, threading.Lock]:
        if self._loaded is None:
            from litllm.checkpoint.sources import resolve_checkpoint

            self._loaded = load_llm(resolve_checkpoint(self.source))
        return self._loaded


def pooled_hidden_states(llm: LLM, ids: list[list[int]], lock: threading.Lock) -> torch.Tensor:
    """(B, C) float32: each row's final hidden states averaged over its tokens, at unit L2 norm."""
    import torch
    import torch.nn.functional as F

    B, T = len(ids), max(len(row) for row in ids)
    idx = torch.zeros((B, T), dtype=torch.long)  # right padding: causal attention keeps it out of the real tokens
    mask = torch.zeros((B, T), dtype=torch.bool)
    for row, tokens in enumerate(ids):
        idx[row, : len(tokens)] = torch.tensor(tokens)
        mask[row, : len(tokens)] = True
    idx, mask = idx.to(llm.device), mask.to(llm.device)
    with lock, torch.inference_mode():  # the lock: one forward at a time on a model that also generates
        hidden = llm.model(idx, hidden=True).float()  # (B, T, C), after the final norm
    weights = mask.unsqueeze(-1).float()  # (B, T, 1)
    mean = (hidden * weights).sum(dim=1) / weights.sum(dim=1)  # (B, C)
    return F.normalize(mean, dim=-1).cpu()


def get_embedding_model(name_or_alias: str | None = None) -> EmbeddingModel:
    """The registry model `name_or_alias` as an embedding model (None: the default embedding model); its weights
    load when it first embeds. UnknownModelError lists the known names."""
    if name_or_alias is None:
        name_or_alias = get_default_embedding_model()
        if name_or_alias is None:
            names = ", ".join(e.name for e in list_models()) or "none yet"
            raise UnknownModelError(
                f"no model named and no default embedding model set (known: {names}; "
                "`litllm.set_default_embedding_model(NAME)` sets one)"
            )
    model_id, path = find(name_or_alias)
    return EmbeddingModel(path, model_id=model_id)


def get_embedding_models() -> list[EmbeddingModel]:
    """Every model of the local registry, as an embedding model."""
    return [EmbeddingModel(e.path, model_id=e.name) for e in list_models()]


__all__ = [
    "EmbeddingModel",
    "get_default_embedding_model",
    "get_embedding_model",
    "get_embedding_models",
    "set_default_embedding_model",
]
