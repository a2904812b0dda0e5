"""An `llm` plugin: every model of the local litllm registry, as `litllm/<name>`.

    llm -m litllm/tiny "Name a colour" -o temperature 0 -o max_tokens 20

torch is imported on the first prompt, not when `llm` loads its plugins, so `llm --help` stays fast.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Optional

import llm
from pydantic import Field, create_model

from litllm.llm_api import chat_messages, load_llm, next_piece, option_fields, sampling_kwargs
from litllm.local_models import list_models, resolve

PREFIX = "litllm/"


@llm.hookimpl
def register_models(register) -> None:
    """Register each model of the local registry (downloaded and registered ones)."""
    for entry in list_models():
        register(LitllmModel(entry.name))


class LitllmModel(llm.Model):
    """A litllm checkpoint, chatted with in its own chat format; loaded once per process on first use."""

    can_stream = True
    supports_schema = True

    # litllm's generation options, each unset (None) unless given; litllm checks their values
    Options = create_model(
        "Options",
        __base__=llm.Options,
        **{name: (Optional[kind], Field(None, description=text)) for name, (kind, text) in option_fields().items()},
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.model_id = PREFIX + name

    def execute(self, prompt, stream: bool, response, conversation) -> Iterator[str]:
        """Generate the reply to `prompt` after the conversation's earlier turns, and record token usage."""
        messages = chat_history(prompt, response, conversation)
        model, lock = load_llm(resolve(self.name))
        options = sampling_kwargs(prompt.options.model_dump())
        pieces = model.chat(messages, stream=True, schema=prompt.schema or None, **options)
        try:
            text = iter(lambda: next_piece(pieces, lock), None)
            yield from text if stream else ["".join(text)]
        finally:
            pieces.close()  # stops the generation when llm stops reading early; a no-op once it is finished
        response.set_usage(input=pieces.prompt_tokens, output=pieces.completion_tokens)
        response.response_json = {"finish_reason": pieces.finish_reason, "messages": messages}


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
