"""A folder (or glob) of text files, tokenized once into a litdata cache and streamed in windows.

`prepare_data` encodes each UTF-8 file as one document that ends in EOS (and starts with BOS when the tokenizer
adds one), with `litdata.optimize`, separately for the train and validation files. Files that are not UTF-8 are
skipped and counted. The cache is keyed by the files (paths, sizes, modification times), the split settings, the
tokenizer and max_seq_length, so the next run reuses it; a marker written last tells a finished cache from one an
interrupted run left behind, which is rebuilt.

Cache layout (default root $LITLLM_DATA_DIR/text-<key>, see litllm.paths.data_dir, or the `cache_dir` given):
    train/index.json, train/chunk-*.bin    the training files' tokens, one flat stream (litdata TokensLoader)
    val/index.json, val/chunk-*.bin        the validation files' tokens (absent without validation files)
    complete.json                          written last: the key, and file, token and window counts
    .lock                                  held while building (nodes sharing a filesystem build it once)

A `cache_dir` in an object store (s3://bucket/prefix, ...) is built in a local temporary folder and uploaded, its
index files after their chunks and complete.json last; only global rank 0 builds it, and the lock is a local file.
"""

from __future__ import annotations

import functools
import glob
import hashlib
import json
import multiprocessing
import os
import random
import shutil
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock
from litdata import TokensLoader, optimize

from litllm.data.litdata import (
    INDEX,
    StreamingTokens,
    is_remote,
    join,
    object_store,
    read_remote_text,
    require_reachable,
    token_stats,
)
from litllm.data.stdlib import stdlib_dir, stdlib_files
from litllm.paths import atomic_write_text, data_dir
from litllm.tokenizer import Tokenizer

TEXT_EXTENSIONS = (".txt", ".md", ".py")
MARKER = "complete.json"
FORMAT = 1  # bump when the way files become tokens changes, so that older caches are not reused
SPLITS = ("train", "val")


@dataclass(frozen=True)
class Split:
    """A corpus' files with text, split by file into train and validation, and what was left out."""

    train: list[Path]
    val: list[Path]
    not_utf8: int
    empty: int


class TextFiles(StreamingTokens):
    """Pretraining data from plain text files: each file is one document.

    Args:
        path: A folder (searched recursively, hidden folders skipped), a file, or a glob such as `data/**/*.txt`.
        val_split_fraction: Share of the files kept for validation (at least one when there are two or more;
            0 turns validation off). Which files is decided by `seed`.
        extensions: The file endings read from a folder (a glob or a file is taken as is).
        cache_dir: Where the tokenized corpus goes (default: a folder under $LITLLM_DATA_DIR named by a hash of
            the files, the tokenizer and max_seq_length): a folder, or an object store URL (s3://bucket/prefix,
            with the variables `LitData` names) that training then streams from.
        batch_size: Windows of max_seq_length tokens per batch.
        num_workers: Processes that tokenize the files, and DataLoader workers.
        seed: Seed of the train/validation split and of the shuffle.
        storage_options: Arguments of the object store's client for a `cache_dir` URL (see `LitData`).
    """

    def __init__(
        self,
        path: str,
        val_split_fraction: float = 0.05,
        extensions: tuple[str, ...] = TEXT_EXTENSIONS,
        cache_dir: str | None = None,
        batch_size: int = 8,
        num_workers: int = 2,
        seed: int = 42,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(
            path,
            val_split_fraction,
            batch_size=batch_size,
            num_workers=num_workers,
            seed=seed,
            storage_options=storage_options,
        )
        self.extensions = tuple(extensions)
        self.cache_dir = cache_dir
        self._split: Split | None = None
        if cache_dir is not None:
            self.check_store(cache_dir)
        # a cache in an object store is shared by every node: global rank 0 builds it, the others wait
        self.prepare_data_per_node = not self.remote_cache

    def files(self) -> list[Path]:
        """Every file of the corpus, in a fixed order (before the check for text)."""
        return find_text_files(self.path, self.extensions)

    def split(self) -> Split:
        """The files with UTF-8 text, split into train and validation (reads each file once to check it)."""
        if self._split is None:
            self._split = split_files(self.files(), self.val_split_fraction, self.seed, where=self.path)
        return self._split

    def corpus_texts(self) -> Iterator[str]:
        """The training files' texts (validation files left out), for training a tokenizer."""
        for path in self.split().train:
            yield path.read_text(encoding="utf-8")

    def corpus_id(self) -> str:
        """A hash of what the corpus is made of: its files' paths, sizes and modification times, and the split."""
        return stable_hash(
            {"files": file_stats(self.files()), "val_split_fraction": self.val_split_fraction, "seed": self.seed}
        )

    @property
    def remote_cache(self) -> bool:
        return self.cache_dir is not None and is_remote(self.cache_dir)

    def cache_location(self) -> tuple[Path | str, str]:
        """The cache folder (the URL of a remote one) of the connected tokenizer and max_seq_length, and the key
        its marker must hold."""
        tokenizer, max_seq_length = self.require_connected()
        key = stable_hash(
            {
                "corpus": self.corpus_id(),
                "tokenizer": tokenizer_id(tokenizer),
                "max_seq_length": max_seq_length,
                "format": FORMAT,
            }
        )[:16]
        if self.remote_cache:
            return str(self.cache_dir).rstrip("/"), key
        cache = Path(self.cache_dir).expanduser() if self.cache_dir else data_dir() / f"text-{key}"
        return cache, key

    def prepare_data(self) -> None:
        tokenizer, max_seq_length = self.require_connected()
        cache, key = self.cache_location()
        require_reachable(str(cache), self.storage_options)
        with FileLock(str(self._lock_file(cache))):
            manifest = read_manifest(cache, key, self.storage_options)
            if manifest is not None:
                print(f"reusing the tokenized corpus in {cache}")
            elif isinstance(cache, Path):
                manifest = self._build(cache, key, tokenizer, max_seq_length)
            else:
                manifest = self._build_and_upload(cache, key, tokenizer, max_seq_length)
        self._report(manifest, cache, max_seq_length)

    def setup(self, stage: str | None = None) -> None:
        cache, key = self.cache_location()
        require_reachable(str(cache), self.storage_options)
        manifest = read_manifest(cache, key, self.storage_options)
        if manifest is None:
            raise RuntimeError(f"no finished tokenized corpus in {str(cache)!r}: prepare_data() builds it")
        self.train_dataset = self.windows(join(cache, "train"), shuffle=True)
        self.val_dataset = self.windows(join(cache, "val"), shuffle=False) if manifest["val_windows"] > 0 else None

    def _lock_file(self, cache: Path | str) -> Path:
        """The file held while building: in a local cache, or (for a remote one) under $LITLLM_DATA_DIR."""
        if isinstance(cache, Path):
            cache.mkdir(parents=True, exist_ok=True)
            return cache / ".lock"
        data_dir().mkdir(parents=True, exist_ok=True)
        return data_dir() / f"remote-{stable_hash(cache)[:16]}.lock"

    def _build_and_upload(self, cache: str, key: str, tokenizer: Tokenizer, max_seq_length: int) -> dict[str, Any]:
        """`_build` into a local temporary folder, then its files into the object store, complete.json last."""
        store = object_store(cache, self.storage_options)
        # first, so that a run killed during the upload leaves a cache that is rebuilt rather than read
        store.delete_file_or_directory(join(cache, MARKER))
        data_dir().mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".upload-", dir=data_dir()) as tmp:
            manifest = self._build(Path(tmp), key, tokenizer, max_seq_length)
            for name in SPLITS:
                upload_folder(Path(tmp, name), join(cache, name), store)
            store.upload_file(str(Path(tmp, MARKER)), join(cache, MARKER))
        return manifest

    def _build(self, cache: Path, key: str, tokenizer: Tokenizer, max_seq_length: int) -> dict[str, Any]:
        split = self.split()
        if tokenizer.eos_id is None:
            raise ValueError(f"the tokenizer in {str(tokenizer.checkpoint_dir)!r} has no EOS token to end documents")
        (cache / MARKER).unlink(missing_ok=True)
        for name in SPLITS:
            shutil.rmtree(cache / name, ignore_errors=True)
        manifest: dict[str, Any] = {"key": key, "not_utf8_files": split.not_utf8, "empty_files": split.empty}
        for name, files in zip(SPLITS, (split.train, split.val), strict=True):
            tokens = windows = 0
            if files:
                megabytes = sum(f.stat().st_size for f in files) / 1e6
                print(f"tokenizing {len(files)} {name} files ({megabytes:.1f} MB) of {self.path} into {cache / name}")
                tokenize_files(
                    files, cache / name, tokenizer.checkpoint_dir, max_seq_length + 1, self.num_workers,
                    label=f"tokenizing {name}",
                )  # fmt: skip
                documents, tokens, windows = token_stats(cache / name, max_seq_length + 1)
                if documents != len(files):  # litdata logs a failing worker's error and carries on
                    raise RuntimeError(
                        f"tokenizing {self.path!r} wrote {documents} of {len(files)} {name} files into "
                        f"{str(cache / name)!r}; see the errors above"
                    )
            manifest |= {f"{name}_files": len(files), f"{name}_tokens": tokens, f"{name}_windows": windows}
        atomic_write_text(cache / MARKER, json.dumps(manifest, indent=2))
        return manifest

    def _report(self, manifest: dict[str, Any], cache: Path | str, max_seq_length: int) -> None:
        m = manifest
        print(
            f"{cache}: {m['train_files']} train files ({m['train_tokens']:,} tokens), "
            f"{m['val_files']} val files ({m['val_tokens']:,} tokens)"
        )
        if m["not_utf8_files"] or m["empty_files"]:
            print(f"skipped {m['not_utf8_files']} non-UTF-8 files and {m['empty_files']} empty files in {self.path}")
        window = max_seq_length + 1
        if m["train_windows"] == 0:
            raise ValueError(
                f"the training files of {self.path!r} hold {m['train_tokens']} tokens, fewer than one window of "
                f"max_seq_length + 1 = {window}; add text or lower max_seq_length"
            )
        if m["val_files"] and m["val_windows"] == 0:
            warnings.warn(
                f"the validation files of {self.path!r} hold {m['val_tokens']} tokens, fewer than one window of "
                f"max_seq_length + 1 = {window}: no validation will run; raise val_split_fraction or lower "
                "max_seq_length",
                stacklevel=2,
            )


class PythonStdlib(TextFiles):
    """Pretraining data from the running interpreter's standard-library `.py` files: no download, any machine.

    Args:
        max_bytes: Use only the first files (in sorted order) up to this many bytes; None takes them all.
        val_split_fraction: Share of the files kept for validation.
        cache_dir: Where the tokenized corpus goes, a folder or an object store URL (see `TextFiles`).
        batch_size: Windows of max_seq_length tokens per batch.
        num_workers: Processes that tokenize the files, and DataLoader workers.
        seed: Seed of the train/validation split and of the shuffle.
        storage_options: Arguments of the object store's client for a `cache_dir` URL (see `LitData`).
    """

    def __init__(
        self,
        max_bytes: int | None = None,
        val_split_fraction: float = 0.05,
        cache_dir: str | None = None,
        batch_size: int = 8,
        num_workers: int = 2,
        seed: int = 42,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(
            str(stdlib_dir()),
            val_split_fraction=val_split_fraction,
            cache_dir=cache_dir,
            batch_size=batch_size,
            num_workers=num_workers,
            seed=seed,
            storage_options=storage_options,
        )
        self.max_bytes = max_bytes

    def files(self) -> list[Path]:
        return stdlib_files(self.max_bytes)


def find_text_files(path: str | os.PathLike, extensions: tuple[str, ...] = TEXT_EXTENSIONS) -> list[Path]:
    """The files at `path`, sorted: a folder's files with `extensions` (recursively), a file, or a glob's files."""
    expanded = os.path.expanduser(str(path))
    if any(c in expanded for c in "*?["):
        files = sorted(Path(p).resolve() for p in glob.glob(expanded, recursive=True) if os.path.isfile(p))
        if not files:
            raise FileNotFoundError(f"no files match {str(path)!r}")
        return files
    root = Path(expanded)
    if root.is_file():
        return [root.resolve()]
    if not root.is_dir():
        raise FileNotFoundError(f"text corpus {str(path)!r} does not exist")
    wanted = {e.lower() for e in extensions}
    files = []
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = [d for d in subfolders if not d.startswith(".")]  # .git, .venv, ...
        files += [Path(folder, n).resolve() for n in names if Path(n).suffix.lower() in wanted and n[0] != "."]
    if not files:
        raise ValueError(f"no {'/'.join(extensions)} files in {str(path)!r}")
    return sorted(files)


def readable_files(files: list[Path]) -> tuple[list[Path], int, int]:
    """The files that hold UTF-8 text, how many were not UTF-8, and how many were empty (or only whitespace)."""
    readable, not_utf8, empty = [], 0, 0
    for path in files:
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            not_utf8 += 1
            continue
        if text.strip():
            readable.append(path)
        else:
            empty += 1
    return readable, not_utf8, empty


def split_files(files: list[Path], val_split_fraction: float, seed: int, where: str) -> Split:
    """The files with text, split by file: a `val_split_fraction` share (at least one of two or more) for validation."""
    readable, not_utf8, empty = readable_files(files)
    if not readable:
        raise ValueError(
            f"no text to train on in {where!r}: its {len(files)} files are empty ({empty}) or not UTF-8 ({not_utf8})"
        )
    shuffled = readable.copy()
    random.Random(seed).shuffle(shuffled)
    n_val = 0
    if val_split_fraction > 0 and len(readable) >= 2:
        n_val = min(len(readable) - 1, max(1, round(val_split_fraction * len(readable))))
    return Split(train=sorted(shuffled[n_val:]), val=sorted(shuffled[:n_val]), not_utf8=not_utf8, empty=empty)


_files_done: Any = None  # files tokenized so far, shared with litdata's forked workers (`tokenize_files`)


def tokenize_files(
    files: list[Path], out_dir: Path, tokenizer_dir: Path, window: int, num_workers: int, label: str = "tokenizing"
) -> None:
    """Writes the files' tokens into `out_dir` as one litdata token stream, one EOS-ended document per file.

    litdata's own output (an advertisement, its setup steps, every worker's start and end, a progress bar drawn with
    escape codes even into a log) is turned off; on an interactive terminal one bar counts the files instead, fed by
    a counter the forked workers share. A worker's error still ends the call: litdata raises it either way."""
    global _files_done
    start_method = multiprocessing.get_start_method(allow_none=True)
    fork = sys.platform == "linux"
    _files_done = multiprocessing.get_context("fork").Value("q", 0) if fork else None
    stop = threading.Event()
    shown = (
        threading.Thread(target=_show_progress, args=(_files_done, len(files), label, stop), daemon=True)
        if fork and sys.stderr.isatty()
        else None
    )
    if shown:
        shown.start()
    try:
        optimize(
            # fork needs no `if __name__ == "__main__"` guard in the user's script and starts in milliseconds; the
            # workers only read files and run the tokenizer. Elsewhere (macOS, Windows) litdata's default, spawn.
            start_method="fork" if fork else None,
            fn=functools.partial(tokenize_file, tokenizer_dir=str(Path(tokenizer_dir).resolve())),
            inputs=[str(f) for f in files],
            output_dir=str(out_dir),
            chunk_size=window * 1024,  # tokens; windows never straddle two chunks, so few are lost at chunk ends
            item_loader=TokensLoader(),
            num_workers=max(1, min(num_workers, len(files))),
            keep_data_ordered=True,  # the same files give the same chunks, whatever the workers' timing
            mode="overwrite",
            verbose=False,
        )
    finally:
        stop.set()
        if shown:
            shown.join()
        # optimize sets the process-wide start method to spawn, which would slow every later DataLoader worker
        multiprocessing.set_start_method(start_method, force=True)


def _show_progress(done: Any, total: int, label: str, stop: threading.Event) -> None:
    """A bar on stderr over the files tokenized, until `stop` is set."""
    from tqdm.auto import tqdm

    with tqdm(total=total, desc=label, unit="file", file=sys.stderr, leave=False, dynamic_ncols=True) as bar:
        while not stop.wait(0.5):
            bar.update(done.value - bar.n)
        bar.update(done.value - bar.n)


def tokenize_file(path: str, tokenizer_dir: str) -> torch.Tensor:
    """One file's token ids, EOS last; runs in litdata's worker processes, which load the tokenizer once."""
    text = Path(path).read_text(encoding="utf-8")
    tokens = torch.tensor(_tokenizer(tokenizer_dir).encode(text, eos=True), dtype=torch.int32)
    if _files_done is not None:
        with _files_done.get_lock():
            _files_done.value += 1
    return tokens


@functools.lru_cache(maxsize=1)
def _tokenizer(tokenizer_dir: str) -> Tokenizer:
    return Tokenizer(tokenizer_dir)


def read_manifest(cache: Path | str, key: str, storage_options: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The marker of a finished cache built for `key`, or None (missing, unreadable, or another key)."""
    try:
        if isinstance(cache, Path):
            text: str | None = (cache / MARKER).read_text()
        else:
            text = read_remote_text(join(cache, MARKER), storage_options)
        manifest = json.loads(text) if text is not None else None
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and manifest.get("key") == key else None


def upload_folder(folder: Path, url: str, store: Any) -> None:
    """Replace what is at `url` with the files of an optimized `folder` (if there is one), its index last."""
    store.delete_file_or_directory(url + "/")
    if not folder.is_dir():
        return
    files = sorted(folder.iterdir(), key=lambda f: f.name == INDEX)  # a reader sees no index before its chunks
    print(f"uploading {len(files)} files ({sum(f.stat().st_size for f in files) / 1e6:.1f} MB) to {url}")
    for file in files:
        store.upload_file(str(file), join(url, file.name))


def tokenizer_id(tokenizer: Tokenizer) -> str:
    """A hash of what decides the token ids: the tokenizer's model file and its BOS/EOS choices."""
    digest = hashlib.sha256()
    for name in ("tokenizer.json", "tokenizer.model"):
        path = tokenizer.checkpoint_dir / name
        if path.is_file():
            digest.update(name.encode() + path.read_bytes())
    digest.update(repr((tokenizer.bos_id, tokenizer.eos_id, tokenizer.use_bos)).encode())
    return digest.hexdigest()


def file_stats(files: list[Path]) -> list[tuple[str, int, int]]:
    """(absolute path, size, modification time in ns) of each file: a cheap stand-in for its contents."""
    stats = [(f, f.stat()) for f in files]
    return [(str(f.resolve()), s.st_size, s.st_mtime_ns) for f, s in stats]


def stable_hash(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()
