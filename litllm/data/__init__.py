"""Data sources for training: each file holds one source.

The classes load on first use (`from litllm.data import TextFiles`), so importing the package stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_SOURCES = {
    "DataModule": "litllm.data.base",
    "LitData": "litllm.data.litdata",
    "PythonStdlib": "litllm.data.text_files",
    "TextFiles": "litllm.data.text_files",
}
__all__ = list(_SOURCES)


def __getattr__(name: str) -> Any:
    if name not in _SOURCES:
        raise AttributeError(f"module 'litllm.data' has no attribute {name!r}")
    return getattr(importlib.import_module(_SOURCES[name]), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
