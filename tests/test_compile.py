"""GPTModule(compile=True): the compiled blocks train like the eager ones (same loss and gradients), in bf16-mixed
and in float32 (where eager linear layers may train through oneDNN, `litllm.cpu.kernels`); a compiled inference forward
reaches the CPU kernels and packed weights through one operator, and a compiled decoding step litllm's attention
kernel, with no graph break."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from litllm.config import Config
from litllm.training.module import GPTModule

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


@pytest.mark.slow  # 25-45 s each: `make test-slow` (and CI) runs them
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


def test_compiled_inference_keeps_the_fast_cpu_kernels_in_one_graph() -> None:
    from litllm.cpu.packing import prepack
    from litllm.model import GPT

    torch.manual_seed(0)
    model = GPT(CONFIG).eval()
    prepack(model, release=True)  # the packed copies are then the only ones: the graph must reach them
    idx = torch.randint(0, 64, (2, 16))
    with torch.no_grad():
        want = model(idx)
        assert torch._dynamo.explain(model.forward)(idx).graph_break_count == 0
        got = torch.compile(model.forward, backend="aot_eager", dynamic=True)(idx)
    torch.testing.assert_close(got, want)


def test_a_compiled_decoding_step_keeps_litllms_attention_kernel_in_one_graph() -> None:
    from litllm.cpu import attention as cpu_attention
    from litllm.model import GPT

    if not cpu_attention.available():
        pytest.skip("no C compiler to build the kernel")
    torch.manual_seed(0)
    model = GPT(CONFIG).eval()
    idx = torch.randint(0, 64, (2, 16))
    step = torch.tensor([[5], [7]])
    positions = torch.tensor([16, 9])  # rows at different lengths: one query each
    with torch.no_grad():
        model.set_kv_cache(2, 32)
        model(idx, 0)
        want = model(step, positions, length=17)
        assert torch._dynamo.explain(model.forward)(step, positions, length=17).graph_break_count == 0
        got = torch.compile(model.forward, backend="aot_eager", dynamic=True)(step, positions, length=17)
    torch.testing.assert_close(got, want)


def test_a_changed_weight_retires_the_copy_compiled_graphs_use() -> None:
    from litllm.cpu.packing import Linear, cpu_linear

    layer = Linear(16, 8)
    layer.prepack()
    assert layer.current_pack() is not None
    x = torch.randn(3, 16)
    with torch.no_grad():
        layer.weight.mul_(2.0)  # in place, as an optimizer step: the packed copy is stale
        torch.testing.assert_close(cpu_linear(x, layer.weight, layer.bias), F.linear(x, layer.weight, layer.bias))
        assert layer.current_pack() is None
        layer.prepack()
        layer.weight.data = torch.randn(8, 16)  # new values without a version bump
        torch.testing.assert_close(cpu_linear(x, layer.weight, layer.bias), F.linear(x, layer.weight, layer.bias))
        assert layer.current_pack() is None
