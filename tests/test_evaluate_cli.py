"""`litllm evaluate SOURCE --tasks ...`: the table, results.json, the CORE-like score and the bad input it refuses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from litllm.tasks import get_task
from litllm.tasks.results import build_tasks, centered, core_score, spread

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
QUESTIONS = [{"question": f"Which is {c}?", "choices": ["a", "b", "c", "d"], "answer": c} for c in "abcdabcd"]


def litllm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "litllm.cli", *args], capture_output=True, text=True, env=ENV, timeout=300
    )


@pytest.fixture
def task_file(tmp_path: Path) -> Path:
    path = tmp_path / "quiz.jsonl"
    path.write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))
    return path


def test_centered_accuracy_is_zero_at_chance_and_one_when_all_right() -> None:
    assert centered(0.25, 4) == 0.0
    assert centered(1.0, 4) == 1.0
    assert centered(0.5, 2) == 0.0 and centered(0.75, 2) == 0.5
    assert centered(0.3, None) is None
    tasks = {"a": {"centered": 0.5}, "b": {"centered": 0.0}, "gen": {"centered": None}}
    assert core_score(tasks) == 0.25
    assert core_score({"gen": {"centered": None}}) is None


def test_limit_spreads_the_examples_over_the_whole_task() -> None:
    pytest.importorskip("pyarrow")
    mmlu = get_task("mmlu")
    picked = spread(mmlu, 57)
    subjects = [example["subject"] for example in picked]
    assert len(picked) == 57 and len(set(subjects)) > 30  # not the first subject's 57 questions
    assert subjects[0] == mmlu[0]["subject"] and subjects[-1] != subjects[0]


def test_groups_specs_and_repeats() -> None:
    tasks = build_tasks("gsm8k[1000:],arc_easy:validation,arc_easy,gsm8k[1000:]", limit=None)
    assert list(tasks) == ["gsm8k[1000:]", "arc_easy:validation", "arc_easy"]
    assert [len(t) for t in tasks.values()] == [319, 570, 2376]
    assert set(build_tasks("core")) >= {"arc_easy", "arc_challenge", "hellaswag", "piqa", "winogrande"}


def test_evaluate_prints_a_table_and_writes_results(litllm_dir: Path, task_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "scores"
    result = litllm("evaluate", str(litllm_dir), "--tasks", f"{task_file},gsm8k[1000:]", "--limit", "3",
                    "--max_tokens", "8", "--out_dir", str(out))  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| quiz | categorical | 3 |" in result.stdout and "| gsm8k[1000:] | generative | 3 |" in result.stdout
    report = json.loads((out / "results.json").read_text())
    quiz = report["tasks"]["quiz"]
    assert quiz["count"] == 3 and 0 <= quiz["correct"] <= 3 and quiz["accuracy"] == quiz["correct"] / 3
    assert quiz["centered"] == pytest.approx((quiz["accuracy"] - 0.25) / 0.75)
    assert report["core"] == pytest.approx(quiz["centered"])  # the only categorical task
    assert report["tasks"]["gsm8k[1000:]"]["centered"] is None
    assert report["settings"]["max_tokens"] == 8 and report["checkpoint"] == str(litllm_dir)
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tasks", "no_such_task"], "unknown task 'no_such_task'"),
        (["--tasks", "arc_easy", "--limit", "0"], "--limit must be an integer >= 1"),
        (["--tasks", "arc_easy", "--num_fewshot", "-1"], "--num_fewshot must be an integer >= 0"),
        (["--tasks", "arc_easy[0:9:0]"], "step must be >= 1"),
    ],
)
def test_bad_input_is_one_line_and_exit_2_before_any_model_loads(args: list[str], message: str) -> None:
    result = litllm("evaluate", "/no/such/model", *args)  # the model is never looked for
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_bad_task_file_row_names_file_line_and_field(tmp_path: Path, litllm_dir: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(QUESTIONS[0]) + "\n" + json.dumps({"question": "q", "choices": ["x"], "answer": 0}))
    result = litllm("evaluate", str(litllm_dir), "--tasks", str(bad))
    assert result.returncode == 2
    assert f"{bad}, line 2, field 'choices'" in result.stderr and "Traceback" not in result.stderr
