"""The catalog of named configs: one YAML file per family in `litllm/model_configs/`, each with the family's
`defaults` and a list of `models` that override them (`Config.from_name` reads it)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from litllm.errors import UnknownModelError
from litllm.paths import read_yaml_mapping

CATALOG_DIR = Path(__file__).parent / "model_configs"


@lru_cache(maxsize=1)
def named_configs() -> dict[str, dict[str, Any]]:
    """All catalog entries, keyed by lower-cased name, as plain dicts of Config fields."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(CATALOG_DIR.glob("*.yaml")):
        family = read_yaml_mapping(path, "catalog family")
        defaults = family.get("defaults", {})
        for entry in family["models"]:
            cfg = {**defaults, **entry}
            key = cfg["name"].lower()
            if key in out:
                raise ValueError(f"{path.name}: model name {cfg['name']!r} is defined twice")
            out[key] = cfg
    return out


def catalog_rows() -> list[tuple[str, str, str | None]]:
    """(name, family, hf_repo) for every catalog entry, in file order."""
    rows = []
    for path in sorted(CATALOG_DIR.glob("*.yaml")):
        for entry in read_yaml_mapping(path, "catalog family")["models"]:
            rows.append((entry["name"], path.stem, entry.get("hf_repo")))
    return rows


def family_of(name: str) -> str:
    """The catalog file (family) a named config comes from."""
    for model_name, family, _ in catalog_rows():
        if model_name.lower() == name.lower():
            return family
    raise UnknownModelError(f"unknown model name {name!r}")


__all__ = ["CATALOG_DIR", "family_of", "named_configs", "catalog_rows"]
