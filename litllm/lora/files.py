"""Adapter folders: what a LoRA run saves instead of a second copy of its base.

```
<dir>/
  adapter.safetensors    the adapter's tensors, keyed <layer>.lora.<A|B|magnitude>.<target>
  adapter_config.yaml    base (where its weights are), base_config (the architecture), lora (r, alpha, targets, ...)
  tokenizer.json ...     the base's tokenizer files, so the folder generates on its own
```
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from litllm.checkpoint.layout import ADAPTER_CONFIG, ADAPTER_WEIGHTS, copy_tokenizer_files
from litllm.checkpoint.own import load_safetensors, save_safetensors
from litllm.checkpoint.run_folders import PHASES, phase_checkpoint
from litllm.config import Config
from litllm.errors import CheckpointError
from litllm.lora.layers import LoRAConfig, LoRAError, add_adapter, load_adapter_state, quantize_base
from litllm.paths import read_yaml_mapping, write_yaml

if TYPE_CHECKING:
    from litllm.model import GPT

FORMAT = "litllm-lora/1"
IDENTITY = ("name", "hf_repo")  # fields that name a config without changing its architecture


@dataclass
class Adapter:
    """An adapter folder's config: its base and the LoRA options it was trained with."""

    path: Path
    base: str
    base_config: Config
    lora: LoRAConfig

    @property
    def name(self) -> str:
        """The folder's name (a run's name for <run>/final)."""
        return self.path.parent.name if self.path.name == "final" else self.path.name

    def state_dict(self) -> dict[str, torch.Tensor]:
        return load_safetensors(self.path / ADAPTER_WEIGHTS)


def is_adapter_dir(path: str | Path) -> bool:
    return (Path(path) / ADAPTER_CONFIG).is_file()


def adapter_dir(source: str | Path) -> Path:
    """The adapter folder `source` names: the folder itself, or a run whose final/ holds an adapter."""
    path = Path(source).expanduser()
    for candidate in (path, path / "final"):
        if is_adapter_dir(candidate):
            return candidate
    if not path.exists():
        raise FileNotFoundError(f"adapter folder {str(source)!r} does not exist")
    raise CheckpointError(
        f"{str(source)!r} is not a LoRA adapter: expected {ADAPTER_CONFIG} and {ADAPTER_WEIGHTS} in it "
        "(or in its final/ folder, for a run)"
    )


def read_adapter(source: str | Path) -> Adapter:
    """The config of the adapter folder `source` (a folder or a run); a CheckpointError names what is wrong."""
    path = adapter_dir(source)
    data = read_yaml_mapping(path / ADAPTER_CONFIG, "mapping (base, base_config, lora)", CheckpointError)
    missing = [k for k in ("base", "base_config", "lora") if k not in data]
    if missing:
        raise CheckpointError(f"{str(path / ADAPTER_CONFIG)!r} lacks {', '.join(missing)}")
    if not (path / ADAPTER_WEIGHTS).is_file():
        raise CheckpointError(f"{str(path)!r} has {ADAPTER_CONFIG} but no {ADAPTER_WEIGHTS}")
    try:
        lora = LoRAConfig.from_dict(dict(data["lora"]))
    except (LoRAError, TypeError) as e:
        raise CheckpointError(f"{str(path / ADAPTER_CONFIG)!r}: {e}") from None
    base_config = Config.from_dict(dict(data["base_config"]), source=str(path / ADAPTER_CONFIG))
    return Adapter(path, str(data["base"]), base_config, lora)


def save_adapter(
    out_dir: str | Path,
    tensors: dict[str, torch.Tensor],
    base_config: Config,
    lora: LoRAConfig,
    base: str,
    tokenizer_dir: str | Path | None = None,
) -> Path:
    """Write an adapter's tensors (`adapter_state_dict`) as an adapter folder; `base` says where the base weights are
    (a local path is recorded absolute, so the folder works from any directory)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if tokenizer_dir is not None and Path(tokenizer_dir).resolve() != out.resolve():
        copy_tokenizer_files(Path(tokenizer_dir), out)
    local = Path(base).expanduser()
    base = str(local.resolve()) if local.exists() else base
    save_safetensors(tensors, out / ADAPTER_WEIGHTS)
    config = {"format": FORMAT, "base": base, "base_config": base_config.to_dict(), "lora": lora.to_dict()}
    write_yaml(out / ADAPTER_CONFIG, config)  # last: a folder with its config is a finished one
    return out


def check_base(config: Config, adapter: Adapter) -> None:
    """An adapter fits only the architecture it was trained on: a LoRAError names both when they differ."""
    ours, theirs = config.to_dict(), adapter.base_config.to_dict()
    differ = sorted(k for k in theirs if k not in IDENTITY and ours.get(k) != theirs[k])
    if differ:
        shown = ", ".join(f"{k}: {theirs[k]!r} vs {ours.get(k)!r}" for k in differ[:5])
        raise LoRAError(
            f"adapter {str(adapter.path)!r} was trained on base {adapter.base!r} "
            f"({adapter.base_config.name or 'unnamed'}) and does not fit this model ({config.name or 'unnamed'}): "
            f"{shown}{' ...' if len(differ) > 5 else ''}"
        )


def attach_adapter(gpt: GPT, source: str | Path | Adapter, name: str | None = None) -> str:
    """Load the adapter folder `source` (or its config, already read) onto `gpt` as adapter `name` (default: the
    folder's name); returns the name."""
    adapter = source if isinstance(source, Adapter) else read_adapter(source)
    check_base(gpt.config, adapter)
    name = name or adapter.name
    add_adapter(gpt, adapter.lora, name, init=False)
    load_adapter_state(gpt, adapter.state_dict(), name, source=repr(str(adapter.path)))
    return name


def load_base(adapter: Adapter, dtype: torch.dtype | None = torch.float32, device: Any = None) -> GPT:
    """The adapter's base model (on the CPU by default), held in 4-bit if the adapter was trained over a 4-bit base
    (quantized as it loads, where `load_quantized` can)."""
    from litllm.checkpoint.loading import load_checkpoint

    if adapter.lora.quantize is None:
        return load_checkpoint(base_path(adapter), device=device, dtype=dtype)
    return load_quantized(base_path(adapter), adapter.lora, dtype=dtype, device=device)


def load_quantized(path: Path, lora: LoRAConfig, dtype: torch.dtype | None = torch.float32, device: Any = None) -> GPT:
    """The checkpoint's model with its base in 4-bit as `lora` asks (`quantize_base`): quantized one part at a time as
    it loads where the checkpoint allows (`load_checkpoint_in_parts`: a litllm or Hugging Face safetensors checkpoint,
    a float dtype given), so that its float weights are never all in memory; else loaded whole, then quantized."""
    from litllm.checkpoint.loading import load_checkpoint, load_checkpoint_in_parts

    gpt = None
    if dtype is not None:
        gpt = load_checkpoint_in_parts(path, lambda model: quantize_base(model, lora), dtype, device or "cpu")
    if gpt is None:
        gpt = quantize_base(load_checkpoint(path, device=device, dtype=dtype), lora)
    return gpt


def load_adapted(source: str | Path, device: Any = None, dtype: torch.dtype | None = None) -> GPT:
    """The base of an adapter folder (or LoRA run) with the adapter over it, unmerged and active."""
    adapter = read_adapter(source)
    gpt = load_base(adapter, dtype=dtype, device=device)
    attach_adapter(gpt, adapter)
    return gpt


def tokenizer_folder(adapter: Adapter) -> Path:
    """Where the adapter's tokenizer is: its own folder (a run's final/ has it), else its base's."""
    return adapter.path if (adapter.path / "tokenizer.json").is_file() else base_path(adapter)


def base_path(adapter: Adapter) -> Path:
    """The folder of the adapter's base; a CheckpointError says how to give it when it cannot be found."""
    from litllm.checkpoint.sources import resolve_checkpoint
    from litllm.errors import HubError, UnknownModelError

    try:
        return resolve_checkpoint(adapter.base)
    except (FileNotFoundError, CheckpointError, HubError, UnknownModelError) as e:
        raise CheckpointError(
            f"the base of adapter {str(adapter.path)!r}, {adapter.base!r}, cannot be found ({e}); "
            "give the base explicitly: LLM.load(BASE, adapter=DIR)"
        ) from None


def merge_to_checkpoint(source: str | Path, out_dir: str | Path) -> Path:
    """Write the adapter's base with the adapter folded into its weights as a full litllm checkpoint.

    Over a 4-bit base the merged weight is the dequantized 4-bit weight plus the update, so the merged model's
    logits equal those the adapter was trained with (its base in 4-bit), to float32 round-off: the merge does not
    undo the quantization error of the base (nf4: about 0.1 of a weight's absolute mean)."""
    from litllm.checkpoint.own import save_checkpoint

    adapter = read_adapter(source)
    return save_checkpoint(load_merged(adapter.path), out_dir, tokenizer_dir=tokenizer_folder(adapter))


def split_sources(model: str | Path, adapter: str | Path | list | dict | None) -> tuple[str | Path, dict]:
    """`LLM.load`'s model and adapter arguments as (the base's source, {adapter name or None: folder}): `model` may
    be an adapter folder (or a run holding one), whose config names its base."""
    if isinstance(adapter, dict):
        adapters = {str(k): v for k, v in adapter.items()}
    elif isinstance(adapter, (list, tuple)):
        adapters = {read_adapter(a).name: a for a in adapter}  # named after their folders
    else:
        adapters = {} if adapter is None else {None: adapter}
    found = adapter_source(model) if isinstance(model, (str, Path)) else None
    if found is not None:
        adapter = read_adapter(found)
        return adapter.base, {None: adapter.path, **adapters}
    return model, adapters


def adapter_source(source: str | Path) -> Path | None:
    """The adapter folder `source` names (the folder, a LoRA run, or a phase whose newest run is one), else None."""
    path = Path(source).expanduser()
    if not path.exists() and str(source) in PHASES:  # base, mid, sft, rl: the newest run's final/
        with contextlib.suppress(FileNotFoundError):
            path = phase_checkpoint(str(source))
    for candidate in (path, path / "final"):
        if is_adapter_dir(candidate):
            return candidate
    return None


def load_merged(source: str | Path) -> GPT:
    """The adapter's base with the adapter folded into its weights, in float32 and full precision (a 4-bit base
    dequantized, its head too): a model to save, or to train further."""
    from litllm.lora.layers import merge_adapter

    adapter = read_adapter(source)
    gpt = load_base(adapter)
    attach_adapter(gpt, adapter, "merge")  # refuses a base of another architecture
    merge_adapter(gpt, "merge")  # over a 4-bit base, every 4-bit layer dequantized
    return gpt


def attach_adapters(gpt: GPT, adapters: dict) -> list[str]:
    """Load each adapter folder onto `gpt` (named by the key, or its folder when the key is None), the first one
    active; the base goes to 4-bit first when the first adapter was trained over a 4-bit base."""
    found = [(name, read_adapter(source)) for name, source in adapters.items()]
    if found and found[0][1].lora.quantize is not None:
        quantize_base(gpt, found[0][1].lora)
    return [attach_adapter(gpt, adapter, name) for name, adapter in found]
