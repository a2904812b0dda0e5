"""A deterministic in-memory data module for training tests: fixed random token windows, no shuffling."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from litllm.data.base import DataModule


class ToyTokens(DataModule):
    """`n` windows of random tokens below `vocab`, in a fixed order (so 1 and 2 processes see the same batches)."""

    def __init__(self, n: int = 64, vocab: int = 256, batch_size: int = 4, num_workers: int = 0, seed: int = 42):
        super().__init__(batch_size, num_workers, seed)
        self.n, self.vocab = n, vocab

    def setup(self, stage: str | None = None) -> None:
        _, seq_len = self.require_connected()
        generator = torch.Generator().manual_seed(self.seed)
        # a learnable pattern: each window counts upwards from a random start, wrapping at vocab
        starts = torch.randint(0, self.vocab, (self.n, 1), generator=generator)
        rows = (starts + torch.arange(seq_len + 1)) % self.vocab
        self.items = [{"input_ids": r[:-1], "labels": r[1:]} for r in rows]

    def train_dataloader(self) -> DataLoader:
        # rank r of w takes items r, r + w, ...: with batch_size b each, w ranks see the same global batches as
        # one process with batch_size w * b (run with trainer.use_distributed_sampler false)
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        return DataLoader(self.items[rank::world], batch_size=self.batch_size, shuffle=False)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.items[:8], batch_size=self.batch_size)
