"""The seed documents' examples (../shared/seeds/000-004), close to verbatim under litllm's names.

`import llm` is `import litllm as llm`, `from litgpt import LLM` is `from litllm import LLM`, nanochat's modules are
`litllm`. Each test runs one document's example on a tiny local model (no network) and asserts what the document
says it returns. The models have random weights, so the text itself is noise: types, shapes and fields are checked.
The nanoGPT API server's document (001) is exercised request by request against a live server in
tests/test_serve_nanogpt.py, and nanochat's web routes (004) in tests/test_serve.py.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from pydantic import BaseModel
from test_load_model import runs  # noqa: F401 - a tiny pretrain run and a finetune run from it (a fixture)

import litllm as llm
from litllm.local_models import add


@pytest.fixture
def model_id(litllm_dir: Path) -> str:
    """The tiny random Llama, registered under the name the `llm` documents use."""
    add("gpt-4o-mini", litllm_dir)
    return "gpt-4o-mini"


# -- 002 / 003: the llm Python API --


def test_llm_basic_prompt_execution(model_id: str, capsys: pytest.CaptureFixture) -> None:
    model = llm.get_model("gpt-4o-mini")
    model.key = "sk-..."  # accepted, and ignored by a local model
    response = model.prompt("Five surprising names for a pet pelican", max_tokens=8)
    print(response.text())
    assert isinstance(response.text(), str) and str(response) == response.text()
    assert capsys.readouterr().out == response.text() + "\n"
    llm.set_default_model("gpt-4o-mini")
    assert isinstance(str(llm.get_model().prompt("Five surprising names for a pet pelican", max_tokens=4)), str)
    with pytest.raises(llm.UnknownModelError):
        llm.get_model("no-such-model")


def test_llm_system_prompts_options_and_key(model_id: str) -> None:
    model = llm.get_model(model_id)
    response = model.prompt("Five surprising names for a pet pelican", system="Answer like GlaDOS", max_tokens=4)
    assert response.usage().input > llm.get_model(model_id).prompt("Five", max_tokens=1).usage().input
    assert isinstance(str(model.prompt("Names for otters", temperature=0.2, max_tokens=4)), str)
    assert isinstance(str(model.prompt("Names for beavers", key="sk-...", max_tokens=4)), str)


def test_llm_attachments(model_id: str, tmp_path: Path) -> None:
    model = llm.get_model("gpt-4o-mini")
    assert isinstance(model.attachment_types, set) and "text/plain" in model.attachment_types
    notes = tmp_path / "notes.txt"
    notes.write_text("Pelicans have throat pouches.")
    response = model.prompt("Summarise these notes", attachments=[llm.Attachment(path=str(notes))], max_tokens=4)
    assert response.usage().input > model.prompt("Summarise these notes", max_tokens=1).usage().input
    with pytest.raises(ValueError, match="text/plain.*not .image/jpeg"):
        model.prompt("Describe", attachments=[llm.Attachment(content=b"\xff\xd8\xff\xe0" + bytes(64))]).text()


class Dog(BaseModel):
    name: str
    age: int


def test_llm_schemas(model_id: str) -> None:
    model = llm.get_model("gpt-4o-mini")
    dog = json.loads(model.prompt("Describe a nice dog", schema=Dog, max_tokens=48).text())
    assert isinstance(dog["name"], str) and isinstance(dog["age"], int)
    schema = {
        "properties": {
            "name": {"title": "Name", "type": "string"},
            "age": {"title": "Age", "type": "integer"},
        },
        "required": ["name", "age"],
        "title": "Dog",
        "type": "object",
    }
    assert set(json.loads(model.prompt("Describe a nice dog", schema=schema, max_tokens=48).text())) == {"name", "age"}
    bio = json.loads(str(model.prompt("Describe a dog", schema=llm.schema_dsl("name, age int, bio"), max_tokens=64)))
    assert set(bio) == {"name", "age", "bio"}
    many = llm.schema_dsl("name, age int, bio", multi=True)
    assert many["properties"]["items"]["type"] == "array"


def test_llm_json_usage_and_streaming(model_id: str) -> None:
    model = llm.get_model("gpt-4o-mini")
    response = model.prompt("3 names for an otter", max_tokens=6)
    json_data = response.json()
    assert isinstance(json_data, dict) and json_data["content"] == response.text()
    usage = response.usage()
    assert isinstance(usage.input, int) and isinstance(usage.output, int)
    assert usage.details is None or isinstance(usage.details, dict)
    response = model.prompt("Five diabolical names for a pet goat", max_tokens=6)
    chunks = list(response)
    assert "".join(chunks) == response.text() == response.text()


def test_llm_async_models(model_id: str) -> None:
    async def run() -> tuple[str, str]:
        model = llm.get_async_model("gpt-4o-mini")
        response = await model.prompt("Five surprising names for a pet pelican", max_tokens=6)
        text = await response.text()
        streamed = ""
        async for chunk in model.prompt("Five surprising names for a pet pelican", max_tokens=6):
            streamed += chunk
        return text, streamed

    text, streamed = asyncio.run(run())
    assert isinstance(text, str) and isinstance(streamed, str)
    assert "gpt-4o-mini" in [m.model_id for m in llm.get_async_models()]


def test_llm_conversations(model_id: str) -> None:
    llm.set_default_model(model_id)
    model = llm.get_model()
    conversation = model.conversation()
    response = conversation.prompt("Five fun facts about pelicans", max_tokens=4)
    response2 = conversation.prompt("Now do skunks", max_tokens=4)
    assert isinstance(response.text(), str) and isinstance(response2.text(), str)
    assert conversation.responses == [response, response2]
    assert response2.usage().input > response.usage().input  # the second prompt carries the first exchange


def test_llm_listing_models_and_on_done(model_id: str, capsys: pytest.CaptureFixture) -> None:
    assert [model.model_id for model in llm.get_models()] == ["gpt-4o-mini"]
    model = llm.get_model("gpt-4o-mini")
    response = model.prompt("a poem about a hippo", max_tokens=4)
    response.on_done(lambda response: print(response.usage()))
    print(response.text())
    assert capsys.readouterr().out.startswith("Usage(input=")

    async def run() -> list[str]:
        model = llm.get_async_model("gpt-4o-mini")
        response = model.prompt("a short poem about a brick", max_tokens=4)
        seen = []

        async def done(response):
            seen.append(str(await response.usage()))

        await response.on_done(done)
        seen.append(await response.text())
        return seen

    usage, text = asyncio.run(run())
    assert usage.startswith("Usage(input=") and isinstance(text, str)


def test_llm_other_functions(model_id: str) -> None:
    llm.set_alias("mini", "gpt-4o-mini")
    assert llm.get_model("mini").model_id == "gpt-4o-mini"
    llm.set_alias("turbo", "mini")  # an alias of an alias resolves to the model
    assert llm.get_model("turbo").model_id == "gpt-4o-mini"
    llm.remove_alias("turbo")
    with pytest.raises(KeyError):
        llm.remove_alias("turbo")
    assert llm.get_default_model(default=None) is None
    llm.set_default_model("mini")
    assert llm.get_default_model() in ("mini", "gpt-4o-mini")


def test_llm_default_embedding_model(model_id: str) -> None:
    assert llm.get_default_embedding_model() is None
    llm.set_default_embedding_model("gpt-4o-mini")
    assert llm.get_default_embedding_model() == "gpt-4o-mini"
    vector = llm.get_embedding_model().embed("a pelican")
    assert isinstance(vector, list) and all(isinstance(x, float) for x in vector)
    assert len(list(llm.get_embedding_model("gpt-4o-mini").embed_multi(["a", "b", "c"]))) == 3


# -- 004: nanochat's GPT, GPTConfig, tokenizer, Engine and load_model --


def test_nanochat_gpt_model() -> None:
    import torch

    from litllm import GPT, GPTConfig

    defaults = GPTConfig()
    assert (defaults.vocab_size, defaults.n_layer, defaults.n_head, defaults.n_embd, defaults.block_size) == (
        32768,
        12,
        12,
        768,
        1024,
    )
    assert (defaults.dropout, defaults.bias, defaults.rope_base) == (0.0, True, 10000.0)
    config = GPTConfig(vocab_size=128, n_layer=2, n_head=2, n_embd=32, block_size=64)
    model = GPT(config)
    input_ids = torch.randint(0, 128, (2, 10))
    logits = model(input_ids)  # (batch_size, seq_len, vocab_size)
    assert logits.shape == (2, 10, 128)
    model.eval()
    out = model.generate(input_ids, max_new_tokens=5, temperature=1.0, top_k=None)
    assert out.shape == (2, 15) and torch.equal(out[:, :10], input_ids)
    assert model.get_device() == torch.device("cpu")
    model.train()
    assert model.training
    model.eval()
    assert not model.training
    print(f"Model parameters: {sum(p.numel() for p in model.parameters())}")
    assert model.num_scaling_params() == sum(p.numel() for p in model.parameters())
    assert model.estimate_flops() > 0


def test_nanochat_tokenizer(tokenizer_dir: Path) -> None:
    from litllm import HuggingFaceTokenizer

    tokenizer = HuggingFaceTokenizer.from_pretrained(str(tokenizer_dir))
    tokens = tokenizer.encode("Hello, world!")
    assert all(isinstance(t, int) for t in tokens)
    assert tokenizer.decode(tokens) == "Hello, world!"
    tokens, mask = tokenizer.render_conversation(
        {"messages": [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi there!"}]}
    )
    assert len(tokens) == len(mask) and any(mask) and not all(mask)
    assert isinstance(tokenizer.get_bos_token_id(), int)
    prompt = tokenizer.render_for_completion(
        {"messages": [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi there!"}]}
    )
    assert prompt == tokens[: len(prompt)] and len(prompt) < len(tokens)  # the reply is left for the model
    tokens = tokenizer.encode("test")
    decoded = tokenizer.decode(tokens)
    assert decoded == "test"


def test_nanochat_load_model_and_engine(runs: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    import torch

    from litllm import Engine, load_model

    monkeypatch.setenv("LITLLM_RUNS_DIR", str(runs))
    model, tokenizer, meta = load_model(source="sft", device="cpu", phase="eval", model_tag=None, step=None)
    assert model.get_device() == torch.device("cpu") and not model.training and meta["source"] == "sft"
    engine = Engine(model, tokenizer)
    prompt = "What is the capital of France?"
    tokens = tokenizer.encode(prompt)
    results, _ = engine.generate_batch(tokens, max_tokens=50, temperature=0.7)
    response = tokenizer.decode(results[0])
    assert isinstance(response, str) and results[0][: len(tokens)] == tokens
    results, probabilities = engine.generate_batch(tokens, num_samples=2, max_tokens=8, temperature=0.7, top_k=50)
    assert len(results) == len(probabilities) == 2
    for token_batch, masks in engine.generate(tokens, num_samples=1, max_tokens=8, temperature=0.7):
        assert len(token_batch) == len(masks) == 1
    model, tokenizer, meta = load_model("base", "cpu", phase="train")
    assert model.training and meta["source"] == "base"
    monkeypatch.setenv("LITLLM_RUNS_DIR", str(runs.parent / "no-runs-here"))
    with pytest.raises(FileNotFoundError, match="no-runs-here"):
        load_model("sft", "cpu")


def test_nanochat_task_framework_and_custom_task_evaluation(runs: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    from litllm import Task, TaskMixture, TaskSequence, evaluate_task, load_model  # `from tasks.common import ...`

    class CustomTask(Task):
        dataset = [f"question {i}" for i in range(300)]

        @property
        def eval_type(self):
            return "generative"  # or 'categorical'

        def num_examples(self):
            return len(self.dataset)

        def get_example(self, index):
            """Return conversation dict for example at index"""
            return {
                "messages": [
                    {"role": "user", "content": self.dataset[index]},
                    {"role": "assistant", "content": "..."},
                ]
            }

        def evaluate(self, conversation, completion):
            """Evaluate completion against ground truth"""
            success_boolean = completion.strip() == conversation["messages"][1]["content"]
            return success_boolean

    task1, task2, task3 = CustomTask(), CustomTask(stop=10), CustomTask(start=290)
    # Mix multiple tasks
    mixture = TaskMixture([task1, task2, task3])
    # Sequential tasks
    sequence = TaskSequence([task1, task2, task3])
    # Task slicing
    subset = task1[100:200]  # Examples 100-199
    assert len(mixture) == len(sequence) == 320 and len(subset) == 100
    assert subset[0]["messages"][0]["content"] == "question 100" and subset[-1] == task1[199]
    assert sequence[300] == task2[0] and sorted(m["messages"][0]["content"] for m in mixture) == sorted(
        m["messages"][0]["content"] for m in sequence
    )

    class MathTask(Task):
        def get_example(self, index):
            problem = self.problems[index]
            return {
                "messages": [
                    {"role": "user", "content": problem["question"]},
                    {"role": "assistant", "content": problem["answer"]},
                ]
            }

        def evaluate(self, conversation, completion):
            expected = conversation["messages"][1]["content"]
            return completion.strip() == expected.strip()

    monkeypatch.setenv("LITLLM_RUNS_DIR", str(runs))
    model, tokenizer, meta = load_model("sft", "cpu", phase="eval")
    # Use in evaluation
    task = MathTask()
    task.problems = [{"question": f"add {i}", "answer": str(2 * i)} for i in range(6)]
    accuracy = evaluate_task(model, tokenizer, task)
    assert len(task) == 6 and 0.0 <= accuracy <= 1.0


def test_litgpt_load_generate_stream_and_random_init(litllm_dir: Path, tokenizer_dir: Path) -> None:
    import shutil
    import time

    from litllm import LLM
    from litllm.checkpoint.hub import cached_checkpoint_dir

    my_llm = LLM.load(str(litllm_dir))  # "path/to/my/local/checkpoint"
    text = my_llm.generate("What do Llamas eat?", top_k=1, max_new_tokens=30)
    assert isinstance(text, str) and text == my_llm.generate("What do Llamas eat?", top_k=1, max_new_tokens=30)
    result = my_llm.generate("hi", stream=True, top_k=1, max_new_tokens=8)
    assert "".join(result) == my_llm.generate("hi", top_k=1, max_new_tokens=8)

    start = time.perf_counter()
    with pytest.raises(llm.errors.HubError, match="microsoft/phi-2"):
        LLM.load("microsoft/phi-2")  # no local copy, no network: one clear error, at once
    assert time.perf_counter() - start < 10

    shutil.copytree(tokenizer_dir, cached_checkpoint_dir("EleutherAI/pythia-160m"))  # a tokenizer-only download
    from litllm.api import LLM as ApiLLM

    with pytest.warns(UserWarning, match="generation never samples them"):  # 50304 token ids, a 320-token tokenizer
        random_llm = ApiLLM.load("pythia-160m", init="random", tokenizer_dir="EleutherAI/pythia-160m")
    ids = random_llm.generate("hi", max_new_tokens=10, return_as_token_ids=True)
    assert all(i < random_llm.tokenizer.vocab_size for i in ids)
