"""Reinforcement-learning data: the prompts of a task with a reward, served as batches of example indices.

`litllm rl` samples its own completions, so a batch is not tokens but which examples to prompt with: {"index": (B,)},
indices into `.task` (a TaskMixture of the spec, as `TaskData` builds it: `"gsm8k[0:1000]"`, a .jsonl task file, or
several tasks). The module renders each example's conversation, samples, and scores the samples with the task's
`reward(conversation, completion)`, found through `task.locate(i)` (a mixture's examples keep their own task's reward).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch.utils.data import DataLoader

from litllm.data.base import DataModule
from litllm.data.sft import EpochShuffle, ResumableLoader
from litllm.data.tasks import build_mixture
from litllm.tasks.base import Task


class RLData(DataModule):
    """Example indices of a task with a reward: the training ones shuffled per epoch (an exact mid-epoch resume), the
    validation ones in order."""

    def __init__(
        self,
        task: str,
        val_task: Optional[str] = None,
        val_limit: Optional[int] = None,
        batch_size: int = 8,
        seed: int = 42,
        mixture_seed: int = 42,
    ) -> None:
        """
        Args:
            task: Tasks to learn from (`litllm.tasks` names or .json/.jsonl task files, comma-separated, each
                optionally sliced: `gsm8k[0:1000]`); every one must have a reward.
            val_task: Tasks to validate on (same form): greedy answers, their mean reward and pass@1. None: no
                validation.
            val_limit: Validate on at most this many examples of val_task (its first ones).
            batch_size: Prompts per step (the module samples several completions of each).
            seed: Seed of the shuffling between epochs.
            mixture_seed: Seed of the mixture's one shuffle (several tasks).
        """
        super().__init__(batch_size=batch_size, num_workers=0, seed=seed)
        if val_limit is not None and val_limit < 1:
            raise ValueError(f"val_limit must be >= 1 or None, got {val_limit}")
        # built now, so that a bad spec or a task without a reward fails when the recipe is read, before any model
        self.task: Task = rewarded(build_mixture(task, mixture_seed), task)
        if len(self.task) == 0:
            raise ValueError(f"the task {task!r} holds no examples")
        self.val_task: Task | None = None
        if val_task is not None:
            self.val_task = rewarded(build_mixture(val_task, mixture_seed), val_task)
        else:  # the base class's val_dataloader is Lightning's sign of no validation (an empty list would warn)
            self.val_dataloader = super().val_dataloader
        self.val_limit = val_limit

    def train_dataloader(self) -> DataLoader:
        indices = range(len(self.task))
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        loader = ResumableLoader(
            indices,
            batch_size=self.batch_size,
            sampler=EpochShuffle(indices, seed=self.seed, epoch=epoch),
            num_workers=0,
            collate_fn=collate_indices,
        )
        loader.trainer = self.trainer
        return loader

    def val_dataloader(self) -> DataLoader:
        n = len(self.val_task) if self.val_limit is None else min(self.val_limit, len(self.val_task))
        return DataLoader(range(n), batch_size=self.batch_size, num_workers=0, collate_fn=collate_indices)


def rewarded(task: Task, spec: str) -> Task:
    """`task`, refused with a message naming it when it (or one task of the mixture) has no reward."""
    if not task.has_reward():
        parts = getattr(task, "tasks", [task])
        missing = ", ".join(t.name for t in parts if not t.has_reward())
        raise ValueError(
            f"task {missing!r} (from {spec!r}) has no reward: RL needs tasks that define "
            "reward(conversation, completion) (task files and tasks that score generated answers do)"
        )
    return task


def collate_indices(indices: list[int]) -> dict[str, torch.Tensor]:
    """A batch of example indices: {"index": (B,) int64}."""
    return {"index": torch.tensor(indices, dtype=torch.long)}
