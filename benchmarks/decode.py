"""Greedy decoding speed and memory: litllm vs transformers `generate` on the same random weights.

Two tables per run. Batch 1, for each model config and dtype: tokens/s of both and their ratio, litllm's time to
first token, its peak memory over the weights' size, whether the greedy tokens agree, and the memory-bandwidth
ceiling (weight bytes read per token / streaming-read bandwidth measured here). Batching: total tokens/s of
litllm's continuous-batching `Scheduler` and of transformers on the same left-padded prompts of mixed lengths.
Targets: litllm >= 1.3x transformers in every row, peak memory <= 1.3x the weights, batch 16 >= 8x batch 1,
and the torch.compile rows no slower than eager.

    .venv/bin/python benchmarks/decode.py
    .venv/bin/python benchmarks/decode.py --models pythia-160m --dtypes bfloat16 --new-tokens 16 --repeats 1
"""

from __future__ import annotations

import argparse
import copy
import functools
import gc
import multiprocessing
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import psutil
import torch
import transformers

from litllm.checkpoint import config_to_hf, load_checkpoint
from litllm.config import Config
from litllm.cpu import gemm as cpu_gemm
from litllm.cpu import isa
from litllm.cpu.kernels import cpu_model
from litllm.cpu.memory import return_freed_memory
from litllm.inference.engine import Request, SamplingParams, Scheduler, generate_tokens
from litllm.model import GPT
from litllm.quantize import quantize_model, weight_bytes

TARGET = 1.3  # litllm over transformers, at least
MEMORY_TARGET = 1.3  # batch-1 peak memory over the weights' size, at most
BATCH_TARGET = (16, 8.0)  # at this batch size, at least this many times litllm's batch-1 tokens/s
PROMPT_LENGTHS = (8, 64)  # the batching table's prompts have lengths drawn uniformly in this range
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "int8": torch.bfloat16}
QUANTIZE = {"int8": "int8"}  # a row's `quantize=`: int8 weights (litllm's CPU kernel) over a bfloat16 model
INT8_TARGET = 1.6  # int8 over litllm's own bfloat16, at least
LLAMA_CPP_TARGET = 0.9  # litllm over llama.cpp on the same weights, at least
LLAMA_CPP_TYPES = {"float32": "f32", "bfloat16": "bf16", "int8": "q8_0"}
GREEDY = SamplingParams(temperature=0)
H = TypeVar("H")  # what a transformers run returns
L = TypeVar("L")  # what a litllm run returns


def pythia_160m() -> transformers.PretrainedConfig:
    """The transformers config of litllm's registry entry pythia-160m."""
    return transformers.GPTNeoXConfig(**config_to_hf(Config.from_name("pythia-160m")))


def llama_160m() -> transformers.PretrainedConfig:
    """A Llama-shaped model of about pythia-160m's size, with grouped-query attention."""
    return transformers.LlamaConfig(
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        num_key_value_heads=4,
        intermediate_size=2048,
        vocab_size=32000,
    )


MODELS: dict[str, Callable[[], transformers.PretrainedConfig]] = {
    "pythia-160m": pythia_160m,
    "llama-160m": llama_160m,
}


@dataclass
class Row:
    """One line of the batch-1 table: one model, one dtype (and litllm variant)."""

    model: str
    dtype: str
    hf_tps: float
    lit_tps: float
    read_bytes: int
    """Weight bytes one decode step reads."""
    ttft_ms: float
    matching: int
    new_tokens: int
    weights: int
    """Bytes of the model's parameters and buffers."""
    peak: int | None = None
    """Peak memory of a batch-1 generation: the weights plus the rise of resident memory while generating."""
    eager_tps: float | None = None
    """For a compiled row, the same model's eager tokens/s."""
    bf16_tps: float | None = None
    """For an int8 row, litllm's bfloat16 tokens/s on the same model."""
    llama: tuple[float | None, float, str] | None = None
    """Against llama.cpp: its decoding tokens/s, litllm's in the same rounds, and why the first is missing."""

    @property
    def ratio(self) -> float:
        return self.lit_tps / self.hf_tps

    def checks(self) -> list[tuple[bool, str]]:
        """(passed, what) for each target this row is measured against."""
        out = [(self.ratio >= TARGET, f"{self.ratio:.2f}x transformers (target >= {TARGET}x)")]
        if self.bf16_tps is not None:
            x = self.lit_tps / self.bf16_tps
            out.append((x >= INT8_TARGET, f"{x:.2f}x litllm's bfloat16 (target >= {INT8_TARGET}x)"))
        if self.peak is not None:
            x = self.peak / self.weights
            out.append((x <= MEMORY_TARGET, f"peak memory {x:.2f}x the weights (target <= {MEMORY_TARGET}x)"))
        return out + not_slower(self.lit_tps, self.eager_tps)


def not_slower(tps: float, eager_tps: float | None) -> list[tuple[bool, str]]:
    """The target of a compiled row: at least its eager twin's speed (none for an eager row)."""
    if eager_tps is None:
        return []
    return [(tps >= eager_tps, f"{tps / eager_tps:.2f}x eager (target >= 1.0x)")]


@dataclass
class BatchRow:
    """One line of the batching table: one model, dtype (and litllm variant), batch size."""

    model: str
    dtype: str
    batch: int
    lit_tps: float
    hf_tps: float
    equal: int
    """How many of the batch's sequences equal transformers' token for token."""
    rounds: list[float] = field(default_factory=list)
    """litllm's tokens/s in each timed round."""
    base_rounds: list[float] | None = None
    """litllm's batch-1 tokens/s in the same rounds of the same table."""
    eager_tps: float | None = None
    """For a compiled row, the same batch's eager tokens/s."""

    @property
    def ratio(self) -> float:
        return self.lit_tps / self.hf_tps

    @property
    def speedup(self) -> float | None:
        """Over batch 1: the median over rounds of the ratio within a round, where both saw the same machine load."""
        if not self.base_rounds:
            return None
        return statistics.median(a / b for a, b in zip(self.rounds, self.base_rounds, strict=True))

    def checks(self) -> list[tuple[bool, str]]:
        """(passed, what) for each target this row is measured against."""
        out = [(self.ratio >= TARGET, f"{self.ratio:.2f}x transformers (target >= {TARGET}x)")]
        batch, x = BATCH_TARGET
        if self.batch == batch and self.speedup is not None:
            out.append((self.speedup >= x, f"{self.speedup:.1f}x batch 1 (target >= {x}x)"))
        return out + not_slower(self.lit_tps, self.eager_tps)


def read_bandwidth(gib: float = 1.0, repeats: int = 10) -> float:
    """Streaming-read bandwidth in bytes/s: the best of `repeats` sums over a buffer larger than any cache."""
    buf = torch.ones(int(gib * 2**30) // 4, dtype=torch.float32)
    buf.sum()  # touch every page before timing
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        buf.sum()
        best = min(best, time.perf_counter() - t0)
    return buf.numel() * buf.element_size() / best


def weight_bytes_per_token(model: GPT) -> int:
    """Bytes of weights one decode step reads: every parameter (and int8 layer's weights, scales and bias) but the
    embedding tables, of which it gathers one row (a table tied to the output head is read once, by the head)."""
    from litllm.cpu.int8 import Int8Linear

    head = getattr(model.lm_head, "weight", None)
    gathered = [m.weight for m in (model.wte, model.wpe) if m is not None and m.weight is not head]
    skip = {id(p) for p in gathered}
    quantized = [b for m in model.modules() if isinstance(m, Int8Linear) for b in m.buffers()]
    return sum(p.numel() * p.element_size() for p in [*model.parameters(), *quantized] if id(p) not in skip)


def load_row_model(ckpt_dir: str, dtype_name: str) -> GPT:
    """The litllm model of a row: the checkpoint in the row's dtype, quantized where the row says."""
    model = load_checkpoint(ckpt_dir, dtype=DTYPES[dtype_name])
    if dtype_name in QUANTIZE:
        quantize_model(model, QUANTIZE[dtype_name])
    return model


def time_litllm(model: GPT, prompt: list[int], new_tokens: int) -> tuple[float, float, list[int]]:
    """Seconds for the whole batch-1 generation, seconds to the first token, and the tokens."""
    t0 = time.perf_counter()
    tokens = generate_tokens(model, Request(prompt, new_tokens, params=GREEDY))
    out = [next(tokens)]
    ttft = time.perf_counter() - t0
    out.extend(tokens)
    return time.perf_counter() - t0, ttft, out


def time_scheduler(model: GPT, prompts: list[list[int]], new_tokens: int) -> tuple[float, list[list[int]]]:
    """Seconds for the Scheduler to generate `new_tokens` tokens for every prompt at once, and the tokens."""
    scheduler = Scheduler(model, max_batch_size=len(prompts))
    t0 = time.perf_counter()
    completions = [scheduler.submit(Request(p, new_tokens, params=GREEDY))[0] for p in prompts]
    scheduler.run()
    return time.perf_counter() - t0, [c.token_ids for c in completions]


def time_hf(
    model: transformers.PreTrainedModel, prompts: list[list[int]], new_tokens: int
) -> tuple[float, list[list[int]]]:
    """Seconds for `generate` on the prompts as one left-padded batch (pad id 0), and the new tokens."""
    width = max(map(len, prompts))
    idx = torch.tensor([[0] * (width - len(p)) + p for p in prompts])  # (B, T)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])  # (B, T)
    t0 = time.perf_counter()
    out = model.generate(
        idx, attention_mask=mask, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False
    )
    return time.perf_counter() - t0, out[:, width:].tolist()


def leading_matches(a: list[int], b: list[int]) -> int:
    """How many tokens the two sequences share before they first differ."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def peak_memory(ckpt_dir: str, dtype_name: str, prompt: list[int], new_tokens: int, threads: int) -> int:
    """Run in a fresh process: the peak rise of resident memory over its level after loading the model, while
    generating at batch 1 (psutil's RSS sampled every millisecond)."""
    torch.set_num_threads(threads)
    model = load_row_model(ckpt_dir, dtype_name)
    gc.collect()
    return_freed_memory()  # so that generating cannot hide in what loading freed but kept
    process = psutil.Process()
    base = peak = process.memory_info().rss
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.001):
            peak = max(peak, process.memory_info().rss)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        with torch.inference_mode():
            time_litllm(model, prompt, new_tokens)
    finally:
        done.set()
        sampler.join()
    return max(peak, process.memory_info().rss) - base


def compiled(model: GPT) -> GPT:
    """`model` with its forward compiled; dynamic shapes so every decode position reuses one graph."""
    twin = copy.copy(model)  # shares parameters and modules; its own forward and KV cache attribute
    twin.forward = torch.compile(twin.forward, dynamic=True)
    return twin


def pick(seconds: list[float], stat: str) -> float:
    return min(seconds) if stat == "best" else statistics.median(seconds)


def alternate(
    run_hf: Callable[[], H], run_lit: Callable[[GPT], L], variants: list[tuple[str, GPT]], repeats: int
) -> tuple[H, list[H], dict[str, list[L]]]:
    """One warm-up of each side, then `repeats` rounds of transformers and every litllm variant in turn, so that
    all see the same machine load: transformers' warm-up result, its timed results, and litllm's by variant."""
    warm = run_hf()
    for _, m in variants:
        run_lit(m)  # warm-up (and compilation)
    hf_runs: list[H] = []
    lit_runs: dict[str, list[L]] = {label: [] for label, _ in variants}
    for _ in range(repeats):
        hf_runs.append(run_hf())
        for label, m in variants:
            lit_runs[label].append(run_lit(m))
    return warm, hf_runs, lit_runs


@torch.inference_mode()
def bench_dtype(
    name: str,
    ckpt_dir: str,
    dtype_name: str,
    prompt: list[int],
    prompts: list[list[int]],
    args: argparse.Namespace,
    llama: Callable[[], float] | str | None = None,
) -> tuple[list[Row], list[BatchRow]]:
    """Both tables' rows for one model in one dtype; transformers and litllm runs alternate, so both see the same
    load. Batch B of the batching table runs the first B of `prompts`. `llama`: one llama.cpp run on the same weights
    (its decoding tokens/s), which then alternates with litllm's, or why there is none."""
    dtype, n = DTYPES[dtype_name], args.new_tokens
    with torch.inference_mode(False):  # plain weights, as a user's load gives (inference tensors can't be packed)
        hf = transformers.AutoModelForCausalLM.from_pretrained(ckpt_dir, dtype=dtype).eval()
        model = load_row_model(ckpt_dir, dtype_name)
    # no stopping on eos: both sides produce exactly new_tokens greedy tokens
    hf.generation_config.eos_token_id = None
    hf.generation_config.pad_token_id = 0
    variants: list[tuple[str, GPT]] = [(dtype_name, model)]
    if args.compile:
        variants.append((dtype_name + " +compile", compiled(model)))

    warm, hf_runs, lit_runs = alternate(
        lambda: time_hf(hf, [prompt], n), lambda m: time_litllm(m, prompt, n), variants, args.repeats
    )
    hf_tokens, hf_tps = warm[1][0], n / pick([t for t, _ in hf_runs], args.stat)
    read, weights = weight_bytes_per_token(model), weight_bytes(model)
    rows = []
    for label, runs in lit_runs.items():
        lit_tps = n / pick([t for t, _, _ in runs], args.stat)
        ttft = pick([f for _, f, _ in runs], args.stat)
        matching = leading_matches(runs[0][2], hf_tokens)
        rows.append(Row(name, label, hf_tps, lit_tps, read, ttft * 1e3, matching, n, weights))
        print(f"  {name} {label} batch 1: transformers {hf_tps:.1f} tok/s, litllm {lit_tps:.1f}", file=sys.stderr)
    for row in rows[1:]:
        row.eager_tps = rows[0].lit_tps
    if isinstance(llama, str):
        rows[0].llama = (None, rows[0].lit_tps, llama)
    elif llama is not None:  # rounds of llama.cpp and litllm in turn; litllm's decoding alone, as llama-bench's tg
        llama_tps, lit_tps = [], []
        for _ in range(args.repeats):
            llama_tps.append(llama())
            t, ttft, _ = time_litllm(model, prompt, n)
            lit_tps.append((n - 1) / (t - ttft))
        best = max if args.stat == "best" else statistics.median
        rows[0].llama = (best(llama_tps), best(lit_tps), "")
        print(
            f"  {name} {dtype_name} llama.cpp {rows[0].llama[0]:.1f} tok/s, litllm {rows[0].llama[1]:.1f}",
            file=sys.stderr,
        )
    if args.memory:
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            rows[0].peak = weights + pool.submit(peak_memory, ckpt_dir, dtype_name, prompt, n, args.threads).result()

    batch_rows = bench_batch(name, hf, variants, [prompts[:b] for b in args.batches], args) if args.batches else []
    base = {r.dtype: r.rounds for r in batch_rows if r.batch == 1}
    for r in batch_rows:
        r.base_rounds = base.get(r.dtype)
    return rows, batch_rows


def bench_batch(
    name: str,
    hf: transformers.PreTrainedModel,
    variants: list[tuple[str, GPT]],
    batches: list[list[list[int]]],
    args: argparse.Namespace,
) -> list[BatchRow]:
    """Batching-table rows: generated tokens / wall seconds for each batch of prompts, after one warm-up. Every round
    runs all batch sizes in turn, so that a batch and batch 1, which it is compared with, see the same machine load
    (memory-bound batch 1 follows the bandwidth, which moved by half within minutes on a shared machine)."""
    n = args.new_tokens
    warm, hf_runs, lit_runs = alternate(
        lambda: [time_hf(hf, prompts, n) for prompts in batches],
        lambda m: [time_scheduler(m, prompts, n) for prompts in batches],
        variants,
        args.repeats,
    )
    rows = []
    for i, prompts in enumerate(batches):
        hf_tokens = warm[i][1]
        hf_tps = len(prompts) * n / pick([run[i][0] for run in hf_runs], args.stat)
        batch_rows = []
        for label, runs in lit_runs.items():
            tokens = runs[0][i][1]
            lit_tps = sum(map(len, tokens)) / pick([run[i][0] for run in runs], args.stat)
            equal = sum(a == b for a, b in zip(tokens, hf_tokens, strict=True))
            rounds = [sum(map(len, run[i][1])) / run[i][0] for run in runs]
            batch_rows.append(BatchRow(name, label, len(prompts), lit_tps, hf_tps, equal, rounds))
            print(
                f"  {name} {label} batch {len(prompts)}: transformers {hf_tps:.1f} tok/s, litllm {lit_tps:.1f}",
                file=sys.stderr,
            )
        for row in batch_rows[1:]:
            row.eager_tps = batch_rows[0].lit_tps
        rows += batch_rows
    return rows


def mixed_prompts(vocab_size: int, count: int, seed: int) -> list[list[int]]:
    """`count` random prompts with lengths drawn uniformly from PROMPT_LENGTHS; the i-th does not depend on count."""
    gen = torch.Generator().manual_seed(seed)
    lo, hi = PROMPT_LENGTHS
    prompts = []
    for _ in range(count):
        length = int(torch.randint(lo, hi + 1, (), generator=gen))
        prompts.append(torch.randint(vocab_size, (length,), generator=gen).tolist())
    return prompts


def verdict(checks: list[tuple[bool, str]]) -> str:
    return "PASS" if all(ok for ok, _ in checks) else "FAIL"


HEADER = (
    f"{'model':<12} | {'dtype':<18} | {'transformers tok/s':>18} | {'litllm tok/s':>12} | {'ratio':>5} | "
    f"{'ceiling tok/s':>13} | {'litllm % of ceiling':>19} | {'TTFT ms':>7} | {'peak MiB':>8} | "
    f"{'x weights':>9} | {'targets':<7} | tokens equal"
)
BATCH_HEADER = (
    f"{'model':<12} | {'dtype':<18} | {'batch':>5} | {'litllm tok/s':>12} | {'x batch 1':>9} | "
    f"{'transformers tok/s':>18} | {'ratio':>5} | {'targets':<7} | sequences equal"
)


def format_row(r: Row, bandwidth: float) -> str:
    ceiling = bandwidth / r.read_bytes
    equal = "yes" if r.matching == r.new_tokens else f"first {r.matching}/{r.new_tokens}"
    peak = f"{r.peak / 2**20:>8.0f} | {r.peak / r.weights:>9.2f}" if r.peak is not None else f"{'-':>8} | {'-':>9}"
    return (
        f"{r.model:<12} | {r.dtype:<18} | {r.hf_tps:>18.1f} | {r.lit_tps:>12.1f} | {r.ratio:>5.2f} | "
        f"{ceiling:>13.1f} | {100 * r.lit_tps / ceiling:>18.0f}% | {r.ttft_ms:>7.0f} | {peak} | "
        f"{verdict(r.checks()):<7} | {equal}"
    )


def format_batch_row(r: BatchRow) -> str:
    speedup = f"{r.speedup:>9.1f}" if r.speedup is not None else f"{'-':>9}"
    return (
        f"{r.model:<12} | {r.dtype:<18} | {r.batch:>5} | {r.lit_tps:>12.1f} | {speedup} | {r.hf_tps:>18.1f} | "
        f"{r.ratio:>5.2f} | {verdict(r.checks()):<7} | {r.equal}/{r.batch}"
    )


LLAMA_NOTE: list[str] = []  # why llama.cpp was not compared, once


def llama_runs(ckpt_dir: str, dtypes: list[str], args: argparse.Namespace) -> dict[str, Callable[[], float] | str]:
    """For each dtype llama.cpp has a type for, a run of llama-bench on the same weights converted to that type (its
    batch-1 decoding tokens/s), or why it cannot run. Empty, with a note, when llama.cpp is not built."""
    import llamacpp_ref

    build = "avx2" if isa.active() == "avx2" else "native"  # llama.cpp on the instructions litllm runs with
    found = llamacpp_ref.find(args.llama_cpp, build)
    if found is None:
        if not LLAMA_NOTE:
            LLAMA_NOTE.append(llamacpp_ref.why_not(args.llama_cpp, build))
        return {}
    out: dict[str, Callable[[], float] | str] = {}
    where = Path(ckpt_dir) / "gguf"  # goes with the checkpoint's temporary folder: a run's name never repeats
    for dtype in dtypes:
        if dtype not in LLAMA_CPP_TYPES:
            continue
        try:
            gguf = found.convert(ckpt_dir, where, LLAMA_CPP_TYPES[dtype])
        except (OSError, RuntimeError, ValueError) as err:  # a conversion llama.cpp refuses: say so, go on
            out[dtype] = f"llama.cpp failed: {str(err)[:80]}"
            continue
        knobs = {"threads": args.threads, "prompt_tokens": args.prompt_tokens, "new_tokens": args.new_tokens}
        out[dtype] = functools.partial(found.bench, gguf, repeats=1, **knobs)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    p.add_argument("--dtypes", nargs="+", choices=list(DTYPES), default=list(DTYPES))
    p.add_argument("--batches", nargs="*", type=int, default=[1, 4, 16], help="batching table's sizes (none: skip it)")
    p.add_argument("--new-tokens", type=int, default=256, help="tokens generated per sequence")
    p.add_argument("--prompt-tokens", type=int, default=32, help="prompt length of the batch-1 table")
    p.add_argument("--repeats", type=int, default=3, help="timed runs after one warm-up")
    p.add_argument("--stat", choices=("best", "median"), default="best", help="which of the timed runs to report")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--compile", action="store_true", help="add rows with litllm's forward under torch.compile")
    p.add_argument("--memory", action=argparse.BooleanOptionalAction, default=True, help="measure batch-1 peak memory")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--isa", choices=("auto", *isa.ISAS), default="auto",
        help="run as on a CPU with only this instruction set (litllm.cpu.isa.run_as: litllm's kernels and torch's)",
    )  # fmt: skip
    p.add_argument(
        "--llama-cpp", metavar="DIR", default=None,
        help="llama.cpp build to compare with (benchmarks/llamacpp_ref.py; default: $LITLLM_LLAMA_CPP or its cache)",
    )  # fmt: skip
    args = p.parse_args()
    if min(args.new_tokens, args.prompt_tokens, args.repeats, *args.batches) < 1:
        p.error("--new-tokens, --prompt-tokens, --repeats and --batches must be >= 1")

    isa.run_as(args.isa)
    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    # other processes on the machine lower the measured bandwidth: measure before every pair, keep the best
    bandwidth = 0.0
    rows: list[Row] = []
    batch_rows: list[BatchRow] = []
    for name in args.models:
        torch.manual_seed(args.seed)
        hf_config = MODELS[name]()
        with tempfile.TemporaryDirectory() as ckpt_dir:
            transformers.AutoModelForCausalLM.from_config(hf_config).save_pretrained(ckpt_dir)
            gc.collect()
            gen = torch.Generator().manual_seed(args.seed)
            prompt = torch.randint(hf_config.vocab_size, (args.prompt_tokens,), generator=gen).tolist()
            prompts = mixed_prompts(hf_config.vocab_size, max(args.batches, default=0), args.seed)
            llama = llama_runs(ckpt_dir, args.dtypes, args)
            for dtype_name in args.dtypes:
                bandwidth = max(bandwidth, read_bandwidth())
                new_rows, new_batch_rows = bench_dtype(
                    name, ckpt_dir, dtype_name, prompt, prompts, args, llama.get(dtype_name)
                )
                rows.extend(new_rows)
                batch_rows.extend(new_batch_rows)
                gc.collect()
    bandwidth = max(bandwidth, read_bandwidth())
    for r in rows:  # int8 against litllm's own bfloat16 on the same model
        if r.dtype == "int8":
            r.bf16_tps = next((b.lit_tps for b in rows if b.model == r.model and b.dtype == "bfloat16"), None)

    print(
        f"{cpu_model()} (litllm kernels: {isa.active()}, {'with' if cpu_gemm.dot_products() else 'no'} bfloat16 dot "
        f"products; torch kernels: {torch.backends.cpu.get_cpu_capability()}); torch {torch.__version__}, "
        f"transformers {transformers.__version__}, {args.threads} threads, read bandwidth {bandwidth / 1e9:.1f} GB/s; "
        f"greedy, {args.new_tokens} new tokens per sequence, {args.stat} of {args.repeats} runs after one warm-up\n"
    )
    print(f"Batch 1, {args.prompt_tokens}-token prompt")
    print(HEADER)
    for r in rows:
        print(format_row(r, bandwidth))
    if batch_rows:
        lo, hi = PROMPT_LENGTHS
        print(f"\nBatching: Scheduler vs left-padded generate, prompts of {lo}-{hi} tokens (seed {args.seed})")
        print(BATCH_HEADER)
        for r in batch_rows:
            print(format_batch_row(r))
    llama_rows = [(r.model, r.dtype, *r.llama) for r in rows if r.llama is not None]
    if llama_rows:
        print(
            f"\nllama.cpp ({'built for AVX2' if isa.active() == 'avx2' else 'built for this CPU'}; llama-bench's "
            f"tg{args.new_tokens}, batch 1, {args.threads} threads) and litllm's decoding "
            f"after its {args.prompt_tokens}-token prompt, in turn, {args.stat} of {args.repeats} rounds each"
        )
        print(f"{'model':<12} | {'litllm dtype':<12} | {'llama.cpp type':<14} | {'llama.cpp tok/s':>15} | "
              f"{'litllm tok/s':>12} | {'ratio':>5} | targets")  # fmt: skip
        for model, dtype, tps, lit, note in llama_rows:
            if tps is None:
                print(f"{model:<12} | {dtype:<12} | {LLAMA_CPP_TYPES[dtype]:<14} | {'-':>15} | {lit:>12.1f} | "
                      f"{'-':>5} | {note}")  # fmt: skip
            else:
                ok = "PASS" if lit / tps >= LLAMA_CPP_TARGET else "FAIL"
                print(f"{model:<12} | {dtype:<12} | {LLAMA_CPP_TYPES[dtype]:<14} | {tps:>15.1f} | {lit:>12.1f} | "
                      f"{lit / tps:>5.2f} | {ok}")  # fmt: skip
    elif LLAMA_NOTE:
        print(f"\nllama.cpp: not compared ({LLAMA_NOTE[0]})")
    print()
    for model, dtype, tps, lit, _ in llama_rows:
        if tps is not None:
            print(f"{'PASS' if lit / tps >= LLAMA_CPP_TARGET else 'FAIL'} {model} {dtype} vs llama.cpp "
                  f"{LLAMA_CPP_TYPES[dtype]}: litllm {lit / tps:.2f}x (target >= {LLAMA_CPP_TARGET}x)")  # fmt: skip
    for r in [*rows, *batch_rows]:
        table = f"batching table, batch {r.batch}" if isinstance(r, BatchRow) else "batch-1 table"
        where = f"{r.model} {r.dtype}, {table}"
        for ok, what in r.checks():
            print(f"{'PASS' if ok else 'FAIL'} {where}: litllm {what}")


if __name__ == "__main__":
    main()
