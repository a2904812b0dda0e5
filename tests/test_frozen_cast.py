"""A frozen weight under autocast is cast once and kept (`litllm.cpu.kernels.frozen_cast`): the same numbers as
autocast's own cast at every use, a new cast once the weight changes, and none for a weight that trains."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from litllm.cpu import kernels
from litllm.cpu.packing import Linear
from litllm.training.loss import linear_cross_entropy


def frozen_linear() -> Linear:
    torch.manual_seed(0)
    layer = Linear(48, 40)
    layer.requires_grad_(False)
    return layer


def test_a_frozen_linear_under_autocast_computes_what_autocast_does_with_its_weight_cast_once() -> None:
    layer = frozen_linear()
    x = torch.randn(3, 5, 48, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = layer(x)
        want = F.linear(x, layer.weight, layer.bias)
        kept = kernels.frozen_cast(layer.weight, torch.bfloat16)
        assert kernels.frozen_cast(layer.weight, torch.bfloat16) is kept  # kept, not cast again
    assert got.dtype == want.dtype == torch.bfloat16 and torch.equal(got, want)
    (g_got,) = torch.autograd.grad(got.float().square().sum(), x)
    (g_want,) = torch.autograd.grad(want.float().square().sum(), x)
    assert torch.equal(g_got, g_want)


def test_a_changed_weight_is_cast_again_and_a_training_one_never_kept() -> None:
    layer = frozen_linear()
    before = kernels.frozen_cast(layer.weight, torch.bfloat16)
    layer.weight.add_(1.0)  # in place: the version counter moves
    after = kernels.frozen_cast(layer.weight, torch.bfloat16)
    assert after is not before and torch.equal(after, layer.weight.bfloat16())
    layer.weight.requires_grad_(True)
    assert kernels.frozen_cast(layer.weight, torch.bfloat16) is not kernels.frozen_cast(layer.weight, torch.bfloat16)
    x = torch.randn(4, 48)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(x)
    out.float().sum().backward()  # a weight that trains still gets its gradient
    assert layer.weight.grad is not None and layer.weight.grad.dtype == torch.float32


def test_a_frozen_head_gives_the_loss_and_input_gradient_of_a_cast_at_every_use() -> None:
    torch.manual_seed(1)
    weight, h, labels = torch.randn(64, 32), torch.randn(10, 32, requires_grad=True), torch.randint(0, 64, (10,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        frozen = linear_cross_entropy(h, weight, None, labels, -100)
        reference = linear_cross_entropy(h, weight.clone().requires_grad_(True), None, labels, -100)
    assert torch.equal(frozen, reference)
    assert torch.equal(torch.autograd.grad(frozen, h)[0], torch.autograd.grad(reference, h)[0])
