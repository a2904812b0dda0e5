"""Training a byte-level BPE tokenizer on a corpus: `litllm tokenizer train`, and the cached one for a data module.

Both write the tokenizer into a temporary folder beside its destination and rename it into place when done, so
an interrupted run never leaves a half-written tokenizer where a later run would take it for a finished one.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from litllm.data.base import DataModule
from litllm.data.stdlib import stdlib_files, take_bytes
from litllm.data.text_files import find_text_files, readable_files, stable_hash
from litllm.paths import litllm_home
from litllm.tokenizer import train_bpe


def train_tokenizer(
    files: list[str] | None = None,
    corpus: str | None = None,
    vocab_size: int = 8192,
    out: str = "tokenizer",
    special_tokens: Sequence[str] = ("<|endoftext|>",),
    max_bytes: int | None = None,
) -> Path:
    """Train a byte-level BPE tokenizer and write tokenizer.json and tokenizer_config.json into a new folder.

    Args:
        files: Text files, folders (their .txt/.md/.py files) or globs to train on.
        corpus: Instead of files: "stdlib" for the Python standard library's source, or a folder of text files.
        vocab_size: Tokens in the vocabulary, special tokens included.
        out: The folder to write; it must not exist yet, or be empty.
        special_tokens: Tokens that text is never split into; the first one is BOS and EOS.
        max_bytes: Train on only the first files, up to this many bytes.
    """
    out_dir = Path(out).expanduser()
    refuse_to_overwrite(out_dir)
    candidates = take_bytes(corpus_files(files, corpus), max_bytes)
    texts, not_utf8, empty = readable_files(candidates)
    if not texts:
        raise ValueError(
            f"no text to train on: the {len(candidates)} files are empty ({empty}) or not UTF-8 ({not_utf8})"
        )
    megabytes = sum(f.stat().st_size for f in texts) / 1e6
    print(f"training a {vocab_size}-token byte-level BPE tokenizer on {len(texts)} files ({megabytes:.1f} MB)")
    if not_utf8:
        print(f"skipped {not_utf8} non-UTF-8 files")
    train_into(out_dir, lambda tmp: train_bpe(texts, vocab_size, tmp, special_tokens=special_tokens))
    return out_dir


def tokenizer_for_corpus(data: DataModule, vocab_size: int) -> Path:
    """A byte-level BPE tokenizer trained on `data.corpus_texts()`: trained once, then reused from
    $LITLLM_HOME/tokenizers/bpe-<vocab_size>-<hash of the corpus>."""
    corpus_id = data.corpus_id() if hasattr(data, "corpus_id") else content_hash(data.corpus_texts())
    out = litllm_home() / "tokenizers" / f"bpe-{vocab_size}-{stable_hash([corpus_id, vocab_size])[:16]}"
    if not (out / "tokenizer.json").is_file():
        print(f"training a {vocab_size}-token byte-level BPE tokenizer on the {type(data).__name__} corpus -> {out}")
        try:
            train_into(out, lambda tmp: train_bpe(data.corpus_texts(), vocab_size, tmp))
        except FileExistsError:
            if not (out / "tokenizer.json").is_file():  # else another process trained the same one meanwhile
                raise
    return out


def corpus_files(files: list[str] | None, corpus: str | None) -> list[Path]:
    """The files named by exactly one of `files` (paths, folders, globs) and `corpus` ("stdlib" or a folder)."""
    if (files is None) == (corpus is None):
        raise ValueError("give exactly one of --files (paths or globs) and --corpus ('stdlib' or a folder)")
    if corpus == "stdlib":
        return stdlib_files()
    if corpus is not None:
        return find_text_files(corpus)
    if not files:
        raise ValueError("--files is empty: give text files, folders or globs to train on")
    return list(dict.fromkeys(f for pattern in files for f in find_text_files(pattern)))


def refuse_to_overwrite(out: Path) -> None:
    if out.exists() and not (out.is_dir() and not any(out.iterdir())):
        raise FileExistsError(f"{str(out)!r} already exists and is not an empty folder; choose another output folder")


def train_into(out: Path, train: Callable[[Path], Any]) -> None:
    """Runs `train(folder)` on a new folder beside `out`, then renames it to `out` (which may be an empty folder)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.{uuid.uuid4().hex[:12]}.tmp"
    tmp.mkdir()
    try:
        train(tmp)
        refuse_to_overwrite(out)
        if out.is_dir():
            out.rmdir()
        try:
            os.rename(tmp, out)
        except OSError as e:  # `out` was filled between the check and the rename
            raise FileExistsError(f"{str(out)!r} already exists and is not an empty folder") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def content_hash(texts: Iterable[str]) -> str:
    """A hash of a sequence of texts (where one ends counts too)."""
    digest = hashlib.sha256()
    for text in texts:
        digest.update(hashlib.sha256(text.encode()).digest())
    return digest.hexdigest()
