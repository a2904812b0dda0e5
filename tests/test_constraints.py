"""Constrained decoding: with any logits, the output matches the schema, regex or grammar within its token budget."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Literal

import jsonschema
import pydantic
import pytest
import torch

from litllm.inference.constraints import (
    ConstrainedRow,
    GrammarConstraint,
    JSONConstraint,
    RegexConstraint,
    make_constraint,
    resolve_schema,
    schema_dsl,
)
from litllm.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def tokenizer(tokenizer_dir: Path) -> Tokenizer:
    return Tokenizer(tokenizer_dir)


def generate(constraint: ConstrainedRow, tokenizer: Tokenizer, budget: int, seed: int) -> str:
    """Decodes with random logits as the model, the way the engine does: mask, sample, sample again while the
    token does not fit, advance."""
    generator = torch.Generator().manual_seed(seed)
    ids = []
    while not constraint.done and budget > 0:
        mask = constraint.allowed(budget)
        logits = torch.randn(mask.shape[0], generator=generator).masked_fill(~mask, float("-inf"))
        token_id = int(torch.multinomial(logits.softmax(-1), 1, generator=generator))
        while not constraint.fits(token_id, budget):
            logits[token_id] = float("-inf")
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


UNBOUNDED = {
    "type": "object",
    "properties": {
        "text": {"type": "string"},
        "count": {"type": "integer"},
        "ratio": {"type": "number"},
        "values": {"type": "array", "items": {"type": "number"}},
        "rows": {"type": "array", "items": {"type": "array", "items": {"type": "integer"}}},
    },
    "required": ["text", "count", "ratio", "values", "rows"],
}


@pytest.mark.parametrize("seed", range(44))
def test_unbounded_strings_numbers_and_arrays_finish_within_small_budgets(tokenizer: Tokenizer, seed: int) -> None:
    constraint = JSONConstraint(UNBOUNDED, tokenizer, tokenizer.stop_ids)
    budget = constraint.min_tokens() + seed % 11
    jsonschema.validate(json.loads(generate(constraint, tokenizer, budget, seed)), UNBOUNDED)


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


def test_tightest_budget_writes_the_closing_plan_of_min_tokens_tokens(tokenizer: Tokenizer) -> None:
    constraint = JSONConstraint("name, age int, bio", tokenizer, tokenizer.stop_ids)
    budget = constraint.min_tokens()
    while budget:
        allowed = constraint.allowed(budget).nonzero().flatten().tolist()
        assert len(allowed) == 1  # a plan as long as the budget leaves no choice
        constraint.advance(allowed[0])
        budget -= 1
    assert constraint.done and constraint.text == '{"name":"","age":0,"bio":""}'


def test_budget_below_min_tokens_is_an_error(tokenizer: Tokenizer) -> None:
    constraint = JSONConstraint("name", tokenizer, tokenizer.stop_ids)
    needed = constraint.min_tokens()
    with pytest.raises(ValueError, match=f"budget={needed - 1} tokens cannot finish .* at least {needed}"):
        constraint.allowed(needed - 1)


def test_a_token_whose_closing_would_not_fit_is_refused(tokenizer: Tokenizer) -> None:
    constraint = JSONConstraint({"type": "array", "items": schema_dsl("name, age int")}, tokenizer, [])
    constraint.advance(tokenizer.token_to_id("["))
    brace, bracket = tokenizer.token_to_id("{"), tokenizer.token_to_id("]")
    assert constraint.min_tokens() == 1 and constraint.allowed(4)[brace]  # llguidance's mask still has "{"
    assert not constraint.fits(brace, 4) and constraint.fits(bracket, 4)
    assert constraint.fits(brace, 40)


def test_after_an_unchecked_token_leaves_too_little_room_the_row_writes_its_plan(tokenizer: Tokenizer) -> None:
    constraint = JSONConstraint({"type": "array", "items": schema_dsl("name, age int")}, tokenizer, [])
    constraint.advance(tokenizer.token_to_id("["))
    constraint.advance(tokenizer.token_to_id("{"))  # an engine that skips `fits` with 3 tokens left
    assert constraint.min_tokens() > 2
    assert constraint.allowed(2).sum() == 1  # no error mid-row: the output ends unfinished, finish reason "length"


def test_only_stop_ids_once_done(tokenizer: Tokenizer) -> None:
    constraint = JSONConstraint({"type": "boolean"}, tokenizer, tokenizer.stop_ids, vocab_size=tokenizer.vocab_size)
    assert not constraint.allowed(10)[list(tokenizer.stop_ids)].any()
    for token_id in tokenizer.encode("true", bos=False):
        constraint.advance(token_id)
    assert constraint.done and constraint.text == "true"
    assert constraint.allowed(10).nonzero().flatten().tolist() == sorted(tokenizer.stop_ids)


def test_stop_ids_are_allowed_where_the_output_may_end(tokenizer: Tokenizer) -> None:
    constraint = JSONConstraint({"type": "integer"}, tokenizer, tokenizer.stop_ids)
    constraint.advance(tokenizer.token_to_id("7"))
    mask = constraint.allowed(10)
    assert not constraint.done and mask[list(tokenizer.stop_ids)].all() and mask[tokenizer.token_to_id("8")]


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


def test_stop_ids_must_be_token_ids(tokenizer: Tokenizer) -> None:
    with pytest.raises(ValueError, match=f"stop id {tokenizer.vocab_size} is not a token id"):
        JSONConstraint({"type": "integer"}, tokenizer, [tokenizer.vocab_size])


def test_token_bytes_are_what_each_token_decodes_to(tokenizer: Tokenizer) -> None:
    token_bytes = tokenizer.token_bytes()
    assert len(token_bytes) == tokenizer.vocab_size
    assert all(token_bytes[i] is None for i in tokenizer.stop_ids)  # special tokens never appear in text
    whole = [i for i, data in enumerate(token_bytes) if data is not None and data.isascii()]
    assert [tokenizer.decode([i]).encode() for i in whole] == [token_bytes[i] for i in whole]
    assert b"".join(token_bytes[i] for i in tokenizer.encode("héllo 你好", bos=False)) == "héllo 你好".encode()


# Keywords the hand-written automaton refused, now honoured.


@pytest.mark.parametrize("seed", range(4))
def test_string_pattern_is_honoured(tokenizer: Tokenizer, seed: int) -> None:
    schema = {"type": "string", "pattern": "^[a-z]{2,5}-[0-9]{2}$"}
    constraint = JSONConstraint(schema, tokenizer, tokenizer.stop_ids)
    value = json.loads(generate(constraint, tokenizer, constraint.min_tokens() + 3 * seed, seed))
    assert re.fullmatch("[a-z]{2,5}-[0-9]{2}", value)


@pytest.mark.parametrize("seed", range(4))
def test_string_format_is_honoured(tokenizer: Tokenizer, seed: int) -> None:
    schema = {"type": "object", "properties": {"day": {"type": "string", "format": "date"}}, "required": ["day"]}
    constraint = JSONConstraint(schema, tokenizer, tokenizer.stop_ids)
    value = json.loads(generate(constraint, tokenizer, constraint.min_tokens() + 3 * seed, seed))
    jsonschema.validate(value, schema, format_checker=jsonschema.FormatChecker())


@pytest.mark.parametrize("seed", range(4))
def test_number_bounds_additional_properties_and_recursion_are_honoured(tokenizer: Tokenizer, seed: int) -> None:
    schema = {
        "$defs": {"Tree": {"type": "array", "items": {"$ref": "#/$defs/Tree"}, "maxItems": 2}},
        "type": "object",
        "properties": {
            "x": {"type": "number", "minimum": 0.5, "exclusiveMaximum": 3},
            "tree": {"$ref": "#/$defs/Tree"},
        },
        "required": ["x", "tree"],
        "additionalProperties": {"type": "integer"},
    }
    constraint = JSONConstraint(schema, tokenizer, tokenizer.stop_ids)
    jsonschema.validate(json.loads(generate(constraint, tokenizer, constraint.min_tokens() + 20 * seed, seed)), schema)


# Regular expressions and Lark grammars.


@pytest.mark.parametrize("seed", range(11))
def test_regex_output_fullmatches_the_regex(tokenizer: Tokenizer, seed: int) -> None:
    pattern = r"[a-z]+@[a-z]+\.(com|org)"
    constraint = RegexConstraint(pattern, tokenizer, tokenizer.stop_ids)
    assert re.fullmatch(pattern, generate(constraint, tokenizer, constraint.min_tokens() + seed, seed))


NESTED_LISTS = r"""
start: list
list: "[" [item ("," item)*] "]"
item: list | INT
INT: /0|[1-9][0-9]*/
"""


@pytest.mark.parametrize("seed", range(11))
def test_lark_grammar_output_is_a_sentence_of_the_grammar(tokenizer: Tokenizer, seed: int) -> None:
    constraint = GrammarConstraint(NESTED_LISTS, tokenizer, tokenizer.stop_ids)
    text = generate(constraint, tokenizer, constraint.min_tokens() + seed, seed)
    value = json.loads(text)  # the grammar's sentences are exactly the compact JSON of nested lists of integers

    def is_nested_int_list(v: object) -> bool:
        return isinstance(v, list) and all(isinstance(x, int) or is_nested_int_list(x) for x in v)

    assert is_nested_int_list(value) and json.dumps(value, separators=(",", ":")) == text


def test_regex_whose_closing_is_not_found_keeps_valid_without_a_budget_guarantee(tokenizer: Tokenizer) -> None:
    constraint = RegexConstraint("[ab]{5000}", tokenizer, [])  # a closing of 5,000 bytes is beyond the walk's reach
    assert constraint.min_tokens() == 1
    allowed = {tokenizer.token_bytes()[i] for i in constraint.allowed(1).nonzero().flatten().tolist()}
    assert {b"a", b"b"} <= allowed and all(set(data) <= set(b"ab") for data in allowed)


# The factory the engine calls once per row.


def test_make_constraint_makes_a_fresh_row_per_call(tokenizer: Tokenizer) -> None:
    factory = make_constraint(tokenizer, tokenizer.stop_ids, tokenizer.vocab_size, regex="ab|cd")
    first, second = factory(), factory()
    first.advance(tokenizer.token_to_id("a"))
    assert first.text == "a" and second.text == "" and second.min_tokens() == first.min_tokens() + 1


def test_make_constraint_without_a_constraint_is_none(tokenizer: Tokenizer) -> None:
    assert make_constraint(tokenizer, tokenizer.stop_ids, None) is None


def test_make_constraint_refuses_more_than_one_kind(tokenizer: Tokenizer) -> None:
    with pytest.raises(ValueError, match="give at most one of schema, regex and grammar, got schema and regex"):
        make_constraint(tokenizer, tokenizer.stop_ids, None, schema="name", regex="a+")


@pytest.mark.parametrize(
    ("kind", "value", "message"),
    [
        ("regex", "a{3,", "regular expression is not supported .*unclosed counted repetition"),
        ("grammar", "start: foo", 'Lark grammar is not supported .*unknown name: "foo"'),
        ("schema", {"type": "string", "pattern": "(("}, "JSON schema is not supported .*unclosed group"),
    ],
)
def test_make_constraint_names_what_is_invalid_up_front(
    tokenizer: Tokenizer, kind: str, value: object, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        make_constraint(tokenizer, tokenizer.stop_ids, None, **{kind: value})


# Schemas from dicts, pydantic models and the DSL.


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
        ("name, name int", "'name' is given twice"),
    ],
)
def test_dsl_bad_spec_says_what_is_accepted(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        schema_dsl(spec)


def test_resolve_pydantic_model_is_its_json_schema_refs_and_all() -> None:
    class Point(pydantic.BaseModel):
        x: int

    class Line(pydantic.BaseModel):
        start: Point
        end: Point | None = None

    schema = resolve_schema(Line)
    assert schema == Line.model_json_schema() and schema["$defs"]["Point"]["properties"]["x"]["type"] == "integer"


def test_resolve_dsl_string_and_dict() -> None:
    assert resolve_schema("name") == schema_dsl("name")
    assert resolve_schema({"type": "string"}) == {"type": "string"}


def test_resolve_other_objects_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="JSON-schema dict, a pydantic model class or a schema DSL string.*got list"):
        resolve_schema(["name"])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ({"not": {"type": "string"}}, 'Unimplemented keys: \\["not"\\]'),
        ({"type": "array", "uniqueItems": True}, 'Unimplemented keys: \\["uniqueItems"\\]'),
        ({"oneOf": [{"type": "integer"}, {"type": "number"}]}, "oneOf constraints are not supported"),
        ({"type": "strin"}, "Invalid type: strin"),
        ({"type": "string", "minLength": 5, "maxLength": 2}, "minLength \\(5\\) is greater than maxLength \\(2\\)"),
        ({"type": "string", "format": "colour"}, "Unknown format: colour"),
        ({"type": "string", "default": {1, 2}}, "should hold JSON values only"),
    ],
)
def test_unsupported_schema_names_the_problem(schema: dict, message: str) -> None:
    with pytest.raises(ValueError, match=f"JSON schema .*{message}"):
        resolve_schema(schema)


def test_constraint_with_unsupported_schema_is_a_value_error(tokenizer: Tokenizer) -> None:
    with pytest.raises(ValueError, match="uniqueItems"):
        JSONConstraint({"type": "array", "uniqueItems": True}, tokenizer, tokenizer.stop_ids)


@pytest.mark.parametrize("seed", range(4))
def test_objects_hold_only_the_properties_their_schema_names(tokenizer: Tokenizer, seed: int) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "string"}}, "required": ["a"]}
    constraint = JSONConstraint(schema, tokenizer, tokenizer.stop_ids)
    document = json.loads(generate(constraint, tokenizer, constraint.min_tokens() + 40, seed))
    assert set(document) <= {"a", "b"} and "a" in document


def test_objects_may_hold_other_properties_when_the_schema_says_so(tokenizer: Tokenizer) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "additionalProperties": True}
    constraint = JSONConstraint(schema, tokenizer, tokenizer.stop_ids)
    for token_id in tokenizer.encode('{"zz":1', bos=False):  # a property the schema does not name
        constraint.advance(token_id)
    assert constraint.text == '{"zz":1'
