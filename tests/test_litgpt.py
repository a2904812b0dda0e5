"""LitGPT checkpoints (`lit_model.pth` + `model_config.yaml`) load into `GPT` with LitGPT's own logits."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml
from torch.testing import assert_close

from litllm.checkpoint import CheckpointError, convert_to_litllm, load_checkpoint
from litllm.checkpoint.litgpt import config_from_litgpt, deinterleave_litgpt_qkv

litgpt = pytest.importorskip("litgpt")
from litgpt.scripts.convert_lit_checkpoint import qkv_reassemble  # noqa: E402
from litgpt.utils import save_config  # noqa: E402

VOCAB = 96
T = 16  # longer than the sliding windows below
TOKENS = torch.randint(0, VOCAB, (3, T), generator=torch.Generator().manual_seed(4321))
TINY = dict(vocab_size=VOCAB, padded_vocab_size=VOCAB, block_size=64)

# a LitGPT registry name and the overrides that make it tiny while keeping its architecture
LITGPT_FAMILIES: dict[str, tuple[str, dict]] = {
    "gpt-neox": ("pythia-14m", dict(n_layer=2, n_embd=64, n_head=4, head_size=16)),
    "phi-2": ("phi-2", dict(n_layer=2, n_embd=80, n_head=4, head_size=20, intermediate_size=160)),
    "llama-3.2": (
        "Llama-3.2-1B",
        dict(
            n_layer=2,
            n_embd=64,
            n_head=8,
            n_query_groups=2,
            head_size=8,
            intermediate_size=96,
            rope_adjustments=dict(factor=32.0, low_freq_factor=1.0, high_freq_factor=4.0, original_max_seq_len=16),
        ),
    ),
    "qwen2.5": (
        "Qwen2.5-0.5B",
        dict(n_layer=2, n_embd=64, n_head=4, n_query_groups=2, head_size=16, intermediate_size=96),
    ),
    "gemma-2": (
        "Gemma-2-2b",
        dict(
            n_layer=3,
            n_embd=64,
            n_head=4,
            n_query_groups=2,
            head_size=32,
            intermediate_size=96,
            sliding_window_size=4,
            attention_scores_scalar=24,
            attention_logit_softcapping=5.0,
            final_logit_softcapping=3.0,
        ),
    ),
    "gemma-3": (
        "Gemma-3-4b-it",
        dict(
            n_layer=3,
            n_embd=64,
            n_head=4,
            n_query_groups=1,
            head_size=32,
            intermediate_size=96,
            sliding_window_size=4,
            sliding_window_indices=[1, 1, 0],
            rope_indices=[1, 1, 0],
            attention_scores_scalar=32,
        ),
    ),
    "olmo-2": (
        "OLMo-2-1124-7B",
        dict(n_layer=2, n_embd=64, n_head=4, n_query_groups=4, head_size=16, intermediate_size=96),
    ),
    "olmo-1": (
        "OLMo-1B-hf",
        dict(n_layer=2, n_embd=64, n_head=4, n_query_groups=4, head_size=16, intermediate_size=96),
    ),
}


def build_litgpt_model(family: str, seed: int = 0) -> torch.nn.Module:
    """A random-weight LitGPT `GPT` of `family`, in eval mode, fp32, with norms that are not all ones."""
    name, overrides = LITGPT_FAMILIES[family]
    config = litgpt.Config.from_name(name, **TINY, **overrides)
    torch.manual_seed(seed)
    model = litgpt.GPT(config).eval()
    with torch.no_grad():
        for param_name, p in model.named_parameters():
            if "norm" in param_name or "ln_f" in param_name:
                p.add_(torch.randn_like(p) * 0.2)
    return model


def save_litgpt_checkpoint(model: torch.nn.Module, path: Path, state: dict | None = None) -> Path:
    """Write `lit_model.pth` and `model_config.yaml` the way LitGPT does."""
    path.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict() if state is None else state, path / "lit_model.pth")
    save_config(model.config, path)
    return path


@dataclass
class LitFamily:
    name: str
    lit_model: torch.nn.Module
    lit_dir: Path
    lit_logits: torch.Tensor  # (3, T, VOCAB)


@pytest.fixture(scope="module", params=list(LITGPT_FAMILIES))
def family(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> LitFamily:
    lit_model = build_litgpt_model(request.param)
    lit_dir = save_litgpt_checkpoint(lit_model, tmp_path_factory.mktemp(f"litgpt-{request.param}"))
    with torch.no_grad():
        lit_logits = lit_model(TOKENS)
    return LitFamily(request.param, lit_model, lit_dir, lit_logits)


def interleaved_state(lit_model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The state dict in the layout of LitGPT before v0.5: `attn.attn`, q/k/v rows grouped per key-value head."""
    state = {}
    for key, t in lit_model.state_dict().items():
        if ".attn.qkv." in key:
            key, t = key.replace(".attn.qkv.", ".attn.attn."), qkv_reassemble(t, lit_model.config)
        state[key] = t
    return state


@torch.no_grad()
def test_litgpt_checkpoint_logits_match_litgpt(family: LitFamily):
    logits = load_checkpoint(family.lit_dir)(TOKENS)
    assert_close(logits, family.lit_logits, atol=1e-5, rtol=0)


@torch.no_grad()
def test_legacy_interleaved_attn_attn_layout_loads_the_same(family: LitFamily, tmp_path: Path):
    state = interleaved_state(family.lit_model)
    assert any(".attn.attn.weight" in k for k in state)
    logits = load_checkpoint(save_litgpt_checkpoint(family.lit_model, tmp_path, state))(TOKENS)
    assert_close(logits, family.lit_logits, atol=1e-5, rtol=0)


@torch.no_grad()
def test_training_checkpoint_with_weights_under_model_key_loads(family: LitFamily, tmp_path: Path):
    state = {"model": family.lit_model.state_dict(), "iter_num": 10}
    logits = load_checkpoint(save_litgpt_checkpoint(family.lit_model, tmp_path, state))(TOKENS)
    assert_close(logits, family.lit_logits, atol=1e-5, rtol=0)


@torch.no_grad()
def test_convert_to_litllm_keeps_litgpt_logits(family: LitFamily, tmp_path: Path):
    out = convert_to_litllm(family.lit_dir, tmp_path)
    assert (out / "model.safetensors").is_file() and not (out / "lit_model.pth").exists()
    assert_close(load_checkpoint(out)(TOKENS), family.lit_logits, atol=1e-5, rtol=0)


@pytest.mark.parametrize(("n_head", "n_query_groups"), [(4, 4), (8, 2), (4, 1)])
def test_deinterleave_litgpt_qkv_inverts_qkv_reassemble(n_head: int, n_query_groups: int):
    lit_config = litgpt.Config(n_embd=32, n_head=n_head, n_query_groups=n_query_groups, head_size=8)
    config = config_from_litgpt(yaml.safe_load(yaml.dump(vars(lit_config))))
    rows = (n_head + 2 * n_query_groups) * 8
    weight, bias = torch.randn(rows, 32), torch.randn(rows)
    for t in (weight, bias):
        assert torch.equal(deinterleave_litgpt_qkv(qkv_reassemble(t, lit_config), config), t)


def lit_config_dict(family: str, **changes) -> dict:
    """`model_config.yaml` contents of a tiny LitGPT `family`, with `changes`."""
    name, overrides = LITGPT_FAMILIES[family]
    return {**vars(litgpt.Config.from_name(name, **TINY, **overrides)), **changes}


def test_interleaved_rope_is_refused():
    with pytest.raises(CheckpointError, match="rope_interleave"):
        config_from_litgpt(lit_config_dict("llama-3.2", rope_interleave=True))


def test_local_rope_base_on_other_layers_than_the_window_is_refused():
    with pytest.raises(CheckpointError, match=r"rope_indices \[1, 0, 0\]"):
        config_from_litgpt(lit_config_dict("gemma-3", rope_indices=[1, 0, 0]))


def test_sliding_window_on_no_layer_means_no_window():
    config = config_from_litgpt(lit_config_dict("gemma-2", sliding_window_indices=[0, 0, 0]))
    assert config.sliding_window_size is None


def test_irregular_sliding_window_layers_are_refused():
    with pytest.raises(CheckpointError, match=r"sliding_window_indices \[0, 1, 1\]"):
        config_from_litgpt(lit_config_dict("gemma-2", sliding_window_indices=[0, 1, 1]))


def test_mixture_of_experts_is_refused():
    with pytest.raises(CheckpointError, match="mixture-of-experts"):
        config_from_litgpt(lit_config_dict("llama-3.2", mlp_class_name="LLaMAMoE", n_expert=4, n_expert_per_token=2))


def test_unknown_litgpt_tensor_is_named(tmp_path: Path):
    lit_model = build_litgpt_model("gpt-neox")
    state = {**lit_model.state_dict(), "transformer.h.0.attn.adapter_wte.weight": torch.zeros(2, 2)}
    with pytest.raises(CheckpointError, match=r"transformer\.h\.0\.attn\.adapter_wte\.weight"):
        load_checkpoint(save_litgpt_checkpoint(lit_model, tmp_path, state))
