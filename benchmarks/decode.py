"""Batch-1 greedy decoding speed: litllm vs transformers `generate` on the same random weights.

For each model config and dtype: tokens/s of both, their ratio, litllm's time to first token, whether the
greedy tokens agree, and the memory-bandwidth ceiling (weight bytes read per token / streaming-read bandwidth
measured here). The target is litllm >= 1.3x transformers in every row.

    .venv/bin/python benchmarks/decode.py
    .venv/bin/python benchmarks/decode.py --models pythia-160m --dtypes bfloat16 --repeats 5
"""

from __future__ import annotations

import argparse
import copy
import gc
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import transformers

from litllm.checkpoint import config_to_hf, load_checkpoint
from litllm.config import Config
from litllm.engine import SamplingParams, generate_tokens
from litllm.model import GPT

TARGET = 1.3
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


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
    """One line of the table: one model, one dtype (and litllm variant)."""

    model: str
    dtype: str
    hf_tps: float
    lit_tps: float
    weight_bytes: int
    """Weight bytes one decode step reads."""
    ttft_ms: float
    matching: int
    new_tokens: int

    @property
    def ratio(self) -> float:
        return self.lit_tps / self.hf_tps


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
    """Bytes of weights one decode step reads: every parameter but the embedding tables, of which it gathers
    one row (a table tied to the output head is read once, by the head)."""
    head = model.lm_head.weight
    gathered = [m.weight for m in (model.wte, model.wpe) if m is not None and m.weight is not head]
    skip = {id(p) for p in gathered}
    return sum(p.numel() * p.element_size() for p in model.parameters() if id(p) not in skip)


def time_litllm(model: GPT, prompt: list[int], new_tokens: int) -> tuple[float, float, list[int]]:
    """Seconds for the whole generation, seconds to the first token, and the tokens."""
    greedy = SamplingParams(temperature=0)
    t0 = time.perf_counter()
    tokens = generate_tokens(model, prompt, max_new_tokens=new_tokens, params=greedy)
    out = [next(tokens)]
    ttft = time.perf_counter() - t0
    out.extend(tokens)
    return time.perf_counter() - t0, ttft, out


def time_hf(model: transformers.PreTrainedModel, prompt: list[int], new_tokens: int) -> tuple[float, list[int]]:
    """Seconds for the whole generation, and the tokens."""
    idx = torch.tensor([prompt])  # (1, T)
    t0 = time.perf_counter()
    out = model.generate(
        idx,
        attention_mask=torch.ones_like(idx),
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        do_sample=False,
    )
    return time.perf_counter() - t0, out[0, idx.shape[1] :].tolist()


def leading_matches(a: list[int], b: list[int]) -> int:
    """How many tokens the two sequences share before they first differ."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


@torch.inference_mode()
def bench_dtype(name: str, ckpt_dir: str, dtype_name: str, prompt: list[int], args: argparse.Namespace) -> list[Row]:
    """Rows for one model in one dtype: transformers and litllm runs alternate, so both see the same load."""
    dtype = DTYPES[dtype_name]
    hf = transformers.AutoModelForCausalLM.from_pretrained(ckpt_dir, dtype=dtype).eval()
    # no stopping on eos: both sides produce exactly new_tokens greedy tokens
    hf.generation_config.eos_token_id = None
    hf.generation_config.pad_token_id = 0
    model = load_checkpoint(ckpt_dir, dtype=dtype)
    variants: list[tuple[str, GPT]] = [("", model)]
    if args.compile:
        variants.append((" +compile", compiled(model)))

    hf_tokens = time_hf(hf, prompt, args.new_tokens)[1]  # warm-up
    for _, m in variants:
        time_litllm(m, prompt, args.new_tokens)  # warm-up (and compilation)
    hf_seconds: list[float] = []
    lit_runs: dict[str, list[tuple[float, float, list[int]]]] = {suffix: [] for suffix, _ in variants}
    for _ in range(args.repeats):
        hf_seconds.append(time_hf(hf, prompt, args.new_tokens)[0])
        for suffix, m in variants:
            lit_runs[suffix].append(time_litllm(m, prompt, args.new_tokens))

    hf_tps = args.new_tokens / pick(hf_seconds, args.stat)
    weight_bytes = weight_bytes_per_token(model)
    rows = []
    for suffix, runs in lit_runs.items():
        lit_tps = args.new_tokens / pick([t for t, _, _ in runs], args.stat)
        ttft = pick([f for _, f, _ in runs], args.stat)
        matching = leading_matches(runs[0][2], hf_tokens)
        row = Row(name, dtype_name + suffix, hf_tps, lit_tps, weight_bytes, ttft * 1e3, matching, args.new_tokens)
        rows.append(row)
        print(f"  {name} {row.dtype}: transformers {hf_tps:.1f} tok/s, litllm {lit_tps:.1f} tok/s", file=sys.stderr)
    return rows


def compiled(model: GPT) -> GPT:
    """`model` with its forward compiled; dynamic shapes so every decode position reuses one graph."""
    twin = copy.copy(model)  # shares parameters and modules; its own forward and KV cache attribute
    twin.forward = torch.compile(twin.forward, dynamic=True)
    return twin


def pick(seconds: list[float], stat: str) -> float:
    return min(seconds) if stat == "best" else statistics.median(seconds)


HEADER = (
    f"{'model':<12} | {'dtype':<18} | {'transformers tok/s':>18} | {'litllm tok/s':>12} | {'ratio':>5} | "
    f"{'ceiling tok/s':>13} | {'litllm % of ceiling':>19} | {'TTFT ms':>7} | tokens equal"
)


def format_row(r: Row, bandwidth: float) -> str:
    ceiling = bandwidth / r.weight_bytes
    equal = "yes" if r.matching == r.new_tokens else f"first {r.matching}/{r.new_tokens}"
    return (
        f"{r.model:<12} | {r.dtype:<18} | {r.hf_tps:>18.1f} | {r.lit_tps:>12.1f} | {r.ratio:>5.2f} | "
        f"{ceiling:>13.1f} | {100 * r.lit_tps / ceiling:>18.0f}% | {r.ttft_ms:>7.0f} | {equal}"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    p.add_argument("--dtypes", nargs="+", choices=list(DTYPES), default=list(DTYPES))
    p.add_argument("--new-tokens", type=int, default=256)
    p.add_argument("--prompt-tokens", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3, help="timed runs after one warm-up")
    p.add_argument("--stat", choices=("best", "median"), default="best", help="which of the timed runs to report")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--compile", action="store_true", help="add a row with litllm's forward under torch.compile")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    if args.new_tokens < 1 or args.prompt_tokens < 1 or args.repeats < 1:
        p.error("--new-tokens, --prompt-tokens and --repeats must be >= 1")

    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    # other processes on the machine lower the measured bandwidth: measure before every pair, keep the best
    bandwidth = 0.0
    rows: list[Row] = []
    for name in args.models:
        torch.manual_seed(args.seed)
        hf_config = MODELS[name]()
        with tempfile.TemporaryDirectory() as ckpt_dir:
            transformers.AutoModelForCausalLM.from_config(hf_config).save_pretrained(ckpt_dir)
            gc.collect()
            gen = torch.Generator().manual_seed(args.seed)
            prompt = torch.randint(hf_config.vocab_size, (args.prompt_tokens,), generator=gen).tolist()
            for dtype_name in args.dtypes:
                bandwidth = max(bandwidth, read_bandwidth())
                rows.extend(bench_dtype(name, ckpt_dir, dtype_name, prompt, args))
                gc.collect()
    bandwidth = max(bandwidth, read_bandwidth())

    print(
        f"torch {torch.__version__}, transformers {transformers.__version__}, {args.threads} threads, "
        f"read bandwidth {bandwidth / 1e9:.1f} GB/s; batch 1, greedy, {args.prompt_tokens}-token prompt, "
        f"{args.new_tokens} new tokens, {args.stat} of {args.repeats} runs after one warm-up\n"
    )
    print(HEADER)
    for r in rows:
        print(format_row(r, bandwidth))
    print()
    for r in rows:
        verdict = "PASS" if r.ratio >= TARGET else "FAIL"
        print(f"{verdict} {r.model} {r.dtype}: litllm {r.ratio:.2f}x transformers (target >= {TARGET}x)")


if __name__ == "__main__":
    main()
