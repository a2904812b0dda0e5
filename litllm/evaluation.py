"""`litllm evaluate SOURCE --tasks arc_easy,mmlu,gsm8k`: load a model, score it on tasks, print the table and write
results.json (the scoring itself is `litllm.tasks.results`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal, Optional

from litllm.tasks import results


def evaluate_tasks(
    source: str,
    tasks: str = "core",
    limit: Optional[int] = None,
    num_fewshot: int = 0,
    batch_size: int = 8,
    out_dir: Optional[Path] = None,
    num_samples: int = 1,
    max_tokens: int = 256,
    temperature: float = 0.0,
    top_k: Optional[int] = None,
    scoring: Literal["auto", "letters", "continuation", "loglikelihood"] = "auto",
    device: Optional[str] = None,
    dtype: Optional[str] = None,
    quantize: Optional[str] = None,
) -> None:
    """Score a model on tasks (built-in benchmarks or .json/.jsonl task files); print a table, write results.json.

    Args:
        source: Checkpoint directory, run, base|mid|sft|rl (the newest run of that phase), or model name.
        tasks: Comma-separated tasks (`arc_easy,mmlu,gsm8k`; a split and a slice: `gsm8k[1000:]`, `mmlu:dev`),
            `core` (the categorical benchmarks) or `chat`, or .json/.jsonl task files.
        limit: At most this many examples a task, spread evenly over it.
        num_fewshot: Solved examples of the same task shown before each question.
        batch_size: Examples scored (or generated) at once.
        out_dir: Where results.json goes (default: the run's eval/ folder, else <runs dir>/eval/<name>).
        num_samples: Samples per generative example; it counts as right if any is (pass@k).
        max_tokens: Longest generated answer, in tokens.
        temperature: Sampling temperature of generative tasks (0: greedy).
        top_k: Sample among the k likeliest tokens.
        scoring: How categorical tasks are scored: the answer letter's logit (`letters`, chat models), the mean loss
            of each answer's text (`continuation`, base models, nanochat's CORE), its summed log-probability
            (`loglikelihood`, lm-eval's acc), or `auto` (letters when the model has a chat format).
        device: cpu, cuda, ... (default: cuda if available).
        dtype: float32, bfloat16 or float16 (default: the checkpoint's).
        quantize: int8, bnb.nf4 or bnb.int8.
    """
    from litllm.api import LLM

    if isinstance(num_fewshot, bool) or num_fewshot < 0:
        raise ValueError(f"--num_fewshot must be an integer >= 0, got {num_fewshot!r}")
    if batch_size < 1:
        raise ValueError(f"--batch_size must be an integer >= 1, got {batch_size!r}")
    built = results.build_tasks(tasks, limit)  # a bad task name or limit fails before the model loads
    llm = LLM.load(source, device=device, dtype=dtype)
    if quantize is not None:
        llm.distribute(accelerator=llm.device.type, quantize=quantize)
    report = results.evaluate_tasks(
        llm,
        None,
        built,
        batch_size=batch_size,
        num_fewshot=num_fewshot,
        num_samples=num_samples,
        max_tokens=max_tokens,
        temperature=temperature,
        top_k=top_k,
        scoring=scoring,
        show_progress=sys.stderr.isatty(),
    )
    report["source"] = str(source)
    report["checkpoint"] = str(llm.checkpoint_dir) if llm.checkpoint_dir is not None else None
    path = results.write_results(out_dir or results.default_out_dir(llm.checkpoint_dir, source), report)
    print(results.format_table(report))
    print(f"results: {path}")
