"""Model lookups of the control API: what can be loaded, and which checkpoint a request's model name or path means.

One resolver serves every field that names a model (`model_type`, `model_name`, `model_path`, and the `model_type`
a training request finetunes): a value that looks like a path is confined to the server's roots (its models root
and runs root), anything else is a model name (the local registry, a catalog name, a Hub repo id) and is never
read as a path on this machine.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from litllm.checkpoint.layout import NANOGPT_CKPT, checkpoint_kind, detect_format
from litllm.checkpoint.sources import locate
from litllm.errors import CheckpointError, HubError, UnknownModelError
from litllm.local_models import NAME
from litllm.local_models import list_models as registry_models
from litllm.local_models import resolve as registered
from litllm.paths import read_json_object, read_yaml_mapping
from litllm.serve.errors import APIError
from litllm.serve.jobs import TRAIN_CONFIG

# a value ending like a weights file is a path, never a model name
FILE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".safetensors")


def list_models(models_root: Path, runs_root: Path | None = None, runs: Sequence[Path] = ()) -> dict[str, Any]:
    """What `/api/models` shows: loadable names and trained runs (nanoGPT's fields: those under the runs root and
    `runs`, the ones this server started), and litllm's fuller listing."""
    from litllm.catalog import catalog_rows, named_configs

    entries = registry_models()
    local = [{"name": e.name, "path": str(e.path), "source": e.source, "config": read_config(e.path)} for e in entries]
    known = {Path(item["path"]).resolve() for item in local}
    for path in checkpoints_under(models_root):
        if path.resolve() not in known:
            name = str(path.relative_to(models_root))
            local.append({"name": name, "path": str(path), "source": "models_root", "config": read_config(path)})
    names = [e.name for e in entries] + [alias for e in entries for alias in e.aliases]
    published = [name for name, _, repo in catalog_rows() if repo]
    return {
        "pretrained_models": list(dict.fromkeys([*names, *published])),
        "trained_models": trained_models(runs_root, runs) if runs_root is not None else [],
        "named": sorted(named_configs()),
        "local": local,
        "models_root": str(models_root),
    }


def trained_models(runs_root: Path, started: Sequence[Path] = (), depth: int = 3) -> list[dict[str, Any]]:
    """The runs at most `depth` levels under `runs_root` and those in `started`: the runs `/api/train` started
    (with their train_config.json), other training runs with a final checkpoint, and nanoGPT's (a folder holding a
    ckpt.pt); each with the dataset and model_type it was trained with, and whether its checkpoint is there yet."""
    found: list[Path] = []
    level = [runs_root] if runs_root.is_dir() else []
    for _ in range(depth + 1):
        runs = [p for p in level if p != runs_root and is_run(p)]
        found += runs
        level = [c for p in level if p not in runs for c in sorted(p.iterdir()) if c.is_dir() and c.name[0] != "."]
    found += [run for run in started if run not in found and is_run(run)]
    return [run_entry(run, runs_root) for run in found]


def run_entry(run: Path, runs_root: Path) -> dict[str, Any]:
    """A run as `/api/models` lists it: its name under the runs root, the path that loads it, and its config."""
    name = str(run.relative_to(runs_root)) if run.is_relative_to(runs_root) else run.name
    if is_nanogpt_run(run):
        ckpt = run / NANOGPT_CKPT
        return {"name": name, "path": str(ckpt), "config": nanogpt_config(ckpt), "ready": True}
    ready = checkpoint_kind(run / "final") is not None
    return {"name": name, "path": str(run), "config": run_config(run), "ready": ready}


def is_run(path: Path) -> bool:
    return (path / TRAIN_CONFIG).is_file() or checkpoint_kind(path / "final") is not None or is_nanogpt_run(path)


def is_nanogpt_run(path: Path) -> bool:
    return checkpoint_kind(path) == "nanogpt" and path.is_dir()


def nanogpt_config(file: Path) -> dict[str, Any]:
    """The dataset, starting model and batch size a nanoGPT ckpt.pt was trained with (its `config`), read with
    torch.load(weights_only=True) on a memory map, so that its tensors are not read; {} when it cannot be read."""
    import torch

    try:
        config = torch.load(file, map_location="cpu", weights_only=True, mmap=True).get("config") or {}
    except Exception:  # noqa: BLE001 - a listing names what it can; loading the checkpoint says what is wrong
        return {}
    start = config.get("init_from")
    return {
        "dataset": config.get("dataset"),
        "model_type": start if start not in (None, "scratch", "resume") else None,
        "batch_size": config.get("batch_size"),
    }


def run_config(run: Path) -> dict[str, Any]:
    """A run's train_config.json, else what its hyperparameters.yaml says of its data, start and batch size."""
    try:
        if (run / TRAIN_CONFIG).is_file():
            return {"dataset": None, "model_type": None, **read_json_object(run / TRAIN_CONFIG)}
        recipe = read_yaml_mapping(run / "hyperparameters.yaml")
    except (OSError, ValueError):
        return {}
    data = recipe.get("data") or {}
    args = data.get("init_args") or {} if isinstance(data, dict) else {}
    model = recipe.get("model") or {}
    return {
        "dataset": args.get("path") or (data.get("class_path") if isinstance(data, dict) else None),
        "model_type": model.get("init_from") if isinstance(model, dict) else None,
        "batch_size": args.get("batch_size"),
    }


def checkpoints_under(root: Path, depth: int = 3) -> list[Path]:
    """Checkpoint directories at most `depth` levels below `root`."""
    found, level = [], [root] if root.is_dir() else []
    for _ in range(depth + 1):
        found += [p for p in level if checkpoint_kind(p) is not None]
        level = [c for p in level if checkpoint_kind(p) is None for c in sorted(p.iterdir()) if c.is_dir()]
    return found


def read_config(path: Path) -> dict[str, Any] | None:
    """A checkpoint's architecture: model_config.yaml (litllm, LitGPT) or config.json (Hugging Face)."""
    try:
        if (path / "model_config.yaml").is_file():
            return read_yaml_mapping(path / "model_config.yaml")
        if (path / "config.json").is_file():
            return read_json_object(path / "config.json")
    except (OSError, ValueError):
        return None
    return None


@dataclass(frozen=True)
class ModelRef:
    """What a request's model field names: a local checkpoint, or a Hub repo id still to download, and what clients
    will call it (a name as given, a path by its folder's name)."""

    target: Path | str
    name: str


def model_id(source: str) -> str:
    """The name clients use for a model: a Hub id or registry name as given, a directory by its own name (a
    training run's `final/` and a checkpoint file such as nanoGPT's `ckpt.pt` by their folder's)."""
    path = os.path.normpath(str(source))
    if os.path.isfile(path) or (os.path.isdir(path) and os.path.basename(path) == "final"):
        path = os.path.dirname(path)
    return os.path.basename(path) if os.path.isdir(path) else str(source)


def resolve_model(value: str, field: str, roots: Sequence[Path], cwd: Path | None = None) -> ModelRef:
    """The checkpoint a request's `field` names: a local checkpoint (a Path) or a Hub repo id to download (a str).

    In order: a value that cannot be a model name (`/abs`, `./x`, `a/b/c`, `x.pt`) is a path; a name of the local
    registry is its folder; a value that exists relative to a root or the working directory is a path; anything
    else is a catalog name or Hub repo id. Paths must lie inside one of `roots`; a 400 names the value otherwise.
    """
    cwd = cwd or Path.cwd()
    if NAME.match(value) and not value.lower().endswith(FILE_SUFFIXES):
        try:
            return ModelRef(registered(value), value)
        except UnknownModelError:
            pass
        except FileNotFoundError as e:  # registered, but its folder is gone
            raise APIError(400, str(e), param=field, code="model_not_found") from None
        if not any((base / value).exists() for base in (*roots, cwd)):
            return ModelRef(named_model(value, field), value)
    path = loadable(confined_path(value, field, roots, cwd), value, field)
    return ModelRef(path, model_id(str(path)))


def named_model(name: str, field: str) -> Path | str:
    """The converted download of a catalog name or Hub repo id, or the repo id when it is not downloaded yet."""
    try:
        return locate(name, paths=False)
    except (ValueError, FileNotFoundError, UnknownModelError) as e:  # unknown or unpublished; a vanished folder
        raise APIError(400, str(e), param=field, code="model_not_found") from None


def confined_path(value: str, field: str, roots: Sequence[Path], cwd: Path) -> Path:
    """The existing path `value` names inside one of `roots` (a relative one is tried against each root, then the
    working directory); symbolic links are followed before the check."""
    given = Path(value).expanduser()
    bases = [] if given.is_absolute() else [*roots, cwd]
    candidates = [(base / given).resolve() for base in bases] if bases else [given.resolve()]
    inside = [p for p in candidates if any(p.is_relative_to(root) for root in roots)]
    existing = next((p for p in inside if p.exists()), None)
    if existing is not None:
        return existing
    where = " or ".join(repr(str(root)) for root in roots)
    if not inside or any(p.exists() for p in candidates):
        raise APIError(
            400, f"{field} {value!r} is outside the server's roots ({where})", param=field, code="path_outside_root"
        )
    raise APIError(400, f"{field} {value!r} does not exist under {where}", param=field, code="model_not_found")


def loadable(path: Path, value: str, field: str) -> Path:
    """The checkpoint a path stands for: a checkpoint folder (or file) itself, or a training run's final/."""
    if checkpoint_kind(path / "final") is not None:
        return path / "final"
    if (path / "checkpoints").is_dir() or (path / TRAIN_CONFIG).is_file():
        raise APIError(
            409,
            f"{field} {value!r} is a training run with no final/ checkpoint yet: it is still training, or it failed "
            "(GET /api/train/<job id> shows its state)",
            param=field,
            code="run_not_finished",
        )
    try:
        detect_format(path)
    except (CheckpointError, FileNotFoundError) as e:
        raise APIError(400, f"{field} {value!r}: {e}", param=field, code="not_a_checkpoint") from None
    return path


def served_adapters(value: str, source: str | None, init: str = "pretrained") -> dict[str, str]:
    """`--adapters name1=DIR1,name2=DIR2` as {name: adapter folder}, checked before the server starts: each name new,
    neither the base's nor 'base'; each DIR an adapter folder (or a run whose final/ holds one) that fits the base."""
    from litllm.lora.files import check_base, read_adapter

    if source is None:
        raise ValueError("--adapters needs a base model to serve them over: give SOURCE, --model_type or --model_path")
    base, base_id = base_config(source, init), model_id(source)
    adapters: dict[str, Any] = {}
    for entry in value.split(","):
        name, eq, folder = (part.strip() for part in entry.partition("="))
        if not (eq and name and folder):
            raise ValueError(f"--adapters entry {entry.strip()!r} is not NAME=DIR (several: a=DIR1,b=DIR2)")
        if name in adapters:
            raise ValueError(f"--adapters names {name!r} twice: each adapter needs a name of its own")
        try:
            check_adapter_name(name, base_id)
            adapters[name] = read_adapter(folder)
            check_base(base, adapters[name])
        except (OSError, ValueError) as e:
            raise ValueError(f"--adapters {name}={folder}: {e}") from None
    kinds = {a.lora.quantize or "none": name for name, a in adapters.items()}
    if len(kinds) > 1:  # one base serves them all: it is 4-bit for all or for none
        shown = ", ".join(f"{name} ({kind})" for kind, name in kinds.items())
        raise ValueError(f"--adapters were trained over bases quantized differently ({shown}): serve them apart")
    return {name: str(a.path.resolve()) for name, a in adapters.items()}


def base_config(source: str, init: str = "pretrained") -> Any:
    """The architecture of the model `source` names, without loading its weights."""
    from litllm.checkpoint.loading import checkpoint_config
    from litllm.checkpoint.sources import resolve_checkpoint
    from litllm.config import Config

    return Config.from_name(source) if init == "random" else checkpoint_config(resolve_checkpoint(source))


def check_adapter_name(name: str, base_id: str | None) -> None:
    """A ValueError unless `name` can be a served adapter's model name (one the base's name or 'base' does not take)."""
    from litllm.lora.layers import BASE

    if name in (BASE, base_id):
        raise ValueError(f"adapter name {name!r} is the base model's name: give the adapter another name")
    if not NAME.match(name):
        raise ValueError(f"adapter name {name!r}: use letters, digits, _ . + - (and at most one /)")


def resolve_adapters(adapters: dict[str, str], base_id: str, roots: Sequence[Path]) -> dict[str, str]:
    """The adapter folders a load_model request names ({name: path under the server's roots}, a run: its final/);
    a 400 names the bad entry. Whether each fits the base is checked when the worker loads them."""
    from litllm.lora.files import adapter_dir

    folders = {}
    for name, value in adapters.items():
        field = f"adapters.{name}"
        try:
            check_adapter_name(name, base_id)
            folders[name] = str(adapter_dir(confined_path(value, field, roots, Path.cwd())))
        except (OSError, ValueError) as e:
            raise APIError(400, f"{field}: {e}", param=field, code="adapter_not_loadable") from None
    return folders


def download(repo_id: str, field: str) -> Path:
    """A Hub repo's converted checkpoint, downloaded now if need be; a 503 with the Hub's reason when it cannot be."""
    from litllm.checkpoint.hub import download as fetch

    try:
        return fetch(repo_id, progress=None)
    except HubError as e:
        raise APIError(503, str(e), param=field, code="hub_unavailable") from None
    except (CheckpointError, OSError) as e:
        raise APIError(400, f"{field} {repo_id!r}: {e}", param=field, code="not_a_checkpoint") from None
