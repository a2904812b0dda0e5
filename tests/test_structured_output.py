"""Structured output through every interface: a schema, a regular expression or a Lark grammar given to
`LLM.generate`, the llm-style API, the CLI or the server shapes what a real model writes, within max_new_tokens."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from litllm import LLM
from litllm.inference.options import GenerationOptions

UNBOUNDED = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "score": {"type": "number"},
        "count": {"type": "integer"},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["name", "score", "count", "tags"],
    "additionalProperties": False,
}
DATE = r"20[0-9]{2}-(0[1-9]|1[0-2])-[0-3][0-9]"
LIST_GRAMMAR = """
start: "[" item ("," item)* "]"
item: /[a-z]{1,8}/
"""


@pytest.fixture(scope="module")
def llm(litllm_dir: Path) -> LLM:
    return LLM.load(litllm_dir)


def shortest(llm: LLM, schema: dict) -> int:
    """The fewest tokens the schema's shortest document takes in this tokenizer."""
    from litllm.inference.constraints import make_constraint

    return make_constraint(llm.tokenizer, llm.tokenizer.stop_ids, llm.config.vocab_size, schema=schema)().min_tokens()


@pytest.mark.parametrize("extra", [0, 3, 15, 60])
def test_a_schema_of_unbounded_fields_always_parses_within_max_new_tokens(llm: LLM, extra: int) -> None:
    max_new_tokens = shortest(llm, UNBOUNDED) + extra
    texts = llm.generate(
        ["Describe a user:", "JSON:", "{"], schema=UNBOUNDED, max_new_tokens=max_new_tokens, temperature=1.0, seed=3
    )
    for text in texts:
        assert len(llm.tokenizer.encode(text, bos=False)) <= max_new_tokens + 2  # re-encoding may merge differently
        jsonschema.validate(json.loads(text), UNBOUNDED)


def test_a_budget_below_the_shortest_document_is_refused(llm: LLM) -> None:
    with pytest.raises(
        ValueError, match=f"too small for the schema: its shortest valid output takes {shortest(llm, UNBOUNDED)}"
    ):
        llm.generate("x", schema=UNBOUNDED, max_new_tokens=shortest(llm, UNBOUNDED) - 1)


def test_regex_output_matches_the_whole_expression(llm: LLM) -> None:
    for seed in range(3):
        text = llm.generate("Today is", regex=DATE, max_new_tokens=20, temperature=1.0, seed=seed)
        assert re.fullmatch(DATE, text), text


@pytest.mark.parametrize("seed", range(3))
def test_grammar_output_is_a_sentence_of_the_grammar(llm: LLM, seed: int) -> None:
    text = llm.generate("A list:", grammar=LIST_GRAMMAR, max_new_tokens=40, temperature=1.0, seed=seed)
    assert re.fullmatch(r"\[[a-z]{1,8}(,[a-z]{1,8})*\]", text), text


def test_chat_takes_the_same_structure_options(llm: LLM) -> None:
    reply = llm.chat("When?", regex=DATE, max_new_tokens=20, temperature=0)
    assert re.fullmatch(DATE, reply)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"regex": "[0-9"}, "regex"),
        ({"grammar": "start: undefined_rule"}, "grammar"),
        ({"schema": {"type": "object", "not": {}}}, "schema"),
        ({"regex": "a", "grammar": "start: /a/"}, "at most one of schema, regex and grammar"),
        ({"regx": "a"}, "unknown generation option 'regx' \\(did you mean 'regex'\\?\\)"),
    ],
)
def test_bad_structure_options_are_named(llm: LLM, options: dict, message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        llm.generate("x", max_new_tokens=10, **options)


def test_generation_options_are_the_signature_of_generate_and_chat() -> None:
    import inspect

    names = [f for f in GenerationOptions.__dataclass_fields__]
    for method in (LLM.generate, LLM.chat):
        params = inspect.signature(method).parameters
        assert all(name in params for name in names), method
        assert all(f"{name}:" in method.__doc__ for name in names)


def test_llm_style_prompt_takes_a_regex(litllm_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LITLLM_HOME", str(tmp_path))
    from litllm.llm_api import get_model
    from litllm.local_models import add

    add("structured", litllm_dir)
    response = get_model("structured").prompt("Date:", regex=DATE, max_tokens=20, temperature=0)
    assert re.fullmatch(DATE, response.text())


def test_cli_generate_takes_a_regex(litllm_dir: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "litllm.cli", "generate", str(litllm_dir), "--prompt", "Date:", "--regex", DATE,
         "--max_new_tokens", "20", "--temperature", "0"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(DATE, done.stdout.strip())
