"""QLoRA's memory: an output head held in 4-bit (`quantize_head`), and a base quantized as it loads, part by part."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hf_models import FAMILIES, save_hf_model

from litllm.checkpoint.loading import load_checkpoint, load_checkpoint_in_parts
from litllm.checkpoint.own import save_checkpoint
from litllm.config import Config
from litllm.data.base import IGNORE_INDEX
from litllm.lora.layers import LoRAConfig, adapter_state_dict, quantize_base
from litllm.model import GPT
from litllm.training import loss
from litllm.training.module import GPTModule, fused_head_applies, logits_loss, next_token_loss

pytest.importorskip("bitsandbytes")

TINY = dict(n_layer=2, n_embd=64, n_head=4, n_query_groups=2, vocab_size=320, block_size=64, mlp_class="swiglu",
            intermediate_size=96, norm_class="rmsnorm")  # fmt: skip


@pytest.fixture(scope="module")
def untied_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer_dir: Path) -> Path:
    """A tiny litllm checkpoint whose output head is its own weight, not the embedding."""
    torch.manual_seed(0)
    model = GPT(Config(**TINY))
    model.reset_parameters(std=0.1)
    return save_checkpoint(model, tmp_path_factory.mktemp("untied") / "base", tokenizer_dir=tokenizer_dir)


def qlora_module(base: Path, **lora: object) -> GPTModule:
    module = GPTModule(init_from=str(base), lora=LoRAConfig(r=4, quantize="nf4", quantize_head=True, **lora))
    module.configure_model()
    return module


def batch(seed: int = 0) -> dict[str, torch.Tensor]:
    tokens = torch.randint(0, 320, (2, 13), generator=torch.Generator().manual_seed(seed))
    labels = tokens[:, 1:].clone()
    labels[0, :4] = IGNORE_INDEX  # a prompt the loss skips
    return {"input_ids": tokens[:, :-1], "labels": labels}


def move_adapters(gpt: GPT) -> None:
    """B starts at zero; move it, as training would, so the adapters change the output."""
    with torch.no_grad():
        for name, p in gpt.named_parameters():
            if ".lora." in name and ".B." in name:
                p.normal_(std=0.2, generator=torch.Generator().manual_seed(len(name)))


# ---- quantize_head -----------------------------------------------------------------------------------------------


def test_quantize_head_holds_an_untied_head_in_4bit_and_leaves_a_tied_one(untied_dir: Path, litllm_dir: Path) -> None:
    gpt = qlora_module(untied_dir).gpt
    assert type(gpt.lm_head).__name__ == "Linear4bit" and type(gpt.h[0].attn.qkv).__name__ == "Linear4bit"
    assert not any(p.requires_grad for p in gpt.lm_head.parameters())
    tied = qlora_module(litllm_dir).gpt  # its head is the embedding, which stays as it is
    assert tied.lm_head.weight is tied.wte.weight and type(tied.wte.weight) is torch.nn.Parameter


def test_a_4bit_base_keeps_its_layout_through_an_evaluation(untied_dir: Path) -> None:
    """bitsandbytes repacks a layer for its AVX512-BF16 kernel (scales in bfloat16) at a forward without gradients;
    the adapters train, and the loss and merging read the weights, in the layout they were quantized in."""
    gpt = qlora_module(untied_dir).gpt
    layers = [m for m in gpt.modules() if type(m).__name__ == "Linear4bit"]
    assert len(layers) == 9 and not any(m.support_avx512bf16_for_cpu for m in layers)
    with torch.no_grad():
        gpt.eval()(batch()["input_ids"])
    assert not any(getattr(m.weight.quant_state, "packing_format_for_cpu", False) for m in layers)


@pytest.mark.parametrize("blocks", ["one block", "many blocks and groups"])
def test_the_loss_over_a_4bit_head_is_that_of_its_dequantized_weight(
    untied_dir: Path, blocks: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from litllm.quantize import dense_linear

    if blocks != "one block":  # 48-row blocks of the head (7 of them), groups of 5 rows
        monkeypatch.setattr(loss, "ROWS_BYTES", 48 * 64 * 4)
        monkeypatch.setattr(loss, "GROUP_BYTES", 5 * 320 * 4)
    gpt = qlora_module(untied_dir).gpt
    assert fused_head_applies(gpt)  # the loss reads the 4-bit head itself
    move_adapters(gpt)
    b = batch()
    adapters = [p for p in gpt.parameters() if p.requires_grad]
    got, n = next_token_loss(gpt, b["input_ids"], b["labels"])
    got_grads = torch.autograd.grad(got, adapters)
    quantized = gpt.lm_head
    gpt.lm_head = dense_linear(quantized)  # the same head in float32: the plain fused loss
    want, _ = next_token_loss(gpt, b["input_ids"], b["labels"])
    want_grads = torch.autograd.grad(want, adapters)
    gpt.lm_head = quantized
    assert n == 20 and abs(got.item() - want.item()) <= 1e-5
    for g, w in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-4)
    with torch.no_grad():  # the head's own 4-bit matmul, as generation runs it, gives the same logits
        unfused, _ = logits_loss(gpt(b["input_ids"]), b["labels"])
    assert abs(unfused.item() - got.item()) <= 1e-5


@pytest.mark.parametrize("targets", [["query", "value"], ["query", "value", "head"]], ids=["blocks", "head too"])
def test_a_4bit_head_run_trains_validates_generates_and_merges(
    untied_dir: Path, tmp_path: Path, targets: list[str]
) -> None:
    import lightning as L
    from torch.utils.data import DataLoader

    from litllm import LLM
    from litllm.lora.files import merge_to_checkpoint, save_adapter

    module = GPTModule(init_from=str(untied_dir), lora=LoRAConfig(r=4, targets=targets, quantize="nf4",
                       double_quant=True, quantize_head=True), warmup_steps=0)  # fmt: skip
    trainer = L.Trainer(accelerator="cpu", max_steps=2, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=1)  # fmt: skip
    trainer.fit(module, DataLoader([batch(0), batch(1)], batch_size=None), DataLoader([batch(2)], batch_size=None))
    gpt = module.gpt
    assert type(gpt.lm_head).__name__ == "Linear4bit"
    state = adapter_state_dict(gpt)
    assert all(state[k].abs().sum() > 0 for k in state if ".B." in k)  # every adapter moved, the head's too
    assert ("lm_head.lora.B.head" in state) == ("head" in targets)
    assert torch.isfinite(trainer.callback_metrics["val_loss"])

    save_adapter(tmp_path / "ad", state, gpt.config, module.lora, base=str(untied_dir), tokenizer_dir=untied_dir)
    adapted = LLM.load(tmp_path / "ad")
    assert type(adapted.model.lm_head).__name__ == "Linear4bit"  # loaded as it was trained
    assert isinstance(adapted.generate("def add", max_new_tokens=4, temperature=0), str)
    x = torch.randint(0, 320, (2, 9))
    with torch.no_grad():
        want = adapted.model(x)
    merge_to_checkpoint(tmp_path / "ad", tmp_path / "merged")
    merged = load_checkpoint(tmp_path / "merged")
    assert not any("bitsandbytes" in type(m).__module__ for m in merged.modules())
    with torch.no_grad():  # the dequantized 4-bit weights plus the update: float32 round-off apart
        torch.testing.assert_close(merged(x), want, atol=1e-5, rtol=1e-5)
    adapted.merge_adapter()  # in memory too: every 4-bit layer, the head's included, back in float
    assert not any("bitsandbytes" in type(m).__module__ for m in adapted.model.modules())
    with torch.no_grad():
        torch.testing.assert_close(adapted.model(x), want, atol=1e-5, rtol=1e-5)


# ---- quantized while loading ---------------------------------------------------------------------------------------


def same_weights(a: GPT, b: GPT) -> None:
    """Every parameter equal, 4-bit ones in their packed bytes and quantization states."""
    pa, pb = dict(a.named_parameters()), dict(b.named_parameters())
    assert pa.keys() == pb.keys()
    for name, p in pa.items():
        q = pb[name]
        assert type(p) is type(q) and p.dtype == q.dtype and torch.equal(p.data, q.data), name
        if type(p).__name__ == "Params4bit":
            same_4bit(p, q, name)


def same_4bit(p: torch.Tensor, q: torch.Tensor, name: str) -> None:
    """Two bitsandbytes 4-bit weights hold the same bytes, scales and (double quantization) scales of the scales."""
    s, t = p.quant_state, q.quant_state
    assert torch.equal(p.data, q.data) and s.shape == t.shape and s.dtype == t.dtype, name
    assert s.quant_type == t.quant_type and s.blocksize == t.blocksize and torch.equal(s.code, t.code), name
    assert torch.equal(s.absmax, t.absmax) and s.nested == t.nested, name
    if s.nested:
        assert torch.equal(s.state2.absmax, t.state2.absmax) and torch.equal(s.offset, t.offset), name
        assert torch.equal(s.state2.code, t.state2.code) and s.state2.blocksize == t.state2.blocksize, name


@pytest.mark.parametrize("kind", ["nf4", "fp4"])
@pytest.mark.parametrize("double_quant", [False, True], ids=["", "double_quant"])
@pytest.mark.parametrize("width", [64, 48, 33])
def test_quantizing_a_block_of_rows_at_a_time_gives_bitsandbytes_own_bytes(
    kind: str, double_quant: bool, width: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bitsandbytes as bnb

    from litllm import quantize

    monkeypatch.setattr(quantize, "QUANTIZE_BYTES", 4 * width * 40)  # about 40 rows at a time, 7 blocks of them
    weight = torch.randn(261, width, generator=torch.Generator().manual_seed(width))
    packed, state = quantize.quantize_4bit_rows(weight, kind, double_quant)
    theirs = bnb.nn.Params4bit(weight, quant_type=kind, compress_statistics=double_quant).to("cpu")
    same_4bit(bnb.nn.Params4bit(packed, quant_state=state), theirs, "weight")


@pytest.mark.parametrize("double_quant", [False, True], ids=["", "double_quant"])
@pytest.mark.parametrize("source", ["litllm untied", "litllm tied", *(f"hf {f}" for f in FAMILIES)])
def test_a_base_quantized_while_it_loads_equals_one_quantized_after(
    source: str, double_quant: bool, untied_dir: Path, litllm_dir: Path, tmp_path: Path
) -> None:
    if source.startswith("hf "):
        path = tmp_path / "hf"
        save_hf_model(source.removeprefix("hf "), path)
    else:
        path = untied_dir if source == "litllm untied" else litllm_dir
    lora = LoRAConfig(quantize="nf4", double_quant=double_quant, quantize_head=True)
    parts = load_checkpoint_in_parts(path, lambda model: quantize_base(model, lora))
    assert parts is not None
    same_weights(parts, quantize_base(load_checkpoint(path, dtype=torch.float32), lora))
    assert not parts.training and not any(t.is_meta for t in parts.state_dict().values())


def test_a_checkpoint_that_cannot_load_in_parts_loads_whole(tmp_path: Path) -> None:
    from litllm.lora.files import load_quantized

    torch.manual_seed(0)
    model = GPT(Config(**TINY))
    torch.save({"model_args": {}, "model": {}}, tmp_path / "ckpt.pt")  # a nanoGPT pickle: no safetensors to read
    assert load_checkpoint_in_parts(tmp_path / "ckpt.pt", lambda m: None) is None
    save_checkpoint(model, tmp_path / "base")
    (tmp_path / "base" / "model.safetensors").write_bytes(b"broken")  # unreadable: the whole load reports it
    from litllm.errors import CheckpointError

    with pytest.raises(CheckpointError, match="cannot read weights file"):
        load_quantized(tmp_path / "base", LoRAConfig(quantize="nf4"))


PEAKS = """
import gc, sys
from pathlib import Path
import bitsandbytes, torch  # imported before the first measurement: the imports are not a load's
import litllm.model
from litllm.checkpoint.loading import load_checkpoint, load_checkpoint_in_parts
from litllm.cpu.memory import return_freed_memory
from litllm.lora.layers import LoRAConfig, quantize_base

def status(field):
    line = next(s for s in Path("/proc/self/status").read_text().splitlines() if s.startswith(field + ":"))
    return int(line.split()[1]) * 1024

lora = LoRAConfig(quantize="nf4", quantize_head=True)
loads = {
    "parts": lambda: load_checkpoint_in_parts(sys.argv[1], lambda model: quantize_base(model, lora)),
    "whole": lambda: quantize_base(load_checkpoint(sys.argv[1], dtype=torch.float32), lora),
}
for how, load in loads.items():  # in parts first: what bitsandbytes sets up once counts against it
    gc.collect()
    return_freed_memory()
    Path("/proc/self/clear_refs").write_text("5")  # the peak so far: back to the resident set now
    before = status("VmRSS")
    gpt = load()
    print(how, status("VmHWM") - before)
    del gpt
"""


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="reads the peak resident set as Linux has it")
def test_loading_in_parts_keeps_the_peak_memory_near_the_4bit_model(tmp_path: Path) -> None:
    """35M parameters (138 MB in float32), 8 blocks: loaded whole, the float32 model is in memory at once; in parts,
    one block of it (17 MB) and bitsandbytes' temporaries while it quantizes beside the 4-bit model (19 MB)."""
    config = Config(n_layer=8, n_embd=512, n_head=8, n_query_groups=8, vocab_size=1024, block_size=64,
                    mlp_class="swiglu", intermediate_size=2048, norm_class="rmsnorm")  # fmt: skip
    with torch.device("meta"):
        params = sum(p.numel() for p in GPT(config).parameters())
    gpt = GPT.empty(config)
    with torch.no_grad():
        for p in gpt.parameters():
            p.normal_(std=0.02)
    save_checkpoint(gpt, tmp_path / "base")
    del gpt
    out = subprocess.run([sys.executable, "-c", PEAKS, str(tmp_path / "base")], capture_output=True, text=True,
                         timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    peaks = {how: int(n) for how, n in (line.split() for line in out.stdout.splitlines()[-2:])}
    float_bytes = 4 * params
    assert peaks["whole"] > float_bytes, peaks  # the whole float32 model was in memory
    assert peaks["parts"] < min(float_bytes, 0.5 * peaks["whole"]), peaks
