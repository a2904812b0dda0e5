"""Every request field the server takes is honoured or refused, never dropped: logit_bias, presence and frequency
penalties and logprobs change the output (in the engine, alone and inside a batch, and over HTTP); OpenAI's other
fields are refused with a 400 naming them, or accepted where they change nothing for a local model."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from litllm import LLM
from litllm.inference.engine import Request, SamplingParams, Scheduler
from litllm.inference.options import GenerationOptions
from litllm.inference.sampling import process_logits
from litllm.serve.errors import APIError
from litllm.serve.request_models import (
    ChatCompletionRequest,
    CompletionRequest,
    GenerateRequest,
    LoadModelRequest,
    NanochatRequest,
    TrainRequest,
)
from tests.serve_helpers import Server, running_server

MESSAGES = [{"role": "user", "content": "def add(a, b):"}]


@pytest.fixture(scope="module")
def llm(litllm_dir: Path) -> LLM:
    return LLM.load(litllm_dir)


@pytest.fixture(scope="module")
def server(litllm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("fields")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LITLLM_HOME", str(tmp / "home"))
        with running_server(litllm_dir, tmp, "--max_batch_size", "4") as server:
            yield server


def refusal(model: type, **body: object) -> str:
    """The message of the 400 that a request body gets from its model's validation."""
    with pytest.raises(APIError) as caught:
        model(**body)
    assert caught.value.status == 400
    return caught.value.message


# -- the options themselves --


def test_logit_bias_is_added_to_the_raw_logits_before_temperature() -> None:
    logits = torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    out = process_logits(logits, SamplingParams(temperature=0, logit_bias={0: 5.0, 2: -1.5}))
    assert out.tolist() == [[6.0, 2.0, 1.5], [6.0, 2.0, 1.5]]
    hot = process_logits(logits, SamplingParams(temperature=2.0, logit_bias={0: 5.0}))
    assert torch.allclose(hot, (torch.tensor([[6.0, 2.0, 3.0]] * 2) - 6.0) / 2.0)


def test_presence_and_frequency_penalties_follow_openai() -> None:
    logits = torch.zeros(1, 4)
    counts = torch.tensor([[0, 1, 3, 0]])
    params = SamplingParams(temperature=0, presence_penalty=0.5, frequency_penalty=0.25)
    assert process_logits(logits, params, counts=counts).tolist() == [[0.0, -0.75, -1.25, 0.0]]


@pytest.mark.parametrize(
    ("bias", "fragment"),
    [
        ({"abc": 1}, "logit_bias key 'abc' is not a token id"),
        ({"-3": 1}, "logit_bias key '-3' is not a token id"),
        ({"5": 1e9}, "a bias must be a number in [-100, 100]"),
        ({"5": "high"}, "a bias must be a number in [-100, 100]"),
        ({str(i): 1 for i in range(301)}, "at most 300 token ids, got 301"),
    ],
)
def test_a_bad_logit_bias_names_the_key_or_value(bias: dict, fragment: str) -> None:
    with pytest.raises(ValueError, match="logit_bias") as caught:
        GenerationOptions(logit_bias=bias)
    assert fragment in str(caught.value)
    assert fragment in refusal(ChatCompletionRequest, messages=MESSAGES, logit_bias=bias)


def test_logit_bias_keys_may_be_strings_as_json_sends_them() -> None:
    assert GenerationOptions(logit_bias={"7": 3, 9: -2.5}).logit_bias == {7: 3.0, 9: -2.5}


@pytest.mark.parametrize("name", ["presence_penalty", "frequency_penalty"])
def test_penalties_outside_minus_two_to_two_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match=rf"{name} must be a number in \[-2, 2\]"):
        GenerationOptions(**{name: 2.5})
    with pytest.raises(ValidationError, match=name):
        ChatCompletionRequest(messages=MESSAGES, **{name: -3})


def test_a_token_id_outside_the_vocabulary_is_refused(llm: LLM) -> None:
    scheduler = Scheduler(llm.model, llm.tokenizer)
    V = scheduler.vocab_size
    params = SamplingParams(logit_bias={V: 1.0})
    with pytest.raises(ValueError, match=rf"logit_bias key {V} is not a token id of this model: 0 to {V - 1}"):
        scheduler.submit(Request([1, 2], 3, params))


# -- in the engine: effect, and each row's bias only its own --


def test_logit_bias_forces_and_bans_tokens_in_generate(llm: LLM) -> None:
    plain = llm.generate("def add", max_new_tokens=8, temperature=0, return_as_token_ids=True)
    forced = llm.generate("def add", max_new_tokens=8, temperature=0, logit_bias={"42": 100}, return_as_token_ids=True)
    assert forced == [42] * 8
    banned = llm.generate(
        "def add", max_new_tokens=8, temperature=0, logit_bias={plain[0]: -100}, return_as_token_ids=True
    )
    assert banned[0] != plain[0]


def test_biased_and_plain_rows_decode_together_as_each_does_alone(llm: LLM) -> None:
    prompt = list(llm.tokenizer.encode("def add(a, b):"))
    params = [
        SamplingParams(temperature=0),
        SamplingParams(temperature=0, logit_bias={42: 100.0}),
        SamplingParams(temperature=0.8, top_k=20, logit_bias={7: 8.0, 11: -100.0}),
        SamplingParams(temperature=0.8, top_k=20, presence_penalty=1.5, frequency_penalty=1.0),
    ]

    def run(batch: list[SamplingParams]) -> list[list[int]]:
        scheduler = Scheduler(llm.model, llm.tokenizer, max_batch_size=4, prepack=False)
        completions = [scheduler.submit(Request(prompt, 10, p, seed=3))[0] for p in batch]
        scheduler.run()
        return [c.token_ids for c in completions]

    together = run(params)
    assert together == [run([p])[0] for p in params]
    assert together[1] == [42] * 10 and 42 not in together[0]
    assert 11 not in together[2]


def test_penalties_change_greedy_output_and_spread_the_tokens(llm: LLM) -> None:
    plain = llm.generate("def add", max_new_tokens=30, temperature=0, return_as_token_ids=True)
    for name in ("presence_penalty", "frequency_penalty"):
        penalised = llm.generate("def add", max_new_tokens=30, temperature=0, return_as_token_ids=True, **{name: 2.0})
        assert penalised != plain
        assert len(set(penalised)) > len(set(plain))


# -- the request models: every field honoured or refused --


def test_openai_sampling_fields_reach_the_generation_options() -> None:
    body = ChatCompletionRequest(
        messages=MESSAGES, logit_bias={"5": -100}, presence_penalty=0.5, frequency_penalty=-0.5, logprobs=True
    )
    options = body.options(16)
    assert options["logit_bias"] == {"5": -100.0}
    assert (options["presence_penalty"], options["frequency_penalty"], options["logprobs"]) == (0.5, -0.5, True)
    assert GenerationOptions.from_options(**options).logit_bias == {5: -100.0}


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("tools", [{"type": "function", "function": {"name": "f"}}], "tools are not supported by this server"),
        ("tool_choice", "auto", "tool_choice is not supported"),
        ("functions", [{"name": "f"}], "functions are not supported"),
        ("function_call", "auto", "function_call is not supported"),
        ("audio", {"voice": "alloy", "format": "wav"}, "audio output is not supported"),
        ("modalities", ["text", "audio"], 'modalities must be ["text"]'),
        ("reasoning_effort", "high", "reasoning_effort is not supported"),
        ("top_logprobs", 3, "top_logprobs is not supported"),
        ("store", True, "store must be false"),
        ("service_tier", "flex", "service_tier must be auto or default"),
        ("echo", True, "echo is not supported"),
        ("suffix", "}", "suffix (text insertion) is not supported"),
        ("ignore_eos", True, "unknown field 'ignore_eos'; this server takes: model, "),
    ],
)
def test_fields_that_would_change_the_output_are_refused_by_name(field: str, value: object, fragment: str) -> None:
    message = refusal(ChatCompletionRequest, messages=MESSAGES, **{field: value})
    assert message.startswith(field) or field in message.split(";")[0]
    assert fragment in message
    assert fragment in refusal(CompletionRequest, prompt="x", **{field: value})


def test_informational_fields_are_accepted_and_change_nothing() -> None:
    plain = ChatCompletionRequest(messages=MESSAGES).options(16)
    extras = {
        "user": "u-1",
        "metadata": {"k": "v"},
        "store": False,
        "service_tier": "auto",
        "modalities": ["text"],
        "prediction": {"type": "content", "content": "x"},
        "parallel_tool_calls": False,
        "tools": [],
        "tool_choice": "none",
        "top_logprobs": 0,
        "prompt_cache_key": "k",
        "safety_identifier": "s",
        "audio": None,
    }
    assert ChatCompletionRequest(messages=MESSAGES, **extras).options(16) == plain


def test_best_of_is_taken_only_equal_to_n() -> None:
    assert CompletionRequest(prompt="x", n=2, best_of=2).options(16)["num_samples"] == 2
    assert "best_of=3: only best_of equal to n (1)" in refusal(CompletionRequest, prompt="x", best_of=3)


def test_stream_options_take_include_usage_only() -> None:
    assert ChatCompletionRequest(messages=MESSAGES, stream_options={"include_usage": True}).include_usage
    with pytest.raises(ValidationError, match="stream_options.include_obfuscation"):
        ChatCompletionRequest(messages=MESSAGES, stream_options={"include_obfuscation": True})


@pytest.mark.parametrize(
    ("model", "body"),
    [
        (NanochatRequest, {"messages": MESSAGES, "top_p": 0.5}),
        (GenerateRequest, {"prompt": "x", "top_p": 0.5}),
        (LoadModelRequest, {"model_type": "gpt2", "dtype": "bfloat16"}),
        (TrainRequest, {"dataset": "shakespeare_char", "dropout": 0.1}),
    ],
)
def test_the_other_routes_refuse_fields_they_do_not_take(model: type, body: dict) -> None:
    unknown = next(k for k in body if k not in model.model_fields)
    with pytest.raises(ValidationError, match=rf"{unknown}\n  Extra inputs are not permitted"):
        model(**body)


# -- over HTTP --


def test_the_server_honours_logit_bias_and_refuses_a_bad_one(server: Server) -> None:
    body = {"messages": MESSAGES, "max_tokens": 5, "temperature": 0, "logit_bias": {"42": 100}}
    status, reply = server.request("POST", "/v1/chat/completions", body)
    assert status == 200, reply
    expected = server.request("POST", "/v1/completions", {"prompt": "x", "max_tokens": 5, "logit_bias": {"42": 100}})
    assert reply["choices"][0]["message"]["content"] == expected[1]["choices"][0]["text"] != ""
    status, reply = server.request("POST", "/v1/chat/completions", {**body, "logit_bias": {"abc": 1e9}})
    assert status == 400 and reply["error"]["param"] == "logit_bias", reply
    assert "logit_bias key 'abc' is not a token id" in reply["error"]["message"]
    status, reply = server.request("POST", "/v1/chat/completions", {**body, "logit_bias": {"99999999": 1}})
    assert status == 400 and "logit_bias key 99999999 is not a token id of this model" in reply["error"]["message"]
    status, reply = server.request("POST", "/v1/chat/completions", {**body, "tools": [{"type": "function"}]})
    assert status == 400 and reply["error"]["param"] == "tools", reply


def test_the_server_returns_logprobs_when_asked(server: Server, llm: LLM) -> None:
    body = {"messages": MESSAGES, "max_tokens": 4, "temperature": 0, "logprobs": True}
    status, reply = server.request("POST", "/v1/chat/completions", body)
    assert status == 200, reply
    content = reply["choices"][0]["logprobs"]["content"]
    assert len(content) == reply["usage"]["completion_tokens"]
    assert all(item["logprob"] <= 0 and math.isfinite(item["logprob"]) for item in content)
    assert "".join(item["token"] for item in content).startswith(reply["choices"][0]["message"]["content"])
    status, reply = server.request("POST", "/v1/completions", {"prompt": "def", "max_tokens": 3, "logprobs": True})
    assert status == 200, reply
    got = reply["choices"][0]["logprobs"]
    made = reply["usage"]["completion_tokens"]  # up to 3: the random model may end at its EOS
    assert 1 <= made <= 3 and len(got["tokens"]) == len(got["token_logprobs"]) == len(got["text_offset"]) == made
    status, plain = server.request("POST", "/v1/completions", {"prompt": "def", "max_tokens": 3})
    assert plain["choices"][0]["logprobs"] is None


def test_a_message_field_not_taken_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"messages\.0\.name\n  Extra inputs are not permitted"):
        ChatCompletionRequest(messages=[{"role": "user", "content": "hi", "name": "bob"}])
