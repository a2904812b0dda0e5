"""nanoGPT's prepared datasets: `<path>/train.bin` and `val.bin` (token ids, np.uint16), with `meta.pkl` when
char-level (`data/shakespeare_char`); without it the ids are GPT-2's (`data/shakespeare`, `data/openwebtext`).

A batch is `batch_size` windows of max_seq_length + 1 tokens (T + 1): `input_ids` a window less its last token,
`labels` the same window less its first. nanoGPT draws windows at random positions, with replacement; here each
epoch visits a fixed set of windows in a shuffled order, so that runs repeat exactly and resume exactly:

- train: epoch e cuts train.bin into windows that start every T tokens from an offset in [0, T) and visits them
  in a permuted order; offset and order are drawn from (seed, e). Each epoch sees every token as a label once
  (but for fewer than 2T at the ends), and window boundaries move from one epoch to the next. Rank r of W
  processes takes every W-th window of that order (all ranks the same count); the last partial batch is dropped.
- val: windows at 0, T, 2T, ... of val.bin, in order, shared among ranks the same way; the last batch may be
  smaller. Without val.bin there is no validation.
- The training loader's `state_dict` (epoch, batches served) goes into Lightning's `.ckpt`, so a run resumed from
  a mid-epoch checkpoint continues with the next batch, bit for bit, whatever num_workers.

`setup` checks that each file holds whole uint16 ids, reading it once, in chunks, to check that every id has a row
in the tokenizer's vocabulary; with meta.pkl, the tokenizer must be the dataset's own (`tokenizer_dir()`).
"""

from __future__ import annotations

import hashlib
import math
import pickle
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from litllm.checkpoint.nanogpt import gpt2_tokenizer_dir, is_plain_name, read_meta, write_char_tokenizer
from litllm.data.base import DataModule
from litllm.paths import atomic_write_bytes, litllm_home
from litllm.tokenizer import Tokenizer

TOKEN = np.dtype("<u2")  # nanoGPT's np.uint16, written on little-endian machines
SPLITS = ("train", "val")
SCAN_CHUNK = 1 << 24  # tokens read at once when checking a file's ids


class NanoGPTBins(DataModule):
    """Pretraining data from a nanoGPT prepared folder: train.bin, val.bin (np.uint16 ids) and meta.pkl (char-level).

    Args:
        path: The folder, e.g. `data/shakespeare_char` of a nanoGPT checkout (`find_nanogpt_dataset` finds one).
        batch_size: Windows of max_seq_length + 1 tokens per batch.
        num_workers: DataLoader worker processes.
        seed: Seed of each epoch's window offset and order.
    """

    def __init__(self, path: str | Path, batch_size: int = 8, num_workers: int = 2, seed: int = 42) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed)
        self.path = Path(path).expanduser()
        self.train_windows: Windows | None = None
        self.val_windows: Windows | None = None
        self._checked: set[tuple[str, int, int, int]] = set()

    def tokenizer_dir(self) -> Path:
        """The folder of this dataset's tokenizer: the char-level one of its meta.pkl, else GPT-2's."""
        if not self.path.is_dir():
            raise FileNotFoundError(f"nanoGPT dataset folder {str(self.path)!r} does not exist")
        meta = self.path / "meta.pkl"
        return char_tokenizer_dir(meta) if meta.is_file() else gpt2_tokenizer_dir()

    def corpus_texts(self) -> Iterator[str]:
        raise TypeError(
            f"NanoGPTBins holds token ids, not text to train a tokenizer on; give the dataset's own tokenizer "
            f"(model.tokenizer_dir={str(self.tokenizer_dir())!r})"
        )

    def bin_files(self) -> dict[str, Path]:
        """train.bin, and val.bin when there is one; a clear error when the folder or train.bin is missing."""
        if not self.path.is_dir():
            raise FileNotFoundError(f"nanoGPT dataset folder {str(self.path)!r} does not exist")
        files = {name: self.path / f"{name}.bin" for name in SPLITS if (self.path / f"{name}.bin").is_file()}
        if "train" not in files:
            raise FileNotFoundError(
                f"{str(self.path)!r} has no train.bin: a nanoGPT dataset folder holds train.bin and val.bin "
                "(np.uint16 token ids, written by its prepare.py or `prepare_char_dataset`)"
            )
        return files

    def setup(self, stage: str | None = None) -> None:
        tokenizer, max_seq_length = self.require_connected()
        files = self.bin_files()
        self.check_tokenizer(tokenizer)
        for file in files.values():
            self.check_ids(file, tokenizer)
        rank, world = self.rank_and_world()
        self.train_windows = Windows(files["train"], max_seq_length, self.batch_size, self.seed, True, rank, world)
        if len(self.train_windows) == 0:
            n = token_count(files["train"])
            raise ValueError(
                f"{str(files['train'])!r} holds {n} tokens, too few for one batch of {self.batch_size} windows of "
                f"max_seq_length + 1 = {max_seq_length + 1} tokens on each of {world} processes; lower batch_size "
                "or max_seq_length"
            )
        val = files.get("val")
        self.val_windows = None
        if val is not None:
            self.val_windows = Windows(val, max_seq_length, self.batch_size, self.seed, False, rank, world)

    def train_dataloader(self) -> ResumableLoader:
        if self.train_windows is None:
            raise RuntimeError(f"{type(self).__name__}.setup() was not called")
        return ResumableLoader(self.train_windows, self.num_workers)

    def val_dataloader(self) -> DataLoader | list:
        """The validation batches; an empty list (Lightning then skips validation) without val.bin or windows."""
        if self.val_windows is None or len(self.val_windows) == 0:
            return []
        return DataLoader(self.val_windows, batch_size=None, num_workers=self.num_workers)

    def rank_and_world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def check_tokenizer(self, tokenizer: Tokenizer) -> None:
        """With meta.pkl, the tokenizer must give each character its meta.pkl id."""
        meta_path = self.path / "meta.pkl"
        if not meta_path.is_file():
            return
        stoi = read_meta(meta_path)["stoi"]
        wrong = [c for c, i in stoi.items() if tokenizer.token_to_id(c) != i]
        if wrong or tokenizer.vocab_size != len(stoi):
            raise ValueError(
                f"{str(self.path)!r} is char-level ({len(stoi)} characters in meta.pkl), but the tokenizer in "
                f"{str(tokenizer.checkpoint_dir)!r} ({tokenizer.vocab_size} tokens) is another; train with the "
                f"dataset's own: tokenizer_dir={str(self.tokenizer_dir())!r}"
            )

    def check_ids(self, file: Path, tokenizer: Tokenizer) -> None:
        """Every id of `file` must be below the tokenizer's vocabulary size (checked once per file version)."""
        stat = file.stat()
        key = (str(file.resolve()), stat.st_size, stat.st_mtime_ns, tokenizer.vocab_size)
        if key in self._checked:
            return
        data = open_bin(file)
        for start in range(0, len(data), SCAN_CHUNK):
            chunk = data[start : start + SCAN_CHUNK]
            top = int(chunk.max())
            if top >= tokenizer.vocab_size:
                where = start + int(np.argmax(chunk >= tokenizer.vocab_size))
                raise ValueError(
                    f"{str(file)!r} holds token id {int(data[where])} at position {where}, but the tokenizer in "
                    f"{str(tokenizer.checkpoint_dir)!r} has ids 0..{tokenizer.vocab_size - 1}: the data was "
                    "prepared with another tokenizer"
                )
        self._checked.add(key)


class Windows(IterableDataset):
    """One rank's batches of windows of `seq_len + 1` tokens from a .bin file, in the order the module describes.

    Worker w of n yields batches start + w, start + w + n, ...: the DataLoader takes one from each worker in turn,
    so batches arrive in order from `start` (the batch a resumed run continues with) whatever n is.
    """

    def __init__(
        self, path: Path, seq_len: int, batch_size: int, seed: int, shuffle: bool, rank: int, world: int
    ) -> None:
        self.path, self.seq_len, self.batch_size, self.seed = path, seq_len, batch_size, seed
        self.shuffle, self.rank, self.world = shuffle, rank, world
        n_tokens, T = token_count(path), seq_len
        # shuffled windows start at offset + i*T, offset < T, and must end inside the file for every offset
        self.n_windows = max(0, (n_tokens - T) // T if shuffle else (n_tokens - 1) // T)
        self.per_rank = self.n_windows // world
        whole = self.per_rank // batch_size
        self.num_batches = whole if shuffle else math.ceil(self.per_rank / batch_size)
        self.epoch = 0
        self.start = 0

    def __len__(self) -> int:
        return self.num_batches

    def window_starts(self, epoch: int) -> np.ndarray:
        """Where this rank's windows of `epoch` start, in the order they are visited."""
        if self.shuffle:
            rng = np.random.default_rng([self.seed % 2**32, epoch])
            offset, order = int(rng.integers(self.seq_len)), rng.permutation(self.n_windows)
        else:
            offset, order = 0, np.arange(self.n_windows)
        return offset + order[self.rank :: self.world][: self.per_rank] * self.seq_len

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        data = open_bin(self.path)
        starts, B = self.window_starts(self.epoch), self.batch_size
        for k in range(self.start + worker, self.num_batches, workers):
            yield window_batch(data, starts[k * B : (k + 1) * B], self.seq_len + 1)


class ResumableLoader(DataLoader):
    """A DataLoader over `Windows` that counts the batches it serves: its `state_dict`, which Lightning keeps in the
    `.ckpt`, says where a resumed run continues. Iterated again after a whole epoch, it starts the next epoch."""

    def __init__(self, windows: Windows, num_workers: int) -> None:
        super().__init__(windows, batch_size=None, num_workers=num_workers)
        self.epoch, self.served, self.begun = 0, 0, False

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        windows: Windows = self.dataset
        if self.begun and self.served >= len(windows):
            self.epoch, self.served = self.epoch + 1, 0
        self.begun = True
        windows.epoch, windows.start = self.epoch, self.served  # read by the workers, which start now
        return self._counted(super().__iter__())

    def _counted(self, batches: Iterator[dict[str, torch.Tensor]]) -> Iterator[dict[str, torch.Tensor]]:
        for batch in batches:
            self.served += 1
            yield batch

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "served": self.served, "batches_per_epoch": len(self.dataset)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("batches_per_epoch") != len(self.dataset):
            raise ValueError(
                f"the checkpoint's data loader had {state.get('batches_per_epoch')} batches per epoch, this one has "
                f"{len(self.dataset)}: the data, batch_size, max_seq_length or number of processes changed since"
            )
        self.epoch, self.served, self.begun = int(state["epoch"]), int(state["served"]), True


def window_batch(data: np.ndarray, starts: np.ndarray, window: int) -> dict[str, torch.Tensor]:
    """A batch of next-token examples from the windows of `window` tokens at `starts`."""
    x = torch.from_numpy(np.stack([data[s : s + window] for s in starts]).astype(np.int64))  # (B, T + 1)
    return {"input_ids": x[:, :-1].contiguous(), "labels": x[:, 1:].contiguous()}  # (B, T) each


def token_count(path: Path) -> int:
    """The ids a .bin file holds; a ValueError for a size that is not a whole number of uint16 ids."""
    size = path.stat().st_size
    if size % TOKEN.itemsize:
        raise ValueError(
            f"{str(path)!r} has {size} bytes, not a whole number of 2-byte (np.uint16) token ids: not a nanoGPT .bin"
        )
    if size == 0:
        raise ValueError(f"{str(path)!r} is empty")
    return size // TOKEN.itemsize


def open_bin(path: Path) -> np.ndarray:
    """A .bin file's ids, memory-mapped (read-only)."""
    token_count(path)
    return np.memmap(path, dtype=TOKEN, mode="r")


def char_tokenizer_dir(meta_path: str | Path) -> Path:
    """A folder with the char-level tokenizer.json of a meta.pkl, written once into
    $LITLLM_HOME/tokenizers/nanogpt-char-<hash of the meta.pkl>."""
    meta_path = Path(meta_path)
    key = hashlib.sha256(meta_path.read_bytes()).hexdigest()[:16]
    out = litllm_home() / "tokenizers" / f"nanogpt-char-{key}"
    if not (out / "tokenizer.json").is_file():
        write_char_tokenizer(read_meta(meta_path), out)
    return out


def find_nanogpt_dataset(name: str, roots: Sequence[str | Path]) -> Path | None:
    """The first `<root>/data/<name>` holding a train.bin, over `roots` in order (nanoGPT's layout), or None."""
    if not isinstance(name, str) or not is_plain_name(name):
        raise ValueError(f"invalid dataset name {name!r}: a folder name such as 'shakespeare_char' (no '/', '..')")
    for root in roots:
        folder = Path(root).expanduser() / "data" / name
        if (folder / "train.bin").is_file():
            return folder
    return None


def prepare_char_dataset(text: str, out_dir: str | Path, val_fraction: float = 0.1) -> Path:
    """Write `text` as a char-level nanoGPT dataset (train.bin, val.bin, meta.pkl), as nanoGPT's
    shakespeare_char/prepare.py does: the vocabulary is the sorted characters, the first 90% is train."""
    check_split(text, val_fraction)
    chars = sorted(set(text))
    if len(chars) > np.iinfo(TOKEN).max + 1:
        raise ValueError(f"the text has {len(chars)} distinct characters; a uint16 .bin holds at most 65536")
    stoi = {c: i for i, c in enumerate(chars)}
    out = Path(out_dir)
    split = int(len(text) * (1 - val_fraction))
    for name, part in zip(SPLITS, (text[:split], text[split:]), strict=True):
        write_bin(out / f"{name}.bin", [stoi[c] for c in part])
    meta = {"vocab_size": len(chars), "itos": dict(enumerate(chars)), "stoi": stoi}
    atomic_write_bytes(out / "meta.pkl", pickle.dumps(meta))
    return out


def prepare_token_dataset(text: str, out_dir: str | Path, tokenizer_dir: str | Path, val_fraction: float = 0.1) -> Path:
    """Write `text` as a nanoGPT dataset of a tokenizer's ids (train.bin, val.bin; no meta.pkl), as nanoGPT's
    shakespeare/prepare.py does with GPT-2's: the first 90% of the characters is train, each part encoded alone."""
    check_split(text, val_fraction)
    tokenizer = Tokenizer(tokenizer_dir)
    if tokenizer.vocab_size > np.iinfo(TOKEN).max + 1:
        raise ValueError(f"the tokenizer has {tokenizer.vocab_size} tokens; a uint16 .bin holds ids below 65536")
    out = Path(out_dir)
    split = int(len(text) * (1 - val_fraction))
    for name, part in zip(SPLITS, (text[:split], text[split:]), strict=True):
        write_bin(out / f"{name}.bin", tokenizer.encode(part, bos=False))
    return out


def check_split(text: str, val_fraction: float) -> None:
    if not isinstance(text, str) or not text:
        raise ValueError("the text to prepare is empty")
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")


def write_bin(path: Path, ids: Sequence[int]) -> None:
    """Write token ids as a .bin file of np.uint16, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, np.asarray(ids, dtype=TOKEN).tobytes())


__all__ = [
    "NanoGPTBins",
    "ResumableLoader",
    "Windows",
    "char_tokenizer_dir",
    "find_nanogpt_dataset",
    "prepare_char_dataset",
    "prepare_token_dataset",
]
