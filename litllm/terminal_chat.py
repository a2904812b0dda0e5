"""`litllm chat`: an interactive conversation in the terminal, with streamed replies and history."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any, TextIO

from litllm.api import LLM

HELP = 'End a line with \\ to continue it, or wrap a block in """. /reset forgets the conversation, /exit leaves.'


def read_messages(stream: TextIO, prompt: Any) -> Iterator[str]:
    """User messages from `stream`: a line, lines joined by a trailing backslash, or a block between triple quotes."""
    while True:
        prompt(">> ")
        line = stream.readline()
        if not line:
            return
        line = line.rstrip("\n")
        if line.strip() == '"""':
            block = []
            for more in iter(stream.readline, ""):
                if more.rstrip("\n").strip() == '"""':
                    break
                block.append(more.rstrip("\n"))
            yield "\n".join(block)
            continue
        parts = []
        while line.endswith("\\"):
            parts.append(line[:-1])
            prompt(".. ")
            line = stream.readline().rstrip("\n")
        parts.append(line)
        yield "\n".join(parts)


def run_chat(llm: LLM, system: str | None, options: dict[str, Any], stdin: TextIO | None = None) -> None:
    """Read messages until /exit or end of input; stream each reply as it is generated."""
    stdin = stdin or sys.stdin
    interactive = stdin.isatty()

    def prompt(text: str) -> None:
        if interactive:
            print(text, end="", flush=True)

    if interactive:
        print(f"Chatting with {llm.checkpoint_dir or llm.config.name} ({llm.chat_format.description}). {HELP}")
    conversation = llm.conversation(system)
    for message in read_messages(stdin, prompt):
        command = message.strip()
        if command in ("/exit", "/quit"):
            return
        if command == "/reset":
            conversation.reset()
            print("(conversation reset)", flush=True)
            continue
        if not command:
            continue
        reply = conversation.send(message, stream=True, **options)
        try:
            for piece in reply:
                print(piece, end="", flush=True)
        except KeyboardInterrupt:  # Ctrl-C stops this reply, not the chat
            reply.close()
        print(flush=True)
