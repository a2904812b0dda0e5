"""Evaluation throughput: `litllm evaluate`'s scoring against lm-eval and against a loop of single generate calls.

    .venv/bin/python benchmarks/eval.py                                   # both tables, pythia-70m shape
    .venv/bin/python benchmarks/eval.py --lm-eval-python /path/to/venv/bin/python --rows 200

Categorical (ARC-Easy rows scored as lm-eval's `arc_easy` does, `scoring="loglikelihood"`: the summed
log-probability of each answer after "Question: ...\\nAnswer:"): litllm's `score_task` against lm-eval's HFLM
(transformers) on the same exported checkpoint and the same rows, in examples/s. lm-eval brings ~50 packages, so it
runs in a Python of its own (`--lm-eval-python`: a virtual environment with `pip install lm-eval transformers torch
accelerate`), on a local task YAML over a JSONL of the rows, timed around `simple_evaluate` alone (model and rows
loaded before the clock starts, as `score_task`'s are). Without it the row says so. Target: >= 1.5x. Both sides run
float32 on the CPU with the same batch size and threads. When this Python has lm-eval (`pip install
'litllm[lm-eval]'`), a third row runs lm-eval over litllm's own model through `litllm.lm_eval_model`. All three pick
the choice of largest summed log-probability, so their accuracies agree.

Generative (GSM8K, `--samples` samples per question at temperature 0.8, pass@k): `score_task` (each question's
samples share one prefill, every question in one batched scheduler) against a loop of single `LLM.generate` calls,
one per sample. Target: >= 4x.

The model has random weights (the rates do not depend on what it knows) and a BPE tokenizer trained here on the
standard library's source. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from litllm.api import LLM  # noqa: E402
from litllm.config import Config  # noqa: E402
from litllm.tasks import get_task  # noqa: E402
from litllm.tasks.evaluate import score_task  # noqa: E402

LM_EVAL_DRIVER = """
import json, sys, time
import torch
from lm_eval import evaluator
from lm_eval.tasks import TaskManager, get_task_dict
kind, ckpt, include, batch, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
torch.set_num_threads(threads)
if kind == "hf":
    from lm_eval.models.huggingface import HFLM
    lm = HFLM(pretrained=ckpt, tokenizer=ckpt, dtype="float32", batch_size=batch, device="cpu")
else:  # litllm's own model through its lm-eval adapter
    from litllm.lm_eval_model import LitLLMLM
    lm = LitLLMLM(pretrained=ckpt, dtype="float32", batch_size=batch, device="cpu")
tasks = list(get_task_dict(["arc_easy_local"], TaskManager(include_path=include, include_defaults=False)).values())
t0 = time.perf_counter()  # the model and the rows are loaded: requests, tokens, forwards and metrics are timed
out = evaluator.simple_evaluate(model=lm, tasks=tasks, bootstrap_iters=0, log_samples=False)
seconds = time.perf_counter() - t0
print(json.dumps({"seconds": seconds, "acc": out["results"]["arc_easy_local"]["acc,none"]}))
"""

TASK_YAML = """
task: arc_easy_local
dataset_path: json
dataset_kwargs:
  data_files: {data}
test_split: train
output_type: multiple_choice
doc_to_text: "{{{{query}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: gold
metric_list:
  - metric: acc
"""


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def build_checkpoint(root: Path, model: str) -> Path:
    """A Hugging Face checkpoint (random weights, a BPE tokenizer trained on the stdlib) that both sides load."""
    from litllm.data.stdlib import read_texts, stdlib_files
    from litllm.tokenizer import train_bpe

    tok = root / "tok"
    train_bpe(read_texts(stdlib_files(max_bytes=2_000_000)), 8192, tok, show_progress=False)
    config = Config.from_name(model, vocab_size=8192)
    torch.manual_seed(0)
    LLM.load(config, init="random", tokenizer_dir=tok).save(root / "litllm")
    subprocess.run(
        [sys.executable, "-m", "litllm.cli", "convert", "to_hf", str(root / "litllm"), str(root / "hf")],
        check=True,
        capture_output=True,
    )
    return root / "hf"


def rate_litllm_categorical(llm: LLM, rows: int, batch_size: int) -> tuple[float, float]:
    task = get_task("arc_easy", stop=rows)
    score = score_task(llm, None, task, batch_size=batch_size, scoring="loglikelihood")
    return score.count / score.seconds, score.accuracy


def write_lm_eval_task(rows: int, work: Path) -> Path:
    """A local lm-eval task over the same ARC-Easy rows (its target_delimiter " " puts the space before each choice,
    as `score_task` does); returns the folder to include."""
    data = work / "arc_rows.jsonl"
    with data.open("w") as f:
        for example in get_task("arc_easy", stop=rows):
            row = {"query": example["context"], "choices": example["choices"], "gold": example["answer"]}
            f.write(json.dumps(row) + "\n")
    include = work / "tasks"
    include.mkdir(exist_ok=True)
    (include / "arc_easy_local.yaml").write_text(TASK_YAML.format(data=data))
    return include


def rate_lm_eval(
    python: str, kind: str, checkpoint: Path, rows: int, batch_size: int, threads: int, work: Path
) -> tuple[float, float]:
    """(examples/s, accuracy) of lm-eval's `simple_evaluate` with HFLM (`kind` "hf") or litllm's adapter ("litllm")."""
    include = write_lm_eval_task(rows, work)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    args = [kind, str(checkpoint), str(include), str(batch_size), str(threads)]
    out = subprocess.run([python, "-c", LM_EVAL_DRIVER, *args], capture_output=True, text=True, env=env, cwd=work)
    if out.returncode:
        raise RuntimeError(f"the lm-eval driver ({kind}) failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return rows / result["seconds"], result["acc"]


def has_lm_eval() -> bool:
    return importlib.util.find_spec("lm_eval") is not None


def rate_generative(llm: LLM, rows: int, samples: int, max_tokens: int) -> tuple[float, float, float]:
    """(batched examples/s, looped examples/s, batched pass@k)."""
    task = get_task("gsm8k", stop=rows)
    score = score_task(llm, None, task, num_samples=samples, temperature=0.8, max_tokens=max_tokens, batch_size=rows)
    t0 = time.perf_counter()
    for i, example in enumerate(task):
        question = example["messages"][0]["content"]
        for s in range(samples):
            llm.chat(
                [{"role": "user", "content": question}], max_new_tokens=max_tokens, temperature=0.8, seed=i * 97 + s
            )
    looped = rows / (time.perf_counter() - t0)
    return score.count / score.seconds, looped, score.accuracy


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="pythia-70m", help="registry config whose shape the random model has")
    p.add_argument("--rows", type=int, default=200, help="ARC-Easy rows of the categorical table")
    p.add_argument("--batch-size", type=int, default=16, help="batch size of both sides' categorical scoring")
    p.add_argument("--gsm8k-rows", type=int, default=8, help="GSM8K questions of the generative table")
    p.add_argument("--samples", type=int, default=8, help="samples per GSM8K question")
    p.add_argument("--max-tokens", type=int, default=64, help="tokens generated per sample")
    p.add_argument("--lm-eval-python", help="a Python with lm-eval installed (else the lm-eval row is skipped)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"CPU: {cpu_name()}, {args.threads} threads; torch {torch.__version__}; model: {args.model} shape")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        hf_dir = build_checkpoint(work, args.model)
        llm = LLM.load(str(hf_dir), device="cpu", dtype="float32")  # the same weights and dtype as HFLM's

        ours, acc = rate_litllm_categorical(llm, args.rows, args.batch_size)
        print(f"\nCategorical: ARC-Easy, {args.rows} rows, scored as lm-eval's acc, batch {args.batch_size}, float32")
        print("| scorer | examples/s | accuracy (choice rule) | litllm / it |\n|---|---|---|---|")
        print(f"| litllm score_task | {ours:.1f} | {acc:.3f} (summed log-prob) | |")
        if has_lm_eval():
            theirs, their_acc = rate_lm_eval(
                sys.executable, "litllm", hf_dir, args.rows, args.batch_size, args.threads, work
            )
            rule = f"{their_acc:.3f} (summed log-prob)"
            print(f"| lm-eval + litllm adapter | {theirs:.1f} | {rule} | {ours / theirs:.2f}x |")
        else:
            print("| lm-eval + litllm adapter | skipped: pip install 'litllm[lm-eval]' | | |")
        if args.lm_eval_python:
            theirs, their_acc = rate_lm_eval(
                args.lm_eval_python, "hf", hf_dir, args.rows, args.batch_size, args.threads, work
            )
            verdict = "PASS" if ours / theirs >= 1.5 else "FAIL"
            print(
                f"| lm-eval HFLM | {theirs:.1f} | {their_acc:.3f} (summed log-prob) | {ours / theirs:.2f}x "
                f"({verdict}, target 1.5x) |"
            )
        else:
            print("| lm-eval HFLM | skipped: give --lm-eval-python | | |")

        batched, looped, pass_k = rate_generative(llm, args.gsm8k_rows, args.samples, args.max_tokens)
        ratio = batched / looped
        print(f"\nGenerative: GSM8K, {args.gsm8k_rows} questions x {args.samples} samples, {args.max_tokens} tokens")
        print("| way | questions/s | ratio |\n|---|---|---|")
        print(
            f"| score_task (shared prefill, batched) | {batched:.2f} | {ratio:.2f}x "
            f"({'PASS' if ratio >= 4 else 'FAIL'}, target 4x) |"
        )
        print(f"| loop of single generate calls | {looped:.2f} | 1.00x |")
        print(f"pass@{args.samples} of the batched run: {pass_k:.3f} (random weights: 0 expected)")


if __name__ == "__main__":
    main()
