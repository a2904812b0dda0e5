"""litllm's weight-only int8 (`quantize="int8"`): rows quantized within half a step, the layer computes the product
with its dequantized weight on every instruction-set build (odd output counts, bias, float32 and bfloat16
activations, autograd), a quantized model stays close to full precision and generates through `LLM.distribute`, a
head tied to the embedding is left alone, and what it cannot do is refused by name."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from int8_bound import int8_error_bound

from litllm import LLM
from litllm.config import Config
from litllm.cpu import gemm as cpu_gemm
from litllm.cpu import isa
from litllm.cpu.int8 import Int8Linear, quantize_rows
from litllm.model import GPT
from litllm.quantize import is_quantized, quantize_model, weight_bytes


def test_rows_are_rounded_within_half_a_step_of_their_own_scale() -> None:
    w = torch.randn(40, 33) * torch.logspace(-3, 1, 40)[:, None]  # rows of very different magnitudes
    w[7] = 0  # an all-zero row keeps scale 1 and zeros
    q, scale = quantize_rows(w)
    assert q.dtype == torch.int8 and scale.dtype == torch.float32 and q.abs().max() <= 127
    assert torch.equal(q[7], torch.zeros(33, dtype=torch.int8)) and scale[7] == 1
    error = (q.float() * scale[:, None] - w).abs()
    assert (error <= scale[:, None] / 2 * (1 + 1e-6)).all()
    assert (q.abs().amax(1)[torch.arange(40) != 7] == 127).all()  # each row uses the whole range


@pytest.mark.parametrize("path", isa.supported())
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("out_features", [48, 50])  # 50: rows padded to whole tiles
def test_the_layer_multiplies_by_its_dequantized_weight(path: str, dtype: torch.dtype, out_features: int) -> None:
    torch.manual_seed(0)
    linear = nn.Linear(64, out_features).to(dtype)
    with isa.use(path):
        layer = Int8Linear(linear)
        assert layer.tiled == cpu_gemm.available()
        x = torch.randn(3, 5, 64).to(dtype)
        with torch.no_grad():
            got = layer(x)
        want = F.linear(x.double(), layer.dequantized(torch.float64), linear.bias.double())
        assert got.shape == (3, 5, out_features) and got.dtype == dtype
        rtol = 0 if dtype == torch.float32 else 2**-8  # bfloat16: the output's rounding
        bound = int8_error_bound(x.reshape(15, 64), layer.dequantized(torch.float64)).reshape(3, 5, -1)
        if not layer.tiled:  # F.linear on the dequantized weight: float rounding only
            bound = 1e-6 * (x.double().abs() @ layer.dequantized(torch.float64).abs().T)
        assert ((got.double() - want).abs() <= bound + rtol * want.abs()).all()
        # and the weight it multiplies by is the original's within half a step per row
        step = linear.weight.detach().float().abs().amax(1, keepdim=True) / 127
        assert (
            (layer.dequantized() - linear.weight.float()).abs() <= step / 2 * 1.01 + 1e-3 * (dtype != torch.float32)
        ).all()


def test_autograd_reaches_the_input_through_the_dequantized_weight() -> None:
    layer = Int8Linear(nn.Linear(32, 16))
    x = torch.randn(4, 32, requires_grad=True)
    layer(x).sum().backward()
    torch.testing.assert_close(x.grad, layer.dequantized().sum(0).expand(4, 32))
    assert not any(t.requires_grad for t in layer.buffers())


def model(tie: bool = False) -> GPT:
    torch.manual_seed(0)
    config = Config(
        name="int8-test", block_size=64, vocab_size=200, n_layer=2, n_embd=64, n_head=4,
        intermediate_size=128, tie_embeddings=tie,
    )  # fmt: skip
    return GPT(config).eval()


def test_a_quantized_model_stays_close_and_reads_a_quarter_of_the_bytes() -> None:
    m = model()
    x = torch.randint(0, 200, (2, 24))
    with torch.no_grad():
        want = m(x)
        blocks_and_head = sum(p.numel() for n, p in m.named_parameters() if n.startswith(("h.", "lm_head")))
        before = weight_bytes(m)
        quantize_model(m, "int8")
        got = m(x)
    assert is_quantized(m) and isinstance(m.lm_head, Int8Linear)
    assert not any(type(x) is nn.Linear or type(x).__name__ == "Linear" for x in m.modules())
    assert before - weight_bytes(m) >= blocks_and_head * 4 * 0.7  # weights: 1 byte instead of 4 (+ scales)
    assert (got - want).abs().max() < 0.05 * want.abs().max()
    assert (got.argmax(-1) == want.argmax(-1)).float().mean() > 0.9


def test_a_head_tied_to_the_embedding_is_left_in_full_precision() -> None:
    m = quantize_model(model(tie=True), "int8")
    assert not isinstance(m.lm_head, Int8Linear) and m.lm_head.weight is m.wte.weight
    assert all(isinstance(x, Int8Linear) for x in m.h.modules() if isinstance(x, (nn.Linear, Int8Linear)))


def test_distribute_int8_generates_and_refuses_to_save(litllm_dir: Path) -> None:
    llm = LLM.load(litllm_dir)
    full = weight_bytes(llm.model)
    llm.distribute(accelerator="cpu", quantize="int8")
    assert is_quantized(llm.model) and weight_bytes(llm.model) < full
    text = llm.generate("def add", max_new_tokens=6, temperature=0)
    assert isinstance(text, str) and len(llm.tokenizer.encode(text, bos=False)) <= 6
    batch = llm.generate(["def add", "import os"], max_new_tokens=6, temperature=0)
    assert batch[0] == text  # rows of a batch decode as alone
    with pytest.raises(ValueError, match="quantized"):
        llm.save(litllm_dir.parent / "never-int8")


def test_int8_off_the_cpu_is_refused_naming_the_bitsandbytes_mode() -> None:
    with pytest.raises(
        ValueError, match="quantize='int8' is litllm's CPU kernel; the model is on meta: use 'bnb.int8'"
    ):
        Int8Linear(nn.Linear(16, 16, device="meta"))
    with pytest.raises(ValueError, match=r"bnb\.nf4, bnb\.fp4, bnb\.int8, int8 \(or None\), got 'int4'"):
        quantize_model(model(), "int4")
