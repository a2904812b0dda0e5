"""The Task framework: slicing, views, mixtures, sequences, task files and the registry."""

from __future__ import annotations

import json

import pytest

from litllm.tasks import registry
from litllm.tasks.base import Task, TaskMixture, TaskSequence, TaskView
from litllm.tasks.files import FileTask, TaskFileError
from litllm.tasks.registry import UnknownTaskError, get_task, list_tasks, parse_task_list, register_task


class Numbers(Task):
    """Examples 0..size-1 whose answer is the number itself."""

    def __init__(self, size: int, tag: str = "n", start: int = 0, stop: int | None = None, step: int = 1) -> None:
        super().__init__(start, stop, step)
        self.size, self.tag = size, tag

    def num_examples(self) -> int:
        return self.size

    def get_example(self, index: int) -> dict:
        if not 0 <= index < self.size:
            raise IndexError(index)
        return {
            "messages": [{"role": "user", "content": "?"}, {"role": "assistant", "content": str(index)}],
            "id": f"{self.tag}{index}",
        }

    def evaluate(self, conversation: dict, completion: str) -> bool:
        return completion == conversation["messages"][-1]["content"]


def ids(task: Task) -> list[str]:
    return [example["id"] for example in task]


def test_start_stop_step_select_the_examples():
    assert ids(Numbers(10, start=2, stop=8, step=3)) == ["n2", "n5"]
    assert len(Numbers(10, start=20)) == 0 and len(Numbers(10, stop=100)) == 10


def test_negative_indices_count_from_the_end_of_the_view():
    task = Numbers(10, start=2, stop=8)
    assert task[-1]["id"] == "n7" and task[-6]["id"] == "n2"
    with pytest.raises(IndexError, match="example -7 is out of range: Numbers has 6"):
        task[-7]


def test_nested_slices_are_views_of_the_same_task():
    task = Numbers(20)
    view = task[2:18][::2][1:-1]
    assert isinstance(view, TaskView) and view.root() is task
    assert ids(view) == ["n4", "n6", "n8", "n10", "n12", "n14"]
    assert ids(task[::-1][:3]) == ["n19", "n18", "n17"]
    assert view.tag == "n" and view.evaluate(view[0], "4")  # the task's attributes and scoring come through


def test_slice_step_zero_and_bad_start_stop_step_are_refused():
    with pytest.raises(ValueError, match="slice step cannot be 0"):
        Numbers(5)[::0]
    with pytest.raises(ValueError, match="start must be >= 0, got -1"):
        Numbers(5, start=-1)
    with pytest.raises(ValueError, match="step must be >= 1, got 0"):
        Numbers(5, step=0)
    with pytest.raises(ValueError, match=r"stop must be None or >= start \(3\), got 1"):
        Numbers(5, start=3, stop=1)
    with pytest.raises(TypeError, match="step must be an int, got 1.5"):
        Numbers(5, step=1.5)
    with pytest.raises(TypeError, match="a task is indexed by an int or a slice, got '1'"):
        Numbers(5)["1"]


def test_a_task_with_only_get_example_finds_its_length_by_probing():
    calls = []

    class Probed(Task):
        def get_example(self, index: int) -> dict:
            calls.append(index)
            if not 0 <= index < 37:
                raise IndexError(index)
            return {"messages": [], "id": index}

    task = Probed(step=5)
    assert task.num_examples() == 37 and len(task) == 8 and task[-1]["id"] == 35
    assert len(calls) < 20  # O(log n) probes, and only once
    assert len(Probed(start=40)) == 0


def test_mixture_shuffles_deterministically_and_oversamples_a_task_listed_twice():
    a, b = Numbers(30, "a"), Numbers(10, "b")
    mixed = TaskMixture([a, b, b], seed=7)
    assert len(mixed) == 50 and ids(mixed) == ids(TaskMixture([a, b, b], seed=7))
    assert ids(mixed) != ids(TaskMixture([a, b, b], seed=8))
    assert sorted(ids(mixed)) == sorted(ids(a) + ids(b) * 2)
    assert ids(mixed)[:5] != ids(TaskSequence([a, b, b]))[:5]


def test_sequence_keeps_tasks_and_their_slices_in_order():
    sequence = TaskSequence([Numbers(3, "a"), Numbers(10, "b", start=5, stop=8)])
    assert ids(sequence) == ["a0", "a1", "a2", "b5", "b6", "b7"]
    assert ids(sequence[1:5:2]) == ["a1", "b5"]


def test_locate_on_a_mixture_gives_the_task_and_index_the_example_came_from():
    a, b = Numbers(4, "a"), Numbers(6, "b", start=2)
    mixed = TaskMixture([a, b], seed=1)
    for i in range(len(mixed)):
        task, index = mixed.locate(i)
        assert task is (a if mixed[i]["id"][0] == "a" else b)
        assert task.get_example(index) == mixed[i] and task.evaluate(mixed[i], str(index))
    with pytest.raises(TypeError, match="score example i with task.locate"):
        mixed.evaluate(mixed[0], "0")
    task, index = mixed[3:][-1:].locate(0)  # through a view of the mixture
    assert task.get_example(index) == mixed[-1]


def write(path, rows, jsonl=True):
    text = "\n".join(json.dumps(r) for r in rows) if jsonl else json.dumps(rows)
    path.write_text(text, encoding="utf-8")
    return path


def test_file_task_reads_conversations_from_jsonl(tmp_path):
    chat = [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]
    task = get_task(str(write(tmp_path / "arith.jsonl", [{"messages": chat}] * 3)), start=1)
    assert isinstance(task, FileTask) and task.name == "arith" and task.eval_type == "generative"
    assert len(task) == 2 and task[0] == {"messages": chat}
    assert task.evaluate(task[0], " 4\n") and not task.evaluate(task[0], "5") and task.reward(task[0], "4") == 1.0


def test_file_task_reads_multiple_choice_rows_from_json_with_any_answer_form(tmp_path):
    rows = [
        {"question": "Sky?", "choices": ["green", "blue"], "answer": 1},
        {"question": "Grass?", "choices": ["green", "blue"], "answer": "a"},
        {"question": "Sea?", "choices": ["green", "blue"], "answer": "blue"},
    ]
    task = FileTask(write(tmp_path / "colours.json", rows, jsonl=False))
    assert task.eval_type == "categorical" and [e["answer"] for e in task] == [1, 0, 1]
    assert task[0]["messages"][0]["content"] == "Sky?\nA. green\nB. blue\nAnswer with the letter of the correct choice."
    assert task[0]["context"] == "Question: Sky?\nAnswer:"
    assert task.evaluate(task[0], "B") and task.evaluate(task[1], "(A)") and not task.evaluate(task[2], "A")


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"question": "Q", "choices": ["x", "y"], "answer": 2}, "line 2, field 'answer': 2 is not a choice"),
        ({"question": "Q", "choices": ["x"], "answer": 0}, "line 2, field 'choices': must be a list of 2 to 26"),
        ({"question": "", "choices": ["x", "y"], "answer": 0}, "line 2, field 'question': must be a non-empty"),
        ({"choices": ["x", "y"], "answer": 0}, "line 2, field 'question': missing"),
        ({"messages": [{"role": "user", "content": "hi"}]}, "line 2, field 'messages': the last message must be"),
        ({"messages": [{"role": "bot", "content": "hi"}]}, "line 2, field 'messages\\[0\\].role'"),
        ([1, 2], "line 2: a row is an object"),
    ],
)
def test_a_bad_row_is_refused_naming_file_line_and_field(tmp_path, row, message):
    good = {"question": "Q", "choices": ["x", "y"], "answer": 0}
    path = write(tmp_path / "bad.jsonl", [good, row])
    with pytest.raises(TaskFileError, match=f"bad.jsonl, {message}"):
        FileTask(path)


def test_bad_json_and_mixed_kinds_and_unknown_suffix_are_refused(tmp_path):
    (tmp_path / "broken.jsonl").write_text('{"question": "Q"}\n{not json\n')
    with pytest.raises(TaskFileError, match="broken.jsonl, line 2: not valid JSON"):
        FileTask(tmp_path / "broken.jsonl")
    chat = {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}
    mixed = write(tmp_path / "mixed.jsonl", [chat, {"question": "Q", "choices": ["x", "y"], "answer": 0}])
    with pytest.raises(TaskFileError, match="mixes conversations and multiple-choice rows"):
        FileTask(mixed)
    with pytest.raises(TaskFileError, match="no such task file"):
        get_task(str(tmp_path / "missing.json"))
    with pytest.raises(TaskFileError, match=r"a task file is \.json"):
        FileTask(tmp_path / "rows.csv")


def test_get_task_of_an_unknown_name_lists_the_tasks(monkeypatch):
    list_tasks()  # the built-ins registered, then a copy of the registry that this test may change
    monkeypatch.setattr(registry, "_TASKS", dict(registry._TASKS))
    register_task("tiny_numbers", lambda start=0, stop=None, step=1: Numbers(5, start=start, stop=stop, step=step))
    assert ids(get_task("tiny_numbers", stop=2)) == ["n0", "n1"]
    with pytest.raises(UnknownTaskError, match=r"unknown task 'tiny_number' \(did you mean tiny_numbers") as err:
        get_task("tiny_number")
    assert "arc_easy" in str(err.value) and "mmlu" in str(err.value) and ".json/.jsonl task file" in str(err.value)
    with pytest.raises(ValueError, match="a task name is a non-empty string"):
        register_task("a,b", Numbers)


def test_parse_task_list_takes_commas_bars_or_a_list_without_repeats():
    assert parse_task_list("arc_easy,mmlu") == ["arc_easy", "mmlu"]
    assert parse_task_list("arc_easy|mmlu| arc_easy") == ["arc_easy", "mmlu"]
    assert parse_task_list(["gsm8k", "", "gsm8k"]) == ["gsm8k"]
    with pytest.raises(UnknownTaskError, match="no task named in ' , '; tasks: .*arc_easy"):
        parse_task_list(" , ")
