"""`litllm serve`, started for real in a subprocess: OpenAI-compatible and nanochat routes, batching, cancellation,
validation, authentication, the control API, metrics, and shutdown."""

from __future__ import annotations

import http.client
import json
import re
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from litllm import LLM
from tests.serve_helpers import API_KEY, Server, running_server

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "def add(a, b):"}]


@pytest.fixture(scope="module")
def server(litllm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("serve")
    shutil.copytree(litllm_dir, tmp / "models" / "other-model")
    shutil.copytree(litllm_dir, tmp / "models" / litllm_dir.name)  # to swap back to
    with pytest.MonkeyPatch.context() as env:  # its own home: module fixtures run before the per-test one
        env.setenv("LITLLM_HOME", str(tmp / "home"))
        with running_server(litllm_dir, tmp, "--max_batch_size", "4") as server:
            yield server


@pytest.fixture(scope="module")
def llm(litllm_dir: Path) -> LLM:
    return LLM.load(litllm_dir)


def chat(server: Server, **body: object) -> tuple[int, dict]:
    return server.request("POST", "/v1/chat/completions", {"messages": MESSAGES, **body})


def test_health_says_ready_without_a_key(server: Server) -> None:
    status, body = server.request("GET", "/health", auth=False)
    assert status == 200 and body["ready"] is True and body["status"] == "ok"
    assert body["num_gpus"] == 0 and body["available_workers"] == 1  # nanochat's fields: on CPU, no GPU


def test_models_lists_the_served_model(server: Server, litllm_dir: Path) -> None:
    status, body = server.request("GET", "/v1/models")
    assert status == 200 and [m["id"] for m in body["data"]] == [litllm_dir.name]


def test_chat_completion_is_what_the_engine_gives_alone(server: Server, llm: LLM) -> None:
    status, body = chat(server, max_tokens=12, temperature=0)
    assert status == 200, body
    expected = llm.chat(MESSAGES, max_new_tokens=12, temperature=0)
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": expected}
    usage = body["usage"]
    assert (
        usage["completion_tokens"] <= 12
        and usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    )


def test_max_completion_tokens_limits_the_reply(server: Server) -> None:
    status, body = chat(server, max_completion_tokens=3, temperature=0)
    assert status == 200 and body["usage"]["completion_tokens"] <= 3


def test_streamed_chat_joins_to_the_whole_reply_and_reports_usage(server: Server) -> None:
    _, whole = chat(server, max_tokens=10, temperature=0)
    events = server.events(
        "/v1/chat/completions",
        {
            "messages": MESSAGES,
            "max_tokens": 10,
            "temperature": 0,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    )
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == whole["choices"][0]["message"]["content"]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == whole["usage"]
    assert any(c["choices"] and c["choices"][0]["finish_reason"] for c in chunks)


def test_completions_take_n_seed_and_several_prompts(server: Server, llm: LLM) -> None:
    body = {"prompt": ["def", "class"], "max_tokens": 6, "n": 2, "temperature": 1.0, "seed": 5}
    status, first = server.request("POST", "/v1/completions", body)
    assert status == 200, first
    assert [c["index"] for c in first["choices"]] == [0, 1, 2, 3]
    assert server.request("POST", "/v1/completions", body)[1]["choices"] == first["choices"]
    expected = llm.generate("def", max_new_tokens=6, temperature=1.0, seed=5, num_samples=2)
    assert [c["text"] for c in first["choices"][:2]] == expected


def test_stop_strings_end_the_reply(server: Server, llm: LLM) -> None:
    full = llm.generate("def add", max_new_tokens=30, temperature=0)
    stop = full[6:10]
    _, body = server.request(
        "POST", "/v1/completions", {"prompt": "def add", "max_tokens": 30, "temperature": 0, "stop": [stop]}
    )
    assert body["choices"][0]["text"] == full[: full.index(stop)] and body["choices"][0]["finish_reason"] == "stop"


def test_concurrent_requests_share_the_batch_and_each_gets_its_own_output(server: Server, llm: LLM) -> None:
    prompts = ["def add", "class Point", "import os", "print(", "x = [", "while True"]
    results: dict[str, str] = {}

    def one(prompt: str) -> None:
        events = server.events(
            "/v1/completions", {"prompt": prompt, "max_tokens": 16, "temperature": 0, "stream": True}
        )
        results[prompt] = "".join(e["choices"][0]["text"] for e in events[:-1] if e["choices"])

    threads = [threading.Thread(target=one, args=(p,)) for p in prompts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == {p: llm.generate(p, max_new_tokens=16, temperature=0) for p in prompts}


def test_a_client_that_disconnects_frees_its_row(server: Server, llm: LLM) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    banned = {str(i): -100 for i in {*llm.tokenizer.stop_ids, llm.tokenizer.eos_id} - {None}}  # no early end
    body = json.dumps({"prompt": "def", "max_tokens": 4000, "temperature": 1.0, "stream": True, "logit_bias": banned})
    connection.request("POST", "/v1/completions", body, server.headers())
    response = connection.getresponse()
    assert response.status == 200
    response.readline()  # the first event: the request is on its way to the worker
    deadline = time.monotonic() + 30
    while not (busy := server.request("GET", "/api/status")[1]["busy"]) and time.monotonic() < deadline:
        time.sleep(0.05)  # on a loaded machine the worker may take its row a moment after the first event
    connection.close()
    deadline = time.monotonic() + 30
    while server.request("GET", "/api/status")[1]["busy"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert busy == 1
    assert server.request("GET", "/api/status")[1]["busy"] == 0
    assert server.request("GET", "/stats")[1]["busy"] == 0


def test_nanochat_route_streams_tokens_then_done(server: Server) -> None:
    events = server.events("/chat/completions", {"messages": MESSAGES, "max_tokens": 5, "temperature": 0})
    assert events[-1] == {"done": True}
    assert all(set(e) == {"token", "gpu"} for e in events[:-1]) and len(events) > 1


@pytest.mark.parametrize(
    ("body", "param", "expected"),
    [  # 400: a parameter out of range or not among those accepted; 422: a malformed body (nanochat's codes)
        ({"messages": MESSAGES, "temperature": 2.5}, "temperature", 400),
        ({"messages": MESSAGES, "top_k": 201}, None, 400),
        ({"messages": MESSAGES, "max_tokens": 0}, "max_tokens", 400),
        ({"messages": MESSAGES, "max_tokens": 5000}, None, 400),
        ({"messages": MESSAGES, "top_p": 0}, "top_p", 400),
        ({"messages": [{"role": "robot", "content": "hi"}]}, "messages.0.role", 400),
        ({"messages": [{"role": "user", "content": "x" * 8001}]}, None, 400),
        ({"messages": [{"role": "user", "content": "x"}] * 501}, None, 400),
        ({"messages": [{"role": "user", "content": "x" * 7000}] * 5}, None, 400),
        ({"messages": []}, "messages", 400),
        ({"messages": "hello"}, "messages", 422),
        ({"messages": MESSAGES, "stream": "yes please"}, "stream", 422),
        ({"messages": MESSAGES, "stop": [1, 2]}, None, 422),
        ({"messages": MESSAGES, "max_tokens": "many"}, "max_tokens", 422),
        ({}, "messages", 422),
    ],
)
def test_bad_requests_get_400_or_422_with_an_openai_error_and_a_detail(
    server: Server, body: dict, param: str | None, expected: int
) -> None:
    status, answer = server.request("POST", "/v1/chat/completions", body)
    assert status == expected, answer
    error = answer["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    assert answer["detail"] == error["message"]
    if param:
        assert error["param"] == param


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"prompt": "def", "temperature": 2.5}, 400),
        ({"prompt": "def", "max_new_tokens": 0}, 400),
        ({"prompt": "def", "top_k": 201}, 400),
        ({"prompt": ""}, 400),
        ({"prompt": 5}, 422),
        ({"max_new_tokens": 5}, 422),
        ({"prompt": "def", "max_new_tokens": "five"}, 422),
    ],
)
def test_generate_answers_400_out_of_range_and_422_malformed(server: Server, body: dict, expected: int) -> None:
    status, answer = server.request("POST", "/api/generate", body)
    assert status == expected and answer["detail"] == answer["error"]["message"], answer


POINT = {"type": "object", "properties": {"x": {"type": "integer"}, "label": {"type": "string"}}, "required": ["x"]}


@pytest.mark.parametrize(
    ("fields", "check"),
    [
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "point", "schema": POINT}}}, "point"),
        ({"response_format": {"type": "json_object"}}, "object"),
        ({"guided_json": POINT}, "point"),
        ({"guided_json": json.dumps(POINT)}, "point"),
        ({"guided_regex": "[0-9]{3}-[a-z]{2}"}, "regex"),
        ({"guided_grammar": 'start: "yes" | "no"'}, "grammar"),
    ],
)
def test_structured_output_shapes_the_reply(server: Server, fields: dict, check: str) -> None:
    import jsonschema

    status, body = chat(server, max_tokens=60, temperature=1.0, seed=2, **fields)
    assert status == 200, body
    content = body["choices"][0]["message"]["content"]
    if check == "point":
        jsonschema.validate(json.loads(content), POINT)
    elif check == "object":
        assert isinstance(json.loads(content), dict)
    elif check == "regex":
        assert re.fullmatch("[0-9]{3}-[a-z]{2}", content), content
    else:
        assert content in ("yes", "no")


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"guided_regex": "[0-9"}, "regex"),
        ({"guided_grammar": "start: nothing_defined"}, "grammar"),
        ({"guided_json": "{not json"}, "guided_json is not valid JSON"),
        ({"guided_regex": "a", "guided_grammar": 'start: "a"'}, "at most one of"),
        ({"response_format": {"type": "json_schema"}}, "json_schema needs json_schema"),
    ],
)
def test_bad_structured_output_is_a_4xx_naming_it(server: Server, fields: dict, fragment: str) -> None:
    status, body = chat(server, max_tokens=10, **fields)
    assert status in (400, 422), body
    assert fragment in body["error"]["message"]


def test_bad_json_is_422_and_an_unknown_model_400(server: Server) -> None:
    status, answer = server.request("POST", "/v1/chat/completions", raw=b'{"messages": [')
    assert status == 422 and answer["error"]["code"] == "invalid_json" and "not valid JSON" in answer["detail"]
    status, answer = chat(server, model="gpt-5")
    assert status == 400 and answer["error"]["param"] == "model" and "gpt-5" in answer["error"]["message"]


def test_prompt_longer_than_the_context_is_400(server: Server) -> None:
    status, answer = server.request("POST", "/v1/completions", {"prompt": "x = 1\n" * 1000, "max_tokens": 5})
    assert status == 400 and "context" in answer["error"]["message"]


def test_every_route_but_health_and_the_page_needs_the_key(server: Server) -> None:
    for method, path in [
        ("GET", "/v1/models"),
        ("GET", "/api/status"),
        ("GET", "/metrics"),
        ("POST", "/v1/completions"),
    ]:
        status, answer = server.request(method, path, auth=False)
        assert status == 401 and answer["error"]["type"] == "authentication_error" and "API key" in answer["detail"]
    server.api_key, real = "wrong-key", server.api_key
    try:
        assert server.request("GET", "/v1/models")[0] == 401
    finally:
        server.api_key = real
    assert server.request("GET", "/health", auth=False)[0] == 200
    assert server.request("GET", "/", auth=False)[0] == 200  # the page asks for the key for its API calls


def test_chat_page_is_served_at_the_root(server: Server) -> None:
    status, page = server.request("GET", "/")
    assert status == 200 and "<html" in page.lower()


def test_control_status_models_and_generate(server: Server, llm: LLM) -> None:
    before = time.time()
    status, body = server.request("GET", "/api/status")
    assert status == 200 and body["status"] == "online" and body["model_loaded"] is True and body["device"] == "cpu"
    assert isinstance(body["timestamp"], float) and before - 1 < body["timestamp"] < time.time() + 1
    status, body = server.request("GET", "/api/models")
    assert "pythia-160m" in body["named"] and sorted(m["name"] for m in body["local"]) == ["other-model", "tiny-llama"]
    assert body["local"][0]["config"]["n_layer"] == 2
    assert "gpt2" in body["pretrained_models"] and body["trained_models"] == []
    status, body = server.request("POST", "/api/generate", {"prompt": "def", "max_new_tokens": 8, "temperature": 0})
    continuation = llm.generate("def", max_new_tokens=8, temperature=0)
    assert status == 200 and body["generated_text"] == "def" + continuation and body["completion"] == continuation
    assert body["prompt"] == "def" and body["parameters"] == {"max_new_tokens": 8, "temperature": 0, "top_k": 200}


@pytest.mark.parametrize("path", ["../outside", "/etc", "other-model/../../.."])
def test_load_model_refuses_paths_outside_the_models_root(server: Server, path: str) -> None:
    status, body = server.request("POST", "/api/load_model", {"model_path": path})
    assert status == 400 and body["error"]["param"] == "model_path"


@pytest.mark.parametrize("field", ["model_name", "model_type"])
def test_a_model_name_that_is_a_path_is_confined_like_model_path(server: Server, litllm_dir: Path, field: str) -> None:
    here = Path(__file__).resolve().parent  # tests/, which the server's working directory holds
    in_cwd = [str(p.relative_to(Path.cwd())) for p in (here, here / "hf_models.py") if p.is_relative_to(Path.cwd())]
    for path in (str(litllm_dir), "../outside", "other-model/../../..", "runs/../../x", *in_cwd):
        status, body = server.request("POST", "/api/load_model", {field: path})
        assert status == 400 and body["error"]["param"] == field and "outside" in body["detail"], (path, body)
    assert [m["id"] for m in server.request("GET", "/v1/models")[1]["data"]] == [litllm_dir.name]


def test_a_hub_name_offline_is_503_with_the_offline_message(server: Server, litllm_dir: Path) -> None:
    for name in ("gpt2", "some-org/some-model"):
        status, body = server.request("POST", "/api/load_model", {"model_type": name})
        assert status == 503 and body["error"]["code"] == "hub_unavailable", body
        assert "offline" in body["detail"] and "HF_HUB_OFFLINE" in body["detail"]
    status, body = server.request("POST", "/api/load_model", {"model_name": "no-such-model-anywhere"})
    assert status == 400 and "no-such-model-anywhere" in body["detail"]
    assert server.request("GET", "/api/status")[1]["model"] == litllm_dir.name  # the served model stays


def test_load_model_takes_exactly_one_field(server: Server) -> None:
    for body in ({}, {"model_type": "a", "model_path": "b"}):
        status, answer = server.request("POST", "/api/load_model", body)
        assert status == 400 and "exactly one of model_type" in answer["detail"]
    assert server.request("POST", "/api/load_model", {"model_kind": "x"})[0] == 422


def test_load_model_swaps_the_model_without_restart(server: Server, litllm_dir: Path) -> None:
    status, body = server.request("POST", "/api/load_model", {"model_path": "other-model"})
    assert status == 200 and body["model"] == "other-model" and body["message"] == "Model loaded successfully"
    assert [m["id"] for m in server.request("GET", "/v1/models")[1]["data"]] == ["other-model"]
    assert chat(server, model="other-model", max_tokens=3)[0] == 200
    status, body = server.request("POST", "/api/load_model", {"model_path": str(litllm_dir)})
    assert status == 400  # an absolute path elsewhere is outside the root too
    assert server.request("POST", "/api/load_model", {"model_path": litllm_dir.name})[1]["model"] == litllm_dir.name


def test_train_refuses_recipes_outside_config_hub(server: Server) -> None:
    status, body = server.request("POST", "/api/train", {"command": "pretrain", "recipe": "../../etc/passwd"})
    assert status == 400 and "outside" in body["error"]["message"]
    assert server.request("GET", "/api/train/nope")[0] == 404


def test_metrics_count_requests_and_tokens(server: Server) -> None:
    chat(server, max_tokens=4, temperature=0)
    status, text = server.request("GET", "/metrics")
    assert status == 200
    assert 'litllm_requests_total{route="/v1/chat/completions",status="200"}' in text
    assert "litllm_generated_tokens_total" in text and "litllm_time_to_first_token_seconds_bucket" in text
    stats = server.request("GET", "/stats")[1]
    worker = stats["worker_stats"][0]  # the same worker's row, as labelled series
    assert 'litllm_worker_ready{worker="0",device="cpu"} 1' in text
    assert 'litllm_worker_busy_rows{worker="0",device="cpu"} 0' in text
    generated = next(line for line in text.splitlines() if line.startswith("litllm_worker_generated_tokens_total{"))
    assert 0 < int(generated.rsplit(" ", 1)[1]) <= worker["completion_tokens"]
    assert stats["workers"] == [{"gpu_id": 0, "device": "cpu"}] and stats["completion_tokens"] > 0
    assert (stats["total_workers"], stats["available_workers"], stats["busy_workers"]) == (1, 1, 0)


def test_the_openai_package_works_against_the_server(server: Server, llm: LLM, litllm_dir: Path) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=server.url + "/v1", api_key=API_KEY)
    expected = llm.chat(MESSAGES, max_new_tokens=8, temperature=0)
    reply = client.chat.completions.create(model=litllm_dir.name, messages=MESSAGES, max_tokens=8, temperature=0)
    assert reply.choices[0].message.content == expected and reply.usage.completion_tokens <= 8
    stream = client.chat.completions.create(
        model=litllm_dir.name, messages=MESSAGES, max_tokens=8, temperature=0, stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == expected
    text = llm.generate("def", max_new_tokens=6, temperature=0)
    completion = client.completions.create(model=litllm_dir.name, prompt="def", max_tokens=6, temperature=0)
    assert completion.choices[0].text == text
    pieces = client.completions.create(model=litllm_dir.name, prompt="def", max_tokens=6, temperature=0, stream=True)
    assert "".join(p.choices[0].text for p in pieces) == text
    assert [m.id for m in client.models.list()] == [litllm_dir.name]


def test_fuzzed_request_bodies_never_get_a_5xx(server: Server) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    openapi = server.request("GET", "/openapi.json")[1]
    routes = {}
    for path, methods in openapi["paths"].items():
        body = methods.get("post", {}).get("requestBody", {}).get("content", {}).get("application/json")
        if body and path not in ("/api/train", "/api/load_model"):  # these start jobs and swap models
            routes[path] = resolve_refs(body["schema"], openapi)
    assert {"/v1/chat/completions", "/v1/completions", "/chat/completions", "/api/generate"} <= set(routes)
    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
        max_leaves=8,
    )

    def bodies(schema: dict) -> st.SearchStrategy:
        names = list(schema.get("properties", {}))
        mangled = st.dictionaries(st.sampled_from(names), json_values, max_size=len(names)) if names else json_values
        return values_of(schema, json_values) | mangled | json_values

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.sampled_from(sorted(routes)).flatmap(lambda p: st.tuples(st.just(p), bodies(routes[p]))))
    def no_server_error(case: tuple[str, object]) -> None:
        path, body = case
        if isinstance(body, dict):
            body = {**body, "stream": False} if "stream" in body else body
            for key in ("max_tokens", "max_new_tokens", "max_completion_tokens"):
                if isinstance(body.get(key), int) and body[key] > 8:
                    body[key] = 8  # keep the valid cases quick; the limits themselves are tested above
        status, answer = server.request("POST", path, body)
        assert status < 500, (path, body, answer)

    no_server_error()


def values_of(schema: dict, anything: object) -> object:
    """A hypothesis strategy for values shaped like `schema` (types, enums, ranges and a little past them)."""
    from hypothesis import strategies as st

    if "anyOf" in schema:
        return st.one_of([values_of(s, anything) for s in schema["anyOf"]])
    if "enum" in schema or "const" in schema:
        return st.sampled_from(schema.get("enum", [schema.get("const")]))
    kind = schema.get("type")
    low = schema.get("minimum", schema.get("exclusiveMinimum"))
    high = schema.get("maximum", schema.get("exclusiveMaximum"))
    if kind == "integer":
        return st.integers(None if low is None else int(low) - 2, None if high is None else int(high) + 2)
    if kind == "number":
        return st.floats(None if low is None else low - 1, None if high is None else high + 1, allow_nan=False)
    if kind == "string":
        return st.text(max_size=40)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "array":
        return st.lists(values_of(schema.get("items", {}), anything), max_size=3)
    if kind == "object" and "properties" in schema:
        props = {k: values_of(v, anything) for k, v in schema["properties"].items()}
        required = {k: v for k, v in props.items() if k in schema.get("required", [])}
        optional = {k: v for k, v in props.items() if k not in required}
        return st.fixed_dictionaries(required, optional=optional)
    return anything


def resolve_refs(schema: object, document: dict) -> object:
    """`schema` with every `$ref` into the OpenAPI document's components replaced by what it points to."""
    if isinstance(schema, dict):
        if "$ref" in schema:
            target = document
            for part in schema["$ref"].lstrip("#/").split("/"):
                target = target[part]
            return resolve_refs(target, document)
        return {k: resolve_refs(v, document) for k, v in schema.items()}
    if isinstance(schema, list):
        return [resolve_refs(v, document) for v in schema]
    return schema


def test_limits_are_configurable() -> None:
    from litllm.serve.request_models import LIMITS, ChatCompletionRequest, set_limits

    before = LIMITS.max_messages
    set_limits({"max_messages": 2})
    try:
        with pytest.raises(ValueError, match="at most 2 messages"):
            ChatCompletionRequest(messages=[{"role": "user", "content": "a"}] * 3)
    finally:
        set_limits({"max_messages": before})
    with pytest.raises(ValueError, match="max_mesages"):
        set_limits({"max_mesages": 2})


@pytest.mark.parametrize(
    ("args", "fragment"),
    [(["does-not-exist"], "does-not-exist"), (["{model}", "--limits", '{"max_messages": 0}'], "max_messages")],
)
def test_serve_refuses_bad_arguments_in_one_line(litllm_dir: Path, args: list[str], fragment: str) -> None:
    import subprocess
    import sys

    args = [a.replace("{model}", str(litllm_dir)) for a in args]
    result = subprocess.run([sys.executable, "-m", "litllm.cli", "serve", *args], capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr and fragment in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


# last: it stops the module's server
def test_sigint_stops_a_server_started_with_sigint_ignored(litllm_dir: Path, tmp_path: Path) -> None:
    server = Server(litllm_dir, tmp_path, ignore_sigint=True)  # as `litllm serve ... &` in a script starts it
    try:
        server.wait_ready()
    except BaseException:
        server.stop(signal.SIGKILL)
        raise
    assert server.stop(signal.SIGINT, timeout=30) == 0  # and nothing is left behind (stop checks)


def test_sigterm_stops_every_process(server: Server) -> None:
    assert len(server.processes()) >= 3  # the server, its HTTP process and its inference worker
    assert server.stop(signal.SIGTERM) == 0
