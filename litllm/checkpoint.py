"""The checkpoint directory: save and load without pickle, Hugging Face and LitGPT weights in and out, and
downloads from the Hugging Face Hub.

A litllm checkpoint directory holds `model.safetensors`, `model_config.yaml` and the tokenizer's files
(`tokenizer.json` or `tokenizer.model`, `tokenizer_config.json`, `generation_config.json`), plus
`prompt_style.yaml` when the chat format is known.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from litllm.config import Config
from litllm.registry import checkpoint_kind, litllm_home

WEIGHTS = "model.safetensors"
CONFIG = "model_config.yaml"
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer.model",
    "tokenizer_config.json",
    "generation_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "prompt_style.yaml",
)


# weight files that are Python pickles (lit_model.pth is read with torch.load(weights_only=True) instead)
PICKLED_WEIGHTS = ("*.bin", "*.pt", "*.ckpt")


class CheckpointError(ValueError):
    """A checkpoint that cannot be read: missing, corrupt, or not matching its config."""


# ---------------------------------------------------------------------------------------------------------------
# atomic writes


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path` in one rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}.tmp"
    try:
        yield tmp
        os.chmod(tmp, new_file_mode())  # safetensors writes its files private (0600)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def new_file_mode() -> int:
    """The mode `open()` gives a new file: 0o666 less the process umask."""
    umask = os.umask(0o077)  # the umask can only be read by setting it; meanwhile new files are private
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_path(Path(path)) as tmp:
        tmp.write_text(text)


def atomic_copy(src: Path, dst: Path) -> None:
    with atomic_path(Path(dst)) as tmp:
        shutil.copyfile(src, tmp)


def save_safetensors(state: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    from safetensors.torch import save_file

    tensors = {k: v.detach().contiguous() for k, v in state.items()}
    with atomic_path(Path(path)) as tmp:
        save_file(tensors, str(tmp), metadata=metadata or {"format": "pt"})


def load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"cannot read weights file {str(path)!r}: {e}") from e


# ---------------------------------------------------------------------------------------------------------------
# litllm checkpoint directories


def state_for_saving(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's weights, without the tied head (it is the embedding) and without non-persistent buffers."""
    state = model.state_dict()
    if model.config.tie_embeddings:
        state.pop("lm_head.weight", None)
    return state


def save_checkpoint(model: torch.nn.Module, out_dir: str | Path, tokenizer_dir: str | Path | None = None) -> Path:
    """Write `model` (a `GPT`) as a litllm checkpoint directory, copying tokenizer files from `tokenizer_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if tokenizer_dir is not None and Path(tokenizer_dir).resolve() != out.resolve():
        copy_tokenizer_files(Path(tokenizer_dir), out)
    save_safetensors(state_for_saving(model), out / WEIGHTS)
    model.config.save(out / CONFIG)  # last: a directory with a config and weights is a finished one
    return out


def copy_tokenizer_files(src: Path, dst: Path) -> None:
    for name in TOKENIZER_FILES:
        if (src / name).is_file():
            atomic_copy(src / name, dst / name)


def load_state_into(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Copy `state` into `model`, naming any missing, unexpected or mis-shaped tensor."""
    expected = model.state_dict()
    if model.config.tie_embeddings:
        expected.pop("lm_head.weight", None)
        state = {k: v for k, v in state.items() if k != "lm_head.weight"}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing tensors {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
        if unexpected:
            parts.append(f"unexpected tensors {', '.join(unexpected[:5])}{' ...' if len(unexpected) > 5 else ''}")
        raise CheckpointError(f"{source} does not match its config: {'; '.join(parts)}")
    for name, tensor in state.items():
        if tensor.shape != expected[name].shape:
            raise CheckpointError(
                f"{source}: tensor {name!r} has shape {tuple(tensor.shape)}, "
                f"the config expects {tuple(expected[name].shape)}"
            )
    model.load_state_dict(state, strict=False, assign=False)


def detect_format(path: Path) -> str:
    """'litllm', 'hf' or 'litgpt' for a checkpoint directory; a CheckpointError says what is missing."""
    if not path.exists():
        raise FileNotFoundError(f"checkpoint directory {str(path)!r} does not exist")
    if not path.is_dir():
        raise CheckpointError(f"{str(path)!r} is not a directory")
    kind = checkpoint_kind(path)
    if kind is not None:
        return kind
    pickled = sorted(p.name for pattern in PICKLED_WEIGHTS for p in path.glob(pattern))
    if pickled:
        raise CheckpointError(
            f"{str(path)!r} holds only pickled PyTorch weights ({', '.join(pickled[:3])}), which litllm refuses to "
            "load because unpickling can run arbitrary code; convert them to safetensors first"
        )
    if (path / CONFIG).is_file():
        raise CheckpointError(f"{str(path)!r} has {CONFIG} but no weights file ({WEIGHTS} or lit_model.pth)")
    raise CheckpointError(
        f"{str(path)!r} is not a checkpoint: expected {CONFIG} + {WEIGHTS} (litllm), "
        "config.json + *.safetensors (Hugging Face) or model_config.yaml + lit_model.pth (LitGPT)"
    )


def checkpoint_config(path: str | Path) -> Config:
    """The Config of a litllm, Hugging Face or LitGPT checkpoint directory, without reading its weights."""
    path = Path(path)
    fmt = detect_format(path)
    if fmt == "litllm":
        return Config.from_file(path / CONFIG)
    if fmt == "hf":
        return config_from_hf(read_hf_config(path))
    return config_from_litgpt(read_yaml(path / CONFIG))


def load_checkpoint(path: str | Path, device: torch.device | str | None = None, dtype: torch.dtype | None = None):
    """Build the `GPT` stored in a litllm, Hugging Face or LitGPT checkpoint directory."""
    from litllm.model import GPT

    path = Path(path)
    fmt = detect_format(path)
    if fmt == "litllm":
        config = Config.from_dict(read_yaml(path / CONFIG), source=str(path / CONFIG))
        state = load_safetensors(path / WEIGHTS)
    elif fmt == "hf":
        hf_config = read_hf_config(path)
        config = config_from_hf(hf_config)
        state = read_hf_weights(path)
        if hf_config.get("model_type") == "gemma3":
            state = gemma3_text_tower(state)
        state = hf_to_litllm(with_base_model_prefix(state, config.hf_model_type), config)
    else:
        config = config_from_litgpt(read_yaml(path / CONFIG))
        state = litgpt_to_litllm(read_litgpt_weights(path / "lit_model.pth"), config)
    if not state:
        raise CheckpointError(f"{str(path)!r}: the weights file holds no tensors")
    model = GPT.empty(config, device or "cpu")
    target = dtype or next(iter(state.values())).dtype
    if not target.is_floating_point:
        target = torch.float32
    model.to(target)
    load_state_into(model, {k: v.to(target) for k, v in state.items()}, f"{str(path)!r}")
    return model.eval()


def read_yaml(path: Path) -> dict[str, Any]:
    """A YAML file that must hold a mapping (a `model_config.yaml`)."""
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise CheckpointError(f"{str(path)!r} is not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise CheckpointError(f"{str(path)!r} does not hold a mapping of config fields")
    return data


# ---------------------------------------------------------------------------------------------------------------
# Hugging Face format: config


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{str(path)!r} is not valid JSON: {e}") from e


def read_hf_config(path: Path) -> dict[str, Any]:
    hf = read_json(path / "config.json")
    if not isinstance(hf, dict):
        raise CheckpointError(f"{str(path / 'config.json')!r} does not hold a JSON object")
    return hf


def read_hf_weights(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of a Hugging Face directory's safetensors files (sharded or not)."""
    index = path / "model.safetensors.index.json"
    if index.is_file():
        weight_map = read_json(index).get("weight_map")
        if not isinstance(weight_map, dict):
            raise CheckpointError(f"{str(index)!r} has no weight_map")
        files = sorted(set(weight_map.values()))
        missing = [f for f in files if not (path / f).is_file()]
        if missing:
            raise CheckpointError(f"{str(path)!r}: shards named in {index.name} are missing: {', '.join(missing)}")
        paths = [path / f for f in files]
    else:
        paths = sorted(path.glob("*.safetensors"))
    state: dict[str, torch.Tensor] = {}
    for p in paths:
        state.update(load_safetensors(p))
    return state


ACTIVATIONS = {"gelu": "none", "gelu_new": "tanh", "gelu_pytorch_tanh": "tanh"}

# fixed architecture knobs of each supported transformers `model_type`
HF_FAMILY_KNOBS: dict[str, dict[str, Any]] = {
    "llama": dict(norm_class="rmsnorm", mlp_class="swiglu"),
    "mistral": dict(norm_class="rmsnorm", mlp_class="swiglu"),
    "qwen2": dict(norm_class="rmsnorm", mlp_class="swiglu", qkv_bias=True, proj_bias=False),
    "qwen3": dict(norm_class="rmsnorm", mlp_class="swiglu", qk_norm="head"),
    "phi3": dict(norm_class="rmsnorm", mlp_class="swiglu"),
    "olmo2": dict(
        norm_class="rmsnorm",
        mlp_class="swiglu",
        qk_norm="all_heads",
        pre_attention_norm=False,
        post_attention_norm=True,
        post_mlp_norm=True,
    ),
    "gemma2": dict(
        norm_class="rmsnorm",
        norm_unit_offset=True,
        mlp_class="geglu",
        post_attention_norm=True,
        post_mlp_norm=True,
        scale_embeddings=True,
    ),
    "gemma3_text": dict(
        norm_class="rmsnorm",
        norm_unit_offset=True,
        mlp_class="geglu",
        post_attention_norm=True,
        post_mlp_norm=True,
        scale_embeddings=True,
        qk_norm="head",
    ),
    "gpt2": dict(
        position_embedding="learned",
        norm_class="layernorm",
        mlp_class="gelu",
        qkv_bias=True,
        proj_bias=True,
        mlp_bias=True,
    ),
    "gpt_neox": dict(norm_class="layernorm", mlp_class="gelu", parallel_residual=True, mlp_bias=True),
    "phi": dict(
        norm_class="layernorm",
        mlp_class="gelu",
        parallel_residual=True,
        shared_attention_norm=True,
        qkv_bias=True,
        proj_bias=True,
        mlp_bias=True,
        lm_head_bias=True,
    ),
    "nanochat": dict(
        norm_class="rmsnorm",
        norm_affine=False,
        mlp_class="relu2",
        qk_norm="head",
        qk_norm_after_rope=True,
        rope_negate_sin=True,
        embedding_norm=True,
    ),
}
HF_ARCHITECTURES = {
    "llama": "LlamaForCausalLM",
    "mistral": "MistralForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
    "qwen3": "Qwen3ForCausalLM",
    "phi3": "Phi3ForCausalLM",
    "olmo2": "Olmo2ForCausalLM",
    "gemma2": "Gemma2ForCausalLM",
    "gemma3_text": "Gemma3ForCausalLM",
    "gpt2": "GPT2LMHeadModel",
    "gpt_neox": "GPTNeoXForCausalLM",
    "phi": "PhiForCausalLM",
    "nanochat": "NanoChatForCausalLM",
}


def config_from_hf(hf: dict[str, Any]) -> Config:
    """A `Config` for a Hugging Face `config.json`."""
    model_type = hf.get("model_type")
    if model_type == "gemma3" and "text_config" in hf:  # multimodal wrapper: take the text tower
        hf = {**hf["text_config"], "model_type": "gemma3_text"}
        model_type = "gemma3_text"
    if model_type not in HF_FAMILY_KNOBS:
        raise CheckpointError(
            f"unsupported Hugging Face model_type {model_type!r}; supported: {', '.join(sorted(HF_FAMILY_KNOBS))}"
        )
    kw: dict[str, Any] = dict(HF_FAMILY_KNOBS[model_type], hf_model_type=model_type)
    get = hf.get
    if model_type == "gpt2":
        kw.update(
            block_size=get("n_positions", 1024),
            vocab_size=get("vocab_size"),
            n_layer=get("n_layer"),
            n_embd=get("n_embd"),
            n_head=get("n_head"),
            intermediate_size=get("n_inner") or 4 * get("n_embd"),
            norm_eps=get("layer_norm_epsilon", 1e-5),
            tie_embeddings=get("tie_word_embeddings", True),
        )
        act = get("activation_function", "gelu_new")
    else:
        kw.update(
            block_size=get("max_position_embeddings", 2048),
            vocab_size=get("vocab_size"),
            n_layer=get("num_hidden_layers"),
            n_embd=get("hidden_size"),
            n_head=get("num_attention_heads"),
            n_query_groups=get("num_key_value_heads") or get("num_attention_heads"),
            intermediate_size=get("intermediate_size"),
            norm_eps=get("rms_norm_eps", get("layer_norm_eps", 1e-5)),
            tie_embeddings=get("tie_word_embeddings", False),
        )
        if get("head_dim"):
            kw["head_size"] = get("head_dim")
        act = get("hidden_act") or get("hidden_activation") or ("relu2" if model_type == "nanochat" else "silu")
        needed = {"relu2": "relu2", "swiglu": "silu"}.get(kw["mlp_class"])
        if needed is not None and act != needed:
            raise CheckpointError(f"unsupported activation {act!r} for model_type {model_type!r}")
        if model_type not in ("gpt_neox", "phi", "qwen2"):
            bias = bool(get("attention_bias", False))
            kw.update(qkv_bias=bias, proj_bias=bias)
        if model_type == "gpt_neox":
            bias = bool(get("attention_bias", True))
            kw.update(qkv_bias=bias, proj_bias=bias, parallel_residual=get("use_parallel_residual", True))
        if get("mlp_bias"):
            kw["mlp_bias"] = True
    if kw["mlp_class"] in ("gelu", "geglu"):
        if act not in ACTIVATIONS:
            raise CheckpointError(f"unsupported activation {act!r}; supported: {', '.join(ACTIVATIONS)}")
        kw["gelu_approximate"] = ACTIVATIONS[act]
    if model_type == "phi" and get("qk_layernorm"):
        raise CheckpointError("phi checkpoints with qk_layernorm=true are not supported")
    if model_type in ("gemma2", "gemma3_text"):
        kw.update(
            attn_logit_softcap=get("attn_logit_softcapping"),
            final_logit_softcap=get("final_logit_softcapping"),
            attention_scores_scalar=get("query_pre_attn_scalar"),
        )
    if model_type == "nanochat":
        kw["final_logit_softcap"] = get("final_logit_softcapping")
    if kw.get("position_embedding") != "learned":
        kw.update(hf_rope(hf))
    kw.update(hf_sliding_window(hf, model_type, kw["n_layer"]))
    return Config(**kw)


# the prefix a causal-LM class puts before its base model's tensors (`GPT2LMHeadModel.transformer`, ...)
HF_BASE_MODEL_PREFIX = {"gpt2": "transformer.", "gpt_neox": "gpt_neox."}
HF_HEADS = ("lm_head.", "embed_out.")


def with_base_model_prefix(state: dict[str, torch.Tensor], model_type: str) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint saved from the base model (OpenAI's GPT-2 files: `h.0.attn.c_attn.weight`, no head)
    named as the causal-LM class names them; transformers loads both."""
    prefix = HF_BASE_MODEL_PREFIX.get(model_type, "model.")
    if any(k.startswith(prefix) for k in state):
        return state
    return {k if k.startswith(HF_HEADS) else prefix + k: v for k, v in state.items()}


def gemma3_text_tower(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The language model's tensors of a multimodal Gemma 3 checkpoint, named as in the text-only model."""
    out = {}
    for key, t in state.items():
        for prefix in ("model.language_model.", "language_model.model."):
            if key.startswith(prefix):
                out["model." + key[len(prefix) :]] = t
        if key in ("lm_head.weight", "language_model.lm_head.weight"):
            out["lm_head.weight"] = t
    return out


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
            out["rope_scaling"] = {
                "type": "llama3",
                "factor": float(scaling_src["factor"]),
                "low_freq_factor": float(scaling_src["low_freq_factor"]),
                "high_freq_factor": float(scaling_src["high_freq_factor"]),
                "original_max_seq_len": int(scaling_src["original_max_position_embeddings"]),
            }
        elif kind not in (None, "default"):
            raise CheckpointError(f"unsupported RoPE scaling {kind!r}; supported: linear, llama3")
    local_base = (local or {}).get("rope_theta") or hf.get("rope_local_base_freq")
    if local_base is not None and float(local_base) != out["rope_base"]:
        out["rope_local_base"] = float(local_base)
    return out


# How transformers' model types take a sliding window from config.json:
# `layer_types` says which layers slide ...
WINDOW_BY_LAYER_TYPES = ("qwen2", "qwen3", "gemma2", "gemma3_text")
# ... and for these `use_sliding_window` must be true; without `layer_types`, layers from `max_window_layers` on slide
WINDOW_SWITCHED_ON = ("qwen2", "qwen3")
# `sliding_window` applies to every layer (a "mistral" config with `layer_types` is read as "ministral")
WINDOW_ON_ALL_LAYERS = ("mistral", "phi3")
WINDOW_PATTERNS = "supported: every layer sliding, or every p-th layer global and the rest sliding"


def window_period(sliding: list[bool]) -> int | None:
    """`Config.sliding_window_period` for per-layer sliding flags: 0 if all slide, p if every p-th layer (from 1)
    is global and the rest slide, None for any other pattern."""
    n = len(sliding)
    if all(sliding):
        return 0
    return next((p for p in range(2, n + 1) if sliding == [(i + 1) % p != 0 for i in range(n)]), None)


def hf_sliding_window(hf: dict[str, Any], model_type: str, n_layer: int) -> dict[str, Any]:
    window = hf.get("sliding_window")
    if model_type in WINDOW_SWITCHED_ON and not hf.get("use_sliding_window", False):
        return {}
    if not window or model_type not in WINDOW_BY_LAYER_TYPES + WINDOW_ON_ALL_LAYERS:
        return {}  # transformers ignores a window these model types declare
    types = hf.get("layer_types") if model_type in (*WINDOW_BY_LAYER_TYPES, "mistral") else None
    if types is None:
        if model_type == "gemma2":
            period = 2
        elif model_type == "gemma3_text":
            period = hf.get("sliding_window_pattern") or hf.get("_sliding_window_pattern") or 6
        elif model_type in WINDOW_SWITCHED_ON:
            first = hf.get("max_window_layers", 28)
            types = ["sliding_attention" if i >= first else "full_attention" for i in range(n_layer)]
        else:
            period = 0
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
    mt = config.hf_model_type
    if mt not in HF_ARCHITECTURES:
        raise CheckpointError(
            f"config {config.name or '(unnamed)'} has hf_model_type={mt!r}; "
            f"conversion to Hugging Face supports: {', '.join(sorted(HF_ARCHITECTURES))}"
        )
    c = config
    act = {"none": "gelu", "tanh": "gelu_new" if mt in ("gpt2", "phi") else "gelu_pytorch_tanh"}[c.gelu_approximate]
    hf: dict[str, Any] = {
        "architectures": [HF_ARCHITECTURES[mt]],
        "model_type": mt,
        "vocab_size": c.vocab_size,
        "tie_word_embeddings": c.tie_embeddings,
        "torch_dtype": "float32",
    }
    if mt == "gpt2":
        hf.update(
            n_positions=c.block_size,
            n_ctx=c.block_size,
            n_embd=c.n_embd,
            n_layer=c.n_layer,
            n_head=c.n_head,
            n_inner=c.intermediate_size,
            layer_norm_epsilon=c.norm_eps,
            activation_function=act,
        )
        return hf
    hf.update(
        max_position_embeddings=c.block_size,
        hidden_size=c.n_embd,
        num_hidden_layers=c.n_layer,
        num_attention_heads=c.n_head,
        num_key_value_heads=c.n_query_groups,
        head_dim=c.head_size,
        intermediate_size=c.intermediate_size,
        rope_theta=c.rope_base,
    )
    if c.norm_class == "rmsnorm":
        hf["rms_norm_eps"] = c.norm_eps
    else:
        hf["layer_norm_eps"] = c.norm_eps
    if c.mlp_class in ("gelu", "geglu"):
        hf["hidden_activation" if mt.startswith("gemma") else "hidden_act"] = act
    elif c.mlp_class == "swiglu":
        hf["hidden_act"] = "silu"
    else:
        hf["hidden_act"] = "relu2"
    if c.rotary_percentage != 1.0:
        hf["partial_rotary_factor"] = c.rotary_percentage
        hf["rotary_pct"] = c.rotary_percentage
    if c.rope_scaling is not None:
        s = c.rope_scaling
        hf["rope_scaling"] = (
            {"rope_type": "linear", "factor": s["factor"]}
            if s["type"] == "linear"
            else {
                "rope_type": "llama3",
                "factor": s["factor"],
                "low_freq_factor": s["low_freq_factor"],
                "high_freq_factor": s["high_freq_factor"],
                "original_max_position_embeddings": s["original_max_seq_len"],
            }
        )
    if c.rope_local_base is not None:
        hf["rope_local_base_freq"] = c.rope_local_base
    if mt in ("llama", "mistral", "qwen3", "phi3", "olmo2", "gemma2", "gemma3_text", "nanochat"):
        hf["attention_bias"] = c.qkv_bias
    if mt in ("llama", "phi3") and c.mlp_bias:
        hf["mlp_bias"] = True
    if mt == "gpt_neox":
        hf.update(use_parallel_residual=c.parallel_residual, attention_bias=c.qkv_bias)
    if mt in ("gemma2", "gemma3_text"):
        hf.update(
            attn_logit_softcapping=c.attn_logit_softcap,
            final_logit_softcapping=c.final_logit_softcap,
            query_pre_attn_scalar=c.attention_scores_scalar or c.head_size,
        )
    if mt == "nanochat":
        hf["final_logit_softcapping"] = c.final_logit_softcap
    hf.update(hf_sliding_window_fields(c))
    return hf


def hf_sliding_window_fields(c: Config) -> dict[str, Any]:
    """The config.json keys that give `c`'s sliding window in transformers, or a CheckpointError if none can."""
    mt = c.hf_model_type
    layer_types = ["sliding_attention" if c.is_sliding(i) else "full_attention" for i in range(c.n_layer)]
    if c.sliding_window_size is None:
        return {"layer_types": layer_types} if mt in ("gemma2", "gemma3_text") else {}
    if mt in WINDOW_BY_LAYER_TYPES:
        out: dict[str, Any] = dict(sliding_window=c.sliding_window_size, layer_types=layer_types)
        if mt in WINDOW_SWITCHED_ON:
            out.update(use_sliding_window=True, max_window_layers=0)
        return out
    if mt in WINDOW_ON_ALL_LAYERS and c.sliding_window_period == 0:
        return {"sliding_window": c.sliding_window_size}
    supported = f"{', '.join(WINDOW_BY_LAYER_TYPES)}; on every layer also {', '.join(WINDOW_ON_ALL_LAYERS)}"
    raise CheckpointError(
        f"config {c.name or '(unnamed)'}: transformers' {mt!r} models have no sliding window like "
        f"sliding_window_size={c.sliding_window_size}, sliding_window_period={c.sliding_window_period}; "
        f"model types with sliding windows: {supported}"
    )


# ---------------------------------------------------------------------------------------------------------------
# Hugging Face format: weights
#
# Each rule maps one litllm tensor to the Hugging Face tensor(s) it is made of. `{i}` stands for the layer index.
# A rule whose litllm tensor the model does not have (a bias, a QK-norm) is skipped.


@dataclass(frozen=True)
class Rule:
    ours: str
    theirs: tuple[str, ...]
    kind: str = "copy"  # copy | cat (concatenate rows) | conv1d (stored transposed) | neox_qkv (per-head q,k,v)


def llama_rules(
    prefix: str = "model.",
    norm_2: str = "post_attention_layernorm",
    post_attn: str | None = None,
    post_mlp: str | None = None,
    fused: bool = False,
    mlp: tuple[str, str, str] = ("gate_proj", "up_proj", "down_proj"),
) -> list[Rule]:
    L, A = f"{prefix}layers.{{i}}.", f"{prefix}layers.{{i}}.self_attn."
    rules = [
        Rule("wte.weight", (f"{prefix}embed_tokens.weight",)),
        Rule("ln_f.weight", (f"{prefix}norm.weight",)),
        Rule("lm_head.weight", ("lm_head.weight",)),
        Rule("h.{i}.norm_1.weight", (L + "input_layernorm.weight",)),
        Rule("h.{i}.norm_2.weight", (L + norm_2 + ".weight",)),
        Rule("h.{i}.attn.q_norm.weight", (A + "q_norm.weight",)),
        Rule("h.{i}.attn.k_norm.weight", (A + "k_norm.weight",)),
    ]
    if post_attn:
        rules.append(Rule("h.{i}.post_attn_norm.weight", (L + post_attn + ".weight",)))
    if post_mlp:
        rules.append(Rule("h.{i}.post_mlp_norm.weight", (L + post_mlp + ".weight",)))
    for p in ("weight", "bias"):
        if fused:
            rules.append(Rule(f"h.{{i}}.attn.qkv.{p}", (A + f"qkv_proj.{p}",)))
        else:
            rules.append(Rule(f"h.{{i}}.attn.qkv.{p}", tuple(A + f"{x}_proj.{p}" for x in "qkv"), "cat"))
        rules.append(Rule(f"h.{{i}}.attn.proj.{p}", (A + f"o_proj.{p}",)))
        up = (
            (L + f"mlp.{mlp[0]}.{p}",)
            if fused or mlp[1] is None
            else (L + f"mlp.{mlp[0]}.{p}", L + f"mlp.{mlp[1]}.{p}")
        )
        rules.append(Rule(f"h.{{i}}.mlp.fc.{p}", up, "cat" if len(up) > 1 else "copy"))
        rules.append(Rule(f"h.{{i}}.mlp.proj.{p}", (L + f"mlp.{mlp[2]}.{p}",)))
    return rules


def gpt2_rules() -> list[Rule]:
    L = "transformer.h.{i}."
    rules = [
        Rule("wte.weight", ("transformer.wte.weight",)),
        Rule("wpe.weight", ("transformer.wpe.weight",)),
        Rule("lm_head.weight", ("lm_head.weight",)),
    ]
    for p in ("weight", "bias"):
        conv = "conv1d" if p == "weight" else "copy"
        rules += [
            Rule(f"ln_f.{p}", (f"transformer.ln_f.{p}",)),
            Rule(f"h.{{i}}.norm_1.{p}", (L + f"ln_1.{p}",)),
            Rule(f"h.{{i}}.norm_2.{p}", (L + f"ln_2.{p}",)),
            Rule(f"h.{{i}}.attn.qkv.{p}", (L + f"attn.c_attn.{p}",), conv),
            Rule(f"h.{{i}}.attn.proj.{p}", (L + f"attn.c_proj.{p}",), conv),
            Rule(f"h.{{i}}.mlp.fc.{p}", (L + f"mlp.c_fc.{p}",), conv),
            Rule(f"h.{{i}}.mlp.proj.{p}", (L + f"mlp.c_proj.{p}",), conv),
        ]
    return rules


def neox_rules() -> list[Rule]:
    L = "gpt_neox.layers.{i}."
    rules = [Rule("wte.weight", ("gpt_neox.embed_in.weight",)), Rule("lm_head.weight", ("embed_out.weight",))]
    for p in ("weight", "bias"):
        rules += [
            Rule(f"ln_f.{p}", (f"gpt_neox.final_layer_norm.{p}",)),
            Rule(f"h.{{i}}.norm_1.{p}", (L + f"input_layernorm.{p}",)),
            Rule(f"h.{{i}}.norm_2.{p}", (L + f"post_attention_layernorm.{p}",)),
            Rule(f"h.{{i}}.attn.qkv.{p}", (L + f"attention.query_key_value.{p}",), "neox_qkv"),
            Rule(f"h.{{i}}.attn.proj.{p}", (L + f"attention.dense.{p}",)),
            Rule(f"h.{{i}}.mlp.fc.{p}", (L + f"mlp.dense_h_to_4h.{p}",)),
            Rule(f"h.{{i}}.mlp.proj.{p}", (L + f"mlp.dense_4h_to_h.{p}",)),
        ]
    return rules


def phi_rules() -> list[Rule]:
    L, A = "model.layers.{i}.", "model.layers.{i}.self_attn."
    rules = []
    for p in ("weight", "bias"):
        rules += [
            Rule(f"ln_f.{p}", (f"model.final_layernorm.{p}",)),
            Rule(f"lm_head.{p}", (f"lm_head.{p}",)),
            Rule(f"h.{{i}}.norm_1.{p}", (L + f"input_layernorm.{p}",)),
            Rule(f"h.{{i}}.attn.qkv.{p}", tuple(A + f"{x}_proj.{p}" for x in "qkv"), "cat"),
            Rule(f"h.{{i}}.attn.proj.{p}", (A + f"dense.{p}",)),
            Rule(f"h.{{i}}.mlp.fc.{p}", (L + f"mlp.fc1.{p}",)),
            Rule(f"h.{{i}}.mlp.proj.{p}", (L + f"mlp.fc2.{p}",)),
        ]
    return [Rule("wte.weight", ("model.embed_tokens.weight",)), *rules]


def hf_rules(model_type: str) -> list[Rule]:
    if model_type in ("llama", "mistral", "qwen2", "qwen3"):
        return llama_rules()
    if model_type == "phi3":
        return llama_rules(fused=True, mlp=("gate_up_proj", None, "down_proj"))
    if model_type == "olmo2":
        return llama_rules(post_attn="post_attention_layernorm", post_mlp="post_feedforward_layernorm")
    if model_type in ("gemma2", "gemma3_text"):
        return llama_rules(
            norm_2="pre_feedforward_layernorm",
            post_attn="post_attention_layernorm",
            post_mlp="post_feedforward_layernorm",
        )
    if model_type == "nanochat":
        return llama_rules(mlp=("fc1", None, "fc2"))
    if model_type == "gpt2":
        return gpt2_rules()
    if model_type == "gpt_neox":
        return neox_rules()
    if model_type == "phi":
        return phi_rules()
    raise CheckpointError(f"unsupported Hugging Face model_type {model_type!r}")


def expected_state(config: Config) -> dict[str, torch.Tensor]:
    """Meta tensors with the names and shapes of a `GPT(config)` state dict."""
    from litllm.model import GPT

    with torch.device("meta"):
        return GPT(config).state_dict()


def match_rules(config: Config) -> Iterator[tuple[str, Rule, str]]:
    """(our tensor name, rule, layer index or '') for every tensor of the model."""
    rules = hf_rules(config.hf_model_type)
    by_pattern = {re.escape(r.ours).replace(r"\{i\}", r"(\d+)"): r for r in rules}
    for name in expected_state(config):
        for pattern, rule in by_pattern.items():
            m = re.fullmatch(pattern, name)
            if m:
                yield name, rule, (m.group(1) if m.groups() else "")
                break
        else:
            raise CheckpointError(f"no Hugging Face mapping for tensor {name!r} of model_type {config.hf_model_type}")


def split_sizes(config: Config, ours: str) -> list[int]:
    c = config
    if ".attn.qkv." in ours:
        return [c.n_head * c.head_size, c.n_query_groups * c.head_size, c.n_query_groups * c.head_size]
    return [c.intermediate_size, c.intermediate_size]


# tensors some Hugging Face checkpoints store that are not weights: RoPE tables and causal-mask buffers
HF_BUFFERS = re.compile(r".*(\.rotary_emb\.inv_freq|\.attn\.(masked_)?bias|\.attention\.(masked_)?bias)")


def hf_to_litllm(hf_state: dict[str, torch.Tensor], config: Config) -> dict[str, torch.Tensor]:
    """Rename and reshape Hugging Face tensors into a litllm state dict."""
    out: dict[str, torch.Tensor] = {}
    used = {"lm_head.weight"} if config.tie_embeddings else set()  # a stored copy of the tied head is redundant
    for name, rule, i in match_rules(config):
        theirs = [t.replace("{i}", i) for t in rule.theirs]
        used.update(theirs)
        missing = [t for t in theirs if t not in hf_state]
        if missing:
            if name == "lm_head.weight" and config.tie_embeddings:
                continue
            raise CheckpointError(f"Hugging Face weights lack tensor {missing[0]!r} (needed for {name!r})")
        tensors = [hf_state[t] for t in theirs]
        if rule.kind == "cat":
            out[name] = torch.cat(tensors, dim=0)
        elif rule.kind == "conv1d":
            out[name] = tensors[0].t().contiguous()
        elif rule.kind == "neox_qkv":
            t = tensors[0]
            per_head = t.view(config.n_head, 3, config.head_size, *t.shape[1:])
            out[name] = torch.cat([per_head[:, j].reshape(-1, *t.shape[1:]) for j in range(3)], dim=0)
        else:
            out[name] = tensors[0]
    # a weight the config does not account for means the config was misread: fail rather than drop it
    unused = sorted(k for k in hf_state if k not in used and not HF_BUFFERS.fullmatch(k))
    if unused:
        raise CheckpointError(
            f"Hugging Face weights hold tensors that {config.hf_model_type} with this config.json does not use: "
            f"{', '.join(unused[:5])}{' ...' if len(unused) > 5 else ''}"
        )
    if config.tie_embeddings:
        out.pop("lm_head.weight", None)
    return out


def litllm_to_hf(state: dict[str, torch.Tensor], config: Config) -> dict[str, torch.Tensor]:
    """Rename and reshape a litllm state dict into Hugging Face tensors."""
    out: dict[str, torch.Tensor] = {}
    for name, rule, i in match_rules(config):
        if name not in state:
            if name == "lm_head.weight" and config.tie_embeddings:
                continue
            raise CheckpointError(f"litllm weights lack tensor {name!r}")
        t = state[name]
        theirs = [x.replace("{i}", i) for x in rule.theirs]
        if rule.kind == "cat":
            for key, part in zip(theirs, t.split(split_sizes(config, name), dim=0), strict=True):
                out[key] = part.contiguous()
        elif rule.kind == "conv1d":
            out[theirs[0]] = t.t().contiguous()
        elif rule.kind == "neox_qkv":
            q, k, v = (
                x.reshape(config.n_head, config.head_size, *t.shape[1:]) for x in t.split(split_sizes(config, name))
            )
            out[theirs[0]] = torch.stack((q, k, v), dim=1).reshape(t.shape).contiguous()
        else:
            out[theirs[0]] = t
    return out


def convert_to_hf(src: str | Path, out_dir: str | Path) -> Path:
    """Write a litllm checkpoint directory as a Hugging Face model directory."""
    src, out = Path(src), Path(out_dir)
    if detect_format(src) != "litllm":
        raise CheckpointError(f"{str(src)!r} is not a litllm checkpoint directory ({CONFIG} + {WEIGHTS})")
    config = Config.from_file(src / CONFIG)
    state = load_safetensors(src / WEIGHTS)
    hf_state = litllm_to_hf(state, config)
    hf_config = config_to_hf(config)
    hf_config["torch_dtype"] = str(next(iter(hf_state.values())).dtype).removeprefix("torch.")
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        hf_config[key] = special_token_id(src, key)
    out.mkdir(parents=True, exist_ok=True)
    save_safetensors(hf_state, out / "model.safetensors")
    atomic_write_text(out / "config.json", json.dumps(hf_config, indent=2))
    for name in TOKENIZER_FILES:
        if name != "prompt_style.yaml" and (src / name).is_file():
            atomic_copy(src / name, out / name)
    return out


def special_token_id(path: Path, key: str) -> Any:
    gen = path / "generation_config.json"
    if gen.is_file():
        return read_json(gen).get(key)
    return None


def convert_to_litllm(src: str | Path, out_dir: str | Path, dtype: torch.dtype | None = None) -> Path:
    """Write a Hugging Face (or LitGPT) checkpoint directory as a litllm checkpoint directory."""
    src, out = Path(src), Path(out_dir)
    model = load_checkpoint(src, dtype=dtype)
    save_checkpoint(model, out, tokenizer_dir=src)
    hf_config = src / "config.json"
    gen = src / "generation_config.json"
    if hf_config.is_file() and not gen.is_file():  # keep bos/eos ids that only config.json states
        ids = {k: v for k, v in read_hf_config(src).items() if k in ("bos_token_id", "eos_token_id") and v is not None}
        if ids and not (out / "generation_config.json").is_file():
            atomic_write_text(out / "generation_config.json", json.dumps(ids, indent=2))
    return out


# ---------------------------------------------------------------------------------------------------------------
# LitGPT checkpoints


def read_litgpt_weights(path: Path) -> dict[str, torch.Tensor]:
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
        out["rope_scaling"] = {
            "type": "llama3",
            "factor": float(a["factor"]),
            "low_freq_factor": float(a["low_freq_factor"]),
            "high_freq_factor": float(a["high_freq_factor"]),
            "original_max_seq_len": int(a["original_max_seq_len"]),
        }
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


# ---------------------------------------------------------------------------------------------------------------
# the Hugging Face Hub


class HubError(RuntimeError):
    """The Hub could not be reached, or the repository is missing or gated."""


def cached_checkpoint_dir(repo_id: str) -> Path:
    return litllm_home() / "checkpoints" / repo_id


# transformers names its weights model.safetensors or model-0000i-of-0000n.safetensors; other safetensors files
# in a repo (Mistral's consolidated.safetensors) are the same weights again in another layout
HUB_PATTERNS = ["model*.safetensors", "model.safetensors.index.json", "config.json", "generation_config.json"]
TOKENIZER_PATTERNS = [
    "tokenizer.json",
    "tokenizer.model",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
]


def download(
    repo_id: str,
    access_token: str | None = None,
    tokenizer_only: bool = False,
    out_dir: str | Path | None = None,
    progress: Callable[[str], None] | None = print,
) -> Path:
    """Download a Hub repo's safetensors and tokenizer files, convert them, and return the litllm directory."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError

    out = Path(out_dir) if out_dir else cached_checkpoint_dir(repo_id)
    token = access_token or os.environ.get("HF_TOKEN")
    raw = litllm_home() / "hf" / repo_id
    local_hint = (
        f"to use files you already have, pass their folder instead (e.g. LLM.load('/path/to/{repo_id.split('/')[-1]}'))"
    )
    patterns = TOKENIZER_PATTERNS + ([] if tokenizer_only else HUB_PATTERNS)
    try:
        snapshot_download(repo_id, allow_patterns=patterns, local_dir=raw, token=token, etag_timeout=5)
    except GatedRepoError as e:
        raise HubError(
            f"{repo_id} is gated: accept its license on the Hub and pass --access_token or set HF_TOKEN; {local_hint}"
        ) from e
    except RepositoryNotFoundError as e:
        raise HubError(
            f"no Hub repository {repo_id!r} (or it is private and no valid token was given); {local_hint}"
        ) from e
    except LocalEntryNotFoundError as e:  # no network, or offline mode, and nothing downloaded before
        from huggingface_hub import constants  # HF_HUB_OFFLINE as huggingface_hub read it at import

        offline_mode = constants.HF_HUB_OFFLINE
        why = "offline mode is on (HF_HUB_OFFLINE is set)" if offline_mode else "offline: no network connection"
        raise HubError(f"cannot download {repo_id} from the Hugging Face Hub: {why}; {local_hint}") from e
    except (OSError, ConnectionError) as e:
        raise HubError(
            f"cannot reach the Hugging Face Hub to download {repo_id}: {type(e).__name__}; {local_hint}"
        ) from e
    except Exception as e:  # noqa: BLE001 - huggingface_hub wraps network failures in several classes
        if type(e).__module__.startswith(("requests", "httpx", "urllib3", "huggingface_hub")):
            raise HubError(f"cannot download {repo_id} from the Hugging Face Hub: {e}; {local_hint}") from e
        raise
    if tokenizer_only:
        out.mkdir(parents=True, exist_ok=True)
        copy_tokenizer_files(raw, out)
        return out
    if progress:
        progress(f"converting {repo_id} to litllm format in {out}")
    converted = convert_to_litllm(raw, out)
    # the converted folder holds everything; the raw copy is kept only while a download is unfinished
    shutil.rmtree(raw, ignore_errors=True)
    return converted
