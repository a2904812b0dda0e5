"""Decoding's attention paths in bfloat16 (one query per row; the heads of a group folded into the query axis) agree
with float32 SDPA, with and without a per-row mask; a bfloat16 model decodes with the logits of its full forward,
through litllm's CPU kernel on a bfloat16 cache, and through torch's on a float32 cache where the kernel is off."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from litllm import cpu_attention
from litllm.config import Config
from litllm.model import GPT, CausalSelfAttention


@pytest.mark.parametrize("n_query_groups", [4, 2, 1])
@pytest.mark.parametrize("per_row_mask", [False, True])
def test_one_bfloat16_query_attends_like_float32_sdpa(n_query_groups: int, per_row_mask: bool) -> None:
    config = Config(
        name="attn", block_size=64, vocab_size=16, n_layer=1, n_embd=64, n_head=4, n_query_groups=n_query_groups
    )
    attention = CausalSelfAttention(config, 0)
    g = torch.Generator().manual_seed(0)
    B, S, hs = 3, 37, config.head_size
    q = torch.randn(B, 4, 1, hs, generator=g)
    k, v = torch.randn(B, n_query_groups, S, hs, generator=g), torch.randn(B, n_query_groups, S, hs, generator=g)
    mask = None
    if per_row_mask:  # rows at different lengths: row b sees its first 20 + 8 b keys
        mask = torch.arange(S).view(1, 1, 1, S) < torch.tensor([20, 28, 36]).view(B, 1, 1, 1)
    want = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=n_query_groups < 4)
    got = attention.attend(q.bfloat16(), k.bfloat16(), v.bfloat16(), mask)
    assert got.dtype == torch.bfloat16 and got.shape == want.shape
    torch.testing.assert_close(got.float(), want, atol=2e-2, rtol=2e-2)


@pytest.fixture(params=["litllm kernel", "torch kernel"])
def attention_kernel(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    """Decoding through litllm's CPU attention kernel, or with it switched off (LITLLM_CPU_ATTENTION=0)."""
    if request.param == "torch kernel":
        monkeypatch.setenv("LITLLM_CPU_ATTENTION", "0")
    elif not cpu_attention.available():
        pytest.skip("no C compiler to build the kernel")
    cpu_attention._library.cache_clear()
    yield request.param
    cpu_attention._library.cache_clear()


def test_bfloat16_decoding_gives_the_logits_of_the_full_forward(attention_kernel: str) -> None:
    config = Config(name="attn", block_size=64, vocab_size=64, n_layer=2, n_embd=64, n_head=4, n_query_groups=2)
    torch.manual_seed(0)
    model = GPT(config).bfloat16().eval()
    idx = torch.randint(0, 64, (2, 12))
    with torch.no_grad():
        full = model(idx)[:, -1].float()  # (2, V): prompt run at once, SDPA
        model.set_kv_cache(2, 16)
        # torch's CPU kernel attends one query faster in float32; litllm's reads a bfloat16 cache at half the bytes
        want_dtype = torch.bfloat16 if attention_kernel == "litllm kernel" else torch.float32
        assert model.kv_caches[0].k.dtype == want_dtype
        model(idx[:, :-1], 0)
        stepped = model(idx[:, -1:], 11)[:, -1].float()  # the last token alone: one query per row
        model.clear_kv_cache()
    torch.testing.assert_close(stepped, full, atol=5e-2, rtol=5e-2)
