"""Model lookups of the control API: what can be loaded, and where a requested model lives (confined to a root)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litllm.checkpoint.layout import checkpoint_kind
from litllm.checkpoint.sources import locate
from litllm.local_models import check_name
from litllm.local_models import list_models as registry_models
from litllm.paths import read_json_object, read_yaml_mapping
from litllm.serve.errors import APIError


def list_models(models_root: Path) -> dict[str, Any]:
    """Named configs, and local checkpoints (the registry's and those under the models root) with their configs."""
    from litllm.catalog import named_configs

    local = [
        {"name": e.name, "path": str(e.path), "source": e.source, "config": read_config(e.path)}
        for e in registry_models()
    ]
    known = {Path(item["path"]).resolve() for item in local}
    for path in checkpoints_under(models_root):
        if path.resolve() not in known:
            name = str(path.relative_to(models_root))
            local.append({"name": name, "path": str(path), "source": "models_root", "config": read_config(path)})
    return {"named": sorted(named_configs()), "local": local, "models_root": str(models_root)}


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


def resolve_model_source(model_path: str | None, model_name: str | None, models_root: Path) -> str:
    """What the worker should load: a checkpoint directory inside the models root, or a model by name."""
    if model_path is not None:
        return str(checkpoint_under_root(model_path, models_root))
    return named_source(model_name)


def checkpoint_under_root(model_path: str, models_root: Path) -> Path:
    """The checkpoint directory `model_path` names under the models root; a 400 for any other path."""
    root = models_root.resolve()
    path = (root / model_path).resolve()
    if not path.is_relative_to(root):
        raise APIError(
            400, f"model_path {model_path!r} is outside the models root", param="model_path", code="path_outside_root"
        )
    if checkpoint_kind(path) is None:
        raise APIError(
            400,
            f"model_path {model_path!r} is not a checkpoint directory under the models root",
            param="model_path",
            code="not_a_checkpoint",
        )
    return path


def named_source(model_name: str) -> str:
    """The local checkpoint directory of a model name (never a path: those go through model_path), or the name
    itself when it is a Hub repo or catalog name the worker downloads; a 400 for a name nothing knows."""
    try:
        found = locate(check_name(model_name), paths=False)
    except (ValueError, FileNotFoundError) as e:  # an invalid, unknown or unpublished name; a vanished folder
        raise APIError(400, str(e), param="model_name", code="model_not_found") from None
    return str(found) if isinstance(found, Path) else model_name
