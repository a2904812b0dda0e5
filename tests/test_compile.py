"""GPTModule(compile=True): the compiled blocks train like the eager ones (same loss and gradients), in bf16-mixed
and in float32 (where eager linear layers may train through oneDNN, `litllm.kernels`)."""

from __future__ import annotations

import pytest
import torch

from litllm.config import Config
from litllm.module import GPTModule

CONFIG = Config(name="compile-test", block_size=32, vocab_size=64, n_layer=2, n_embd=32, n_head=4, n_query_groups=2)


def losses_and_grads(
    compile: bool, batch: dict[str, torch.Tensor], autocast: bool
) -> tuple[list[float], list[torch.Tensor]]:
    torch.manual_seed(0)
    module = GPTModule(model_config=CONFIG.to_dict(), compile=compile)
    module.configure_model()
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
    losses = []
    for _ in range(3):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss, _ = module.loss(batch)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        grads = [p.grad.clone() for p in module.parameters()]
        optimizer.zero_grad()
    return losses, grads


@pytest.mark.parametrize("autocast", [True, False], ids=["bf16-mixed", "32-true"])
def test_compiled_blocks_train_like_eager_ones(autocast: bool) -> None:
    g = torch.Generator().manual_seed(1)
    batch = {
        "input_ids": torch.randint(0, 64, (2, 32), generator=g),
        "labels": torch.randint(0, 64, (2, 32), generator=g),
    }
    eager_losses, eager_grads = losses_and_grads(False, batch, autocast)
    compiled_losses, compiled_grads = losses_and_grads(True, batch, autocast)
    assert eager_losses[-1] < eager_losses[0]
    tol = (2e-2, 2e-2, 5e-2, 5e-3) if autocast else (1e-4, 1e-5, 1e-3, 1e-5)  # loss rtol/atol, grad rtol/atol
    torch.testing.assert_close(compiled_losses, eager_losses, rtol=tol[0], atol=tol[1])
    for c, e in zip(compiled_grads, eager_grads, strict=True):
        torch.testing.assert_close(c, e, rtol=tol[2], atol=tol[3])
