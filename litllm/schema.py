"""JSON-schema-constrained decoding: whatever the model's weights, the output parses as JSON and validates.

`resolve_schema` turns a JSON-schema dict, a pydantic model class or `llm`'s concise DSL (`schema_dsl`) into a
plain schema of the supported subset (`SUPPORTED_KEYWORDS`); `JSONConstraint` then tells the engine, at every
decode step, which token ids may come next.

How: the schema compiles into a small tree of value nodes. A decoding state is a set of stacks of frames (a
pushdown automaton; a set because `anyOf` keeps several readings alive until the bytes tell them apart) fed one
byte at a time. States are interned as ints and their byte transitions memoised, so the automaton grows into a
DFA as it is used, shared by every constraint with the same schema and tokenizer. The vocabulary is a byte trie
walked from the current state, dead branches cut off; inside a free string the bulk of the vocabulary (tokens of
plain text) is handled by a few tensor operations instead of the walk. Every state knows the fewest bytes that
finish the document, so a token is allowed only if the document can still be finished within the budget, one
single-byte token per byte.

Output is compact (no whitespace outside strings), with properties in the schema's order; strings are valid
UTF-8 with JSON's escapes (no lone surrogates); numbers are plain decimals of at most 18 digits before and after
the point.
"""

from __future__ import annotations

import json
import math
import re
import weakref
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from litllm.tokenizer import Tokenizer

INF = 1 << 30  # cost of a state that cannot be finished; fits the int32 cost tensors
_MAX_DIGITS = 18  # per digit run of a number: keeps every integer an int64 and every number a finite float
_MAX_STATES = 200_000  # an automaton this big is rebuilt for new constraints, bounding a server's memory
_STAY, _PUSH, _POP, _PASS = range(4)  # what a frame does with a byte (see _step_stack)
_OPEN, _BODY, _EMPTY, _AFTER = -1, 0, 1, 2  # frame positions
_ESCAPE = 1  # string modes beyond _BODY; 2..6 are the digits of a \uXXXX escape (see _String.step)
_IDS = -1  # trie key under which a node keeps the token ids that end there

# Keywords that never change which documents are valid.
_ANNOTATIONS = frozenset(
    ["title", "description", "default", "examples", "$schema", "$id", "$comment", "deprecated", "readOnly", "writeOnly"]
)
_TYPE_KEYWORDS = {
    "object": ("properties", "required", "additionalProperties"),
    "array": ("items", "minItems", "maxItems"),
    "string": ("minLength", "maxLength"),
    "integer": ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"),
    "number": (),
    "boolean": (),
    "null": (),
}
_BOUNDS = _TYPE_KEYWORDS["integer"]
SUPPORTED_KEYWORDS = (
    ("type", "enum", "const", "anyOf", "oneOf", "allOf", "$ref", "$defs", "definitions")
    + tuple(k for keywords in _TYPE_KEYWORDS.values() for k in keywords)
    + tuple(sorted(_ANNOTATIONS))
)
_DSL_TYPES = {"str": "string", "int": "integer", "float": "number", "bool": "boolean"}
# Bytes the closing of a document may need wherever the schema puts them; looked up once per tokenizer.
_STRUCTURAL = b'{}[],:"-.0123456789'
_UTF8_LEADS = {  # lead byte -> (continuation bytes, range of the first one): RFC 3629, no overlongs/surrogates
    **{b: (1, 0x80, 0xBF) for b in range(0xC2, 0xE0)},
    0xE0: (2, 0xA0, 0xBF),
    **{b: (2, 0x80, 0xBF) for b in range(0xE1, 0xF0)},
    0xED: (2, 0x80, 0x9F),
    0xF0: (3, 0x90, 0xBF),
    **{b: (3, 0x80, 0xBF) for b in range(0xF1, 0xF4)},
    0xF4: (3, 0x80, 0x8F),
}
_HEX = frozenset(b"0123456789abcdefABCDEF")
_INT_PREFIX = re.compile(rb"-?(?:0|[1-9][0-9]{0,%d})?" % (_MAX_DIGITS - 1))


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
    """The JSON-schema dict of a schema dict, pydantic model class or DSL string, with `$ref`s inlined."""
    if isinstance(schema, str):
        resolved = schema_dsl(schema)
    elif isinstance(schema, dict):
        resolved = _inline_refs(schema, schema, ())
    elif isinstance(schema, type) and callable(getattr(schema, "model_json_schema", None)):
        full = schema.model_json_schema()
        resolved = _inline_refs(full, full, ())
    else:
        raise TypeError(
            f"schema should be a JSON-schema dict, a pydantic model class or a schema DSL string such as "
            f"'name, age int', got {type(schema).__name__}"
        )
    _compile(resolved, "schema")
    return resolved


class JSONConstraint:
    """Which token ids may come next so that one row's output is a JSON document valid against `schema`.

    The engine asks `allowed(budget)` before each sampled token and reports the token with `advance`; once `done`,
    only `stop_ids` are allowed. `vocab_size` is the width of the model's logits (the tokenizer's by default);
    ids beyond the tokenizer's vocabulary are never allowed.
    """

    def __init__(
        self,
        schema: dict[str, Any] | type | str,
        tokenizer: Tokenizer,
        stop_ids: Sequence[int],
        vocab_size: int | None = None,
    ) -> None:
        self.vocab_size = tokenizer.vocab_size if vocab_size is None else int(vocab_size)
        if self.vocab_size < 1:
            raise ValueError(f"vocab_size should be positive, got {vocab_size}")
        bad = [i for i in stop_ids if not 0 <= int(i) < self.vocab_size]
        if bad:
            raise ValueError(f"stop id {bad[0]} is not a token id (ids 0..{self.vocab_size - 1})")
        self.stop_ids = tuple(dict.fromkeys(int(i) for i in stop_ids))
        self._stop_tensor = torch.tensor(self.stop_ids, dtype=torch.long)
        self._vocab = _vocabulary(tokenizer)
        self._automaton = self._vocab.automaton(resolve_schema(schema))
        self._state = self._automaton.start
        self._data = bytearray()
        self._stopped = False
        if self._automaton.costs[self._state] >= INF:
            raise ValueError(
                "no document valid against this schema can be written: numbers take at most 18 digits, and each "
                "byte of the shortest document must be a token by itself in this tokenizer"
            )

    @property
    def done(self) -> bool:
        """Whether the JSON document is complete and nothing more may follow it but a stop token."""
        return self._stopped or self._state == self._automaton.end

    @property
    def text(self) -> str:
        """The output so far (a character still arriving byte by byte shows as U+FFFD)."""
        return self._data.decode("utf-8", errors="replace")

    def min_tokens(self) -> int:
        """The fewest tokens that finish the document from here (from the start, before any `advance`)."""
        return 0 if self.done else self._automaton.costs[self._state]

    def allowed(self, budget: int) -> torch.Tensor:
        """Boolean mask (vocab_size,) of the ids that keep the output valid and finishable in `budget` tokens."""
        needed = self.min_tokens()
        if budget < needed:
            raise ValueError(f"budget={budget} tokens cannot finish the JSON document; it needs at least {needed}")
        mask = torch.zeros(self.vocab_size, dtype=torch.bool)
        if not self.done:
            costs = self._automaton.token_costs(self._state)  # (tokenizer vocab,) bytes left after each token
            width = min(len(costs), self.vocab_size)
            mask[:width] = costs[:width] < budget  # the token itself takes one of the budget
        if self.done or self._automaton.accepting(self._state):
            mask.index_fill_(0, self._stop_tensor, True)
        return mask

    def advance(self, token_id: int) -> None:
        """Records the token chosen for this row."""
        token_id = int(token_id)
        if token_id in self.stop_ids and (self.done or self._automaton.accepting(self._state)):
            self._stopped = True
            return
        if self.done:
            raise ValueError(f"token id {token_id} follows a complete JSON document; only stop ids may")
        data = self._vocab.token_bytes[token_id] if 0 <= token_id < self._vocab.size else None
        if not data:
            raise ValueError(f"token id {token_id} cannot appear in a JSON document")
        state = self._state
        for byte in data:
            state = self._automaton.step(state, byte)
            if state < 0:
                raise ValueError(f"token id {token_id} ({data!r}) cannot follow {self.text!r} under the schema")
        self._state = state
        self._data += data


# ---------------------------------------------------------------------------------------------------------------
# Schema -> value nodes. A node's frames are tuples whose first item is the node; `step(frame, byte)` returns
# outcomes: (_STAY, frame) replaces the frame, (_PUSH, frame, child) replaces it and opens a child value,
# (_POP,) ends the value with this byte, (_PASS,) ends it before this byte (numbers have no closing byte).
# `cost(frame, automaton)` is the fewest bytes that finish the frame once any child above it is finished.


class _String:
    """A string with a length range in characters."""

    def __init__(self, min_len: int, max_len: int | None) -> None:
        self.min_len, self.max_len = min_len, max_len
        self.cap = min_len if max_len is None else max_len  # counting further changes nothing
        # stands in for this string while its length is far from both limits (see _Automaton._relaxed)
        self.free = self if self.cap == 0 else _String(0, None)

    def starts(self) -> list[tuple]:
        return [(self, 0, _OPEN)]

    def step(self, frame: tuple, byte: int) -> list[tuple]:
        _, n, mode = frame
        if mode == _OPEN:
            return [(_STAY, (self, 0, _BODY))] if byte == 0x22 else []
        if mode == _BODY:
            if byte == 0x22:
                return [(_POP,)] if n >= self.min_len else []
            if self.max_len is not None and n >= self.max_len:
                return []
            if byte == 0x5C:
                return [(_STAY, (self, n, _ESCAPE))]
            if 0x20 <= byte < 0x80:
                return [(_STAY, (self, self._count(n), _BODY))]
            lead = _UTF8_LEADS.get(byte)
            return [(_STAY, (self, n, lead))] if lead else []
        if isinstance(mode, tuple):  # inside a UTF-8 character: (bytes left, range of the next one)
            left, low, high = mode
            if not low <= byte <= high:
                return []
            return [(_STAY, (self, self._count(n), _BODY) if left == 1 else (self, n, (left - 1, 0x80, 0xBF)))]
        if mode == _ESCAPE:
            if byte == 0x75:  # \u
                return [(_STAY, (self, n, 2))]
            return [(_STAY, (self, self._count(n), _BODY))] if byte in b'"\\/bfnrt' else []
        # \uXXXX, mode 2..6: 2 = first digit; 3 = second after "d" (0-7 only: no surrogates); 4, 5, 6 = the rest
        if byte not in _HEX or (mode == 3 and byte not in b"01234567"):
            return []
        if mode == 6:
            return [(_STAY, (self, self._count(n), _BODY))]
        following = (3 if byte in b"dD" else 4) if mode == 2 else (5 if mode < 5 else 6)
        return [(_STAY, (self, n, following))]

    def cost(self, frame: tuple, automaton: _Automaton) -> int:
        _, n, mode = frame
        if mode == _OPEN:
            return 1 + self._close(0, automaton)
        if mode == _BODY:
            return self._close(n, automaton)
        if isinstance(mode, tuple):
            left, low, high = mode
            if not automaton.has(low, high) or (left > 1 and not automaton.has(0x80, 0xBF)):
                return INF
            return left + self._close(self._count(n), automaton)
        left = 1 if mode == _ESCAPE else {2: 4, 3: 3, 4: 3, 5: 2, 6: 1}[mode]  # hex digits to go
        return left + self._close(self._count(n), automaton)

    def complete(self, frame: tuple) -> bool:
        return False

    def _count(self, n: int) -> int:
        return min(n + 1, self.cap)

    def _close(self, n: int, automaton: _Automaton) -> int:
        """Bytes to pad to the minimum length and close the string."""
        short = max(0, self.min_len - n)
        return min(INF, 1 + short * (1 if automaton.can_pad else INF))


class _Literal:
    """One of a few fixed byte strings (enum, const, true/false, null)."""

    def __init__(self, values: list[bytes]) -> None:
        self.values = frozenset(values)
        prefixes = {v[:i] for v in values for i in range(len(v) + 1)}
        # a value that a longer one extends stays open (its end is told by the next byte, as for numbers)
        self.open = {p for p in prefixes if any(v != p and v.startswith(p) for v in values)}

    def starts(self) -> list[tuple]:
        return [(self, b"")]

    def step(self, frame: tuple, byte: int) -> list[tuple]:
        prefix = frame[1]
        text = prefix + bytes((byte,))
        out: list[tuple] = []
        if text in self.open:
            out.append((_STAY, (self, text)))
        elif text in self.values:
            out.append((_POP,))
        if prefix in self.values:
            out.append((_PASS,))
        return out

    def cost(self, frame: tuple, automaton: _Automaton) -> int:
        prefix = frame[1]
        lengths = [
            len(v) - len(prefix) for v in self.values if v.startswith(prefix) and automaton.spells(v[len(prefix) :])
        ]
        return min(lengths, default=INF)

    def complete(self, frame: tuple) -> bool:
        return frame[1] in self.values


class _Number:
    """A number (or integer) in plain decimal notation: -?(0|[1-9][0-9]*)(.[0-9]+)?"""

    START, MINUS, ZERO, INT, DOT, FRAC = range(6)

    def __init__(self, integer: bool) -> None:
        self.integer = integer

    def starts(self) -> list[tuple]:
        return [(self, self.START, 0)]

    def step(self, frame: tuple, byte: int) -> list[tuple]:
        _, pos, digits = frame
        is_digit = 0x30 <= byte <= 0x39
        if pos in (self.START, self.MINUS):
            if byte == 0x2D and pos == self.START:
                return [(_STAY, (self, self.MINUS, 0))]
            if is_digit:
                return [(_STAY, (self, self.ZERO if byte == 0x30 else self.INT, 1))]
            return []
        if pos == self.DOT:
            return [(_STAY, (self, self.FRAC, 1))] if is_digit else []
        out: list[tuple] = [(_PASS,)]  # ZERO, INT, FRAC: a complete number that may go on
        if is_digit and pos != self.ZERO and digits < _MAX_DIGITS:
            out.append((_STAY, (self, pos, digits + 1)))
        elif byte == 0x2E and pos != self.FRAC and not self.integer:
            out.append((_STAY, (self, self.DOT, 0)))
        return out

    def cost(self, frame: tuple, automaton: _Automaton) -> int:
        return 0 if self.complete(frame) else 1

    def complete(self, frame: tuple) -> bool:
        return frame[1] in (self.ZERO, self.INT, self.FRAC)


class _Integer:
    """An integer within inclusive bounds (either may be infinite)."""

    def __init__(self, low: float, high: float) -> None:
        self.low, self.high = low, high
        self._reach: dict[Any, int] = {}
        self._representatives: dict[Any, bytes] = {}

    def starts(self) -> list[tuple]:
        return [(self, b"")]

    def step(self, frame: tuple, byte: int) -> list[tuple]:
        text = frame[1] + bytes((byte,))
        out: list[tuple] = []
        if _INT_PREFIX.fullmatch(text) and self.reach(text) < INF:
            out.append((_STAY, (self, self._representatives.setdefault(self._kind(text), text))))
        if self.complete(frame):
            out.append((_PASS,))
        return out

    def cost(self, frame: tuple, automaton: _Automaton) -> int:
        return self.reach(frame[1])

    def complete(self, frame: tuple) -> bool:
        return frame[1] not in (b"", b"-") and self.low <= int(frame[1]) <= self.high

    def reach(self, text: bytes) -> int:
        """Fewest bytes to append to `text` for an integer within the bounds (INF when there is none)."""
        kind = self._kind(text)
        found = self._reach.get(kind)
        if found is None:
            if text:
                found = self._extend(text[:1] == b"-", text.lstrip(b"-"))
            else:
                found = min(self._extend(False, b""), 1 + self._extend(True, b""))
            self._reach[kind] = found
        return found

    def _kind(self, text: bytes) -> Any:
        """What decides the future of a prefix: its sign, its length, and how it compares with each bound's
        leading digits. Prefixes of one kind share one frame, which keeps the states few."""
        negative, digits = text[:1] == b"-", text.lstrip(b"-")
        if digits in (b"", b"0"):
            return text
        return (
            negative,
            len(digits),
            _compare_prefix(digits, negative, self.low),
            _compare_prefix(digits, negative, self.high),
        )

    def _extend(self, negative: bool, digits: bytes) -> int:
        if digits == b"0":
            return 0 if self.low <= 0 <= self.high else INF
        for k in range(0 if digits else 1, _MAX_DIGITS - len(digits) + 1):  # k more digits span [low, high]
            if digits:
                low = int(digits) * 10**k
                high = low + 10**k - 1
            else:
                low, high = (0 if k == 1 else 10 ** (k - 1)), 10**k - 1
            if negative:
                low, high = -high, -low
            if max(low, self.low) <= min(high, self.high):
                return k
        return INF


def _compare_prefix(digits: bytes, negative: bool, bound: float) -> Any:
    """How a number starting with `digits` (no leading zero) compares with `bound`, as far as it is known."""
    magnitude = -bound if negative else bound  # the bound in the direction of the number's sign
    if magnitude in (math.inf, -math.inf) or magnitude < 0:
        return None  # the same for every such number
    spelled = str(magnitude).encode()
    if len(digits) > len(spelled):
        return "longer"
    head = spelled[: len(digits)]
    return (digits > head) - (digits < head)  # digit strings of one length compare as numbers


class _Array:
    """An array of one item schema with a length range."""

    def __init__(self, item: Any, min_items: int, max_items: int | None) -> None:
        self.item, self.min_items, self.max_items = item, min_items, max_items
        self.cap = min_items if max_items is None else max_items  # counting further changes nothing

    def starts(self) -> list[tuple]:
        return [(self, 0, _OPEN)]

    def step(self, frame: tuple, byte: int) -> list[tuple]:
        _, n, pos = frame
        if pos == _OPEN:
            if byte != 0x5B:
                return []
            out: list[tuple] = []
            if self.min_items == 0:
                out.append((_STAY, (self, 0, _EMPTY)))
            if self.max_items != 0:
                out.append((_PUSH, (self, min(1, self.cap), _AFTER), self.item))
            return out
        if byte == 0x5D:
            return [(_POP,)] if pos == _EMPTY or n >= self.min_items else []
        if byte == 0x2C and pos == _AFTER and (self.max_items is None or n < self.max_items):
            return [(_PUSH, (self, min(n + 1, self.cap), _AFTER), self.item)]
        return []

    def cost(self, frame: tuple, automaton: _Automaton) -> int:
        _, n, pos = frame
        item = automaton.value_cost(self.item)
        if pos == _OPEN:
            return 2 if self.min_items == 0 else min(INF, 1 + self.min_items * (item + 1))
        if pos == _EMPTY:
            return 1
        return min(INF, 1 + max(0, self.min_items - n) * (item + 1))

    def complete(self, frame: tuple) -> bool:
        return False


class _Object:
    """An object whose properties come in schema order: the required ones always, optional ones maybe."""

    def __init__(self, properties: list[tuple[str, Any, bool]]) -> None:
        self.nodes = [node for _, node, _ in properties]
        self.keys = [_spellings(name, b":") for name, _, _ in properties]  # '"key":' in each spelling
        required = [i for i, (_, _, is_required) in enumerate(properties) if is_required]
        n = len(properties)
        # after property i - 1: properties i.. up to the next required one may come; "}" once none is required
        self.choices = [range(i, next((r + 1 for r in required if r >= i), n)) for i in range(n + 1)]
        self.may_close = [not any(r >= i for r in required) for i in range(n + 1)]

    def starts(self) -> list[tuple]:
        return [(self, _OPEN, True, b"")]

    def step(self, frame: tuple, byte: int) -> list[tuple]:
        _, i, first, prefix = frame
        if i == _OPEN:
            return [(_STAY, (self, 0, True, b""))] if byte == 0x7B else []
        if byte == 0x7D and not prefix and self.may_close[i]:
            return [(_POP,)]
        text = prefix + bytes((byte,))
        out: list[tuple] = []
        partial = False
        for j, literal in self._literals(i, first):
            if literal == text:
                out.append((_PUSH, (self, j + 1, False, b""), self.nodes[j]))
            partial = partial or (len(literal) > len(text) and literal.startswith(text))
        if partial:
            out.append((_STAY, (self, i, first, text)))
        return out

    def cost(self, frame: tuple, automaton: _Automaton) -> int:
        _, i, first, prefix = frame
        if i == _OPEN:
            return 1 + automaton.frame_cost((self, 0, True, b""))
        best = 1 if not prefix and self.may_close[i] else INF
        for j, literal in self._literals(i, first):
            if literal.startswith(prefix) and automaton.spells(literal[len(prefix) :]):
                rest = automaton.value_cost(self.nodes[j]) + automaton.frame_cost((self, j + 1, False, b""))
                best = min(best, len(literal) - len(prefix) + rest)
        return best

    def complete(self, frame: tuple) -> bool:
        return False

    def _literals(self, i: int, first: bool) -> Iterator[tuple[int, bytes]]:
        """(property index, '"key":' or ',"key":') for each property that may come next."""
        for j in self.choices[i]:
            for key in self.keys[j]:
                yield j, key if first else b"," + key


class _AnyOf:
    """Any of several values: their frames all start, and the bytes keep the ones that fit."""

    def __init__(self, nodes: list[Any]) -> None:
        self._starts = [frame for node in nodes for frame in node.starts()]

    def starts(self) -> list[tuple]:
        return self._starts


def _compile(schema: Any, where: str) -> Any:
    """The value node of a (resolved) schema; ValueError for what the decoder cannot guarantee."""
    if schema is True:
        return _any_value()
    if not isinstance(schema, dict):
        raise ValueError(f"{where} should be a JSON-schema object, got {schema!r}")
    unknown = [key for key in schema if key not in SUPPORTED_KEYWORDS or key == "$ref"]
    if unknown:
        raise ValueError(
            f"{where}: keyword {unknown[0]!r} is not supported by constrained decoding; supported keywords: "
            f"{', '.join(SUPPORTED_KEYWORDS)}"
        )
    if "allOf" in schema:
        return _compile(_merge_all_of(schema, where), where)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return _compile_union(schema, key, where)
    if "enum" in schema or "const" in schema:
        return _compile_enum(schema, where)
    kind = schema.get("type", _implied_type(schema))
    if isinstance(kind, list):
        if not kind:
            raise ValueError(f"{where}: 'type' is an empty list")
        nodes = [_compile({**schema, "type": k}, where) for k in dict.fromkeys(kind)]
        return nodes[0] if len(nodes) == 1 else _AnyOf(nodes)
    return _any_value() if kind is None else _compile_type(schema, kind, where)


def _compile_type(schema: dict[str, Any], kind: Any, where: str) -> Any:
    if kind == "object":
        return _compile_object(schema, where)
    if kind == "array":
        item = _compile(schema.get("items", True), f"{where}.items")
        min_items, max_items = _size(schema, "minItems", where), _size(schema, "maxItems", where)
        _check_range(min_items, max_items, "minItems", "maxItems", where)
        return _Array(item, min_items or 0, max_items)
    if kind == "string":
        min_len, max_len = _size(schema, "minLength", where), _size(schema, "maxLength", where)
        _check_range(min_len, max_len, "minLength", "maxLength", where)
        return _String(min_len or 0, max_len)
    if kind == "integer":
        return _compile_integer(schema, where)
    if kind == "number":
        bound = next((key for key in _BOUNDS if key in schema), None)
        if bound is not None:
            raise ValueError(f"{where}: {bound!r} is supported on type 'integer' only, not on 'number'")
        return _Number(integer=False)
    if kind == "boolean":
        return _Literal([b"true", b"false"])
    if kind == "null":
        return _Literal([b"null"])
    raise ValueError(f"{where}: unknown type {kind!r}; supported types: {', '.join(_TYPE_KEYWORDS)}")


def _compile_object(schema: dict[str, Any], where: str) -> _Object:
    properties = schema.get("properties", {})
    required = schema.get("required", [])
    if not isinstance(properties, dict):
        raise ValueError(f"{where}: 'properties' should be an object of schemas, got {properties!r}")
    if not isinstance(required, list) or not all(isinstance(name, str) for name in required):
        raise ValueError(f"{where}: 'required' should be a list of property names, got {required!r}")
    missing = [name for name in required if name not in properties]
    if missing:
        raise ValueError(f"{where}: required property {missing[0]!r} has no schema in 'properties'")
    if not isinstance(schema.get("additionalProperties", False), bool):
        raise ValueError(
            f"{where}: 'additionalProperties' may only be true or false (a schema for it is not supported)"
        )
    return _Object(
        [(name, _compile(sub, f"{where}.properties.{name}"), name in required) for name, sub in properties.items()]
    )


def _compile_integer(schema: dict[str, Any], where: str) -> Any:
    low, high = -math.inf, math.inf
    for key in _BOUNDS:
        if key not in schema:
            continue
        value = schema[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{where}: {key!r} should be a finite number, got {value!r}")
        if key == "minimum":
            low = max(low, math.ceil(value))
        elif key == "exclusiveMinimum":
            low = max(low, math.floor(value) + 1)
        elif key == "maximum":
            high = min(high, math.floor(value))
        else:
            high = min(high, math.ceil(value) - 1)
    if low > high:
        bounds = {k: schema[k] for k in _BOUNDS if k in schema}
        raise ValueError(f"{where}: no integer lies within the bounds {bounds}")
    return _Number(integer=True) if (low, high) == (-math.inf, math.inf) else _Integer(low, high)


def _compile_union(schema: dict[str, Any], key: str, where: str) -> Any:
    others = [k for k in schema if k != key and k not in _ANNOTATIONS]
    if others:
        raise ValueError(f"{where}: {key!r} cannot be combined with {others[0]!r}; put it inside each alternative")
    alternatives = schema[key]
    if not isinstance(alternatives, list) or not alternatives:
        raise ValueError(f"{where}: {key!r} should be a non-empty list of schemas, got {alternatives!r}")
    nodes = [_compile(sub, f"{where}.{key}[{i}]") for i, sub in enumerate(alternatives)]
    if key == "oneOf":  # exactly one may match: safe when the first byte already tells them apart
        seen: set[int] = set()
        for i, node in enumerate(nodes):
            firsts = {b for frame in node.starts() for b in range(256) if frame[0].step(frame, b)}
            if firsts & seen:
                raise ValueError(
                    f"{where}.oneOf[{i}] may match the same values as an earlier alternative, which oneOf forbids; "
                    "use anyOf, or alternatives of different types"
                )
            seen |= firsts
    return nodes[0] if len(nodes) == 1 else _AnyOf(nodes)


def _compile_enum(schema: dict[str, Any], where: str) -> _Literal:
    if "enum" in schema and "const" in schema:
        raise ValueError(f"{where}: give either 'enum' or 'const', not both")
    values = schema["enum"] if "enum" in schema else [schema["const"]]
    if not isinstance(values, list) or not values:
        raise ValueError(f"{where}: 'enum' should be a non-empty list, got {values!r}")
    others = [k for k in schema if k not in ("enum", "const", "type") and k not in _ANNOTATIONS]
    if others:
        raise ValueError(f"{where}: 'enum'/'const' cannot be combined with {others[0]!r}")
    kinds = schema.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else kinds
        values = [v for v in values if any(_is_type(v, k) for k in kinds)]
        if not values:
            raise ValueError(f"{where}: no value of 'enum'/'const' has type {schema['type']!r}")
    try:
        return _Literal([spelling for v in values for spelling in _spellings(v)])
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: 'enum'/'const' values should be JSON values: {e}") from e


def _merge_all_of(schema: dict[str, Any], where: str) -> dict[str, Any]:
    """allOf with one schema (how pydantic wraps a `$ref` with siblings): that schema and the siblings."""
    parts = schema["allOf"]
    if not isinstance(parts, list) or len(parts) != 1 or not isinstance(parts[0], dict):
        raise ValueError(f"{where}: 'allOf' is supported with a single schema only, got {parts!r}")
    rest = {k: v for k, v in schema.items() if k != "allOf"}
    clash = [k for k in rest if k in parts[0] and k not in _ANNOTATIONS and parts[0][k] != rest[k]]
    if clash:
        raise ValueError(f"{where}: 'allOf' and its siblings disagree on {clash[0]!r}")
    return {**parts[0], **rest}


def _implied_type(schema: dict[str, Any]) -> str | None:
    """The type a schema without 'type' is written for, judging by its keywords (None: any value)."""
    return next((kind for kind, keywords in _TYPE_KEYWORDS.items() if any(k in schema for k in keywords)), None)


def _any_value() -> _AnyOf:
    """Any JSON value, written as a scalar: always valid where the schema allows anything."""
    return _AnyOf([_String(0, None), _Number(integer=False), _Literal([b"true", b"false", b"null"])])


def _size(schema: dict[str, Any], key: str, where: str) -> int | None:
    value = schema.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ValueError(f"{where}: {key!r} should be a non-negative integer, got {value!r}")
    return value


def _check_range(low: int | None, high: int | None, low_key: str, high_key: str, where: str) -> None:
    if low is not None and high is not None and low > high:
        raise ValueError(f"{where}: {low_key}={low} is larger than {high_key}={high}")


def _is_type(value: Any, kind: str) -> bool:
    """Whether a JSON value has a JSON-schema type (1.0 is an integer, True is not)."""
    if kind in ("integer", "number"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        return kind == "number" or isinstance(value, int) or value.is_integer()
    python = {"string": str, "boolean": bool, "null": type(None), "object": dict, "array": list}.get(kind)
    return python is not None and isinstance(value, python)


def _spellings(value: Any, suffix: bytes = b"") -> list[bytes]:
    """Compact JSON of `value` + `suffix`: with non-ASCII escaped and, where it differs, as raw UTF-8."""
    escaped = json.dumps(value, separators=(",", ":"), allow_nan=False).encode() + suffix
    try:
        raw = json.dumps(value, separators=(",", ":"), allow_nan=False, ensure_ascii=False).encode() + suffix
    except UnicodeEncodeError:  # a lone surrogate: only its escape is valid UTF-8
        return [escaped]
    return [escaped] if raw == escaped else [escaped, raw]


def _inline_refs(schema: Any, root: dict[str, Any], seen: tuple[str, ...]) -> Any:
    """`schema` with every local `$ref` replaced by what it points to, and `$defs`/`definitions` dropped."""
    if not isinstance(schema, dict):
        return schema
    if "$ref" in schema:
        ref = schema["$ref"]
        if ref in seen:
            raise ValueError(f"recursive schemas are not supported: {ref!r} refers back to itself")
        siblings = {k: v for k, v in schema.items() if k != "$ref"}
        return _inline_refs({**_pointer(root, ref), **siblings}, root, (*seen, ref))
    out = {}
    for key, value in schema.items():
        if key in ("$defs", "definitions"):
            continue
        if key == "properties" and isinstance(value, dict):
            value = {name: _inline_refs(sub, root, seen) for name, sub in value.items()}
        elif key in ("items", "additionalProperties"):
            value = _inline_refs(value, root, seen)
        elif key in ("anyOf", "oneOf", "allOf") and isinstance(value, list):
            value = [_inline_refs(sub, root, seen) for sub in value]
        out[key] = value
    return out


def _pointer(root: dict[str, Any], ref: Any) -> dict[str, Any]:
    """The schema a local reference ("#/$defs/Name") points to."""
    if not isinstance(ref, str) or not ref.startswith("#"):
        raise ValueError(f"$ref {ref!r} is not supported: only references within the schema ('#/$defs/Name') are")
    node: Any = root
    for part in ref[1:].split("/")[1:]:
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            raise ValueError(f"$ref {ref!r} points to nothing in the schema")
    if not isinstance(node, dict):
        raise ValueError(f"$ref {ref!r} points to {node!r}, not a schema")
    return node


# ---------------------------------------------------------------------------------------------------------------
# The vocabulary and the automaton.


class _Vocabulary:
    """A tokenizer's vocabulary as byte tries, and which tokens are plain text inside a JSON string."""

    def __init__(self, token_bytes: list[bytes | None]) -> None:
        self.token_bytes = token_bytes
        self.size = len(token_bytes)
        self.single = [False] * 256  # bytes that are a token by themselves
        self.trie: dict = {}  # every token
        self.escape_trie: dict = {}  # the tokens that are not plain string text (quotes, escapes, part characters)
        plain_ids, plain_chars = [], []
        for token_id, data in enumerate(token_bytes):
            if not data:
                continue
            if len(data) == 1:
                self.single[data[0]] = True
            _insert(self.trie, data, token_id)
            chars = _plain_chars(data)
            if chars:
                plain_ids.append(token_id)
                plain_chars.append(chars)
            else:
                _insert(self.escape_trie, data, token_id)
        self.plain_ids = torch.tensor(plain_ids, dtype=torch.long)
        self.plain_chars = torch.tensor(plain_chars, dtype=torch.long)
        self.max_plain_chars = max(plain_chars, default=0)
        self.max_token_bytes = max((len(data) for data in token_bytes if data), default=0)
        self.can_pad = any(self.single[b] for b in range(0x20, 0x7F) if b not in b'"\\')
        self._automata: OrderedDict[str, _Automaton] = OrderedDict()

    def automaton(self, schema: dict[str, Any]) -> _Automaton:
        """The automaton of a resolved schema, shared by the constraints that use it."""
        key = json.dumps(schema)
        automaton = self._automata.get(key)
        if automaton is None or automaton.size > _MAX_STATES:
            missing = [chr(b) for b in _STRUCTURAL if not self.single[b]]
            if missing:
                raise ValueError(
                    f"the tokenizer has no single-byte token for {''.join(missing)!r}; constrained decoding needs "
                    f"one for each of {_STRUCTURAL.decode()!r}"
                )
            automaton = self._automata[key] = _Automaton(_compile(schema, "schema"), self)
        self._automata.move_to_end(key)
        while len(self._automata) > 32:
            self._automata.popitem(last=False)
        return automaton


class _Automaton:
    """The decoding states of one schema over one vocabulary, built as they are reached.

    A state is a frozenset of stacks (tuples of frames, innermost last); the empty stack is a finished document.
    """

    def __init__(self, root: Any, vocabulary: _Vocabulary) -> None:
        self.vocabulary = vocabulary
        self.can_pad = vocabulary.can_pad
        self._states: list[frozenset[tuple]] = []
        self._ids: dict[frozenset[tuple], int] = {}
        self.rows: list[dict[int, int]] = []  # state -> byte -> next state (-1: not allowed)
        self.costs: list[int] = []  # state -> fewest bytes that finish the document
        self._frame_costs: dict[tuple, int] = {}
        self._value_costs: dict[int, int] = {}
        self._accepting: dict[int, bool] = {}
        self._walks: dict[tuple[int, bool], tuple[torch.Tensor, torch.Tensor]] = {}
        self._token_costs: OrderedDict[int, torch.Tensor] = OrderedDict()
        self.start = self.intern(frozenset((frame,) for frame in root.starts()))
        self.end = self.intern(frozenset({()}))

    @property
    def size(self) -> int:
        return len(self._states)

    def intern(self, state: frozenset[tuple]) -> int:
        """The id of a state, made on first sight."""
        sid = self._ids.get(state)
        if sid is None:
            sid = self._ids[state] = len(self._states)
            self._states.append(state)
            self.rows.append({})
            self.costs.append(min(self.stack_cost(stack) for stack in state))
        return sid

    def step(self, sid: int, byte: int) -> int:
        """The state after reading `byte` in state `sid` (-1 when the byte is not allowed there)."""
        following = self.rows[sid].get(byte)
        if following is None:
            out: set[tuple] = set()
            for stack in self._states[sid]:
                _step_stack(stack, byte, out)
            following = self.rows[sid][byte] = self.intern(frozenset(out)) if out else -1
        return following

    def accepting(self, sid: int) -> bool:
        """Whether the document may end in this state."""
        found = self._accepting.get(sid)
        if found is None:
            found = self._accepting[sid] = any(
                not stack or (len(stack) == 1 and stack[0][0].complete(stack[0])) for stack in self._states[sid]
            )
        return found

    def stack_cost(self, stack: tuple) -> int:
        return min(INF, sum(self.frame_cost(frame) for frame in stack))

    def frame_cost(self, frame: tuple) -> int:
        found = self._frame_costs.get(frame)
        if found is None:
            found = self._frame_costs[frame] = min(INF, frame[0].cost(frame, self))
        return found

    def value_cost(self, node: Any) -> int:
        """Fewest bytes of a whole value of `node`."""
        found = self._value_costs.get(id(node))
        if found is None:
            found = self._value_costs[id(node)] = min(self.frame_cost(frame) for frame in node.starts())
        return found

    def has(self, low: int, high: int) -> bool:
        """Whether some byte in [low, high] is a token by itself."""
        return any(self.vocabulary.single[low : high + 1])

    def spells(self, data: bytes) -> bool:
        """Whether `data` can be written one single-byte token at a time."""
        return all(self.vocabulary.single[b] for b in data)

    def token_costs(self, sid: int) -> torch.Tensor:
        """(tokenizer vocab,) int32: bytes left to finish the document after each token (INF: not allowed)."""
        costs = self._token_costs.get(sid)
        if costs is None:
            costs = self._token_costs[sid] = self._compute_token_costs(sid)
        self._token_costs.move_to_end(sid)
        while len(self._token_costs) > 32:
            self._token_costs.popitem(last=False)
        return costs

    def _compute_token_costs(self, sid: int) -> torch.Tensor:
        state = self._states[sid]
        # stacks inside the text of a string: plain-text tokens in one go, the rest by walking their own trie
        in_text = frozenset(self._relaxed(s) for s in state if _in_text(s))
        elsewhere = frozenset(s for s in state if not _in_text(s))
        costs = torch.full((self.vocabulary.size,), INF, dtype=torch.int32)
        if elsewhere:
            costs.scatter_reduce_(0, *self._walk(self.intern(elsewhere), escapes_only=False), reduce="amin")
        if in_text:
            costs.scatter_reduce_(0, *self._walk(self.intern(in_text), escapes_only=True), reduce="amin")
            for stack in in_text:
                costs.scatter_reduce_(0, *self._plain_text_costs(stack), reduce="amin")
        return costs

    def _relaxed(self, stack: tuple) -> tuple:
        """A stack inside a string's text with the string's count dropped where no next token can reach a length
        limit: the tokens allowed and the costs after them are the same, and the cached walk is reused."""
        node, n, _ = stack[-1]
        if n < node.min_len or (node.max_len is not None and n + self.vocabulary.max_token_bytes > node.max_len):
            return stack
        return (*stack[:-1], (node.free, 0, _BODY))

    def _walk(self, sid: int, escapes_only: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids, costs after them) of the tokens of a trie allowed in state `sid`."""
        found = self._walks.get((sid, escapes_only))
        if found is not None:
            return found
        ids: list[int] = []
        ends: list[int] = []
        rows, step = self.rows, self.step
        todo = [(self.vocabulary.escape_trie if escapes_only else self.vocabulary.trie, sid)]
        while todo:
            node, state = todo.pop()
            row = rows[state]
            for byte, child in node.items():
                if byte == _IDS:
                    continue
                following = row.get(byte)
                if following is None:
                    following = step(state, byte)
                if following < 0:
                    continue
                here = child.get(_IDS)
                if here is not None:
                    ids += here
                    ends += [following] * len(here)
                if len(child) > (here is not None):
                    todo.append((child, following))
        costs = self.costs
        found = (torch.tensor(ids, dtype=torch.long), torch.tensor([costs[e] for e in ends], dtype=torch.int32))
        if len(self._walks) > 4096:  # long strings with a length range make a new state per character
            self._walks.clear()
        self._walks[(sid, escapes_only)] = found
        return found

    def _plain_text_costs(self, stack: tuple) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids, costs after them) of the plain-text tokens, for a stack inside the text of a string."""
        node, n, _ = stack[-1]
        chars = self.vocabulary.plain_chars
        below = self.stack_cost(stack[:-1])
        top = max(n, min(node.cap, n + self.vocabulary.max_plain_chars))
        by_count = [min(INF, below + self.frame_cost((node, count, _BODY))) for count in range(n, top + 1)]
        # index_select and masked_fill: advanced indexing is far slower on CPU
        costs = torch.tensor(by_count, dtype=torch.int32).index_select(0, torch.clamp(chars + n, max=top) - n)
        if node.max_len is not None:
            costs = costs.masked_fill(chars > node.max_len - n, INF)
        return self.vocabulary.plain_ids, costs


def _step_stack(stack: tuple, byte: int, out: set[tuple]) -> None:
    """Adds to `out` the stacks that `stack` becomes on reading `byte`."""
    if not stack:
        return
    top, rest = stack[-1], stack[:-1]
    for outcome in top[0].step(top, byte):
        kind = outcome[0]
        if kind == _STAY:
            out.add((*rest, outcome[1]))
        elif kind == _PUSH:
            out.update((*rest, outcome[1], start) for start in outcome[2].starts())
        elif kind == _POP:
            out.add(rest)
        else:
            _step_stack(rest, byte, out)


def _in_text(stack: tuple) -> bool:
    """Whether a stack is inside the text of a string (not in an escape or a character)."""
    return bool(stack) and isinstance(stack[-1][0], _String) and stack[-1][2] == _BODY


def _insert(trie: dict, data: bytes, token_id: int) -> None:
    node = trie
    for byte in data:
        child = node.get(byte)
        if child is None:
            child = node[byte] = {}
        node = child
    node.setdefault(_IDS, []).append(token_id)


def _plain_chars(data: bytes) -> int:
    """Characters of a token that is plain text inside a JSON string (complete UTF-8, no quote, backslash or
    control character); 0 for any other token."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return 0
    return len(text) if all(c >= " " and c not in '"\\' for c in text) else 0


_VOCABULARIES: weakref.WeakKeyDictionary[Tokenizer, _Vocabulary] = weakref.WeakKeyDictionary()


def _vocabulary(tokenizer: Tokenizer) -> _Vocabulary:
    """The tries of a tokenizer, built once per tokenizer object."""
    vocabulary = _VOCABULARIES.get(tokenizer)
    if vocabulary is None:
        vocabulary = _VOCABULARIES[tokenizer] = _Vocabulary(tokenizer.token_bytes())
    return vocabulary
