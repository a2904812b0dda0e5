"""The built-in corpus: the running interpreter's own standard-library source files.

Every machine with Python has it (about 34 MB of `.py` files), so training and tokenizer demos need no download.
"""

from __future__ import annotations

import sysconfig
from collections.abc import Iterator
from pathlib import Path

from litllm.data.text_files import TextFiles, take_bytes

SKIP_DIRS = {"site-packages", "dist-packages", "__pycache__", "test", "tests", "idlelib", "lib2to3"}


class PythonStdlib(TextFiles):
    """Pretraining data from the standard library's `.py` files: a `TextFiles` over `stdlib_files(max_bytes)`.

    Args:
        max_bytes: Use only the first files (in sorted order) up to this many bytes; None takes them all.
        val_split_fraction: Share of the files kept for validation.
        batch_size: Windows of max_seq_length tokens per batch.
        num_workers: Processes that tokenize the files, and DataLoader workers.
        seed: Seed of the train/validation split and of the shuffle.
    """

    def __init__(
        self,
        max_bytes: int | None = None,
        val_split_fraction: float = 0.05,
        batch_size: int = 8,
        num_workers: int = 2,
        seed: int = 42,
    ) -> None:
        super().__init__(
            str(stdlib_dir()),
            val_split_fraction=val_split_fraction,
            batch_size=batch_size,
            num_workers=num_workers,
            seed=seed,
        )
        self.max_bytes = max_bytes

    def files(self) -> list[Path]:
        return stdlib_files(self.max_bytes)


def stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_files(max_bytes: int | None = None) -> list[Path]:
    """The standard library's `.py` files in a fixed order (tests and installed packages left out)."""
    root = stdlib_dir()
    files = [p for p in sorted(root.rglob("*.py")) if not SKIP_DIRS.intersection(p.relative_to(root).parts[:-1])]
    return take_bytes(files, max_bytes)


def read_texts(files: list[Path]) -> Iterator[str]:
    """The files' contents, skipping any that are not valid UTF-8."""
    for path in files:
        try:
            yield path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
