"""Counters of `litllm serve`: requests, tokens and latencies, for `/stats` and Prometheus' `/metrics`."""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Sequence
from typing import Any

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Histogram:
    """Prometheus-style cumulative histogram of seconds."""

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.total = 0.0
        self.n = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.total += seconds
        self.n += 1

    def lines(self, name: str) -> list[str]:
        out, running = [], 0
        for bound, count in zip((*BUCKETS, float("inf")), self.counts, strict=True):
            running += count
            le = "+Inf" if bound == float("inf") else repr(bound)
            out.append(f'{name}_bucket{{le="{le}"}} {running}')
        return [*out, f"{name}_sum {self.total:.6f}", f"{name}_count {self.n}"]


class Metrics:
    """What the HTTP process has seen: requests by route and status, generations in flight, tokens, latencies."""

    def __init__(self) -> None:
        self.requests: Counter[tuple[str, int]] = Counter()
        self.in_flight = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.ttft = Histogram()
        self.inter_token = Histogram()
        self.duration = Histogram()
        self.max_batch_size = 1

    def request(self, route: str, status: int) -> None:
        self.requests[(route, status)] += 1

    def started(self) -> None:
        self.in_flight += 1

    def left(self) -> None:
        self.in_flight -= 1

    def token_gap(self, since_last: float | None, since_start: float) -> None:
        if since_last is None:
            self.ttft.observe(since_start)
        else:
            self.inter_token.observe(since_last)

    def finished(self, prompt_tokens: int, completion_tokens: int, seconds: float) -> None:
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        self.duration.observe(seconds)

    def stats(self, devices: Sequence[str], serving: bool = True) -> dict[str, Any]:
        """nanochat's worker-pool fields, then litllm's counters. A worker is busy when every row of its batch is
        taken; while no model is loaded (`serving` False) no worker is available."""
        capacity = len(devices) * self.max_batch_size
        busy_rows = min(self.in_flight, capacity)
        busy_workers = min(len(devices), self.in_flight // self.max_batch_size)
        return {
            "total_workers": len(devices),
            "available_workers": len(devices) - busy_workers if serving else 0,
            "busy_workers": busy_workers,
            "workers": [{"gpu_id": gpu_id(i, device), "device": device} for i, device in enumerate(devices)],
            "max_batch_size": self.max_batch_size,
            "busy": busy_rows,
            "queued": self.in_flight - busy_rows,
            "requests": sum(self.requests.values()),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
        }

    def prometheus(self, workers: Sequence[dict[str, Any]] = ()) -> str:
        """The counters and histograms in Prometheus' text format; then, for each of `workers` (`WorkerPool.report`),
        its state as series labelled with its id and device."""
        lines = [
            "# HELP litllm_requests_total HTTP requests by route and status.",
            "# TYPE litllm_requests_total counter",
        ]
        for (route, status), count in sorted(self.requests.items()):
            lines.append(f'litllm_requests_total{{route="{route}",status="{status}"}} {count}')
        lines += [
            "# HELP litllm_generations_in_flight Generations running or queued.",
            "# TYPE litllm_generations_in_flight gauge",
            f"litllm_generations_in_flight {self.in_flight}",
            "# HELP litllm_prompt_tokens_total Prompt tokens of finished generations.",
            "# TYPE litllm_prompt_tokens_total counter",
            f"litllm_prompt_tokens_total {self.prompt_tokens}",
            "# HELP litllm_generated_tokens_total Tokens generated.",
            "# TYPE litllm_generated_tokens_total counter",
            f"litllm_generated_tokens_total {self.completion_tokens}",
        ]
        for name, histogram, text in (
            ("litllm_time_to_first_token_seconds", self.ttft, "Seconds from request to first text."),
            ("litllm_inter_token_seconds", self.inter_token, "Seconds between streamed pieces."),
            ("litllm_request_duration_seconds", self.duration, "Seconds from request to the end of generation."),
        ):
            lines += [f"# HELP {name} {text}", f"# TYPE {name} histogram", *histogram.lines(name)]
        for name, kind, field, text in WORKER_SERIES:
            if workers:
                lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
            for w in workers:
                value = int(w["ready"]) if field == "ready" else w[field]
                lines.append(f'{name}{{worker="{w["id"]}",device="{w["device"]}"}} {value}')
        return "\n".join(lines) + "\n"


WORKER_SERIES = (  # (name, type, field of WorkerPool.report, help)
    ("litllm_worker_ready", "gauge", "ready", "1 while the worker has a model loaded."),
    ("litllm_worker_busy_rows", "gauge", "busy", "Rows of the worker's batch generating."),
    ("litllm_worker_queued", "gauge", "queued", "Generations waiting for a row of the worker's batch."),
    ("litllm_worker_requests_total", "counter", "requests", "Generations the worker started."),
    ("litllm_worker_cancelled_total", "counter", "cancelled", "Generations the worker dropped on a disconnect."),
    ("litllm_worker_prompt_tokens_total", "counter", "prompt_tokens", "Prompt tokens the worker read."),
    ("litllm_worker_generated_tokens_total", "counter", "completion_tokens", "Tokens the worker generated."),
)


def gpu_id(index: int, device: str) -> int:
    """A worker's CUDA device index (`cuda:3` -> 3); on other devices its place among the workers, as nanochat's."""
    kind, _, number = device.partition(":")
    return int(number) if kind == "cuda" and number.isdigit() else index
