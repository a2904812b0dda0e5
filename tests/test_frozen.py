"""Copies of frozen weights kept while they are unchanged (`litllm.cpu.frozen`).

Under autocast a frozen weight is cast once: the same numbers as autocast's own cast at every use, a new cast once
the weight changes, and none for a weight that trains. In float32 with BLAS as the training kernel, a large frozen
weight multiplies through MKL's packed copy: the values of the unpacked product up to round-off, forward and
backward, for any number of rows, packed again once the weight changes."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F

from litllm.cpu import frozen, kernels
from litllm.cpu.packing import Linear
from litllm.training.callbacks import KeepFreedMemory
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
        kept = frozen.cast(layer.weight, torch.bfloat16)
        assert frozen.cast(layer.weight, torch.bfloat16) is kept  # kept, not cast again
    assert got.dtype == want.dtype == torch.bfloat16 and torch.equal(got, want)
    (g_got,) = torch.autograd.grad(got.float().square().sum(), x)
    (g_want,) = torch.autograd.grad(want.float().square().sum(), x)
    assert torch.equal(g_got, g_want)


def test_a_changed_weight_is_cast_again_and_a_training_one_never_kept() -> None:
    layer = frozen_linear()
    before = frozen.cast(layer.weight, torch.bfloat16)
    layer.weight.add_(1.0)  # in place: the version counter moves
    after = frozen.cast(layer.weight, torch.bfloat16)
    assert after is not before and torch.equal(after, layer.weight.bfloat16())
    layer.weight.requires_grad_(True)
    assert frozen.cast(layer.weight, torch.bfloat16) is not frozen.cast(layer.weight, torch.bfloat16)
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


mkl_packs = pytest.mark.skipif(not frozen.mkl_packs(), reason="this torch has no MKL packed products")


@pytest.fixture
def blas_training_kernel() -> Iterator[None]:
    """BLAS (F.linear) as the float32 training kernel, whatever this CPU's rule picks; no copy kept before or after."""
    frozen.forget()
    kernels.use_training_gemm("linear")
    yield
    kernels.use_training_gemm(None)
    frozen.forget()


def large_frozen_linear(bias: bool = True) -> Linear:
    torch.manual_seed(2)
    layer = Linear(512, 640, bias=bias)  # 1.25 MiB of weight: above PACK_BYTES
    layer.requires_grad_(False)
    return layer


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal up to float32 round-off of sums over a few hundred products."""
    return torch.allclose(a, b, rtol=1e-5, atol=1e-4)


@mkl_packs
@pytest.mark.usefixtures("blas_training_kernel")
def test_a_packed_copy_multiplies_like_the_weight_for_any_number_of_rows() -> None:
    torch.manual_seed(3)
    weight = torch.randn(700, 600)
    frozen.product(torch.randn(256, 600), weight)  # packed for 256 rows, used below for others
    frozen.product(torch.randn(256, 700), weight, transposed=True)
    for rows in (1, 7, 100, 300):
        x, g = torch.randn(rows, 600), torch.randn(rows, 700)
        assert close(frozen.product(x, weight), x @ weight.T)
        assert close(frozen.product(g, weight, transposed=True), g @ weight)
        assert torch.equal(frozen.product(x, weight), frozen.product(x, weight))  # the same bits every time
    strided = torch.randn(600, 5).T  # rows that are not contiguous
    assert close(frozen.product(strided, weight), strided @ weight.T)


@mkl_packs
@pytest.mark.usefixtures("blas_training_kernel")
def test_a_large_frozen_linear_trains_through_its_packed_copy_with_the_gradients_of_f_linear() -> None:
    layer = large_frozen_linear()
    layer.bias.requires_grad_(True)  # a bias that trains beside a frozen weight still gets its gradient
    assert frozen.packs_apply(torch.randn(2, 512), layer.weight)
    x = torch.randn(3, 9, 512, requires_grad=True)
    got = layer(x)
    assert got.grad_fn is not None and "PackedLinear" in type(got.grad_fn).__name__
    want = F.linear(x, layer.weight, layer.bias)
    assert close(got, want)
    grad = torch.randn_like(want)
    got_x, got_b = torch.autograd.grad(got, (x, layer.bias), grad)
    want_x, want_b = torch.autograd.grad(want, (x, layer.bias), grad)
    assert close(got_x, want_x) and close(got_b, want_b)


@mkl_packs
@pytest.mark.usefixtures("blas_training_kernel")
def test_a_changed_weight_is_packed_again() -> None:
    layer = large_frozen_linear(bias=False)
    x = torch.randn(4, 512)
    before = frozen.packed_copy(layer.weight, 4)
    layer.weight.mul_(-2.0)  # in place: the version counter moves
    with torch.enable_grad():
        out = layer(x)
    assert frozen.packed_copy(layer.weight, 4) is not before
    assert close(out, F.linear(x, layer.weight))


@mkl_packs
@pytest.mark.usefixtures("blas_training_kernel")
def test_no_packed_copy_for_a_weight_that_trains_a_small_one_autocast_or_the_onednn_kernel() -> None:
    layer, x = large_frozen_linear(), torch.randn(2, 512)
    assert frozen.packs_apply(x, layer.weight)
    assert not frozen.packs_apply(x, torch.randn(64, 512))  # 128 KiB: below PACK_BYTES
    assert not frozen.packs_apply(x.double(), layer.weight.double())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not frozen.packs_apply(x, layer.weight)
    kernels.use_training_gemm("onednn")
    assert not frozen.packs_apply(x, layer.weight)
    kernels.use_training_gemm("linear")
    layer.weight.requires_grad_(True)
    assert not frozen.packs_apply(x, layer.weight)


@mkl_packs
@pytest.mark.usefixtures("blas_training_kernel")
def test_a_frozen_float32_head_gives_the_loss_and_input_gradient_of_the_unpacked_head() -> None:
    torch.manual_seed(4)
    weight, labels = torch.randn(3000, 128) * 0.1, torch.randint(0, 3000, (40,))  # 1.5 MB head
    labels[::7] = -100
    h = torch.randn(40, 128, requires_grad=True)
    packed = linear_cross_entropy(h, weight, None, labels, -100)
    reference = F.cross_entropy(h @ weight.T, labels, ignore_index=-100, reduction="sum")
    assert any(kind == "packed, transposed" for _, kind in frozen._kept)  # the head's input gradient was packed
    assert close(packed, reference)
    assert close(torch.autograd.grad(packed, h)[0], torch.autograd.grad(reference, h)[0])


@mkl_packs
@pytest.mark.usefixtures("blas_training_kernel")
def test_the_end_of_a_training_run_drops_the_kept_copies() -> None:
    layer = large_frozen_linear()
    frozen.packed_copy(layer.weight, 8)
    frozen.cast(layer.weight, torch.bfloat16)
    assert len(frozen._kept) == 2
    KeepFreedMemory().teardown(None, None, "fit")  # it reads neither the trainer nor the module
    assert not frozen._kept


PACKED_IN_A_PROCESS = """
import sys, torch
from litllm.cpu import frozen, kernels
kernels.use_training_gemm("linear")
torch.manual_seed(5)
weight, x = torch.randn(700, 600), torch.randn(100, 600)
frozen.product(torch.randn(int(sys.argv[1]), 600), weight)  # the pack is made for this many rows
sys.stdout.buffer.write(frozen.product(x, weight).numpy().tobytes())
"""


@mkl_packs
def test_a_packed_product_has_the_same_bits_in_another_process_whatever_rows_it_was_packed_for() -> None:
    # a resumed run packs its frozen weights anew, at its first batch: its products must be the first run's
    runs = [
        subprocess.run([sys.executable, "-c", PACKED_IN_A_PROCESS, str(rows)], capture_output=True, check=True).stdout
        for rows in (256, 7)
    ]
    assert len(runs[0]) == 100 * 700 * 4 and runs[0] == runs[1]
