"""litllm's CPU attention kernel for one query per row: it computes what torch's attention computes over each row's
key range (float32 and bfloat16 caches, grouped heads, windows, capped scores, strided cache views), refuses ranges
outside the keys, stores a step's keys at per-row positions, is built once, and without a compiler leaves decoding
on torch's kernel with one warning."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from litllm.config import Config
from litllm.cpu import attention as cpu_attention
from litllm.cpu import isa, native
from litllm.cpu.attention import kv_cache_dtype
from litllm.model import GPT

pytestmark = pytest.mark.skipif(not cpu_attention.available(), reason="no C compiler to build the kernel")


def reference(q, k, v, lo, hi, scale, cap=0.0):
    """Float32 attention of q (B, nh, 1, hs) to keys lo[b]..hi[b]-1 of k, v (B, nkv, S, hs), by plain torch ops."""
    B, nh, _, hs = q.shape
    nkv, S = k.shape[1], k.shape[2]
    k, v = k.float().repeat_interleave(nh // nkv, dim=1), v.float().repeat_interleave(nh // nkv, dim=1)
    scores = (q @ k.transpose(-1, -2)) * scale  # (B, nh, 1, S)
    if cap:
        scores = cap * torch.tanh(scores / cap)
    keys = torch.arange(S)
    visible = (keys >= lo.view(B, 1)) & (keys < hi.view(B, 1))  # (B, S)
    scores = scores.masked_fill(~visible.view(B, 1, 1, S), float("-inf"))
    return scores.softmax(dim=-1) @ v


def cache_and_query(dtype, n_kv, hs, B=4, nh=4, S=29, capacity=40, seed=0):
    """A query and the first S slots of a larger cache (a strided view, as a decoding step sees it)."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, nh, 1, hs, generator=g)
    k = torch.randn(B, n_kv, capacity, hs, generator=g).to(dtype)[:, :, :S]
    v = torch.randn(B, n_kv, capacity, hs, generator=g).to(dtype)[:, :, :S]
    return q, k, v


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("n_kv", [4, 2, 1])
@pytest.mark.parametrize("hs", [64, 24])
@pytest.mark.parametrize("path", isa.supported())  # each instruction-set build this CPU runs
def test_kernel_attends_like_torch_over_each_rows_key_range(dtype: torch.dtype, n_kv: int, hs: int, path: str) -> None:
    q, k, v = cache_and_query(dtype, n_kv, hs)
    lo = torch.tensor([0, 0, 5, 28])  # whole prefix, a window, a single key
    hi = torch.tensor([29, 17, 13, 29])
    with isa.use(path):
        got = cpu_attention.attend(q, k, v, lo, hi, hs**-0.5)
    assert got.dtype == torch.float32 and got.shape == q.shape
    torch.testing.assert_close(got, reference(q, k, v, lo, hi, hs**-0.5), atol=2e-6, rtol=1e-5)
    torch.testing.assert_close(got[3], v[3, :, 28:29].float().repeat_interleave(4 // n_kv, dim=0))


def test_kernel_caps_scores_like_torch() -> None:
    q, k, v = cache_and_query(torch.float32, 2, 32)
    q = q * 30  # scores far beyond the cap
    lo, hi = torch.zeros(4, dtype=torch.long), torch.tensor([29, 20, 9, 1])
    got = cpu_attention.attend(q, k, v, lo, hi, 0.2, cap=5.0)
    torch.testing.assert_close(got, reference(q, k, v, lo, hi, 0.2, cap=5.0), atol=2e-6, rtol=1e-5)


BAD_RANGES = [([0, 0, 0, -1], [29] * 4), ([0] * 4, [29, 29, 30, 29]), ([9, 0, 0, 0], [8, 1, 1, 1])]


@pytest.mark.parametrize(("lo", "hi"), BAD_RANGES)
def test_a_key_range_outside_the_keys_is_refused(lo: list[int], hi: list[int]) -> None:
    q, k, v = cache_and_query(torch.float32, 4, 16)
    with pytest.raises(ValueError, match=r"0 <= lo <= hi <= 29"):
        cpu_attention.attend(q, k, v, torch.tensor(lo), torch.tensor(hi), 0.25)


def test_a_query_per_row_is_required() -> None:
    q, k, v = cache_and_query(torch.float32, 4, 16)
    with pytest.raises(ValueError, match="one query per row"):
        cpu_attention.attend(q.expand(4, 4, 2, 16), k, v, torch.zeros(4), torch.ones(4), 0.25)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_store_writes_each_rows_new_key_at_its_own_position(dtype: torch.dtype) -> None:
    cache = torch.zeros(3, 2, 40, 8, dtype=dtype)[:, :, :10]  # a strided view, as KVCache.rows gives
    new = torch.randn(3, 2, 1, 8).to(dtype)
    positions = torch.tensor([0, 9, 4])
    want = cache.clone()
    want[torch.arange(3), :, positions] = new[:, :, 0]
    assert cpu_attention.store(cache, new, positions)
    assert torch.equal(cache, want)


def test_store_refuses_a_position_outside_the_cache_and_writes_nothing() -> None:
    cache, new = torch.zeros(2, 2, 10, 8), torch.ones(2, 2, 1, 8)
    with pytest.raises(ValueError, match=r"within 0\.\.9"):
        cpu_attention.store(cache, new, torch.tensor([3, 10]))
    assert not cache.any()


def test_store_leaves_other_dtypes_to_torch() -> None:
    cache = torch.zeros(2, 2, 10, 8)
    assert not cpu_attention.store(cache, torch.ones(2, 2, 1, 8, dtype=torch.float64), torch.tensor([1, 2]))
    assert not cache.any()


def test_the_kernel_is_built_once_per_source_compiler_and_cpu() -> None:
    source = Path(cpu_attention.__file__).with_name("attention.c")
    built = native.build(source, tuple(native.REORDER_SUMS))
    stamp = built.stat().st_mtime_ns
    assert native.build(source, tuple(native.REORDER_SUMS)) == built and built.stat().st_mtime_ns == stamp
    assert not [p.name for p in built.parent.iterdir() if not p.name.startswith("cpu_")]  # no temporary file left


def test_decoding_a_windowed_capped_gqa_model_gives_the_logits_of_its_full_forward() -> None:
    config = Config(
        name="attn", block_size=64, vocab_size=64, n_layer=2, n_embd=64, n_head=4, n_query_groups=2,
        sliding_window_size=6, sliding_window_period=2, attn_logit_softcap=20.0,
    )  # fmt: skip
    torch.manual_seed(0)
    model = GPT(config).eval()
    idx = torch.randint(0, 64, (3, 14))
    lengths = torch.tensor([14, 9, 11])  # rows at different lengths, as in continuous batching
    with torch.no_grad():
        want = torch.stack([model(idx[b : b + 1, :n])[0, -1] for b, n in enumerate(lengths.tolist())])
        model.set_kv_cache(3, 20)
        caches = model.kv_caches
        for b, n in enumerate(lengths.tolist()):  # each prompt but its last token into its own row
            model.kv_caches = [cache.rows(b, b + 1) for cache in caches]
            model(idx[b : b + 1, : n - 1], 0)
        model.kv_caches = caches
        last = idx.gather(1, (lengths - 1).view(3, 1))
        got = model(last, lengths - 1, length=14)[:, -1]
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def run_python(code: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "LITLLM_HOME": str(tmp_path), **env}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment, timeout=120)


FALLBACK = """
import warnings, torch
warnings.simplefilter("always")
from litllm.cpu import attention as cpu_attention
from litllm.cpu.attention import kv_cache_dtype
with warnings.catch_warnings(record=True) as caught:
    print(cpu_attention.available(), cpu_attention.available(), kv_cache_dtype(torch.bfloat16, "cpu"))
print(len(caught), *[str(w.message) for w in caught])
"""


def test_without_a_compiler_decoding_keeps_torchs_kernel_and_warns_once(tmp_path: Path) -> None:
    done = run_python(FALLBACK, tmp_path, CC=str(tmp_path / "no-such-cc"))
    assert done.returncode == 0, done.stderr
    result, warned = done.stdout.splitlines()[:2]
    assert result == "False False torch.float32"  # and bfloat16 models keep a float32 cache, which torch reads faster
    assert warned.startswith("1 ") and "no-such-cc" in warned and "LITLLM_CPU_ATTENTION=0" in warned


def test_the_kernel_can_be_switched_off(tmp_path: Path) -> None:
    done = run_python(FALLBACK, tmp_path, LITLLM_CPU_ATTENTION="0")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[:2] == ["False False torch.float32", "0"]
    assert not (tmp_path / "kernels").exists()


def test_bfloat16_models_keep_a_bfloat16_cache_when_the_kernel_runs() -> None:
    assert kv_cache_dtype(torch.bfloat16, "cpu") == torch.bfloat16
    assert kv_cache_dtype(torch.float32, "cpu") == torch.float32
