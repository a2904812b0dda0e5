"""nanoGPT checkpoints (`ckpt.pt`) and char-level vocabularies (`meta.pkl`) as litllm's.

A `ckpt.pt` written by nanoGPT's train.py is a torch pickle of a dict: `model_args` (n_layer, n_head, n_embd,
block_size, bias, vocab_size, dropout), `model` (the state dict, keys prefixed `_orig_mod.` after torch.compile),
`config` (the training globals, `dataset` among them), `iter_num`, `best_val_loss` and `optimizer` (ignored). It is
read with `torch.load(weights_only=True)` only: a file that needs anything beyond tensors and plain containers is
refused. The architecture is GPT-2's with exact GELU, LayerNorm (bias optional) and nn.Linear layers, whose
(out, in) weights are laid out as litllm's already: only names change.

Tokenizer, first found wins:
  1. `meta.pkl` (char-level: {'vocab_size', 'itos', 'stoi'}), looked for in this order: beside the checkpoint
     (`<ckpt folder>/meta.pkl`), then `<folder>/data/<dataset>/meta.pkl` for the checkpoint's folder and each of
     its parents, then `data/<dataset>/meta.pkl` under the working directory (nanoGPT's sample.py looks only
     there). It is read by an unpickler that refuses every class, so nothing in it runs, and becomes a
     `tokenizers` tokenizer.json in which each character is one token. Encoding drops characters that are not
     in the vocabulary (nanoGPT's own `encode` raises a KeyError); `unknown_characters` lists them.
  2. GPT-2's BPE from the local cache (`openai-community/gpt2`: the model registry, or its download, also a
     `--tokenizer_only` one); a CheckpointError says how to get it when it is absent.

`converted_checkpoint` turns a checkpoint into a litllm checkpoint folder once, in
`$LITLLM_HOME/converted/nanogpt/<hash of the ckpt.pt path>/<hash of its state>/`: the state is the ckpt.pt's size
and modification time and the tokenizer source found (path, size, modification time). A folder is built under a
temporary name and renamed into place, so a reader never sees half of one; a changed ckpt.pt or meta.pkl gives a new
folder and the older ones of the same path are removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import pickle
import re
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from litllm.checkpoint.layout import NANOGPT_CKPT, checkpoint_kind, copy_tokenizer_files
from litllm.config import Config
from litllm.errors import CheckpointError
from litllm.paths import atomic_write_text, litllm_home, model_dir, write_json

if TYPE_CHECKING:
    import torch
    from tokenizers import Tokenizer as HFTokenizer

META = "meta.pkl"
GPT2_REPO = "openai-community/gpt2"
SOURCE_RECORD = "nanogpt_source.json"  # written last into a converted folder: what it was converted from
FORMAT = 1  # bump when a conversion's output changes, so that older converted folders are not reused
MODEL_ARGS = ("n_layer", "n_head", "n_embd", "block_size", "vocab_size")

# ---- the checkpoint -------------------------------------------------------------------------------------------


def load_nanogpt(path: str | Path) -> dict[str, Any]:
    """The dict a nanoGPT `ckpt.pt` (or the folder holding one) holds, read with `weights_only=True`."""
    import torch

    file = ckpt_file(Path(path))
    try:
        ckpt = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        why = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"{str(file)!r} cannot be read with torch.load(weights_only=True), the only way litllm reads pickles "
            f"(anything else could run code hidden in the file): {why}"
        ) from None
    except (OSError, RuntimeError, EOFError, ValueError) as e:
        raise CheckpointError(f"cannot read nanoGPT checkpoint {str(file)!r}: {e}") from e
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model_args"), dict) or "model" not in ckpt:
        raise CheckpointError(f"{str(file)!r} is not a nanoGPT checkpoint: no 'model_args' and 'model'")
    return ckpt


def nanogpt_info(path: str | Path) -> dict[str, Any]:
    """A nanoGPT checkpoint's `model_args`, training `config`, `iter_num` and `best_val_loss` (a float), and the
    path of its `ckpt.pt`: what describes it, without its weights."""
    file = ckpt_file(Path(path))
    return describe(file, load_nanogpt(file))


def describe(file: Path, ckpt: dict[str, Any]) -> dict[str, Any]:
    """What describes a loaded checkpoint, as JSON values: its path, model_args, training config (its plain values),
    iter_num and best_val_loss."""
    plain = (str, int, float, bool, type(None))
    loss = ckpt.get("best_val_loss")
    return {
        "path": str(file),
        "model_args": {k: v for k, v in ckpt["model_args"].items() if isinstance(v, plain)},
        "config": {k: v for k, v in (ckpt.get("config") or {}).items() if isinstance(v, plain)},
        "iter_num": ckpt.get("iter_num") if isinstance(ckpt.get("iter_num"), int) else None,
        "best_val_loss": None if loss is None else float(loss),
    }


def ckpt_file(path: Path) -> Path:
    """The `ckpt.pt` that `path` is or holds."""
    if path.is_dir():
        path = path / NANOGPT_CKPT
    if not path.is_file():
        raise FileNotFoundError(f"nanoGPT checkpoint {str(path)!r} does not exist")
    return path


def config_from_nanogpt(model_args: dict[str, Any]) -> Config:
    """The `Config` of nanoGPT's GPTConfig fields (`model_args` of a ckpt.pt)."""
    missing = [k for k in MODEL_ARGS if not isinstance(model_args.get(k), int) or isinstance(model_args[k], bool)]
    if missing:
        raise CheckpointError(
            f"nanoGPT model_args {model_args} lack integer values for {', '.join(missing)}; expected "
            f"{', '.join(MODEL_ARGS)} and bias"
        )
    bias = bool(model_args.get("bias", True))
    return Config(
        hf_model_type="gpt2" if bias else None,  # transformers' GPT-2 has no bias-free variant
        block_size=model_args["block_size"],
        vocab_size=model_args["vocab_size"],
        n_layer=model_args["n_layer"],
        n_head=model_args["n_head"],
        n_embd=model_args["n_embd"],
        position_embedding="learned",
        norm_class="layernorm",
        norm_eps=1e-5,
        norm_bias=bias,
        mlp_class="gelu",
        gelu_approximate="none",  # nn.GELU(), not GPT-2's tanh approximation
        qkv_bias=bias,
        proj_bias=bias,
        mlp_bias=bias,
        tie_embeddings=True,
    )


NANOGPT_NAMES = [
    (r"transformer\.wte\.weight", "wte.weight"),
    (r"transformer\.wpe\.weight", "wpe.weight"),
    (r"transformer\.ln_f\.(weight|bias)", r"ln_f.\1"),
    (r"lm_head\.weight", "lm_head.weight"),
    (r"transformer\.h\.(\d+)\.ln_([12])\.(weight|bias)", r"h.\1.norm_\2.\3"),
    (r"transformer\.h\.(\d+)\.attn\.c_attn\.(weight|bias)", r"h.\1.attn.qkv.\2"),
    (r"transformer\.h\.(\d+)\.attn\.c_proj\.(weight|bias)", r"h.\1.attn.proj.\2"),
    (r"transformer\.h\.(\d+)\.mlp\.c_fc\.(weight|bias)", r"h.\1.mlp.fc.\2"),
    (r"transformer\.h\.(\d+)\.mlp\.c_proj\.(weight|bias)", r"h.\1.mlp.proj.\2"),
]
# the causal mask nanoGPT registers as a buffer when torch has no flash attention; not a weight
MASK_BUFFER = re.compile(r"transformer\.h\.\d+\.attn\.bias")


def nanogpt_to_litllm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """nanoGPT tensor names as litllm's (q, k, v rows are already in litllm's order; no transpose)."""
    out = {}
    for key, t in state.items():
        key = key.removeprefix("_orig_mod.")
        if MASK_BUFFER.fullmatch(key):
            continue
        for pattern, repl in NANOGPT_NAMES:
            if re.fullmatch(pattern, key):
                out[re.sub(pattern, repl, key)] = t
                break
        else:
            raise CheckpointError(f"nanoGPT tensor {key!r} has no litllm counterpart")
    return out


def read_nanogpt(path: Path) -> tuple[Config, dict[str, torch.Tensor]]:
    """The config and weights (renamed to litllm's) of a nanoGPT checkpoint."""
    import torch

    ckpt = load_nanogpt(path)
    config = config_from_nanogpt(ckpt["model_args"])
    state = nanogpt_to_litllm(ckpt["model"])
    head, wte = state.get("lm_head.weight"), state.get("wte.weight")
    if head is not None and wte is not None and not torch.equal(head, wte):  # nanoGPT ties them; someone did not
        config.tie_embeddings = False
    return config, state


# ---- meta.pkl and the char-level tokenizer -------------------------------------------------------------------


class _NoClasses(pickle.Unpickler):
    """An unpickler for plain data: any class or function the pickle names is refused, so nothing can run."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"it names {module}.{name}, and a meta.pkl may hold only dicts, ints and strings")


def read_meta(path: str | Path) -> dict[str, Any]:
    """A nanoGPT char-level `meta.pkl`: {'vocab_size', 'itos', 'stoi'}, checked to describe one vocabulary."""
    path = Path(path)
    try:
        meta = _NoClasses(io.BytesIO(path.read_bytes())).load()
    except FileNotFoundError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, AttributeError) as e:
        raise CheckpointError(f"refusing {str(path)!r}: {e}") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("stoi"), dict):
        raise CheckpointError(f"{str(path)!r} is not a char-level meta.pkl: expected a dict with 'stoi' and 'itos'")
    check_vocabulary(meta["stoi"], meta.get("itos"), str(path))
    return meta


def check_vocabulary(stoi: dict[Any, Any], itos: Any, where: str) -> None:
    """`stoi` maps single characters to the ids 0..n-1, and `itos` (when given) is its inverse."""
    chars = [c for c in stoi if not (isinstance(c, str) and len(c) == 1)]
    if chars:
        raise CheckpointError(f"{where}: stoi keys must be single characters, got {chars[:3]!r}")
    if sorted(stoi.values()) != list(range(len(stoi))):
        raise CheckpointError(f"{where}: stoi ids must be the integers 0..{len(stoi) - 1}, each once")
    if itos is not None and (not isinstance(itos, dict) or {i: c for c, i in stoi.items()} != itos):
        raise CheckpointError(f"{where}: itos is not the inverse of stoi")


def char_tokenizer(stoi: dict[str, int]) -> HFTokenizer:
    """A `tokenizers` tokenizer in which each character of `stoi` is one token, with the same id."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models

    # BPE without merges splits text into single characters; no pre-tokenizer, so spaces and newlines stay
    tokenizer = HFTokenizer(models.BPE(vocab=dict(stoi), merges=[]))
    tokenizer.decoder = decoders.Fuse()  # join tokens as they are (the default decoder puts spaces between)
    return tokenizer


def write_char_tokenizer(meta: dict[str, Any], out_dir: str | Path) -> Path:
    """Write the char-level tokenizer of a meta.pkl's dict as `out_dir/tokenizer.json`; returns `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "tokenizer.json", char_tokenizer(meta["stoi"]).to_str(pretty=True))
    return out


def unknown_characters(text: str, stoi: dict[str, int]) -> list[str]:
    """The characters of `text` that a char-level vocabulary lacks (its tokenizer drops them), each once."""
    return sorted(set(text) - set(stoi))


def meta_candidates(ckpt: Path, dataset: str | None, cwd: Path | None = None) -> list[Path]:
    """Where a checkpoint's meta.pkl may be, in the order they are tried (see the module's docstring)."""
    folder = ckpt.resolve().parent
    found = [folder / META]
    if dataset and is_plain_name(dataset):
        found += [root / "data" / dataset / META for root in (folder, *folder.parents)]
        found.append((cwd or Path.cwd()).resolve() / "data" / dataset / META)
    return list(dict.fromkeys(found))


def is_plain_name(name: str) -> bool:
    """A dataset name that is one folder name: not empty, no separator, not '.' or '..'."""
    return bool(name) and name not in (".", "..") and "/" not in name and "\\" not in name and "\0" not in name


def find_meta(ckpt: Path, dataset: str | None, cwd: Path | None = None) -> Path | None:
    """The first meta.pkl of `meta_candidates`, or None."""
    return next((p for p in meta_candidates(ckpt, dataset, cwd) if p.is_file()), None)


def gpt2_tokenizer_dir() -> Path:
    """GPT-2's tokenizer folder from the local cache (registry, download, or tokenizer-only download)."""
    from litllm.errors import UnknownModelError
    from litllm.local_models import resolve

    candidates = []
    for name in (GPT2_REPO, "gpt2"):
        # not registered, or a registered folder that vanished: the next place
        with contextlib.suppress(UnknownModelError, FileNotFoundError):
            candidates.append(resolve(name))
    for folder in (*candidates, model_dir() / GPT2_REPO):  # the last: where a --tokenizer_only download goes
        if (folder / "tokenizer.json").is_file():
            return folder
    raise CheckpointError(
        f"this nanoGPT checkpoint has no char-level meta.pkl, so it uses GPT-2's tokenizer, which is not here; "
        f"get it with `litllm download {GPT2_REPO} --tokenizer_only true` (or put the dataset's meta.pkl beside "
        "the ckpt.pt)"
    )


# ---- conversion into a litllm checkpoint folder --------------------------------------------------------------


def converted_checkpoint(path: str | Path) -> Path:
    """The litllm checkpoint folder of a nanoGPT `ckpt.pt` (or its folder), converted on first use."""
    file = ckpt_file(Path(path)).resolve()
    root = litllm_home() / "converted" / "nanogpt" / digest(str(file))
    for folder in sorted(root.glob("[!.]*")):
        if is_current(folder, file):
            return folder
    return convert(file, root)


def is_current(folder: Path, file: Path) -> bool:
    """Whether a converted folder was made from `file` as it is now, with the tokenizer that would be used now."""
    try:
        record = json.loads((folder / SOURCE_RECORD).read_text())
        return record["state"] == source_state(file, record["dataset"]) and checkpoint_kind(folder) == "litllm"
    except (OSError, ValueError, KeyError, TypeError, CheckpointError):
        return False


def source_state(file: Path, dataset: str | None) -> dict[str, Any]:
    """What a conversion depends on: the ckpt.pt's and the tokenizer source's paths, sizes and modification times."""
    meta = find_meta(file, dataset)
    tokenizer = meta if meta is not None else gpt2_tokenizer_dir() / "tokenizer.json"
    return {"format": FORMAT, "ckpt": stat_of(file), "tokenizer": stat_of(tokenizer), "char_level": meta is not None}


def stat_of(path: Path) -> list[Any]:
    s = path.stat()
    return [str(path.resolve()), s.st_size, s.st_mtime_ns]


def digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


def convert(file: Path, root: Path) -> Path:
    """Convert `file` into a new folder under `root`, renamed into place when complete; older versions go."""
    from litllm.checkpoint.own import load_state_into, save_checkpoint
    from litllm.model import GPT

    ckpt = load_nanogpt(file)
    dataset = (ckpt.get("config") or {}).get("dataset")
    dataset = dataset if isinstance(dataset, str) else None
    state = source_state(file, dataset)
    config = config_from_nanogpt(ckpt["model_args"])
    weights = nanogpt_to_litllm(ckpt.pop("model"))
    ckpt.pop("optimizer", None)  # free it before the copy that saving makes
    target = root / digest(state)
    tmp = root / f".{target.name}.{uuid.uuid4().hex[:12]}.tmp"
    tmp.mkdir(parents=True)
    try:
        if state["char_level"]:
            meta = read_meta(state["tokenizer"][0])
            write_char_tokenizer(meta, tmp)
        else:
            copy_tokenizer_files(Path(state["tokenizer"][0]).parent, tmp, skip=("prompt_style.yaml",))
        model = GPT.empty(config)
        load_state_into(model, weights, f"nanoGPT checkpoint {str(file)!r}")
        check_vocab(config, tmp)
        save_checkpoint(model, tmp)
        write_json(tmp / "nanogpt.json", describe(file, ckpt))
        write_json(tmp / SOURCE_RECORD, {"dataset": dataset, "state": state})
        try:
            os.rename(tmp, target)
        except OSError:  # another process converted the same state meanwhile
            if checkpoint_kind(target) != "litllm":
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for older in root.glob("[!.]*"):
        if older != target:
            shutil.rmtree(older, ignore_errors=True)
    return target


def check_vocab(config: Config, tokenizer_dir: Path) -> None:
    """The tokenizer's ids must all have a row in the model's embedding."""
    from tokenizers import Tokenizer as HFTokenizer

    vocab = HFTokenizer.from_file(str(tokenizer_dir / "tokenizer.json")).get_vocab(with_added_tokens=True)
    size = max(vocab.values(), default=-1) + 1  # as litllm's Tokenizer counts it
    if size > config.vocab_size:
        raise CheckpointError(
            f"the tokenizer found for this nanoGPT checkpoint has {size} tokens, more than the model's vocab_size "
            f"{config.vocab_size}: it is not the tokenizer the model was trained with (put the dataset's meta.pkl "
            "beside the ckpt.pt)"
        )


__all__ = [
    "GPT2_REPO",
    "META",
    "char_tokenizer",
    "check_vocabulary",
    "config_from_nanogpt",
    "converted_checkpoint",
    "find_meta",
    "gpt2_tokenizer_dir",
    "load_nanogpt",
    "meta_candidates",
    "nanogpt_info",
    "nanogpt_to_litllm",
    "read_meta",
    "read_nanogpt",
    "unknown_characters",
    "write_char_tokenizer",
]
