"""The built-in corpus: the running interpreter's own standard-library source files.

Every machine with Python has it (about 34 MB of `.py` files), so training and tokenizer demos need no download.
"""

from __future__ import annotations

import sysconfig
from collections.abc import Iterator
from pathlib import Path

SKIP_DIRS = {"site-packages", "dist-packages", "__pycache__", "test", "tests", "idlelib", "lib2to3"}


def stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_files(max_bytes: int | None = None) -> list[Path]:
    """The standard library's `.py` files in a fixed order (tests and installed packages left out)."""
    files = []
    total = 0
    for path in sorted(stdlib_dir().rglob("*.py")):
        if SKIP_DIRS.intersection(path.relative_to(stdlib_dir()).parts[:-1]):
            continue
        size = path.stat().st_size
        if max_bytes is not None and total + size > max_bytes:
            break
        files.append(path)
        total += size
    return files


def read_texts(files: list[Path]) -> Iterator[str]:
    """The files' contents, skipping any that are not valid UTF-8."""
    for path in files:
        try:
            yield path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
