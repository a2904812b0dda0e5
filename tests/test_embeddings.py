"""Embeddings (litllm/embeddings.py): mean-pooled final hidden states of the tiny checkpoint, by registry name."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from litllm.embeddings import (
    EmbeddingModel,
    get_default_embedding_model,
    get_embedding_model,
    get_embedding_models,
    set_default_embedding_model,
)
from litllm.errors import UnknownModelError
from litllm.local_models import add, get_default_model, litllm_home, set_alias

TEXTS = ["hello world", "def add(a, b):\n    return a + b", "x", "print('hello world')\n" * 6, "class Point:"]


@pytest.fixture
def tiny(litllm_dir: Path) -> EmbeddingModel:
    """The tiny checkpoint registered as `tiny` in this test's LITLLM_HOME, as an embedding model."""
    add("tiny", litllm_dir)
    return get_embedding_model("tiny")


def norm(vector: list[float]) -> float:
    return math.sqrt(sum(x * x for x in vector))


def test_a_vector_has_n_embd_floats_at_unit_length(tiny: EmbeddingModel) -> None:
    vector = tiny.embed("hello world")
    assert len(vector) == tiny.llm().config.n_embd == 64
    assert all(isinstance(x, float) for x in vector)
    assert norm(vector) == pytest.approx(1.0, abs=1e-6)


def test_the_vector_is_the_mean_of_the_final_hidden_states_as_transformers_computes_them(
    tiny: EmbeddingModel, hf_llama_dir: Path
) -> None:
    from transformers import LlamaForCausalLM

    text = "def add(a, b):"
    ids = torch.tensor([tiny.token_ids(text)])
    with torch.inference_mode():
        hidden = LlamaForCausalLM.from_pretrained(hf_llama_dir).eval().model(ids).last_hidden_state  # after the norm
    expected = torch.nn.functional.normalize(hidden[0].mean(dim=0), dim=-1)
    torch.testing.assert_close(torch.tensor(tiny.embed(text)), expected, atol=1e-5, rtol=0)


def test_the_same_text_gives_the_same_vector(tiny: EmbeddingModel, litllm_dir: Path) -> None:
    assert tiny.embed("hello world") == tiny.embed("hello world") == EmbeddingModel(litllm_dir).embed("hello world")


def test_a_batch_gives_each_text_the_vector_it_has_alone(tiny: EmbeddingModel) -> None:
    alone = torch.tensor([tiny.embed(text) for text in TEXTS])
    for batch_size in (2, 5):
        batched = torch.tensor(list(tiny.embed_multi(TEXTS, batch_size=batch_size)))
        torch.testing.assert_close(batched, alone, atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.tensor(tiny.embed_batch(TEXTS)), alone, atol=1e-5, rtol=0)


def test_embed_multi_takes_any_iterable_and_yields_lazily(tiny: EmbeddingModel) -> None:
    vectors = tiny.embed_multi(text for text in TEXTS)
    assert len(next(vectors)) == 64
    assert len(list(vectors)) == len(TEXTS) - 1
    assert list(tiny.embed_multi([])) == [] and tiny.embed_batch([]) == []


def test_different_texts_give_different_vectors(tiny: EmbeddingModel) -> None:
    vectors = [tiny.embed(text) for text in TEXTS]
    for i in range(len(vectors)):
        for j in range(i + 1, len(vectors)):
            assert max(abs(a - b) for a, b in zip(vectors[i], vectors[j], strict=True)) > 1e-3, (TEXTS[i], TEXTS[j])


def test_a_text_longer_than_the_context_is_embedded_from_its_first_block_size_tokens(tiny: EmbeddingModel) -> None:
    block_size = tiny.llm().config.block_size
    long = "print('hello world')\n" * 200
    assert len(tiny.llm().tokenizer.encode(long)) > block_size
    assert len(tiny.token_ids(long)) == block_size
    assert tiny.embed(long + "def add(a, b):") == tiny.embed(long + "class Point:")


def test_the_empty_text_is_embedded_as_the_bos_token(tiny: EmbeddingModel) -> None:
    bos = tiny.llm().tokenizer.bos_id
    assert bos is not None and tiny.token_ids("") == [bos]
    assert norm(tiny.embed("")) == pytest.approx(1.0, abs=1e-6)
    assert tiny.embed("") == tiny.embed(tiny.llm().tokenizer.decode([bos]))  # "<|endoftext|>" is that one token


def test_the_empty_text_is_a_value_error_when_the_tokenizer_has_no_bos(litllm_dir: Path, tmp_path: Path) -> None:
    no_bos = shutil.copytree(litllm_dir, tmp_path / "no-bos")
    for name in ("tokenizer_config.json", "generation_config.json"):
        config = json.loads((no_bos / name).read_text())
        config.pop("bos_token", None), config.pop("bos_token_id", None)
        (no_bos / name).write_text(json.dumps(config))
    model = EmbeddingModel(no_bos)
    assert model.llm().tokenizer.bos_id is None
    assert len(model.embed("hello")) == 64
    with pytest.raises(ValueError, match="has no tokens, and the tokenizer has no BOS token"):
        model.embed("")


def test_what_is_not_text_is_a_type_error(tiny: EmbeddingModel) -> None:
    with pytest.raises(TypeError, match="embeds text \\(str\\), got bytes"):
        tiny.embed(b"hello")  # type: ignore[arg-type]


@pytest.mark.parametrize("batch_size", [0, -1, 1.5, True])
def test_batch_size_must_be_a_positive_integer(tiny: EmbeddingModel, batch_size: object) -> None:
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        list(tiny.embed_multi(TEXTS, batch_size=batch_size))  # type: ignore[arg-type]


def test_a_checkpoint_path_is_a_model_too_named_by_its_path(litllm_dir: Path) -> None:
    model = EmbeddingModel(litllm_dir)
    assert model.model_id == str(litllm_dir)
    assert len(model.embed("hello")) == 64


def test_the_model_loads_on_first_use_and_once(tiny: EmbeddingModel) -> None:
    missing = EmbeddingModel("./no/such/checkpoint")  # nothing is read yet
    with pytest.raises(FileNotFoundError, match="no/such/checkpoint"):
        missing.embed("hello")
    assert tiny.llm() is tiny.llm() is get_embedding_model("tiny").llm()


def test_an_unknown_name_is_an_unknown_model_error_that_lists_the_known_names(tiny: EmbeddingModel) -> None:
    with pytest.raises(UnknownModelError, match="unknown model 'tinyy'; known: tiny"):
        get_embedding_model("tinyy")


def test_no_name_and_no_default_is_an_unknown_model_error(tiny: EmbeddingModel) -> None:
    with pytest.raises(UnknownModelError, match="no default embedding model set \\(known: tiny"):
        get_embedding_model()


def test_the_registry_lists_every_model_as_an_embedding_model(litllm_dir: Path) -> None:
    assert get_embedding_models() == []
    add("tiny", litllm_dir)
    add("other", litllm_dir)
    models = get_embedding_models()
    assert sorted(m.model_id for m in models) == ["other", "tiny"]
    assert all(len(m.embed("hi")) == 64 for m in models)


def test_an_alias_names_the_model_it_points_at(tiny: EmbeddingModel) -> None:
    set_alias("small", "tiny")
    model = get_embedding_model("small")
    assert model.model_id == "tiny" and model.embed("hi") == tiny.embed("hi")


def test_the_default_embedding_model_round_trips_through_litllm_home(tiny: EmbeddingModel) -> None:
    assert get_default_embedding_model() is None and get_default_embedding_model("fallback") == "fallback"
    set_alias("small", "tiny")
    set_default_embedding_model("small")
    assert (litllm_home() / "default_embedding_model.txt").read_text().strip() == "small"
    assert get_default_embedding_model() == "small"
    assert get_default_model() is None  # the default model for prompts is a setting of its own
    model = get_embedding_model()
    assert model.model_id == "tiny" and model.embed("hi") == tiny.embed("hi")
    set_default_embedding_model(None)
    assert get_default_embedding_model() is None


def test_a_default_embedding_model_must_be_known(tiny: EmbeddingModel) -> None:
    with pytest.raises(UnknownModelError, match="unknown model 'nope'; known: tiny"):
        set_default_embedding_model("nope")
    assert get_default_embedding_model() is None


def test_importing_the_embeddings_module_does_not_import_torch() -> None:
    code = "import sys, litllm.embeddings; assert 'torch' not in sys.modules, 'torch was imported'"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
