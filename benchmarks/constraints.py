"""Constrained decoding speed: the llguidance-backed `litllm.inference.constraints` against the hand-written JSON-schema
automaton it replaced (`litllm/schema.py`, read from git history), on the same schemas, tokenizer and token paths.

Per schema: the time to compile it (the first row of a schema not seen before, the tokenizer already set up; the old
automaton makes its states as masks ask for them, so its first masks pay for what its compile leaves out), and per
decoded token the median and p90 time of `allowed(budget)` (the mask) and of a whole step (the mask, `fits` for the
new one, and `advance`). The token paths are drawn with random logits among the tokens both allow, then replayed on
fresh rows of both, with a budget that leaves the new one's full mask in play. Ratios are
old / new: above 1, the new one is faster. The tokenizer is a byte-level BPE trained here on the standard library.

    .venv/bin/python benchmarks/constraints.py
    .venv/bin/python benchmarks/constraints.py --tokenizer-dir /tmp/bpe32k --paths 4 --budget 64
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import pydantic
import torch

from litllm.inference import constraints
from litllm.inference.constraints import schema_dsl
from litllm.tokenizer import Tokenizer, train_bpe

REPO = Path(__file__).resolve().parent.parent


class Address(pydantic.BaseModel):
    city: str
    zip_code: str | None = None


class Person(pydantic.BaseModel):
    name: str
    age: int
    kind: Literal["admin", "user"]
    address: Address
    friends: list[Address] = []


SCHEMAS: dict[str, Any] = {
    "dsl: name, age int, bio": schema_dsl("name, age int, bio"),
    "array of objects": {"type": "array", "items": schema_dsl("name, age int, score float, ok bool"), "minItems": 2},
    "nested, bounds": {
        "type": "object",
        "properties": {
            "user": {
                "type": "object",
                "properties": {
                    "id": {"type": "integer", "minimum": -5, "maximum": 120},
                    "tags": {
                        "type": "array",
                        "items": {"type": "string", "maxLength": 4},
                        "minItems": 1,
                        "maxItems": 3,
                    },
                },
                "required": ["id", "tags"],
            },
            "note": {"type": "string", "minLength": 3},
        },
        "required": ["user", "note"],
    },
    "enum, anyOf": {
        "type": "object",
        "properties": {
            "color": {"enum": ["red", "green", "grün", 7, None]},
            "rank": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
            "nickname": {"type": ["string", "null"]},
        },
        "required": ["color", "nickname"],
    },
    "pydantic Person": Person,
    "unbounded arrays": {
        "type": "object",
        "properties": {
            "text": {"type": "string"},
            "values": {"type": "array", "items": {"type": "number"}},
            "rows": {"type": "array", "items": {"type": "array", "items": {"type": "integer"}}},
        },
        "required": ["text", "values", "rows"],
    },
}


def load_reference(commit: str) -> ModuleType:
    """`litllm/schema.py` as of `commit`, imported as a module of its own."""
    source = subprocess.run(
        ["git", "show", f"{commit}:litllm/schema.py"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    path = Path(tempfile.mkdtemp()) / "litllm_schema_reference.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("litllm_schema_reference", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def stdlib_tokenizer(out_dir: Path, vocab_size: int) -> Tokenizer:
    """A byte-level BPE trained on the standard library's Python sources (tests left out), made once per directory."""
    if (out_dir / "tokenizer.json").is_file():
        return Tokenizer(out_dir)
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    skip = {"test", "tests", "site-packages", "idlelib"}
    files = sorted(p for p in stdlib.rglob("*.py") if not skip & set(p.relative_to(stdlib).parts))
    size = sum(p.stat().st_size for p in files)
    start = time.perf_counter()
    tokenizer = train_bpe(files, vocab_size=vocab_size, out_dir=out_dir, show_progress=False)
    print(f"trained on {len(files)} files, {size / 1e6:.1f} MB, in {time.perf_counter() - start:.0f} s")
    return tokenizer


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """(seconds, result) of one call."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def random_path(rows: list[Any], length: int, slack: int, seed: int) -> list[int]:
    """Token ids drawn with random logits among those every row allows, until one is done, none is left, or there
    are `length` of them. (The two differ: llguidance allows only the canonical tokens of forced text, the old
    automaton no properties beyond the schema's.)"""
    generator = torch.Generator().manual_seed(seed)
    ids: list[int] = []
    while len(ids) < length and not any(row.done for row in rows):
        mask = torch.stack([row.allowed(slack - len(ids)) for row in rows]).all(dim=0)
        mask[list(rows[0].stop_ids)] = False
        if not mask.any():
            break
        logits = torch.randn(mask.shape[0], generator=generator).masked_fill(~mask, float("-inf"))
        token_id = int(torch.multinomial(logits.softmax(-1), 1, generator=generator))
        for row in rows:
            row.advance(token_id)
        ids.append(token_id)
    return ids


def replay(row: Any, path: list[int], budget: int) -> tuple[list[float], list[float]]:
    """(mask seconds, step seconds) of each token of `path` on `row`; a step is the mask, `fits` if the row has it,
    and `advance`."""
    fits = getattr(row, "fits", None)
    masks, steps = [], []
    for i, token_id in enumerate(path):
        left = budget - i
        start = time.perf_counter()
        mask = row.allowed(left)
        masked = time.perf_counter()
        if not mask[token_id] or (fits is not None and not fits(token_id, left)):
            raise ValueError(f"token {token_id} of the path is refused at step {i} after {row.text!r}")
        row.advance(token_id)
        end = time.perf_counter()
        masks.append(masked - start)
        steps.append(end - start)
    return masks, steps


def p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10)[-1]


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor() or "unknown CPU"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--reference-commit", default="2442c07", help="commit whose litllm/schema.py is the old automaton")
    p.add_argument("--tokenizer-dir", type=Path, default=None, help="where the trained tokenizer is kept (reused)")
    p.add_argument("--vocab-size", type=int, default=32000)
    p.add_argument("--paths", type=int, default=6, help="random token paths per schema")
    p.add_argument("--budget", type=int, default=128, help="tokens per path at most")
    p.add_argument("--threads", type=int, default=1, help="torch threads (the old automaton's masks use torch ops)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    old = load_reference(args.reference_commit)
    tokenizer = stdlib_tokenizer(args.tokenizer_dir or Path(tempfile.mkdtemp()) / "bpe", args.vocab_size)
    stops = list(tokenizer.stop_ids)
    old_setup, old_vocabulary = timed(lambda: old._vocabulary(tokenizer))
    new_setup, new_vocabulary = timed(lambda: constraints._vocabulary(tokenizer))
    print(f"CPU: {cpu_name()}; torch threads: {torch.get_num_threads()}; vocabulary: {tokenizer.vocab_size} tokens")
    print(f"tokenizer set-up, once per tokenizer: old {old_setup * 1e3:.0f} ms, new {new_setup * 1e3:.0f} ms")
    print(f"{args.paths} paths of at most {args.budget} tokens per schema; times in microseconds unless marked ms\n")

    header = (
        f"{'schema':<24} {'tokens':>6} | {'compile ms old':>14} {'new':>6} {'ratio':>6} | {'mask med old':>12} "
        f"{'new':>6} {'ratio':>6} | {'mask p90 old':>12} {'new':>6} {'ratio':>6} | {'step med old':>12} {'new':>6} "
        f"{'ratio':>6} | {'step p90 old':>12} {'new':>6} {'ratio':>6}"
    )
    print(header)
    print("-" * len(header))
    pooled: dict[str, list[float]] = {"old mask": [], "new mask": [], "old step": [], "new step": []}
    for name, schema in SCHEMAS.items():
        old_vocabulary._automata.clear()
        new_vocabulary.grammars.clear()
        old_compile, _ = timed(lambda schema=schema: old.JSONConstraint(schema, tokenizer, stops))
        new_compile, _ = timed(lambda schema=schema: constraints.JSONConstraint(schema, tokenizer, stops))
        times: dict[str, list[float]] = {key: [] for key in pooled}
        tokens = 0
        for seed in range(args.paths):
            slack = args.budget + 1000  # the new row's full mask, never its forced closing
            rows = [old.JSONConstraint(schema, tokenizer, stops), constraints.JSONConstraint(schema, tokenizer, stops)]
            path = random_path(rows, args.budget, slack, seed)
            tokens += len(path)
            for kind, row in (("old", old.JSONConstraint(schema, tokenizer, stops)),
                              ("new", constraints.JSONConstraint(schema, tokenizer, stops))):  # fmt: skip
                masks, steps = replay(row, path, slack)
                times[f"{kind} mask"] += masks
                times[f"{kind} step"] += steps
        for key in pooled:
            pooled[key] += times[key]
        print(row_text(name, tokens, old_compile, new_compile, times))
    print("-" * len(header))
    print(row_text("all", len(pooled["old mask"]), None, None, pooled))


def row_text(name: str, tokens: int, old_compile: float | None, new_compile: float | None, times: dict) -> str:
    """One line of the table."""
    us = 1e6

    def triple(old: float, new: float, scale: float, width: int) -> str:
        return f"{old * scale:>{width}.1f} {new * scale:>6.1f} {old / new:>5.1f}x"

    compile_part = triple(old_compile, new_compile, 1e3, 14) if old_compile is not None else f"{'':>14} {'':>6} {'':>6}"
    parts = [
        triple(statistics.median(times["old mask"]), statistics.median(times["new mask"]), us, 12),
        triple(p90(times["old mask"]), p90(times["new mask"]), us, 12),
        triple(statistics.median(times["old step"]), statistics.median(times["new step"]), us, 12),
        triple(p90(times["old step"]), p90(times["new step"]), us, 12),
    ]
    return f"{name:<24} {tokens:>6} | {compile_part} | " + " | ".join(parts)


if __name__ == "__main__":
    main()
