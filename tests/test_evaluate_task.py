"""Scoring a model on a Task: categorical examples by letter and by continuation, generative ones by sampling
(pass@k), mixtures by each example's own task, few-shot prompts, the model sources accepted, and bad values."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

from litllm.config import Config
from litllm.inference.engine import Request, SamplingParams, Scheduler
from litllm.model import GPT
from litllm.prompts import stop_sequences
from litllm.tasks import FileTask, MultipleChoice, Task, TaskMixture, TaskSequence, evaluate_task, multiple_choice
from litllm.tasks.evaluate import score_task
from litllm.tokenizer import Tokenizer

VOCAB = 320  # the tokenizer_dir fixture's
RIGHT = ["bead", "cab", "dab", "ace", "bee", "ebb"]  # letters that no wrong choice uses
WRONG = ["xyz", "zzz", "yak", "wow", "jinx", "quiz", "kiwi", "vex"]


class Choices(MultipleChoice):
    """Multiple-choice rows (question, choices, answer index)."""

    def __init__(self, rows: list[tuple[str, list[str], int]]) -> None:
        super().__init__()
        self.rows = rows

    def num_examples(self) -> int:
        return len(self.rows)

    def get_example(self, index: int) -> dict[str, Any]:
        question, choices, answer = self.rows[index]
        return multiple_choice(question, choices, answer)


class Fixed(Task):
    """A generative task whose verdict is always `verdict`."""

    def __init__(self, n: int, verdict: bool) -> None:
        super().__init__()
        self.n, self.verdict = n, verdict

    def num_examples(self) -> int:
        return self.n

    def get_example(self, index: int) -> dict[str, Any]:
        return {"messages": [{"role": "user", "content": f"q{index}"}, {"role": "assistant", "content": "x"}]}

    def evaluate(self, conversation: dict[str, Any], completion: str) -> bool:
        return self.verdict


def answered(answer: int, n: int = 6) -> Choices:
    return Choices([(f"question {i}?", ["red", "green", "blue"], answer) for i in range(n)])


def word_task(swapped: bool = False) -> Choices:
    """Each row's right word is in RIGHT, the others in WRONG; `swapped` marks a wrong word as the answer."""
    rows = [(f"word {i}?", [RIGHT[i], WRONG[i], WRONG[i + 2]], 1 if swapped else 0) for i in range(len(RIGHT))]
    return Choices(rows)


@pytest.fixture
def tokenizer(tokenizer_dir: Path) -> Tokenizer:
    """The tiny BPE tokenizer, without a chat format of its own (`plain`: a base model's)."""
    return Tokenizer(tokenizer_dir)


@pytest.fixture
def chat_tokenizer(tokenizer_dir: Path) -> Tokenizer:
    tokenizer = Tokenizer(tokenizer_dir)
    tokenizer.chat_format = "chatml"
    return tokenizer


def random_model(seed: int = 0, block_size: int = 128) -> GPT:
    torch.manual_seed(seed)
    model = GPT(Config(n_layer=1, n_embd=32, n_head=2, vocab_size=VOCAB, block_size=block_size))
    model.reset_parameters()
    return model.eval()


def letter_model(tokenizer: Tokenizer, letter: str = "A") -> GPT:
    """A GPT whose head prefers the token of `letter` everywhere (through its bias alone)."""
    torch.manual_seed(0)
    model = GPT(Config(n_layer=1, n_embd=32, n_head=2, vocab_size=VOCAB, block_size=512, lm_head_bias=True))
    model.reset_parameters()
    with torch.no_grad():
        model.lm_head.weight.zero_()
        model.lm_head.bias.zero_()
        model.lm_head.bias[tokenizer.token_to_id(letter)] = 10.0
    return model.eval()


def bigram_model(tokenizer: Tokenizer, task: Choices) -> GPT:
    """A GPT that is a bigram table favouring each transition of the task's right continuations: blocks that add
    nothing, one-hot embeddings, and a head holding the table."""
    model = GPT(Config(n_layer=1, n_embd=VOCAB, n_head=4, vocab_size=VOCAB, block_size=128, norm_affine=False))
    with torch.no_grad():
        for p in model.h.parameters():
            p.zero_()
        model.wte.weight.copy_(torch.eye(VOCAB))
        model.lm_head.weight.zero_()
        for example in task:
            context = tokenizer.encode(example["context"])
            right = tokenizer.encode(" " + example["choices"][example["answer"]], bos=False)
            seq = context[-1:] + right
            for a, b in zip(seq, seq[1:], strict=False):
                model.lm_head.weight[b, a] = 8.0 / math.sqrt(VOCAB)  # the norm scales one-hot rows by sqrt(C)
    return model.eval()


def greedy_text(model: GPT, tokenizer: Tokenizer, messages: list[dict[str, str]], max_tokens: int) -> str:
    """What the engine generates greedily for a conversation, stopping where the chat format stops."""
    stop_ids, stop_strings = stop_sequences(tokenizer.chat_format, tokenizer)
    prompt = tokenizer.render_for_completion(messages)
    scheduler = Scheduler(model, tokenizer, max_batch_size=1)
    (completion,) = scheduler.submit(
        Request(prompt, max_tokens, SamplingParams(0), stop=stop_strings, stop_ids=stop_ids)
    )
    scheduler.run()
    return completion.text


def conversation(question: str, answer: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}


# ---- categorical: letters ------------------------------------------------------------------------------------------


def test_letters_a_model_that_always_says_a_scores_1_on_a_answers_and_0_on_b_answers(chat_tokenizer) -> None:
    model = letter_model(chat_tokenizer, "A")
    right = score_task(model, chat_tokenizer, answered(0))
    assert (right.accuracy, right.correct, right.count) == (1.0, 6, 6)
    assert right.num_choices == 3 and right.centered == pytest.approx(1.0)
    assert evaluate_task(model, chat_tokenizer, answered(1)) == 0.0


def test_letters_are_read_where_the_format_puts_them_even_after_a_shared_space(tokenizer) -> None:
    # plain writes "Assistant: A": the letter follows a space the prompt is extended by
    score = score_task(letter_model(tokenizer, "A"), tokenizer, answered(0), scoring="letters")
    assert score.accuracy == 1.0
    assert score.samples[0].prompt.endswith("Assistant: ") and score.samples[0].output == "A"


def test_letter_scoring_takes_the_same_answer_as_the_argmax_of_a_full_forward(chat_tokenizer) -> None:
    model, task = random_model(3), answered(2, n=5)
    letter_ids = [chat_tokenizer.token_to_id(letter) for letter in "ABC"]
    expected = []
    for example in task:
        ids = chat_tokenizer.render_for_completion(example)
        with torch.no_grad():
            logits = model(torch.tensor([ids]))[0, -1, letter_ids]
        expected.append("ABC"[int(logits.argmax())])
    score = score_task(model, chat_tokenizer, task, scoring="letters", batch_size=3)
    assert [s.output for s in score.samples] == expected
    assert score.correct == expected.count("C")


class OddLetters(MultipleChoice):
    """Answers labelled with multi-token "letters" that start alike: no single token tells them apart."""

    LETTERS = ["qzq1", "qzq2", "x"]

    def num_examples(self) -> int:
        return 4

    def get_example(self, index: int) -> dict[str, Any]:
        example = multiple_choice(f"pick {index}", ["one", "two", "three"], index % 3)
        example["letters"] = self.LETTERS
        example["messages"][-1]["content"] = self.LETTERS[index % 3]
        return example


def test_letters_that_start_with_the_same_token_are_scored_by_their_whole_tokens(chat_tokenizer) -> None:
    model, task = random_model(5, block_size=512), OddLetters()
    stops = set(stop_sequences(chat_tokenizer.chat_format, chat_tokenizer)[0])
    assert len({chat_tokenizer.encode(letter, bos=False)[0] for letter in OddLetters.LETTERS}) < 3  # the case
    expected = []
    for example in task:
        sums = []
        for letter in OddLetters.LETTERS:
            answered = [example["messages"][0], {"role": "assistant", "content": letter}]
            ids, mask = chat_tokenizer.render_conversation(answered)
            with torch.no_grad():
                logp = torch.log_softmax(model(torch.tensor([ids]))[0].float(), dim=-1)
            sums.append(
                sum(
                    float(logp[i - 1, t])
                    for i, (t, m) in enumerate(zip(ids, mask, strict=True))
                    if m and t not in stops
                )
            )
        expected.append(OddLetters.LETTERS[max(range(3), key=lambda c: (sums[c], -c))])
    score = score_task(model, chat_tokenizer, task, scoring="letters", batch_size=2)
    assert [s.output for s in score.samples] == expected
    assert score.correct == sum(e == OddLetters.LETTERS[i % 3] for i, e in enumerate(expected))


# ---- categorical: continuation -------------------------------------------------------------------------------------


def test_continuation_a_model_that_knows_the_right_words_scores_1_and_0_when_the_answers_are_swapped(tokenizer) -> None:
    model = bigram_model(tokenizer, word_task())
    score = score_task(model, tokenizer, word_task(), scoring="continuation")
    assert score.accuracy == 1.0
    assert score.samples[0].prompt == "Question: word 0?\nAnswer:" and score.samples[0].output == "bead"
    assert evaluate_task(model, tokenizer, word_task(swapped=True), scoring="continuation") == 0.0


def test_auto_scores_a_base_model_by_continuation_and_a_chat_model_by_letter(tokenizer, chat_tokenizer) -> None:
    base = score_task(bigram_model(tokenizer, word_task()), tokenizer, word_task())
    assert base.accuracy == 1.0 and base.samples[0].output == "bead"  # a choice's text: continuation
    chat = score_task(letter_model(chat_tokenizer, "A"), chat_tokenizer, word_task())
    assert chat.accuracy == 1.0 and chat.samples[0].output == "A"


# ---- generative ----------------------------------------------------------------------------------------------------


def test_greedy_outputs_written_as_the_reference_of_half_the_rows_score_exactly_half(tokenizer, tmp_path) -> None:
    model = random_model()
    lines = []
    for i in range(6):
        question = f"What is {i} plus {i}?"
        text = greedy_text(model, tokenizer, [{"role": "user", "content": question}], max_tokens=6)
        lines.append(json.dumps(conversation(question, text if i % 2 == 0 else text + " (wrong)")))
    (tmp_path / "sums.jsonl").write_text("\n".join(lines) + "\n")
    task = FileTask(tmp_path / "sums.jsonl")
    score = score_task(model, tokenizer, task, max_tokens=6)
    assert (score.accuracy, score.correct, score.count, score.eval_type) == (0.5, 3, 6, "generative")
    assert score.num_choices is None and score.centered is None
    assert [s.correct for s in score.samples] == [True, False, True, False, True]


def test_pass_at_k_counts_an_example_right_when_any_of_its_samples_passes(tokenizer) -> None:
    seen: dict[str, list[bool]] = {}

    class EvenLength(Fixed):
        def evaluate(self, conversation: dict[str, Any], completion: str) -> bool:
            verdict = len(completion) % 2 == 0
            seen.setdefault(conversation["messages"][0]["content"], []).append(verdict)
            return verdict

    model = random_model()
    options = dict(max_tokens=3, temperature=1.0, batch_size=4)
    pass_k = score_task(model, tokenizer, EvenLength(8, True), num_samples=4, **options)
    assert pass_k.correct == sum(any(v) for v in seen.values())
    assert pass_k.accuracy >= sum(v[0] for v in seen.values()) / 8  # its own samples' pass@1
    assert 1 < max(len(v) for v in seen.values()) <= 4
    seen.clear()
    pass_1 = score_task(model, tokenizer, EvenLength(8, True), num_samples=1, **options)
    assert pass_k.accuracy >= pass_1.accuracy
    repeated = score_task(model, tokenizer, EvenLength(8, True), num_samples=4, **options)
    assert (repeated.correct, repeated.samples) == (pass_k.correct, pass_k.samples)  # fixed seeds


def test_batch_size_1_and_8_give_the_same_scores(tokenizer) -> None:
    task = word_task()
    model = bigram_model(tokenizer, task)
    one = [evaluate_task(model, tokenizer, task, batch_size=1, scoring=s) for s in ("continuation", "letters")]
    eight = [evaluate_task(model, tokenizer, task, batch_size=8, scoring=s) for s in ("continuation", "letters")]
    assert one == eight
    generative = [score_task(random_model(), tokenizer, Fixed(6, True), batch_size=b, max_tokens=4) for b in (1, 8)]
    assert generative[0].samples == generative[1].samples and generative[0].accuracy == generative[1].accuracy


def test_a_mixture_scores_each_example_with_the_task_it_came_from(chat_tokenizer) -> None:
    model = letter_model(chat_tokenizer, "A")
    parts = [Fixed(3, True), Fixed(2, False), answered(0, n=3)]
    for mixture in (TaskMixture(parts), TaskSequence(parts)):
        score = score_task(model, chat_tokenizer, mixture, max_tokens=2)
        assert (score.correct, score.count, score.eval_type) == (6, 8, "mixed")
        assert score.num_choices == 3 and score.centered is None


def test_nanochats_custom_task_with_only_get_example_and_evaluate_runs_positionally(tokenizer) -> None:
    model = random_model()
    reference = greedy_text(model, tokenizer, [{"role": "user", "content": "2+2?"}], max_tokens=8)

    class MathTask(Task):
        problems = [{"question": "2+2?", "answer": reference}, {"question": "3+3?", "answer": "6"}]

        def get_example(self, index):
            problem = self.problems[index]
            return {
                "messages": [
                    {"role": "user", "content": problem["question"]},
                    {"role": "assistant", "content": problem["answer"]},
                ]
            }

        def evaluate(self, conversation, completion):
            expected = conversation["messages"][1]["content"]
            return completion.strip() == expected.strip()

    task = MathTask()
    accuracy = evaluate_task(model, tokenizer, task, max_tokens=8)
    assert accuracy == 0.5 or (accuracy == 1.0 and reference.strip() == "6")


# ---- prompts -------------------------------------------------------------------------------------------------------


def test_few_shot_prompts_show_other_examples_of_the_task_the_same_ones_every_time(tokenizer, chat_tokenizer) -> None:
    task = word_task()
    model = bigram_model(tokenizer, task)
    first = score_task(model, tokenizer, task, scoring="continuation", num_fewshot=2)
    again = score_task(model, tokenizer, task, scoring="continuation", num_fewshot=2)
    assert [s.prompt for s in first.samples] == [s.prompt for s in again.samples]
    for i, sample in enumerate(first.samples):
        blocks = sample.prompt.split("\n\n")
        assert len(blocks) == 3 and blocks[-1] == f"Question: word {i}?\nAnswer:"
        assert all(f"word {i}?" not in block for block in blocks[:-1])  # never the example itself
        assert all(block.split("Answer: ")[1] in RIGHT for block in blocks[:-1])  # shown with its right answer
    letters = score_task(letter_model(chat_tokenizer), chat_tokenizer, answered(0), num_fewshot=1)
    assert letters.accuracy == 1.0
    assert all(s.prompt.count("<|im_start|>user") == 2 for s in letters.samples)
    with pytest.raises(ValueError, match="num_fewshot=6"):
        score_task(model, tokenizer, task, num_fewshot=6)


def test_an_evaluate_that_raises_counts_the_sample_wrong_and_warns_once(tokenizer) -> None:
    class Broken(Fixed):
        def evaluate(self, conversation: dict[str, Any], completion: str) -> bool:
            raise KeyError("answer")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        accuracy = evaluate_task(random_model(), tokenizer, Broken(4, True), max_tokens=2)
    assert accuracy == 0.0
    assert sum("evaluate raised KeyError" in str(w.message) for w in caught) == 1


# ---- models and options --------------------------------------------------------------------------------------------


def test_an_llm_a_checkpoint_a_run_folder_and_a_phase_are_scored_like_the_model(tokenizer, tmp_path, monkeypatch):
    from litllm import LLM
    from litllm.checkpoint.own import save_checkpoint

    model = letter_model(tokenizer, "A")
    task = answered(0)
    save_checkpoint(model, tmp_path / "ckpt", tokenizer_dir=tokenizer.checkpoint_dir)
    save_checkpoint(model, tmp_path / "run" / "final", tokenizer_dir=tokenizer.checkpoint_dir)
    monkeypatch.setenv("LITLLM_RUNS_DIR", str(tmp_path / "runs"))
    save_checkpoint(model, tmp_path / "runs/finetune/tiny-20260101-000000/final", tokenizer.checkpoint_dir)
    sources = [LLM(model, tokenizer), str(tmp_path / "ckpt"), tmp_path / "run", "sft"]
    for source in sources:
        assert evaluate_task(source, task=task, scoring="letters", device="cpu") == 1.0, source
    assert evaluate_task(model, tokenizer, answered(1), scoring="letters") == 0.0


def test_a_quantized_model_is_scored_through_its_int8_layers(tokenizer) -> None:
    from litllm import LLM
    from litllm.cpu.int8 import Int8Linear

    llm = LLM(letter_model(tokenizer, "A"), tokenizer)
    llm.distribute(accelerator="cpu", quantize="int8")
    assert any(isinstance(m, Int8Linear) for m in llm.model.modules())
    assert evaluate_task(llm, task=answered(0), scoring="letters") == 1.0  # the head's bias still prefers A
    assert evaluate_task(llm, task=answered(2), scoring="letters") == 0.0


def test_progress_is_reported_from_zero_to_the_number_of_examples(chat_tokenizer) -> None:
    calls: list[tuple[int, int]] = []
    parts = [Fixed(3, True), answered(0, n=4)]
    model = letter_model(chat_tokenizer)
    evaluate_task(model, chat_tokenizer, TaskSequence(parts), max_tokens=2, progress=lambda *c: calls.append(c))
    assert calls[0] == (0, 7) and calls[-1] == (7, 7)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)


def test_a_model_in_training_mode_is_scored_in_eval_mode_and_handed_back_training(chat_tokenizer) -> None:
    model = letter_model(chat_tokenizer).train()
    assert evaluate_task(model, chat_tokenizer, answered(0), max_tokens=2) == 1.0
    assert model.training


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"batch_size": 0}, "batch_size must be an integer >= 1, got 0"),
        ({"num_samples": 0}, "num_samples must be an integer >= 1, got 0"),
        ({"max_tokens": 0}, "max_tokens must be an integer >= 1, got 0"),
        ({"num_fewshot": -1}, "num_fewshot must be an integer >= 0, got -1"),
        ({"scoring": "logits"}, "scoring must be one of auto, letters, continuation, loglikelihood, got 'logits'"),
        ({"temperature": -1.0}, "temperature must be a number >= 0"),
    ],
)
def test_bad_values_are_refused_naming_the_value(chat_tokenizer, options, message) -> None:
    with pytest.raises(ValueError, match=message):
        evaluate_task(random_model(), chat_tokenizer, answered(0), **options)


class LettersOnly(MultipleChoice):
    """nanochat's categorical example: a conversation and its letters, without choices or context."""

    def get_example(self, index: int) -> dict[str, Any]:
        if index:
            raise IndexError(index)
        return {"messages": answered(0)[0]["messages"], "letters": ["A", "B", "C"]}

    def evaluate(self, conversation: dict[str, Any], completion: str) -> bool:
        return completion == conversation["messages"][-1]["content"]


def test_an_empty_task_a_model_without_its_tokenizer_and_continuation_without_choices_are_refused(
    chat_tokenizer,
) -> None:
    with pytest.raises(ValueError, match="task Choices has no examples"):
        evaluate_task(random_model(), chat_tokenizer, answered(0, n=0))
    with pytest.raises(ValueError, match="needs its tokenizer"):
        evaluate_task(random_model(), task=answered(0))
    with pytest.raises(ValueError, match="scoring='continuation' needs examples with 'choices' and 'context'"):
        evaluate_task(random_model(), chat_tokenizer, LettersOnly(), scoring="continuation")
    assert evaluate_task(letter_model(chat_tokenizer), chat_tokenizer, LettersOnly()) == 1.0  # auto: by letter
