"""The inference worker of `litllm serve`, driven in-process through LitServe's continuous-batching hooks: a
decoding step that fails ends the generations it was running with a 500, and the worker goes on serving."""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import signal
import threading
from pathlib import Path
from typing import Any

import pytest
from litserve.utils import LitAPIStatus

from litllm import LLM
from litllm.serve.routes import APIError, LitLLMSpec, OpenAIAnswer
from litllm.serve.worker import BatchingLoop, GenerationAPI

PROMPT = "def add(a, b):"
GREEDY = {"max_new_tokens": 12, "temperature": 0.0}


@pytest.fixture
def worker(litllm_dir: Path, tmp_path: Path) -> GenerationAPI:
    spec = LitLLMSpec("m", tmp_path, tmp_path, tmp_path, ready=mp.get_context("spawn").Event())
    api = GenerationAPI(str(litllm_dir), spec, max_batch_size=4)
    api.prepare("cpu")
    api.load(str(litllm_dir))
    api.loaded.set()
    return api


def replies_until_closed(api: GenerationAPI, uids: set[str]) -> dict[str, list[dict[str, Any]]]:
    """Step the worker until every uid in `uids` is closed; the replies each got, in order."""
    got: dict[str, list[dict[str, Any]]] = {uid: [] for uid in uids}
    open_ = set(uids)
    for _ in range(200):
        for output in api.step(None):
            if output.status == LitAPIStatus.FINISH_STREAMING:
                open_.discard(output.uid)
            else:
                got[output.uid].append(output.output)
        if not open_:
            return got
    raise AssertionError(f"requests {sorted(open_)} were never closed")


def text_of(replies: list[dict[str, Any]]) -> str:
    return "".join(r["text"] for r in replies if r["type"] == "delta")


class OutOfMemory(RuntimeError):
    pass


def test_a_failed_step_fails_the_running_requests_and_the_worker_serves_on(worker: GenerationAPI) -> None:
    alone = LLM.load(worker.source).generate(PROMPT, **GREEDY)
    worker.add_request("a", {"op": "generate", "prompt": PROMPT, "options": GREEDY})
    worker.add_request("b", {"op": "generate", "prompt": "class Point:", "options": GREEDY})
    first = worker.step(None)
    assert {o.uid for o in first} == {"a", "b"}  # both prefilled and streaming

    def out_of_memory(module: Any, args: Any) -> None:  # stands in for an allocation failure mid-step
        raise OutOfMemory("could not allocate 2 GiB")

    hook = worker.llm.model.register_forward_pre_hook(out_of_memory)
    try:
        failed = replies_until_closed(worker, {"a", "b"})
    finally:
        hook.remove()
    for uid in ("a", "b"):
        last = failed[uid][-1]
        assert last["type"] == "error" and last["status"] == 500 and last["code"] == "generation_failed"
        assert "OutOfMemory: could not allocate 2 GiB" in last["message"]
    assert not worker.running and not worker.scheduler.busy

    # the next requests run on a clean scheduler and give what the model gives alone
    worker.add_request("c", {"op": "generate", "prompt": PROMPT, "options": GREEDY})
    worker.add_request("d", {"op": "generate", "prompt": PROMPT, "options": {**GREEDY, "num_samples": 2}})
    after = replies_until_closed(worker, {"c", "d"})
    assert text_of(after["c"]) == alone
    assert after["c"][-1]["type"] == "end" and after["c"][-1]["completion_tokens"] > 0
    assert all(r["type"] != "error" for r in after["d"])


async def replies_of(*items: dict[str, Any]) -> Any:
    for item in items:
        yield item


ERROR = {
    "type": "error",
    "status": 500,
    "message": "generation failed: boom",
    "param": None,
    "code": "generation_failed",
}


def test_an_error_after_the_first_reply_is_a_500_whole_and_an_error_event_streamed() -> None:
    answer = OpenAIAnswer("chat.completion", "m", 1)
    delta = {"type": "delta", "index": 0, "text": "x"}
    with pytest.raises(APIError) as raised:
        asyncio.run(answer.whole(replies_of(delta, ERROR)))
    assert raised.value.status == 500 and "boom" in raised.value.message

    async def streamed() -> list[str]:
        return [event async for event in answer.chunks(replies_of(delta, ERROR), include_usage=False)]

    events = asyncio.run(streamed())
    assert '"content": "x"' in events[1] and events[3] == "data: [DONE]\n\n"  # opening, delta, error, end
    error = json.loads(events[2].removeprefix("data: "))["error"]
    assert error == {
        "message": "generation failed: boom",
        "type": "server_error",
        "param": None,
        "code": "generation_failed",
    }


def test_every_step_runs_on_one_thread_whatever_thread_calls_it(worker: GenerationAPI) -> None:
    """LitServe calls `step` from any thread of its pool; torch work must stay on one thread, whose OpenMP team is
    then the only one (several teams spinning idle took the cores from the one at work)."""
    seen: set[str] = set()
    hook = worker.llm.model.register_forward_pre_hook(lambda module, args: seen.add(threading.current_thread().name))
    worker.add_request("a", {"op": "generate", "prompt": PROMPT, "options": GREEDY})
    results: list[list] = []
    try:
        for _ in range(6):  # each call from a new thread
            caller = threading.Thread(target=lambda: results.append(worker.step(None)))
            caller.start()
            caller.join()
        # and the way LitServe's loop steps it
        results += [asyncio.run(BatchingLoop().step(None, worker, None)) for _ in range(2)]
    finally:
        hook.remove()
    assert len(results) == 8 and all(results)  # each step sent something
    assert len(seen) == 1 and seen.pop().startswith("litllm-compute")


def closed_reply(api: GenerationAPI, uid: str, message: dict[str, Any]) -> dict[str, Any]:
    """The last reply an operation got once the worker closed it."""
    api.add_request(uid, message)
    return replies_until_closed(api, {uid})[uid][-1]


def test_a_worker_started_without_a_model_serves_operations_and_refuses_generations(
    litllm_dir: Path, tmp_path: Path
) -> None:
    ready = mp.get_context("spawn").Event()
    api = GenerationAPI(None, LitLLMSpec(None, tmp_path, tmp_path, tmp_path, ready=ready), max_batch_size=2)
    api.ready = ready
    # setup() sets a worker process's signal handlers; this process (a test runner) gets its own back, or every
    # process it starts later would inherit an ignored SIGINT (the training-job stop tests saw that)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        api.setup("cpu")  # nothing to load: the inbox is served at once
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    try:
        refused = closed_reply(api, "a", {"op": "generate", "prompt": PROMPT, "options": GREEDY})
        assert refused["type"] == "error" and refused["status"] == 503 and "POST /api/load_model" in refused["message"]
        assert closed_reply(api, "b", {"op": "info"})["model"] is None
        failed = closed_reply(api, "c", {"op": "load_model", "source": str(tmp_path / "missing")})
        assert failed["type"] == "error" and failed["status"] == 400 and "missing" in failed["message"]
        assert api.llm is None and not ready.is_set()  # a failed load leaves no model and says not ready
        loaded = closed_reply(api, "d", {"op": "load_model", "source": str(litllm_dir), "name": "tiny"})
        assert loaded["type"] == "result" and loaded["model"] == "tiny" and ready.is_set()
        generated = closed_reply(api, "e", {"op": "generate", "prompt": PROMPT, "options": GREEDY})
        assert generated["type"] == "end" and generated["completion_tokens"] > 0
    finally:
        api.compute.shutdown()


def test_a_load_that_fails_keeps_the_model_that_was_there(worker: GenerationAPI, tmp_path: Path) -> None:
    (tmp_path / "not-a-model").mkdir()
    failed = closed_reply(worker, "a", {"op": "load_model", "source": str(tmp_path / "not-a-model")})
    assert failed["status"] == 400 and "not a checkpoint" in failed["message"]
    assert closed_reply(worker, "b", {"op": "generate", "prompt": PROMPT, "options": GREEDY})["type"] == "end"
