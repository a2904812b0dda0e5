"""A Hugging Face `config.json` as a litllm `Config`, and back, through each family's `HFFamily` record."""

from __future__ import annotations

from typing import Any

from litllm.checkpoint.hf_families import HF_FAMILIES, TEXT_TOWERS, HFFamily, hf_family
from litllm.config import Config
from litllm.errors import CheckpointError

# the GELU names of config.json and the approximation each stands for
ACTIVATIONS = {"gelu": "none", "gelu_new": "tanh", "gelu_pytorch_tanh": "tanh"}
# the activation config.json must name for the MLPs that are not GELU
MLP_ACTIVATIONS = {"relu2": "relu2", "swiglu": "silu"}
# litllm's llama3 `rope_scaling` fields and config.json's names for them
LLAMA3_SCALING = {
    "factor": "factor",
    "low_freq_factor": "low_freq_factor",
    "high_freq_factor": "high_freq_factor",
    "original_max_seq_len": "original_max_position_embeddings",
}
WINDOW_PATTERNS = "supported: every layer sliding, or every p-th layer global and the rest sliding"


def config_from_hf(hf: dict[str, Any]) -> Config:
    """A `Config` for a Hugging Face `config.json`."""
    model_type = hf.get("model_type")
    if model_type in TEXT_TOWERS and "text_config" in hf:  # multimodal wrapper: take the text tower
        model_type = TEXT_TOWERS[model_type].model_type
        hf = {**hf["text_config"], "model_type": model_type}
    family = hf_family(model_type)
    kw: dict[str, Any] = dict(family.knobs, hf_model_type=model_type)
    kw.update({key.ours: hf.get(key.theirs, key.default) for key in family.keys})
    if family.attention_bias is not None:
        bias = bool(hf.get("attention_bias", family.attention_bias))
        kw.update(qkv_bias=bias, proj_bias=bias)
    kw.update(activation_from_hf(hf, family, kw["mlp_class"]))
    for key in family.refused_keys:
        if hf.get(key):
            raise CheckpointError(f"{model_type} checkpoints with {key}=true are not supported")
    if kw.get("position_embedding") != "learned":
        kw.update(hf_rope(hf))
    kw.update(hf_sliding_window(hf, family, kw["n_layer"]))
    return Config(**kw)


def activation_from_hf(hf: dict[str, Any], family: HFFamily, mlp_class: str) -> dict[str, Any]:
    """`gelu_approximate` for a GELU MLP; for the others, a CheckpointError unless config.json names theirs."""
    act = hf.get(family.activation_key) or family.default_activation
    needed = MLP_ACTIVATIONS.get(mlp_class)
    if needed is not None and act != needed:
        raise CheckpointError(f"unsupported activation {act!r} for model_type {family.model_type!r}")
    if needed is not None:
        return {}
    if act not in ACTIVATIONS:
        raise CheckpointError(f"unsupported activation {act!r}; supported: {', '.join(ACTIVATIONS)}")
    return {"gelu_approximate": ACTIVATIONS[act]}


def hf_rope(hf: dict[str, Any]) -> dict[str, Any]:
    """RoPE fields from either the transformers 5 `rope_parameters` or the older flat keys."""
    params = hf.get("rope_parameters") or {}
    local = None
    if "full_attention" in params:
        params, local = params["full_attention"], params.get("sliding_attention")
    base = params.get("rope_theta") or hf.get("rope_theta") or hf.get("rotary_emb_base") or 10000.0
    partial = params.get("partial_rotary_factor") or hf.get("partial_rotary_factor") or hf.get("rotary_pct") or 1.0
    scaling_src = params if params.get("rope_type", "default") != "default" else hf.get("rope_scaling")
    out: dict[str, Any] = dict(rope_base=float(base), rotary_percentage=float(partial))
    if scaling_src:
        kind = scaling_src.get("rope_type") or scaling_src.get("type")
        if kind == "linear":
            out["rope_scaling"] = {"type": "linear", "factor": float(scaling_src["factor"])}
        elif kind == "llama3":
            out["rope_scaling"] = llama3_scaling(scaling_src, LLAMA3_SCALING)
        elif kind not in (None, "default"):
            raise CheckpointError(f"unsupported RoPE scaling {kind!r}; supported: linear, llama3")
    local_base = (local or {}).get("rope_theta") or hf.get("rope_local_base_freq")
    if local_base is not None and float(local_base) != out["rope_base"]:
        out["rope_local_base"] = float(local_base)
    return out


def llama3_scaling(params: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """litllm's llama3 `rope_scaling` from a mapping that holds each of its fields under `names[field]`."""
    out: dict[str, Any] = {"type": "llama3", **{ours: float(params[theirs]) for ours, theirs in names.items()}}
    out["original_max_seq_len"] = int(out["original_max_seq_len"])
    return out


def window_period(sliding: list[bool]) -> int | None:
    """`Config.sliding_window_period` for per-layer sliding flags: 0 if all slide, p if every p-th layer (from 1)
    is global and the rest slide, None for any other pattern."""
    n = len(sliding)
    if all(sliding):
        return 0
    return next((p for p in range(2, n + 1) if sliding == [(i + 1) % p != 0 for i in range(n)]), None)


def hf_sliding_window(hf: dict[str, Any], family: HFFamily, n_layer: int) -> dict[str, Any]:
    """The window fields of a config.json, read as transformers reads them for `family`."""
    window, style = hf.get("sliding_window"), family.window
    if style is None or not window:
        return {}  # transformers ignores a window these model types declare
    if style.switched and not hf.get("use_sliding_window", False):
        return {}
    types = hf.get("layer_types") if style.layer_types != "none" else None
    period = next((hf[k] for k in style.period_keys if hf.get(k)), style.period)
    if types is None and style.switched:
        first = hf.get("max_window_layers", 28)
        types = ["sliding_attention" if i >= first else "full_attention" for i in range(n_layer)]
    if types is not None:
        if len(types) != n_layer:
            raise CheckpointError(f"layer_types has {len(types)} entries for {n_layer} layers: {types}")
        sliding = [t == "sliding_attention" for t in types]
        if not any(sliding):
            return {}
        period = window_period(sliding)
        if period is None:
            raise CheckpointError(f"unsupported layer_types pattern {types}: {WINDOW_PATTERNS}")
    return dict(sliding_window_size=int(window), sliding_window_period=int(period))


def config_to_hf(config: Config) -> dict[str, Any]:
    """A Hugging Face `config.json` dict for `config`."""
    c, mt = config, config.hf_model_type
    if mt not in HF_FAMILIES:
        raise CheckpointError(
            f"config {c.name or '(unnamed)'} has hf_model_type={mt!r}; "
            f"conversion to Hugging Face supports: {', '.join(sorted(HF_FAMILIES))}"
        )
    family = HF_FAMILIES[mt]
    hf: dict[str, Any] = {"architectures": [family.architecture], "model_type": mt, "torch_dtype": "float32"}
    for key in family.keys:
        value = getattr(c, key.ours)
        for name in (key.theirs, *key.also_written_as):
            hf[name] = getattr(c, key.fallback) if value is None and key.fallback else value
    if c.mlp_class in MLP_ACTIVATIONS:
        hf[family.activation_key] = MLP_ACTIVATIONS[c.mlp_class]
    else:
        hf[family.activation_key] = {"none": "gelu", "tanh": family.tanh_gelu}[c.gelu_approximate]
    if family.attention_bias is not None:
        hf["attention_bias"] = c.qkv_bias
    if c.position_embedding != "learned":
        hf.update(rope_to_hf(c))
    hf.update(hf_sliding_window_fields(c, family))
    return hf


def rope_to_hf(c: Config) -> dict[str, Any]:
    """The config.json keys of `c`'s RoPE, in the flat form transformers 4 and 5 both read."""
    hf: dict[str, Any] = {"rope_theta": c.rope_base}
    if c.rotary_percentage != 1.0:
        hf["partial_rotary_factor"] = c.rotary_percentage
        hf["rotary_pct"] = c.rotary_percentage
    s = c.rope_scaling
    if s is not None and s["type"] == "linear":
        hf["rope_scaling"] = {"rope_type": "linear", "factor": s["factor"]}
    elif s is not None:
        hf["rope_scaling"] = {"rope_type": "llama3", **{theirs: s[ours] for ours, theirs in LLAMA3_SCALING.items()}}
    if c.rope_local_base is not None:
        hf["rope_local_base_freq"] = c.rope_local_base
    return hf


def hf_sliding_window_fields(c: Config, family: HFFamily) -> dict[str, Any]:
    """The config.json keys that give `c`'s sliding window in transformers, or a CheckpointError if none can."""
    style = family.window
    layer_types = ["sliding_attention" if c.is_sliding(i) else "full_attention" for i in range(c.n_layer)]
    if c.sliding_window_size is None:
        return {"layer_types": layer_types} if style is not None and style.lists_layers else {}
    if style is not None and style.layer_types == "both":
        out: dict[str, Any] = dict(sliding_window=c.sliding_window_size, layer_types=layer_types)
        if style.switched:
            out.update(use_sliding_window=True, max_window_layers=0)
        return out
    if style is not None and c.sliding_window_period == 0:  # the window is on every layer
        return {"sliding_window": c.sliding_window_size}
    by_types = [f.model_type for f in HF_FAMILIES.values() if f.window and f.window.layer_types == "both"]
    every_layer = [f.model_type for f in HF_FAMILIES.values() if f.window and f.window.layer_types != "both"]
    raise CheckpointError(
        f"config {c.name or '(unnamed)'}: transformers' {family.model_type!r} models have no sliding window like "
        f"sliding_window_size={c.sliding_window_size}, sliding_window_period={c.sliding_window_period}; "
        f"model types with sliding windows: {', '.join(by_types)}; on every layer also {', '.join(every_layer)}"
    )


__all__ = ["config_from_hf", "config_to_hf", "hf_rope", "llama3_scaling", "window_period"]
