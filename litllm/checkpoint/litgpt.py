"""LitGPT checkpoint directories (`model_config.yaml` + `lit_model.pth`): their config and weights as litllm's."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from litllm.checkpoint.hf_config import LLAMA3_SCALING, WINDOW_PATTERNS, llama3_scaling, window_period
from litllm.checkpoint.layout import CONFIG, LITGPT_WEIGHTS
from litllm.checkpoint.own import read_yaml
from litllm.config import Config
from litllm.errors import CheckpointError


def read_litgpt(path: Path) -> tuple[Config, dict[str, torch.Tensor]]:
    """The config and weights (renamed to litllm's) of a LitGPT checkpoint directory."""
    config = config_from_litgpt(read_yaml(path / CONFIG))
    return config, litgpt_to_litllm(read_litgpt_weights(path / LITGPT_WEIGHTS), config)


def read_litgpt_weights(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a `lit_model.pth`, read without unpickling code (`weights_only=True`)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for a bad file
        raise CheckpointError(f"cannot read LitGPT weights {str(path)!r}: {e}") from e
    return state.get("model", state) if isinstance(state, dict) else state


def config_from_litgpt(lit: dict[str, Any]) -> Config:
    """A `Config` for a LitGPT `model_config.yaml`."""
    name = lit.get("name", "")
    if lit.get("n_expert", 0) or lit.get("latent_attention"):
        raise CheckpointError("LitGPT mixture-of-experts and latent-attention models are not supported")
    if lit.get("rope_interleave"):
        raise CheckpointError("LitGPT configs with rope_interleave=true (interleaved RoPE pairs) are not supported")
    mlp_name = lit.get("mlp_class_name", "GptNeoxMLP")
    mlp = {"GptNeoxMLP": "gelu", "LLaMAMLP": "swiglu", "GemmaMLP": "geglu"}.get(mlp_name)
    if mlp is None:
        raise CheckpointError(
            f"unsupported LitGPT mlp_class_name {mlp_name!r}; supported: GptNeoxMLP, LLaMAMLP, GemmaMLP"
        )
    norm_name = lit.get("norm_class_name", "LayerNorm")
    if norm_name not in ("LayerNorm", "RMSNorm"):
        raise CheckpointError(f"unsupported LitGPT norm_class_name {norm_name!r}; supported: LayerNorm, RMSNorm")
    norm_1, norm_2 = lit.get("norm_1", True), lit.get("norm_2", True)
    parallel, shared = lit.get("parallel_residual", True), lit.get("shared_attention_norm", False)
    if norm_1 != norm_2 and not (parallel and shared):  # with a shared norm, norm_2 is never applied
        raise CheckpointError(
            f"LitGPT configs with norm_1={norm_1} and norm_2={norm_2} are not supported: both pre-norms or neither"
        )
    n_layer = lit.get("n_layer", 16)
    bias = lit.get("bias", True)
    rmsnorm = norm_name == "RMSNorm"
    kw: dict[str, Any] = dict(
        name=name,
        block_size=lit.get("block_size", 4096),
        vocab_size=lit.get("padded_vocab_size") or lit.get("vocab_size"),
        n_layer=n_layer,
        n_embd=lit.get("n_embd", 4096),
        n_head=lit.get("n_head", 32),
        n_query_groups=lit.get("n_query_groups"),
        head_size=lit.get("head_size"),
        intermediate_size=lit.get("intermediate_size"),
        qkv_bias=bias or lit.get("attn_bias", False),
        proj_bias=bias,
        mlp_bias=bias,
        norm_class="rmsnorm" if rmsnorm else "layernorm",
        norm_eps=lit.get("norm_eps", 1e-5),
        # LitGPT picks two norm quirks by model name (its `Config.norm_class`); here they are fields
        norm_unit_offset=rmsnorm and "Gemma" in name,
        norm_affine=rmsnorm or "OLMo" not in name,
        mlp_class=mlp,
        gelu_approximate=lit.get("gelu_approximate", "none"),
        parallel_residual=parallel,
        shared_attention_norm=shared,
        pre_attention_norm=norm_1,
        post_attention_norm=lit.get("post_attention_norm", False),
        post_mlp_norm=lit.get("post_mlp_norm", False),
        scale_embeddings=lit.get("scale_embeddings", False),
        lm_head_bias=lit.get("lm_head_bias", False),
        attn_logit_softcap=lit.get("attention_logit_softcapping"),
        final_logit_softcap=lit.get("final_logit_softcapping"),
        attention_scores_scalar=lit.get("attention_scores_scalar"),
        **litgpt_rope(lit),
        **litgpt_sliding_window(lit, n_layer),
    )
    if lit.get("norm_qk"):
        kw["qk_norm"] = "all_heads" if lit.get("norm_qk_type") == "olmo2" else "head"
    config = Config(**kw)
    check_litgpt_local_rope(lit, config)
    return config


def litgpt_rope(lit: dict[str, Any]) -> dict[str, Any]:
    """RoPE fields of a LitGPT config: `rope_adjustments` (llama3 or linear) or `rope_condense_ratio` (linear)."""
    out: dict[str, Any] = dict(
        rotary_percentage=lit.get("rotary_percentage", 0.25),
        rope_base=float(lit.get("rope_base", 10000)),
        rope_local_base=None if lit.get("rope_local_base_freq") is None else float(lit["rope_local_base_freq"]),
    )
    a, condense = lit.get("rope_adjustments"), lit.get("rope_condense_ratio", 1)
    if condense != 1 and out["rope_local_base"] is not None:  # LitGPT condenses the local RoPE's positions too
        raise CheckpointError(
            f"LitGPT rope_condense_ratio={condense} together with rope_local_base_freq is not supported"
        )
    if a and condense != 1:
        raise CheckpointError(
            f"LitGPT rope_adjustments {a} together with rope_condense_ratio={condense} is not supported"
        )
    if a and ("beta_fast" in a or "beta_slow" in a):
        raise CheckpointError(
            f"unsupported LitGPT rope_adjustments {a} (YaRN); supported: llama3, linear (factor only)"
        )
    if a and ("low_freq_factor" in a or "high_freq_factor" in a):
        out["rope_scaling"] = llama3_scaling(a, {name: name for name in LLAMA3_SCALING})  # named as litllm names them
    elif a and "factor" in a:
        out["rope_scaling"] = {"type": "linear", "factor": float(a["factor"])}
    elif condense != 1:  # positions divided by the ratio: the same as dividing the frequencies
        out["rope_scaling"] = {"type": "linear", "factor": float(condense)}
    return out


def litgpt_sliding_window(lit: dict[str, Any], n_layer: int) -> dict[str, Any]:
    """Window fields of a LitGPT config; its `sliding_window_indices` must be every p-th layer global."""
    if not lit.get("sliding_window_size"):
        return {}
    indices = lit.get("sliding_window_indices")
    flags = [True] * n_layer if indices is None else [bool(x) for x in indices[:n_layer]]
    if not any(flags):
        return {}
    period = window_period(flags)
    if period is None:
        raise CheckpointError(f"unsupported LitGPT sliding_window_indices {indices}: {WINDOW_PATTERNS}")
    return dict(sliding_window_size=lit["sliding_window_size"], sliding_window_period=period)


def check_litgpt_local_rope(lit: dict[str, Any], config: Config) -> None:
    """LitGPT picks the local RoPE base per layer (`rope_indices`); litllm uses it on exactly the sliding layers."""
    if config.rope_local_base is None:
        return
    indices = lit.get("rope_indices") or [1] * config.n_layer
    local = [bool(x) for x in indices[: config.n_layer]]
    sliding = [config.is_sliding(i) for i in range(config.n_layer)]
    if local != sliding:
        raise CheckpointError(
            f"unsupported LitGPT rope_indices {indices}: the local RoPE base must be used on exactly the "
            f"sliding-window layers {[int(x) for x in sliding]}"
        )


LITGPT_NAMES = [
    (r"transformer\.wte\.weight", "wte.weight"),
    (r"transformer\.ln_f\.(weight|bias)", r"ln_f.\1"),
    (r"lm_head\.(weight|bias)", r"lm_head.\1"),
    (r"transformer\.h\.(\d+)\.norm_([12])\.(weight|bias)", r"h.\1.norm_\2.\3"),
    (r"transformer\.h\.(\d+)\.post_attention_norm\.(weight|bias)", r"h.\1.post_attn_norm.\2"),
    (r"transformer\.h\.(\d+)\.post_mlp_norm\.(weight|bias)", r"h.\1.post_mlp_norm.\2"),
    (r"transformer\.h\.(\d+)\.attn\.(?:qkv|attn)\.(weight|bias)", r"h.\1.attn.qkv.\2"),
    (r"transformer\.h\.(\d+)\.attn\.proj\.(weight|bias)", r"h.\1.attn.proj.\2"),
    (r"transformer\.h\.(\d+)\.attn\.norm_q\.(weight|bias)", r"h.\1.attn.q_norm.\2"),
    (r"transformer\.h\.(\d+)\.attn\.norm_k\.(weight|bias)", r"h.\1.attn.k_norm.\2"),
    (r"transformer\.h\.(\d+)\.mlp\.(fc|proj)\.(weight|bias)", r"h.\1.mlp.\2.\3"),
]


def litgpt_to_litllm(lit_state: dict[str, torch.Tensor], config: Config) -> dict[str, torch.Tensor]:
    """Rename LitGPT tensors (gated MLPs join fc_1 and fc_2; the old interleaved `attn.attn` is de-interleaved)."""
    out: dict[str, torch.Tensor] = {}
    for key, t in lit_state.items():
        if key.endswith(("mlp.fc_1.weight", "mlp.fc_1.bias")):
            up = key.replace("fc_1", "fc_2")
            if up not in lit_state:
                raise CheckpointError(f"LitGPT weights have {key!r} but not {up!r}")
            i, p = re.search(r"h\.(\d+)\.mlp\.fc_1\.(\w+)", key).groups()
            out[f"h.{i}.mlp.fc.{p}"] = torch.cat((t, lit_state[up]), dim=0)
            continue
        if ".mlp.fc_2." in key:
            continue
        for pattern, repl in LITGPT_NAMES:
            if re.fullmatch(pattern, key):
                name = re.sub(pattern, repl, key)
                if ".attn.attn." in key:
                    t = deinterleave_litgpt_qkv(t, config)
                out[name] = t
                break
        else:
            raise CheckpointError(f"LitGPT tensor {key!r} has no litllm counterpart")
    return out


def deinterleave_litgpt_qkv(t: torch.Tensor, config: Config) -> torch.Tensor:
    """Old LitGPT stored qkv grouped per key/value head: [q.. k v] for each group."""
    c = config
    q_per_kv = c.n_head // c.n_query_groups
    grouped = t.view(c.n_query_groups, q_per_kv + 2, c.head_size, *t.shape[1:])
    q = grouped[:, :q_per_kv].reshape(-1, *t.shape[1:])
    k = grouped[:, q_per_kv].reshape(-1, *t.shape[1:])
    v = grouped[:, q_per_kv + 1].reshape(-1, *t.shape[1:])
    return torch.cat((q, k, v), dim=0)


__all__ = ["config_from_litgpt", "deinterleave_litgpt_qkv", "litgpt_to_litllm", "read_litgpt"]
