"""Training a byte-level BPE tokenizer on a corpus: `litllm tokenizer train`, and the cached one for a data module;
measuring how well a tokenizer compresses text: `litllm tokenizer evaluate`.

Both trainings write the tokenizer into a temporary folder beside its destination and rename it into place when
done, so an interrupted run never leaves a half-written tokenizer where a later run would take it for a finished one.

Compression is measured as nanochat's tok_eval does: UTF-8 bytes per token (more is better), per kind of text,
next to GPT-2's tokenizer when it is on this machine.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sys
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from litllm.data.base import DataModule
from litllm.data.stdlib import read_texts, stdlib_files, take_bytes
from litllm.data.text_files import find_text_files, readable_files, stable_hash
from litllm.errors import CheckpointError
from litllm.paths import litllm_home, model_dir, tokenizer_path
from litllm.tokenizer import Tokenizer, train_bpe

GPT2_REPOS = ("openai-community/gpt2", "gpt2")


def train_tokenizer(
    files: list[str] | None = None,
    corpus: str | None = None,
    vocab_size: int = 8192,
    out: str = "tokenizer",
    special_tokens: Sequence[str] = ("<|endoftext|>",),
    max_bytes: int | None = None,
    train_ratio: float = 1.0,
    val_ratio: float = 0.0,
) -> Path:
    """Train a byte-level BPE tokenizer and write tokenizer.json and tokenizer_config.json into a new folder.

    Args:
        files: Text files, folders (their .txt/.md/.py files) or globs to train on.
        corpus: Instead of files: "stdlib" for the Python standard library's source, or a folder of text files.
        vocab_size: Tokens in the vocabulary, special tokens included.
        out: The folder to write; it must not exist yet, or be empty.
        special_tokens: Tokens that text is never split into; the first one is BOS and EOS.
        max_bytes: Train on only the first files, up to this many bytes.
        train_ratio: Train on this leading share of the files (documents).
        val_ratio: Hold out this trailing share of the files and print the tokenizer's bytes per token on them.
    """
    check_ratios(train_ratio, val_ratio)
    out_dir = Path(out).expanduser()
    refuse_to_overwrite(out_dir)
    candidates = take_bytes(corpus_files(files, corpus), max_bytes)
    texts, not_utf8, empty = readable_files(candidates)
    if not texts:
        raise ValueError(
            f"no text to train on: the {len(candidates)} files are empty ({empty}) or not UTF-8 ({not_utf8})"
        )
    train_files, val_files = split_documents(texts, train_ratio, val_ratio)
    megabytes = sum(f.stat().st_size for f in train_files) / 1e6
    print(f"training a {vocab_size}-token byte-level BPE tokenizer on {len(train_files)} files ({megabytes:.1f} MB)")
    if not_utf8:
        print(f"skipped {not_utf8} non-UTF-8 files")
    progress = sys.stderr.isatty()  # tokenizers' bar draws with escape codes: blank lines in a log
    train_into(
        out_dir,
        lambda tmp: train_bpe(train_files, vocab_size, tmp, special_tokens=special_tokens, show_progress=progress),
    )
    if val_files:
        n_bytes, n_tokens = count_bytes_and_tokens(Tokenizer(out_dir), read_texts(val_files))
        print(
            f"validation: {len(val_files)} held-out files, {n_bytes / 1e6:.1f} MB, "
            f"{n_bytes / max(n_tokens, 1):.3f} bytes per token"
        )
    return out_dir


def check_ratios(train_ratio: float, val_ratio: float) -> None:
    """A ValueError unless 0 < train_ratio <= 1, 0 <= val_ratio < 1 and train_ratio + val_ratio <= 1."""
    if not 0 < train_ratio <= 1:
        raise ValueError(f"train_ratio must be in (0, 1], got {train_ratio!r}")
    if not 0 <= val_ratio < 1:
        raise ValueError(f"val_ratio must be in [0, 1), got {val_ratio!r}")
    if train_ratio + val_ratio > 1 + 1e-9:
        raise ValueError(
            f"train_ratio + val_ratio must be at most 1 (the parts may not overlap), got {train_ratio} + {val_ratio}"
        )


def split_documents(files: list[Path], train_ratio: float, val_ratio: float) -> tuple[list[Path], list[Path]]:
    """The leading `train_ratio` of the files to train on and the trailing `val_ratio` to validate on (at least one
    each when the ratio is not 0)."""
    n = len(files)
    n_train = max(1, int(n * train_ratio + 1e-9))
    n_val = max(1, int(n * val_ratio + 1e-9)) if val_ratio > 0 else 0
    if n_train + n_val > n:
        raise ValueError(
            f"{n} file(s) cannot be split into train_ratio={train_ratio} and val_ratio={val_ratio} with at least "
            "one file in each part: give more files or val_ratio=0"
        )
    return files[:n_train], files[n - n_val :]


def count_bytes_and_tokens(tokenizer: Tokenizer, texts: Iterable[str]) -> tuple[int, int]:
    """UTF-8 bytes and tokens (no BOS/EOS added) of the texts."""
    n_bytes = n_tokens = 0
    for text in texts:
        n_bytes += len(text.encode("utf-8"))
        n_tokens += len(tokenizer.encode(text, bos=False))
    return n_bytes, n_tokens


def tokenizer_for_corpus(data: DataModule, vocab_size: int) -> Path:
    """A byte-level BPE tokenizer trained on `data.corpus_texts()`: trained once, then reused from
    $LITLLM_HOME/tokenizers/bpe-<vocab_size>-<hash of the corpus>."""
    corpus_id = data.corpus_id() if hasattr(data, "corpus_id") else content_hash(data.corpus_texts())
    out = litllm_home() / "tokenizers" / f"bpe-{vocab_size}-{stable_hash([corpus_id, vocab_size])[:16]}"
    if not (out / "tokenizer.json").is_file():
        print(f"training a {vocab_size}-token byte-level BPE tokenizer on the {type(data).__name__} corpus -> {out}")
        try:
            progress = sys.stderr.isatty()
            train_into(out, lambda tmp: train_bpe(data.corpus_texts(), vocab_size, tmp, show_progress=progress))
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


def evaluate_tokenizer(
    tokenizer_dir: str | None = None,
    files: list[str] | None = None,
    corpus: str | None = None,
    max_bytes: int | None = 1_000_000,
) -> str:
    """A table of bytes per token of a tokenizer (and of GPT-2's, when it is on this machine) on kinds of text.

    Args:
        tokenizer_dir: A tokenizer folder, a model name or a training phase (sft, ...); default $LITLLM_TOKENIZER_PATH.
        files: Text files, folders or globs: one row each.
        corpus: Instead of files: "stdlib" or a folder of text files, one row per kind of file (`<corpus>/**/*.py`).
        max_bytes: Read at most this many bytes for each row (None: all).
    """
    if max_bytes is not None and max_bytes < 1:
        raise ValueError(f"max_bytes must be >= 1 or None, got {max_bytes!r}")
    tokenizers = {"ours": tokenizer_to_evaluate(tokenizer_dir)}
    samples = evaluation_texts(files, corpus, max_bytes)
    gpt2 = find_gpt2_tokenizer()
    note = ""
    if gpt2 is None:
        where = str(model_dir() / GPT2_REPOS[0])
        note = (
            f"GPT-2's tokenizer is not on this machine (looked in the local models, {where!r} "
            f"and the Hugging Face cache): `litllm download {GPT2_REPOS[0]} --tokenizer_only true` fetches it\n"
        )
    else:
        tokenizers = {"GPT-2": gpt2, **tokenizers}
    return note + format_compression_table(compression_rows(tokenizers, samples), list(tokenizers))


def tokenizer_to_evaluate(tokenizer_dir: str | None) -> Tokenizer:
    """The tokenizer `tokenizer_dir` names, else the one $LITLLM_TOKENIZER_PATH (or $NANOCHAT_TOKENIZER_PATH) gives."""
    source = tokenizer_dir if tokenizer_dir is not None else tokenizer_path()
    if source is None:
        raise ValueError(
            "no tokenizer to evaluate: pass --tokenizer_dir (a tokenizer folder, a model name, or a training phase "
            "such as sft) or set $LITLLM_TOKENIZER_PATH"
        )
    return Tokenizer.from_pretrained(source)


def evaluation_texts(files: list[str] | None, corpus: str | None, max_bytes: int | None) -> dict[str, list[str]]:
    """The rows of the table and their texts: one row per entry of `files`, or per kind of file of the corpus."""
    groups: dict[str, list[Path]] = {}
    if files is not None:
        corpus_files(files, corpus)  # says what is wrong with an empty list, or with both given
        groups = {pattern: find_text_files(pattern) for pattern in files}
    else:
        for path in corpus_files(files, corpus):
            groups.setdefault(f"{corpus}/**/*{path.suffix}", []).append(path)  # a glob of the row's files
    samples = {label: leading_texts(paths, max_bytes) for label, paths in groups.items()}
    empty = [label for label, texts in samples.items() if not texts]
    if empty:
        raise ValueError(f"no UTF-8 text to measure in {', '.join(map(repr, empty))}")
    return samples


def leading_texts(files: list[Path], max_bytes: int | None) -> list[str]:
    """The files' texts, in order, cut once they add up to `max_bytes` UTF-8 bytes."""
    texts, total = [], 0
    for text in read_texts(files):
        data = text.encode("utf-8")
        if max_bytes is not None and total + len(data) > max_bytes:
            rest = data[: max_bytes - total].decode("utf-8", errors="ignore")  # never half a character
            texts += [rest] if rest else []
            break
        texts.append(text)
        total += len(data)
    return [t for t in texts if t]


def find_gpt2_tokenizer() -> Tokenizer | None:
    """GPT-2's tokenizer when it is on this machine (a local model, the model cache, huggingface_hub's cache)."""
    from huggingface_hub import try_to_load_from_cache

    from litllm.checkpoint.nanogpt import gpt2_tokenizer_dir

    with contextlib.suppress(CheckpointError):
        return Tokenizer(gpt2_tokenizer_dir())
    for repo_id in GPT2_REPOS:
        found = try_to_load_from_cache(repo_id, "tokenizer.json")
        if isinstance(found, str):
            return Tokenizer(Path(found).parent)
    return None


def compression_rows(
    tokenizers: dict[str, Tokenizer], samples: dict[str, list[str]]
) -> list[tuple[str, int, list[int]]]:
    """(row label, UTF-8 bytes, tokens of each tokenizer) for each row of texts."""
    rows = []
    for label, texts in samples.items():
        counts = [count_bytes_and_tokens(tokenizer, texts) for tokenizer in tokenizers.values()]
        rows.append((label, counts[0][0], [n_tokens for _, n_tokens in counts]))
    return rows


def format_compression_table(rows: list[tuple[str, int, list[int]]], names: list[str]) -> str:
    """The rows as an aligned text table: tokens and bytes per token for each tokenizer and, when GPT-2 is the first,
    how many fewer tokens than GPT-2 the last one needs (in %, negative when it needs more)."""
    header = ["text", "bytes"] + [f"{name} {column}" for name in names for column in ("tokens", "bytes/token")]
    compare = len(names) > 1 and names[0] == "GPT-2"
    header += ["fewer tokens than GPT-2"] if compare else []
    lines = [header]
    for label, n_bytes, counts in rows:
        cells = [label, str(n_bytes)]
        for n_tokens in counts:
            cells += [str(n_tokens), f"{n_bytes / max(n_tokens, 1):.3f}"]
        if compare:
            cells.append(f"{100 * (counts[0] - counts[-1]) / max(counts[0], 1):+.1f}%")
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    # the label column left-aligned, the numbers right-aligned
    aligned = [
        [line[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(line[1:], widths[1:], strict=True)] for line in lines
    ]
    return "\n".join("  ".join(line) for line in aligned)
