"""Constrained decoding with llguidance: a row's output is JSON valid against a schema, a full match of a regular
expression, or a sentence of a Lark grammar, and it is finished within the tokens the row may still generate.

`make_constraint` compiles what a request asks for once and returns a factory of `ConstrainedRow`s, one per sample;
the engine asks a row's `allowed(budget)` before each token, checks the sampled token with `fits(token, budget)`
(sampling again without it when it does not fit) and reports it with `advance`.

The budget guarantee. A row keeps a closing plan: tokens that take its llguidance matcher from the current state to
an accepting one, found by a deterministic greedy walk on a copy of the matcher (forced tokens when llguidance has
them; else, in JSON, the first allowed token of a fixed order that favours short closings: a closing quote inside a
string, else closing brackets, comma, colon, then short values such as `0`, `""`, `[]`, `null`; in other grammars a
token after which the grammar accepts, else closing brackets, quotes and short values; else the allowed token the
walk has used least, so that it does not loop).
Invariant: the plan never has more tokens than the budget left. With `budget` tokens left (this one included), a
plan of `budget - 1` tokens or more allows only its own next token; otherwise every token of llguidance's mask is
allowed, and a sampled token fits when the walk from the state after it closes within `budget - 1` tokens (the plan's
own next token always does, so some token always fits). Checking the sampled token is cheap where it matters most:
when llguidance accepts the token, then the current plan, then EOS (allowed only where the grammar accepts) in one
call, the plan is kept; only a token that changes the structure costs a walk. Sampling again without a token that
does not fit draws from what masking every such token would leave. `min_tokens()` is the plan's length; the engine
refuses a request whose `max_new_tokens` is below it. A grammar whose closing the walk does not find within
`MAX_PLAN` tokens has no plan: its rows are only kept valid, and may end at `max_new_tokens` unfinished, finish
reason "length".
"""

from __future__ import annotations

import functools
import json
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from llguidance import LLMatcher, LLTokenizer, TokenizerWrapper
from llguidance.numpy import allocate_token_bitmask, fill_next_token_bitmask

from litllm.tokenizer import Tokenizer

MAX_PLAN = 4096  # longest closing the greedy walk looks for (tokens)
_JSON_OPTIONS = {"whitespace_flexible": False}  # compact JSON: "," and ":" with no whitespace outside strings
_DSL_TYPES = {"str": "string", "int": "integer", "float": "number", "bool": "boolean"}
_CLOSING = b"}])"
_QUOTES = b"\"'"
_SHORT_VALUES = (b"0", b'""', b"[]", b"{}", b"null", b"false", b"true", b'"', b"[", b"{")
_SCHEMA_MAPPINGS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")  # name -> schema
_CACHED_GRAMMARS = 64  # compiled grammars kept per tokenizer


def schema_dsl(spec: str, multi: bool = False) -> dict[str, Any]:
    """The JSON schema of `llm`'s concise syntax, e.g. "name, age int, bio: one sentence"."""
    separator = "\n" if "\n" in spec else ","
    fields = [field.strip() for field in spec.split(separator) if field.strip()]
    if not fields:
        raise ValueError(f"schema DSL {spec!r} names no fields; write e.g. 'name, age int, bio: one sentence'")
    properties: dict[str, Any] = {}
    for field in fields:
        head, _, description = field.partition(":")
        words = head.split()
        if len(words) not in (1, 2):
            raise ValueError(
                f"schema DSL field {field!r} should read 'name [type][: description]' with type one of "
                f"{', '.join(_DSL_TYPES)}"
            )
        name, kind = words[0], words[1] if len(words) == 2 else "str"
        if kind not in _DSL_TYPES:
            raise ValueError(
                f"schema DSL field {name!r} has unknown type {kind!r}; accepted types: {', '.join(_DSL_TYPES)}"
            )
        if name in properties:
            raise ValueError(f"schema DSL field {name!r} is given twice in {spec!r}")
        properties[name] = {"type": _DSL_TYPES[kind]}
        if description.strip():
            properties[name]["description"] = description.strip()
    schema = {"type": "object", "properties": properties, "required": list(properties)}
    if multi:
        return {"type": "object", "properties": {"items": {"type": "array", "items": schema}}, "required": ["items"]}
    return schema


def resolve_schema(schema: dict[str, Any] | type | str) -> dict[str, Any]:
    """The JSON-schema dict of a schema dict, pydantic model class or DSL string, checked by llguidance."""
    resolved = _schema_dict(schema)
    error = LLMatcher.validate_grammar(_json_grammar(resolved))
    if error:
        raise ValueError(f"JSON schema is not supported by constrained decoding: {_one_line(error)}")
    return resolved


def _schema_dict(schema: dict[str, Any] | type | str) -> dict[str, Any]:
    """The JSON-schema dict of a schema dict, pydantic model class or DSL string, unchecked."""
    if isinstance(schema, str):
        return schema_dsl(schema)
    if isinstance(schema, dict):
        return schema
    if isinstance(schema, type) and callable(getattr(schema, "model_json_schema", None)):
        return schema.model_json_schema()
    raise TypeError(
        f"schema should be a JSON-schema dict, a pydantic model class or a schema DSL string such as "
        f"'name, age int', got {type(schema).__name__}"
    )


def make_constraint(
    tokenizer: Tokenizer,
    stop_ids: Sequence[int],
    vocab_size: int | None,
    *,
    schema: dict[str, Any] | type | str | None = None,
    regex: str | None = None,
    grammar: str | None = None,
) -> Callable[[], ConstrainedRow] | None:
    """A factory of fresh constraints, one per row, for at most one of schema, regex and grammar (None: none given).

    The grammar is compiled and checked here, so that a bad one is an error of the request, not of a decode step.
    """
    given = [name for name, value in (("schema", schema), ("regex", regex), ("grammar", grammar)) if value is not None]
    if len(given) > 1:
        raise ValueError(f"give at most one of schema, regex and grammar, got {' and '.join(given)}")
    if schema is not None:
        compiled = _compile_json(schema, tokenizer)
    elif regex is not None:
        compiled = _compile_regex(regex, tokenizer)
    elif grammar is not None:
        compiled = _compile_lark(grammar, tokenizer)
    else:
        return None
    stops = tuple(stop_ids)
    ConstrainedRow(compiled, stops, vocab_size)  # checks the stop ids and vocab_size now
    return functools.partial(ConstrainedRow, compiled, stops, vocab_size)


class ConstrainedRow:
    """Which token ids may come next so that one row's output matches a compiled grammar within its token budget.

    The engine asks `allowed(budget)` before each sampled token, where `budget` counts the tokens the row may still
    generate, this one included; samples again without a token that `fits` refuses; and reports the token with
    `advance`. Once `done`, only `stop_ids` are allowed. `vocab_size` is the width of the model's logits (the
    tokenizer's by default); ids beyond the tokenizer's vocabulary are never allowed.
    """

    def __init__(self, grammar: _Grammar, stop_ids: Sequence[int], vocab_size: int | None = None) -> None:
        vocabulary = grammar.vocabulary
        self.vocab_size = len(vocabulary.token_bytes) if vocab_size is None else int(vocab_size)
        if self.vocab_size < 1:
            raise ValueError(f"vocab_size should be positive, got {vocab_size}")
        bad = [i for i in stop_ids if not 0 <= int(i) < self.vocab_size]
        if bad:
            raise ValueError(f"stop id {bad[0]} is not a token id (ids 0..{self.vocab_size - 1})")
        self.stop_ids = tuple(dict.fromkeys(int(i) for i in stop_ids))
        self._stop_tensor = torch.tensor(self.stop_ids, dtype=torch.long)
        self._stop_array = np.array(self.stop_ids, dtype=np.int64)
        self._grammar = grammar
        self._vocabulary = vocabulary
        self._matcher = grammar.matcher.deep_copy()
        self._plan = grammar.plan  # None: no closing known, no budget guarantee
        self._in_string = (False, False)  # JSON only: (inside a string, after a backslash)
        self._fitted: tuple[int, tuple[int, ...]] | None = None  # the last token `fits` accepted, and its plan
        self._bitmask = allocate_token_bitmask(1, vocabulary.lltokenizer.vocab_size)
        self._data = bytearray()
        self._stopped = False

    @property
    def done(self) -> bool:
        """Whether the output is complete and nothing more may follow it but a stop token."""
        return self._stopped or self._matcher.is_stopped()

    @property
    def text(self) -> str:
        """The output so far (a character still arriving byte by byte shows as U+FFFD)."""
        return self._data.decode("utf-8", errors="replace")

    def min_tokens(self) -> int:
        """The fewest tokens this row is sure to finish in from here: the length of its closing plan."""
        if self.done:
            return 0
        if self._plan is None:
            return 0 if self._matcher.is_accepting() else 1
        return len(self._plan)

    def allowed(self, budget: int) -> torch.Tensor:
        """Boolean mask (vocab_size,) of the ids that may come next when `budget` more tokens may be generated.

        A budget below `min_tokens()` is an error at the start (the engine refuses such a request); later it can only
        follow a token that `fits` was not asked about, and the row then writes its plan as far as the budget goes.
        """
        needed = self.min_tokens()
        if budget < needed and not self._data:
            raise ValueError(
                f"budget={budget} tokens cannot finish the {self._grammar.what}; it needs at least {needed}"
            )
        plan = self._plan
        mask = torch.zeros(self.vocab_size, dtype=torch.bool)
        if self.done or (plan is not None and not plan and budget <= 1):
            return mask.index_fill_(0, self._stop_tensor, True)
        if plan is not None and len(plan) >= budget - 1:
            if plan[0] < self.vocab_size:
                mask[plan[0]] = True
            return mask
        valid = self._vocabulary.mask(self._matcher, self._bitmask)  # (tokenizer vocab,)
        if len(valid) != self.vocab_size:
            width = min(len(valid), self.vocab_size)
            valid = np.concatenate([valid[:width], np.zeros(self.vocab_size - width, dtype=bool)])
        if self._matcher.is_accepting():
            valid[self._stop_array] = True
        return torch.from_numpy(valid)

    def fits(self, token_id: int, budget: int) -> bool:
        """Whether `token_id` may come next and the output can still be finished in the `budget - 1` tokens after
        it; the engine samples again without a token that does not fit."""
        token_id = int(token_id)
        if token_id in self.stop_ids:
            return self.done or self._matcher.is_accepting()
        if self.done or not self._valid(token_id):
            return False
        plan = self._plan
        if plan is None:
            return True
        if plan and token_id == plan[0]:
            self._fitted = (token_id, plan[1:])
            return True
        if len(plan) >= budget - 1:
            return False
        after = self._plan_after(token_id, budget - 1)
        if after is None:
            return False
        self._fitted = (token_id, after)
        return True

    def advance(self, token_id: int) -> None:
        """Records the token chosen for this row."""
        token_id = int(token_id)
        if token_id in self.stop_ids and (self.done or self._matcher.is_accepting()):
            self._stopped = True
            return
        if self.done:
            raise ValueError(f"token id {token_id} follows a complete {self._grammar.what}; only stop ids may")
        if not self._valid(token_id):
            data = self._vocabulary.token_bytes[token_id] if 0 <= token_id < len(self._vocabulary.token_bytes) else None
            raise ValueError(
                f"token id {token_id} ({data!r}) cannot follow {self.text!r} under the {self._grammar.what}"
            )
        plan = self._plan
        if self._fitted is not None and self._fitted[0] == token_id:
            plan = self._fitted[1]
        elif plan is not None and plan and token_id == plan[0]:
            plan = plan[1:]
        elif plan is not None:  # a token `fits` did not check: the guarantee holds only if its closing fits
            plan = self._plan_after(token_id, MAX_PLAN)
        self._matcher.consume_token(token_id)
        data = self._vocabulary.token_bytes[token_id]
        self._data += data
        self._in_string = _json_string_state(data, self._in_string)
        self._plan, self._fitted = plan, None

    def _valid(self, token_id: int) -> bool:
        token_bytes = self._vocabulary.token_bytes
        return (
            0 <= token_id < len(token_bytes)
            and bool(token_bytes[token_id])
            and (self._matcher.validate_tokens([token_id]) == 1)
        )

    def _plan_after(self, token_id: int, limit: int) -> tuple[int, ...] | None:
        """A closing plan from the state after `token_id` within `limit` tokens: the current plan when it still closes
        the output there, else the greedy walk's."""
        plan, eos = self._plan, self._vocabulary.eos
        fits_as_is = plan is not None and eos is not None and len(plan) <= limit
        if fits_as_is and self._matcher.validate_tokens([token_id, *plan, eos]) == len(plan) + 2:
            return plan
        matcher = self._matcher.deep_copy()
        matcher.consume_token(token_id)
        in_string = _json_string_state(self._vocabulary.token_bytes[token_id], self._in_string)
        return _closing_plan(self._vocabulary, self._grammar.is_json, matcher, limit, in_string)


class JSONConstraint(ConstrainedRow):
    """A row whose output is compact JSON (no whitespace outside strings) valid against `schema`: a JSON-schema dict,
    a pydantic model class or a schema DSL string. The greedy walk closes strings, numbers, arrays and objects (see
    the module's docstring); a string `pattern` or `format` whose closing it misses within `MAX_PLAN` tokens leaves
    the row without a plan: valid as far as it goes, but it may end at `max_new_tokens` unfinished."""

    def __init__(
        self,
        schema: dict[str, Any] | type | str,
        tokenizer: Tokenizer,
        stop_ids: Sequence[int],
        vocab_size: int | None = None,
    ) -> None:
        super().__init__(_compile_json(schema, tokenizer), stop_ids, vocab_size)


class RegexConstraint(ConstrainedRow):
    """A row whose whole output matches the regular expression `pattern`. Where the greedy walk finds no match within
    `MAX_PLAN` tokens (it looks one token ahead for a match, else takes the allowed token it has used least, so
    `[ab]{5000}` is out of its reach), the row has no plan: `min_tokens()` is 1, and the row may end at
    `max_new_tokens` without a full match, finish reason "length"."""

    def __init__(
        self, pattern: str, tokenizer: Tokenizer, stop_ids: Sequence[int], vocab_size: int | None = None
    ) -> None:
        super().__init__(_compile_regex(pattern, tokenizer), stop_ids, vocab_size)


class GrammarConstraint(ConstrainedRow):
    """A row whose output is a sentence of the Lark grammar `lark_text` (llguidance's dialect). Where the greedy walk
    finds no closing within `MAX_PLAN` tokens (it looks one token ahead for an end, else prefers closing brackets,
    quotes and short values, else the allowed token it has used least: a grammar whose end needs a long, specific
    detour defeats it), the row has no plan: `min_tokens()` is 1, and the row may end at `max_new_tokens` unfinished,
    finish reason "length"."""

    def __init__(
        self, lark_text: str, tokenizer: Tokenizer, stop_ids: Sequence[int], vocab_size: int | None = None
    ) -> None:
        super().__init__(_compile_lark(lark_text, tokenizer), stop_ids, vocab_size)


# ---------------------------------------------------------------------------------------------------------------
# Compiled grammars, the greedy closing walk, and the vocabulary they share.


@dataclass(frozen=True)
class _Grammar:
    """A grammar compiled for one tokenizer: a matcher at its start (copied per row) and its closing plan there."""

    vocabulary: _Vocabulary
    matcher: LLMatcher
    what: str  # "JSON schema", "regular expression" or "Lark grammar", for messages
    is_json: bool
    plan: tuple[int, ...] | None


class _Vocabulary:
    """A tokenizer as llguidance sees it, its tokens' bytes, the tokens the closing walk prefers, and the grammars
    compiled for it."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.token_bytes = tokenizer.token_bytes()
        self.lltokenizer = LLTokenizer(TokenizerWrapper(_Tokens(tokenizer)))
        # a plan still closes the output after a token when llguidance takes token, plan and EOS (EOS is allowed
        # only in an accepting state); a tokenizer whose EOS is text has no such check
        eos = self.lltokenizer.eos_token
        self.eos = eos if 0 <= eos < len(self.token_bytes) and self.token_bytes[eos] is None else None
        ids: dict[bytes, int] = {}
        for token_id, data in enumerate(self.token_bytes):
            if data:
                ids.setdefault(data, token_id)

        def longest_first(keep: Callable[[bytes], bool]) -> list[int]:
            """The tokens `keep` accepts, longest first."""
            return [ids[d] for d in sorted((d for d in ids if keep(d)), key=lambda d: (-len(d), ids[d]))]

        closers = longest_first(lambda d: all(b in _CLOSING for b in d))
        string_closers = longest_first(lambda d: d[:1] == b'"' and all(b in _CLOSING for b in d[1:]))
        values = [ids[v] for v in _SHORT_VALUES if v in ids]
        self.comma = ids.get(b",")
        separators = [ids[d] for d in (b",", b":") if d in ids]
        # Outside a JSON string a comma is valid only after a complete value where no closing bracket is (the
        # structure needs another item: a short value there would only lengthen a number), a colon only after a key.
        self.json_order = np.array(closers + separators + values, dtype=np.int64)
        self.json_string_order = np.array(string_closers, dtype=np.int64)
        self.order = longest_first(lambda d: all(b in _CLOSING + _QUOTES for b in d)) + values
        self.single_bytes = np.array([ids[d] for d in sorted(d for d in ids if len(d) == 1)], dtype=np.int64)
        self.grammars: OrderedDict[tuple[str, str], _Grammar] = OrderedDict()

    def mask(self, matcher: LLMatcher, bitmask: np.ndarray) -> np.ndarray:
        """(tokenizer vocab,) bool, a new array: the tokens llguidance allows next, EOS left out (a row allows its
        own stop tokens)."""
        fill_next_token_bitmask(matcher, bitmask)
        return self.unpack(bitmask)

    def unpack(self, bitmask: np.ndarray) -> np.ndarray:
        """(tokenizer vocab,) bool, a new array, of llguidance's (1, words) bitmask, EOS left out."""
        bits = np.unpackbits(bitmask.view(np.uint8), count=len(self.token_bytes), bitorder="little").view(bool)
        if self.eos is not None:
            bits[self.eos] = False
        return bits


class _Tokens:
    """The tokenizer in the shape llguidance's TokenizerWrapper reads; holds it weakly, so that the cache of
    vocabularies, keyed weakly by tokenizer, can let it go."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        token_bytes = tokenizer.token_bytes()
        self.eos_token_id = tokenizer.eos_id if tokenizer.eos_id is not None else next(iter(tokenizer.stop_ids), 0)
        self.bos_token_id = tokenizer.bos_id
        # special tokens get llguidance's marker byte 0xFF before their name, which no text contains
        self.tokens = [
            data if data is not None else b"\xff" + tokenizer.id_to_token(i).encode()
            for i, data in enumerate(token_bytes)
        ]
        self.special_token_ids = [i for i, data in enumerate(token_bytes) if data is None]
        self._tokenizer = weakref.ref(tokenizer)

    def __call__(self, text: str) -> list[int]:
        if not isinstance(text, str):
            raise TypeError("encodes str only")  # TokenizerWrapper probes with bytes, then falls back to str
        tokenizer = self._tokenizer()
        if tokenizer is None:
            raise RuntimeError("the tokenizer of this vocabulary was garbage-collected")
        return tokenizer.encode(text, bos=False)


_VOCABULARIES: weakref.WeakKeyDictionary[Tokenizer, _Vocabulary] = weakref.WeakKeyDictionary()


def _vocabulary(tokenizer: Tokenizer) -> _Vocabulary:
    """The llguidance view of a tokenizer, built once per tokenizer object."""
    vocabulary = _VOCABULARIES.get(tokenizer)
    if vocabulary is None:
        vocabulary = _VOCABULARIES[tokenizer] = _Vocabulary(tokenizer)
    return vocabulary


def _json_text(schema: dict[str, Any]) -> str:
    try:
        return json.dumps(schema)
    except (TypeError, ValueError) as e:
        raise ValueError(f"the JSON schema should hold JSON values only: {e}") from e


def _json_grammar(schema: dict[str, Any]) -> str:
    return LLMatcher.grammar_from_json_schema(_json_text(schema), defaults=_JSON_OPTIONS)


def closed_objects(schema: Any) -> Any:
    """`schema` with `additionalProperties: false` on every object schema that names its properties and says
    nothing of others: a reply holds the properties asked for, not ones the model makes up."""
    if isinstance(schema, list):
        return [closed_objects(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {
        key: {name: closed_objects(s) for name, s in value.items()}
        if key in _SCHEMA_MAPPINGS and isinstance(value, dict)
        else closed_objects(value)
        for key, value in schema.items()
        if key not in ("enum", "const", "default", "examples")  # values, not schemas
    }
    out.update({key: schema[key] for key in ("enum", "const", "default", "examples") if key in schema})
    if ("properties" in out or "patternProperties" in out) and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


def _compile_json(schema: dict[str, Any] | type | str, tokenizer: Tokenizer) -> _Grammar:
    resolved = closed_objects(_schema_dict(schema))
    return _compiled(tokenizer, "JSON schema", _json_text(resolved), lambda: _json_grammar(resolved), is_json=True)


def _compile_regex(pattern: str, tokenizer: Tokenizer) -> _Grammar:
    if not isinstance(pattern, str):
        raise TypeError(f"regex should be a string, got {type(pattern).__name__}")
    return _compiled(tokenizer, "regular expression", pattern, lambda: LLMatcher.grammar_from_regex(pattern))


def _compile_lark(lark_text: str, tokenizer: Tokenizer) -> _Grammar:
    if not isinstance(lark_text, str):
        raise TypeError(f"grammar should be the text of a Lark grammar, got {type(lark_text).__name__}")
    return _compiled(tokenizer, "Lark grammar", lark_text, lambda: LLMatcher.grammar_from_lark(lark_text))


def _compiled(
    tokenizer: Tokenizer, what: str, source: str, grammar: Callable[[], str], is_json: bool = False
) -> _Grammar:
    """The grammar of `source` compiled for `tokenizer`, with its closing plan; cached per tokenizer."""
    vocabulary = _vocabulary(tokenizer)
    key = (what, source)
    compiled = vocabulary.grammars.get(key)
    if compiled is None:
        matcher = LLMatcher(vocabulary.lltokenizer, grammar(), log_level=0)
        if matcher.is_error():
            raise ValueError(f"{what} is not supported by constrained decoding: {_one_line(matcher.get_error())}")
        plan = _closing_plan(vocabulary, is_json, matcher, MAX_PLAN, (False, False))
        compiled = vocabulary.grammars[key] = _Grammar(vocabulary, matcher, what, is_json, plan)
    vocabulary.grammars.move_to_end(key)
    while len(vocabulary.grammars) > _CACHED_GRAMMARS:
        vocabulary.grammars.popitem(last=False)
    return compiled


def _one_line(error: str) -> str:
    """An llguidance message without its source excerpts: the first line and the lines that say "error:"."""
    lines = [line.strip() for line in error.strip().splitlines()]
    return " ".join(lines[:1] + [line for line in lines[1:] if line.startswith("error:")])


def _closing_plan(
    vocabulary: _Vocabulary, is_json: bool, matcher: LLMatcher, limit: int, in_string: tuple[bool, bool]
) -> tuple[int, ...] | None:
    """Tokens that take `matcher` to an accepting state, by the greedy walk of the module's docstring; None when the
    walk finds none within `limit` tokens."""
    matcher = matcher.deep_copy()
    plan: list[int] = []
    used: dict[int, int] = {}  # tokens the walk chose itself, and how often: it prefers new ones, not to loop
    bitmask = allocate_token_bitmask(1, vocabulary.lltokenizer.vocab_size)
    while not matcher.is_accepting():
        step = matcher.compute_ff_tokens() if matcher.compute_ff_bytes() else []
        if not step:
            token_id = _choose(vocabulary, is_json, matcher, in_string[0], used, bitmask)
            if token_id is None:
                return None
            used[token_id] = used.get(token_id, 0) + 1
            step = [token_id]
        if len(plan) + len(step) > limit:
            return None
        for token_id in step:
            matcher.consume_token(token_id)
            in_string = _json_string_state(vocabulary.token_bytes[token_id], in_string)
        plan += step
    return tuple(plan)


def _choose(
    vocabulary: _Vocabulary,
    is_json: bool,
    matcher: LLMatcher,
    in_string: bool,
    used: dict[int, int],
    bitmask: np.ndarray,
) -> int | None:
    """The closing walk's next token where llguidance forces none.

    JSON: the first allowed of its fixed order (string closers inside a string; else closing brackets, comma, colon,
    short values), else the allowed token used least. Other grammars, where a bracket or quote may be plain text:
    a token after which the grammar accepts, else the least used of the allowed tokens, the fixed order first.
    """
    fill_next_token_bitmask(matcher, bitmask)
    if is_json:
        order = vocabulary.json_string_order if in_string else vocabulary.json_order
        hits = np.flatnonzero(bitmask[0].view(np.uint32)[order >> 5] >> (order & 31) & 1)  # token t: bit t of the mask
        if len(hits):
            return int(order[hits[0]])
    allowed = vocabulary.unpack(bitmask)
    ids = np.flatnonzero(allowed)
    preferred = [] if is_json else [t for t in vocabulary.order if allowed[t]]
    eos = vocabulary.eos
    if not is_json and eos is not None:
        short = vocabulary.single_bytes[allowed[vocabulary.single_bytes]].tolist()
        closing = next((t for t in preferred + short if matcher.validate_tokens([t, eos]) == 2), None)
        if closing is not None:
            return closing
    # the first len(used) + 2 of the allowed ids hold one that is neither used nor a comma, if any does
    ranked = preferred + [t for t in ids[: len(used) + 2].tolist() if t != vocabulary.comma]
    fresh = next((t for t in ranked if t not in used), None)
    if fresh is not None:
        return fresh
    others = [t for t in ids.tolist() if t != vocabulary.comma] or ids.tolist()
    return min(others, key=lambda t: (used.get(t, 0), t), default=None)


def _json_string_state(data: bytes | None, state: tuple[bool, bool]) -> tuple[bool, bool]:
    """(inside a JSON string, after its backslash) once `data` follows text in `state`."""
    inside, escaped = state
    for byte in data or b"":
        if escaped:
            escaped = False
        elif inside and byte == 0x5C:
            escaped = True
        elif byte == 0x22:
            inside = not inside
    return inside, escaped
