"""litllm.cpu.step: a CPU decoding step through every block in one C call computes what the layer-by-layer forward
computes, on every family it covers and every instruction-set path, and steps aside for anything it does not cover."""

from __future__ import annotations

import contextlib
import gc
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
import torch
from hf_models import FAMILIES, VOCAB, save_hf_model
from torch.testing import assert_close

from litllm.checkpoint import load_checkpoint
from litllm.cpu import isa, kernels
from litllm.cpu import step as cpu_step
from litllm.cpu.int8 import quantize_int8
from litllm.cpu.packing import Linear, prepack
from litllm.inference.engine import Request, SamplingParams, Scheduler
from litllm.inference.sampling import first_argmax
from litllm.lora.layers import LoRAConfig, add_adapter, remove_adapter
from litllm.model import GPT, KVCache

pytestmark = pytest.mark.skipif(not cpu_step.available(), reason="no C compiler: decoding runs layer by layer")

PROMPT = 9  # tokens in the cache before the decoding steps
TOLERANCE = {torch.float32: dict(atol=1e-5, rtol=0), torch.bfloat16: dict(atol=3e-2, rtol=0)}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """family -> its tiny Hugging Face directory, saved on first use."""
    return {"root": tmp_path_factory.mktemp("step-families")}


def load(checkpoints: dict, family: str, dtype: torch.dtype = torch.float32) -> GPT:
    path = checkpoints["root"] / family
    if not path.exists():
        save_hf_model(family, path)
    model = load_checkpoint(path, dtype=dtype).eval()
    prepack(model, release=True)  # as the Scheduler packs a model step.c covers
    return model


@contextlib.contextmanager
def layer_by_layer() -> Iterator[None]:
    run = cpu_step.run
    cpu_step.run = lambda *args, **kwargs: None
    try:
        yield
    finally:
        cpu_step.run = run


def caches(model: GPT, rows: int) -> list[KVCache]:
    c, dtype = model.config, model.wte.weight.dtype
    return [KVCache.empty(rows, c.n_query_groups, 32, c.head_size, "cpu", dtype) for _ in range(c.n_layer)]


@torch.no_grad()
def decode(
    model: GPT, tokens: torch.Tensor, steps: int = 3, nxt: torch.Tensor | None = None
) -> tuple[torch.Tensor, list[KVCache]]:
    """Prefill each row of `tokens` (B, PROMPT), then `steps` decoding steps: the first at one position for every
    row, the others at each row's own position (rows behind by 0, 1, 2...). Returns every step's logits and the
    caches."""
    B = tokens.shape[0]
    kv = caches(model, B)
    for b in range(B):  # row by row, as the Scheduler fills a cache row per prompt
        model(tokens[b : b + 1], 0, kv_caches=[c.rows(b, b + 1) for c in kv])
    if nxt is None:  # the tokens fed at the steps (B, steps)
        nxt = torch.randint(VOCAB, (B, steps), generator=torch.Generator().manual_seed(7))
    out = [model(nxt[:, :1], PROMPT, length=PROMPT + 1, kv_caches=kv)]
    for s in range(1, steps):
        pos = torch.tensor([PROMPT + s - min(b, s) for b in range(B)])  # each row's own slot
        out.append(model(nxt[:, s : s + 1], pos, length=int(pos.max()) + 1, kv_caches=kv))
    return torch.cat(out, dim=1), kv


def prompt_tokens(rows: int = 3) -> torch.Tensor:
    return torch.randint(VOCAB, (rows, PROMPT), generator=torch.Generator().manual_seed(3))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_one_call_step_computes_what_the_layers_do(checkpoints: dict, family: str, dtype: torch.dtype) -> None:
    model = load(checkpoints, family, dtype)
    assert cpu_step.plan(model, dtype) is not None, f"{family} should decode in one call"
    fused, fused_kv = decode(model, prompt_tokens())
    with layer_by_layer():
        plain, plain_kv = decode(model, prompt_tokens())
    assert_close(fused, plain, **TOLERANCE[dtype])
    for a, b in zip(fused_kv, plain_kv, strict=True):
        assert_close(a.k, b.k, **TOLERANCE[dtype])
        assert_close(a.v, b.v, **TOLERANCE[dtype])


def test_a_model_with_an_adapter_goes_layer_by_layer(checkpoints: dict) -> None:
    model = load(checkpoints, "llama3")
    add_adapter(model, LoRAConfig(r=4))
    with torch.no_grad():  # B is zero at first: a nonzero one shows whether the adapter ran
        for name, p in model.named_parameters():
            if ".lora." in name:
                p.normal_(0, 0.5)
    assert not cpu_step.covers(model) and cpu_step.plan(model, torch.float32) is None
    adapted, _ = decode(model, prompt_tokens())
    remove_adapter(model, "default")
    base, _ = decode(model, prompt_tokens())
    assert cpu_step.plan(model, torch.float32) is not None
    assert not torch.allclose(adapted, base, atol=1e-3)


@pytest.mark.parametrize("path", isa.supported())  # each instruction-set build this CPU runs
def test_every_instruction_set_path_agrees_with_the_layers(checkpoints: dict, path: str) -> None:
    with isa.use(path):
        for dtype in (torch.float32, torch.bfloat16):
            model = load(checkpoints, "llama3", dtype)
            fused, _ = decode(model, prompt_tokens())
            with layer_by_layer():
                plain, _ = decode(model, prompt_tokens())
            assert_close(fused, plain, **TOLERANCE[dtype])


ACTIVATIONS = {  # step.c's MLP codes and torch's functions
    0: torch.nn.functional.gelu,
    1: lambda v: torch.nn.functional.gelu(v, approximate="tanh"),
    2: torch.nn.functional.silu,
    5: lambda v: torch.relu(v) ** 2,
}


@pytest.mark.parametrize("path", isa.supported())
@pytest.mark.parametrize("code", list(ACTIVATIONS))
def test_the_vectorized_activations_match_torchs(path: str, code: int) -> None:
    """The step's own exp, erf and tanh (vectorized; libm's are scalar) give torch's activations within 5e-7 of
    max(1, |x|), over [-30, 30] and at the edges: zeros, subnormals, +-88 and +-100 (where exp overflows), +-1e4, and
    NaN, which stays NaN."""
    edges = [0.0, -0.0, 1e-30, -1e-30, 1e-42, 88.0, -88.0, 88.5, -88.5, 100.0, -100.0, 1e4, -1e4, float("nan")]
    x = torch.cat([torch.linspace(-30, 30, 60001), torch.tensor(edges)])
    y = torch.empty_like(x)
    cpu_step._library(path).activation(code, x.data_ptr(), y.data_ptr(), x.numel())
    expected = ACTIVATIONS[code](x)
    assert torch.equal(y.isnan(), expected.isnan())
    finite = ~expected.isnan()
    error = (y - expected)[finite].abs() / x[finite].abs().clamp_min(1)
    assert error.max() <= 5e-7, x[finite][error.argmax()]


def argmax_cases(dtype: torch.dtype) -> list[torch.Tensor]:
    """Rows of logits where the first largest is easy to get wrong: ties across the 16 lanes, within a lane and in
    the tail past the whole blocks, NaNs (the first wins, as in torch), -inf rows, +inf, signed zeros, short rows."""
    g = torch.Generator().manual_seed(0)
    cases = [torch.randn(n, V, generator=g) for n, V in [(1, 50304), (16, 50304), (3, 1000), (2, 17), (4, 5), (1, 1)]]
    tied = torch.zeros(6, 1003)
    tied[0, [40, 7, 999]] = 5.0  # across lanes: 7 first
    tied[1, [3, 19, 35]] = 5.0  # within one lane
    tied[2, [1001, 1002]] = 5.0  # in the tail only
    tied[3, [500, 1001]] = 5.0  # a block and the tail
    tied[4] = -0.0
    tied[4, 600] = 0.0  # -0 and 0 are equal: index 0
    tied[5, 9] = float("inf")
    odd = torch.randn(5, 1003, generator=g)
    odd[0, [30, 12]] = float("nan")  # NaN wins, the first one
    odd[1, 1002] = float("nan")  # in the tail
    odd[2] = float("-inf")
    odd[3, [4, 8]] = float("inf")
    odd[4, 0] = float("nan")
    wide = torch.randn(4, 3000, generator=g)[:, 100:2100]  # rows 3000 elements apart
    return [t.to(dtype) for t in [*cases, tied, odd, wide]]


@pytest.mark.parametrize("path", isa.supported())
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
def test_the_greedy_argmax_is_torchs_first_largest(path: str, dtype: torch.dtype) -> None:
    with isa.use(path):
        for logits in argmax_cases(dtype):
            assert torch.equal(cpu_step.argmax(logits), logits.argmax(dim=-1)), logits
            assert torch.equal(first_argmax(logits), logits.argmax(dim=-1))
    assert cpu_step.argmax(torch.zeros(2, 8, dtype=torch.float16)) is None  # torch's way for other dtypes
    assert cpu_step.argmax(torch.zeros(8, 2).t()) is None  # and for rows that are not contiguous


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
def test_a_row_decodes_the_same_alone_and_beside_other_rows(checkpoints: dict, dtype: torch.dtype) -> None:
    model = load(checkpoints, "pythia", dtype)
    tokens = prompt_tokens(4)
    nxt = torch.randint(VOCAB, (4, 3), generator=torch.Generator().manual_seed(7))
    together, _ = decode(model, tokens, nxt=nxt)
    alone, _ = decode(model, tokens[2:3], nxt=nxt[2:3])
    # row 2 is two positions behind in the batch's per-row steps; alone it is row 0: compare the first step
    assert torch.equal(together[2, 0], alone[0, 0])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
def test_int8_weights_decode_in_one_call(checkpoints: dict, dtype: torch.dtype) -> None:
    model = load(checkpoints, "qwen2.5", dtype)
    quantize_int8(model)
    assert cpu_step.covers(model) and cpu_step.plan(model, dtype) is not None
    fused, _ = decode(model, prompt_tokens())
    with layer_by_layer():
        plain, _ = decode(model, prompt_tokens())
    assert_close(fused, plain, **TOLERANCE[dtype])


def test_a_hook_or_an_unpacked_weight_sends_the_step_layer_by_layer(checkpoints: dict) -> None:
    model = load(checkpoints, "llama3")
    assert cpu_step.plan(model, torch.float32) is not None
    calls = []
    handle = model.h[1].mlp.register_forward_hook(lambda *args: calls.append(1))
    assert cpu_step.plan(model, torch.float32) is None
    decode(model, prompt_tokens(), steps=2)
    assert len(calls) == 3 + 2  # three prompts and both steps went through the module
    handle.remove()
    assert cpu_step.plan(model, torch.float32) is not None
    prepack(model, enabled=False)  # weights given back: the plan lets go of the packed copies at once
    assert len(cpu_step._plans) == 0
    assert cpu_step.plan(model, torch.float32) is None and cpu_step.covers(model)


def test_changed_weights_are_read_again(checkpoints: dict) -> None:
    model = load(checkpoints, "pythia")
    before, _ = decode(model, prompt_tokens())
    norm = model.h[0].norm_1
    norm.weight.data = norm.weight.data * 1.5  # new storage: the plan must not read the old one
    model.h[1].attn.proj.bias.data.mul_(0.5)  # in place: the same storage, read at every step
    after, _ = decode(model, prompt_tokens())
    with layer_by_layer():
        plain, _ = decode(model, prompt_tokens())
    assert not torch.allclose(before, after)
    assert_close(after, plain, **TOLERANCE[torch.float32])


def test_a_step_beyond_the_cache_is_refused_by_name(checkpoints: dict) -> None:
    model = load(checkpoints, "llama2")
    kv = caches(model, 1)
    with torch.no_grad(), pytest.raises(ValueError, match="KV cache holds 32 positions, 33 were asked for"):
        model(torch.tensor([[1]]), torch.tensor([32]), length=33, kv_caches=kv)


def test_a_model_that_is_gone_leaves_no_plan(checkpoints: dict) -> None:
    model = load(checkpoints, "smollm2")
    decode(model, prompt_tokens(), steps=1)
    assert model in cpu_step._plans
    del model
    gc.collect()
    assert not any(isinstance(m, GPT) and m.config.name == "smollm2" for m in cpu_step._plans)


def test_a_training_runs_evaluation_keeps_its_own_kernels(checkpoints: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    model = load(checkpoints, "llama3")
    monkeypatch.setattr(cpu_step, "_library", lambda name: pytest.fail("step.c ran inside training_kernels()"))
    with kernels.training_kernels():  # the same bits in every process: the training rule's kernels, layer by layer
        decode(model, prompt_tokens(), steps=2)


def test_the_scheduler_packs_a_model_it_covers_where_the_packed_kernel_alone_loses(
    checkpoints: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kernels, "seconds_per_pass", lambda kernel, rows, weights: 3.0 if kernel == "packed" else 1.0)
    load(checkpoints, "qwen2.5")  # saved
    model = load_checkpoint(checkpoints["root"] / "qwen2.5").eval()
    scheduler = Scheduler(model, max_batch_size=2)
    (completion,) = scheduler.submit(Request([1, 2, 3], 4, params=SamplingParams(temperature=0)))
    scheduler.run()
    assert len(completion.token_ids) == 4
    assert all(m.released for m in model.h.modules() if isinstance(m, Linear))
    assert cpu_step.plan(model, torch.float32) is not None


SWITCHED_OFF = """
from litllm.cpu import isa, step
print(step._library(isa.active()) is None)
"""


def test_the_switch_turns_the_step_off() -> None:
    env = {**os.environ, "LITLLM_CPU_STEP": "0"}
    done = subprocess.run([sys.executable, "-c", SWITCHED_OFF], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True"]  # no step.c: every step goes layer by layer
    assert "could not build" not in done.stderr  # switched off is quiet, not a failed build
