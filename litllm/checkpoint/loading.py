"""Any checkpoint directory litllm reads (its own, Hugging Face, LitGPT; a nanoGPT ckpt.pt too) as a `Config` or a
`GPT`, and converted to litllm's format."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from litllm.checkpoint.hf import (
    hf_to_litllm,
    hf_weight_files,
    match_rules,
    read_hf,
    read_hf_config,
    text_tower,
    with_base_model_prefix,
)
from litllm.checkpoint.hf_config import config_from_hf
from litllm.checkpoint.hf_families import TEXT_TOWERS, Rule
from litllm.checkpoint.layout import CONFIG, WEIGHTS, Format, detect_format
from litllm.checkpoint.litgpt import config_from_litgpt, read_litgpt
from litllm.checkpoint.nanogpt import read_nanogpt
from litllm.checkpoint.own import load_state_into, read_own, read_own_config, read_yaml, save_checkpoint
from litllm.config import Config
from litllm.errors import CheckpointError
from litllm.paths import write_json

if TYPE_CHECKING:
    from litllm.model import GPT

# the dtypes of a safetensors header (`get_dtype`) that a checkpoint's weights come in
SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool,
}  # fmt: skip
READ_BYTES = 16 * 2**20  # a block of a tensor's rows read at once, in float32, by `load_checkpoint_in_parts`

READERS: dict[Format, Callable[[Path], tuple[Config, dict[str, torch.Tensor]]]] = {
    "litllm": read_own,
    "hf": read_hf,
    "litgpt": read_litgpt,
    "nanogpt": read_nanogpt,
}


def checkpoint_config(path: str | Path) -> Config:
    """The Config of a litllm, Hugging Face or LitGPT checkpoint directory, without reading its weights (a nanoGPT
    ckpt.pt, one pickle, is read whole)."""
    path = Path(path)
    fmt = detect_format(path)
    if fmt == "litllm":
        return Config.from_file(path / CONFIG)
    if fmt == "hf":
        return config_from_hf(read_hf_config(path))
    if fmt == "nanogpt":
        return read_nanogpt(path)[0]  # tie_embeddings depends on the weights
    return config_from_litgpt(read_yaml(path / CONFIG))


def load_checkpoint(
    path: str | Path, device: torch.device | str | None = None, dtype: torch.dtype | None = None
) -> GPT:
    """Build the `GPT` stored in a litllm, Hugging Face or LitGPT checkpoint directory, in `dtype` (default: the
    stored tensors' own, float32 for integers). A safetensors checkpoint (litllm, Hugging Face) loads one part at a
    time (`load_parts`): the peak is the weights and about one part, where reading the whole file first held the
    weights twice (pythia-160m: 1.08x its weights in float32 against 2.2x; 1.65x against 4.3x when its float32 file
    loads in bfloat16, each part read in float32 before its cast)."""
    from litllm.model import GPT  # here, not at the top: the model and its CPU kernels load when a model is built

    path = Path(path)
    stored = StoredTensors.of(path)
    if stored is not None and stored.stored:
        target = dtype or next(iter(stored.placeholders.values())).dtype
        target = target if target.is_floating_point else torch.float32
        return load_parts(stored, path, None, target, device or "cpu")
    config, state = READERS[detect_format(path)](path)
    if not state:
        raise CheckpointError(f"{str(path)!r}: the weights file holds no tensors")
    model = GPT.empty(config, device or "cpu")
    target = dtype or next(iter(state.values())).dtype
    if not target.is_floating_point:
        target = torch.float32
    model.to(target)
    load_state_into(model, {k: v.to(target) for k, v in state.items()}, f"{str(path)!r}")
    return model.eval()


def load_checkpoint_in_parts(
    path: str | Path,
    after_part: Callable[[GPT], object],
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> GPT | None:
    """Build the `GPT` of a litllm or Hugging Face checkpoint directory one part at a time (each block, then an untied
    head, then the embeddings and final norm), the rest waiting on the meta device: only that part's tensors are read
    from the safetensors files, in `dtype` on `device`, and `after_part(model)` runs before the next part is read, so
    a part it replaces (quantizes) leaves no float copy behind. Same names, shapes and conversion rules as
    `load_checkpoint`, checked before any weight is read. None for a checkpoint that is not safetensors (LitGPT,
    nanoGPT) or whose files cannot be opened: `load_checkpoint` reads (or reports) those."""
    path = Path(path)
    stored = StoredTensors.of(path)
    if stored is None:
        return None
    return load_parts(stored, path, after_part, dtype, device)


def load_parts(
    stored: StoredTensors,
    path: Path,
    after_part: Callable[[GPT], object] | None,
    dtype: torch.dtype,
    device: torch.device | str,
) -> GPT:
    """`load_checkpoint_in_parts` of the tensors of checkpoint `path`. With an `after_part`, what it replaces goes back
    to the OS at once (the allocator's thresholds fixed at their defaults meanwhile, its freed blocks trimmed after
    each part); without one (a plain load, which frees no weight) the allocator is left as it is, and training's
    `keep_freed_memory` reuses the blocks of reading in its steps."""
    from litllm.cpu import memory
    from litllm.model import GPT

    with torch.device("meta"):
        model = GPT(stored.config)
    load_state_into(model, stored.placeholders, f"{str(path)!r}")  # on the meta device: names and shapes only
    kept = memory.keeping_freed_memory()
    release = after_part is not None
    if release:
        memory.return_freed_memory_at_once()
    try:
        for prefix in model_parts(model):
            names = [k for k in stored.placeholders if k.startswith(prefix)]
            state = {k.removeprefix(prefix): v.to(device, dtype) for k, v in stored.read(names).items()}
            # the tensors read become the weights; no reference to the part stays here, so what replaces it frees it
            model.get_submodule(prefix[:-1]).load_state_dict(state, strict=False, assign=True)
            del state
            if model.config.tie_embeddings:  # the embedding is a new tensor now: the head is it again
                model.lm_head.weight = model.wte.weight
            if release:
                after_part(model)
                memory.return_freed_memory()  # small blocks too, which the allocator keeps
    finally:
        memory.keep_freed_memory(kept)
    return model.eval()


def model_parts(model: GPT) -> list[str]:
    """The state-dict prefixes of what `load_checkpoint_in_parts` loads at once: each block, an untied head, then each
    other top-level module."""
    blocks = [f"h.{i}." for i in range(len(model.h))]
    untied = not model.config.tie_embeddings
    rest = [f"{n}." for n, _ in model.named_children() if n != "h" and not (untied and n == "lm_head")]
    return [*blocks, *(["lm_head."] if untied else []), *rest]


@dataclass
class StoredTensors:
    """A safetensors checkpoint's tensors under their litllm names, read a few at a time: `placeholders` gives every
    name and shape (meta tensors), `read` the weights of some."""

    config: Config
    files: dict[str, Path]  # the file of each stored tensor
    stored: dict[str, torch.Tensor]  # meta tensors under the stored names
    # stored names to litllm's (the rules): all of them, checked, or only some litllm names (a part)
    convert: Callable[[dict[str, torch.Tensor], Collection[str] | None], dict[str, torch.Tensor]]
    sources: dict[str, list[str]]  # the stored tensors each litllm tensor is made of

    @classmethod
    def of(cls, path: Path) -> StoredTensors | None:
        """The tensors of a litllm or Hugging Face checkpoint directory; None for another format or an unreadable
        file."""
        fmt = detect_format(path)
        files = [path / WEIGHTS] if fmt == "litllm" else readable_hf_weight_files(path) if fmt == "hf" else None
        found = stored_shapes(files) if files else None
        if not found:
            return None
        stored = {k: t for k, (_, t) in found.items()}
        where = {k: file for k, (file, _) in found.items()}
        if fmt == "litllm":  # its config read as `read_own` reads it

            def as_stored(state: dict[str, torch.Tensor], names: Collection[str] | None) -> dict[str, torch.Tensor]:
                return state if names is None else {k: state[k] for k in names if k in state}

            return cls(read_own_config(path), where, stored, as_stored, {k: [k] for k in stored})
        config = checkpoint_config(path)
        tower = read_hf_config(path).get("model_type") in TEXT_TOWERS

        def rename(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:  # as `read_hf` does
            return with_base_model_prefix(text_tower(state) if tower else state, config.hf_model_type)

        rules = list(match_rules(config))  # once: each part's conversion walks them

        def convert(state: dict[str, torch.Tensor], names: Collection[str] | None) -> dict[str, torch.Tensor]:
            return hf_to_litllm(rename(state), config, names, rules)

        return cls(config, where, stored, convert, hf_sources(stored, rename, rules))

    @functools.cached_property
    def placeholders(self) -> dict[str, torch.Tensor]:
        return self.convert(self.stored, None)

    def read(self, names: list[str]) -> dict[str, torch.Tensor]:
        """The litllm tensors `names`, converted from the stored tensors they are made of, read alone."""
        by_file: dict[Path, list[str]] = {}
        for key in sorted({k for name in names for k in self.sources.get(name, ())}):
            by_file.setdefault(self.files[key], []).append(key)
        real = {k: v for file, keys in by_file.items() for k, v in read_tensors(file, keys).items()}
        converted = self.convert({k: real.get(k, t) for k, t in self.stored.items()}, set(names))  # others: meta
        return {name: converted[name] for name in names}


def readable_hf_weight_files(path: Path) -> list[Path] | None:
    """The safetensors files `read_hf_weights` reads; None when one is missing (`load_checkpoint` reports that)."""
    try:
        return hf_weight_files(path)
    except CheckpointError:
        return None


def hf_sources(
    stored: dict[str, torch.Tensor], rename: Callable[[dict], dict], rules: list[tuple[str, Rule, str]]
) -> dict[str, list[str]]:
    """The stored tensors each litllm tensor is made of: its `Rule`'s Hugging Face names (the layer index filled in,
    `rules` as `match_rules` gives them), traced back through the renaming to the names in the files."""
    origin = {id(t): k for k, t in stored.items()}
    renamed = {k: origin[id(t)] for k, t in rename(stored).items()}
    sources = {}
    for name, rule, i in rules:
        theirs = [t.replace("{i}", i) for t in rule.theirs]
        sources[name] = [renamed[t] for t in theirs if t in renamed]
    return sources


def stored_shapes(files: list[Path]) -> dict[str, tuple[Path, torch.Tensor]] | None:
    """Each tensor of the safetensors files: its file and a meta tensor of its shape, from the headers alone; None
    where a file cannot be opened."""
    from safetensors import SafetensorError, safe_open

    found = {}
    try:
        for file in files:
            with safe_open(str(file), framework="pt") as f:
                for key in f.keys():  # noqa: SIM118 - a safetensors handle, not a dict
                    part = f.get_slice(key)
                    dtype = SAFETENSORS_DTYPES.get(part.get_dtype(), torch.float32)
                    found[key] = file, torch.empty(part.get_shape(), dtype=dtype, device="meta")
    except (SafetensorError, OSError):
        return None
    return found


def read_tensors(file: Path, keys: list[str]) -> dict[str, torch.Tensor]:
    """Tensors `keys` of a safetensors file, copied out of it a block of rows (READ_BYTES) at a time, the file mapped
    only while a block is read: the pages read from a mapped file count in the process as long as it is mapped (and a
    tensor that stayed a view of it would keep it mapped), so a whole embedding would count twice."""
    from safetensors import SafetensorError

    try:
        return {key: read_tensor(file, key) for key in keys}
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"cannot read weights file {str(file)!r}: {' '.join(str(e).split())}") from e


def read_tensor(file: Path, key: str) -> torch.Tensor:
    """One tensor of a safetensors file, as `read_tensors` reads it."""
    from safetensors import safe_open

    out, start = None, 0
    while out is None or start < len(out):
        with safe_open(str(file), framework="pt") as f:
            part = f.get_slice(key)
            shape = part.get_shape()
            if not shape:
                return f.get_tensor(key).clone()
            rows = max(1, READ_BYTES // (4 * math.prod(shape[1:])))
            block = part[start : start + rows]
            if out is None:
                out = torch.empty(shape, dtype=block.dtype)
            out[start : start + len(block)] = block
            del block
        start += rows
    return out


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
            write_json(out / "generation_config.json", ids)
    return out


__all__ = ["checkpoint_config", "convert_to_litllm", "load_checkpoint", "load_checkpoint_in_parts"]
