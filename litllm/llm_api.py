"""Prompt the models of the local registry by name, in the style of Simon Willison's `llm` library.

    model = litllm.get_model("tiny")
    response = model.prompt("Name a colour", temperature=0, max_tokens=20)
    print(response.text(), response.usage())

A `Response` is lazy: the model is loaded (once per process and checkpoint) and generation runs only when the
response is read. Stopping an iteration early cancels the generation; the text so far stays the response.
torch is imported on first generation, not by importing this module.
"""

from __future__ import annotations

import asyncio
import datetime
import inspect
import threading
import time
import typing
import uuid
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from litllm.attachments import TEXT_TYPES, Attachment, check_attachments, user_content
from litllm.errors import UnknownModelError
from litllm.inference.options import GenerationOptions, option_names
from litllm.local_models import (
    get_default_model,
    list_models,
    lookup,
    remove_alias,
    resolve,
    set_alias,
    set_default_model,
)

if TYPE_CHECKING:
    from litllm.api import LLM
    from litllm.inference.engine import TextStream

# the generation options a prompt takes (the schema is an argument of its own; one reply, no log-probabilities);
# `max_tokens`, llm's name, is accepted for max_new_tokens
SAMPLING_OPTIONS = tuple(name for name in option_names() if name not in ("schema", "num_samples", "logprobs"))
OPTION_ALIASES = {"max_tokens": "max_new_tokens"}


def option_fields() -> dict[str, tuple[Any, str]]:
    """Each prompt option by the name `llm` users give it: (its type, its help)."""
    hints = typing.get_type_hints(GenerationOptions)
    names = {alias: name for alias, name in OPTION_ALIASES.items()}
    names.update({name: name for name in SAMPLING_OPTIONS if name not in OPTION_ALIASES.values()})
    helps = {f.name: f.metadata.get("help", "") for f in fields(GenerationOptions)}
    return {alias: (hints[name], helps[name]) for alias, name in names.items()}


@dataclass(frozen=True)
class Usage:
    """Token counts of one response: `input` prompt tokens (history and chat format included), `output` generated."""

    input: int
    output: int
    details: dict[str, Any] | None = None
    """Counts beyond input and output, where a model has them (None for litllm's models)."""


@dataclass(frozen=True)
class Prompt:
    """What a response was asked for: the user's text, the system prompt, a schema and the sampling options."""

    prompt: str
    system: str | None = None
    schema: dict | type | str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    attachments: tuple[Attachment, ...] = ()


def sampling_kwargs(options: dict[str, Any]) -> dict[str, Any]:
    """`LLM.chat` keyword arguments for prompt options; None means unset, an unknown name is a TypeError."""
    out: dict[str, Any] = {}
    for key, value in options.items():
        name = OPTION_ALIASES.get(key, key)
        if name not in SAMPLING_OPTIONS:
            accepted = ", ".join(["max_tokens", *SAMPLING_OPTIONS])
            raise TypeError(f"unknown option {key!r}; accepted: {accepted}")
        if name in out:
            raise TypeError(f"option {name!r} is given twice (max_tokens and max_new_tokens are the same option)")
        if value is not None:
            out[name] = value
    return out


def chat_messages(prompt: str, system: str | None, turns: list[tuple[Any, str]]) -> list[dict[str, str]]:
    """Chat messages for `prompt` after earlier (prompt, reply text) turns; the latest system prompt leads. An
    earlier prompt's text attachments (litllm's or llm's) go into its message, as they did when it was sent."""
    system = system or next((p.system for p, _ in reversed(turns) if p.system), None)
    messages = [{"role": "system", "content": system}] if system else []
    for earlier, reply in turns:
        content = user_content(earlier.prompt, getattr(earlier, "attachments", None) or ())
        messages += [{"role": "user", "content": content}, {"role": "assistant", "content": reply}]
    return [*messages, {"role": "user", "content": prompt}]


# checkpoint directory -> its LLM, and a lock that lets one thread at a time run a decode step on it
_loaded: dict[Path, tuple[LLM, threading.Lock]] = {}
_loading = threading.Lock()


def load_llm(path: Path) -> tuple[LLM, threading.Lock]:
    """The `LLM` of a checkpoint directory and its step lock, loaded on first use and shared by the process."""
    key = Path(path).resolve()
    with _loading:
        if key not in _loaded:
            from litllm.api import LLM

            _loaded[key] = (LLM.load(key), threading.Lock())
        return _loaded[key]


# async responses run their torch work on this one thread: on asyncio's pool each piece could land on another
# thread, and every thread that runs torch gets its own team of OpenMP threads, which spin idle and take the cores
_compute = ThreadPoolExecutor(max_workers=1, thread_name_prefix="litllm-compute")
T = TypeVar("T")


async def on_compute_thread(fn: Callable[..., T], *args: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(_compute, fn, *args)


def next_piece(stream: Iterator[str], lock: threading.Lock) -> str | None:
    """The next text piece of `stream`, or None at its end."""
    with lock:
        return next(stream, None)


def schema_record(schema: dict | type | str | None) -> dict | str | None:
    """A schema as JSON can hold it: a pydantic class becomes its JSON schema."""
    if isinstance(schema, type) and hasattr(schema, "model_json_schema"):
        return schema.model_json_schema()
    return schema


class _Model:
    """A registry model: validates prompts now, loads its checkpoint when a response is first read."""

    supports_schema = True
    can_stream = True

    def __init__(self, model_id: str, path: Path) -> None:
        self.model_id = model_id
        self.path = path

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.model_id}>"

    @property
    def attachment_types(self) -> set[str]:
        """The attachment types a prompt may carry: text, whose content goes into the prompt (any text/* too)."""
        return set(TEXT_TYPES)

    def llm(self) -> LLM:
        """The loaded `LLM` (loaded on first call, then shared)."""
        return load_llm(self.path)[0]

    def conversation(self) -> Conversation:
        """A conversation: each prompt sees the earlier prompts and replies."""
        return Conversation(self)

    def prompt(
        self,
        text: str,
        system: str | None = None,
        schema: dict | type | str | None = None,
        attachments: list | None = None,
        key: str | None = None,
        **options: Any,
    ) -> Response | AsyncResponse:
        """A lazy response to `text`; options are generation options (temperature, max_tokens, seed, stop, regex, ...).
        `key` is accepted as `llm` models take it, and unused: local models need no API key."""
        return self._prompt(text, system, schema, attachments, options, None)

    def _prompt(
        self,
        text: str,
        system: str | None,
        schema: dict | type | str | None,
        attachments: list | None,
        options: dict[str, Any],
        conversation: Conversation | None,
    ) -> Response | AsyncResponse:
        if not isinstance(text, str):
            raise TypeError(f"the prompt must be a string, got {type(text).__name__}")
        attached = tuple(check_attachments(attachments, self.model_id))
        sampling_kwargs(options)
        history = list(conversation.responses) if conversation else []
        response_class = AsyncResponse if isinstance(self, AsyncModel) else Response
        response = response_class(self, Prompt(text, system, schema, dict(options), attached), history)
        if conversation:
            conversation.responses.append(response)
        return response


class Model(_Model):
    """A registry model whose `prompt()` returns a lazy `Response`."""


class AsyncModel(_Model):
    """A registry model whose `prompt()` returns an `AsyncResponse` to await or iterate with `async for`;
    generation runs in a worker thread."""


class Conversation:
    """Prompts that build on each other: the model sees every earlier prompt and reply of the conversation."""

    def __init__(self, model: _Model) -> None:
        self.model = model
        self.responses: list[Response | AsyncResponse] = []

    def prompt(
        self,
        text: str,
        system: str | None = None,
        schema: dict | type | str | None = None,
        attachments: list | None = None,
        key: str | None = None,
        **options: Any,
    ) -> Response | AsyncResponse:
        """The next turn: a lazy response (async for an `AsyncModel`) to `text` after the earlier turns."""
        return self.model._prompt(text, system, schema, attachments, options, self)


class _Response:
    """What sync and async responses share: the prompt, the text so far, usage and done callbacks."""

    def __init__(self, model: _Model, prompt: Prompt, history: list[_Response]) -> None:
        self.model = model
        self.prompt = prompt
        self.history = history
        self.chunks: list[str] = []
        self.messages: list[dict[str, str]] = []
        self.done = False
        self.finish_reason: str | None = None
        self._usage = Usage(0, 0)
        self._callbacks: list[Callable[[Any], None]] = []
        self._reading = False
        self._started: datetime.datetime | None = None
        self._id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        self._clock = self._duration_s = 0.0

    def __repr__(self) -> str:
        state = "done" if self.done else "pending"
        return f"<{type(self).__name__} {self.model.model_id} {state}: {self.prompt.prompt[:40]!r}>"

    def _claim(self) -> None:
        """Mark the response as being generated; a second reader while that runs would start it twice."""
        if self._reading:
            raise RuntimeError("this response is being read already; finish that before reading it again")
        self._reading = True

    def _start(self, turns: list[tuple[Prompt, str]]) -> tuple[TextStream, threading.Lock]:
        self._started = datetime.datetime.now(datetime.timezone.utc)
        self._clock = time.perf_counter()
        content = user_content(self.prompt.prompt, self.prompt.attachments)
        self.messages = chat_messages(content, self.prompt.system, turns)
        try:
            llm, lock = load_llm(self.model.path)
            options = sampling_kwargs(self.prompt.options)
            return llm.chat(self.messages, stream=True, schema=self.prompt.schema, **options), lock
        except BaseException:
            self._reading = False  # nothing started: reading again retries
            raise

    def _finish(self, stream: TextStream) -> list[Callable[[Any], Any]]:
        """Record the end of the generation; returns the done callbacks, for the caller to run in order."""
        if self.done:
            return []
        if stream.finish_reason is None:  # the reader stopped early
            stream.close()
        self.done = True
        self.finish_reason = stream.finish_reason or "cancelled"
        self._usage = Usage(stream.prompt_tokens, stream.completion_tokens)
        self._duration_s = time.perf_counter() - self._clock
        callbacks, self._callbacks = self._callbacks, []
        return callbacks

    def _datetime_utc(self) -> str:
        return self._started.isoformat() if self._started else ""

    def _record(self) -> dict[str, Any]:
        """litllm's record of the exchange, with the fields of an OpenAI chat completion beside it (as `llm`'s)."""
        text, used = "".join(self.chunks), self._usage
        return {
            "id": self._id,
            "object": "chat.completion",
            "created": int(self._started.timestamp()) if self._started else None,
            "content": text,
            "model": self.model.model_id,
            "prompt": self.prompt.prompt,
            "system": self.prompt.system,
            "schema": schema_record(self.prompt.schema),
            "options": self.prompt.options,
            "messages": self.messages,
            "response": text,
            "finish_reason": self.finish_reason,
            "usage": {
                "input": used.input,
                "output": used.output,
                "prompt_tokens": used.input,
                "completion_tokens": used.output,
                "total_tokens": used.input + used.output,
            },
            "datetime_utc": self._datetime_utc() or None,
            "duration_ms": round(self._duration_s * 1000),
        }


class Response(_Response):
    """A lazy response: `text()`, iteration (streams pieces), `usage()` and `json()` run the generation once."""

    def __iter__(self) -> Iterator[str]:
        if self.done:
            yield from self.chunks
            return
        turns = [(r.prompt, r.text()) for r in self.history]
        self._claim()
        stream, lock = self._start(turns)
        try:
            while (piece := next_piece(stream, lock)) is not None:
                self.chunks.append(piece)
                yield piece
        finally:
            for callback in self._finish(stream):
                callback(self)

    def __str__(self) -> str:
        return self.text()

    def on_done(self, callback: Callable[[Response], Any]) -> None:
        """Call `callback(response)` once the response is complete (now, if it already is)."""
        if self.done:
            callback(self)
        else:
            self._callbacks.append(callback)

    def duration_ms(self) -> int:
        """How long the generation took, in milliseconds (generating it if that has not happened yet)."""
        self.text()
        return round(self._duration_s * 1000)

    def datetime_utc(self) -> str:
        """When the generation started, as an ISO 8601 UTC time (generating it if that has not happened yet)."""
        self.text()
        return self._datetime_utc()

    def text(self) -> str:
        """The whole text of the response (generating it if that has not happened yet)."""
        for _ in self:
            pass
        return "".join(self.chunks)

    def usage(self) -> Usage:
        """Prompt and generated token counts."""
        self.text()
        return self._usage

    def json(self) -> dict[str, Any]:
        """The prompt and the response as a JSON-ready dict (model, prompt, options, messages, text, usage, ...)."""
        self.text()
        return self._record()


class AsyncResponse(_Response):
    """A lazy response to await (`await r.text()`) or stream (`async for piece in r`); the event loop stays free."""

    async def __aiter__(self) -> AsyncIterator[str]:
        if self.done:
            for piece in self.chunks:
                yield piece
            return
        turns = [(r.prompt, await r.text()) for r in self.history]
        self._claim()
        stream, lock = await on_compute_thread(self._start, turns)
        try:
            while (piece := await on_compute_thread(next_piece, stream, lock)) is not None:
                self.chunks.append(piece)
                yield piece
        finally:
            for callback in self._finish(stream):
                await _call(callback, self)

    def __await__(self) -> Generator[Any, None, AsyncResponse]:
        """`response = await model.prompt(...)`: the response, complete."""

        async def complete() -> AsyncResponse:
            await self.text()
            return self

        return complete().__await__()

    async def on_done(self, callback: Callable[[AsyncResponse], Any]) -> None:
        """Call `callback(response)` (a function or an `async def`) once the response is complete; at once, and
        awaited, if it already is."""
        if self.done:
            await _call(callback, self)
        else:
            self._callbacks.append(callback)

    async def duration_ms(self) -> int:
        """How long the generation took, in milliseconds."""
        await self.text()
        return round(self._duration_s * 1000)

    async def datetime_utc(self) -> str:
        """When the generation started, as an ISO 8601 UTC time."""
        await self.text()
        return self._datetime_utc()

    async def text(self) -> str:
        """The whole text of the response."""
        async for _ in self:
            pass
        return "".join(self.chunks)

    async def usage(self) -> Usage:
        """Prompt and generated token counts."""
        await self.text()
        return self._usage

    async def json(self) -> dict[str, Any]:
        """The prompt and the response as a JSON-ready dict, as `Response.json`."""
        await self.text()
        return self._record()


def find(name_or_alias: str | None) -> tuple[str, Path]:
    """(model id, checkpoint directory) of a registry name or alias; None means the default model."""
    if name_or_alias is None:
        name_or_alias = get_default_model()
        if name_or_alias is None:
            names = ", ".join(e.name for e in list_models()) or "none yet"
            raise UnknownModelError(f"no model named and no default model set (known: {names})")
    entry = lookup(name_or_alias)
    return entry.name, resolve(name_or_alias)


def get_model(name_or_alias: str | None = None) -> Model:
    """The registry model `name_or_alias` (None: the default model); its weights load when first prompted."""
    return Model(*find(name_or_alias))


def get_async_model(name_or_alias: str | None = None) -> AsyncModel:
    """As `get_model`, with `prompt()` returning an `AsyncResponse`."""
    return AsyncModel(*find(name_or_alias))


def get_models() -> list[Model]:
    """Every model of the local registry."""
    return [Model(e.name, e.path) for e in list_models()]


async def _call(callback: Callable[[Any], Any], response: AsyncResponse) -> None:
    """Run a done callback, awaiting it when it is an `async def`."""
    result = callback(response)
    if inspect.isawaitable(result):
        await result


def get_async_models() -> list[AsyncModel]:
    """Every model of the local registry, as async models."""
    return [AsyncModel(e.name, e.path) for e in list_models()]


__all__ = [
    "AsyncModel",
    "AsyncResponse",
    "Attachment",
    "Conversation",
    "Model",
    "Prompt",
    "Response",
    "Usage",
    "get_async_model",
    "get_async_models",
    "get_default_model",
    "get_model",
    "get_models",
    "remove_alias",
    "set_alias",
    "set_default_model",
]
