"""JSON-schema-constrained decoding: with any logits, the output is JSON that validates against the schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import jsonschema
import pydantic
import pytest
import torch

from litllm.schema import JSONConstraint, resolve_schema, schema_dsl
from litllm.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def tokenizer(tokenizer_dir: Path) -> Tokenizer:
    return Tokenizer(tokenizer_dir)


def generate(constraint: JSONConstraint, tokenizer: Tokenizer, budget: int, seed: int) -> str:
    """Decodes with random logits as the model, the way the engine does: mask, sample, advance."""
    generator = torch.Generator().manual_seed(seed)
    ids = []
    while not constraint.done and budget > 0:
        mask = constraint.allowed(budget)
        logits = torch.randn(mask.shape[0], generator=generator).masked_fill(~mask, float("-inf"))
        token_id = int(torch.multinomial(logits.softmax(-1), 1, generator=generator))
        if token_id in constraint.stop_ids:
            break
        constraint.advance(token_id)
        ids.append(token_id)
        budget -= 1
    text = b"".join(tokenizer.token_bytes()[i] for i in ids).decode("utf-8")  # strict: never half a character
    assert text == constraint.text
    return text


SCHEMAS = {
    "flat": schema_dsl("name, age int, bio"),
    "types": schema_dsl("score float, ok bool, count int: how many"),
    "multi": schema_dsl("name, age int", multi=True),
    "nested": {
        "type": "object",
        "properties": {
            "user": {
                "type": "object",
                "properties": {
                    "id": {"type": "integer", "minimum": -5, "maximum": 120},
                    "tags": {
                        "type": "array",
                        "items": {"type": "string", "maxLength": 4},
                        "minItems": 1,
                        "maxItems": 3,
                    },
                },
                "required": ["id", "tags"],
            },
            "note": {"type": "string", "minLength": 3},
        },
        "required": ["user", "note"],
    },
    "enum": {
        "type": "object",
        "properties": {"color": {"enum": ["red", "green", "grün", 7, None]}, "mode": {"const": "fast"}},
        "required": ["color", "mode"],
    },
    "optional": {
        "type": "object",
        "properties": {
            "nickname": {"type": ["string", "null"]},
            "rank": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
            "extra": {"type": "boolean"},
        },
        "required": ["nickname"],
    },
    "top-level number": {"type": "number"},
    "array of anything": {"type": "array", "items": {}, "maxItems": 4},
}


@pytest.mark.parametrize("name", list(SCHEMAS))
@pytest.mark.parametrize("seed", range(6))
def test_random_logits_always_give_valid_json(tokenizer: Tokenizer, name: str, seed: int) -> None:
    schema = SCHEMAS[name]
    constraint = JSONConstraint(schema, tokenizer, tokenizer.stop_ids, vocab_size=tokenizer.vocab_size + 8)
    budget = constraint.min_tokens() + [0, 15, 200][seed % 3]  # the tightest budget forces closing at once
    jsonschema.validate(json.loads(generate(constraint, tokenizer, budget, seed)), schema)


def test_pydantic_model_output_validates(tokenizer: Tokenizer) -> None:
    class Address(pydantic.BaseModel):
        city: str
        zip_code: str | None = None

    class Person(pydantic.BaseModel):
        name: str
        age: int
        kind: Literal["admin", "user"]
        address: Address
        friends: list[Address] = []

    for seed in range(3):
        constraint = JSONConstraint(Person, tokenizer, tokenizer.stop_ids)
        Person.model_validate_json(generate(constraint, tokenizer, 120, seed))


def test_min_tokens_is_the_shortest_document_one_byte_per_token(tokenizer: Tokenizer) -> None:
    constraint = JSONConstraint("name, age int, bio", tokenizer, tokenizer.stop_ids)
    assert constraint.min_tokens() == len('{"name":"","age":0,"bio":""}')


def test_budget_below_min_tokens_is_an_error(tokenizer: Tokenizer) -> None:
    constraint = JSONConstraint("name", tokenizer, tokenizer.stop_ids)
    with pytest.raises(ValueError, match="budget=5 .* at least 11"):
        constraint.allowed(5)


def test_only_stop_ids_once_done(tokenizer: Tokenizer) -> None:
    constraint = JSONConstraint({"type": "boolean"}, tokenizer, tokenizer.stop_ids, vocab_size=tokenizer.vocab_size)
    assert not constraint.allowed(10)[list(tokenizer.stop_ids)].any()
    for token_id in tokenizer.encode("true", bos=False):
        constraint.advance(token_id)
    assert constraint.done and constraint.text == "true"
    assert constraint.allowed(10).nonzero().flatten().tolist() == sorted(tokenizer.stop_ids)


def test_padded_ids_beyond_the_tokenizer_are_never_allowed(tokenizer: Tokenizer) -> None:
    constraint = JSONConstraint({"type": "string"}, tokenizer, [], vocab_size=tokenizer.vocab_size + 64)
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        mask = constraint.allowed(100)
        assert mask.shape == (tokenizer.vocab_size + 64,) and not mask[tokenizer.vocab_size :].any()
        allowed_ids = mask.nonzero().flatten()
        constraint.advance(int(allowed_ids[torch.randint(len(allowed_ids), (1,), generator=generator)]))


def test_no_whitespace_outside_strings(tokenizer: Tokenizer) -> None:
    constraint = JSONConstraint({"type": "array", "items": {"type": "integer"}}, tokenizer, [])
    constraint.advance(tokenizer.encode("[", bos=False)[0])
    space = tokenizer.token_to_id("Ġ")  # the byte-level spelling of " "
    assert not constraint.allowed(100)[space]


def test_advance_rejects_a_token_the_schema_forbids(tokenizer: Tokenizer) -> None:
    constraint = JSONConstraint({"type": "integer"}, tokenizer, [])
    with pytest.raises(ValueError, match="cannot follow"):
        constraint.advance(tokenizer.encode("x", bos=False)[0])


def test_token_bytes_are_what_each_token_decodes_to(tokenizer: Tokenizer) -> None:
    token_bytes = tokenizer.token_bytes()
    assert len(token_bytes) == tokenizer.vocab_size
    assert all(token_bytes[i] is None for i in tokenizer.stop_ids)  # special tokens never appear in text
    whole = [i for i, data in enumerate(token_bytes) if data is not None and data.isascii()]
    assert [tokenizer.decode([i]).encode() for i in whole] == [token_bytes[i] for i in whole]
    assert b"".join(token_bytes[i] for i in tokenizer.encode("héllo 你好", bos=False)) == "héllo 你好".encode()


def test_dsl_fields_are_required_strings_by_default() -> None:
    assert schema_dsl("name, age int, bio") == {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}, "bio": {"type": "string"}},
        "required": ["name", "age", "bio"],
    }


def test_dsl_types_and_descriptions_one_field_per_line() -> None:
    schema = schema_dsl("name: the full name, as written\nscore float\nok bool: whether it worked")
    assert schema["properties"] == {
        "name": {"type": "string", "description": "the full name, as written"},
        "score": {"type": "number"},
        "ok": {"type": "boolean", "description": "whether it worked"},
    }


def test_dsl_multi_wraps_the_object_in_an_items_array() -> None:
    assert schema_dsl("name", multi=True) == {
        "type": "object",
        "properties": {"items": {"type": "array", "items": schema_dsl("name")}},
        "required": ["items"],
    }


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("name, age integer", "'age' has unknown type 'integer'; accepted types: str, int, float, bool"),
        (" , ", "names no fields"),
        ("first name str", "should read 'name \\[type\\]\\[: description\\]'"),
    ],
)
def test_dsl_bad_spec_says_what_is_accepted(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        schema_dsl(spec)


def test_resolve_pydantic_model_inlines_its_refs() -> None:
    class Point(pydantic.BaseModel):
        x: int

    class Line(pydantic.BaseModel):
        start: Point
        end: Point | None = None

    schema = resolve_schema(Line)
    assert "$ref" not in json.dumps(schema) and "$defs" not in schema
    assert schema["properties"]["start"]["properties"] == {"x": {"title": "X", "type": "integer"}}
    assert schema["required"] == ["start"]


def test_resolve_dsl_string_and_dict() -> None:
    assert resolve_schema("name") == schema_dsl("name")
    assert resolve_schema({"type": "string"}) == {"type": "string"}


def test_resolve_other_objects_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="JSON-schema dict, a pydantic model class or a schema DSL string.*got list"):
        resolve_schema(["name"])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ({"type": "string", "pattern": "^a"}, "keyword 'pattern' is not supported.*supported keywords: type, enum"),
        ({"type": "string", "format": "email"}, "keyword 'format' is not supported"),
        ({"type": "object", "additionalProperties": {"type": "integer"}}, "'additionalProperties' may only be true"),
        ({"oneOf": [{"type": "integer"}, {"type": "number"}]}, "oneOf\\[1\\] may match the same values"),
        ({"type": "number", "minimum": 0}, "'minimum' is supported on type 'integer' only"),
        ({"type": "object", "required": ["a"]}, "required property 'a' has no schema"),
        ({"$defs": {"N": {"type": "array", "items": {"$ref": "#/$defs/N"}}}, "$ref": "#/$defs/N"}, "recursive"),
    ],
)
def test_unsupported_schema_names_the_keyword(schema: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        resolve_schema(schema)


def test_constraint_with_unsupported_schema_is_a_value_error(tokenizer: Tokenizer) -> None:
    with pytest.raises(ValueError, match="'pattern'"):
        JSONConstraint({"type": "string", "pattern": "a+"}, tokenizer, tokenizer.stop_ids)
