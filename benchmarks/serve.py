"""Streaming throughput and latency of `litllm serve` under 1, 4 and 16 concurrent clients, and of the engine alone.

The model is the pythia-160m registry config with random weights and a BPE tokenizer trained here on Python's
standard library, saved once as a checkpoint directory that both the server and the engine-alone reference load.
Targets: 16 clients >= 6x the tokens/s of 1 client; 1 client >= 90% of the engine's tokens/s alone.
`--workers 1 2` serves the same load with one inference worker and then with two (`litllm serve --devices 2`), which
split the `--threads` torch threads between them, and compares their tokens/s.

    .venv/bin/python benchmarks/serve.py
    .venv/bin/python benchmarks/serve.py --clients 1 4 --max-tokens 16 --requests-per-client 1
    .venv/bin/python benchmarks/serve.py --clients 16 --workers 1 2    # 1 worker x 2 threads vs 2 x 1
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psutil
import torch

from litllm.api import LLM
from litllm.tokenizer import Tokenizer, train_bpe

SCALING_TARGET = (16, 6.0)  # this many clients make at least this many times 1 client's tokens/s
ENGINE_TARGET = 0.9  # 1 client's tokens/s over the engine's alone, at least
VOCAB = 8192  # the tokenizer's; the model keeps pythia's 50304 rows
CORPUS_BYTES = 4_000_000  # of standard-library source, for the tokenizer and the prompts


@dataclass
class Sample:
    """One streamed generation: when it started and ended, when each text piece arrived, tokens generated."""

    start: float
    arrivals: list[float]
    end: float
    tokens: int

    @property
    def ttft(self) -> float:
        return self.arrivals[0] - self.start if self.arrivals else float("nan")

    @property
    def gaps(self) -> list[float]:
        return [b - a for a, b in zip(self.arrivals, self.arrivals[1:], strict=False)]


@dataclass
class Row:
    """One line of the table: a client count (0: the engine alone) and its generations."""

    clients: int
    samples: list[Sample]
    wall: float  # seconds, first request sent to last one done
    workers: str = "-"  # the server's workers x torch threads of each, as it reports them ("2x1")

    @property
    def tps(self) -> float:
        return sum(s.tokens for s in self.samples) / self.wall

    @property
    def per_client_tps(self) -> float:
        return sum(s.tokens / (s.end - s.start) for s in self.samples) / len(self.samples)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), interpolated linearly between the closest ranks."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def corpus() -> str:
    """About CORPUS_BYTES of the standard library's top-level modules, in a fixed order."""
    texts, size = [], 0
    for path in sorted(Path(os.__file__).parent.glob("*.py")):
        texts.append(path.read_text(encoding="utf-8", errors="replace"))
        size += len(texts[-1])
        if size >= CORPUS_BYTES:
            break
    return "\n".join(texts)


def silence_textless_tokens(llm: LLM) -> int:
    """Zero the output rows of tokens that add no text on their own (EOS, ids past the tokenizer, partial UTF-8).

    Their logit is then 0 while the largest of ~8k random logits is positive, so greedy decoding never picks
    them: every request makes exactly max_tokens tokens and every token reaches the client as a text piece.
    """
    tokenizer = llm.tokenizer
    textless = [i for i in range(tokenizer.vocab_size) if not tokenizer.decode([i]).strip("\ufffd")]
    textless += [i for i in (tokenizer.eos_id, *tokenizer.stop_ids) if i is not None]
    textless += range(tokenizer.vocab_size, llm.config.vocab_size)
    with torch.no_grad():
        llm.model.lm_head.weight[sorted(set(textless))] = 0
    return len(set(textless))


def build_checkpoint(out: Path, text: str, seed: int) -> Path:
    """Train the tokenizer and write the random-weight pythia-160m checkpoint (float32) that everything loads."""
    train_bpe(iter([text]), VOCAB, out / "tokenizer", show_progress=False)
    llm = LLM.load("pythia-160m", init="random", tokenizer_dir=out / "tokenizer", device="cpu", seed=seed)
    silence_textless_tokens(llm)
    return llm.save(out / "pythia-160m-random")


def make_prompts(text: str, tokenizer: Tokenizer, count: int, length: int, seed: int) -> list[str]:
    """`count` windows of `length` tokens from random places of `text`."""
    ids = tokenizer.encode(text[:1_000_000])
    rng = random.Random(seed)
    starts = [rng.randrange(len(ids) - length) for _ in range(count)]
    return [tokenizer.decode(ids[s : s + length]) for s in starts]


def engine_alone(checkpoint: Path, prompts: list[str], args: argparse.Namespace) -> Row:
    """`LLM.generate(..., stream=True)` on each prompt in turn, after one warm-up, in this process."""
    llm = LLM.load(checkpoint, device=args.accelerator)
    precision = None if args.precision == "default" else args.precision
    llm.distribute(accelerator=args.accelerator, precision=precision, quantize=args.quantize)
    list(llm.generate(prompts[0], max_new_tokens=args.max_tokens, temperature=0, stream=True))
    samples = []
    began = time.perf_counter()
    for prompt in prompts:
        start, arrivals = time.perf_counter(), []
        stream = llm.generate(prompt, max_new_tokens=args.max_tokens, temperature=0, stream=True)
        for _ in stream:
            arrivals.append(time.perf_counter())
        samples.append(Sample(start, arrivals, time.perf_counter(), stream.completion_tokens))
    return Row(0, samples, time.perf_counter() - began)


class Server:
    """`litllm serve CHECKPOINT` with `workers` inference workers in a subprocess, stopped with SIGINT."""

    def __init__(self, checkpoint: Path, tmp: Path, args: argparse.Namespace, workers: int = 1) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        command = [sys.executable, "-m", "litllm.cli", "serve", str(checkpoint), "--port", str(self.port)]
        command += ["--max_batch_size", str(args.max_batch_size), "--devices", str(workers)]
        command += [] if args.precision == "default" else ["--precision", args.precision]
        command += ["--quantize", args.quantize] if args.quantize else []
        command += ["--accelerator", args.accelerator, "--models_root", str(tmp), "--runs_root", str(tmp / "runs")]
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "HF_HUB_OFFLINE": "1"}
        env.pop("LITLLM_API_KEY", None)
        self.log = tmp / "server.log"
        with self.log.open("w") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)

    def wait_ready(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}:\n{self.log_tail()}")
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            try:
                connection.request("GET", "/health")
                if connection.getresponse().status == 200:
                    return
            except OSError:
                pass
            finally:
                connection.close()
            time.sleep(0.5)
        raise TimeoutError(f"the server was not ready after {timeout} s:\n{self.log_tail()}")

    def log_tail(self) -> str:
        return self.log.read_text()[-3000:]

    def workers(self) -> list[dict]:
        """What each inference worker reports in /stats: its pid, torch threads, requests served, ..."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            connection.request("GET", "/stats")
            return json.loads(connection.getresponse().read())["worker_stats"]
        finally:
            connection.close()

    def warm_up(self, prompt: str, max_tokens: int) -> str:
        """Stream `prompt` until every worker has served a request (each prepares its kernels on its first); its
        workers x torch threads each, as the server reports them ("2x1")."""
        for _ in range(10):  # the workers take requests from one queue: rounds of one each, at once, until all did
            self.phase([[prompt]] * len(self.workers()), max_tokens)
            served = self.workers()
            if all(w["requests"] for w in served):
                return f"{len(served)}x{'/'.join(str(t) for t in sorted({w['threads'] for w in served}))}"
        raise RuntimeError(f"a worker served none of the warm-up requests: {served}")

    def stop(self) -> None:
        """SIGINT, then kill whatever of the process tree is still there a minute later."""
        if self.process.poll() is not None:
            return
        tree = [psutil.Process(self.process.pid), *psutil.Process(self.process.pid).children(recursive=True)]
        self.process.send_signal(signal.SIGINT)
        _, alive = psutil.wait_procs(tree, timeout=60)
        for p in alive:
            p.kill()
        self.process.wait()
        if alive:
            print(f"killed server processes left after SIGINT: {[p.pid for p in alive]}", file=sys.stderr)

    def stream(self, prompt: str, max_tokens: int) -> Sample:
        """One greedy streaming completion, timed as its text pieces arrive."""
        body = {"prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "stream": True}
        body["stream_options"] = {"include_usage": True}
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        start = time.perf_counter()
        connection.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
        response = connection.getresponse()
        if response.status != 200:
            raise RuntimeError(f"/v1/completions answered {response.status}: {response.read().decode()}")
        arrivals, tokens = [], 0
        for line in response:
            now = time.perf_counter()
            payload = line.decode().strip().removeprefix("data: ")
            if payload == "[DONE]":
                break
            if not payload:
                continue
            chunk = json.loads(payload)
            if any(c.get("text") for c in chunk["choices"]):
                arrivals.append(now)
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
        end = time.perf_counter()
        connection.close()
        return Sample(start, arrivals, end, tokens)

    def phase(self, prompts: list[list[str]], max_tokens: int) -> Row:
        """One client thread per list of prompts, each sending its prompts one after another, all at once."""

        def client(mine: list[str]) -> list[Sample]:
            return [self.stream(p, max_tokens) for p in mine]

        with ThreadPoolExecutor(len(prompts)) as pool:
            start = time.perf_counter()
            futures = [pool.submit(client, mine) for mine in prompts]
            samples = [s for f in futures for s in f.result()]
            wall = time.perf_counter() - start
        return Row(len(prompts), samples, wall)


HEADER = (
    f"{'workers':>7} | {'clients':>7} | {'total tok/s':>11} | {'x 1 client':>10} | {'per-client tok/s':>16} | "
    f"{'TTFT p50 ms':>11} | {'TTFT p95 ms':>11} | {'ITL p50 ms':>10} | {'ITL p95 ms':>10} | {'tokens':>6}"
)


def format_row(row: Row, one: Row | None) -> str:
    ttfts = [s.ttft * 1e3 for s in row.samples]
    gaps = [g * 1e3 for s in row.samples for g in s.gaps]
    name = "engine" if row.clients == 0 else str(row.clients)
    scale = f"{row.tps / one.tps:>10.2f}" if one is not None and row.clients else f"{'-':>10}"
    return (
        f"{row.workers:>7} | {name:>7} | {row.tps:>11.1f} | {scale} | {row.per_client_tps:>16.1f} | "
        f"{percentile(ttfts, 50):>11.1f} | {percentile(ttfts, 95):>11.1f} | "
        f"{percentile(gaps, 50):>10.1f} | {percentile(gaps, 95):>10.1f} | {sum(s.tokens for s in row.samples):>6}"
    )


def compare_workers(rows: dict[int, dict[int, Row]]) -> list[str]:
    """For each client count every worker count ran: its tokens/s, and over those of the first worker count."""
    first, *others = rows.values()
    lines = [f"{'workers':>7} | {'clients':>7} | {'total tok/s':>11} | {'x ' + next(iter(first.values())).workers:>8}"]
    for clients, base in first.items():
        for row in [base, *(by_clients[clients] for by_clients in others)]:
            lines.append(f"{row.workers:>7} | {clients:>7} | {row.tps:>11.1f} | {row.tps / base.tps:>8.2f}")
    return lines


def checks(rows: dict[int, Row], engine: Row) -> list[str]:
    """The two targets, PASS, FAIL or n/a when the run lacks the rows they compare."""
    many, factor = SCALING_TARGET
    lines = []
    if 1 in rows and many in rows:
        ratio = rows[many].tps / rows[1].tps
        lines.append(f"{'PASS' if ratio >= factor else 'FAIL'} {many} clients: {ratio:.2f}x 1 client (>= {factor}x)")
    else:
        lines.append(f"n/a  {many} clients >= {factor}x 1 client: run with --clients 1 {many}")
    if 1 in rows:
        share = rows[1].tps / engine.tps
        verdict = "PASS" if share >= ENGINE_TARGET else "FAIL"
        lines.append(f"{verdict} 1 client: {100 * share:.0f}% of the engine alone (>= {100 * ENGINE_TARGET:.0f}%)")
    else:
        lines.append(f"n/a  1 client >= {100 * ENGINE_TARGET:.0f}% of the engine alone: run with --clients 1")
    return lines


def main() -> None:
    from litllm.cpu import isa

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--clients", nargs="+", type=int, default=[1, 4, 16], help="concurrent clients of each phase")
    p.add_argument("--requests-per-client", type=int, default=2, help="streaming requests each client sends in turn")
    p.add_argument("--max-tokens", type=int, default=128, help="tokens generated per request")
    p.add_argument("--prompt-tokens", type=int, default=32, help="length of each prompt, in tokens")
    p.add_argument(
        "--precision", choices=("bf16-true", "32-true", "default"), default="bf16-true",
        help="the server's --precision (default: none given, the checkpoint's float32)",
    )  # fmt: skip
    p.add_argument("--quantize", choices=("int8",), default=None, help="the server's --quantize")
    p.add_argument(
        "--isa", choices=("auto", *isa.ISAS), default="auto",
        help="run as on a CPU with only this instruction set (litllm.cpu.isa.run_as), the server too",
    )  # fmt: skip
    p.add_argument("--max-batch-size", type=int, default=16, help="the server's --max_batch_size")
    p.add_argument("--accelerator", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--threads", type=int, default=2, help="torch threads of the engine and the server")
    p.add_argument(
        "--workers", nargs="+", type=int, default=[1],
        help="inference workers of the server (--devices), one server each; they split --threads between them",
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    from litllm.cpu.kernels import cpu_model

    isa.run_as(args.isa)
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory(prefix="litllm-bench-serve-") as tmp:
        text = corpus()
        checkpoint = build_checkpoint(Path(tmp), text, args.seed)
        n = args.requests_per_client
        pool = make_prompts(text, Tokenizer(checkpoint), max(args.clients) * n + 1, args.prompt_tokens, args.seed)
        warmup, pool = pool[0], pool[1:]
        print(f"engine alone: {n} requests of {args.max_tokens} tokens ...", file=sys.stderr)
        engine = engine_alone(checkpoint, pool[:n], args)  # the prompts of the 1-client phase
        rows: dict[int, dict[int, Row]] = {}  # by workers, then by clients
        for workers in args.workers:
            rows[workers] = serve_phases(Server(checkpoint, Path(tmp), args, workers), warmup, pool, args)

    print(
        f"\n{cpu_model()} (litllm kernels: {isa.active()}; torch: {torch.backends.cpu.get_cpu_capability()})\n"
        f"pythia-160m (random weights), precision {args.precision}, quantize {args.quantize}, {args.accelerator}, "
        f"{args.threads} threads (a server's workers split them), "
        f"max_batch_size {args.max_batch_size}, {args.prompt_tokens}-token prompts, {args.max_tokens} tokens "
        f"per request, {n} requests per client, torch {torch.__version__}"
    )
    print(HEADER)
    print(format_row(engine, None))
    for by_clients in rows.values():
        for row in by_clients.values():
            print(format_row(row, by_clients.get(1)))
    if len(rows) > 1:
        print()
        print("\n".join(compare_workers(rows)))
    print()
    for by_clients in rows.values():
        for line in checks(by_clients, engine):
            print(line if len(rows) == 1 else f"{line} ({by_clients[args.clients[0]].workers} workers x threads)")
    short = sum(s.tokens != args.max_tokens for r in [engine, *all_rows(rows)] for s in r.samples)
    if short:
        print(f"note: {short} requests made other than {args.max_tokens} tokens (tokens/s counts the real ones)")


def serve_phases(server: Server, warmup: str, pool: list[str], args: argparse.Namespace) -> dict[int, Row]:
    """Each client count's row against a server started for them (and stopped after)."""
    n, rows = args.requests_per_client, {}
    try:
        server.wait_ready()
        workers = server.warm_up(warmup, args.max_tokens)
        for c in args.clients:
            print(
                f"{workers} workers x threads, {c} clients x {n} requests of {args.max_tokens} tokens ...",
                file=sys.stderr,
            )
            rows[c] = server.phase([pool[i * n : (i + 1) * n] for i in range(c)], args.max_tokens)
            rows[c].workers = workers
    finally:
        server.stop()
    return rows


def all_rows(rows: dict[int, dict[int, Row]]) -> list[Row]:
    return [row for by_clients in rows.values() for row in by_clients.values()]


if __name__ == "__main__":
    main()
