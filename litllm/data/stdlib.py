"""The built-in corpus: the running interpreter's own standard-library source files.

Every machine with Python has it (about 11 MB of `.py` files in 3.11, tests left out), so training and tokenizer
demos need no download.
This module imports nothing heavy; the data module over it is `litllm.data.text_files.PythonStdlib`.
"""

from __future__ import annotations

import os
import sysconfig
from collections.abc import Iterator
from pathlib import Path

SKIP_DIRS = {"site-packages", "dist-packages", "__pycache__", "test", "tests", "idlelib", "lib2to3"}


def stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_files(max_bytes: int | None = None) -> list[Path]:
    """The standard library's `.py` files in a fixed order (tests and installed packages left out)."""
    files = []
    for folder, subfolders, names in os.walk(stdlib_dir()):
        subfolders[:] = [d for d in subfolders if d not in SKIP_DIRS]  # never walk into site-packages
        files += [Path(folder, n) for n in names if n.endswith(".py")]
    return take_bytes(sorted(files), max_bytes)


def take_bytes(files: list[Path], max_bytes: int | None) -> list[Path]:
    """The leading files whose sizes add up to at most `max_bytes` (all of them for None)."""
    if max_bytes is None:
        return files
    taken, total = [], 0
    for path in files:
        total += path.stat().st_size
        if total > max_bytes:
            break
        taken.append(path)
    return taken


def read_texts(files: list[Path]) -> Iterator[str]:
    """The files' contents, skipping any that are not valid UTF-8."""
    for path in files:
        try:
            yield path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
