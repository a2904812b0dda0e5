"""litllm's CPU matrix kernel on tile-packed weights (float32, bfloat16, float16, and int8 with a scale per
output), on every instruction-set build this CPU runs (amx, avx512, avx2, generic): it computes F.linear for any number
of rows (with and without bias, into a column slice of a wider output), gives each row the same bits alone as in a
batch and on any number of threads, packs and unpacks exactly, refuses what it does not take, and can be switched
off."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from int8_bound import int8_error_bound

from litllm.config import Config
from litllm.cpu import gemm as cpu_gemm
from litllm.cpu import isa, kernels
from litllm.cpu.packing import Linear, unshared_linears
from litllm.inference.engine import Request, SamplingParams, Scheduler
from litllm.model import GPT

pytestmark = pytest.mark.skipif(not cpu_gemm.available(), reason="no C compiler")

DTYPES = [torch.float32, torch.bfloat16, torch.float16]


@pytest.fixture(params=isa.supported())
def path(request: pytest.FixtureRequest) -> str:
    """Each instruction-set build this CPU runs, active for the test."""
    with isa.use(request.param):
        yield request.param


def taken(dtype: torch.dtype) -> torch.dtype:
    if not cpu_gemm.takes(dtype):
        pytest.skip(f"{isa.active()} does not pack {dtype}")
    return dtype


def weight(n: int, k: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, k, generator=g) * 0.05).to(dtype), torch.randn(n, generator=g).to(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows", [1, 2, 3, 5, 6, 9, 16, 17, 300])  # every kernel width of every build; 300: two slabs
@pytest.mark.parametrize("n, k", [(16, 24), (80, 64), (96, 40), (256, 3072)])  # 5, 6 tiles: tails
def test_linear_matches_f_linear_in_float64(rows: int, n: int, k: int, dtype: torch.dtype, path: str) -> None:
    w, bias = weight(n, k, dtype=taken(dtype))
    x = torch.randn(rows, k, generator=torch.Generator().manual_seed(1)).to(dtype)
    tiles = cpu_gemm.pack(w)
    want = F.linear(x.double(), w.double(), bias.double())
    # float32: summation error; bfloat16, float16: the output's rounding (sums are kept in float32)
    atol, rtol = (2e-5 * k**0.5, 0) if dtype == torch.float32 else (1e-5 * k**0.5, 2**-8)
    torch.testing.assert_close(cpu_gemm.linear(x, tiles, bias).double(), want, rtol=rtol, atol=atol)
    torch.testing.assert_close(cpu_gemm.linear(x, tiles).double(), want - bias.double(), rtol=rtol, atol=atol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [200, 224])  # 224: whole steps of 32 k's, which bfloat16 takes on AMX tiles
def test_each_row_gets_the_same_bits_alone_in_any_batch_and_on_any_threads(
    k: int, dtype: torch.dtype, path: str
) -> None:
    w, bias = weight(272, k, dtype=taken(dtype))  # 17 tiles: the threads' shares are not whole groups of tiles
    tiles = cpu_gemm.pack(w)
    x = torch.randn(37, k).to(dtype)
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


def test_output_into_a_column_slice_leaves_the_other_columns(path: str) -> None:
    w, bias = weight(32, 48)
    x = torch.randn(5, 48)
    out = torch.full((5, 96), 7.0)
    cpu_gemm.linear(x, cpu_gemm.pack(w), bias, out=out[:, 32:64])
    torch.testing.assert_close(out[:, 32:64], F.linear(x, w, bias), rtol=1e-5, atol=1e-5)
    assert (out[:, :32] == 7).all() and (out[:, 64:] == 7).all()


def test_strided_inputs_are_read_right(path: str) -> None:
    w, bias = weight(48, 40)
    x = torch.randn(40, 6).t()  # (6, 40), columns contiguous
    torch.testing.assert_close(cpu_gemm.linear(x, cpu_gemm.pack(w), bias), F.linear(x, w, bias), rtol=1e-5, atol=1e-5)
    rows = torch.randn(6, 100)[:, 10:50]  # rows 100 apart
    got = cpu_gemm.linear(rows, cpu_gemm.pack(w), bias)
    torch.testing.assert_close(got, F.linear(rows, w, bias), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", DTYPES)
def test_pack_and_unpack_give_the_weight_back_exactly(dtype: torch.dtype, path: str) -> None:
    w, _ = weight(64, 34, dtype=taken(dtype))
    tiles = cpu_gemm.pack(w)
    assert cpu_gemm.is_tiles(tiles) and cpu_gemm.in_features(tiles) == 34 and cpu_gemm.out_features(tiles) == 64
    if dtype != torch.bfloat16:
        assert tiles.shape == (4, 34, 16) and torch.equal(tiles[1, 5], w[16:32, 5])  # tile 1: rows 16..31, a k a line
    else:
        assert tiles.shape == (4, 17, 16, 2) and torch.equal(tiles[1, 5], w[16:32, 10:12])  # a line: two k's
    assert torch.equal(cpu_gemm.unpack(tiles), w)


@pytest.mark.parametrize(
    "w",
    [torch.zeros(24, 8), torch.zeros(16, 8, dtype=torch.float64), torch.zeros(16), torch.zeros(16, 7).bfloat16()],
    ids=["rows", "dtype", "1-D", "odd bfloat16 columns"],
)
def test_pack_refuses_weights_it_does_not_take(w: torch.Tensor) -> None:
    assert not cpu_gemm.supports(w)
    with pytest.raises(ValueError, match="multiple of 16"):
        cpu_gemm.pack(w)


def test_linear_refuses_mismatched_inputs() -> None:
    tiles = cpu_gemm.pack(torch.zeros(32, 8))
    with pytest.raises(ValueError, match=r"\(M, 8\)"):
        cpu_gemm.linear(torch.zeros(2, 9), tiles)
    with pytest.raises(ValueError, match="torch.float32 x"):
        cpu_gemm.linear(torch.zeros(2, 8, dtype=torch.float64), tiles)
    with pytest.raises(ValueError, match=r"bias of shape \(32,\)"):
        cpu_gemm.linear(torch.zeros(2, 8), tiles, torch.zeros(16))
    with pytest.raises(ValueError, match=r"out must be torch.float32 \(2, 32\)"):
        cpu_gemm.linear(torch.zeros(2, 8), tiles, out=torch.zeros(2, 16))


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_packed_linear_layer_runs_on_tiles_and_unpacks_exactly(dtype: torch.dtype, path: str) -> None:
    layer = Linear(64, 96).to(taken(dtype))
    want_weight = layer.weight.detach().clone()
    x = torch.randn(3, 7, 64).to(dtype)
    with torch.no_grad():
        want = F.linear(x.double(), want_weight.double(), layer.bias.double())
        layer.prepack(release=True)
        assert all(cpu_gemm.is_tiles(block) for block in layer.current_pack())
        tolerance = 1e-5 if dtype == torch.float32 else 2e-2
        torch.testing.assert_close(layer(x).double(), want, rtol=tolerance, atol=tolerance)
    layer.unpack()
    assert torch.equal(layer.weight, want_weight)


SWITCHED_OFF = """
from litllm.cpu import gemm as cpu_gemm, kernels
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


def test_kernels_pack_in_tiles_the_dtypes_the_kernel_takes(path: str) -> None:
    for dtype in DTYPES:
        w = torch.zeros(32, 8, dtype=dtype)
        assert kernels.can_pack(w) == cpu_gemm.takes(dtype)  # float16: F16C; oneDNN never takes it
        if cpu_gemm.takes(dtype):
            packed = kernels.pack(w)
            assert [cpu_gemm.is_tiles(b) for b in packed] == [True] and kernels.in_features(packed) == 8


def test_a_request_decodes_bit_for_bit_the_same_alone_and_in_a_batch() -> None:
    """pythia-160m's shapes (2 of its layers, an untied head): the logprobs of every generated token match exactly,
    which oneDNN's kernels, choosing differently for one row and for several, did not (they differed by ~1e-6)."""
    torch.manual_seed(0)
    model = GPT(Config.from_name("pythia-160m", n_layer=2)).eval()
    prompts = [torch.randint(0, 50000, (n,)).tolist() for n in (5, 17, 9, 30)]

    def generate(batch: list[list[int]]) -> list[tuple[list[int], list[float]]]:
        scheduler = Scheduler(model, max_batch_size=4, prepack=True)
        requests = [scheduler.submit(Request(p, 8, SamplingParams(0), logprobs=True))[0] for p in batch]
        scheduler.run()
        return [(c.token_ids, c.logprobs) for c in requests]

    alone = [generate([p])[0] for p in prompts]
    assert all(cpu_gemm.is_tiles(m.current_pack()[0]) for m in unshared_linears(model))
    assert generate(prompts) == alone


def int8_weight(n: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randint(-127, 128, (n, k), generator=g, dtype=torch.int8), torch.rand(n, generator=g) * 0.01 + 1e-3


@pytest.mark.parametrize("x_dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("rows", [1, 3, 5, 16, 17, 300])
def test_int8_tiles_compute_the_scaled_product_row_by_row(rows: int, x_dtype: torch.dtype, path: str) -> None:
    q, scale = int8_weight(96, 600)  # three pieces of x, one not whole
    bias = torch.randn(96).to(x_dtype)
    x = torch.randn(rows, 600, generator=torch.Generator().manual_seed(1)).to(x_dtype)
    tiles = cpu_gemm.pack(q)
    assert tiles.dtype == torch.int8 and torch.equal(cpu_gemm.unpack(tiles), q)
    got = cpu_gemm.linear(x, tiles, bias, scale=scale)
    want = F.linear(x.double(), q.double() * scale.double()[:, None], bias.double())
    assert got.dtype == x_dtype
    rtol = 0 if x_dtype == torch.float32 else 2**-8  # bfloat16: the output's rounding
    bound = int8_error_bound(x, q.double() * scale.double()[:, None]) + rtol * want.abs()
    assert ((got.double() - want).abs() <= bound).all()
    assert (got.double() - want).abs().amax() > 0  # the activations were rounded: the bound is not vacuous
    for r in range(min(rows, 5)):
        assert torch.equal(cpu_gemm.linear(x[r : r + 1], tiles, bias, scale=scale), got[r : r + 1])


@pytest.mark.parametrize("x_dtype", [torch.float32, torch.bfloat16])
def test_int8_tiles_round_each_piece_of_a_row_on_its_own_scale(x_dtype: torch.dtype, path: str) -> None:
    q, scale = int8_weight(32, 512)
    tiles = cpu_gemm.pack(q)
    x = torch.randn(5, 512, generator=torch.Generator().manual_seed(2))
    x[0, :256] *= 1e-38  # a piece of subnormal magnitudes next to a piece of ordinary ones
    x[1] = 0.0
    x[2, 300] = float("nan")
    x[3, 10] = float("inf")
    x[4, :256] *= 1e4  # a large piece does not coarsen its neighbour's rounding
    x = x.to(x_dtype)
    got = cpu_gemm.linear(x, tiles, scale=scale).double()
    weight = q.double() * scale.double()[:, None]
    want = x.double() @ weight.T
    assert torch.equal(got[1], torch.zeros(32, dtype=torch.float64))
    assert got[2].isnan().all() and got[3].isnan().all()  # a non-finite input spoils its row, and only that row
    rtol = 0 if x_dtype == torch.float32 else 2**-8
    for r in (0, 4):
        bound = int8_error_bound(x[r : r + 1], weight)[0] + rtol * want[r].abs()
        assert ((got[r] - want[r]).abs() <= bound).all()
    if x_dtype == torch.float32:  # row 4's ordinary piece, alone, rounds the same: the pieces share no scale
        alone = torch.zeros_like(x[4:5])
        alone[:, 256:] = x[4:5, 256:]
        head = cpu_gemm.linear(x[4:5, :256].contiguous(), cpu_gemm.pack(q[:, :256].contiguous()), scale=scale)
        assert torch.allclose(got[4:5], (head + cpu_gemm.linear(alone, tiles, scale=scale)).double(), rtol=1e-6)


def test_int8_tiles_need_their_scale_and_a_float_input() -> None:
    q, scale = int8_weight(32, 8)
    tiles = cpu_gemm.pack(q)
    with pytest.raises(ValueError, match=r"float32 scale of shape \(32,\)"):
        cpu_gemm.linear(torch.zeros(2, 8), tiles)
    with pytest.raises(ValueError, match="torch.float32 or torch.bfloat16 x"):
        cpu_gemm.linear(torch.zeros(2, 8, dtype=torch.float16), tiles, scale=scale)


def test_an_unknown_isa_or_one_this_cpu_lacks_is_refused_naming_what_runs() -> None:
    with pytest.raises(ValueError, match=r"LITLLM_CPU_ISA='sse9' is not .*: use amx, avx512, avx2, generic or auto"):
        isa.check("sse9")
    for name in (n for n in isa.ISAS if n not in isa.supported()):
        with pytest.raises(ValueError, match=f"this CPU lacks .*; it runs {', '.join(isa.supported())}"):
            isa.check(name)


@pytest.mark.parametrize(
    ("native", "flags", "expected"),
    [
        (True, {"avx512f", "avx512_bf16"}, "bf16-mixed"),  # Zen 4/5, Cooper Lake: bfloat16 products in hardware
        (True, {"avx512f", "amx_bf16"}, "bf16-mixed"),  # Sapphire Rapids and later
        (True, {"avx512f"}, "32-true"),  # AVX-512 without them: oneDNN widens bfloat16, training ran at 0.58x
        (False, {"avx2", "fma"}, "32-true"),  # AVX2: no fast bfloat16 product at all
    ],
)
def test_bf16_mixed_is_the_default_precision_only_where_bfloat16_is_multiplied_in_hardware(
    monkeypatch: pytest.MonkeyPatch, native: bool, flags: set, expected: str
) -> None:
    from litllm.training import runs

    monkeypatch.setattr(isa, "native_bfloat16", lambda: native)
    monkeypatch.setattr(isa, "cpu_flags", lambda: frozenset(flags))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert runs.default_precision() == expected


FORCED = """
from litllm.cpu import gemm, isa
print(isa.active(), gemm.available(), gemm._library(isa.active()).isa(), gemm._library(isa.active())._name)
"""


def test_the_environment_forces_a_build_and_each_build_is_its_own_library() -> None:
    built = {name: Path(cpu_gemm._library(name)._name) for name in isa.supported()}  # this process's, one per ISA
    assert len(set(built.values())) == len(built)
    for name, library in built.items():  # a fresh process with the switch set finds and loads that same build
        environment = {**os.environ, "LITLLM_HOME": str(library.parent.parent), isa.SWITCH: name}
        done = subprocess.run([sys.executable, "-c", FORCED], capture_output=True, text=True, env=environment)
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == [name, "True", str(isa.LEVEL[name]), str(library)]
    environment = {**os.environ, isa.SWITCH: "bogus"}
    done = subprocess.run([sys.executable, "-c", FORCED], capture_output=True, text=True, env=environment)
    assert done.returncode != 0 and "LITLLM_CPU_ISA='bogus' is not an instruction set" in done.stderr


def test_amd_builds_prefetch_single_passes_into_l2_and_compute_the_same_bits(monkeypatch: pytest.MonkeyPatch) -> None:
    builds = {}
    for amd in (False, True):  # the build an Intel and an AMD processor make of the same source
        monkeypatch.setattr(isa, "amd_cpu", lambda amd=amd: amd)
        builds[amd] = cpu_gemm._library.__wrapped__(isa.active())
    assert builds[False]._name != builds[True]._name
    q, scale = int8_weight(96, 600)
    w = {torch.float32: weight(96, 600)[0], torch.bfloat16: weight(96, 600, dtype=torch.bfloat16)[0], torch.int8: q}
    for dtype, wt in w.items():
        tiles = cpu_gemm.pack(wt)
        for rows in (1, 5, 16):  # one pass over the weights (the prefetch that differs), and several
            x = torch.randn(rows, 600, generator=torch.Generator().manual_seed(rows))
            x = x.to(torch.bfloat16 if dtype == torch.bfloat16 else torch.float32)
            got = []
            for library in builds.values():
                monkeypatch.setattr(cpu_gemm, "_library", lambda name, library=library: library)
                got.append(cpu_gemm.linear(x, tiles, scale=scale if dtype == torch.int8 else None))
            assert torch.equal(got[0], got[1]), (dtype, rows)
