"""The llm-style Python API: `litllm.get_model(name)` over the local registry, with lazy responses."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from pydantic import BaseModel

import litllm
from litllm.config import UnknownModelError
from litllm.inference.constraints import schema_dsl
from litllm.llm_api import Model, Usage, get_async_model, get_model, get_models
from litllm.local_models import add, set_alias, set_default_model


@pytest.fixture
def tiny(litllm_dir: Path) -> Model:
    """The tiny random Llama, registered as `tiny`."""
    add("tiny", litllm_dir)
    return get_model("tiny")


def test_get_model_names_the_model_after_its_registry_entry(tiny: Model) -> None:
    assert tiny.model_id == "tiny"
    assert tiny.supports_schema and "text/plain" in tiny.attachment_types and isinstance(tiny.attachment_types, set)


def test_get_model_follows_an_alias_to_the_model(tiny: Model) -> None:
    set_alias("fav", "tiny")
    assert get_model("fav").model_id == "tiny"


def test_get_model_without_a_name_gives_the_default_model(tiny: Model) -> None:
    set_default_model("tiny")
    assert get_model().model_id == "tiny"


def test_get_model_without_a_name_or_default_is_an_error(tiny: Model) -> None:
    with pytest.raises(UnknownModelError, match="no default model.*known: tiny"):
        get_model()


def test_an_unknown_model_is_an_error_naming_the_known_ones(tiny: Model) -> None:
    with pytest.raises(UnknownModelError, match="'nope'; known: tiny"):
        get_model("nope")


def test_get_models_lists_the_registry(tiny: Model) -> None:
    assert [m.model_id for m in get_models()] == ["tiny"]


def test_a_response_runs_nothing_until_it_is_read(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model_config.yaml").write_text("")  # a checkpoint by its file names, unloadable
    (broken / "model.safetensors").write_text("")
    add("broken", broken)
    response = get_model("broken").prompt("hi")
    assert not response.done
    with pytest.raises(ValueError, match="model_config.yaml"):
        response.text()


def test_text_is_the_chat_reply_of_the_underlying_llm(tiny: Model) -> None:
    response = tiny.prompt("def add", system="You write Python.", temperature=0, max_tokens=8)
    messages = [{"role": "system", "content": "You write Python."}, {"role": "user", "content": "def add"}]
    assert response.text() == tiny.llm().chat(messages, temperature=0, max_new_tokens=8)


def test_iterating_streams_the_pieces_of_the_text(tiny: Model) -> None:
    response = tiny.prompt("hello", seed=1, max_tokens=10)
    pieces = list(response)
    assert len(pieces) > 1
    assert "".join(pieces) == response.text() == tiny.prompt("hello", seed=1, max_tokens=10).text()


def test_usage_counts_prompt_and_generated_tokens(tiny: Model) -> None:
    response = tiny.prompt("hello", temperature=0, max_tokens=5)
    usage = response.usage()
    assert usage == Usage(input=usage.input, output=5)
    assert usage.input > tiny.llm().count_tokens("hello")  # the chat format wraps the prompt


def test_on_done_is_called_once_when_complete_and_at_once_afterwards(tiny: Model) -> None:
    response = tiny.prompt("hello", max_tokens=3, seed=0)
    seen = []
    response.on_done(seen.append)
    assert seen == []
    response.text()
    response.text()
    assert seen == [response]
    response.on_done(seen.append)
    assert seen == [response, response]


def test_stopping_the_iteration_early_cancels_the_generation(tiny: Model) -> None:
    response = tiny.prompt("hello", max_tokens=20, seed=0, temperature=0)
    first = next(iter(response))
    assert response.done and response.finish_reason == "cancelled"
    assert response.text() == first


def test_a_conversation_sends_the_earlier_turns(tiny: Model) -> None:
    conversation = tiny.conversation()
    first = conversation.prompt("one", system="Be brief.", max_tokens=4, seed=0)
    second = conversation.prompt("two", max_tokens=4, seed=0)
    assert second.json()["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": first.text()},
        {"role": "user", "content": "two"},
    ]
    assert conversation.responses == [first, second]
    assert second.usage().input > first.usage().input


def test_json_describes_the_prompt_and_the_response(tiny: Model) -> None:
    response = tiny.prompt("hello", temperature=0, max_tokens=4)
    record = response.json()
    assert record["model"] == "tiny" and record["prompt"] == "hello" and record["system"] is None
    assert record["options"] == {"temperature": 0, "max_tokens": 4}
    assert record["response"] == response.text()
    assert record["usage"]["input"] == response.usage().input and record["usage"]["output"] == 4
    assert record["usage"]["total_tokens"] == record["usage"]["prompt_tokens"] + 4
    assert record["content"] == response.text()
    assert record["finish_reason"] == "length"
    json.dumps(record)


def test_an_unknown_option_is_a_type_error_naming_it(tiny: Model) -> None:
    with pytest.raises(TypeError, match="unknown option 'temprature'"):
        tiny.prompt("hello", temprature=0)


def test_an_image_attachment_is_refused_naming_the_types_a_text_model_takes(tiny: Model) -> None:
    with pytest.raises(
        ValueError, match="tiny takes text attachments only \\(application/json, .*\\), not 'image/png'"
    ):
        tiny.prompt("describe this", attachments=[litllm.Attachment(path="cat.png")])
    with pytest.raises(TypeError, match="litllm.Attachment objects, got str"):
        tiny.prompt("describe this", attachments=["cat.png"])


def test_a_text_attachment_goes_into_the_prompt_before_the_text(tiny: Model, tmp_path: Path) -> None:
    notes = tmp_path / "notes.md"
    notes.write_text("# Notes\nPelicans eat fish.")
    attachments = [litllm.Attachment(path=str(notes)), litllm.Attachment(content=b"second one")]
    response = tiny.prompt("Summarise.", attachments=attachments, max_tokens=3, temperature=0)
    response.text()
    assert response.messages[-1] == {
        "role": "user",
        "content": "# Notes\nPelicans eat fish.\n\nsecond one\n\nSummarise.",
    }
    follow_up = tiny.conversation()
    follow_up.prompt("Summarise.", attachments=attachments, max_tokens=2).text()
    later = follow_up.prompt("Again.", max_tokens=2)
    later.text()
    assert later.messages[0]["content"].startswith("# Notes")  # an earlier turn keeps its attachments


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one of path=, url= or content=, got none"),
        ({"path": "a", "content": b"b"}, "got \\['path', 'content'\\]"),
    ],
)
def test_an_attachment_takes_exactly_one_source(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        litllm.Attachment(**kwargs)


def test_attachment_types_are_guessed_from_name_or_content() -> None:
    assert litllm.Attachment(path="x.json").resolve_type() == "application/json"
    assert litllm.Attachment(content="héllo".encode()).resolve_type() == "text/plain"
    assert litllm.Attachment(content=b"\xff\xd8\xff\xe0").resolve_type() == "image/jpeg"
    assert litllm.Attachment(content=b"\x89PNG\r\n\x1a\n").resolve_type() == "image/png"
    assert litllm.Attachment(content=b"RIFF\0\0\0\0WEBPVP8 ").resolve_type() == "image/webp"
    assert litllm.Attachment(content=b"\x00\xfe\xff").resolve_type() == "application/octet-stream"
    assert litllm.Attachment(content=b"abc").id() == litllm.Attachment(content=b"abc", type="text/plain").id()


def test_an_unreachable_attachment_url_is_one_clear_error(tiny: Model) -> None:
    with pytest.raises(ValueError, match="cannot fetch attachment http://127.0.0.1:9/x.txt"):
        tiny.prompt("hi", attachments=[litllm.Attachment(url="http://127.0.0.1:9/x.txt")], max_tokens=2).text()


def test_usage_details_duration_and_start_time_and_an_unused_key(tiny: Model) -> None:
    response = tiny.prompt("hello", max_tokens=3, key="sk-not-needed")
    assert response.usage().details is None
    assert isinstance(response.duration_ms(), int) and response.duration_ms() >= 0
    assert response.datetime_utc().endswith("+00:00") and response.json()["datetime_utc"] == response.datetime_utc()


def test_awaiting_an_async_prompt_gives_the_complete_response(tiny: Model) -> None:
    async def run() -> tuple:
        model = litllm.get_async_model("tiny")
        response = await model.prompt("hello", seed=0, max_tokens=4)
        return response.done, await response.text(), await response.duration_ms(), await response.datetime_utc()

    done, text, duration, started = asyncio.run(run())
    assert done and text == tiny.prompt("hello", seed=0, max_tokens=4).text()
    assert duration >= 0 and started.endswith("+00:00")


def test_async_on_done_takes_plain_and_async_callbacks(tiny: Model) -> None:
    seen = []

    async def run() -> None:
        response = litllm.get_async_model("tiny").prompt("a poem", max_tokens=3)

        async def done(r) -> None:
            seen.append(("async", (await r.usage()).output))

        await response.on_done(done)
        await response.on_done(lambda r: seen.append(("plain", r.done)))
        await response.text()
        await response.on_done(done)  # complete already: called at once

    asyncio.run(run())
    assert seen == [("async", 3), ("plain", True), ("async", 3)]


def test_get_async_models_lists_the_registry_as_async_models(tiny: Model) -> None:
    models = litllm.get_async_models()
    assert [m.model_id for m in models] == ["tiny"] and all(isinstance(m, litllm.llm_api.AsyncModel) for m in models)


def test_a_schema_makes_the_output_parse_as_json(tiny: Model) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    response = tiny.prompt("a number", schema=schema, max_tokens=40, seed=0)
    assert isinstance(json.loads(response.text())["n"], int)
    assert response.json()["schema"] == schema


def test_a_pydantic_schema_validates_and_is_recorded_as_its_json_schema(tiny: Model) -> None:
    class Point(BaseModel):
        x: int
        y: int

    response = tiny.prompt("a point", schema=Point, max_tokens=40, seed=0)
    Point.model_validate_json(response.text())
    assert response.json()["schema"] == Point.model_json_schema()


def test_the_checkpoint_is_loaded_once_per_process(tiny: Model) -> None:
    assert tiny.llm() is get_model("tiny").llm() is get_async_model("tiny").llm()


def test_an_async_response_awaits_text_streams_and_counts_usage(tiny: Model) -> None:
    model = get_async_model("tiny")

    async def run() -> tuple[str, list[str], Usage]:
        response = model.prompt("hello", seed=0, max_tokens=6)
        pieces = [piece async for piece in response]
        return await response.text(), pieces, await response.usage()

    text, pieces, usage = asyncio.run(run())
    assert text == "".join(pieces) == tiny.prompt("hello", seed=0, max_tokens=6).text()
    assert usage.output == 6


def test_async_generation_leaves_the_event_loop_free(tiny: Model) -> None:
    model = get_async_model("tiny")

    async def run() -> int:
        ticks = 0
        task = asyncio.create_task(model.prompt("hello", seed=0, max_tokens=10).text())
        while not task.done():
            ticks += 1
            await asyncio.sleep(0)
        await task
        return ticks

    assert asyncio.run(run()) > 1


def test_async_generation_runs_its_torch_work_on_one_thread(tiny: Model) -> None:
    # asyncio's pool would hand each piece to any of its threads, and each thread running torch gets its own OpenMP
    # team; idle teams spin and take the cores from the one at work
    model = get_async_model("tiny")
    seen: set[str] = set()
    hook = model.llm().model.register_forward_pre_hook(lambda module, args: seen.add(threading.current_thread().name))

    async def run() -> None:
        for seed in range(3):
            await model.prompt("hello", seed=seed, max_tokens=8).text()

    try:
        asyncio.run(run())
    finally:
        hook.remove()
    assert len(seen) == 1 and seen.pop().startswith("litllm-compute")


def test_an_async_conversation_sends_the_earlier_turns(tiny: Model) -> None:
    conversation = get_async_model("tiny").conversation()

    async def run() -> list[dict[str, str]]:
        first = conversation.prompt("one", max_tokens=3, seed=0)
        second = conversation.prompt("two", max_tokens=3, seed=0)
        return (await second.json())["messages"], await first.text()

    messages, first_text = asyncio.run(run())
    assert [m["content"] for m in messages] == ["one", first_text, "two"]


def test_litllm_exports_the_model_api_without_importing_torch() -> None:
    assert litllm.get_model is get_model and litllm.get_async_model is get_async_model
    assert litllm.schema_dsl("n int") == schema_dsl("n int")
    code = "import sys, litllm; litllm.get_model; litllm.get_models(); assert 'torch' not in sys.modules"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
