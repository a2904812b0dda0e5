"""The `llm` plugin (extensions/llm-litllm): the real `llm` command, in subprocesses, on the tiny checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from litllm.local_models import add, resolve

pytestmark = pytest.mark.skipif(
    not any(ep.name == "litllm" for ep in entry_points(group="llm")),
    reason="the llm plugin is not installed (`make setup` installs extensions/llm-litllm)",
)


def llm_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "llm", *args], capture_output=True, text=True, env=env, timeout=120)


@pytest.fixture(scope="module")
def llm_env(tmp_path_factory: pytest.TempPathFactory, litllm_dir: Path) -> dict[str, str]:
    """An environment in which `llm` keeps its logs in a temporary folder and litllm's registry holds `tiny`."""
    home = tmp_path_factory.mktemp("litllm_home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LITLLM_HOME", str(home))
        add("tiny", litllm_dir)
    user_path = tmp_path_factory.mktemp("llm_user")
    return {**os.environ, "LITLLM_HOME": str(home), "LLM_USER_PATH": str(user_path), "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def first_prompt(llm_env: dict[str, str]) -> subprocess.CompletedProcess:
    """`llm -m litllm/tiny "hello"`, run once for the tests that read it or continue its conversation."""
    options = ["-o", "max_tokens", "5", "-o", "seed", "0"]
    return llm_cli("-m", "litllm/tiny", "hello", "-s", "Be brief.", *options, env=llm_env)


def test_llm_models_list_shows_the_registry_without_importing_torch(llm_env: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "llm", "models", "list"], capture_output=True, text=True, env=llm_env
    )
    assert result.returncode == 0, result.stderr
    assert "litllm/tiny" in result.stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()}
    assert "litllm.local_models" in imported and "torch" not in imported  # the plugin was loaded, torch was not


def test_llm_prompt_streams_a_reply(first_prompt: subprocess.CompletedProcess) -> None:
    assert first_prompt.returncode == 0, first_prompt.stderr
    assert first_prompt.stdout.strip()


def test_llm_continue_sends_the_earlier_turns_and_logs_usage(
    first_prompt: subprocess.CompletedProcess, llm_env: dict[str, str]
) -> None:
    result = llm_cli("-c", "again", "--no-stream", "-o", "max_tokens", "5", "-o", "seed", "0", env=llm_env)
    assert result.returncode == 0, result.stderr
    (log,) = json.loads(llm_cli("logs", "-n", "1", "--json", env=llm_env).stdout)
    assert log["model"] == "litllm/tiny" and log["response"] == result.stdout.rstrip("\n")
    assert log["output_tokens"] == 5 and log["input_tokens"] > 5
    messages = log["response_json"]["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert [messages[0]["content"], messages[1]["content"], messages[3]["content"]] == ["Be brief.", "hello", "again"]


@pytest.fixture
def llm_tiny(litllm_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """`litllm/tiny` through llm's Python API in this process (torch and the model are loaded here already)."""
    import llm

    monkeypatch.setenv("LLM_USER_PATH", str(tmp_path / "llm"))
    add("tiny", litllm_dir)
    return llm.get_model("litllm/tiny")


def test_llm_options_given_as_text_read_mappings_and_lists_as_json(llm_tiny) -> None:
    from litllm import LLM

    plain = llm_tiny.prompt("hi", max_tokens=4, temperature=0).text()
    token = LLM.load(resolve("tiny")).tokenizer.encode(" x")[-1]
    forced = llm_tiny.prompt("hi", max_tokens=4, temperature=0, logit_bias=f'{{"{token}": 100}}', stop='["zzz"]')
    assert forced.text() != plain and forced.text() == llm_tiny.prompt(
        "hi", max_tokens=4, temperature=0, logit_bias={token: 100}
    ).text()
    with pytest.raises(ValueError, match="option logit_bias takes JSON"):
        llm_tiny.prompt("hi", logit_bias="5: 3").text()


def test_llm_schema_output_parses_and_validates(llm_tiny) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    response = llm_tiny.prompt("a number", schema=schema, max_tokens=40, seed=0)
    assert isinstance(json.loads(response.text())["n"], int)


def test_llm_conversation_and_usage_through_the_python_api(llm_tiny) -> None:
    conversation = llm_tiny.conversation()
    first = conversation.prompt("one", max_tokens=3, seed=0)
    first.text()  # llm adds a response to the conversation's history once it has been read
    second = conversation.prompt("two", max_tokens=3, seed=0)
    assert second.usage().output == 3 and second.usage().input > first.usage().input
    assert [m["content"] for m in second.json()["messages"]] == ["one", first.text(), "two"]


def test_llm_python_api_has_the_async_model_too(llm_env: dict[str, str]) -> None:
    code = """
import asyncio, llm

async def run():
    model = llm.get_async_model("litllm/tiny")
    response = await model.prompt("hello", max_tokens=4, seed=0)
    return await response.text(), (await response.usage()).output

text, output = asyncio.run(run())
sync = llm.get_model("litllm/tiny").prompt("hello", max_tokens=4, seed=0)
assert text == sync.text() and output == 4, (text, sync.text(), output)
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=llm_env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_llm_embed_models_lists_the_registry_without_importing_torch(llm_env: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "llm", "embed-models"], capture_output=True, text=True, env=llm_env
    )
    assert result.returncode == 0, result.stderr
    assert "LitllmEmbeddingModel: litllm/tiny" in result.stdout
    assert "torch" not in {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()}


def test_llm_embed_prints_litllms_vector_as_json(llm_env: dict[str, str], litllm_dir: Path) -> None:
    from litllm.embeddings import EmbeddingModel

    result = llm_cli("embed", "-m", "litllm/tiny", "-c", "hello world", env=llm_env)
    assert result.returncode == 0, result.stderr
    vector = json.loads(result.stdout)
    assert isinstance(vector, list) and len(vector) == 64 and all(isinstance(x, float) for x in vector)
    assert sum(x * x for x in vector) == pytest.approx(1.0, abs=1e-6)
    expected = EmbeddingModel(litllm_dir).embed("hello world")
    assert max(abs(a - b) for a, b in zip(vector, expected, strict=True)) < 1e-5


@pytest.mark.usefixtures("llm_tiny")  # `tiny` registered, llm's files in a temporary folder
def test_llm_embed_multi_through_the_python_api_batches_like_litllm(litllm_dir: Path) -> None:
    import llm

    from litllm.embeddings import EmbeddingModel

    texts = ["one", "two words", "three words here", ""]
    model = llm.get_embedding_model("litllm/tiny")
    assert model.model_id == "litllm/tiny" and model.batch_size == EmbeddingModel.batch_size
    vectors = list(model.embed_multi(texts, batch_size=3))
    expected = [EmbeddingModel(litllm_dir).embed(text) for text in texts]
    assert len(vectors) == len(texts)
    for vector, alone in zip(vectors, expected, strict=True):
        assert max(abs(a - b) for a, b in zip(vector, alone, strict=True)) < 1e-5
    with pytest.raises(ValueError, match="binary"):  # llm's own check: litllm embeds text only
        model.embed(b"bytes")
