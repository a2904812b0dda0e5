"""The Task framework (nanochat's interface) and the built-in evaluation tasks.

`Task`, `TaskMixture`, `TaskSequence` and task files need no torch; `evaluate_task` loads it on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from litllm.tasks.base import MultipleChoice, Task, TaskMixture, TaskSequence, TaskView, multiple_choice
from litllm.tasks.files import FileTask, TaskFileError
from litllm.tasks.registry import UnknownTaskError, get_task, list_tasks, register_task

if TYPE_CHECKING:
    from litllm.tasks.evaluate import evaluate_task

__all__ = [
    "FileTask",
    "MultipleChoice",
    "Task",
    "TaskFileError",
    "TaskMixture",
    "TaskSequence",
    "TaskView",
    "UnknownTaskError",
    "evaluate_task",
    "get_task",
    "list_tasks",
    "multiple_choice",
    "register_task",
]


def __getattr__(name: str) -> Any:
    if name == "evaluate_task":
        from litllm.tasks.evaluate import evaluate_task

        return evaluate_task
    raise AttributeError(f"module 'litllm.tasks' has no attribute {name!r}")
