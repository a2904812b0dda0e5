"""The local model registry: names for checkpoint directories, their aliases, and the default model.

A name resolves to a downloaded checkpoint (`$LITLLM_MODEL_DIR/<org>/<name>`, known as `org/name` and,
when no other model shares it, as `name`) or to a directory the user registered with `add` (a training run's
`final/`, a converted Hugging Face model). Registrations live in `$LITLLM_HOME/models.json`, aliases in
`aliases.json`, the default model in `default_model.txt` and the default embedding model in
`default_embedding_model.txt` (the file names `llm` uses for its own defaults).

What a user names in general (a path, a catalog name, a Hub repo id too) goes through the one resolver,
`litllm.checkpoint.sources`, which asks this registry after paths.

This module imports no torch, so the CLI's listing commands and the `llm` plugin start fast.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from litllm.checkpoint.layout import LAYOUTS, checkpoint_kind
from litllm.errors import UnknownModelError
from litllm.paths import atomic_write_text, litllm_home, model_dir

MODELS_FILE = "models.json"
ALIASES_FILE = "aliases.json"
DEFAULT_FILE = "default_model.txt"
DEFAULT_EMBEDDING_FILE = "default_embedding_model.txt"
# one or two path components ("tiny" or "org/tiny"), each starting with a word character: no "..", no "/x"
NAME = re.compile(r"^\w[\w.+-]*(/\w[\w.+-]*)?$")


@dataclass(frozen=True)
class ModelEntry:
    """A model the registry knows: its name, its checkpoint directory, where it came from, its aliases."""

    name: str
    path: Path
    source: Literal["downloaded", "registered"]
    aliases: tuple[str, ...] = ()


def check_name(name: str, what: str = "model name") -> str:
    """`name` if it is a valid model name or alias; a ValueError says what a name may look like."""
    if not isinstance(name, str) or not NAME.match(name):
        raise ValueError(
            f"invalid {what} {name!r}: use letters, digits, '_', '-', '.', '+', optionally one '/' "
            "(like 'tiny' or 'org/tiny'), starting each part with a letter or digit"
        )
    return name


def list_models() -> list[ModelEntry]:
    """Every model of the registry, registered ones first, each name once."""
    aliases = read_json(ALIASES_FILE)
    names = model_paths()
    return [
        ModelEntry(name, path, source, tuple(a for a, target in aliases.items() if target == name))
        for name, (path, source) in names.items()
    ]


def model_paths() -> dict[str, tuple[Path, Literal["downloaded", "registered"]]]:
    """Canonical name -> (directory, source): registered models, then downloaded checkpoints."""
    out: dict[str, tuple[Path, Literal["downloaded", "registered"]]] = {
        name: (Path(path), "registered") for name, path in read_json(MODELS_FILE).items()
    }
    for path in downloaded_dirs():
        out.setdefault(f"{path.parent.name}/{path.name}", (path, "downloaded"))
    return out


def downloaded_dirs() -> list[Path]:
    """The checkpoint directories of the model cache, <model_dir>/<org>/<name> (litllm.paths.model_dir), sorted."""
    root = model_dir()
    return sorted(p for p in root.glob("*/*") if checkpoint_kind(p) is not None)


def canonical_name(name: str) -> str | None:
    """The registry name `name` stands for: itself, or the one downloaded model whose short name it is."""
    names = model_paths()
    if name in names:
        return name
    matches = [n for n, (_, source) in names.items() if source == "downloaded" and n.split("/")[-1] == name]
    return matches[0] if len(matches) == 1 else None


def lookup(name_or_alias: str) -> ModelEntry:
    """The model a name or alias stands for; UnknownModelError lists the known names."""
    target = read_json(ALIASES_FILE).get(name_or_alias, name_or_alias)
    name = canonical_name(target)
    if name is None:
        raise UnknownModelError(f"unknown model {name_or_alias!r}; {known_names_hint()}")
    return next(e for e in list_models() if e.name == name)


def resolve(name_or_alias: str) -> Path:
    """The checkpoint directory of a model name or alias; UnknownModelError lists the known names."""
    entry = lookup(name_or_alias)
    if not entry.path.is_dir():
        raise FileNotFoundError(
            f"model {entry.name!r} is registered at {str(entry.path)!r}, which no longer exists "
            f"(`litllm models remove {entry.name}` forgets it)"
        )
    return entry.path


def known_names_hint() -> str:
    """A sentence naming the known models and aliases, for error messages."""
    names = [*model_paths(), *read_json(ALIASES_FILE)]
    if not names:
        return "no models are registered (`litllm download ORG/NAME` or `litllm models add NAME PATH` adds one)"
    return f"known: {', '.join(names)}"


def add(name: str, path: str | Path) -> ModelEntry:
    """Register the checkpoint directory `path` under `name` (replacing an earlier registration of it)."""
    check_name(name)
    path = Path(path).expanduser().resolve()
    if not path.exists():
        raise FileNotFoundError(f"checkpoint directory {str(path)!r} does not exist")
    if checkpoint_kind(path) is None:
        raise ValueError(f"{str(path)!r} is not a checkpoint directory: expected {LAYOUTS}")
    if model_paths().get(name, (None, "registered"))[1] == "downloaded":
        raise ValueError(f"{name!r} is the name of a downloaded model; choose another name")
    if name in read_json(ALIASES_FILE):
        raise ValueError(f"{name!r} is already an alias; `litllm models alias remove {name}` frees it")
    write_json(MODELS_FILE, {**read_json(MODELS_FILE), name: str(path)})
    return ModelEntry(name, path, "registered")


def remove(name: str) -> None:
    """Forget a registered model and the aliases that point at it (its files stay where they are)."""
    registered = read_json(MODELS_FILE)
    if name not in registered:
        downloaded = canonical_name(name)
        if downloaded is not None:
            path, _ = model_paths()[downloaded]
            raise ValueError(f"{name!r} was downloaded to {str(path)!r}; delete that folder to remove it")
        raise UnknownModelError(f"no registered model {name!r}; {known_names_hint()}")
    del registered[name]
    write_json(MODELS_FILE, registered)
    aliases = read_json(ALIASES_FILE)
    write_json(ALIASES_FILE, {a: target for a, target in aliases.items() if target != name})


def set_alias(alias: str, name: str) -> None:
    """Make `alias` another name for the model `name` (replacing what the alias pointed at before)."""
    check_name(alias, "alias")
    target = canonical_name(read_json(ALIASES_FILE).get(name, name))
    if target is None:
        raise UnknownModelError(f"unknown model {name!r}; {known_names_hint()}")
    if alias in model_paths():
        raise ValueError(f"alias {alias!r} is already the name of a model")
    write_json(ALIASES_FILE, {**read_json(ALIASES_FILE), alias: target})


def remove_alias(alias: str) -> None:
    """Forget an alias; UnknownModelError (a KeyError) if there is none of that name."""
    aliases = read_json(ALIASES_FILE)
    if alias not in aliases:
        raise UnknownModelError(f"no alias {alias!r}; aliases: {', '.join(aliases) or '(none)'}")
    del aliases[alias]
    write_json(ALIASES_FILE, aliases)


def set_default_model(name: str | None) -> None:
    """Make `name` (a model name or alias) the model used when none is named; None unsets it."""
    write_default(DEFAULT_FILE, name)


def get_default_model(default: str | None = None) -> str | None:
    """The default model's name or alias, or `default` when none was set."""
    return read_default(DEFAULT_FILE, default)


def set_default_embedding_model(name: str | None) -> None:
    """Make `name` (a model name or alias) the embedding model used when none is named; None unsets it."""
    write_default(DEFAULT_EMBEDDING_FILE, name)


def get_default_embedding_model(default: str | None = None) -> str | None:
    """The default embedding model's name or alias, or `default` when none was set."""
    return read_default(DEFAULT_EMBEDDING_FILE, default)


def write_default(filename: str, name: str | None) -> None:
    """Keep the model name or alias `name` in $LITLLM_HOME/`filename` after checking it resolves; None removes it."""
    path = litllm_home() / filename
    if name is None:
        path.unlink(missing_ok=True)
        return
    resolve(name)
    atomic_write_text(path, name + "\n")


def read_default(filename: str, default: str | None) -> str | None:
    """The name kept in $LITLLM_HOME/`filename`, or `default` when there is none."""
    path = litllm_home() / filename
    name = path.read_text().strip() if path.is_file() else ""
    return name or default


def read_json(filename: str) -> dict[str, str]:
    """A {str: str} JSON file under $LITLLM_HOME; an invalid one is set aside with a warning and read as empty."""
    path = litllm_home() / filename
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
        if isinstance(data, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
            return data
        problem = "is not a JSON object of strings"
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        problem = f"is not valid JSON ({e})"
    kept = path.with_name(path.name + ".invalid")
    os.replace(path, kept)
    warnings.warn(f"{str(path)!r} {problem}; moved it to {str(kept)!r} and started a new one", stacklevel=2)
    return {}


def write_json(filename: str, data: dict[str, str]) -> None:
    """Write a {str: str} JSON file under $LITLLM_HOME atomically."""
    atomic_write_text(litllm_home() / filename, json.dumps(data, indent=2, sort_keys=True) + "\n")


__all__ = [
    "ModelEntry",
    "UnknownModelError",
    "add",
    "checkpoint_kind",
    "get_default_embedding_model",
    "get_default_model",
    "list_models",
    "litllm_home",
    "lookup",
    "remove",
    "remove_alias",
    "resolve",
    "set_alias",
    "set_default_embedding_model",
    "set_default_model",
]
