"""An `llm` plugin: every model of the local litllm registry, as `litllm/<name>`, to prompt and to embed with.

    llm -m litllm/tiny "Name a colour" -o temperature 0 -o max_tokens 20
    llm embed -m litllm/tiny -c "a sentence"

torch is imported on the first prompt, not when `llm` loads its plugins, so `llm --help` stays fast.
"""

from __future__ import annotations

import json
import typing
from collections.abc import AsyncIterator, Iterable, Iterator
from threading import Lock
from typing import TYPE_CHECKING, Optional

import llm
from pydantic import Field, create_model, model_validator

from litllm.embeddings import EmbeddingModel
from litllm.llm_api import chat_messages, load_llm, next_piece, on_compute_thread, option_fields, sampling_kwargs
from litllm.local_models import list_models, resolve

if TYPE_CHECKING:
    from litllm.inference.engine import TextStream

PREFIX = "litllm/"


@llm.hookimpl
def register_models(register) -> None:
    """Register each model of the local registry (downloaded and registered ones)."""
    for entry in list_models():
        register(LitllmModel(entry.name), LitllmAsyncModel(entry.name))


@llm.hookimpl
def register_embedding_models(register) -> None:
    """Register each model of the local registry as an embedding model too."""
    for entry in list_models():
        register(LitllmEmbeddingModel(entry.name))


class JSONOptions(llm.Options):
    """`llm -o NAME VALUE` gives text: an option that takes a mapping or a list (logit_bias, stop) reads it as JSON."""

    @model_validator(mode="before")
    @classmethod
    def _json_text(cls, values: object) -> object:
        if not isinstance(values, dict):
            return values
        structured = {
            name
            for name, field in cls.model_fields.items()
            if any(
                typing.get_origin(kind) in (dict, list)
                for kind in (field.annotation, *typing.get_args(field.annotation))
            )
        }
        parsed = {}
        for name, value in values.items():
            if name in structured and isinstance(value, str):
                try:
                    value = json.loads(value)
                except json.JSONDecodeError:
                    raise ValueError(f'option {name} takes JSON (e.g. {{"50256": -100}}), got {value!r}') from None
            parsed[name] = value
        return parsed


class Litllm:
    """What the sync and async models share: the options, the chat sent, and the usage recorded."""

    can_stream = True
    supports_schema = True

    # litllm's generation options, each unset (None) unless given; litllm checks their values
    Options = create_model(
        "Options",
        __base__=JSONOptions,
        **{name: (Optional[kind], Field(None, description=text)) for name, (kind, text) in option_fields().items()},
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.model_id = PREFIX + name

    def start(self, prompt, response, conversation) -> tuple[TextStream, Lock, list[dict[str, str]]]:
        """The stream of the reply to `prompt` after the conversation's earlier turns, its lock, and the chat."""
        messages = chat_history(prompt, response, conversation)
        model, lock = load_llm(resolve(self.name))
        options = sampling_kwargs(prompt.options.model_dump())
        return model.chat(messages, stream=True, schema=prompt.schema or None, **options), lock, messages

    @staticmethod
    def record(response, pieces: TextStream, messages: list[dict[str, str]]) -> None:
        response.set_usage(input=pieces.prompt_tokens, output=pieces.completion_tokens)
        response.response_json = {"finish_reason": pieces.finish_reason, "messages": messages}


class LitllmModel(Litllm, llm.Model):
    """A litllm checkpoint, chatted with in its own chat format; loaded once per process on first use."""

    def execute(self, prompt, stream: bool, response, conversation) -> Iterator[str]:
        """Generate the reply, streamed or whole, and record token usage."""
        pieces, lock, messages = self.start(prompt, response, conversation)
        try:
            text = iter(lambda: next_piece(pieces, lock), None)
            yield from text if stream else ["".join(text)]
        finally:
            pieces.close()  # stops the generation when llm stops reading early; a no-op once it is finished
        self.record(response, pieces, messages)


class LitllmAsyncModel(Litllm, llm.AsyncModel):
    """The same checkpoint for `llm.get_async_model`: its torch work runs on litllm's one compute thread."""

    async def execute(self, prompt, stream: bool, response, conversation) -> AsyncIterator[str]:
        """Generate the reply, streamed or whole, and record token usage; the event loop stays free."""
        pieces, lock, messages = await on_compute_thread(self.start, prompt, response, conversation)
        try:
            chunks = []
            while (piece := await on_compute_thread(next_piece, pieces, lock)) is not None:
                if stream:
                    yield piece
                else:
                    chunks.append(piece)
            if not stream:
                yield "".join(chunks)
        finally:
            pieces.close()
        self.record(response, pieces, messages)


def chat_history(prompt, response, conversation) -> list[dict[str, str]]:
    """The chat messages to send: llm's own message chain where it keeps one (recent llm), else one rebuilt
    from the conversation's earlier responses."""
    chain = getattr(prompt, "messages", None)
    if chain is not None:
        from llm.parts import TextPart

        return [
            {"role": m.role, "content": "".join(p.text for p in m.parts if isinstance(p, TextPart))}
            for m in chain
            if m.role in ("system", "user", "assistant")
        ]
    earlier = [r for r in (conversation.responses if conversation else []) if r is not response]
    return chat_messages(prompt.prompt, prompt.system, [(r.prompt, r.text()) for r in earlier])


class LitllmEmbeddingModel(llm.EmbeddingModel):
    """A litllm checkpoint's embeddings: its final hidden states, mean-pooled over the text's tokens and
    L2-normalised (`litllm.embeddings`); loaded once per process on first use."""

    supports_text = True
    supports_binary = False
    batch_size = EmbeddingModel.batch_size

    def __init__(self, name: str) -> None:
        self.name = name
        self.model_id = PREFIX + name
        self._embedder: EmbeddingModel | None = None

    def embed_batch(self, items: Iterable[str], *, key: str | None = None) -> Iterator[list[float]]:
        """The vectors of `items`, embedded in one forward pass; `key` is unused: local models need none."""
        if self._embedder is None:
            self._embedder = EmbeddingModel(resolve(self.name), model_id=self.name)
        yield from self._embedder.embed_batch(items)
