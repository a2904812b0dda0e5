"""Specification of `litllm rl`: GRPO-style reinforcement learning on a task's reward (RLData, RLModule)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from safetensors.torch import load_file

from litllm.data.rl import RLData
from litllm.tasks import Task, register_task
from litllm.training.rl import RLModule, Rollouts, group_advantages, rollout_batch, sample_seed

TESTS = Path(__file__).parent
QUESTIONS = [f"add {i} and {i}" for i in range(8)]


def write_task(path: Path, answers: list[str]) -> Path:
    """A generative task file: each question's reward is 1.0 for exactly its answer (FileTask's reward)."""
    rows = [
        {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
        for q, a in zip(QUESTIONS, answers, strict=True)
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def next_token_logprobs(module: RLModule, question: str) -> torch.Tensor:
    """log p(first reply token) over the tokenizer's vocabulary, (V,)."""
    tokenizer = module.load_tokenizer()
    prompt = tokenizer.render_for_completion([{"role": "user", "content": question}])
    with torch.no_grad():
        logits = module.gpt(torch.tensor([prompt]))[0, -1, : tokenizer.vocab_size]
    return logits.float().log_softmax(-1)


def margins(module: RLModule, pairs: list[list[int]]) -> list[float]:
    """log p(rewarded token) - log p(the other one), per question."""
    return [
        float(lp[a] - lp[b])
        for q, (a, b) in zip(QUESTIONS, pairs, strict=True)
        for lp in [next_token_logprobs(module, q)]
    ]


def fit(module: RLModule, data: RLData, max_steps: int) -> None:
    trainer = L.Trainer(
        max_steps=max_steps,
        accelerator="cpu",
        precision="32-true",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(module, datamodule=data)


def test_advantage_is_reward_minus_the_group_mean_and_zero_for_an_equal_group() -> None:
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 3.0], [0.5, 0.5, 0.5, 0.5]])
    torch.testing.assert_close(
        group_advantages(rewards),
        torch.tensor([[0.5, -0.5, -0.5, 0.5], [-0.75, -0.75, -0.75, 2.25], [0.0, 0.0, 0.0, 0.0]]),
    )
    normalized = group_advantages(rewards, normalize=True, eps=0.0)[:2]  # by each group's (population) std
    torch.testing.assert_close(normalized, torch.tensor([[1.0, -1.0, -1.0, 1.0], [-1 / 3**0.5] * 3 + [3**0.5]]))
    assert group_advantages(rewards, normalize=True)[2].abs().max() == 0  # no division by a zero std


def test_only_completion_tokens_are_targets() -> None:
    rollouts = Rollouts(sequences=[[5, 6, 7, 8], [5, 6, 9]], prompt_lengths=[2, 2], rewards=torch.zeros(1, 2))
    input_ids, targets = rollout_batch(rollouts, pad_id=0, device=torch.device("cpu"))
    assert input_ids.tolist() == [[5, 6, 7], [5, 6, 0]]
    assert targets.tolist() == [[-100, 7, 8], [-100, 9, -100]]


def test_a_step_makes_the_rewarded_completion_likelier_than_the_unrewarded_one(tmp_path: Path, litllm_dir: Path):
    # one-token replies among the model's two likeliest tokens; the likeliest is the rewarded answer
    module = RLModule(
        init_from=str(litllm_dir),
        num_samples=8,
        max_new_tokens=1,
        top_k=2,
        max_seq_length=64,
        optimizer=lambda params: torch.optim.SGD(params, lr=0.5),
    )
    module.configure_model()
    tokenizer = module.load_tokenizer()
    top2 = [next_token_logprobs(module, q).topk(2).indices.tolist() for q in QUESTIONS]
    texts = [[tokenizer.decode([t]).strip() for t in pair] for pair in top2]
    assert all(a and a != b for a, b in texts), texts  # two distinct visible answers per question
    data = RLData(task=str(write_task(tmp_path / "task.jsonl", [a for a, _ in texts])), batch_size=len(QUESTIONS))
    before = {k: v.clone() for k, v in module.gpt.state_dict().items()}
    margin = margins(module, top2)

    indices = list(range(len(QUESTIONS)))
    drawn = module.rollout(data.task, indices, 8, module.sampling, [sample_seed(0, i) for i in indices])
    assert 0 < drawn.rewards.mean() < 1  # the step's own samples (step 0's seeds): mixed groups, something to learn
    fit(module, data, max_steps=1)

    assert any(not torch.equal(before[k], v) for k, v in module.gpt.state_dict().items())
    after = margins(module, top2)
    assert sum(after) > sum(margin), (margin, after)


def test_a_group_of_equal_rewards_gives_no_gradient(litllm_dir: Path) -> None:
    module = RLModule(init_from=str(litllm_dir), num_samples=2, max_new_tokens=2, max_seq_length=64)
    module.configure_model()
    module.load_tokenizer()
    rollouts = Rollouts(sequences=[[1, 2, 3, 4], [1, 2, 5, 6]], prompt_lengths=[2, 2], rewards=torch.ones(1, 2))
    loss, kl = module.policy_loss(rollouts, group_advantages(rollouts.rewards).flatten())
    loss.backward()
    assert kl is None and all(p.grad is None or p.grad.abs().max() == 0 for p in module.gpt.parameters())


def test_the_kl_penalty_is_zero_at_the_start_and_positive_once_the_model_moves(litllm_dir: Path) -> None:
    module = RLModule(init_from=str(litllm_dir), num_samples=2, max_new_tokens=2, max_seq_length=64, kl_coef=0.1)
    module.configure_model()
    module.load_tokenizer()
    rollouts = Rollouts(sequences=[[1, 2, 3, 4], [1, 2, 5, 6]], prompt_lengths=[2, 2], rewards=torch.ones(1, 2))
    zero = torch.zeros(2)
    assert float(module.policy_loss(rollouts, zero)[1]) == 0.0
    with torch.no_grad():
        module.gpt.lm_head.weight.mul_(3.0)  # the frozen copy keeps the starting weights
    assert float(module.policy_loss(rollouts, zero)[1]) > 0.0
    assert len(module.gpt.state_dict()) == len(module.reference[0].state_dict())  # not part of the checkpoint
    assert not any("reference" in k for k in module.state_dict())


class Unscored(Task):
    """A task that can be evaluated but has no reward."""

    def num_examples(self) -> int:
        return 2

    def get_example(self, index: int) -> dict:
        return {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}

    def evaluate(self, conversation: dict, completion: str) -> bool:
        return completion == "hello"


def test_a_task_without_a_reward_is_refused_before_the_model_loads(tmp_path: Path, monkeypatch, litllm_dir: Path):
    from litllm.training.runs import run_training

    register_task("unscored_test_task", lambda start=0, stop=None, step=1: Unscored(start, stop, step))
    with pytest.raises(ValueError, match=r"'Unscored'.*RL needs .*reward\(conversation, completion\)"):
        RLData(task="unscored_test_task")
    monkeypatch.setenv("LITLLM_RUNS_DIR", str(tmp_path))
    monkeypatch.delenv("LITLLM_RUN_DIR", raising=False)
    args = ["--model.init_from", str(litllm_dir), "--data", "litllm.data.rl.RLData"]
    with pytest.raises(ValueError, match="has no reward"):
        run_training("rl", [*args, "--data.task", "unscored_test_task[0:1]"])
    assert not (tmp_path / "rl").exists()  # refused while the recipe was read: no run was started


def recipe(path: Path, task: Path, litllm_dir: Path, max_steps: int) -> Path:
    config = {
        "model": {
            "init_from": str(litllm_dir),
            "max_seq_length": 48,
            "num_samples": 2,
            "max_new_tokens": 4,
            "kl_coef": 0.05,  # the frozen starting model is rebuilt on resume, not read from the checkpoint
            "min_lr_ratio": 1.0,  # a constant LR: a run stopped at max_steps N/2 has the schedule of one of N steps
            "optimizer": {"class_path": "torch.optim.AdamW", "init_args": {"lr": 0.01}},
        },
        "data": {
            "class_path": "litllm.data.rl.RLData",
            "init_args": {"task": str(task), "val_task": f"{task}[0:3]", "batch_size": 3},
        },
        "trainer": {
            "max_steps": max_steps,
            "precision": "32-true",
            "accelerator": "cpu",
            "log_every_n_steps": 1,
            "val_check_interval": 2,
            "enable_progress_bar": False,
        },
        "checkpoint_every": 2,
    }
    path.write_text(yaml.safe_dump(config))
    return path


def test_litllm_rl_runs_end_to_end_into_the_rl_runs_folder(tmp_path: Path, litllm_dir: Path) -> None:
    task = write_task(tmp_path / "task.jsonl", [str(2 * i) for i in range(len(QUESTIONS))])
    env = {**os.environ, "LITLLM_RUNS_DIR": str(tmp_path / "runs"), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    env.pop("LITLLM_RUN_DIR", None)
    config = recipe(tmp_path / "rl.yaml", task, litllm_dir, max_steps=3)
    result = subprocess.run(
        [sys.executable, "-m", "litllm.cli", "rl", "--config", str(config)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = (tmp_path / "runs" / "rl").iterdir()
    assert (run / "final" / "model.safetensors").is_file() and (run / "checkpoints" / "last.ckpt").is_file()
    with open(run / "logs" / "version_0" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    train = [r for r in rows if r.get("train/reward")]
    assert len(train) == 3
    assert all(r["train/pass@k"] and r["train_loss"] and r["train/completion_len"] and r["train/kl"] for r in train)
    assert all(0 < float(r["train/completion_len"]) <= 4 for r in train)
    assert [r for r in rows if r.get("val/reward") and r.get("val/pass@1")]


@pytest.mark.slow  # three runs: about 16 s on 2 cores
def test_a_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(tmp_path: Path, monkeypatch, litllm_dir: Path):
    from litllm.training.runs import run_training

    monkeypatch.delenv("LITLLM_RUN_DIR", raising=False)
    task = write_task(tmp_path / "task.jsonl", [str(2 * i) for i in range(len(QUESTIONS))])
    straight, halves = tmp_path / "straight", tmp_path / "halves"
    # 3 prompts a step over 8: step 2 ends mid-epoch, step 4 is in the second epoch
    run_training("rl", ["--config", str(recipe(tmp_path / "a.yaml", task, litllm_dir, 4)), "--out_dir", str(straight)])
    run_training("rl", ["--config", str(recipe(tmp_path / "b.yaml", task, litllm_dir, 2)), "--out_dir", str(halves)])
    resume = ["--out_dir", str(halves), "--resume", "auto"]
    run_training("rl", ["--config", str(recipe(tmp_path / "c.yaml", task, litllm_dir, 4)), *resume])
    a, b = load_file(straight / "final" / "model.safetensors"), load_file(halves / "final" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_bad_setting_is_refused_with_what_is_accepted(litllm_dir: Path) -> None:
    with pytest.raises(ValueError, match="max_new_tokens must be in 1..63"):
        RLModule(init_from=str(litllm_dir), max_seq_length=64, max_new_tokens=64)
    with pytest.raises(ValueError, match="kl_coef must be >= 0"):
        RLModule(init_from=str(litllm_dir), max_new_tokens=8, kl_coef=-1.0)
    with pytest.raises(ValueError, match="val_limit must be >= 1"):
        RLData(task="unused.jsonl", val_limit=0)
