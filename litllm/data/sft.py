"""Supervised finetuning data: instruction or chat records from JSON/JSONL files, in the model's chat format.

A record is either instruction style, {"instruction", "input" (optional), "output", "system" (optional)}, rendered
as one exchange (the user says the instruction, then a blank line and the input when there is one; the assistant
answers the output), or chat style, {"messages": [{"role", "content"}, ...]}. A .json file holds a list of records,
a .jsonl file one record per line; a folder holds train.json(l) and, optionally, val.json(l).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader, Dataset, RandomSampler
from tqdm import tqdm

from litllm.data.base import IGNORE_INDEX, DataModule
from litllm.prompts import ChatFormat, PromptStyle, load_prompt_style, render_conversation, validate_messages

if TYPE_CHECKING:
    from litllm.tokenizer import Tokenizer

# (where the record is, for error messages: "FILE, line N" or "FILE, record N"; its messages)
Record = tuple[str, list[dict[str, str]]]


class SFTData(DataModule):
    """Instruction or chat records from a JSON/JSONL file (or a folder of them), tokenized in the model's chat format.

    Labels are the next token on the assistant's replies (and their end-of-turn token) and IGNORE_INDEX elsewhere;
    with `mask_prompt=False` every token but padding is learned.
    """

    def __init__(
        self,
        path: str,
        val_split_fraction: float = 0.05,
        prompt_style: Optional[str] = None,
        mask_prompt: bool = True,
        max_seq_length: Optional[int] = None,
        batch_size: int = 8,
        num_workers: int = 0,
        seed: int = 42,
    ) -> None:
        """
        Args:
            path: A .json file (a list of records), a .jsonl file (one record per line), or a folder holding
                train.json(l) and optionally val.json(l).
            val_split_fraction: Share of the records held out for validation when there is no val file.
            prompt_style: Name of a built-in chat format; None uses the model's own (passed to `connect`, else its
                checkpoint's prompt_style.yaml or chat template, else `plain`).
            mask_prompt: Learn only the assistant's replies; False learns every token of the conversation.
            max_seq_length: Longest training sequence, when shorter than the model's context; longer
                conversations are cut at the end.
            batch_size: Sequences per batch.
            num_workers: Data-loading worker processes.
            seed: Seed of the train/val split and of the shuffling.
        """
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed)
        if not 0 <= val_split_fraction < 1:
            raise ValueError(f"val_split_fraction must be in [0, 1), got {val_split_fraction}")
        if max_seq_length is not None and max_seq_length < 1:
            raise ValueError(f"max_seq_length must be >= 1 or None, got {max_seq_length}")
        self.path = Path(path)
        self.val_split_fraction = val_split_fraction
        self.prompt_style: ChatFormat | None = PromptStyle.from_name(prompt_style) if prompt_style is not None else None
        self.mask_prompt = mask_prompt
        self.max_seq_length_limit = max_seq_length
        self.model_prompt_style: ChatFormat | None = None
        self.train_dataset: SFTDataset | None = None
        self.val_dataset: SFTDataset | None = None
        self.num_truncated = 0
        """Conversations cut to max_seq_length + 1 tokens by the last `setup`."""
        self.num_dropped = 0
        """Conversations left out by the last `setup` because no assistant token was left to learn."""

    def connect(
        self,
        tokenizer: Tokenizer,
        max_seq_length: int,
        batch_size: int | None = None,
        prompt_style: ChatFormat | str | None = None,
    ) -> None:
        """Give the data what it needs from the model: its tokenizer, context length and chat format."""
        super().connect(tokenizer, max_seq_length, batch_size)
        if self.max_seq_length_limit is not None:
            self.max_seq_length = min(max_seq_length, self.max_seq_length_limit)
        self.model_prompt_style = PromptStyle.from_name(prompt_style) if isinstance(prompt_style, str) else prompt_style
        self.train_dataset = self.val_dataset = None  # tokenized for another model

    def resolved_prompt_style(self) -> ChatFormat:
        """The chat format in use: the one named here, else the model's."""
        tokenizer, _ = self.require_connected()
        return self.prompt_style or self.model_prompt_style or load_prompt_style(tokenizer.checkpoint_dir)

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is not None:
            return
        tokenizer, max_seq_length = self.require_connected()
        train, val = self._read_split()
        style = self.resolved_prompt_style()
        self.num_truncated = self.num_dropped = 0
        datasets = []
        for records in (train, val):
            samples = []
            for where, messages in tqdm(records, desc="Tokenizing", unit="record", disable=None, leave=False):
                try:
                    ids, mask = render_conversation(messages, tokenizer, style)
                except ValueError as e:
                    raise ValueError(f"{where}: {e}") from e
                if len(ids) > max_seq_length + 1:
                    self.num_truncated += 1
                    ids, mask = ids[: max_seq_length + 1], mask[: max_seq_length + 1]
                if not self.mask_prompt:
                    mask = [1] * len(ids)
                if not any(mask[1:]):  # no token left to learn
                    self.num_dropped += 1
                    continue
                samples.append((torch.tensor(ids, dtype=torch.int32), torch.tensor(mask, dtype=torch.bool)))
            datasets.append(SFTDataset(samples))
        self.train_dataset, self.val_dataset = datasets
        if self.num_truncated or self.num_dropped:
            rank_zero_warn(
                f"{self.num_truncated} of {len(train) + len(val)} conversations in {str(self.path)!r} are longer than "
                f"max_seq_length + 1 = {max_seq_length + 1} tokens and were cut at the end; {self.num_dropped} had "
                "no assistant token left to learn and were left out"
            )

    def train_dataloader(self) -> DataLoader:
        dataset = self._require_setup(self.train_dataset)
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        loader = ResumableLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=EpochShuffle(dataset, seed=self.seed, epoch=epoch),
            num_workers=self.num_workers,
            collate_fn=self._collate(),
        )
        loader.trainer = self.trainer
        return loader

    def val_dataloader(self) -> DataLoader:
        dataset = self._require_setup(self.val_dataset)
        return DataLoader(dataset, batch_size=self.batch_size, num_workers=self.num_workers, collate_fn=self._collate())

    def _collate(self) -> partial:
        tokenizer, _ = self.require_connected()
        return partial(pad_collate, pad_id=tokenizer.eos_id if tokenizer.eos_id is not None else 0)

    def _require_setup(self, dataset: SFTDataset | None) -> SFTDataset:
        if dataset is None:
            raise RuntimeError(f"{type(self).__name__}.setup() was not called")
        return dataset

    def _read_split(self) -> tuple[list[Record], list[Record]]:
        """Train and val records: from the folder's files, or the file split by `val_split_fraction`."""
        if self.path.is_dir():
            train_file = _find_file(self.path, "train", required=True)
            val_file = _find_file(self.path, "val", required=False)
            if val_file is not None:
                return read_records(train_file), read_records(val_file)
            records = read_records(train_file)
        elif self.path.is_file():
            records = read_records(self.path)
        else:
            raise FileNotFoundError(f"SFT data {str(self.path)!r} does not exist")
        if not records:
            raise ValueError(f"{str(self.path)!r} holds no records")
        order = list(range(len(records)))
        random.Random(self.seed).shuffle(order)
        n_val = min(len(records) - 1, max(1, round(len(records) * self.val_split_fraction)))
        n_val = n_val if self.val_split_fraction > 0 else 0
        val = set(order[:n_val])  # each part keeps the file's order
        return [r for i, r in enumerate(records) if i not in val], [r for i, r in enumerate(records) if i in val]


class SFTDataset(Dataset):
    """Tokenized conversations; item i is {"input_ids": (T,), "labels": (T,)}, int64, labels already shifted."""

    def __init__(self, samples: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        self.samples = samples  # (token ids (T+1,) int32, loss mask (T+1,) bool)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        ids, mask = self.samples[index]
        ids = ids.long()
        return {"input_ids": ids[:-1], "labels": ids[1:].masked_fill(~mask[1:], IGNORE_INDEX)}


class EpochShuffle(RandomSampler):
    """Shuffles in an order fixed by (seed, epoch): Lightning calls `set_epoch` as each epoch starts, so a resumed
    run goes through every epoch in the order the first run did."""

    def __init__(self, data_source: Dataset, seed: int, epoch: int = 0) -> None:
        super().__init__(data_source, generator=torch.Generator())
        self.seed = seed
        self.resume_at = (-1, 0)  # (epoch, samples of it to skip) once, after a resume mid-epoch
        self.set_epoch(epoch)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.generator.manual_seed(self.seed + epoch)

    def __iter__(self) -> Iterator[int]:
        order = list(super().__iter__())
        skip, self.resume_at = (self.resume_at[1] if self.resume_at[0] == self.epoch else 0), (-1, 0)
        return iter(order[skip:])


class ResumableLoader(DataLoader):
    """A DataLoader that Lightning resumes mid-epoch (it saves `state_dict()` in each checkpoint): the resumed
    epoch goes on after the batches it had trained on, in the same order, instead of starting over."""

    trainer: Any = None

    def state_dict(self) -> dict[str, int]:
        if self.trainer is None:
            return {}
        done = self.trainer.fit_loop.epoch_loop.batch_progress.current.processed  # this epoch's batches trained on
        return {"epoch": self.trainer.current_epoch, "batches": done}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state and isinstance(self.sampler, EpochShuffle):
            self.sampler.resume_at = (state["epoch"], state["batches"] * (self.batch_size or 1))


def pad_collate(samples: list[dict[str, torch.Tensor]], pad_id: int) -> dict[str, torch.Tensor]:
    """A batch of samples right-padded to the longest: input_ids with `pad_id`, labels with IGNORE_INDEX."""
    T = max(len(s["input_ids"]) for s in samples)
    input_ids = torch.full((len(samples), T), pad_id, dtype=torch.long)  # (B, T)
    labels = torch.full((len(samples), T), IGNORE_INDEX, dtype=torch.long)  # (B, T)
    for b, sample in enumerate(samples):
        n = len(sample["input_ids"])
        input_ids[b, :n] = sample["input_ids"]
        labels[b, :n] = sample["labels"]
    return {"input_ids": input_ids, "labels": labels}


def read_records(path: Path) -> list[Record]:
    """The records of a .json (a list) or .jsonl (one per line) file as conversations, with where each one is."""
    text = _read_text(path)
    if path.suffix == ".jsonl":
        entries = []
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            where = f"{str(path)!r}, line {n}"
            try:
                entries.append((where, json.loads(line)))
            except json.JSONDecodeError as e:
                raise ValueError(f"{where}: not valid JSON: {e.msg} (column {e.colno})") from e
    elif path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{str(path)!r}, line {e.lineno}: not valid JSON: {e.msg} (column {e.colno})") from e
        if not isinstance(data, list):
            raise ValueError(f"{str(path)!r} should hold a JSON list of records, got {type(data).__name__}")
        entries = [(f"{str(path)!r}, record {i}", record) for i, record in enumerate(data)]
    else:
        raise ValueError(f"SFT data {str(path)!r} should be a .json or .jsonl file, or a folder of them")
    records = []
    for where, record in entries:
        try:
            records.append((where, record_messages(record)))
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from e
    return records


def record_messages(record: Any) -> list[dict[str, str]]:
    """The conversation of an instruction-style or chat-style record."""
    if not isinstance(record, dict):
        raise ValueError(f"a record should be a JSON object, got {type(record).__name__}")
    if "messages" in record:
        messages = record["messages"]
        if not isinstance(messages, list):
            raise ValueError(f"'messages' should be a list of {{'role', 'content'}} objects, got {messages!r:.80}")
        validate_messages(messages)
        if not any(m["role"] == "assistant" for m in messages):
            raise ValueError("the conversation has no assistant message to learn")
        return [{"role": m["role"], "content": m["content"]} for m in messages]
    for key in ("instruction", "output"):
        if key not in record:
            raise ValueError(f"a record needs 'messages', or 'instruction' and 'output'; this one has no {key!r}")
    for key in ("instruction", "output", "input", "system"):
        if key in record and not isinstance(record[key], str) and not (key == "input" and record[key] is None):
            raise ValueError(f"{key!r} should be a string, got {type(record[key]).__name__}")
    user = record["instruction"] + (f"\n\n{record['input']}" if record.get("input") else "")
    system = [{"role": "system", "content": record["system"]}] if "system" in record else []
    return [*system, {"role": "user", "content": user}, {"role": "assistant", "content": record["output"]}]


def _find_file(folder: Path, stem: str, required: bool) -> Path | None:
    found = [folder / f"{stem}{suffix}" for suffix in (".json", ".jsonl") if (folder / f"{stem}{suffix}").is_file()]
    if len(found) > 1:
        raise ValueError(f"{str(folder)!r} holds both {found[0].name} and {found[1].name}; keep one")
    if not found and required:
        raise FileNotFoundError(f"{str(folder)!r} has no {stem}.json or {stem}.jsonl")
    return found[0] if found else None


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read SFT data {str(path)!r}: {e}") from e
