"""What every litllm data module provides: the batch format and the `connect` hand-shake with the model."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import lightning as L

if TYPE_CHECKING:
    from litllm.tokenizer import Tokenizer

IGNORE_INDEX = -100
"""Label of a position that contributes no loss (padding, prompt tokens in SFT)."""


class DataModule(L.LightningDataModule):
    """A LightningDataModule whose batches are dicts of `input_ids` (B, T) and `labels` (B, T), both int64.

    `labels[b, t]` is the token that should follow `input_ids[b, :t+1]`, or IGNORE_INDEX. Only the model knows its
    tokenizer and context length: `connect` gives them; without it, `prepare_data`/`setup` ask the model the Trainer
    fits (its `connect_data`, which `GPTModule` has).
    """

    def __init__(self, batch_size: int = 8, num_workers: int = 2, seed: int = 42) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.tokenizer: Tokenizer | None = None
        self.max_seq_length: int | None = None

    def connect(self, tokenizer: Tokenizer, max_seq_length: int, batch_size: int | None = None) -> None:
        """Give the data what it needs from the model: its tokenizer and the longest sequence it takes."""
        if max_seq_length < 1:
            raise ValueError(f"max_seq_length must be >= 1, got {max_seq_length}")
        self.tokenizer = tokenizer
        self.max_seq_length = max_seq_length
        if batch_size is not None:
            self.batch_size = batch_size

    def corpus_texts(self) -> Iterator[str]:
        """The raw training texts, for training a tokenizer on this data; sources without raw text refuse."""
        raise TypeError(f"{type(self).__name__} has no raw text to train a tokenizer on; give a tokenizer_dir")

    def require_connected(self) -> tuple[Tokenizer, int]:
        if self.tokenizer is None or self.max_seq_length is None:
            model = self.trainer.lightning_module if self.trainer is not None else None
            if not hasattr(model, "connect_data"):
                raise RuntimeError(
                    f"{type(self).__name__} has no tokenizer: call .connect(tokenizer, max_seq_length), or fit it "
                    "with a model that gives one (GPTModule with tokenizer_dir or init_from)"
                )
            model.connect_data(self)
        return self.tokenizer, self.max_seq_length
