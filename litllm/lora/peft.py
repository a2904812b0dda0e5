"""Hugging Face peft's LoRA adapters, both ways: `to_peft` writes a litllm adapter folder as a peft adapter folder
(`adapter_config.json` + `adapter_model.safetensors`), `from_peft` reads one into a litllm adapter folder.

The module names come from the base's Hugging Face family (`hf_families`): the rule that names a litllm weight
(`h.{i}.attn.qkv.weight` -> q_proj, k_proj, v_proj) names the modules LoRA adapts, and the conversion that reorders
its rows (`litllm_to_hf`, run on row numbers) says which litllm row each row of a module is. A target is then one
module, or one part of a fused module (GPT-NeoX `query_key_value`, phi3 `qkv_proj`, GPT-2 `c_attn`), whose peft
adapter is exact:

    A = [A_q; A_k; A_v]   (k·r, in)          B = the targets' B's block-diagonal, rows in the module's order  (out, k·r)

with rank k·r and alpha k·alpha (√k·alpha with rsLoRA) in `rank_pattern` / `alpha_pattern`, so peft's scale is
litllm's. Back, a fused module's A is each of its targets' A, and B's rows split among them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from litllm.checkpoint.hf import litllm_to_hf, match_rules
from litllm.checkpoint.layout import copy_tokenizer_files
from litllm.checkpoint.own import first_names, load_safetensors, save_safetensors
from litllm.config import Config
from litllm.errors import CheckpointError, HubError, UnknownModelError
from litllm.lora.files import Adapter, base_path, read_adapter, save_adapter
from litllm.lora.layers import TARGETS, LoRAConfig, LoRAError, layer_slices
from litllm.paths import read_json_object, write_json

PEFT_CONFIG = "adapter_config.json"
PEFT_WEIGHTS = "adapter_model.safetensors"
PEFT_PICKLE = "adapter_model.bin"
PREFIX = "base_model.model."  # what PeftModel puts before the Hugging Face model's module names
KEYS = {"A": ".lora_A.weight", "B": ".lora_B.weight", "magnitude": ".lora_magnitude_vector"}
# LoraConfig options that change what the adapter computes, or add tensors, beyond what litllm's LoRA holds
UNSUPPORTED = (
    "alora_invocation_tokens", "use_qalora", "use_bdlora", "velora_config", "kasa_config", "monteclora_config",
    "arrow_config", "layer_replication", "lora_bias", "modules_to_save", "trainable_token_indices",
    "target_parameters",
)  # fmt: skip


@dataclass(frozen=True)
class HFModule:
    """A linear module of the Hugging Face model and the rows of the litllm layer it computes."""

    path: str
    """Its name in the Hugging Face model: model.layers.0.self_attn.qkv_proj."""
    name: str
    """The shortest end of its name that no other kind of module shares (peft matches modules by it): qkv_proj."""
    layer: str
    """The litllm layer it is (part of): h.0.attn.qkv."""
    rows: torch.Tensor
    """(out,): the litllm layer's row that each output row of the module is."""
    targets: dict[str, torch.Tensor]
    """Each target it holds: the module's rows that are the target's rows, in the target's order."""
    in_features: int
    conv1d: bool
    """GPT-2's Conv1D, which stores its weight transposed (peft's fan_in_fan_out)."""


def hf_modules(config: Config) -> list[HFModule]:
    """The Hugging Face modules LoRA can adapt in a model of `config`, with the litllm rows of each."""
    from litllm.model import GPT

    if not config.hf_model_type:
        name = config.name or "(unnamed)"
        raise LoRAError(f"model {name} has no Hugging Face family (hf_model_type): no peft names for its layers")
    with torch.device("meta"):
        gpt = GPT(config)
    slices, layers = layer_slices(gpt), dict(gpt.named_modules())
    state = dict(gpt.state_dict())  # meta tensors: the renaming needs their names and shapes only
    for layer, parts in slices.items():  # each adaptable weight is its row numbers, to see where the rows go
        state[f"{layer}.weight"] = torch.arange(max(stop for _, stop in parts.values())).unsqueeze(1)
    renamed = litllm_to_hf(state, config)
    kinds = {theirs.rsplit(".", 1)[0] for _, rule, _ in match_rules(config) for theirs in rule.theirs}
    modules = []
    for ours, rule, i in match_rules(config):
        layer = ours.removesuffix(".weight")
        if layer not in slices:  # not an adaptable weight (a bias, a norm, the embedding)
            continue
        for theirs in rule.theirs:
            kind = theirs.removesuffix(".weight")
            path = kind.replace("{i}", i)
            t = renamed[f"{path}.weight"]
            rows = (t.t() if rule.kind == "conv1d" else t).reshape(-1)
            targets = targets_of(rows, slices[layer], config.hf_model_type, path)
            conv1d = rule.kind == "conv1d"
            modules.append(
                HFModule(path, peft_name(kind, kinds), layer, rows, targets, layers[layer].in_features, conv1d)
            )
    return modules


def targets_of(
    rows: torch.Tensor, slices: dict[str, tuple[int, int]], family: str, path: str
) -> dict[str, torch.Tensor]:
    """The targets whose rows a module holds, each with the module's rows that are its rows, in order."""
    out = {}
    for t, (start, stop) in slices.items():
        pos = ((rows >= start) & (rows < stop)).nonzero().squeeze(1)
        if 0 < len(pos) < stop - start:
            raise LoRAError(
                f"{family}'s module {path} holds {len(pos)} of the {stop - start} {t} rows: a LoRA adapter of {t} "
                "cannot be written for it exactly"
            )
        if len(pos):
            out[t] = pos[rows[pos].argsort()]
    return out


def peft_name(kind: str, kinds: set[str]) -> str:
    """The shortest end of `kind` (a module name with {i} for the layer) that ends no other kind's name."""
    parts = kind.split(".")
    for n in range(1, len(parts) + 1):
        end = ".".join(parts[-n:])
        if "{i}" in end:
            break
        if not any(k != kind and (k == end or k.endswith("." + end)) for k in kinds):
            return end
    raise LoRAError(f"no end of the module name {kind} tells it from the others, so peft cannot target it alone")


def with_dora(parts: tuple[str, ...], dora: bool) -> tuple[str, ...]:
    """The tensors an adapter holds for each target: A and B, and DoRA's magnitude."""
    return (*parts, "magnitude") if dora else parts


# ---- litllm -> peft ---------------------------------------------------------------------------------------------


def to_peft(adapter_dir: str | Path, out_dir: str | Path) -> Path:
    """Write a litllm adapter folder (or a run whose final/ holds one) as a Hugging Face peft LoRA adapter folder."""
    adapter = read_adapter(adapter_dir)
    lora, state = adapter.lora, adapter.state_dict()
    chosen = set(lora.target_names())
    modules = [(m, [t for t in m.targets if t in chosen]) for m in hf_modules(adapter.base_config)]
    modules = [(m, adapted) for m, adapted in modules if adapted]
    expected = {f"{m.layer}.lora.{p}.{t}" for m, ts in modules for t in ts for p in with_dora(("A", "B"), lora.dora)}
    check_keys(expected, set(state), str(adapter.path))
    base: dict[str, torch.Tensor] = {}
    tensors, fused, conv1d = {}, {}, False
    for m, adapted in modules:
        own, key, r = f"{m.layer}.lora", PREFIX + m.path, lora.r
        a = torch.cat([state[f"{own}.A.{t}"] for t in adapted])  # (k·r, in)
        b = a.new_zeros(len(m.rows), len(adapted) * r)  # (out, k·r)
        for j, t in enumerate(adapted):
            b[m.targets[t], j * r : (j + 1) * r] = state[f"{own}.B.{t}"]
        tensors[key + KEYS["A"]], tensors[key + KEYS["B"]] = a, b
        if lora.dora:
            tensors[key + KEYS["magnitude"]] = module_magnitude(m, adapted, state, adapter, base)
        if len(adapted) > 1:
            fused[m.name] = len(adapted)
        conv1d |= m.conv1d
    grow = math.sqrt if lora.rslora else float  # the scale alpha/r (alpha/√r) of rank k·r is the same with these
    config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": adapter.base,
        "r": lora.r,
        "lora_alpha": number(lora.alpha),
        "lora_dropout": lora.dropout,
        "target_modules": sorted({m.name for m, _ in modules}),
        "rank_pattern": {name: k * lora.r for name, k in fused.items()},
        "alpha_pattern": {name: number(lora.alpha * grow(k)) for name, k in fused.items()},
        "use_rslora": lora.rslora,
        "use_dora": lora.dora,
        "bias": "none",
        "fan_in_fan_out": conv1d,
        "inference_mode": True,
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    copy_tokenizer_files(adapter.path, out)
    save_safetensors(tensors, out / PEFT_WEIGHTS)
    write_json(out / PEFT_CONFIG, config)  # last: a folder with its config is a finished one
    return out


def module_magnitude(
    m: HFModule, adapted: list[str], state: dict[str, torch.Tensor], adapter: Adapter, base: dict[str, torch.Tensor]
) -> torch.Tensor:
    """DoRA's magnitude for every row of a module: the adapter's for its targets; for rows of a fused module that it
    does not adapt, the base weight's row norms (DoRA with a zero update leaves those rows as they are)."""
    mag = state[f"{m.layer}.lora.magnitude.{adapted[0]}"].new_zeros(len(m.rows))
    for t, pos in m.targets.items():
        if t in adapted:
            mag[pos] = state[f"{m.layer}.lora.magnitude.{t}"]
            continue
        if not base:
            from litllm.checkpoint.layout import detect_format
            from litllm.checkpoint.loading import READERS

            path = base_path(adapter)
            base.update(READERS[detect_format(path)](path)[1])
        mag[pos] = base[f"{m.layer}.weight"].float().norm(dim=1)[m.rows[pos]].to(mag.dtype)
    return mag


def number(x: float) -> float | int:
    """x as an int when it is one (peft's configs write `lora_alpha: 16`)."""
    return int(x) if float(x).is_integer() else x


def check_keys(expected: set[str], found: set[str], where: str) -> None:
    """A LoRAError names the adapter tensors that are missing and those that are not expected."""
    missing, unexpected = sorted(expected - found), sorted(found - expected)
    if missing or unexpected:
        parts = [f"missing {first_names(missing)}"] if missing else []
        parts += [f"unexpected {first_names(unexpected)}"] if unexpected else []
        raise LoRAError(f"adapter tensors in {where} do not match the model: {'; '.join(parts)}")


# ---- peft -> litllm ---------------------------------------------------------------------------------------------


def from_peft(peft_dir: str | Path, out_dir: str | Path, base: str | None = None) -> Path:
    """Write a Hugging Face peft LoRA adapter folder as a litllm adapter folder; `base` (any checkpoint source)
    defaults to the adapter's `base_model_name_or_path`."""
    from litllm.checkpoint.loading import checkpoint_config

    src = Path(peft_dir).expanduser()
    data = read_peft_config(src)
    base = base or data.get("base_model_name_or_path")
    if not base:
        raise CheckpointError(f"{str(src / PEFT_CONFIG)!r} names no base_model_name_or_path: give the base (--base)")
    base_dir = resolve_base(str(base), src)
    config = checkpoint_config(base_dir)
    state = load_safetensors(src / PEFT_WEIGHTS)
    dora, where = bool(data.get("use_dora")), str(src / PEFT_WEIGHTS)
    modules = {m.path: m for m in hf_modules(config)}
    adapted = {module_of(key) for key in state} & set(modules)
    targets = {t for path in adapted for t in modules[path].targets} | named_targets(data, modules.values())
    expected = [m for m in modules.values() if targets & set(m.targets)]
    parts = with_dora(("A", "B"), dora)
    check_keys({PREFIX + m.path + KEYS[p] for m in expected for p in parts}, set(state), where)
    tensors_of = {m.path: {p: state[PREFIX + m.path + KEYS[p]] for p in parts} for m in expected}
    for m in expected:
        check_shapes(m, tensors_of[m.path], where)
    r, alpha, split = litllm_rank(expected, tensors_of, data, str(src))
    tensors = {}
    for m in expected:
        w = tensors_of[m.path]
        for j, (t, pos) in enumerate(m.targets.items()):
            cols = slice(j * r, (j + 1) * r) if split else slice(None)
            # a copy for each target: the targets of a fused module share its A, and safetensors refuses shared storage
            tensors[f"{m.layer}.lora.A.{t}"] = w["A"][cols].clone()
            tensors[f"{m.layer}.lora.B.{t}"] = w["B"][pos][:, cols].contiguous()
            if dora:
                tensors[f"{m.layer}.lora.magnitude.{t}"] = w["magnitude"][pos].contiguous()
    lora = LoRAConfig(
        r=r,
        alpha=alpha,
        dropout=float(data.get("lora_dropout") or 0.0),
        targets=[t for t in TARGETS if t in targets],
        rslora=bool(data.get("use_rslora")),
        dora=dora,
    )
    tokenizer_dir = src if (src / "tokenizer.json").is_file() else base_dir
    return save_adapter(out_dir, tensors, config, lora, str(base), tokenizer_dir=tokenizer_dir)


def read_peft_config(src: Path) -> dict[str, Any]:
    """A peft adapter folder's adapter_config.json, refused with the reason when litllm cannot hold the adapter."""
    if not src.exists():
        raise FileNotFoundError(f"peft adapter folder {str(src)!r} does not exist")
    if not (src / PEFT_CONFIG).is_file():
        raise CheckpointError(f"{str(src)!r} is not a peft adapter: expected {PEFT_CONFIG} and {PEFT_WEIGHTS} in it")
    if not (src / PEFT_WEIGHTS).is_file():
        if (src / PEFT_PICKLE).is_file():
            raise CheckpointError(
                f"{str(src / PEFT_PICKLE)!r} is a Python pickle, which litllm does not load (unpickling can run "
                f"arbitrary code); save the adapter as safetensors first (peft's save_pretrained writes {PEFT_WEIGHTS})"
            )
        raise CheckpointError(f"{str(src)!r} has {PEFT_CONFIG} but no {PEFT_WEIGHTS}")
    data = read_json_object(src / PEFT_CONFIG, CheckpointError)
    where = repr(str(src / PEFT_CONFIG))
    if data.get("peft_type") != "LORA":
        raise LoRAError(f"{where}: peft_type {data.get('peft_type')!r} is not supported; litllm reads LORA adapters")
    if data.get("task_type") not in (None, "CAUSAL_LM"):
        raise LoRAError(f"{where}: task_type {data['task_type']!r} is not supported; litllm reads CAUSAL_LM adapters")
    refused = [f"{k}={data[k]!r}" for k in UNSUPPORTED if data.get(k) not in (None, False, [], {})]
    refused += [f"bias={data['bias']!r}"] if data.get("bias", "none") != "none" else []
    refused += ["init_lora_weights='mica'"] if data.get("init_lora_weights") == "mica" else []
    if refused:
        raise LoRAError(f"{where}: litllm's LoRA cannot express the peft option(s) {', '.join(refused)}")
    return data


def resolve_base(base: str, src: Path) -> Path:
    """The folder of the adapter's base; a CheckpointError says how to give it when it cannot be found."""
    from litllm.checkpoint.sources import resolve_checkpoint

    try:
        return resolve_checkpoint(base)
    except (FileNotFoundError, CheckpointError, HubError, UnknownModelError) as e:
        raise CheckpointError(
            f"the base of peft adapter {str(src)!r}, {base!r}, cannot be found ({e}); give the base: --base BASE"
        ) from None


def module_of(key: str) -> str | None:
    """The Hugging Face module a peft adapter tensor belongs to, or None for a key of no LoRA module."""
    for suffix in KEYS.values():
        if key.startswith(PREFIX) and key.endswith(suffix):
            return key[len(PREFIX) : -len(suffix)]
    return None


def named_targets(data: dict[str, Any], modules: Any) -> set[str]:
    """The targets of the modules a list of target_modules names (a regex or "all-linear" adds none here: the
    tensors the adapter holds say which modules it adapts)."""
    names = data.get("target_modules")
    if not isinstance(names, list):
        return set()
    return {t for m in modules if any(m.path == n or m.path.endswith("." + n) for n in names) for t in m.targets}


def check_shapes(m: HFModule, w: dict[str, torch.Tensor], where: str) -> None:
    """A LoRAError names a tensor whose shape does not fit its module."""
    rank = w["A"].shape[0] if w["A"].dim() == 2 else 0
    need = {"A": (rank, m.in_features), "B": (len(m.rows), rank), "magnitude": (len(m.rows),)}
    for p, t in w.items():
        if rank == 0 or tuple(t.shape) != need[p]:
            raise LoRAError(
                f"{where}: {PREFIX}{m.path}{KEYS[p]} has shape {tuple(t.shape)}, the base's module needs {need[p]}"
            )


def litllm_rank(
    modules: list[HFModule], tensors: dict[str, dict[str, torch.Tensor]], data: dict[str, Any], where: str
) -> tuple[int, float, bool]:
    """litllm's one rank and alpha for the adapter, and whether fused modules are split into their targets' blocks.

    Modules of one rank and alpha keep it (a fused module's targets share its A). Else, as `to_peft` writes them, a
    module of k targets may have rank k·r and alpha k·alpha (√k·alpha with rsLoRA) with B block-diagonal."""
    found = {m.path: (tensors[m.path]["A"].shape[0], module_alpha(m.path, data)) for m in modules}
    if len(set(found.values())) == 1:
        rank, alpha = next(iter(found.values()))
        return rank, alpha, False
    grow = math.sqrt if data.get("use_rslora") else float
    per_target = set()
    for m in modules:
        rank, alpha = found[m.path]
        per_target.add((rank / len(m.targets), round(alpha / grow(len(m.targets)), 9)))
    if len(per_target) == 1 and all(block_diagonal(m, tensors[m.path]["B"]) for m in modules):
        rank, alpha = next(iter(per_target))
        if rank.is_integer():
            return int(rank), alpha, True
    first = {}  # the first module of each (rank, alpha)
    for path, rank_alpha in found.items():
        first.setdefault(rank_alpha, path)
    shown = ", ".join(f"{p}: r={r} alpha={number(a)}" for (r, a), p in first.items())
    raise LoRAError(
        f"peft adapter {where!r} has modules of different ranks or alphas ({shown}); a litllm adapter has one "
        "rank and alpha (fused modules of k targets may have k·r and k·alpha, with B block-diagonal)"
    )


def module_alpha(path: str, data: dict[str, Any]) -> float:
    """The module's lora_alpha, as peft picks it: the first alpha_pattern key that ends its name, else lora_alpha."""
    for key, value in (data.get("alpha_pattern") or {}).items():
        if re.match(rf"(.*\.)?({key})$", path):
            return float(value)
    return float(data.get("lora_alpha", 8))


def block_diagonal(m: HFModule, b: torch.Tensor) -> bool:
    """Whether B's rows of each target of the module use only that target's block of rank columns."""
    k = len(m.targets)
    if b.shape[1] % k:
        return False
    r = b.shape[1] // k
    for j, pos in enumerate(m.targets.values()):
        outside = torch.ones(b.shape[1], dtype=torch.bool)
        outside[j * r : (j + 1) * r] = False
        if b[pos][:, outside].any():
            return False
    return True


__all__ = ["from_peft", "hf_modules", "to_peft"]
