"""Generation strategy "tensor_parallel": the shards' sums give the whole model's logits, models that do not split are
refused before any process starts, and `distribute(devices=2, generate_strategy="tensor_parallel")` on the CPU runs a
script in two processes that generate what one process does."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from litllm import LLM
from litllm.config import Config
from litllm.model import GPT
from litllm.tensor_parallel import allowed_world_sizes, placement, shard_config, shard_model

LLAMA_LIKE = Config(
    vocab_size=64,
    n_layer=2,
    n_embd=32,
    n_head=4,
    n_query_groups=2,
    intermediate_size=48,
    block_size=32,
    mlp_class="swiglu",
    norm_class="rmsnorm",
    qk_norm="head",
)
GPT2_LIKE = Config(
    vocab_size=64,
    n_layer=2,
    n_embd=32,
    n_head=4,
    block_size=32,
    position_embedding="learned",
    mlp_class="gelu",
    norm_class="layernorm",
    bias=True,
    parallel_residual=True,
)


class Summed(nn.Module):
    """The sum of the shards' outputs: what the all-reduce computes across processes."""

    def __init__(self, parts: list[nn.Module]) -> None:
        super().__init__()
        self.parts = nn.ModuleList(parts)

    def forward(self, *args: object) -> torch.Tensor:
        return sum(part(*args) for part in self.parts)


def random_model(config: Config) -> GPT:
    torch.manual_seed(0)
    model = GPT(config)
    with torch.no_grad():
        for p in model.parameters():  # biases and norms too, not the zeros and ones of an initialisation
            p.normal_(0.0, 0.2)
    return model.eval()


@pytest.mark.parametrize("config", [LLAMA_LIKE, GPT2_LIKE], ids=["gqa-swiglu-rmsnorm", "gpt2-bias-gelu-parallel"])
def test_shards_summed_give_the_whole_models_logits(config: Config) -> None:
    model = random_model(config)
    shards = [shard_model(copy.deepcopy(model), rank, 2) for rank in range(2)]
    joined = copy.deepcopy(model)
    for i, block in enumerate(joined.h):
        block.attn = Summed([shard.h[i].attn for shard in shards])
        block.mlp = Summed([shard.h[i].mlp for shard in shards])
    idx = torch.randint(0, config.vocab_size, (2, 12))
    with torch.no_grad():
        torch.testing.assert_close(joined(idx), model(idx), atol=1e-5, rtol=0)


def test_a_shard_holds_its_share_of_heads_and_columns_and_a_kv_cache_of_its_heads() -> None:
    model = random_model(LLAMA_LIKE)
    whole = model.h[0].attn.proj.weight.detach().clone()
    shard = shard_model(model, 1, 2)
    c, hs = shard.config, LLAMA_LIKE.head_size
    assert (c.n_head, c.n_query_groups, c.intermediate_size, c.head_size, c.n_embd) == (2, 1, 24, hs, 32)
    assert shard.h[0].attn.qkv.weight.shape == ((2 + 2 * 1) * hs, 32)
    assert shard.h[0].mlp.fc.weight.shape == (2 * 24, 32)  # its halves of gate and of up
    assert torch.equal(shard.h[0].attn.proj.weight, whole[:, 2 * hs :])  # rank 1: the last two heads' columns
    assert shard.new_kv_caches(3)[0].k.shape == (3, 1, LLAMA_LIKE.block_size, hs)


def test_only_rank_0_adds_the_output_projections_bias() -> None:
    model = random_model(GPT2_LIKE)
    bias = model.h[0].mlp.proj.bias.detach().clone()
    ranks = [shard_model(copy.deepcopy(model), rank, 2) for rank in range(2)]
    assert torch.equal(ranks[0].h[0].mlp.proj.bias, bias)
    assert not ranks[1].h[0].mlp.proj.bias.any() and not ranks[1].h[0].attn.proj.bias.any()


def test_a_model_whose_heads_do_not_divide_is_refused_naming_the_counts_that_do() -> None:
    config = Config(n_layer=1, n_embd=48, n_head=6, n_query_groups=2, intermediate_size=96)
    assert allowed_world_sizes(config) == [1, 2]
    with pytest.raises(ValueError, match=r"devices=3 does not split.*n_head=6, n_query_groups=2.*in \[1, 2\]"):
        shard_config(config, 3)


def test_qk_norm_over_all_heads_is_refused() -> None:
    with pytest.raises(ValueError, match="qk_norm='all_heads'.*'sequential'"):
        shard_config(Config(n_layer=1, n_embd=32, n_head=4, qk_norm="all_heads"), 2)


def test_tensor_parallel_on_the_cpu_needs_a_process_count() -> None:
    cpu = torch.device("cpu")
    with pytest.raises(ValueError, match="tensor_parallel' on the CPU needs devices=N"):
        placement("cpu", "auto", "tensor_parallel", cpu)
    assert placement("cpu", 2, "tensor_parallel", cpu) == [cpu, cpu]


def test_distribute_refuses_a_device_count_that_does_not_split_before_starting_processes(litllm_dir: Path) -> None:
    llm = LLM.load(litllm_dir, distribute=None)  # 4 heads, 2 key/value groups
    with pytest.raises(ValueError, match=r"devices=4 does not split.*n_query_groups=2.*in \[1, 2\]"):
        llm.distribute(accelerator="cpu", devices=4, generate_strategy="tensor_parallel")
    assert not torch.distributed.is_initialized()


def test_one_device_keeps_the_model_whole_in_this_process(litllm_dir: Path) -> None:
    llm = LLM.load(litllm_dir, distribute=None)
    alone = llm.generate("def add", max_new_tokens=8, temperature=0)
    llm.distribute(accelerator="cpu", devices=1, generate_strategy="tensor_parallel")
    assert llm.config.n_head == 4 and (llm.rank, llm.world_size) == (0, 1)
    assert llm.generate("def add", max_new_tokens=8, temperature=0) == alone
    assert not torch.distributed.is_initialized()


SCRIPT = """
import json, sys
from litllm import LLM

checkpoint, out = sys.argv[1], sys.argv[2]
llm = LLM.load(checkpoint, distribute=None)
llm.distribute(accelerator="cpu", devices=2, generate_strategy="tensor_parallel")
result = {
    "rank": llm.rank,
    "world_size": llm.world_size,
    "n_head": llm.config.n_head,
    "greedy": llm.generate(PROMPTS, max_new_tokens=16, temperature=0, return_as_token_ids=True),
    "seeded": llm.generate("def add", max_new_tokens=16, temperature=1.0, seed=7),
    "unseeded": llm.generate("def add", max_new_tokens=16, temperature=1.0, num_samples=2),
    "streamed": "".join(llm.generate("def add", max_new_tokens=8, temperature=0, stream=True)),
}
llm.distribute(accelerator="cpu", devices=2, generate_strategy="tensor_parallel", precision="bf16-true")
result["bf16"] = llm.generate("def add", max_new_tokens=8, temperature=0)
for name, call in [("save", lambda: llm.save(out + "/saved")), ("elsewhere", lambda: llm.distribute("cpu"))]:
    try:
        call()
    except ValueError as error:
        result[name] = str(error)
with open(f"{out}/rank{llm.rank}.json", "w") as f:
    json.dump(result, f)
"""
PROMPTS = ["def add", "class Point:\n    def"]


def run_script(script: Path, *args: str, timeout: float) -> subprocess.CompletedProcess:
    """Run a Python script in its own process group, all of which (the ranks it starts too) is killed on a timeout."""
    proc = subprocess.Popen([sys.executable, str(script), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)  # fmt: skip
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"{script.name} ran past {timeout} s:\n{out[-3000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out)


@pytest.mark.slow  # 32 s: with the slow tests, which CI runs too
def test_two_cpu_processes_generate_what_one_process_does(litllm_dir: Path, tmp_path: Path) -> None:
    script = tmp_path / "generate_tp.py"
    script.write_text(SCRIPT.replace("PROMPTS", repr(PROMPTS)))
    done = run_script(script, str(litllm_dir), str(tmp_path), timeout=120)
    assert done.returncode == 0, done.stdout[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert [(r["rank"], r["world_size"], r["n_head"]) for r in ranks] == [(0, 2, 2), (1, 2, 2)]
    assert {k: v for k, v in ranks[0].items() if k != "rank"} == {k: v for k, v in ranks[1].items() if k != "rank"}
    llm = LLM.load(litllm_dir, distribute=None)
    assert ranks[0]["greedy"] == llm.generate(PROMPTS, max_new_tokens=16, temperature=0, return_as_token_ids=True)
    assert ranks[0]["seeded"] == llm.generate("def add", max_new_tokens=16, temperature=1.0, seed=7)
    assert ranks[0]["unseeded"][0] != ranks[0]["unseeded"][1]  # two draws, the same on both ranks
    assert "split over 2 processes" in ranks[0]["save"] and "load it again" in ranks[0]["elsewhere"]
