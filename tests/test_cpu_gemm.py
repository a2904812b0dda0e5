"""litllm's float32 CPU matrix kernel on tile-packed weights: it computes F.linear for any number of rows (with and
without bias, into a column slice of a wider output), gives each row the same bits alone as in a batch and on any
number of threads, packs and unpacks exactly, refuses what it does not take, and can be switched off."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from litllm import cpu_gemm, kernels
from litllm.model import Linear

pytestmark = pytest.mark.skipif(not cpu_gemm.available(), reason="no C compiler to build the kernel")


def weight(n: int, k: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, k, generator=g) * 0.05, torch.randn(n, generator=g)


@pytest.mark.parametrize("rows", [1, 2, 3, 5, 8, 9, 16, 17, 40, 300])  # every kernel width; 300 crosses a slab
@pytest.mark.parametrize("n, k", [(16, 24), (80, 64), (96, 40), (768, 768), (256, 3072)])  # 5, 6 tiles: tails
def test_linear_matches_f_linear_in_float64(rows: int, n: int, k: int) -> None:
    w, bias = weight(n, k)
    x = torch.randn(rows, k, generator=torch.Generator().manual_seed(1))
    tiles = cpu_gemm.pack(w)
    want = F.linear(x.double(), w.double(), bias.double())
    torch.testing.assert_close(cpu_gemm.linear(x, tiles, bias).double(), want, rtol=0, atol=2e-5 * k**0.5)
    torch.testing.assert_close(cpu_gemm.linear(x, tiles).double(), want - bias.double(), rtol=0, atol=2e-5 * k**0.5)


def test_each_row_gets_the_same_bits_alone_in_any_batch_and_on_any_threads() -> None:
    w, bias = weight(272, 200)  # 17 tiles: the threads' shares are not whole groups of tiles
    tiles = cpu_gemm.pack(w)
    x = torch.randn(37, 200)
    batch = cpu_gemm.linear(x, tiles, bias)
    for r in range(37):
        assert torch.equal(cpu_gemm.linear(x[r : r + 1], tiles, bias), batch[r : r + 1]), r
    for rows in (2, 3, 7, 12, 16, 20):
        assert torch.equal(cpu_gemm.linear(x[:rows], tiles, bias), batch[:rows]), rows
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert torch.equal(cpu_gemm.linear(x, tiles, bias), batch)
    finally:
        torch.set_num_threads(threads)


def test_output_into_a_column_slice_leaves_the_other_columns() -> None:
    w, bias = weight(32, 48)
    x = torch.randn(5, 48)
    out = torch.full((5, 96), 7.0)
    cpu_gemm.linear(x, cpu_gemm.pack(w), bias, out=out[:, 32:64])
    torch.testing.assert_close(out[:, 32:64], F.linear(x, w, bias), rtol=1e-5, atol=1e-5)
    assert (out[:, :32] == 7).all() and (out[:, 64:] == 7).all()


def test_strided_inputs_are_read_right() -> None:
    w, bias = weight(48, 40)
    x = torch.randn(40, 6).t()  # (6, 40), columns contiguous
    torch.testing.assert_close(cpu_gemm.linear(x, cpu_gemm.pack(w), bias), F.linear(x, w, bias), rtol=1e-5, atol=1e-5)
    rows = torch.randn(6, 100)[:, 10:50]  # rows 100 apart
    got = cpu_gemm.linear(rows, cpu_gemm.pack(w), bias)
    torch.testing.assert_close(got, F.linear(rows, w, bias), rtol=1e-5, atol=1e-5)


def test_pack_and_unpack_give_the_weight_back_exactly() -> None:
    w, _ = weight(64, 33)
    tiles = cpu_gemm.pack(w)
    assert tiles.shape == (4, 33, 16) and cpu_gemm.is_tiles(tiles)
    assert torch.equal(tiles[1, 5], w[16:32, 5])  # tile 1 holds rows 16..31, one k per line
    assert torch.equal(cpu_gemm.unpack(tiles), w)


@pytest.mark.parametrize(
    "w", [torch.zeros(24, 8), torch.zeros(16, 8, dtype=torch.bfloat16), torch.zeros(16)], ids=["rows", "dtype", "1-D"]
)
def test_pack_refuses_weights_it_does_not_take(w: torch.Tensor) -> None:
    assert not cpu_gemm.supports(w)
    with pytest.raises(ValueError, match="multiple of 16"):
        cpu_gemm.pack(w)


def test_linear_refuses_mismatched_inputs() -> None:
    tiles = cpu_gemm.pack(torch.zeros(32, 8))
    with pytest.raises(ValueError, match=r"\(M, 8\)"):
        cpu_gemm.linear(torch.zeros(2, 9), tiles)
    with pytest.raises(ValueError, match="float32"):
        cpu_gemm.linear(torch.zeros(2, 8, dtype=torch.float64), tiles)
    with pytest.raises(ValueError, match=r"bias of shape \(32,\)"):
        cpu_gemm.linear(torch.zeros(2, 8), tiles, torch.zeros(16))
    with pytest.raises(ValueError, match=r"out must be float32 \(2, 32\)"):
        cpu_gemm.linear(torch.zeros(2, 8), tiles, out=torch.zeros(2, 16))


def test_a_packed_linear_layer_runs_on_tiles_and_unpacks_exactly() -> None:
    layer = Linear(64, 96)
    want_weight = layer.weight.detach().clone()
    x = torch.randn(3, 7, 64)
    with torch.no_grad():
        want = F.linear(x, want_weight, layer.bias)
        layer.prepack(release=True)
        assert all(cpu_gemm.is_tiles(block) for block in layer.current_pack())
        torch.testing.assert_close(layer(x), want, rtol=1e-5, atol=1e-5)
    layer.unpack()
    assert torch.equal(layer.weight, want_weight)


SWITCHED_OFF = """
from litllm import cpu_gemm, kernels
import torch
packed = kernels.pack(torch.zeros(32, 8))
print(cpu_gemm.available(), [cpu_gemm.is_tiles(block) for block in packed])
"""


def test_switched_off_weights_are_packed_for_onednn(tmp_path: Path) -> None:
    environment = {**os.environ, "LITLLM_HOME": str(tmp_path), "LITLLM_CPU_GEMM": "0"}
    done = subprocess.run(
        [sys.executable, "-c", SWITCHED_OFF], capture_output=True, text=True, env=environment, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[0] == "False [False]"
    assert not list((tmp_path / "kernels").glob("cpu_gemm-*"))


def test_kernels_pack_float32_in_tiles_and_bfloat16_for_onednn() -> None:
    assert [cpu_gemm.is_tiles(b) for b in kernels.pack(torch.zeros(32, 8))] == [True]
    if torch.ops.mkldnn._is_mkldnn_bf16_supported():
        assert [cpu_gemm.is_tiles(b) for b in kernels.pack(torch.zeros(32, 8, dtype=torch.bfloat16))] == [False]
