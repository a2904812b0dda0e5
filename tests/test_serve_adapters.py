"""`litllm serve BASE --adapters a=DIR,b=DIR`: LoRA adapters over one base, chosen by a request's `model`, rows of
different adapters decoded in one batch, each giving what that adapter gives alone."""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from litserve.utils import LitAPIStatus

from litllm import LLM
from litllm.checkpoint.loading import load_checkpoint
from litllm.lora.files import save_adapter
from litllm.lora.layers import LoRAConfig, adapter_state_dict, add_adapter
from litllm.model import GPT
from litllm.serve.control import served_adapters
from litllm.serve.routes import LitLLMSpec
from litllm.serve.worker import GenerationAPI
from tests.serve_helpers import Server, running_server

PROMPT = "def add"
MESSAGES = [{"role": "user", "content": "def add(a, b):"}]
GREEDY = {"max_tokens": 10, "temperature": 0}


def make_adapter(gpt: GPT, out: Path, base_dir: Path, lora: LoRAConfig, seed: int) -> Path:
    """An adapter over `gpt` with random non-zero B (a fresh adapter's B is zero: it would change nothing)."""
    add_adapter(gpt, lora, "new")
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in gpt.named_parameters():
            if ".B." in name:
                torch.nn.init.normal_(p, std=0.5)
    state = adapter_state_dict(gpt, "new")
    return save_adapter(out, state, gpt.config, lora, base=str(base_dir), tokenizer_dir=base_dir)


@pytest.fixture(scope="module")
def adapters(litllm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two adapters over the tiny base: `a` on query and value, `b` on the MLP, saved as a run (its final/)."""
    root = tmp_path_factory.mktemp("serve_adapters") / "models"
    make_adapter(load_checkpoint(litllm_dir), root / "adapter-a", litllm_dir, LoRAConfig(r=4), seed=1)
    mlp = LoRAConfig(r=2, query=False, value=False, mlp=True)
    make_adapter(load_checkpoint(litllm_dir), root / "run-b" / "final", litllm_dir, mlp, seed=2)
    return {"a": root / "adapter-a", "b": root / "run-b"}


@pytest.fixture(scope="module")
def alone(litllm_dir: Path, adapters: dict[str, Path]) -> dict[str, LLM]:
    """Each model on its own: the base, and the base with one adapter."""
    return {"base": LLM.load(litllm_dir), **{name: LLM.load(litllm_dir, adapter=d) for name, d in adapters.items()}}


@pytest.fixture(scope="module")
def server(litllm_dir: Path, adapters: dict[str, Path]) -> Iterator[Server]:
    tmp = adapters["a"].parent.parent
    shutil.copytree(litllm_dir, tmp / "models" / litllm_dir.name)  # for /api/load_model
    served = f"a={adapters['a']},b={adapters['b']}"
    with pytest.MonkeyPatch.context() as env:  # its own home: module fixtures run before the per-test one
        env.setenv("LITLLM_HOME", str(tmp / "home"))
        with running_server(litllm_dir, tmp, "--adapters", served, "--max_batch_size", "4") as server:
            yield server


def completion(server: Server, **body: object) -> tuple[int, dict]:
    return server.request("POST", "/v1/completions", {"prompt": PROMPT, **GREEDY, **body})


def test_models_lists_the_base_and_each_adapter_with_the_base_as_parent(server: Server, litllm_dir: Path) -> None:
    status, body = server.request("GET", "/v1/models")
    assert status == 200
    base, *rest = body["data"]
    assert base["id"] == litllm_dir.name and "parent" not in base
    assert [(m["id"], m["parent"], m["object"]) for m in rest] == [(name, base["id"], "model") for name in "ab"]
    assert all(m["owned_by"] == "litllm" and isinstance(m["created"], int) for m in rest)


def test_requests_sent_at_once_each_get_what_their_model_gives_alone(
    server: Server, alone: dict[str, LLM], litllm_dir: Path
) -> None:
    """Completions and chats, whole and streamed, to adapter a, adapter b and the base, all in flight together."""
    expected = {name: llm.generate(PROMPT, max_new_tokens=10, temperature=0) for name, llm in alone.items()}
    chats = {name: llm.chat(MESSAGES, max_new_tokens=10, temperature=0) for name, llm in alone.items()}
    assert len(set(expected.values())) == 3  # the adapters change the output
    models = {"a": "a", "b": "b", "base": litllm_dir.name}
    got: dict[tuple[str, str], str] = {}

    def one(name: str, kind: str) -> None:
        model = models[name]
        if kind == "whole":
            got[name, kind] = completion(server, model=model)[1]["choices"][0]["text"]
        elif kind == "stream":
            events = server.events("/v1/completions", {"prompt": PROMPT, **GREEDY, "model": model, "stream": True})
            got[name, kind] = "".join(e["choices"][0]["text"] for e in events[:-1] if e["choices"])
        else:
            body = {"messages": MESSAGES, **GREEDY, "model": model, "stream": True}
            events = server.events("/v1/chat/completions", body)
            assert all(e["model"] == model for e in events[:-1])
            got[name, kind] = "".join(e["choices"][0]["delta"].get("content", "") for e in events[:-1] if e["choices"])

    threads = [threading.Thread(target=one, args=(n, k)) for n in models for k in ("whole", "stream", "chat")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == {(n, k): chats[n] if k == "chat" else expected[n] for n, k in got}
    assert len(got) == 9


def test_the_adapter_field_chooses_as_the_model_does(server: Server, litllm_dir: Path) -> None:
    by_model = completion(server, model="b")[1]
    by_field = completion(server, adapter="b")
    assert by_field[0] == 200 and by_field[1]["choices"] == by_model["choices"] and by_field[1]["model"] == "b"
    assert completion(server, model="b", adapter="b")[1]["choices"] == by_model["choices"]
    base = completion(server)[1]
    assert base["model"] == litllm_dir.name
    for body in ({"model": "base"}, {"adapter": "base"}, {"model": litllm_dir.name, "adapter": "base"}):
        assert completion(server, **body)[1]["choices"] == base["choices"]


@pytest.mark.parametrize("body", [{"model": "a", "adapter": "b"}, {"model": "tiny-llama", "adapter": "a"}])
def test_a_model_and_an_adapter_that_disagree_are_refused(server: Server, body: dict) -> None:
    status, answer = completion(server, **body)
    assert status == 400 and answer["error"]["code"] == "adapter_mismatch"


def test_an_unknown_model_is_refused_with_the_served_names(server: Server, litllm_dir: Path) -> None:
    for path, body in [("/v1/completions", {"prompt": PROMPT}), ("/v1/chat/completions", {"messages": MESSAGES})]:
        status, answer = server.request("POST", path, {**body, "model": "c"})
        assert status == 400 and answer["error"]["param"] == "model" and answer["error"]["code"] == "model_not_found"
        assert all(repr(name) in answer["detail"] for name in (litllm_dir.name, "a", "b"))
    status, answer = completion(server, adapter="c")
    assert status == 400 and answer["error"]["param"] == "adapter" and "'a', 'b'" in answer["detail"]


def test_nanochat_and_nanogpt_routes_choose_the_adapter_too(
    server: Server, alone: dict[str, LLM], litllm_dir: Path
) -> None:
    for name, model in [("a", "a"), ("b", "b"), ("base", litllm_dir.name), ("base", None)]:
        body = {"messages": MESSAGES, "max_tokens": 10, "temperature": 0, "model": model}
        events = server.events("/chat/completions", body)
        assert events[-1] == {"done": True}
        assert "".join(e["token"] for e in events[:-1]) == alone[name].chat(MESSAGES, max_new_tokens=10, temperature=0)
        body = {"prompt": PROMPT, "max_new_tokens": 10, "temperature": 0, "adapter": name}
        status, answer = server.request("POST", "/api/generate", body)
        assert status == 200 and answer["completion"] == alone[name].generate(PROMPT, max_new_tokens=10, temperature=0)
        assert answer["model"] == (litllm_dir.name if name == "base" else name)
        assert answer["parameters"] == {"max_new_tokens": 10, "temperature": 0.0, "top_k": 200}  # nanoGPT's three
    for path, body in [("/chat/completions", {"messages": MESSAGES}), ("/api/generate", {"prompt": PROMPT})]:
        status, answer = server.request("POST", path, {**body, "model": "c"})
        assert status == 400 and answer["error"]["code"] == "model_not_found" and "'a', 'b'" in answer["detail"]


def test_the_chat_page_talks_to_the_adapter_chosen(
    browser: Any, server: Server, alone: dict[str, LLM], litllm_dir: Path
) -> None:
    from playwright.sync_api import expect

    page = browser.new_context().new_page()
    page.goto(server.url + "/")
    page.fill("#api-key", server.api_key)
    page.press("#api-key", "Enter")
    choice = page.locator("#model-choice")
    expect(choice).to_be_visible()
    assert choice.locator("option").all_text_contents() == [litllm_dir.name, "a", "b"]
    for name in ("b", "a"):
        page.click("#new-chat")
        choice.select_option(name)
        for control, value in [("#temperature", "0"), ("#max-tokens", "10"), ("#system", "")]:
            page.fill(control, value)
        page.fill("#input", MESSAGES[0]["content"])
        page.press("#input", "Enter")
        expect(page.locator("#send")).to_be_enabled(timeout=30_000)
        want = alone[name].chat(MESSAGES, max_new_tokens=10, temperature=0)
        expect(page.locator("#messages .message.assistant").last).to_have_text(want)
    page.context.close()


def test_rows_of_different_adapters_decode_in_one_batch(
    litllm_dir: Path, adapters: dict[str, Path], alone: dict[str, LLM], tmp_path: Path
) -> None:
    """The worker, driven in-process: requests to a, b and the base, admitted in one step, hold rows of one batch."""
    served = {name: str(folder) for name, folder in adapters.items()}
    spec = LitLLMSpec("m", tmp_path, tmp_path, tmp_path, ready=mp.get_context("spawn").Event(), adapters=list(served))
    worker = GenerationAPI(str(litllm_dir), spec, max_batch_size=4, adapters=served)
    worker.prepare("cpu")
    worker.load(str(litllm_dir), adapters=served)
    worker.loaded.set()
    options = {"max_new_tokens": 10, "temperature": 0.0}
    for name in ("a", "b", "base"):
        worker.add_request(name, {"op": "generate", "prompt": PROMPT, "options": {**options, "adapter": name}})
    texts, open_ = dict.fromkeys(("a", "b", "base"), ""), {"a", "b", "base"}
    for step in range(100):
        for output in worker.step(None):
            if output.status == LitAPIStatus.FINISH_STREAMING:
                open_.discard(output.uid)
            elif output.output["type"] == "delta":
                texts[output.uid] += output.output["text"]
        if step == 0:
            rows = sorted(c.request.adapter for c in worker.scheduler.slots if c is not None)
            assert rows == ["a", "b", "base"]  # all three decoding together
        if not open_:
            break
    assert texts == {name: alone[name].generate(PROMPT, **options) for name in texts}


def test_adapters_are_checked_before_the_server_starts(litllm_dir: Path, adapters: dict[str, Path]) -> None:
    a, b = adapters["a"], adapters["b"]
    assert served_adapters(f"a={a}, b={b}", str(litllm_dir)) == {"a": str(a.resolve()), "b": str(b / "final")}
    refused = {
        f"a={a},a={b}": "names 'a' twice",
        f"base={a}": "base model's name",
        f"{litllm_dir.name}={a}": "base model's name",
        f"a b={a}": "letters, digits",
        f"a={a},{b}": "is not NAME=DIR",
        f"a={a.parent / 'missing'}": "does not exist",
        f"a={litllm_dir}": "not a LoRA adapter",
    }
    for value, fragment in refused.items():
        with pytest.raises(ValueError, match=re.escape(fragment)):
            served_adapters(value, str(litllm_dir))
    with pytest.raises(ValueError, match="needs a base model"):
        served_adapters(f"a={a}", None)


@pytest.fixture(scope="module")
def other_base_adapter(litllm_dir: Path, adapters: dict[str, Path]) -> Path:
    """An adapter trained on a one-layer variant of the tiny base."""
    smaller = GPT(dataclasses.replace(load_checkpoint(litllm_dir).config, n_layer=1))
    return make_adapter(smaller, adapters["a"].parent / "other", litllm_dir, LoRAConfig(r=2), seed=3)


def test_an_adapter_of_another_base_is_refused(
    litllm_dir: Path, adapters: dict[str, Path], other_base_adapter: Path
) -> None:
    with pytest.raises(ValueError, match=r"--adapters o=.*does not fit this model .*n_layer: 1 vs 2"):
        served_adapters(f"a={adapters['a']},o={other_base_adapter}", str(litllm_dir))


def test_serve_refuses_bad_adapters_in_one_line(litllm_dir: Path, other_base_adapter: Path) -> None:
    serve = [sys.executable, "-m", "litllm.cli", "serve", str(litllm_dir)]
    result = subprocess.run([*serve, "--adapters", f"o={other_base_adapter}"], capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith(f"litllm: error: --adapters o={other_base_adapter}: adapter ")
    assert "does not fit this model" in result.stderr


# last: it swaps the server's model
def test_load_model_takes_adapters_too(server: Server, adapters: dict[str, Path], alone: dict[str, LLM]) -> None:
    status, body = server.request("POST", "/api/load_model", {"model_path": "tiny-llama", "adapters": {"c": "../x"}})
    assert status == 400 and body["error"]["param"] == "adapters.c"
    assert [m["id"] for m in server.request("GET", "/v1/models")[1]["data"]] == ["tiny-llama", "a", "b"]
    swap = {"model_path": "tiny-llama", "adapters": {"c": str(adapters["b"])}}
    status, body = server.request("POST", "/api/load_model", swap)
    assert status == 200 and body["adapters"] == ["c"]
    assert [m["id"] for m in server.request("GET", "/v1/models")[1]["data"]] == ["tiny-llama", "c"]
    expected = alone["b"].generate(PROMPT, max_new_tokens=10, temperature=0)
    assert completion(server, model="c")[1]["choices"][0]["text"] == expected
    assert completion(server, model="a")[0] == 400  # the adapters of the model it replaced are gone
