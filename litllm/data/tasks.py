"""Training data from tasks (`litllm.tasks`): a TaskMixture of conversations, for midtraining and SFT.

`tasks` names them as `litllm evaluate --tasks` does, with an optional slice per task and repeats allowed:
`"arc_easy[0:2000],gsm8k,chat.jsonl,chat.jsonl"` mixes ARC-Easy's first 2,000 examples, GSM8K and a task file seen
twice as often, shuffled once with `mixture_seed`. Each example's messages are rendered in the model's chat format:
`finetune` learns the assistant's tokens only (`mask_prompt: true`), `midtrain` every token (`mask_prompt: false`).
"""

from __future__ import annotations

from typing import Optional

from litllm.data.sft import Record, SFTData
from litllm.tasks.base import Task, TaskMixture
from litllm.tasks.registry import get_task, parse_specs


def build_mixture(tasks: str | list[str], seed: int) -> TaskMixture:
    """The mixture the specs describe (each task built by `litllm.tasks.get_task`)."""
    tasks = [get_task(n, start=a, stop=b, step=c, split=s) for n, a, b, c, s in parse_specs(tasks)]
    return TaskMixture(tasks, seed=seed)


class TaskData(SFTData):
    """Conversations of a TaskMixture, tokenized in the model's chat format (SFTData's rendering, masks, batches and
    exact resume)."""

    def __init__(
        self,
        tasks: str,
        val_tasks: Optional[str] = None,
        val_split_fraction: float = 0.05,
        prompt_style: Optional[str] = None,
        mask_prompt: bool = True,
        max_seq_length: Optional[int] = None,
        batch_size: int = 8,
        num_workers: int = 0,
        seed: int = 42,
        mixture_seed: int = 42,
    ) -> None:
        """
        Args:
            tasks: Comma-separated tasks to train on: built-in names, registered names or .json/.jsonl task files,
                each optionally sliced (`gsm8k[0:1000]`); a task listed twice is seen twice as often.
            val_tasks: Tasks to validate on (same form); None holds out `val_split_fraction` of the mixture.
            val_split_fraction: Share of the mixture held out for validation when val_tasks is None.
            prompt_style: Name of a built-in chat format; None uses the model's own.
            mask_prompt: Learn only the assistant's replies (SFT); False learns every token (midtraining).
            max_seq_length: Longest training sequence, when shorter than the model's context.
            batch_size: Sequences per batch.
            num_workers: Data-loading worker processes.
            seed: Seed of the train/val split and of the shuffling between epochs.
            mixture_seed: Seed of the mixture's one shuffle.
        """
        super().__init__(
            path=tasks,
            val_split_fraction=val_split_fraction,
            prompt_style=prompt_style,
            mask_prompt=mask_prompt,
            max_seq_length=max_seq_length,
            batch_size=batch_size,
            num_workers=num_workers,
            seed=seed,
        )
        parse_specs(tasks)  # a malformed spec fails when the recipe is read, not after the model loads
        if val_tasks is not None:
            parse_specs(val_tasks)
        self.tasks, self.val_tasks, self.mixture_seed = tasks, val_tasks, mixture_seed

    def _read_split(self) -> tuple[list[Record], list[Record]]:
        train = records_of(build_mixture(self.tasks, self.mixture_seed))
        if self.val_tasks is not None:
            return train, records_of(build_mixture(self.val_tasks, self.mixture_seed))
        if not train:
            raise ValueError(f"the tasks {self.tasks!r} hold no examples")
        if self.val_split_fraction == 0:
            return train, []
        n_val = min(len(train) - 1, max(1, round(len(train) * self.val_split_fraction)))
        return train[n_val:], train[:n_val]  # the mixture is shuffled already: its head is a fair sample


def records_of(task: Task) -> list[Record]:
    """(where, messages) of every example of a task, for SFTData's tokenizer."""
    records = []
    for i in range(len(task)):
        owner, index = task.locate(i)
        records.append((f"{owner.name} example {index}", list(owner.get_example(index)["messages"])))
    return records
