"""oneDNN prepacked linear weights for CPU decoding: same outputs as F.linear, retired when the weights change, never
used under autograd; released weights (the packed copy the only one) come back exactly wherever their values are
needed; the Scheduler packs when this CPU's kernel probe says packed is fastest; the probe's kernels agree."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
import torch.nn.functional as F

from litllm.config import Config
from litllm.cpu import gemm as cpu_gemm
from litllm.cpu import isa, kernels
from litllm.cpu import step as cpu_step
from litllm.cpu.packing import Linear, prepack, prepacked_bytes
from litllm.inference import engine
from litllm.inference.engine import Request, SamplingParams, Scheduler
from litllm.model import GPT
from litllm.quantize import quantize_model

CONFIG = Config(name="prepack-test", block_size=64, vocab_size=96, n_layer=2, n_embd=32, n_head=4, intermediate_size=64)


def model(dtype: torch.dtype = torch.float32) -> GPT:
    torch.manual_seed(0)
    m = GPT(CONFIG).to(dtype).eval()
    m.reset_parameters()
    return m


def linears(m: GPT) -> list[Linear]:
    return [x for x in m.modules() if isinstance(x, Linear)]


@pytest.mark.parametrize("path", isa.supported())
@pytest.mark.parametrize(("dtype", "tol"), [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
def test_packed_linear_matches_f_linear_for_any_number_of_rows(dtype: torch.dtype, tol: float, path: str) -> None:
    with isa.use(path):
        for n in (40, 48):  # 40 outputs: not whole tiles, oneDNN's layout where it takes the dtype
            layer = Linear(48, n).to(dtype)
            packs = kernels.can_pack(layer.weight)
            assert layer.prepack() == packs * 48 * n * layer.weight.element_size()
            assert packs or (n == 40 and not kernels.onednn_takes(dtype))
            for shape in [(2, 48), (3, 5, 48), (16, 1, 48), (200, 48)]:
                x = torch.randn(shape, dtype=dtype)
                with torch.no_grad():
                    got = layer(x)
                    want = F.linear(x.float(), layer.weight.float(), layer.bias.float())
                assert got.shape == (*shape[:-1], n) and got.dtype == dtype
                torch.testing.assert_close(got.float(), want, rtol=tol, atol=tol)


def test_a_changed_weight_retires_its_packed_copy() -> None:
    layer = Linear(16, 8)
    layer.prepack()
    x = torch.randn(4, 16)
    with torch.no_grad():
        layer.weight.mul_(2.0)  # what an optimizer step or load_state_dict does: in place, version bumped
        torch.testing.assert_close(layer(x), F.linear(x, layer.weight, layer.bias))
    assert layer.packed is None
    layer.prepack()
    layer.weight = torch.nn.Parameter(torch.randn(8, 16))  # a new tensor altogether
    with torch.no_grad():
        torch.testing.assert_close(layer(x), F.linear(x, layer.weight, layer.bias))
    assert layer.current_pack() is None


def test_autograd_never_takes_the_packed_path() -> None:
    layer = Linear(16, 8)
    layer.prepack()
    layer(torch.randn(4, 16)).sum().backward()
    assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0


def test_model_prepack_counts_bytes_and_drops_on_cast_and_copies() -> None:
    m = model()
    expected = sum(x.weight.numel() * x.weight.element_size() for x in linears(m))
    assert prepack(m) == expected == prepacked_bytes(m)
    assert prepack(m) == expected  # current copies are kept, not made again
    twin = copy.deepcopy(m)  # oneDNN tensors cannot be copied: copies start without them
    assert prepacked_bytes(twin) == 0
    m.to(torch.bfloat16)
    assert prepacked_bytes(m) == 0 and all(x.packed is None for x in linears(m))
    prepack(m)
    prepack(m, enabled=False)
    assert prepacked_bytes(m) == 0


def greedy(m: GPT, prompts: list[list[int]], prepack: bool | None = None) -> list[list[int]]:
    scheduler = Scheduler(m, max_batch_size=len(prompts), prepack=prepack)
    completions = [scheduler.submit(Request(p, 10, params=SamplingParams(temperature=0)))[0] for p in prompts]
    scheduler.run()
    return [c.token_ids for c in completions]


PROMPTS = [[5, 6, 7], [1, 2, 3, 4, 5, 6, 7, 8, 9], [40], [11, 12, 13, 14]]


def timings(packed: float) -> object:
    """Stand-in for timing kernels on the weights (machine-dependent): every unpacked kernel takes 2 s a pass."""
    return lambda kernel, rows, weights: packed if kernel == "packed" else 2.0


def test_scheduler_packs_when_the_packed_kernel_wins_and_the_tokens_do_not_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(kernels, "_chosen", {})
    monkeypatch.setattr(cpu_step, "covers", lambda model: False)  # the timing alone decides
    m = model()
    plain = [greedy(m, [p], prepack=False)[0] for p in PROMPTS]
    assert prepacked_bytes(m) == 0
    monkeypatch.setattr(kernels, "seconds_per_pass", timings(packed=3.0))  # a CPU where packing loses
    weights = [x.weight.detach().clone() for x in linears(m)]
    assert greedy(m, PROMPTS) == plain
    assert prepacked_bytes(m) == 0 and not any(x.released for x in linears(m))
    assert all(torch.equal(x.weight, w) for x, w in zip(linears(m), weights, strict=True))  # given back exactly
    monkeypatch.setattr(kernels, "seconds_per_pass", timings(packed=1.0))  # a CPU where it wins
    assert [greedy(m, [p])[0] for p in PROMPTS] == plain
    assert prepacked_bytes(m) > 0
    assert all(x.released for x in linears(m))  # in place of the weights: no extra memory
    assert greedy(m, PROMPTS) == plain
    key = f"torch.float32, 1 row, packed, {torch.get_num_threads()} threads, {isa.active()}"
    assert kernels.chosen()[key] == "packed"


def test_scheduler_prepack_true_packs_and_false_never(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kernels, "_chosen", {})
    monkeypatch.setattr(kernels, "seconds_per_pass", timings(packed=3.0))
    m = model()
    greedy(m, PROMPTS, prepack=False)
    assert prepacked_bytes(m) == 0
    greedy(m, PROMPTS, prepack=True)  # asked for explicitly: made whatever the timing says
    assert prepacked_bytes(m) > 0


def test_a_released_weight_computes_the_same_and_frees_its_memory() -> None:
    torch.manual_seed(0)
    layer = Linear(48, 40)
    weight = layer.weight.detach().clone()
    assert layer.prepack(release=True) == 0  # no bytes added
    assert layer.released and layer.weight.untyped_storage().nbytes() <= layer.weight.element_size()
    assert layer.weight.shape == (40, 48) and layer.weight.isnan().all()  # stray reads show, never crash
    for shape in [(1, 48), (3, 48), (2, 5, 48)]:
        x = torch.randn(shape)
        with torch.no_grad():
            torch.testing.assert_close(layer(x), F.linear(x, weight, layer.bias), rtol=1e-5, atol=1e-5)


def released_layer() -> tuple[Linear, torch.Tensor]:
    torch.manual_seed(0)
    layer = Linear(16, 8)
    weight = layer.weight.detach().clone()
    layer.prepack(release=True)
    return layer, weight


def test_a_released_weight_comes_back_exactly_for_state_dict_and_autograd() -> None:
    layer, weight = released_layer()
    assert torch.equal(layer.state_dict()["weight"], weight)
    assert not layer.released and layer.packed is None and torch.equal(layer.weight, weight)
    layer.prepack(release=True)
    x = torch.randn(4, 16)
    layer(x).sum().backward()  # training takes the plain weight back
    assert torch.equal(layer.weight, weight) and layer.weight.grad is not None


def test_a_released_weight_comes_back_for_casts_copies_and_loading() -> None:
    layer, weight = released_layer()
    twin = copy.deepcopy(layer)
    assert torch.equal(twin.weight, weight) and not twin.released
    assert layer.released  # copying leaves the original packed
    assert torch.equal(layer.to(torch.float64).weight, weight.double())
    layer.prepack(release=True)
    new = torch.randn(8, 16)
    layer.load_state_dict({"weight": new, "bias": layer.bias.detach()})
    assert torch.equal(layer.weight, new) and not layer.released


def test_model_release_skips_a_head_tied_to_the_embedding() -> None:
    torch.manual_seed(0)
    m = GPT(dataclasses.replace(CONFIG, name="tied", tie_embeddings=True)).eval()
    m.reset_parameters()
    idx = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        want = m(idx)
        assert prepack(m, release=True) == 0
        torch.testing.assert_close(m(idx), want, rtol=1e-5, atol=1e-5)
    assert m.lm_head.weight is m.wte.weight and not m.lm_head.released and m.lm_head.packed is None
    assert all(x.released for x in linears(m) if x is not m.lm_head)


@pytest.mark.parametrize("path", isa.supported())
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("rows", [1, 5])
def test_every_kernel_the_probe_may_pick_computes_f_linear(dtype: torch.dtype, rows: int, path: str) -> None:
    torch.manual_seed(0)
    w, b, x = torch.randn(32, 32, dtype=dtype), torch.randn(32, dtype=dtype), torch.randn(rows, 32, dtype=dtype)
    want = F.linear(x.float(), w.float(), b.float())
    tol = 1e-5 if dtype == torch.float32 else 3e-2
    with isa.use(path):
        candidates = kernels.unpacked_candidates(rows == 1, dtype) + ["packed"] * kernels.can_pack(w)
        assert ("onednn" in candidates) == kernels.onednn_takes(dtype)
        assert ("packed" in candidates) == (dtype != torch.float16 or path != "generic")
        for kernel in candidates:
            got = kernels.run(kernel, x, w, b, kernels.pack(w) if kernel == "packed" else None)
            torch.testing.assert_close(got.float(), want, rtol=tol, atol=tol, msg=kernel)


def test_the_probe_picks_a_candidate_once_per_case(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kernels, "PROBE_BYTES", 2**20)
    monkeypatch.setattr(kernels, "_chosen", {})
    assert kernels.choose(torch.float32, True, packed=False) in {"linear", "onednn", "mv"}
    assert kernels.choose(torch.float32, False, packed=True) in {"linear", "onednn", "packed"}
    monkeypatch.setattr(kernels, "fastest", lambda *a: pytest.fail("timed again"))
    kernels.choose(torch.float32, True, packed=False)
    assert len(kernels.chosen()) == 2


def test_admitting_many_requests_grows_the_cache_once(monkeypatch: pytest.MonkeyPatch) -> None:
    m = model()
    calls = []
    empty = engine.KVCache.empty
    monkeypatch.setattr(engine.KVCache, "empty", lambda *a, **k: calls.append(a) or empty(*a, **k))
    greedy(m, PROMPTS * 2)
    assert len(calls) == CONFIG.n_layer  # one allocation per layer for all 8 rows, not one per admitted request
    assert calls[0][0] == 8


def test_a_released_model_quantizes_from_its_real_weights() -> None:
    packed, plain = model(), model()
    prepack(packed, release=True)
    quantize_model(packed, "bnb.int8")
    quantize_model(plain, "bnb.int8")
    idx = torch.tensor([[3, 1, 4, 1, 5]])
    with torch.no_grad():  # the head (kept in full precision) still runs packed: rounding may differ slightly
        torch.testing.assert_close(packed(idx), plain(idx), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bias", [True, False])
def test_onednn_linear_trains_like_f_linear(bias: bool) -> None:
    torch.manual_seed(0)
    w = torch.randn(40, 48, requires_grad=True)
    b = torch.randn(40, requires_grad=True) if bias else None
    x = torch.randn(3, 5, 48, requires_grad=True)
    grad = torch.randn(3, 5, 40)
    leaves = [t for t in (x, w, b) if t is not None]
    got = torch.autograd.grad((kernels.OneDNNLinear.apply(x, w, b) * grad).sum(), leaves)
    want = torch.autograd.grad((F.linear(x, w, b) * grad).sum(), leaves)
    for g, h in zip(got, want, strict=True):
        torch.testing.assert_close(g, h, rtol=1e-5, atol=1e-5)


def test_training_takes_onednn_only_for_plain_float32(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kernels, "_training_gemm", "onednn")
    layer = Linear(16, 8)
    x = torch.randn(4, 16)
    assert type(layer(x).grad_fn).__name__ == "OneDNNLinearBackward"
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast computes F.linear in bfloat16 itself
        assert layer(x).dtype == torch.bfloat16
    assert type(Linear(16, 8).double()(x.double()).grad_fn).__name__ != "OneDNNLinearBackward"
    monkeypatch.setattr(kernels, "_training_gemm", "linear")
    assert type(layer(x).grad_fn).__name__ != "OneDNNLinearBackward"


@pytest.mark.parametrize("release", [False, True])
def test_a_large_weight_is_packed_in_row_blocks_and_comes_back_exactly(
    monkeypatch: pytest.MonkeyPatch, release: bool
) -> None:
    monkeypatch.setattr(kernels, "PACK_BLOCK_BYTES", 16 * 16 * 4)  # 16 rows of 16 floats: blocks of 16, 16 and 8
    layer = Linear(16, 40)
    weight = layer.weight.detach().clone()
    layer.prepack(release=release)
    packed = layer.current_pack()
    assert [kernels.out_features(block) for block in packed] == [16, 16, 8]
    # float32 blocks whose rows fill whole tiles go to litllm's kernel, the others to oneDNN, in one weight
    assert [cpu_gemm.is_tiles(block) for block in packed] == [cpu_gemm.takes(torch.float32)] * 2 + [False]
    x = torch.randn(3, 16)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), F.linear(x, weight, layer.bias), rtol=1e-5, atol=1e-5)
    layer.unpack()
    assert torch.equal(layer.weight, weight)


@pytest.mark.skipif(not cpu_gemm.available(), reason="no C compiler")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_weight_in_blocks_of_tiles_gives_the_whole_weights_bits(monkeypatch: pytest.MonkeyPatch, dtype) -> None:
    monkeypatch.setattr(kernels, "PACK_BLOCK_BYTES", 32 * 16 * dtype.itemsize)  # blocks of 32 rows: 3 blocks of tiles
    layer = Linear(16, 96).to(dtype)
    weight, bias = layer.weight.detach().clone(), layer.bias.detach().clone()
    layer.prepack(release=True)
    assert [cpu_gemm.out_features(block) for block in layer.current_pack()] == [32, 32, 32]
    for rows in (1, 5):
        x = torch.randn(rows, 16).to(dtype)
        with torch.no_grad():
            got = layer(x)
        assert torch.equal(got, cpu_gemm.linear(x, cpu_gemm.pack(weight), bias))  # each output summed as in one
        torch.testing.assert_close(got.float(), F.linear(x.float(), weight.float(), bias.float()), rtol=2e-2, atol=1e-2)
    with pytest.raises(ValueError, match="tiles of x's dtype"):
        cpu_gemm.linear_blocks(torch.randn(1, 16, dtype=torch.float64), layer.current_pack())


def test_a_weight_shared_with_another_tensor_keeps_its_values_when_released(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kernels, "PACK_BLOCK_BYTES", 3 * 4096)  # blocks of 48 rows: whole pages in each
    layer = Linear(64, 256)
    view = layer.weight.detach()[:128]  # another holder of the storage: its pages must not be handed back
    before = view.clone()
    layer.prepack(release=True)
    assert torch.equal(view, before)
    layer.unpack()
    assert torch.equal(layer.weight[:128], before)


# run in a fresh interpreter: its peak resident memory (ru_maxrss) is then this packing's
RELEASE_PEAK = """
import resource, torch
from litllm.cpu.packing import Linear
layer = Linear(1024, 32768, bias=False)  # 128 MiB of float32
torch.nn.init.normal_(layer.weight)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
layer.prepack(release=True)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)  # MiB above the weights' peak
"""


def test_releasing_a_large_weight_never_holds_it_twice() -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", RELEASE_PEAK], capture_output=True, text=True, check=True).stdout
    assert int(out) < 48  # packed in 16 MiB blocks, each block's dense pages handed back: not +128 MiB


def test_unpacking_blocks_empties_the_list_as_it_copies(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each block goes as its rows are copied: a large head is never held as blocks, dense copies and the whole."""
    monkeypatch.setattr(kernels, "PACK_BLOCK_BYTES", 16 * 40 * 4)
    w = torch.randn(64, 40)
    blocks = list(kernels.pack(w))
    assert len(blocks) == 4
    assert torch.equal(kernels.unpacked(blocks), w) and blocks == []
    assert torch.equal(kernels.unpacked(kernels.pack(w)), w)  # a tuple is left as it is
