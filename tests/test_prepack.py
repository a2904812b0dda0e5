"""oneDNN prepacked linear weights for batched CPU decoding: same outputs as F.linear, retired when the weights
change, never used under autograd, and made by the Scheduler only when two or more rows decode and memory allows."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from litllm import engine
from litllm.config import Config
from litllm.engine import Request, SamplingParams, Scheduler
from litllm.model import GPT, Linear

CONFIG = Config(name="prepack-test", block_size=64, vocab_size=96, n_layer=2, n_embd=32, n_head=4, intermediate_size=64)


def model(dtype: torch.dtype = torch.float32) -> GPT:
    torch.manual_seed(0)
    m = GPT(CONFIG).to(dtype).eval()
    m.reset_parameters()
    return m


def linears(m: GPT) -> list[Linear]:
    return [x for x in m.modules() if isinstance(x, Linear)]


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
def test_packed_linear_matches_f_linear_for_any_number_of_rows(dtype: torch.dtype, tol: float) -> None:
    layer = Linear(48, 40).to(dtype)
    assert layer.prepack() == 48 * 40 * layer.weight.element_size()
    for shape in [(2, 48), (3, 5, 48), (16, 1, 48), (200, 48)]:
        x = torch.randn(shape, dtype=dtype)
        with torch.no_grad():
            got = layer(x)
            want = F.linear(x.float(), layer.weight.float(), layer.bias.float())
        assert got.shape == (*shape[:-1], 40) and got.dtype == dtype
        torch.testing.assert_close(got.float(), want, rtol=tol, atol=tol)


def test_a_changed_weight_retires_its_packed_copy() -> None:
    layer = Linear(16, 8)
    layer.prepack()
    x = torch.randn(4, 16)
    with torch.no_grad():
        layer.weight.mul_(2.0)  # what an optimizer step or load_state_dict does: in place, version bumped
        torch.testing.assert_close(layer(x), F.linear(x, layer.weight, layer.bias))
    assert layer.packed is None
    layer.prepack()
    layer.weight = torch.nn.Parameter(torch.randn(8, 16))  # a new tensor altogether
    with torch.no_grad():
        torch.testing.assert_close(layer(x), F.linear(x, layer.weight, layer.bias))
    assert layer.current_pack() is None


def test_autograd_never_takes_the_packed_path() -> None:
    layer = Linear(16, 8)
    layer.prepack()
    layer(torch.randn(4, 16)).sum().backward()
    assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0


def test_model_prepack_counts_bytes_and_drops_on_cast_and_copies() -> None:
    m = model()
    expected = sum(x.weight.numel() * x.weight.element_size() for x in linears(m))
    assert m.prepack() == expected == m.prepacked_bytes()
    assert m.prepack() == expected  # current copies are kept, not made again
    twin = copy.deepcopy(m)  # oneDNN tensors cannot be copied: copies start without them
    assert twin.prepacked_bytes() == 0
    m.to(torch.bfloat16)
    assert m.prepacked_bytes() == 0 and all(x.packed is None for x in linears(m))
    m.prepack()
    m.prepack(enabled=False)
    assert m.prepacked_bytes() == 0


def greedy(m: GPT, prompts: list[list[int]], prepack: bool | None = None) -> list[list[int]]:
    scheduler = Scheduler(m, max_batch_size=len(prompts), prepack=prepack)
    completions = [scheduler.submit(Request(p, 10, params=SamplingParams(temperature=0)))[0] for p in prompts]
    scheduler.run()
    return [c.token_ids for c in completions]


PROMPTS = [[5, 6, 7], [1, 2, 3, 4, 5, 6, 7, 8, 9], [40], [11, 12, 13, 14]]


def test_scheduler_prepacks_only_batches_and_the_tokens_do_not_change() -> None:
    m = model()
    alone = [greedy(m, [p])[0] for p in PROMPTS]
    assert m.prepacked_bytes() == 0  # batch 1 keeps the weights' memory as it is
    assert greedy(m, PROMPTS, prepack=False) == alone
    assert m.prepacked_bytes() == 0
    assert greedy(m, PROMPTS) == alone
    assert m.prepacked_bytes() > 0


def test_scheduler_skips_prepacking_when_memory_is_short(monkeypatch: pytest.MonkeyPatch) -> None:
    m = model()
    monkeypatch.setattr(engine, "available_memory", lambda: 1024)
    greedy(m, PROMPTS)
    assert m.prepacked_bytes() == 0
    greedy(m, PROMPTS, prepack=True)  # asked for explicitly: made anyway
    assert m.prepacked_bytes() > 0


def test_admitting_many_requests_grows_the_cache_once(monkeypatch: pytest.MonkeyPatch) -> None:
    m = model()
    calls = []
    empty = engine.KVCache.empty
    monkeypatch.setattr(engine.KVCache, "empty", lambda *a, **k: calls.append(a) or empty(*a, **k))
    greedy(m, PROMPTS * 2)
    assert len(calls) == CONFIG.n_layer  # one allocation per layer for all 8 rows, not one per admitted request
    assert calls[0][0] == 8
