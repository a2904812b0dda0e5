"""LoRA layers: what an adapter changes, what trains, merging, several adapters in one batch, adapter folders."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hf_models import FAMILIES, build_hf_model

from litllm.checkpoint.hf_config import config_from_hf
from litllm.config import Config
from litllm.lora.files import attach_adapter, read_adapter, save_adapter
from litllm.lora.layers import (
    LoRAConfig,
    LoRAError,
    adapter_names,
    adapter_rows,
    adapter_state_dict,
    add_adapter,
    freeze_base,
    layer_slices,
    merge_adapter,
    remove_adapter,
    use_adapter,
)
from litllm.model import GPT

TINY = dict(n_layer=2, n_embd=64, n_head=4, n_query_groups=2, vocab_size=96, block_size=64)


def tiny(**fields: object) -> GPT:
    torch.manual_seed(0)
    model = GPT(Config(**{**TINY, "mlp_class": "swiglu", "intermediate_size": 96, "norm_class": "rmsnorm", **fields}))
    model.reset_parameters()
    return model.eval()


def randomize(model: GPT, std: float = 0.2) -> None:
    """Move every adapter away from its starting point (B = 0 there), as training would."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lora." in name:
                p.add_(torch.randn_like(p) * std)


def family_model(family: str) -> GPT:
    hf = build_hf_model(family)
    torch.manual_seed(0)
    model = GPT(config_from_hf(hf.config.to_dict()))
    model.reset_parameters()
    return model.eval()


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_new_adapter_leaves_every_familys_output_unchanged_and_merges_exactly(family: str) -> None:
    model = family_model(family)
    x = torch.randint(0, model.config.vocab_size, (2, 9))
    before = model(x)
    add_adapter(model, LoRAConfig(r=4, targets=["all-linear", "head"]))
    assert torch.equal(model(x), before)  # B starts at zero
    randomize(model)
    adapted = model(x)
    assert not torch.allclose(adapted, before, atol=1e-3)
    merge_adapter(model)
    assert not adapter_names(model) and not any(".lora." in k for k in model.state_dict())
    scale = adapted.abs().max().item()
    torch.testing.assert_close(model(x), adapted, atol=5e-5 * scale, rtol=1e-5)  # float32 round-off


def test_a_is_kaiming_uniform_and_b_zero() -> None:
    model = tiny()
    add_adapter(model, LoRAConfig(r=8))
    weights = model.h[0].attn.qkv.lora.adapters["default"]
    bound = 1 / 64**0.5  # kaiming_uniform(a=sqrt(5)) over 64 inputs
    assert weights.A["query"].abs().max() <= bound and weights.A["query"].std() > bound / 3
    assert not weights.B["query"].any()


def test_fused_qkv_gets_one_adapter_per_enabled_projection_with_grouped_query_shapes() -> None:
    model = tiny()  # 4 query heads, 2 key/value groups, head size 16
    add_adapter(model, LoRAConfig(r=4, query=True, key=True, value=False))
    weights = model.h[0].attn.qkv.lora.adapters["default"]
    assert sorted(weights.A) == ["key", "query"]
    assert tuple(weights.B["query"].shape) == (64, 4) and tuple(weights.B["key"].shape) == (32, 4)
    assert layer_slices(model)["h.0.attn.qkv"] == {"query": (0, 64), "key": (64, 96), "value": (96, 128)}
    randomize(model)
    x = torch.randn(1, 3, 64)
    qkv = model.h[0].attn.qkv
    with use_adapter(model, None):
        plain = qkv(x)
    delta = qkv(x) - plain
    assert delta[..., :96].abs().max() > 0 and not delta[..., 96:].any()  # value rows untouched


def test_only_the_adapter_trains() -> None:
    model = tiny()
    add_adapter(model, LoRAConfig(r=4, mlp=True, dropout=0.1))
    freeze_base(model)
    model.train()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora.adapters.default." in n for n in trainable)
    before = {n: p.clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model(torch.randint(0, 96, (2, 8))).logsumexp(-1).mean().backward()
    optimizer.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and changed <= trainable


@pytest.mark.parametrize("kernel", ["linear", "onednn"])
def test_a_lora_step_keeps_no_input_of_a_frozen_layer(monkeypatch: pytest.MonkeyPatch, kernel: str) -> None:
    """Backward of a frozen base layer needs its weight alone: its input is not kept (with either float32 training
    kernel), and a gated MLP keeps its [gate; up] rows only, not act(gate) as well."""
    from litllm.cpu import kernels

    monkeypatch.setattr(kernels, "_training_gemm", kernel)
    model = tiny(intermediate_size=112)
    add_adapter(model, LoRAConfig(r=4, targets=["query", "value"]))
    freeze_base(model)
    model.train()
    inputs, fc_out = {}, []
    for name, layer in model.named_modules():
        if name.endswith(("attn.proj", "mlp.fc", "mlp.proj")):  # frozen, no adapter
            layer.register_forward_hook(lambda m, args, out, name=name: inputs.update({name: args[0]}))
        if name.endswith("mlp.fc"):
            layer.register_forward_hook(lambda m, args, out: fc_out.append(out))
    kept = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: kept.append(t) or t, lambda t: t):
        loss = model(torch.randint(0, 96, (2, 16))).logsumexp(-1).mean()
    # attention keeps its output (B, heads, T, size), whose storage the projection's input may share: not counted
    kept_storages = {t.untyped_storage().data_ptr() for t in kept if t.dim() != 4}
    assert len(inputs) == 6 and not any(x.untyped_storage().data_ptr() in kept_storages for x in inputs.values())
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    gated = [t for t in kept if t.shape[-1] == 112 and t.untyped_storage().data_ptr() not in weights]  # act(gate)...
    assert not gated and all(h.untyped_storage().data_ptr() in kept_storages for h in fc_out)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_the_gated_activation_keeps_its_input_alone_and_gives_autograds_bits() -> None:
    import torch.nn.functional as F

    from litllm.model import GatedActivation

    kept = []  # what the function keeps for backward
    for dtype in (torch.float32, torch.bfloat16):
        for silu, approximate in ((True, "none"), (False, "tanh"), (False, "none")):
            torch.manual_seed(0)
            h = torch.randn(2, 5, 64, dtype=dtype, requires_grad=True)
            upstream = torch.randn(2, 5, 32, dtype=dtype)
            gate, up = h.chunk(2, dim=-1)
            want = (F.silu(gate) if silu else F.gelu(gate, approximate=approximate)) * up
            (want_grad,) = torch.autograd.grad(want, h, upstream)
            kept.clear()
            with torch.autograd.graph.saved_tensors_hooks(lambda t: kept.append(t) or t, lambda t: t):
                got = GatedActivation.apply(h, silu, approximate)
            (got_grad,) = torch.autograd.grad(got, h, upstream)
            assert len(kept) == 1 and kept[0] is h
            assert torch.equal(got, want) and torch.equal(got_grad, want_grad)


@pytest.mark.parametrize("options", [dict(rslora=True), dict(dora=True), dict(dora=True, targets=["head", "mlp"])])
def test_rslora_and_dora_merge_to_the_same_logits(options: dict) -> None:
    model = tiny(tie_embeddings=True)
    x = torch.randint(0, 96, (2, 7))
    before = model(x)
    add_adapter(model, LoRAConfig(r=4, alpha=8, **options))
    torch.testing.assert_close(model(x), before, atol=1e-6, rtol=0)  # DoRA's magnitudes start at the row norms
    randomize(model)
    adapted = model(x)
    merge_adapter(model)
    torch.testing.assert_close(model(x), adapted, atol=2e-5, rtol=1e-5)
    if "head" in options.get("targets", ()):
        assert not model.config.tie_embeddings and model.lm_head.weight is not model.wte.weight


def test_scale_is_alpha_over_r_or_over_its_root_with_rslora() -> None:
    assert LoRAConfig(r=16, alpha=32).scale == 2.0
    assert LoRAConfig(r=16, alpha=32, rslora=True).scale == 8.0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (dict(r=0), "lora r must be an integer > 0, got 0"),
        (dict(alpha=0), "lora alpha must be > 0"),
        (dict(dropout=1.0), "lora dropout must be in [0, 1)"),
        (dict(targets=["q_proj", "wq"]), "unknown lora target 'wq'; accepted: query, key"),
        (dict(query=False, value=False), "lora adapts no layer"),
        (dict(quantize="int4"), "lora quantize must be one of nf4, fp4"),
        (dict(quantize_head=True), "lora quantize_head=true needs quantize set too, nf4 or fp4"),
    ],
)
def test_bad_lora_options_are_refused_by_name(options: dict, message: str) -> None:
    with pytest.raises(LoRAError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        LoRAConfig(**options)


def test_peft_names_select_the_same_layers() -> None:
    assert LoRAConfig(targets=["q_proj", "v_proj"]).target_names() == ("query", "value")
    assert LoRAConfig(targets=["mlp"]).target_names() == LoRAConfig(query=False, value=False, mlp=True).target_names()


@pytest.mark.parametrize("dora", [False, True], ids=["lora", "dora"])
@pytest.mark.parametrize("grad", [False, True], ids=["generating", "training"])
def test_rows_of_one_batch_use_their_own_adapters(dora: bool, grad: bool) -> None:
    model = tiny()
    add_adapter(model, LoRAConfig(r=4), "a")
    add_adapter(model, LoRAConfig(r=2, targets=["all-linear"], dora=dora), "b")
    add_adapter(model, LoRAConfig(r=3, targets=["head", "down"]), "c")
    randomize(model)
    x = torch.randint(0, 96, (4, 6))
    names = ["a", "b", None, "c"]
    with torch.set_grad_enabled(grad):
        alone = []
        for i, name in enumerate(names):
            with use_adapter(model, name):
                alone.append(model(x[i : i + 1]))
        with adapter_rows(model, names):
            together = model(x)
    torch.testing.assert_close(together, torch.cat(alone), atol=1e-5, rtol=1e-5)
    with pytest.raises(LoRAError, match="no adapter named d; the model has: a, b, c"), adapter_rows(model, ["d"]):
        pass


def test_removing_an_adapter_restores_the_base() -> None:
    model = tiny()
    x = torch.randint(0, 96, (1, 5))
    before = model(x)
    add_adapter(model, LoRAConfig(r=4))
    randomize(model)
    remove_adapter(model, "default")
    assert adapter_names(model) == [] and torch.equal(model(x), before)


def test_an_adapter_folder_round_trips(tmp_path: Path) -> None:
    model = tiny()
    lora = LoRAConfig(r=4, mlp=True, dora=True)
    add_adapter(model, lora)
    randomize(model)
    x = torch.randint(0, 96, (2, 5))
    want = model(x)
    save_adapter(tmp_path / "ad", adapter_state_dict(model), model.config, lora, base="some/base")
    assert read_adapter(tmp_path / "ad").lora == lora
    fresh = tiny()
    assert attach_adapter(fresh, tmp_path / "ad") == "ad"
    assert torch.equal(fresh(x), want)


def test_an_adapter_for_another_base_names_both(tmp_path: Path) -> None:
    model = tiny()
    add_adapter(model, LoRAConfig(r=4))
    save_adapter(tmp_path / "ad", adapter_state_dict(model), model.config, LoRAConfig(r=4), base="tiny-base")
    other = tiny(n_embd=32, name="other-model")
    fits = r"trained on base 'tiny-base'.*does not fit this model \(other-model\): head_size: 16 vs 8, n_embd"
    with pytest.raises(LoRAError, match=fits):
        attach_adapter(other, tmp_path / "ad")


def test_missing_or_unexpected_adapter_tensors_are_named(tmp_path: Path) -> None:
    from litllm.checkpoint.own import save_safetensors

    model = tiny()
    add_adapter(model, LoRAConfig(r=4))
    state = adapter_state_dict(model)
    state.pop("h.1.attn.qkv.lora.A.value")
    state["h.9.attn.qkv.lora.A.query"] = torch.zeros(4, 64)
    save_adapter(tmp_path / "ad", state, model.config, LoRAConfig(r=4), base="b")
    with pytest.raises(LoRAError, match=r"missing h\.1\.attn\.qkv\.lora\.A\.value; unexpected h\.9\.attn"):
        attach_adapter(tiny(), tmp_path / "ad")
    state = adapter_state_dict(model)
    save_safetensors(state, tmp_path / "ad" / "adapter.safetensors")
    save_adapter(tmp_path / "r8", state, model.config, LoRAConfig(r=8), base="b")
    with pytest.raises(LoRAError, match=r"has shape \(4, 64\), the model needs \(8, 64\)"):
        attach_adapter(tiny(), tmp_path / "r8")


def test_qlora_4bit_base_trains_its_adapter_and_merges_to_its_dequantized_weights() -> None:
    pytest.importorskip("bitsandbytes")
    from litllm.quantize import dequantize_model, quantize_model

    model = tiny()
    quantize_model(model, "bnb.nf4", double_quant=True)
    add_adapter(model, LoRAConfig(r=4, targets=["all-linear"]))
    freeze_base(model)
    assert type(model.h[0].attn.qkv).__name__ == "Linear4bit"
    model.train()
    model(torch.randint(0, 96, (2, 6))).logsumexp(-1).mean().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    model.eval()
    randomize(model)
    x = torch.randint(0, 96, (2, 6))
    with torch.no_grad():
        adapted = model(x)  # an eval forward without gradients: where bitsandbytes would repack on avx512_bf16
    assert not getattr(model.h[0].attn.qkv.weight.quant_state, "packing_format_for_cpu", False)
    merge_adapter(model)
    dequantize_model(model)
    assert not any(type(m).__name__ == "Linear4bit" for m in model.modules())
    # the merged weight is the dequantized 4-bit weight plus the update: float32 round-off apart
    torch.testing.assert_close(model(x), adapted, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", ["nf4", "fp4"])
def test_a_4bit_base_merge_matches_the_adapted_4bit_model(kind: str, tmp_path: Path) -> None:
    pytest.importorskip("bitsandbytes")
    from litllm.checkpoint.own import save_checkpoint
    from litllm.lora.files import load_adapted, merge_to_checkpoint

    base = tiny()
    save_checkpoint(base, tmp_path / "base")
    lora = LoRAConfig(r=4, mlp=True, quantize=kind)
    add_adapter(base, lora)
    randomize(base)
    save_adapter(tmp_path / "ad", adapter_state_dict(base), base.config, lora, base=str(tmp_path / "base"))
    adapted = load_adapted(tmp_path / "ad")
    assert type(adapted.h[0].mlp.fc).__name__ == "Linear4bit"
    merge_to_checkpoint(tmp_path / "ad", tmp_path / "merged")
    from litllm.checkpoint.loading import load_checkpoint

    x = torch.randint(0, 96, (2, 7))
    torch.testing.assert_close(load_checkpoint(tmp_path / "merged")(x), adapted.eval()(x), atol=1e-5, rtol=1e-5)


def test_merging_a_4bit_adapter_without_bitsandbytes_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    from litllm.checkpoint.own import save_checkpoint
    from litllm.errors import MissingDependencyError
    from litllm.lora.files import merge_to_checkpoint

    base = tiny()
    save_checkpoint(base, tmp_path / "base")
    add_adapter(base, LoRAConfig(r=4))
    lora = LoRAConfig(r=4, quantize="nf4")
    save_adapter(tmp_path / "ad", adapter_state_dict(base), base.config, lora, base=str(tmp_path / "base"))
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # as if it were not installed
    with pytest.raises(MissingDependencyError, match="quantize='bnb.nf4' needs bitsandbytes: pip install bitsandbytes"):
        merge_to_checkpoint(tmp_path / "ad", tmp_path / "merged")
    assert not (tmp_path / "merged").exists()
