"""Streaming token windows from litdata-optimized directories, local or remote (s3://, gs://, ...).

A directory written by `litdata.optimize(..., item_loader=TokensLoader())` holds one flat stream of token ids.
Training reads it in windows of `max_seq_length + 1` tokens: `input_ids` is a window less its last token,
`labels` the same window less its first. `StreamingDataLoader` keeps its position in its `state_dict`, which
Lightning saves in the `.ckpt`, so a run resumed from a mid-epoch checkpoint continues with the next batch.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from litdata import StreamingDataLoader, StreamingDataset, TokensLoader, train_test_split

from litllm.data.base import DataModule

INDEX = "index.json"


class StreamingTokens(DataModule):
    """A data module whose `setup` fills `train_dataset` and `val_dataset` with windows of max_seq_length + 1 read
    from `path`, `val_split_fraction` of them held out for validation when there is no validation set of its own."""

    def __init__(
        self, path: str, val_split_fraction: float, batch_size: int = 8, num_workers: int = 2, seed: int = 42
    ) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed)
        if not 0 <= val_split_fraction < 1:
            raise ValueError(f"val_split_fraction must be in [0, 1), got {val_split_fraction}")
        self.path = path
        self.val_split_fraction = val_split_fraction
        self.train_dataset: StreamingDataset | None = None
        self.val_dataset: StreamingDataset | None = None

    def train_dataloader(self) -> StreamingDataLoader:
        if self.train_dataset is None:
            raise RuntimeError(f"{type(self).__name__}.setup() was not called")
        return token_loader(self.train_dataset, self.batch_size, self.num_workers)

    def val_dataloader(self) -> StreamingDataLoader | list:
        """The validation batches; an empty list (Lightning then skips validation) when there is no val split."""
        if self.val_dataset is None:
            return []
        return token_loader(self.val_dataset, self.batch_size, self.num_workers)


class LitData(StreamingTokens):
    """Token windows streamed from a directory that `litdata.optimize` wrote with a `TokensLoader`.

    The validation split is, first found: `val_path`; the `split_names[1]` subfolder when the data sits in
    `split_names[0]`/`split_names[1]` subfolders; else a `val_split_fraction` of the windows, held out with
    litdata's `train_test_split` (deterministic in `seed`).

    Args:
        path: The optimized directory: a local folder or a URL that litdata streams (s3://, gs://, r2://, ...).
        val_path: A separate optimized directory to validate on.
        split_names: The train and validation subfolders to look for under `path`.
        val_split_fraction: Share of the windows held out for validation when there is no validation directory;
            0 turns validation off.
        batch_size: Windows per batch.
        num_workers: DataLoader worker processes.
        seed: Seed of the shuffle and of the held-out split.
    """

    def __init__(
        self,
        path: str,
        val_path: str | None = None,
        split_names: tuple[str, str] = ("train", "val"),
        val_split_fraction: float = 0.05,
        batch_size: int = 8,
        num_workers: int = 2,
        seed: int = 42,
    ) -> None:
        super().__init__(path, val_split_fraction, batch_size=batch_size, num_workers=num_workers, seed=seed)
        self.val_path = val_path
        self.split_names = split_names

    def setup(self, stage: str | None = None) -> None:
        _, max_seq_length = self.require_connected()
        train_dir, val_dir = self.split_dirs()
        window = max_seq_length + 1
        if val_dir is not None:
            self.train_dataset = token_dataset(train_dir, window, shuffle=True, seed=self.seed)
            self.val_dataset = token_dataset(val_dir, window, shuffle=False, seed=self.seed)
        elif self.val_split_fraction > 0:
            full = token_dataset(train_dir, window, shuffle=True, seed=self.seed)
            fraction = float(self.val_split_fraction)
            self.train_dataset, self.val_dataset = train_test_split(full, [1 - fraction, fraction], seed=self.seed)
            self.val_dataset.shuffle = False
        else:
            self.train_dataset = token_dataset(train_dir, window, shuffle=True, seed=self.seed)

    def split_dirs(self) -> tuple[str, str | None]:
        """The train directory and the validation directory (None: hold out a fraction of train)."""
        train_name, val_name = self.split_names
        root = require_optimized(self.path, split=train_name)
        val_dir = require_optimized(self.val_path) if self.val_path is not None else None
        if not has_index(root):
            root, split_root = join(root, train_name), root
            if val_dir is None and has_index(join(split_root, val_name)):
                val_dir = join(split_root, val_name)
        return root, val_dir


def token_dataset(input_dir: str, window: int, shuffle: bool, seed: int) -> StreamingDataset:
    """Windows of `window` tokens from an optimized directory (each rank and worker gets its own share)."""
    return StreamingDataset(
        input_dir, item_loader=TokensLoader(block_size=window), shuffle=shuffle, drop_last=True, seed=seed
    )


def token_loader(dataset: StreamingDataset, batch_size: int, num_workers: int) -> StreamingDataLoader:
    return StreamingDataLoader(dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=collate_windows)


def collate_windows(windows: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """A batch of next-token examples from windows of T + 1 tokens."""
    x = torch.stack(windows).long()  # (B, T + 1)
    return {"input_ids": x[:, :-1].contiguous(), "labels": x[:, 1:].contiguous()}  # (B, T) each


def is_remote(path: str) -> bool:
    return "://" in path


def join(root: str, name: str) -> str:
    return f"{root.rstrip('/')}/{name}" if is_remote(root) else str(Path(root) / name)


def has_index(path: str) -> bool:
    """Whether `path` holds a litdata index (for a URL, asked of its object store)."""
    if not is_remote(path):
        return Path(path, INDEX).is_file()
    # litdata exposes no public existence check; this is the one its own `optimize` uses for remote outputs
    from litdata.streaming.fs_provider import _get_fs_provider

    return _get_fs_provider(path).exists(join(path, INDEX))


def require_optimized(path: str, split: str | None = None) -> str:
    """`path` with `~` expanded, checked to be a litdata-optimized directory (or to hold one in `split`)."""
    if not is_remote(path):
        path = os.path.expanduser(path)
        if not Path(path).exists():
            raise FileNotFoundError(f"litdata directory {path!r} does not exist")
    if has_index(path) or (split is not None and has_index(join(path, split))):
        return path
    where = f"no {INDEX}" + (f", nor {split}/{INDEX}" if split is not None else "")
    raise ValueError(
        f"{path!r} is not a litdata-optimized directory ({where}); write one with litdata.optimize(..., "
        "item_loader=TokensLoader()), or use TextFiles for a folder of text"
    )


def token_stats(input_dir: str | Path, window: int) -> tuple[int, int, int]:
    """Of a local optimized directory: how many items (documents) and tokens it holds, and how many windows of
    `window` tokens its chunks give; all 0 when it has no index."""
    try:
        chunks: list[dict[str, Any]] = json.loads(Path(input_dir, INDEX).read_text())["chunks"]
    except FileNotFoundError:
        return 0, 0, 0
    dims = [chunk["dim"] or 0 for chunk in chunks]
    windows = sum(dim // window for dim in dims)  # a window never straddles two chunks
    return sum(chunk["chunk_size"] for chunk in chunks), sum(dims), windows
