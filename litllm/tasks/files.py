"""Tasks from JSON and JSONL files, without code.

Each row is either a conversation, `{"messages": [{"role": ..., "content": ...}, ...]}` (generative: the last
assistant message is the reference answer, compared after stripping whitespace), or a multiple-choice row,
`{"question": ..., "choices": [...], "answer": ...}` (categorical; `answer` is the index, the letter or the text of
the right choice). A `.json` file holds a list of rows, a `.jsonl` file one row a line. A bad row is refused when the
file is read, with the file, the line and the field named.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from litllm.tasks.base import LETTERS, Task, chose_right, multiple_choice

SUFFIXES = (".json", ".jsonl")


class TaskFileError(ValueError):
    """A task file that cannot be read: the message names the file, the line and the field."""


class FileTask(Task):
    """The rows of a JSON/JSONL task file, read once when the task is made."""

    def __init__(self, path: str | Path, start: int = 0, stop: int | None = None, step: int = 1) -> None:
        super().__init__(start, stop, step)
        self.path = Path(path)
        self.rows = read_rows(self.path)
        kinds = {"categorical" if "choices" in row else "generative" for row in self.rows}
        if len(kinds) > 1:
            raise TaskFileError(f"{self.path}: mixes conversations and multiple-choice rows; keep one kind a file")
        self._eval_type = kinds.pop() if kinds else "generative"

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def eval_type(self) -> str:
        return self._eval_type

    def num_examples(self) -> int:
        return len(self.rows)

    def get_example(self, index: int) -> dict[str, Any]:
        return self.rows[index]

    def evaluate(self, conversation: dict[str, Any], completion: str) -> bool:
        if self._eval_type == "categorical":
            return chose_right(conversation, completion)
        return completion.strip() == reference(conversation).strip()

    def reward(self, conversation: dict[str, Any], completion: str) -> float:
        return float(self.evaluate(conversation, completion))


def reference(conversation: dict[str, Any]) -> str:
    """The content of a conversation's last assistant message: the answer a generative row expects."""
    for message in reversed(conversation["messages"]):
        if message.get("role") == "assistant":
            return message["content"]
    return ""


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Every row of a task file, each checked and turned into a conversation."""
    if path.suffix not in SUFFIXES:
        raise TaskFileError(f"{path}: a task file is .json (a list of rows) or .jsonl (one row a line)")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TaskFileError(f"{path}: no such task file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise TaskFileError(f"{path}: cannot be read ({err})") from None
    if path.suffix == ".jsonl":
        numbered = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
        rows = [(n, _parse(path, n, line)) for n, line in numbered]
    else:
        data = _parse(path, 1, text)
        if not isinstance(data, list):
            raise TaskFileError(f"{path}: a .json task file holds a list of rows, got {type(data).__name__}")
        rows = [(n, row) for n, row in enumerate(data, 1)]
    where = "line" if path.suffix == ".jsonl" else "row"
    return [_conversation(row, f"{path}, {where} {n}") for n, row in rows]


def _parse(path: Path, line: int, text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        at = line if path.suffix == ".jsonl" else err.lineno
        raise TaskFileError(f"{path}, line {at}: not valid JSON ({err.msg})") from None


def _conversation(row: Any, where: str) -> dict[str, Any]:
    if not isinstance(row, dict):
        raise TaskFileError(f"{where}: a row is an object with 'messages' or 'question'/'choices'/'answer'")
    if "messages" in row:
        messages = row["messages"]
        if not isinstance(messages, list) or not messages:
            raise TaskFileError(f"{where}, field 'messages': must be a non-empty list of {{role, content}} objects")
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant"):
                raise TaskFileError(f"{where}, field 'messages[{i}].role': must be system, user or assistant")
            if not isinstance(m.get("content"), str):
                raise TaskFileError(f"{where}, field 'messages[{i}].content': must be a string")
        if messages[-1]["role"] != "assistant":
            raise TaskFileError(f"{where}, field 'messages': the last message must be the assistant's answer")
        return {"messages": messages}
    for field in ("question", "choices", "answer"):
        if field not in row:
            raise TaskFileError(f"{where}, field '{field}': missing (a row has 'messages', or question/choices/answer)")
    question, choices, answer = row["question"], row["choices"], row["answer"]
    if not isinstance(question, str) or not question.strip():
        raise TaskFileError(f"{where}, field 'question': must be a non-empty string")
    if (
        not isinstance(choices, list)
        or not 2 <= len(choices) <= len(LETTERS)
        or not all(isinstance(c, str) for c in choices)
    ):
        raise TaskFileError(f"{where}, field 'choices': must be a list of 2 to {len(LETTERS)} strings")
    index = _answer_index(answer, choices)
    if index is None:
        raise TaskFileError(
            f"{where}, field 'answer': {answer!r} is not a choice; give its index (0..{len(choices) - 1}), its "
            f"letter ({', '.join(LETTERS[: len(choices)])}) or its text"
        )
    return multiple_choice(question, choices, index)


def _answer_index(answer: Any, choices: list[str]) -> int | None:
    if isinstance(answer, int) and not isinstance(answer, bool):
        return answer if 0 <= answer < len(choices) else None
    if isinstance(answer, str):
        if answer in choices:
            return choices.index(answer)
        letter = answer.strip().upper()
        if len(letter) == 1 and letter in LETTERS[: len(choices)]:
            return LETTERS.index(letter)
    return None
