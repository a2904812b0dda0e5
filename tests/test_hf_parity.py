"""Hugging Face checkpoints of every supported family load into `GPT` with transformers' own logits, decode the same
through the KV cache, and convert to litllm and back without changing a bit."""

from __future__ import annotations

import json
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import pytest
import torch
from hf_models import FAMILIES, VOCAB, build_hf_model, save_hf_model
from safetensors.torch import load_file
from torch.testing import assert_close

from litllm.checkpoint import (
    CheckpointError,
    config_from_hf,
    config_to_hf,
    convert_to_hf,
    convert_to_litllm,
    load_checkpoint,
)
from litllm.model import GPT

transformers = pytest.importorskip("transformers")

# three different sequences, longer than every sliding window in hf_models (at most 6)
T = 16
TOKENS = torch.randint(0, VOCAB, (3, T), generator=torch.Generator().manual_seed(1234))


@dataclass
class Family:
    name: str
    hf_model: torch.nn.Module
    hf_dir: Path
    hf_logits: torch.Tensor  # (3, T, VOCAB)
    model: GPT


@pytest.fixture(scope="module", params=list(FAMILIES))
def family(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Family:
    """One family's tiny transformers model, saved once, and the `GPT` that `load_checkpoint` made of it."""
    name = request.param
    hf_dir = tmp_path_factory.mktemp(f"hf-{name}")
    hf_model = save_hf_model(name, hf_dir)
    with torch.no_grad():
        hf_logits = hf_model(TOKENS).logits
    return Family(name, hf_model, hf_dir, hf_logits, load_checkpoint(hf_dir))


def hf_attn_implementation(name: str) -> str:
    """The attention the reference model ran (softcapped attention, Gemma 2's, has no SDPA path in transformers)."""
    return FAMILIES[name].get("attn_implementation", "sdpa")


def test_sequences_are_distinct_and_longer_than_every_window():
    assert len({tuple(row.tolist()) for row in TOKENS}) == 3
    assert all(cfg.get("sliding_window", 0) < T for cfg in FAMILIES.values())


@torch.no_grad()
def test_logits_match_transformers(family: Family):
    logits = family.model(TOKENS)
    assert logits.dtype == torch.float32
    assert_close(logits, family.hf_logits, atol=1e-5, rtol=0)


@torch.no_grad()
def test_kv_cache_decoding_one_token_at_a_time_matches_full_forward(family: Family):
    model, prefill = family.model, 5
    model.set_kv_cache(3, T)
    try:
        steps = [model(TOKENS[:, :prefill], input_pos=0)]
        steps += [model(TOKENS[:, t : t + 1], input_pos=t) for t in range(prefill, T)]
    finally:
        model.clear_kv_cache()
    assert_close(torch.cat(steps, dim=1), model(TOKENS), atol=1e-5, rtol=0)


@torch.no_grad()
def test_kv_cache_prefill_in_chunks_matches_full_forward(family: Family):
    model, chunks = family.model, (0, 4, 11, T)
    model.set_kv_cache(3, T)
    try:
        steps = [model(TOKENS[:, a:b], input_pos=a) for a, b in pairwise(chunks)]
    finally:
        model.clear_kv_cache()
    assert_close(torch.cat(steps, dim=1), model(TOKENS), atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def round_trip_dir(family: Family, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The family's Hugging Face directory converted to litllm and back to Hugging Face."""
    tmp = tmp_path_factory.mktemp(f"round-trip-{family.name}")
    return convert_to_hf(convert_to_litllm(family.hf_dir, tmp / "litllm"), tmp / "hf")


def test_convert_to_litllm_and_back_is_bit_exact(family: Family, round_trip_dir: Path):
    original = load_file(family.hf_dir / "model.safetensors")
    round_trip = load_file(round_trip_dir / "model.safetensors")
    assert sorted(round_trip) == sorted(original)
    differing = [k for k in original if not torch.equal(original[k], round_trip[k])]
    assert not differing


@torch.no_grad()
def test_converted_config_json_loads_in_transformers_with_the_same_logits(family: Family, round_trip_dir: Path):
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(
        round_trip_dir, attn_implementation=hf_attn_implementation(family.name), dtype=torch.float32
    ).eval()
    assert type(reloaded) is type(family.hf_model)
    assert_close(reloaded(TOKENS).logits, family.hf_logits, atol=1e-5, rtol=0)


def test_sharded_safetensors_load_identically(family: Family, tmp_path: Path):
    family.hf_model.save_pretrained(tmp_path, max_shard_size="20KB")
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    assert not (tmp_path / "model.safetensors").exists()
    sharded, whole = load_checkpoint(tmp_path).state_dict(), family.model.state_dict()
    assert sorted(sharded) == sorted(whole)
    assert all(torch.equal(sharded[k], whole[k]) for k in whole)


# ---------------------------------------------------------------------------------------------------------------
# sliding windows in config.json, both ways

LLAMA_LIKE = dict(vocab_size=VOCAB, num_hidden_layers=4, hidden_size=64, num_attention_heads=4, intermediate_size=96)


def test_qwen_window_counts_only_with_use_sliding_window():
    hf = dict(LLAMA_LIKE, model_type="qwen2", sliding_window=8, use_sliding_window=False)
    assert config_from_hf(hf).sliding_window_size is None


def test_qwen_window_without_layer_types_starts_at_max_window_layers():
    hf = dict(LLAMA_LIKE, model_type="qwen3", sliding_window=8, use_sliding_window=True, max_window_layers=0)
    assert (config_from_hf(hf).sliding_window_size, config_from_hf(hf).sliding_window_period) == (8, 0)
    with pytest.raises(CheckpointError, match="unsupported layer_types pattern"):
        config_from_hf({**hf, "max_window_layers": 2})


def test_window_of_a_model_type_without_windows_is_ignored_as_transformers_does():
    assert config_from_hf(dict(LLAMA_LIKE, model_type="llama", sliding_window=8)).sliding_window_size is None


def test_export_of_a_window_transformers_cannot_express_is_refused():
    config = config_from_hf(dict(LLAMA_LIKE, model_type="llama"))
    config.sliding_window_size = 8
    with pytest.raises(CheckpointError, match="'llama' models have no sliding window"):
        config_to_hf(config)


@pytest.mark.parametrize("model_type", ["mistral", "phi3"])
def test_export_of_a_window_on_every_layer_writes_no_layer_types(model_type: str):
    hf = config_to_hf(config_from_hf(dict(LLAMA_LIKE, model_type=model_type, sliding_window=8)))
    assert hf["sliding_window"] == 8 and "layer_types" not in hf


def test_gpt2_saved_from_the_base_model_loads_with_the_tied_head(tmp_path: Path):
    # OpenAI's GPT-2 files were saved from GPT2Model: `h.0.attn.c_attn.weight`, no `transformer.` prefix, no head
    hf_model = build_hf_model("gpt2")
    hf_model.transformer.save_pretrained(tmp_path)
    assert "wte.weight" in load_file(tmp_path / "model.safetensors")
    with torch.no_grad():
        assert_close(load_checkpoint(tmp_path)(TOKENS), hf_model(TOKENS).logits, atol=1e-5, rtol=0)
