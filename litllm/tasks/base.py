"""nanochat's Task interface: a list of conversations a model is scored on, or trained on.

A task answers `num_examples()` and `get_example(i)` (a conversation `{"messages": [...]}`), says how it is scored
(`eval_type`: "categorical", a choice among lettered answers, or "generative", free text checked by `evaluate`),
and may give a `reward` for reinforcement learning. `Task(start, stop, step)` and `task[a:b:c]` are views of the
same examples, never copies; `TaskMixture` shuffles several tasks together once with a fixed seed and
`TaskSequence` puts them one after another, and both are Tasks themselves.

A categorical example also carries `letters` (the answer labels, "A", "B", ...), `choices` (each answer's text),
`answer` (the index of the right one) and `context` (the question as plain text, "Question: ...\\nAnswer:"),
so that a base model can be scored by the loss of each continuation and a chat model by its letter.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from typing import Any

EVAL_TYPES = ("categorical", "generative")
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


class Task:
    """A sliceable list of conversations with a way to score a completion of each.

    Subclasses define `get_example(index)` and `evaluate(conversation, completion)`; `num_examples()` (by default,
    how many indices `get_example` answers without IndexError), `eval_type` (default "generative") and `reward`
    (for `litllm rl`) when they have them.
    """

    def __init__(self, start: int = 0, stop: int | None = None, step: int = 1) -> None:
        check_slice(start, stop, step)
        self.start, self.stop, self.step = start, stop, step

    @property
    def eval_type(self) -> str:
        return "generative"

    def num_examples(self) -> int:
        """How many examples the whole task has (before start/stop/step): by default found by asking get_example."""
        cached = self.__dict__.get("_probed_size")
        if cached is None:
            cached = self.__dict__["_probed_size"] = _count_examples(self.get_example)
        return cached

    def get_example(self, index: int) -> dict[str, Any]:
        """The conversation at `index` of the whole task: {"messages": [{"role": ..., "content": ...}, ...]}."""
        raise NotImplementedError(f"{type(self).__name__} must define get_example(index)")

    def evaluate(self, conversation: dict[str, Any], completion: str) -> bool:
        """Whether `completion` answers `conversation` correctly."""
        raise NotImplementedError(f"{type(self).__name__} must define evaluate(conversation, completion)")

    def reward(self, conversation: dict[str, Any], completion: str) -> float:
        """The reward of `completion` for reinforcement learning (tasks that have one override this)."""
        raise NotImplementedError(f"{type(self).__name__} has no reward(conversation, completion)")

    @property
    def name(self) -> str:
        return type(self).__name__

    # --- the sliced view -------------------------------------------------------------------------------------
    def indices(self) -> range:
        """The indices of the whole task this view covers, in order."""
        total = self.num_examples()
        stop = total if self.stop is None else min(self.stop, total)
        return range(min(self.start, stop), stop, self.step)

    def __len__(self) -> int:
        return len(self.indices())

    def __getitem__(self, key: int | slice) -> Any:
        if isinstance(key, slice):
            if key.step == 0:
                raise ValueError("slice step cannot be 0: use a step >= 1 (or a negative one to go backwards)")
            return TaskView(self.root(), self.indices()[key])
        task, index = self.locate(key)
        return task.get_example(index)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for i in range(len(self)):
            yield self[i]

    def root(self) -> Task:
        """The task whose get_example the indices of this one refer to."""
        return self

    def locate(self, index: int) -> tuple[Task, int]:
        """The task that owns example `index` of this view and that example's index in it (for get_example,
        evaluate and reward): a mixture answers with the task the example came from."""
        if isinstance(index, bool) or not isinstance(index, int):
            raise TypeError(f"a task is indexed by an int or a slice, got {index!r}")
        positions = self.indices()
        try:
            position = positions[index]
        except IndexError:
            raise IndexError(f"example {index} is out of range: {self.name} has {len(positions)}") from None
        return self.root().resolve(position)

    def resolve(self, position: int) -> tuple[Task, int]:
        """The task and index of get_example that example `position` of the whole task is."""
        return self, position

    def has_reward(self) -> bool:
        """Whether this task (every task of a mixture) defines reward()."""
        return type(self).reward is not Task.reward

    def __repr__(self) -> str:
        return f"{self.name}[{len(self)} examples, {self.eval_type}]"


class TaskView(Task):
    """`task[a:b:c]`: some examples of a task, by index, without copying them."""

    def __init__(self, task: Task, positions: range) -> None:
        super().__init__()
        self.task, self.positions = task, positions

    @property
    def eval_type(self) -> str:
        return self.task.eval_type

    @property
    def name(self) -> str:
        return self.task.name

    def num_examples(self) -> int:
        return self.task.num_examples()

    def indices(self) -> range:
        return self.positions

    def root(self) -> Task:
        return self.task

    def get_example(self, index: int) -> dict[str, Any]:
        return self.task.get_example(index)

    def evaluate(self, conversation: dict[str, Any], completion: str) -> bool:
        return self.task.evaluate(conversation, completion)

    def reward(self, conversation: dict[str, Any], completion: str) -> float:
        return self.task.reward(conversation, completion)

    def has_reward(self) -> bool:
        return self.task.has_reward()

    def __getattr__(self, name: str) -> Any:  # a task's own attributes (its letters, its split, ...)
        if name == "task":
            raise AttributeError(name)
        return getattr(self.task, name)


class Composite(Task):
    """Several tasks behind one index: `order` lists (task number, index in that task) for every example."""

    def __init__(self, tasks: Sequence[Task], start: int = 0, stop: int | None = None, step: int = 1) -> None:
        super().__init__(start, stop, step)
        tasks = list(tasks)
        if not tasks or not all(isinstance(t, Task) for t in tasks):
            raise TypeError(f"{type(self).__name__} takes a non-empty list of Tasks, got {tasks!r}")
        self.tasks = tasks
        self.order: list[tuple[int, int]] = [(n, i) for n, t in enumerate(tasks) for i in range(len(t))]

    @property
    def eval_type(self) -> str:
        kinds = {t.eval_type for t in self.tasks}
        return kinds.pop() if len(kinds) == 1 else "mixed"

    @property
    def name(self) -> str:
        return f"{type(self).__name__}({', '.join(t.name for t in self.tasks)})"

    def num_examples(self) -> int:
        return len(self.order)

    def get_example(self, index: int) -> dict[str, Any]:
        task, i = self.resolve(index)
        return task.get_example(i)

    def resolve(self, position: int) -> tuple[Task, int]:
        n, i = self.order[position]
        return self.tasks[n].locate(i)

    def evaluate(self, conversation: dict[str, Any], completion: str) -> bool:
        raise TypeError(
            f"{self.name} holds several tasks: score example i with task.locate(i), which gives the task it came "
            "from (evaluate_task does this)"
        )

    def reward(self, conversation: dict[str, Any], completion: str) -> float:
        self.evaluate(conversation, completion)  # the same explanation
        return 0.0

    def has_reward(self) -> bool:
        return all(t.has_reward() for t in self.tasks)


class TaskMixture(Composite):
    """Every example of `tasks`, shuffled once with `seed` (a task listed twice is seen twice as often)."""

    def __init__(
        self, tasks: Sequence[Task], seed: int = 42, start: int = 0, stop: int | None = None, step: int = 1
    ) -> None:
        super().__init__(tasks, start, stop, step)
        random.Random(seed).shuffle(self.order)


class TaskSequence(Composite):
    """The examples of `tasks`, one task after another."""


def check_slice(start: Any, stop: Any, step: Any) -> None:
    """Refuse a start/stop/step that is not a forward slice, naming the bad value."""
    for name, value in (("start", start), ("stop", stop), ("step", step)):
        if value is None and name == "stop":
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {value!r}")
    if start < 0:
        raise ValueError(f"start must be >= 0, got {start}")
    if stop is not None and stop < start:
        raise ValueError(f"stop must be None or >= start ({start}), got {stop}")
    if step < 1:
        raise ValueError(f"step must be >= 1, got {step}")


def _count_examples(get_example: Any) -> int:
    """How many indices get_example answers (0, 1, 2, ... until IndexError), in O(log n) calls."""

    def exists(i: int) -> bool:
        try:
            get_example(i)
        except IndexError:
            return False
        return True

    if not exists(0):
        return 0
    high = 1
    while exists(high):
        high *= 2
    low = high // 2  # exists(low), not exists(high)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if exists(mid) else (low, mid)
    return high


def chose_right(conversation: dict[str, Any], completion: str) -> bool:
    """Whether a completion gives the letter of a categorical example's right answer."""
    letters = conversation["letters"]
    return letter_of(completion, letters) == letters[conversation["answer"]]


def letter_of(completion: str, letters: Sequence[str]) -> str | None:
    """The answer letter a completion gives ("B", " B", "B) ...", "(B)"), or None when it gives none of them."""
    text = completion.strip().lstrip("(").upper()
    for letter in sorted(letters, key=len, reverse=True):  # the longest label first: "AB" before "A"
        label = letter.upper()
        if text == label or (text.startswith(label) and not text[len(label) : len(label) + 1].isalnum()):
            return letter
    return None


class MultipleChoice(Task):
    """A categorical task over (question, choices, answer index) rows: the user asks with the lettered choices, the
    assistant answers with the letter; `evaluate` checks the letter."""

    @property
    def eval_type(self) -> str:
        return "categorical"

    def evaluate(self, conversation: dict[str, Any], completion: str) -> bool:
        return chose_right(conversation, completion)

    def reward(self, conversation: dict[str, Any], completion: str) -> float:
        return float(self.evaluate(conversation, completion))


def multiple_choice(question: str, choices: Sequence[str], answer: int, context: str | None = None) -> dict[str, Any]:
    """The conversation of a multiple-choice row: the question with lettered choices, answered by the letter."""
    if not 2 <= len(choices) <= len(LETTERS):
        raise ValueError(f"a multiple-choice row needs 2 to {len(LETTERS)} choices, got {len(choices)}")
    if isinstance(answer, bool) or not isinstance(answer, int) or not 0 <= answer < len(choices):
        raise ValueError(f"answer must be the index of one of the {len(choices)} choices, got {answer!r}")
    letters = list(LETTERS[: len(choices)])
    lines = [question.strip(), *(f"{letter}. {choice}" for letter, choice in zip(letters, choices, strict=True))]
    prompt = "\n".join(lines) + "\nAnswer with the letter of the correct choice."
    return {
        "messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": letters[answer]}],
        "letters": letters,
        "choices": list(choices),
        "answer": answer,
        "context": context if context is not None else f"Question: {question.strip()}\nAnswer:",
    }
