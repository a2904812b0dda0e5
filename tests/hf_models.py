"""Tiny random Hugging Face models of every supported family, with each family's real knobs."""

from __future__ import annotations

from pathlib import Path

import torch

VOCAB = 96

# transformers config kwargs per family: small dims, but the family's GQA ratio, rotary fraction, biases,
# ties, norms, softcaps and windows
FAMILIES: dict[str, dict] = {
    "gpt2": dict(model_type="gpt2", n_layer=2, n_embd=48, n_head=4, n_positions=64, activation_function="gelu_new"),
    "pythia": dict(
        model_type="gpt_neox",
        num_hidden_layers=2,
        hidden_size=64,
        num_attention_heads=4,
        intermediate_size=256,
        max_position_embeddings=64,
        rotary_pct=0.25,
        use_parallel_residual=True,
        hidden_act="gelu",
    ),
    "llama2": dict(
        model_type="llama",
        num_hidden_layers=2,
        hidden_size=64,
        num_attention_heads=4,
        num_key_value_heads=4,
        intermediate_size=96,
        max_position_embeddings=64,
        rms_norm_eps=1e-5,
    ),
    "llama3": dict(
        model_type="llama",
        num_hidden_layers=2,
        hidden_size=64,
        num_attention_heads=8,
        num_key_value_heads=2,
        intermediate_size=96,
        max_position_embeddings=64,
        rope_theta=500000.0,
        tie_word_embeddings=True,
        rope_scaling=dict(
            rope_type="llama3",
            factor=32.0,
            low_freq_factor=1.0,
            high_freq_factor=4.0,
            original_max_position_embeddings=16,
        ),
    ),
    "mistral": dict(
        model_type="mistral",
        num_hidden_layers=2,
        hidden_size=64,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=96,
        max_position_embeddings=64,
        sliding_window=5,
    ),
    "qwen2.5": dict(
        model_type="qwen2",
        num_hidden_layers=2,
        hidden_size=64,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=96,
        max_position_embeddings=64,
        rope_theta=1e6,
        tie_word_embeddings=True,
    ),
    "qwen3": dict(
        model_type="qwen3",
        num_hidden_layers=2,
        hidden_size=64,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=32,
        intermediate_size=96,
        max_position_embeddings=64,
        rope_theta=1e6,
    ),
    "phi-2": dict(
        model_type="phi",
        num_hidden_layers=2,
        hidden_size=80,
        num_attention_heads=4,
        intermediate_size=160,
        max_position_embeddings=64,
        partial_rotary_factor=0.4,
        hidden_act="gelu_new",
    ),
    "phi-3": dict(
        model_type="phi3",
        num_hidden_layers=2,
        hidden_size=64,
        num_attention_heads=4,
        num_key_value_heads=4,
        intermediate_size=96,
        max_position_embeddings=64,
        sliding_window=6,
        pad_token_id=0,
    ),
    "gemma2": dict(
        model_type="gemma2",
        num_hidden_layers=3,
        hidden_size=64,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=32,
        intermediate_size=96,
        max_position_embeddings=64,
        sliding_window=4,
        query_pre_attn_scalar=24,
        attn_logit_softcapping=5.0,
        final_logit_softcapping=3.0,
        attn_implementation="eager",
    ),
    "gemma3": dict(
        model_type="gemma3_text",
        num_hidden_layers=3,
        hidden_size=64,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=32,
        intermediate_size=96,
        max_position_embeddings=64,
        sliding_window=4,
        query_pre_attn_scalar=32,
        layer_types=["sliding_attention", "sliding_attention", "full_attention"],
        rope_parameters=dict(
            sliding_attention=dict(rope_type="default", rope_theta=10000.0),
            full_attention=dict(rope_type="linear", factor=8.0, rope_theta=1e6),
        ),
    ),
    "smollm2": dict(
        model_type="llama",
        num_hidden_layers=2,
        hidden_size=64,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=96,
        max_position_embeddings=64,
        rope_theta=100000.0,
        tie_word_embeddings=True,
    ),
    "tinyllama": dict(
        model_type="llama",
        num_hidden_layers=2,
        hidden_size=64,
        num_attention_heads=8,
        num_key_value_heads=2,
        intermediate_size=96,
        max_position_embeddings=64,
    ),
    "olmo2": dict(
        model_type="olmo2",
        num_hidden_layers=2,
        hidden_size=64,
        num_attention_heads=4,
        num_key_value_heads=4,
        intermediate_size=96,
        max_position_embeddings=64,
        rope_theta=500000.0,
    ),
    "nanochat": dict(
        model_type="nanochat",
        num_hidden_layers=2,
        hidden_size=64,
        num_attention_heads=2,
        num_key_value_heads=2,
        intermediate_size=256,
        max_position_embeddings=64,
        final_logit_softcapping=15.0,
    ),
}


def build_hf_model(family: str, seed: int = 0):
    """A random-weight transformers model of `family`, in eval mode, fp32."""
    from transformers import AutoConfig, AutoModelForCausalLM

    kwargs = dict(FAMILIES[family])
    model_type = kwargs.pop("model_type")
    attn = kwargs.pop("attn_implementation", "sdpa")
    config = AutoConfig.for_model(model_type, vocab_size=VOCAB, **kwargs)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, attn_implementation=attn, dtype=torch.float32)
    with torch.no_grad():  # norms start at 1 (or 0 with a unit offset): randomise them so a mix-up shows
        for name, p in model.named_parameters():
            if "norm" in name or "ln" in name:
                p.add_(torch.randn_like(p) * 0.2)
    return model.eval()


def save_hf_model(family: str, path: Path, seed: int = 0):
    model = build_hf_model(family, seed)
    model.save_pretrained(path)
    return model
