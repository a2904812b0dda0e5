"""What weight quantization costs in quality: logit difference and held-out perplexity on the trained debug model.

The model is the one `litllm pretrain --config config_hub/pretrain/debug.yaml` trains (about 3 minutes on 2 cores;
trained into a temporary folder unless `--run` names an existing run folder). The held-out text is that run's
validation files: the files its data module (`PythonStdlib`, with the run's own split settings) keeps out of
training, tokenized with the run's tokenizer as training does (one EOS-ended document per file), cut into windows
of the model's block size, `--max-tokens` scored tokens in all. Each variant is loaded fresh with `LLM.load` and
placed with `distribute(accelerator="cpu", precision=..., quantize=...)`: float32 (the reference), bfloat16, int8
over float32, int8 over bfloat16, and bitsandbytes' int8 where it runs on this CPU. Per variant: weight bytes,
perplexity and its change from float32, bits per byte, the largest and mean |logit - float32 logit| over every
logit of the held-out tokens, and how often its top-1 token is float32's.

    .venv/bin/python benchmarks/quantize.py
    .venv/bin/python benchmarks/quantize.py --run out/pretrain/debug --max-tokens 20000 --isa avx2
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from litllm import LLM
from litllm.cpu import isa
from litllm.cpu.kernels import cpu_model
from litllm.data.text_files import PythonStdlib
from litllm.paths import read_yaml_mapping
from litllm.quantize import weight_bytes
from litllm.tokenizer import Tokenizer

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "config_hub" / "pretrain" / "debug.yaml"
# name: (precision, quantize) of `LLM.distribute`; the first is the reference
VARIANTS = {
    "float32": ("32-true", None),
    "bfloat16": ("bf16-true", None),
    "int8 (float32)": ("32-true", "int8"),
    "int8 (bfloat16)": ("bf16-true", "int8"),
    "bnb.int8 (float32)": ("32-true", "bnb.int8"),
}


@dataclass
class Score:
    """Running sums over the held-out tokens of one variant."""

    nats: float = 0.0
    max_diff: float = 0.0
    sum_diff: float = 0.0
    top1_same: int = 0
    logits: int = 0


def train_debug(out_dir: Path) -> Path:
    """Trains the debug recipe into `out_dir` in a fresh process (its output shown), with caches under it."""
    cmd = [sys.executable, "-m", "litllm.cli", "pretrain", "--config", str(RECIPE), "--out_dir", str(out_dir)]
    env = {**os.environ, "LITLLM_HOME": str(out_dir.parent / "home"), "HF_HUB_OFFLINE": "1"}
    print("training the debug model:", " ".join(cmd), flush=True)
    if subprocess.run(cmd, env=env, cwd=ROOT).returncode != 0:
        sys.exit(f"`litllm pretrain` of {RECIPE} failed; see its output above")
    return out_dir


def heldout_files(run: Path) -> list[Path]:
    """The validation files of the run's data module, as its own recipe split them."""
    recipe = read_yaml_mapping(run / "hyperparameters.yaml", "recipe")
    data = recipe.get("data") or {}
    if data.get("class_path") != "litllm.data.text_files.PythonStdlib":
        sys.exit(f"{run} was trained on {data.get('class_path')!r}; this benchmark reads PythonStdlib's held-out files")
    files = PythonStdlib(**data.get("init_args", {})).split().val
    if not files:
        sys.exit(f"the recipe of {run} keeps no validation files (val_split_fraction 0)")
    return files


def heldout_windows(tokenizer: Tokenizer, files: list[Path], block: int, max_tokens: int) -> tuple[torch.Tensor, int]:
    """(N, block + 1) token windows, each overlapping the next by one token so that the targets are one stretch of
    text, and how many of the files they come from."""
    stream: list[int] = []
    used = 0
    while used < len(files) and len(stream) <= max_tokens:  # one token more than max_tokens: the first is no target
        stream += tokenizer.encode(files[used].read_text(encoding="utf-8"), eos=True)
        used += 1
    n = min(max_tokens, len(stream) - 1) // block
    if n == 0:
        sys.exit(f"the held-out files hold {len(stream)} tokens: fewer than one window of {block + 1}")
    return torch.tensor(stream[: n * block + 1]).unfold(0, block + 1, block), used  # (N, block + 1)


def load_variants(final: Path, names: list[str]) -> tuple[dict[str, LLM], list[str]]:
    """Each variant loaded fresh and placed on the CPU; notes for those that fail here (bitsandbytes on some CPUs)."""
    models, notes = {}, []
    for name in names:
        precision, quantize = VARIANTS[name]
        try:
            llm = LLM.load(final, distribute=None).distribute(accelerator="cpu", precision=precision, quantize=quantize)
            with torch.inference_mode():
                llm.model(torch.zeros(1, 2, dtype=torch.long))
        except Exception as e:  # an optional layer library that does not run on this CPU is a note, not a failure
            if not name.startswith("bnb."):
                raise
            notes.append(f"{name} skipped: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
            continue
        models[name] = llm
    return models, notes


def score(models: dict[str, LLM], windows: torch.Tensor, batch_size: int) -> tuple[dict[str, Score], dict[str, float]]:
    """Every variant's sums over the windows' targets, against the first variant's logits; seconds per variant."""
    scores = {name: Score() for name in models}
    seconds = dict.fromkeys(models, 0.0)
    reference = next(iter(models))
    with torch.inference_mode():
        for batch in windows.split(batch_size):
            x, y = batch[:, :-1], batch[:, 1:].reshape(-1)  # (B, T), (B * T,)
            ref_logits = None
            for name, llm in models.items():
                start = time.perf_counter()
                logits = llm.model(x).float().flatten(0, 1)  # (B * T, V)
                seconds[name] += time.perf_counter() - start
                ref_logits = logits if name == reference else ref_logits
                s = scores[name]
                s.nats += F.cross_entropy(logits, y, reduction="sum").item()
                diff = (logits - ref_logits).abs()
                s.max_diff = max(s.max_diff, diff.max().item())
                s.sum_diff += diff.sum().item()
                s.logits += diff.numel()
                s.top1_same += (logits.argmax(-1) == ref_logits.argmax(-1)).sum().item()
    return scores, seconds


def table(models: dict[str, LLM], scores: dict[str, Score], seconds: dict[str, float], targets: torch.Tensor) -> str:
    """The markdown table of the report."""
    tokens, tokenizer = targets.numel(), next(iter(models.values())).tokenizer
    n_bytes = torch.tensor(tokenizer.token_byte_lengths())[targets].sum().item()  # special tokens count 0
    ref_ppl = math.exp(next(iter(scores.values())).nats / tokens)
    lines = [
        "| variant | weight MB | held-out ppl | ppl vs float32 | bits/byte | max abs dlogit | mean abs dlogit "
        "| top-1 = float32 | forward s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, llm in models.items():
        s = scores[name]
        ppl = math.exp(s.nats / tokens)
        lines.append(
            f"| {name} | {weight_bytes(llm.model) / 1e6:.2f} | {ppl:.4f} | {100 * (ppl / ref_ppl - 1):+.3f}% "
            f"| {s.nats / math.log(2) / n_bytes:.4f} | {s.max_diff:.4f} | {s.sum_diff / s.logits:.5f} "
            f"| {100 * s.top1_same / tokens:.2f}% | {seconds[name]:.1f} |"
        )
    return "\n".join(lines)


def header(reference: LLM, n_files: int, all_files: int, windows: torch.Tensor) -> str:
    """The machine, the model's shape and the held-out text, above the table."""
    c = reference.config
    return (
        f"CPU: {cpu_model() or 'unknown'} | ISA: {isa.active()} | torch {torch.__version__} | "
        f"{torch.get_num_threads()} threads\n"
        f"debug model: {c.n_layer} layers, n_embd {c.n_embd}, vocab {c.vocab_size}, tie_embeddings {c.tie_embeddings}\n"
        f"held-out: {windows[:, 1:].numel():,} tokens of {n_files} of the {all_files} validation files, "
        f"{len(windows)} windows of {c.block_size}"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--run", type=Path, default=None, help="a finished debug run folder (default: train one, ~3 min)")
    p.add_argument("--max-tokens", type=int, default=100_000, help="held-out tokens scored")
    p.add_argument("--batch-size", type=int, default=8, help="windows per forward")
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS), help="float32 first")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--isa", choices=("auto", *isa.ISAS), default="auto",
        help="run as on a CPU with only this instruction set (litllm.cpu.isa.run_as: litllm's kernels and torch's)",
    )  # fmt: skip
    args = p.parse_args()
    isa.run_as(args.isa)
    if min(args.max_tokens, args.batch_size, args.threads) < 1:
        p.error("--max-tokens, --batch-size and --threads must be >= 1")
    if args.variants[0] != "float32":
        p.error(f"--variants must start with float32, the reference; got {args.variants[0]!r}")
    if args.run is not None and not (args.run / "final").is_dir():
        p.error(f"--run {str(args.run)!r} has no final/ checkpoint: give the out_dir of a finished `litllm pretrain`")
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="litllm-quantize-") as tmp:
        run = args.run or train_debug(Path(tmp) / "run")
        trained = time.perf_counter()
        models, notes = load_variants(run / "final", args.variants)
        reference = next(iter(models.values()))
        files = heldout_files(run)
        windows, n_files = heldout_windows(reference.tokenizer, files, reference.config.block_size, args.max_tokens)
        scores, seconds = score(models, windows, args.batch_size)
        report = table(models, scores, seconds, windows[:, 1:])
    trained_here = " (trained here, deleted)" if args.run is None else ""
    print(f"\n{header(reference, n_files, len(files), windows)}\nmodel: {run / 'final'}{trained_here}\n")
    print(report)
    for note in notes:
        print(f"\n{note}")
    if args.run is None:
        print(f"\ntraining {trained - start:.0f} s, evaluation {time.perf_counter() - trained:.0f} s")
    else:
        print(f"\nevaluation {time.perf_counter() - trained:.0f} s")


if __name__ == "__main__":
    main()
