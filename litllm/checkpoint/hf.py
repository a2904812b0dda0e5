"""Hugging Face model directories: reading their config and safetensors, renaming tensors both ways through the
family's `Rule` table, and writing a litllm checkpoint out as one (`convert_to_hf`)."""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

import torch

from litllm.checkpoint.hf_config import config_from_hf, config_to_hf
from litllm.checkpoint.hf_families import HF_FAMILIES, TEXT_TOWERS, Rule, hf_family
from litllm.checkpoint.layout import CONFIG, HF_CONFIG, WEIGHTS, copy_tokenizer_files, detect_format
from litllm.checkpoint.own import first_names, load_safetensors, save_safetensors
from litllm.config import Config
from litllm.errors import CheckpointError
from litllm.paths import read_json_object, write_json

# the tensors of a causal-LM class that are outside its base model
HF_HEADS = ("lm_head.", "embed_out.")
# tensors some Hugging Face checkpoints store that are not weights: RoPE tables and causal-mask buffers
HF_BUFFERS = re.compile(r".*(\.rotary_emb\.inv_freq|\.attn\.(masked_)?bias|\.attention\.(masked_)?bias)")


def read_hf_config(path: Path) -> dict[str, Any]:
    """The `config.json` of a Hugging Face directory."""
    return read_json_object(path / HF_CONFIG, CheckpointError)


def read_hf_weights(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of a Hugging Face directory's safetensors files (sharded or not)."""
    state: dict[str, torch.Tensor] = {}
    for p in hf_weight_files(path):
        state.update(load_safetensors(p))
    return state


def hf_weight_files(path: Path) -> list[Path]:
    """A Hugging Face directory's safetensors files: those its index names (a CheckpointError when one is missing),
    else every one in it."""
    index = path / "model.safetensors.index.json"
    if not index.is_file():
        return sorted(path.glob("*.safetensors"))
    weight_map = read_json_object(index, CheckpointError).get("weight_map")
    if not isinstance(weight_map, dict):
        raise CheckpointError(f"{str(index)!r} has no weight_map")
    files = sorted(set(weight_map.values()))
    missing = [f for f in files if not (path / f).is_file()]
    if missing:
        raise CheckpointError(f"{str(path)!r}: shards named in {index.name} are missing: {', '.join(missing)}")
    return [path / f for f in files]


def read_hf(path: Path) -> tuple[Config, dict[str, torch.Tensor]]:
    """The config and weights (renamed to litllm's) of a Hugging Face directory."""
    hf_config = read_hf_config(path)
    config = config_from_hf(hf_config)
    state = read_hf_weights(path)
    if hf_config.get("model_type") in TEXT_TOWERS:
        state = text_tower(state)
    return config, hf_to_litllm(with_base_model_prefix(state, config.hf_model_type), config)


def with_base_model_prefix(state: dict[str, torch.Tensor], model_type: str) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint saved from the base model (OpenAI's GPT-2 files: `h.0.attn.c_attn.weight`, no head)
    named as the causal-LM class names them; transformers loads both."""
    prefix = hf_family(model_type).base_model_prefix
    if any(k.startswith(prefix) for k in state):
        return state
    return {k if k.startswith(HF_HEADS) else prefix + k: v for k, v in state.items()}


def text_tower(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The language model's tensors of a multimodal checkpoint (Gemma 3), named as in the text-only model."""
    out = {}
    for key, t in state.items():
        for prefix in ("model.language_model.", "language_model.model."):
            if key.startswith(prefix):
                out["model." + key[len(prefix) :]] = t
        if key in ("lm_head.weight", "language_model.lm_head.weight"):
            out["lm_head.weight"] = t
    return out


def expected_state(config: Config) -> dict[str, torch.Tensor]:
    """Meta tensors with the names and shapes of a `GPT(config)` state dict."""
    from litllm.model import GPT

    with torch.device("meta"):
        return GPT(config).state_dict()


def match_rules(config: Config) -> Iterator[tuple[str, Rule, str]]:
    """(our tensor name, rule, layer index or '') for every tensor of the model."""
    rules = hf_family(config.hf_model_type).rules
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
    """Rows of each part of a concatenated tensor: q, k, v of the fused qkv, or gate and up of a gated MLP."""
    c = config
    if ".attn.qkv." in ours:
        return [c.n_head * c.head_size, c.n_query_groups * c.head_size, c.n_query_groups * c.head_size]
    return [c.intermediate_size, c.intermediate_size]


def hf_to_litllm(
    hf_state: dict[str, torch.Tensor],
    config: Config,
    names: Collection[str] | None = None,
    rules: list[tuple[str, Rule, str]] | None = None,
) -> dict[str, torch.Tensor]:
    """Rename and reshape Hugging Face tensors into a litllm state dict. names: only these litllm tensors, without
    the check that every stored tensor is used (a checkpoint read a part at a time, checked whole once); rules:
    `match_rules(config)` as a list, for a caller that converts many times."""
    out: dict[str, torch.Tensor] = {}
    used = {"lm_head.weight"} if config.tie_embeddings else set()  # a stored copy of the tied head is redundant
    for name, rule, i in rules if rules is not None else match_rules(config):
        if names is not None and name not in names:
            continue
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
    unused = [] if names is not None else sorted(k for k in hf_state if k not in used and not HF_BUFFERS.fullmatch(k))
    if unused:
        raise CheckpointError(
            f"Hugging Face weights hold tensors that {config.hf_model_type} with this config.json does not use: "
            f"{first_names(unused)}"
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
    write_json(out / HF_CONFIG, hf_config)
    copy_tokenizer_files(src, out, skip=("prompt_style.yaml",))  # the chat format is litllm's own file
    return out


def special_token_id(path: Path, key: str) -> Any:
    """A token id (`bos_token_id`, ...) from the directory's generation_config.json, or None."""
    gen = path / "generation_config.json"
    if gen.is_file():
        return read_json_object(gen, CheckpointError).get(key)
    return None


__all__ = ["HF_FAMILIES", "convert_to_hf", "hf_to_litllm", "litllm_to_hf", "read_hf", "read_hf_weights"]
