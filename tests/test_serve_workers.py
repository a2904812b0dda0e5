"""`litllm serve --devices 2` on the CPU: two worker processes, each with a copy of the model; a disconnect frees the
row at the worker that holds it, /api/load_model swaps the model on both, /stats reports each, and a count this
machine cannot hold is refused before any model is looked up."""

from __future__ import annotations

import http.client
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from litserve.utils import LitAPIStatus

from litllm import LLM
from litllm.serve.pool import usable_cores
from litllm.serve.routes import LitLLMSpec
from litllm.serve.worker import GenerationAPI
from tests.serve_helpers import Server, running_server

PROMPT = "def add(a, b):"
LONG = 4000  # tokens a generation asks for: seconds of decoding, so a disconnect always comes before its end


@pytest.fixture(scope="module")
def models(litllm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The models root: `long` (the tiny model with a 4096-token context, so that rows can run long) and `other`
    (the same shapes, other weights: what the swap loads)."""
    root = tmp_path_factory.mktemp("workers") / "models"
    shutil.copytree(litllm_dir, root / "long")
    config = root / "long" / "model_config.yaml"
    config.write_text(config.read_text().replace("block_size: 256", "block_size: 4096"))
    assert "block_size: 4096" in config.read_text()
    other = LLM.load(litllm_dir)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in other.model.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    other.save(root / "other")
    return root


@pytest.fixture(scope="module")
def server(models: Path) -> Iterator[Server]:
    with running_server(models / "long", models.parent, "--devices", "2", "--max_batch_size", "4") as server:
        yield server


def each_worker(server: Server) -> list[dict]:
    return server.request("GET", "/stats")[1]["worker_stats"]


def test_stats_report_each_worker_beside_nanochats_fields(server: Server) -> None:
    stats = server.request("GET", "/stats")[1]
    assert stats["workers"] == [{"gpu_id": 0, "device": "cpu"}, {"gpu_id": 1, "device": "cpu"}]
    assert (stats["total_workers"], stats["available_workers"], stats["busy_workers"]) == (2, 2, 0)
    each = stats["worker_stats"]
    assert [(w["id"], w["device"], w["ready"]) for w in each] == [(0, "cpu", True), (1, "cpu", True)]
    assert len({w["pid"] for w in each}) == 2  # two processes
    assert all(w["threads"] == 1 for w in each)  # the server's one thread (OMP_NUM_THREADS=1) split: at least one
    counters = ("busy", "queued", "requests", "cancelled", "prompt_tokens", "completion_tokens")
    assert all(type(w[name]) is int for w in each for name in counters)
    status = server.request("GET", "/api/status")[1]
    assert status["device"] == "cpu" and status["busy"] == 0 and [w["id"] for w in status["worker_stats"]] == [0, 1]
    text = server.request("GET", "/metrics")[1]  # and in Prometheus' format, a series per worker
    for w in each:
        assert f'litllm_worker_ready{{worker="{w["id"]}",device="cpu"}} 1' in text
        assert f'litllm_worker_requests_total{{worker="{w["id"]}",device="cpu"}} ' in text


def open_stream(server: Server, body: dict) -> http.client.HTTPConnection:
    """A streaming completion whose first event has arrived: a worker holds its row."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    connection.request("POST", "/v1/completions", json.dumps(body), server.headers())
    response = connection.getresponse()
    assert response.status == 200, response.read()
    response.readline()
    return connection


def test_a_disconnect_frees_the_row_at_the_worker_that_holds_it(server: Server, models: Path) -> None:
    tokenizer = LLM.load(models / "long").tokenizer
    banned = {str(i): -100 for i in {*tokenizer.stop_ids, tokenizer.eos_id} - {None}}  # no early end
    body = {"prompt": "def", "max_tokens": LONG, "temperature": 1.0, "stream": True, "logit_bias": banned}
    before = each_worker(server)
    connections = []
    try:  # streams until both workers hold rows (they take requests from one queue, whichever is first)
        while len(connections) < 8 and not all(w["busy"] for w in each_worker(server)):
            connections.append(open_stream(server, body))
        held = [w["busy"] for w in each_worker(server)]
    finally:
        for connection in connections:
            connection.close()
    assert all(held), held
    deadline = time.monotonic() + 10  # a row runs for seconds unless its cancellation reaches it
    while any(w["busy"] for w in each_worker(server)) and time.monotonic() < deadline:
        time.sleep(0.05)
    after = each_worker(server)
    assert [w["busy"] for w in after] == [0, 0]
    assert [a["cancelled"] - b["cancelled"] for a, b in zip(after, before, strict=True)] == held
    made = [a["completion_tokens"] - b["completion_tokens"] for a, b in zip(after, before, strict=True)]
    assert all(tokens < LONG // 2 * rows for tokens, rows in zip(made, held, strict=True)), made


def test_a_model_that_will_not_load_leaves_every_worker_serving_the_old_one(server: Server, models: Path) -> None:
    shutil.copytree(models / "long", models / "broken")
    (models / "broken" / "model.safetensors").write_bytes(b"not weights")
    status, body = server.request("POST", "/api/load_model", {"model_path": "broken"})
    assert status in (400, 500) and "could not load" in body["detail"], body  # each worker failed alike: one message
    assert "of 2 workers" not in body["detail"]
    assert server.request("GET", "/api/status")[1]["model"] == "long"
    assert all(w["ready"] for w in each_worker(server))


def test_load_model_swaps_the_model_on_every_worker(server: Server, models: Path) -> None:
    expected = LLM.load(models / "other").generate(PROMPT, max_new_tokens=8, temperature=0)
    assert expected != LLM.load(models / "long").generate(PROMPT, max_new_tokens=8, temperature=0)
    status, body = server.request("POST", "/api/load_model", {"model_path": "other"})
    assert status == 200 and body["model"] == "other", body
    assert [w["id"] for w in body["workers"]] == [0, 1] and len({w["pid"] for w in body["workers"]}) == 2
    request = {"prompt": PROMPT, "max_tokens": 8, "temperature": 0}
    before = [w["requests"] for w in each_worker(server)]
    with ThreadPoolExecutor(4) as pool:
        for _ in range(5):  # rounds of requests at once, until both workers have served some
            answers = list(pool.map(lambda _: server.request("POST", "/v1/completions", request), range(4)))
            assert [(s, a["choices"][0]["text"]) for s, a in answers] == [(200, expected)] * 4
            if all(a > b for a, b in zip((w["requests"] for w in each_worker(server)), before, strict=True)):
                break
    assert all(a > b for a, b in zip((w["requests"] for w in each_worker(server)), before, strict=True))


def test_a_cancellation_that_overtakes_its_generation_ends_it_as_it_arrives(litllm_dir: Path, tmp_path: Path) -> None:
    """A client gone before any reply: every worker is told, and the one that takes the generation later drops it."""
    worker = GenerationAPI(str(litllm_dir), LitLLMSpec("m", tmp_path, tmp_path, tmp_path), max_batch_size=2)
    worker.prepare("cpu")
    worker.load(str(litllm_dir))
    worker.loaded.set()
    worker.add_request("c", {"op": "cancel", "target": "g"})
    worker.add_request("g", {"op": "generate", "prompt": PROMPT, "options": {"max_new_tokens": LONG}})
    try:
        replies = [o.output for o in worker.step(None) if o.status != LitAPIStatus.FINISH_STREAMING]
    finally:
        worker.compute.shutdown()
    assert [(r["type"], r.get("cancelled")) for r in replies] == [("result", "g"), ("end", True)]
    assert replies[-1]["completion_tokens"] == 0 and not worker.running and not worker.scheduler.busy


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--devices", "0"], "--devices 0: give 1 or more"),
        (["--devices", str(usable_cores() + 1)], f"may use {usable_cores()} CPU core(s)"),
        (["--accelerator", "cuda"], "CUDA GPU(s)"),
    ],
)
def test_serve_refuses_more_workers_than_the_machine_holds_before_looking_up_the_model(
    args: list[str], fragment: str
) -> None:
    if args[0] == "--accelerator" and torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    command = [sys.executable, "-m", "litllm.cli", "serve", "no-such-model", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr and fragment in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "no-such-model" not in result.stderr
