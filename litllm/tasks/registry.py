"""Tasks by name: the built-in ones (`arc_easy`, `mmlu`, `gsm8k`, ...), those registered by a user, and files.

`get_task(name, start=, stop=, step=)` is what the CLI's `--tasks` calls; a name ending in .json/.jsonl is a task
file (`litllm.tasks.files`).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Optional

from litllm.tasks.base import Task, check_slice
from litllm.tasks.files import SUFFIXES, FileTask

_TASKS: dict[str, tuple[Callable[..., Task], str]] = {}
_builtins_loaded = False


class UnknownTaskError(ValueError):
    """A task name that is neither registered nor a task file."""


def register_task(name: str, factory: Callable[..., Task], description: str = "") -> None:
    """Make `factory(start=, stop=, step=)` the task called `name` (a later registration replaces it)."""
    if not isinstance(name, str) or not name or any(c in name for c in ",| \t"):
        raise ValueError(f"a task name is a non-empty string without commas, bars or spaces, got {name!r}")
    _TASKS[name] = (factory, description)


def list_tasks() -> dict[str, str]:
    """Every task name get_task accepts (files aside), with a line saying what it is."""
    _load_builtins()
    return {name: description for name, (_, description) in sorted(_TASKS.items())}


def get_task(name: str, start: int = 0, stop: int | None = None, step: int = 1, split: str | None = None) -> Task:
    """The task called `name` (or read from the task file `name`), sliced to start:stop:step; `split` picks another
    split of a built-in task than the one it is evaluated on (`arc_easy` validation to train on, test to score)."""
    check_slice(start, stop, step)
    if name.endswith(SUFFIXES) or Path(name).suffix in SUFFIXES:
        if split is not None:
            raise ValueError(f"a task file has no splits: {name!r} was asked for split {split!r}")
        return FileTask(name, start=start, stop=stop, step=step)
    _load_builtins()
    if name not in _TASKS:
        close = difflib.get_close_matches(name, list(_TASKS), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise UnknownTaskError(
            f"unknown task {name!r}{hint}; tasks: {', '.join(sorted(_TASKS))}, or a .json/.jsonl task file"
        )
    factory, _ = _TASKS[name]
    if split is None:
        return factory(start=start, stop=stop, step=step)
    try:
        return factory(start=start, stop=stop, step=step, split=split)
    except TypeError as err:
        if "split" not in str(err):
            raise
        raise ValueError(f"task {name!r} has one split only; drop ':{split}'") from None


SPEC = re.compile(
    r"^(?P<name>[^\[\]:]+?)(?::(?P<split>\w+))?(?:\[(?P<start>\d*)(?::(?P<stop>\d*))?(?::(?P<step>\d*))?\])?$"
)
Spec = tuple[str, int, Optional[int], int, Optional[str]]  # name, start, stop, step, split


def parse_specs(tasks: str | list[str]) -> list[Spec]:
    """`"arc_easy:validation[0:200],gsm8k"` -> [(name, start, stop, step, split), ...], repeats kept (they
    oversample)."""
    items = tasks if isinstance(tasks, list) else tasks.split(",")
    specs = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        match = SPEC.match(item)
        if match is None:
            raise ValueError(
                f"bad task spec {item!r}: write NAME, NAME:SPLIT, NAME[start:stop] or NAME:SPLIT[start:stop:step]"
            )
        start, stop, step = (match.group(k) for k in ("start", "stop", "step"))
        bounds = (int(start or 0), int(stop) if stop else None, int(step) if step else 1)
        specs.append((match.group("name"), *bounds, match.group("split")))
    if not specs:
        raise ValueError(f"no task named in {tasks!r}: give a comma-separated list such as arc_easy,gsm8k")
    return specs


def task_from_spec(item: str) -> Task:
    """The task one spec names: `arc_easy`, `arc_easy:validation`, `gsm8k[1000:]`, `mmlu:dev[0:100:2]`, a file."""
    [(name, start, stop, step, split)] = parse_specs([item])
    return get_task(name, start=start, stop=stop, step=step, split=split)


def parse_task_list(names: str | list[str]) -> list[str]:
    """`arc_easy,mmlu` or `arc_easy|mmlu` (nanochat's form) or a list: the names, in order, without repeats."""
    items = names if isinstance(names, list) else names.replace("|", ",").split(",")
    out: list[str] = []
    for item in (i.strip() for i in items):
        if item and item not in out:
            out.append(item)
    if not out:
        raise UnknownTaskError(f"no task named in {names!r}; tasks: {', '.join(list_tasks())}")
    return out


def _load_builtins() -> None:
    global _builtins_loaded
    if not _builtins_loaded:
        _builtins_loaded = True
        from litllm.tasks.builtin import register_all  # the built-in tasks

        register_all(register_task)
