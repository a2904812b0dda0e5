"""Decoding's attention paths in bfloat16 (one query per row; the heads of a group folded into the query axis) agree
with float32 SDPA, with and without a per-row mask; a bfloat16 model decodes with the logits of its full forward,
through litllm's CPU kernel on a bfloat16 cache, and through torch's on a float32 cache where the kernel is off."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from litllm.config import Config
from litllm.cpu import attention as cpu_attention
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


WINDOWED = Config(
    name="windowed", block_size=64, vocab_size=64, n_layer=2, n_embd=64, n_head=4, n_query_groups=2,
    sliding_window_size=6, sliding_window_period=2, attn_logit_softcap=20.0,
)  # fmt: skip


@pytest.mark.parametrize("config", [WINDOWED, Config.from_name("pythia-160m", n_layer=2)], ids=["windowed", "pythia"])
def test_packed_prompts_fill_their_rows_and_give_their_logits_as_alone(config: Config) -> None:
    torch.manual_seed(0)
    model = GPT(config).eval()
    prompts = [torch.randint(0, 64, (n,)) for n in (5, 13, 1, 9)]
    rows = [4, 0, 2, 5]
    with torch.no_grad():
        model.set_kv_cache(6, 20)
        caches = model.kv_caches
        alone = []
        for row, prompt in zip(rows, prompts, strict=True):
            model.kv_caches = [cache.rows(row, row + 1) for cache in caches]
            alone.append(model(prompt[None], 0, last_only=True)[0, -1])
        want = [(cache.k.clone(), cache.v.clone()) for cache in caches]
        for cache in caches:
            cache.k.zero_(), cache.v.zero_()
        model.kv_caches = caches
        segments = [(row, len(prompt)) for row, prompt in zip(rows, prompts, strict=True)]
        packed = model(torch.cat(prompts)[None], 0, last_only=True, segments=segments)
    assert packed.shape == (4, 1, config.vocab_size)
    torch.testing.assert_close(packed[:, -1], torch.stack(alone), atol=1e-5, rtol=1e-5)
    for (k, v), cache in zip(want, caches, strict=True):
        torch.testing.assert_close(cache.k, k, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(cache.v, v, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    ("segments", "message"),
    [([(0, 3), (1, 3)], "add up to the 5 tokens"), ([(0, 5), (1, 0)], "must be >= 1"), ([(0, 2), (3, 3)], "0..1")],
)
def test_segments_that_do_not_fit_the_call_are_refused(segments: list[tuple[int, int]], message: str) -> None:
    model = GPT(WINDOWED).eval()
    model.set_kv_cache(2, 8)
    with torch.no_grad(), pytest.raises(ValueError, match=message):
        model(torch.zeros(1, 5, dtype=torch.long), 0, segments=segments)
    with torch.no_grad(), pytest.raises(ValueError, match="input_pos 0"):
        model(torch.zeros(1, 5, dtype=torch.long), 2, segments=[(0, 5)])
