"""The chunked output head + loss of training gives the stock path's values and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from litllm.config import Config
from litllm.training import loss as fused
from litllm.training.module import GPTModule, fused_head_applies


def grads(fn, *inputs: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
    """fn's output and the gradients of its inputs, pulled back from a fixed random upstream gradient."""
    leaves = [None if x is None else x.detach().clone().requires_grad_() for x in inputs]
    out = fn(*leaves)
    upstream = torch.randn(out.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    out.backward(upstream.to(out.dtype))
    return out.detach(), [None if x is None else x.grad for x in leaves]


@pytest.mark.parametrize("chunk_rows", [7, 30], ids=["several-chunks", "one-chunk"])
@pytest.mark.parametrize("bias", [False, True])
def test_linear_cross_entropy_equals_the_stock_loss_and_gradients(
    monkeypatch: pytest.MonkeyPatch, bias: bool, chunk_rows: int
) -> None:
    monkeypatch.setattr(fused, "CHUNK_BYTES", chunk_rows * 4 * 50)  # 7 rows: several chunks, a ragged last one
    torch.manual_seed(0)
    h, w = torch.randn(30, 16, dtype=torch.float64), torch.randn(50, 16, dtype=torch.float64)
    b = torch.randn(50, dtype=torch.float64) if bias else None
    labels = torch.randint(0, 50, (30,))
    labels[[0, 9, 29]] = -100

    def ours(h, w, b):
        return fused.linear_cross_entropy(h, w, b, labels, -100)

    def stock(h, w, b):
        return F.cross_entropy(F.linear(h, w, b), labels, ignore_index=-100, reduction="sum")

    got, got_grads = grads(ours, h, w, b)
    want, want_grads = grads(stock, h, w, b)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    for g, r in zip(got_grads, want_grads, strict=True):
        if r is not None:
            torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-10)
    with torch.no_grad():
        torch.testing.assert_close(ours(h, w, b), want, rtol=1e-12, atol=1e-12)


def test_linear_cross_entropy_under_bf16_autocast_matches_autocast_logits() -> None:
    torch.manual_seed(0)
    h, w, labels = torch.randn(64, 32), torch.randn(300, 32) * 0.2, torch.randint(0, 300, (64,))

    def stock(h, w):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = F.linear(h, w)
        return F.cross_entropy(logits.float(), labels, reduction="sum")

    def ours(h, w):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return fused.linear_cross_entropy(h, w, None, labels, -100)

    got, (gh, gw) = grads(ours, h, w)
    want, (rh, rw) = grads(stock, h, w)
    assert got.dtype == torch.float32 and gh.dtype == h.dtype and gw.dtype == w.dtype
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(gh, rh, rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(gw, rw, rtol=2e-2, atol=2e-2)


def test_the_training_loss_takes_the_fused_head_and_matches_the_logits_path() -> None:
    config = Config(name="fused-test", block_size=32, vocab_size=64, n_layer=2, n_embd=32, n_head=4, n_query_groups=2)
    torch.manual_seed(0)
    module = GPTModule(model_config=config.to_dict())
    module.configure_model()
    gpt = module.gpt
    assert fused_head_applies(gpt)
    batch = {"input_ids": torch.randint(0, 64, (2, 32)), "labels": torch.randint(0, 64, (2, 32))}
    batch["labels"][0, :5] = -100
    loss, n = module.loss(batch)
    loss.backward()
    fused_grads = [p.grad.clone() for p in gpt.parameters()]
    gpt.zero_grad()
    logits = gpt(batch["input_ids"])
    reference = F.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten(), ignore_index=-100)
    reference.backward()
    assert n == 59
    torch.testing.assert_close(loss, reference, rtol=1e-6, atol=1e-6)
    for g, p in zip(fused_grads, gpt.parameters(), strict=True):
        torch.testing.assert_close(g, p.grad, rtol=1e-4, atol=1e-6)


def test_a_loss_of_one_chunk_holds_one_copy_of_its_logits() -> None:
    """The logits of a single chunk turn into their own gradient: one (N, V) buffer in the whole forward."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Made(TorchDispatchMode):
        storages: set = set()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
            out = func(*args, **(kwargs or {}))
            if isinstance(out, torch.Tensor) and out.shape == (30, 50):
                self.storages.add(out.untyped_storage().data_ptr())
            return out

    torch.manual_seed(0)
    h, w = torch.randn(30, 16, requires_grad=True), torch.randn(50, 16, requires_grad=True)
    labels = torch.randint(0, 50, (30,))
    with Made() as made:
        loss = fused.linear_cross_entropy(h, w, None, labels, -100)
    assert len(made.storages) == 1
    loss.backward()
    torch.testing.assert_close(h.grad, torch.autograd.grad(F.cross_entropy(h @ w.t(), labels, reduction="sum"), h)[0])
