"""`RLModule`: reinforcement learning on a task's reward (`litllm rl`), GRPO-style: no critic, no value model.

Each step samples `num_samples` completions of every prompt of the batch with the model itself, scores them with the
task's `reward(conversation, completion)`, and pushes up the log-probability of the samples that did better than
their group (the prompt's samples) and down that of those that did worse: the advantage of a sample is its reward
minus its group's mean (nanochat's chat_rl). Optionally a KL penalty keeps the model near where it started.
Everything else (optimizer, LR schedule, precision, checkpoints, exact resume, export of final/) is `GPTModule`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional, Union

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import ThroughputMonitor

from litllm.cpu import kernels
from litllm.data.base import IGNORE_INDEX
from litllm.inference.engine import Request, Scheduler
from litllm.inference.options import SamplingParams
from litllm.model import GPT
from litllm.prompts import stop_sequences
from litllm.training.callbacks import TokenThroughput
from litllm.training.module import GPTModule, OptimizerFactory, default_optimizer

if TYPE_CHECKING:
    from litllm.data.rl import RLData
    from litllm.tasks.base import Task


@dataclass
class Rollouts:
    """The completions sampled for a batch of prompts: P prompts, G samples each, rows in prompt order."""

    sequences: list[list[int]]  # P*G rows: prompt ids + completion ids (the stop token included when sampled)
    prompt_lengths: list[int]  # P*G
    rewards: torch.Tensor  # (P, G) float32

    @property
    def completion_lengths(self) -> list[int]:
        return [len(s) - n for s, n in zip(self.sequences, self.prompt_lengths, strict=True)]


class RLModule(GPTModule):
    def __init__(
        self,
        model_config: Union[str, dict, None] = None,
        init_from: Optional[str] = None,
        tokenizer_dir: Optional[str] = None,
        optimizer: OptimizerFactory = default_optimizer,
        warmup_steps: int = 0,
        min_lr_ratio: float = 0.1,
        init_std: float = 0.02,
        activation_checkpointing: bool = False,
        max_seq_length: Optional[int] = None,
        compile: bool = False,
        num_samples: int = 8,
        max_new_tokens: int = 256,
        temperature: float = 1.0,
        top_k: Optional[int] = None,
        kl_coef: float = 0.0,
        normalize_advantages: bool = False,
    ) -> None:
        """
        Args:
            model_config: As for GPTModule (RL normally starts from `init_from`).
            init_from: The checkpoint to improve: any source `LLM.load` accepts (`sft`: the newest finetuning run).
            tokenizer_dir: As for GPTModule.
            optimizer: As for GPTModule.
            warmup_steps: As for GPTModule.
            min_lr_ratio: As for GPTModule.
            init_std: As for GPTModule.
            activation_checkpointing: As for GPTModule.
            max_seq_length: Longest prompt + completion (default: the model's block_size); longer prompts are cut
                from the left.
            compile: As for GPTModule.
            num_samples: Completions sampled per prompt (the group whose mean reward is the baseline).
            max_new_tokens: Longest completion, in tokens.
            temperature: Sampling temperature of the training samples (validation is greedy).
            top_k: Sample among the k likeliest tokens only (None: all).
            kl_coef: Weight of a per-token KL penalty (k3 estimate) against a frozen copy of the starting model;
                0 turns it off and keeps no copy.
            normalize_advantages: Divide each group's advantages by its reward's standard deviation (GRPO); False
                keeps reward minus the group's mean (nanochat).
        """
        super().__init__(
            model_config=model_config,
            init_from=init_from,
            tokenizer_dir=tokenizer_dir,
            optimizer=optimizer,
            warmup_steps=warmup_steps,
            min_lr_ratio=min_lr_ratio,
            init_std=init_std,
            activation_checkpointing=activation_checkpointing,
            max_seq_length=max_seq_length,
            compile=compile,
        )
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        if not 1 <= max_new_tokens < self.max_seq_length:
            raise ValueError(
                f"max_new_tokens must be in 1..{self.max_seq_length - 1} (max_seq_length {self.max_seq_length} "
                f"leaves room for at least one prompt token), got {max_new_tokens}"
            )
        if kl_coef < 0:
            raise ValueError(f"kl_coef must be >= 0 (0: no KL penalty), got {kl_coef}")
        self.sampling = SamplingParams(temperature=temperature, top_k=top_k)  # refuses a bad temperature or top_k
        self.num_samples = num_samples
        self.max_new_tokens = max_new_tokens
        self.kl_coef = kl_coef
        self.normalize_advantages = normalize_advantages
        # the frozen starting model when kl_coef > 0, in a list to keep it out of the state dict and the checkpoints:
        # `load_initial_weights` rebuilds it from init_from, on resume too
        self.reference: list[GPT] = []

    # ---- model ------------------------------------------------------------------------------------------------

    def load_initial_weights(self) -> None:
        """GPTModule's starting weights, and a frozen copy of them for the KL penalty."""
        super().load_initial_weights()
        if self.kl_coef > 0 and not self.reference:
            from litllm.training.export import full_state_dict

            with torch.device(self.device):
                reference = GPT(self.config)  # built, not empty: its non-persistent buffers (RoPE) are computed
            reference.load_state_dict(full_state_dict(self.gpt))
            self.reference.append(reference.requires_grad_(False).eval())

    def configure_callbacks(self) -> list[L.Callback]:
        return [*super().configure_callbacks(), RolloutThroughput()]

    def on_train_start(self) -> None:
        self.flops_per_batch = None  # a step's tokens depend on what was sampled

    def rl_data(self) -> RLData:
        data = self.trainer.datamodule if self._trainer is not None else None
        if not hasattr(data, "task"):
            raise TypeError(f"RLModule trains on RLData (a task with a reward), got {type(data).__name__}")
        return data

    # ---- steps ------------------------------------------------------------------------------------------------

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        indices = batch["index"].tolist()
        # seeds from (step, example): a resumed run samples exactly what the uninterrupted one did
        seeds = [sample_seed(self.global_step, i) for i in indices]
        rollouts = self.rollout(self.rl_data().task, indices, self.num_samples, self.sampling, seeds)
        advantages = group_advantages(rollouts.rewards, self.normalize_advantages)  # (P, G)
        loss, kl = self.policy_loss(rollouts, advantages.flatten().to(self.device))
        P = len(indices)
        self.log("train_loss", loss, prog_bar=True, batch_size=P)
        self.log("train/reward", rollouts.rewards.mean(), prog_bar=True, batch_size=P)
        self.log("train/pass@k", (rollouts.rewards > 0).any(dim=1).float().mean(), batch_size=P)
        lengths = torch.tensor(rollouts.completion_lengths, dtype=torch.float32)
        self.log("train/completion_len", lengths.mean(), batch_size=P)
        if kl is not None:
            self.log("train/kl", kl, batch_size=P)
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        task = self.rl_data().val_task
        indices = batch["index"].tolist()
        rollouts = self.rollout(task, indices, 1, SamplingParams(temperature=0.0), [None] * len(indices))
        rewards = rollouts.rewards[:, 0]
        self.log("val/reward", rewards.mean(), prog_bar=True, batch_size=len(indices))
        self.log("val/pass@1", (rewards > 0).float().mean(), batch_size=len(indices))

    def on_validation_epoch_end(self) -> None:
        pass  # val/reward and val/pass@1 are averaged by `log`; there is no validation loss here

    # ---- rollouts and loss ------------------------------------------------------------------------------------

    def rollout(
        self, task: Task, indices: list[int], num_samples: int, params: SamplingParams, seeds: list[Optional[int]]
    ) -> Rollouts:
        """Sample `num_samples` completions of each example's prompt (one Scheduler: the samples of a prompt share
        its prefill) in eval mode without gradients, and score each with its task's reward."""
        tokenizer = self.load_tokenizer()
        stop_ids, stop = stop_sequences(tokenizer.chat_format, tokenizer)
        room = self.max_seq_length - self.max_new_tokens
        examples, requests = [], []
        for i, seed in zip(indices, seeds, strict=True):
            owner, at = task.locate(i)  # a mixture's example is scored by the task it came from
            conversation = owner.get_example(at)
            # a prompt too long for the context less max_new_tokens is cut from the left: the end holds the
            # question's last words and the opened assistant turn the model must answer after
            prompt = tokenizer.render_for_completion(conversation)[-room:]
            examples.append((owner, conversation))
            requests.append(
                Request(
                    prompt,
                    self.max_new_tokens,
                    params,
                    seed=seed,
                    stop=stop,
                    stop_ids=stop_ids,
                    num_samples=num_samples,
                )
            )
        was_training = self.gpt.training
        self.gpt.eval()
        try:
            # the training run's kernels, never a timed choice or packed weights: the same samples in any process
            with torch.no_grad(), kernels.training_kernels():
                scheduler = Scheduler(
                    self.gpt, tokenizer, len(requests) * num_samples, self.max_seq_length, prepack=False
                )
                groups = [scheduler.submit(request) for request in requests]
                scheduler.run()
        finally:
            self.gpt.train(was_training)
        scored = zip(examples, groups, strict=True)
        rewards = [[float(owner.reward(conv, c.text)) for c in group] for (owner, conv), group in scored]
        return Rollouts(
            sequences=[[*r.prompt, *c.token_ids] for r, group in zip(requests, groups, strict=True) for c in group],
            prompt_lengths=[len(r.prompt) for r in requests for _ in range(num_samples)],
            rewards=torch.tensor(rewards, dtype=torch.float32),
        )

    def policy_loss(self, rollouts: Rollouts, advantages: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """-sum(advantage * log-prob of each sampled token) / sampled tokens (+ kl_coef * KL), and the mean KL.

        A group whose rewards are all equal has advantages 0: its samples add no gradient (nothing to prefer), only
        the KL term when there is one."""
        input_ids, targets = rollout_batch(rollouts, self.tokenizer.eos_id or 0, self.device)  # (R, T) each
        mask = targets != IGNORE_INDEX
        n = mask.sum().clamp(min=1)
        vocab = min(self.config.vocab_size, self.tokenizer.vocab_size)  # the tokens the sampler chose among
        logp = token_logprobs(self.gpt, input_ids, targets, vocab)  # (R, T), 0 off the completions
        loss = -(advantages[:, None] * logp).sum() / n
        if not self.reference:
            return loss, None
        with torch.no_grad(), kernels.training_kernels():  # the policy's kernel, not a timed choice: the same bits
            ref = token_logprobs(self.reference[0], input_ids, targets, vocab)
        delta = (ref - logp).masked_fill(~mask, 0.0)
        kl = ((delta.exp() - delta - 1) * mask).sum() / n  # k3: an unbiased, non-negative estimate of KL(policy||ref)
        return loss + self.kl_coef * kl, kl.detach()


class RolloutThroughput(TokenThroughput):
    """Throughput of RL steps, whose batches are prompt indices: prompts per second (the tokens are sampled in the
    step). Replaces a run's TokenThroughput (Lightning lets a module's callback replace its base class's)."""

    def __init__(self) -> None:
        super().__init__(peak_flops=None)
        self.batch_size_fn = lambda batch: batch["index"].numel()
        self.length_fn = None

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        ThroughputMonitor.on_train_batch_end(self, trainer, pl_module, *args)


def group_advantages(rewards: torch.Tensor, normalize: bool = False, eps: float = 1e-4) -> torch.Tensor:
    """Each sample's reward minus its group's mean, (P, G) from rewards (P, G); divided by the group's standard
    deviation + eps when `normalize`. A group of equal rewards gets zeros."""
    advantages = rewards - rewards.mean(dim=1, keepdim=True)
    if normalize:
        advantages = advantages / (rewards.std(dim=1, unbiased=False, keepdim=True) + eps)
    return advantages


def sample_seed(step: int, index: int) -> int:
    """The sampling seed of example `index` at optimizer step `step`: fixed by both, different for each pair."""
    return (step * 1_000_003 + index) % 2**63


def rollout_batch(rollouts: Rollouts, pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded inputs (R, T) and targets (R, T): the next token on the completions, IGNORE_INDEX elsewhere."""
    R, T = len(rollouts.sequences), max(len(s) for s in rollouts.sequences) - 1
    input_ids = torch.full((R, T), pad_id, dtype=torch.long)
    targets = torch.full((R, T), IGNORE_INDEX, dtype=torch.long)
    for r, (seq, n) in enumerate(zip(rollouts.sequences, rollouts.prompt_lengths, strict=True)):
        ids = torch.tensor(seq, dtype=torch.long)
        input_ids[r, : len(seq) - 1] = ids[:-1]
        targets[r, n - 1 : len(seq) - 1] = ids[n:]  # position t predicts token t + 1: the completion's tokens
    return input_ids.to(device), targets.to(device)


def token_logprobs(gpt: GPT, input_ids: torch.Tensor, targets: torch.Tensor, vocab: int) -> torch.Tensor:
    """log p(target | prefix) under `gpt` over the first `vocab` tokens, (R, T); 0 where the target is IGNORE_INDEX."""
    logits = gpt(input_ids)[..., :vocab]  # (R, T, V)
    nll = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE_INDEX, reduction="none")
    return -nll.view(targets.shape)
