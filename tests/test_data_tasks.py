"""Specification of litllm.data.tasks: a TaskMixture of conversations as training data (midtraining and SFT)."""

import json
from pathlib import Path

import pytest

from litllm.data.base import IGNORE_INDEX
from litllm.data.tasks import TaskData, parse_specs
from litllm.tokenizer import Tokenizer, train_bpe

ROWS = [
    {"messages": [{"role": "user", "content": f"What is {i} + {i}?"}, {"role": "assistant", "content": str(2 * i)}]}
    for i in range(12)
]
CHOICES = [{"question": f"Pick {c}.", "choices": ["x", "y", "z"], "answer": c} for c in "xyzxyz"]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory) -> Tokenizer:
    texts = (json.dumps(row) + "\n" for _ in range(20) for row in [*ROWS, *CHOICES])
    out = tmp_path_factory.mktemp("bpe")
    train_bpe(texts, 300, out, special_tokens=("<|endoftext|>",), show_progress=False)
    return Tokenizer(out)


@pytest.fixture
def files(tmp_path: Path) -> tuple[str, str]:
    math = tmp_path / "math.jsonl"
    math.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    mc = tmp_path / "pick.jsonl"
    mc.write_text("".join(json.dumps(r) + "\n" for r in CHOICES))
    return str(math), str(mc)


def data(tasks: str, tokenizer: Tokenizer, length: int = 128, **kwargs) -> TaskData:
    d = TaskData(tasks, **({"val_split_fraction": 0.0, "prompt_style": "plain"} | kwargs))
    d.connect(tokenizer, length)
    d.setup()
    return d


def test_specs_keep_repeats_and_slices() -> None:
    assert parse_specs("a, b[2:10], a, c[::3], d[5], e:validation[0:9]") == [
        ("a", 0, None, 1, None),
        ("b", 2, 10, 1, None),
        ("a", 0, None, 1, None),
        ("c", 0, None, 3, None),
        ("d", 5, None, 1, None),
        ("e", 0, 9, 1, "validation"),
    ]


@pytest.mark.parametrize("bad", ["", " , ", "a[x:y]", "a[1:2:3:4]"])
def test_a_malformed_spec_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="task"):
        parse_specs(bad)


def test_a_mixture_holds_every_example_once_and_a_repeated_task_twice(files, tokenizer) -> None:
    math, mc = files
    assert len(data(f"{math},{mc}", tokenizer).train_dataset) == len(ROWS) + len(CHOICES)
    assert len(data(f"{math}[0:4],{mc},{mc}", tokenizer).train_dataset) == 4 + 2 * len(CHOICES)


def test_sft_learns_only_the_answers_and_midtraining_every_token(files, tokenizer) -> None:
    math, _ = files
    sft = data(f"{math}[0:1]", tokenizer).train_dataset[0]
    mid = data(f"{math}[0:1]", tokenizer, mask_prompt=False).train_dataset[0]
    learned = sft["labels"][sft["labels"] != IGNORE_INDEX].tolist()
    assert tokenizer.decode(learned).strip().startswith("0")  # the assistant's reply "0" (then EOS)
    assert (mid["labels"] != IGNORE_INDEX).all()
    assert len(learned) < len(mid["labels"])


def test_the_held_out_part_and_val_tasks(files, tokenizer) -> None:
    math, mc = files
    split = data(math, tokenizer, val_split_fraction=0.25)
    assert (len(split.train_dataset), len(split.val_dataset)) == (9, 3)
    own = data(math, tokenizer, val_tasks=mc)
    assert (len(own.train_dataset), len(own.val_dataset)) == (len(ROWS), len(CHOICES))


def test_the_mixture_order_is_fixed_by_its_seed(files, tokenizer) -> None:
    math, mc = files
    first = [s["input_ids"].tolist() for s in data(f"{math},{mc}", tokenizer).train_dataset]
    again = [s["input_ids"].tolist() for s in data(f"{math},{mc}", tokenizer).train_dataset]
    other = [s["input_ids"].tolist() for s in data(f"{math},{mc}", tokenizer, mixture_seed=7).train_dataset]
    assert first == again
    assert first != other and sorted(first) == sorted(other)


def test_a_split_of_a_built_in_task(tokenizer) -> None:
    pytest.importorskip("pyarrow")
    assert len(data("arc_easy:validation[0:5]", tokenizer, 2048).train_dataset) == 5
    with pytest.raises(ValueError, match="split"):
        data("arc_easy:nosuchsplit", tokenizer)


def test_an_unknown_task_names_the_tasks_that_exist(tokenizer) -> None:
    with pytest.raises(ValueError, match="unknown task 'no_such_task'"):
        data("no_such_task", tokenizer)
