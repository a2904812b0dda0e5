"""Scoring a model on several tasks: the table `litllm evaluate --tasks` prints and the results.json it writes.

The tasks are `litllm.tasks`' (built-in benchmarks, registered tasks or .json/.jsonl task files); each is scored with
`litllm.tasks.evaluate.score_task`. results.json holds, per task, the accuracy, the number of examples, the number
right and the centered score `(acc - 1/k) / (1 - 1/k)` of a task with k choices (chance is 0, perfect is 1), and a
CORE-like score: the centered scores averaged over the categorical tasks, as nanochat's CORE metric does.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any

from litllm.paths import atomic_write_text, runs_dir
from litllm.tasks.base import Task
from litllm.tasks.files import SUFFIXES
from litllm.tasks.registry import parse_specs, parse_task_list, task_from_spec

# names that stand for several tasks
GROUPS = {
    # the categorical multiple-choice tasks of a base model's CORE-like score
    "core": ("arc_easy", "arc_challenge", "hellaswag", "piqa", "winogrande", "openbookqa", "csqa", "boolq", "copa"),
    # nanochat's chat evaluation
    "chat": ("arc_easy", "arc_challenge", "mmlu", "gsm8k", "humaneval"),
}


def build_tasks(names: str | list[str], limit: int | None = None) -> dict[str, Task]:
    """The tasks `names` asks for (groups expanded), by the spec that named them (`gsm8k[1000:]`), each cut to `limit`
    examples spread over the whole task."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"--limit must be an integer >= 1 (examples per task), got {limit!r}")
    expanded: list[str] = []
    for name in parse_task_list(names):
        for item in GROUPS.get(name, (name,)):
            if item not in expanded:
                expanded.append(item)
    tasks = {_label(name): task_from_spec(name) for name in expanded}
    return {name: spread(task, limit) for name, task in tasks.items()} if limit is not None else tasks


def _label(spec: str) -> str:
    """A task's name in the table: its spec, with a task file's path shortened to the file's stem."""
    name = parse_specs([spec])[0][0]
    return spec.replace(name, Path(name).stem) if name.endswith(SUFFIXES) else spec


def spread(task: Task, limit: int) -> Task:
    """`limit` examples of `task` evenly spaced over it (every subject of MMLU, not the first one's), in order."""
    n = len(task)
    if limit >= n:
        return task
    return task[:: n // limit][:limit]


def centered(accuracy: float, num_choices: float | None) -> float | None:
    """(acc - 1/k) / (1 - 1/k): 0 at chance, 1 when every answer is right; None without choices."""
    if not num_choices or num_choices <= 1:
        return None
    chance = 1.0 / num_choices
    return (accuracy - chance) / (1.0 - chance)


def core_score(results: dict[str, dict[str, Any]]) -> float | None:
    """The centered scores of the categorical tasks, averaged (None when no categorical task was run)."""
    values = [r["centered"] for r in results.values() if r.get("centered") is not None]
    return sum(values) / len(values) if values else None


def evaluate_tasks(
    model: Any,
    tokenizer: Any,
    tasks: dict[str, Task],
    *,
    batch_size: int = 8,
    num_fewshot: int = 0,
    num_samples: int = 1,
    max_tokens: int = 256,
    temperature: float = 0.0,
    top_k: int | None = None,
    scoring: str = "auto",
    show_progress: bool = True,
) -> dict[str, Any]:
    """Score a model (an LLM with tokenizer None, or a GPT and its Tokenizer) on each task: {"tasks": {name: result},
    "core": the CORE-like score, "settings": how it was scored}."""
    from litllm.tasks.evaluate import score_task

    results: dict[str, dict[str, Any]] = {}
    for label, task in tasks.items():
        with _progress(label, len(task), show_progress) as update:
            score = score_task(
                model,
                tokenizer,
                task,
                batch_size=batch_size,
                num_fewshot=num_fewshot,
                num_samples=num_samples,
                max_tokens=max_tokens,
                temperature=temperature,
                top_k=top_k,
                scoring=scoring,
                progress=update,
            )
        results[label] = {
            "accuracy": score.accuracy,
            "count": score.count,
            "correct": score.correct,
            "centered": score.centered,
            "eval_type": score.eval_type,
            "num_choices": score.num_choices,
            "seconds": round(score.seconds, 3),
            "examples_per_second": score.count / score.seconds if score.seconds > 0 else None,
            "samples": [dataclasses.asdict(s) for s in score.samples],
        }
    settings = {
        "batch_size": batch_size,
        "num_fewshot": num_fewshot,
        "num_samples": num_samples,
        "max_tokens": max_tokens,
        "temperature": temperature,
        "top_k": top_k,
        "scoring": scoring,
    }
    return {"tasks": results, "core": core_score(results), "settings": settings}


def format_table(report: dict[str, Any]) -> str:
    """The results as a markdown table, one task a row, with the CORE-like score under it."""
    lines = ["| task | type | examples | accuracy | centered | examples/s |", "|---|---|---|---|---|---|"]
    for name, r in report["tasks"].items():
        c = "" if r["centered"] is None else f"{r['centered']:.4f}"
        speed = "" if r["examples_per_second"] is None else f"{r['examples_per_second']:.1f}"
        lines.append(f"| {name} | {r['eval_type']} | {r['count']} | {r['accuracy']:.4f} | {c} | {speed} |")
    if report.get("core") is not None:
        lines.append(f"\nCORE-like score (mean centered accuracy of the categorical tasks): {report['core']:.4f}")
    return "\n".join(lines)


def default_out_dir(checkpoint_dir: Path | None, source: str) -> Path:
    """Where results go unless --out_dir says: a run's eval/ folder, else runs_dir()/eval/<source's name>."""
    if checkpoint_dir is not None and (checkpoint_dir.parent / "hyperparameters.yaml").exists():
        return checkpoint_dir.parent / "eval"
    name = Path(str(source)).name if checkpoint_dir is None else checkpoint_dir.name
    if name in ("final", ""):
        name = checkpoint_dir.parent.name if checkpoint_dir is not None else "model"
    return runs_dir() / "eval" / name


def write_results(out_dir: Path, report: dict[str, Any]) -> Path:
    """results.json in out_dir, written atomically (NaN-free: a missing score is null)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "results.json"
    atomic_write_text(path, json.dumps(_finite(report), indent=2) + "\n")
    return path


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


class _progress:
    """A tqdm bar over one task's examples (stderr), or nothing when progress is off."""

    def __init__(self, name: str, total: int, show: bool) -> None:
        self.name, self.total, self.show, self.bar, self.t0 = name, total, show, None, time.perf_counter()

    def __enter__(self):
        if self.show:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total, desc=self.name, unit="ex", leave=False, dynamic_ncols=True)

        def update(done: int, total: int) -> None:
            if self.bar is not None:
                self.bar.total = total
                self.bar.n = done
                self.bar.refresh()

        return update

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()
