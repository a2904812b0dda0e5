"""litllm adapter folders and Hugging Face peft LoRA adapters convert both ways: peft's logits over transformers equal
litllm's over its own model, for separate and fused (GPT-NeoX, GPT-2, phi3) modules, rsLoRA and DoRA."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hf_models import VOCAB, save_hf_model
from safetensors.torch import load_file, save_file
from torch.testing import assert_close

from litllm.checkpoint import load_checkpoint
from litllm.cli import main
from litllm.errors import CheckpointError
from litllm.lora.files import attach_adapter, read_adapter, save_adapter
from litllm.lora.layers import LoRAConfig, LoRAError, adapter_state_dict, add_adapter, lora_layers
from litllm.lora.peft import from_peft, to_peft

peft = pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")

TOKENS = torch.randint(0, VOCAB, (2, 12), generator=torch.Generator().manual_seed(7))


def trained_adapter(base: Path, out: Path, lora: LoRAConfig, seed: int = 0) -> torch.Tensor:
    """Save an adapter on `base` with random non-zero A, B (and DoRA magnitudes); returns litllm's logits with it, in
    float64 (as every logits here: the two sides' float32 matrix products may round apart by more than 1e-5)."""
    gpt = load_checkpoint(base, dtype=torch.float32)
    add_adapter(gpt, lora)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in gpt.named_parameters():
            if ".lora.adapters." in name:
                noise = torch.randn(p.shape, generator=g)
                p.copy_(p * (1 + 0.2 * noise) if ".magnitude." in name else 0.3 * noise)
    save_adapter(out, adapter_state_dict(gpt), gpt.config, lora, str(base))
    with torch.no_grad():
        return gpt.double()(TOKENS)


def peft_logits(hf_dir: Path, peft_dir: Path) -> torch.Tensor:
    model = transformers.AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float64)
    model = peft.PeftModel.from_pretrained(model, peft_dir).eval()
    with torch.no_grad():
        return model(TOKENS).logits


def litllm_logits(base: Path, adapter: Path) -> torch.Tensor:
    gpt = load_checkpoint(base, dtype=torch.float32)
    attach_adapter(gpt, adapter)
    with torch.no_grad():
        return gpt.double()(TOKENS)


def peft_adapter(hf_dir: Path, out: Path, **lora) -> torch.Tensor:
    """Save a peft adapter made by peft itself with random A and B; returns peft's logits with it."""
    model = transformers.AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32)
    torch.manual_seed(3)
    model = peft.get_peft_model(model, peft.LoraConfig(init_lora_weights=False, **lora)).eval()
    if lora.get("use_dora"):  # DoRA's magnitudes start at the base's row norms: move them
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_magnitude_vector" in name:
                    p.mul_(1 + 0.2 * torch.randn_like(p))
    model.save_pretrained(out)
    with torch.no_grad():
        return model.double()(TOKENS).logits


@pytest.fixture(scope="module")
def hf_family_dir(tmp_path_factory: pytest.TempPathFactory):
    """A tiny transformers model of a family of tests/hf_models.py, saved once per family."""
    saved: dict[str, Path] = {}

    def make(family: str) -> Path:
        if family not in saved:
            saved[family] = tmp_path_factory.mktemp(family)
            save_hf_model(family, saved[family])
        return saved[family]

    return make


LLAMA_CASES = {
    "query-value": LoRAConfig(r=4, alpha=8),
    "all-linear": LoRAConfig(r=4, alpha=16, targets=["all-linear"]),
    "rslora": LoRAConfig(r=4, alpha=3, targets=["all-linear"], rslora=True),
    "dora": LoRAConfig(r=2, alpha=4, targets=["all-linear"], dora=True),
}


@pytest.mark.parametrize("case", LLAMA_CASES)
def test_llama_adapter_gives_peft_the_logits_of_litllm(
    case: str, litllm_dir: Path, hf_llama_dir: Path, tmp_path: Path
) -> None:
    ours = trained_adapter(litllm_dir, tmp_path / "adapter", LLAMA_CASES[case])
    to_peft(tmp_path / "adapter", tmp_path / "peft")
    assert_close(peft_logits(hf_llama_dir, tmp_path / "peft"), ours, atol=1e-5, rtol=1e-5)


FUSED_CASES = {  # family, options: modules that hold several targets (query_key_value, c_attn, qkv_proj, gate_up_proj)
    "pythia-query-value": ("pythia", LoRAConfig(r=4, alpha=8)),
    "pythia-all-linear-rslora": ("pythia", LoRAConfig(r=2, alpha=5, targets=["all-linear"], rslora=True)),
    "gpt2-all-linear": ("gpt2", LoRAConfig(r=3, alpha=6, targets=["all-linear"])),
    "phi3-all-linear-dora": ("phi-3", LoRAConfig(r=2, alpha=4, targets=["all-linear"], dora=True)),
    "phi3-query-value-dora": ("phi-3", LoRAConfig(r=2, alpha=4, dora=True)),  # the key rows keep the base's norms
    "qwen2-all-linear": ("qwen2.5", LoRAConfig(r=4, alpha=8, targets=["all-linear"])),
}


@pytest.mark.parametrize("case", FUSED_CASES)
def test_other_families_give_peft_the_logits_of_litllm(case: str, hf_family_dir, tmp_path: Path) -> None:
    family, lora = FUSED_CASES[case]
    hf_dir = hf_family_dir(family)
    ours = trained_adapter(hf_dir, tmp_path / "adapter", lora)
    to_peft(tmp_path / "adapter", tmp_path / "peft")
    assert_close(peft_logits(hf_dir, tmp_path / "peft"), ours, atol=1e-5, rtol=1e-5)


def test_a_fused_module_is_declared_with_its_rank_and_alpha(hf_family_dir, tmp_path: Path) -> None:
    hf_dir = hf_family_dir("pythia")
    trained_adapter(hf_dir, tmp_path / "adapter", LoRAConfig(r=4, alpha=8, projection=True))
    to_peft(tmp_path / "adapter", tmp_path / "peft")
    config = json.loads((tmp_path / "peft" / "adapter_config.json").read_text())
    assert (config["peft_type"], config["task_type"], config["r"], config["lora_alpha"]) == ("LORA", "CAUSAL_LM", 4, 8)
    assert config["target_modules"] == ["dense", "query_key_value"]
    assert (config["rank_pattern"], config["alpha_pattern"]) == ({"query_key_value": 8}, {"query_key_value": 16})
    assert config["base_model_name_or_path"] == str(hf_dir.resolve())
    weights = load_file(tmp_path / "peft" / "adapter_model.safetensors")
    key = "base_model.model.gpt_neox.layers.1.attention.query_key_value"
    assert weights[f"{key}.lora_A.weight"].shape == (8, 64)
    assert weights[f"{key}.lora_B.weight"].shape == (192, 8)


def test_module_names_that_end_alike_are_told_apart(hf_family_dir, tmp_path: Path) -> None:
    trained_adapter(hf_family_dir("gpt2"), tmp_path / "adapter", LoRAConfig(r=2, alpha=2, projection=True))
    to_peft(tmp_path / "adapter", tmp_path / "peft")
    config = json.loads((tmp_path / "peft" / "adapter_config.json").read_text())
    assert config["target_modules"] == ["attn.c_proj", "c_attn"]  # "c_proj" alone would adapt the MLP's too
    assert config["fan_in_fan_out"] is True


PEFT_CASES = {
    "llama-query-value": ("smollm2", dict(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])),
    "llama-all-linear-dora": ("smollm2", dict(r=2, lora_alpha=4, target_modules="all-linear", use_dora=True)),
    "llama-rslora": ("smollm2", dict(r=4, lora_alpha=3, target_modules=["k_proj", "down_proj"], use_rslora=True)),
    "pythia-fused-qkv": ("pythia", dict(r=4, lora_alpha=8, target_modules=["query_key_value"])),
    "gpt2-fused-dora": ("gpt2", dict(r=2, lora_alpha=4, target_modules=["c_attn", "c_fc"], use_dora=True)),
    "phi3-fused": ("phi-3", dict(r=3, lora_alpha=6, target_modules=["qkv_proj", "gate_up_proj"])),
}


@pytest.mark.parametrize("case", PEFT_CASES)
def test_a_peft_adapter_gives_litllm_the_logits_of_peft(case: str, hf_family_dir, tmp_path: Path) -> None:
    family, options = PEFT_CASES[case]
    hf_dir = hf_family_dir(family)
    theirs = peft_adapter(hf_dir, tmp_path / "peft", **options)
    from_peft(tmp_path / "peft", tmp_path / "adapter")  # the base: base_model_name_or_path
    assert read_adapter(tmp_path / "adapter").base == str(hf_dir.resolve())
    assert_close(litllm_logits(hf_dir, tmp_path / "adapter"), theirs, atol=1e-5, rtol=1e-5)


def test_a_fused_module_shares_its_a_among_its_targets(hf_family_dir, tmp_path: Path) -> None:
    hf_dir = hf_family_dir("pythia")
    peft_adapter(hf_dir, tmp_path / "peft", r=4, lora_alpha=8, target_modules=["query_key_value"])
    adapter = read_adapter(from_peft(tmp_path / "peft", tmp_path / "adapter", base=str(hf_dir)))
    assert (adapter.lora.r, adapter.lora.alpha, adapter.lora.target_names()) == (4, 8, ("query", "key", "value"))
    state = adapter.state_dict()
    assert_close(state["h.0.attn.qkv.lora.A.query"], state["h.0.attn.qkv.lora.A.value"])


@pytest.mark.parametrize("family", ["phi-3", "gpt2"])
def test_an_export_of_fused_modules_reads_back_as_it_was(family: str, hf_family_dir, tmp_path: Path) -> None:
    hf_dir = hf_family_dir(family)
    lora = LoRAConfig(r=2, alpha=4, targets=["all-linear"], dora=True)
    ours = trained_adapter(hf_dir, tmp_path / "adapter", lora)
    to_peft(tmp_path / "adapter", tmp_path / "peft")
    back = read_adapter(from_peft(tmp_path / "peft", tmp_path / "back"))
    assert (back.lora.r, back.lora.alpha, back.lora.dora) == (2, 4, True)  # not rank 3·2 for qkv_proj
    original = read_adapter(tmp_path / "adapter").state_dict()
    assert back.state_dict().keys() == original.keys()
    for key, t in original.items():
        assert torch.equal(back.state_dict()[key], t), key
    assert_close(litllm_logits(hf_dir, tmp_path / "back"), ours, atol=1e-6, rtol=1e-6)


def test_missing_and_unexpected_peft_tensors_are_named(hf_family_dir, tmp_path: Path) -> None:
    hf_dir = hf_family_dir("smollm2")
    peft_adapter(hf_dir, tmp_path / "peft", r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"])
    path = tmp_path / "peft" / "adapter_model.safetensors"
    weights = load_file(path)
    del weights["base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight"]
    weights["base_model.model.model.embed_tokens.lora_embedding_A"] = torch.zeros(2, VOCAB)
    save_file(weights, path)
    with pytest.raises(LoRAError) as e:
        from_peft(tmp_path / "peft", tmp_path / "adapter")
    assert "missing base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight" in str(e.value)
    assert "unexpected base_model.model.model.embed_tokens.lora_embedding_A" in str(e.value)


def test_an_adapter_of_some_layers_only_is_refused_naming_the_rest(hf_family_dir, tmp_path: Path) -> None:
    hf_dir = hf_family_dir("smollm2")
    peft_adapter(hf_dir, tmp_path / "peft", r=2, lora_alpha=4, target_modules=["q_proj"], layers_to_transform=[0])
    with pytest.raises(LoRAError, match=r"missing base_model\.model\.model\.layers\.1\.self_attn\.q_proj\.lora_A"):
        from_peft(tmp_path / "peft", tmp_path / "adapter")


def test_ranks_that_differ_by_module_are_refused(hf_family_dir, tmp_path: Path) -> None:
    hf_dir = hf_family_dir("smollm2")
    peft_adapter(
        hf_dir, tmp_path / "peft", r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"], rank_pattern={"q_proj": 4}
    )
    with pytest.raises(LoRAError, match=r"different ranks.*q_proj: r=4 alpha=4.*v_proj: r=2 alpha=4"):
        from_peft(tmp_path / "peft", tmp_path / "adapter")


def test_other_peft_methods_and_options_are_refused(hf_family_dir, tmp_path: Path) -> None:
    hf_dir = hf_family_dir("smollm2")
    peft_adapter(hf_dir, tmp_path / "peft", r=2, lora_alpha=4, target_modules=["q_proj"])
    config_path = tmp_path / "peft" / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**config, "peft_type": "IA3"}))
    with pytest.raises(LoRAError, match="peft_type 'IA3' is not supported; litllm reads LORA adapters"):
        from_peft(tmp_path / "peft", tmp_path / "adapter")
    config_path.write_text(json.dumps({**config, "modules_to_save": ["lm_head"], "bias": "all"}))
    with pytest.raises(
        LoRAError, match=r"cannot express the peft option\(s\) modules_to_save=\['lm_head'\], bias='all'"
    ):
        from_peft(tmp_path / "peft", tmp_path / "adapter")


def test_a_pickled_peft_adapter_is_refused(tmp_path: Path) -> None:
    (tmp_path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8}))
    (tmp_path / "adapter_model.bin").write_bytes(b"\x80\x04not read")
    with pytest.raises(CheckpointError, match="adapter_model.bin.*is a Python pickle, which litllm does not load"):
        from_peft(tmp_path, tmp_path / "out")


def test_the_cli_converts_a_run_both_ways(litllm_dir: Path, hf_llama_dir: Path, tmp_path: Path, capsys) -> None:
    ours = trained_adapter(litllm_dir, tmp_path / "run" / "final", LoRAConfig(r=2, alpha=4, key=True))
    main(["convert", "to_peft", str(tmp_path / "run"), str(tmp_path / "peft")])
    assert capsys.readouterr().out.strip() == f"saved to {tmp_path / 'peft'}"
    main(["convert", "from_peft", str(tmp_path / "peft"), str(tmp_path / "back"), "--base", str(litllm_dir)])
    assert_close(litllm_logits(litllm_dir, tmp_path / "back"), ours, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("command", ["to_peft", "from_peft"])
def test_the_cli_refuses_a_folder_that_is_no_adapter_in_one_line(command: str, tmp_path: Path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as e:
        main(["convert", command, str(tmp_path / "empty"), str(tmp_path / "out")])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("litllm: error: ") and "is not a" in err and "\n" not in err
    assert not (tmp_path / "out").exists()


def test_a_litllm_adapter_keeps_its_layers_after_conversion(litllm_dir: Path, tmp_path: Path) -> None:
    trained_adapter(litllm_dir, tmp_path / "adapter", LoRAConfig(r=2, alpha=4, targets=["mlp"]))
    to_peft(tmp_path / "adapter", tmp_path / "peft")
    from_peft(tmp_path / "peft", tmp_path / "back")
    gpt = load_checkpoint(litllm_dir, dtype=torch.float32)
    attach_adapter(gpt, tmp_path / "back")
    assert sorted(lora_layers(gpt)) == [f"h.{i}.mlp.{p}" for i in (0, 1) for p in ("fc", "proj")]
