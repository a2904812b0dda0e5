"""Scoring a model on a Task: `evaluate_task` (nanochat's call, the accuracy) and `score_task` (a `TaskScore`).

The model is a `GPT` (or any module whose forward gives logits) with its `Tokenizer`, an `LLM` (anything with
`.model` and `.tokenizer`), or a source loaded through the checkpoint package: a checkpoint folder, a training run's
folder (its `final/`, else its newest step checkpoint) or a phase, `base`, `mid`, `sft` or `rl`.

Each example is scored by the task that owns it (`task.locate(i)`), so a mixture of tasks is scored as its parts.

Categorical examples (the letters, choices, answer and context of `multiple_choice`) are scored without generating:
  - "letters" (nanochat's way, for chat models): the conversation up to the assistant's reply, one forward, the
    logits at its last position restricted to the tokens that start each letter's reply, the largest wins;
  - "continuation" (CORE's way, for base models): `context` + " " + each choice, the mean cross-entropy of the
    choice's tokens alone, the lowest wins;
  - "loglikelihood" (lm-eval's `acc`): the same rows, the largest summed log-probability of the choice's tokens wins.
  "auto" takes "continuation" when the chat format is `plain` (the fallback of a checkpoint that has no chat format
  of its own: a base model) and the example has choices and a context, else "letters".
Generative examples are sampled by one continuous-batching `Scheduler`: `num_samples` samples of an example share
its prefill, each example has a fixed seed (its index in its own task), and an example is right when any of its
samples passes the task's `evaluate` (pass@k).

Rows longer than the model's context lose tokens from the left (a generative prompt keeps block_size - 1 tokens).
"""

from __future__ import annotations

import os
import random
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from litllm.inference.engine import Completion, Request, Scheduler
from litllm.inference.options import SamplingParams
from litllm.prompts import PromptStyle, render_conversation, render_for_completion, stop_sequences
from litllm.tasks.base import Task
from litllm.tokenizer import Tokenizer

if TYPE_CHECKING:
    from litllm.prompts import ChatFormat

SCORINGS = ("auto", "letters", "continuation", "loglikelihood")
SAMPLES_KEPT = 5  # examples whose prompt and answer a TaskScore keeps, to show what the model saw
PAD_ID = 0  # right padding: a causal model's logits at the real positions do not see it

Progress = Callable[[int, int], None]


@dataclass
class ScoredExample:
    """One example as the model saw it (the prompt's text), what it answered (a letter, a choice, a completion)
    and whether that was right."""

    prompt: str
    output: str
    correct: bool


@dataclass
class TaskScore:
    """How a model did on a task. `num_choices` is the mean number of choices of the categorical examples and
    `centered` the accuracy above chance, (accuracy - 1/k) / (1 - 1/k) with k = num_choices, for categorical
    tasks (None otherwise)."""

    name: str
    eval_type: str
    accuracy: float
    correct: int
    count: int
    num_choices: float | None
    centered: float | None
    samples: list[ScoredExample]
    seconds: float


def evaluate_task(
    model: Any, tokenizer: Tokenizer | str | os.PathLike | None = None, task: Task | str | None = None, **options: Any
) -> float:
    """The accuracy, in [0, 1], of `model` on `task`: `score_task(...).accuracy`, with the same arguments."""
    return score_task(model, tokenizer, task, **options).accuracy


def score_task(
    model: Any,
    tokenizer: Tokenizer | str | os.PathLike | None = None,
    task: Task | str | None = None,
    *,
    batch_size: int = 8,
    num_samples: int = 1,
    max_tokens: int = 256,
    temperature: float = 0.0,
    top_k: int | None = None,
    device: str | torch.device | None = None,
    num_fewshot: int = 0,
    scoring: str = "auto",
    progress: Progress | None = None,
) -> TaskScore:
    """Score `model` on every example of `task`.

    Args:
        model: A `GPT` (with `tokenizer`), an `LLM`, or a source: a checkpoint folder, a run folder, base|mid|sft|rl.
        tokenizer: The model's `Tokenizer` (or its folder); default: the LLM's or the source's own.
        task: A `Task` (a mixture, a slice), or a task name or file that `get_task` reads.
        batch_size: Rows per forward for categorical examples; examples decoded together for generative ones.
        num_samples: Samples per generative example; it is right when any passes (pass@k).
        max_tokens: Tokens generated at most per sample.
        temperature: Sampling temperature of generative examples (0: greedy).
        top_k: Sample among the k most likely tokens only.
        device: Where a source is loaded (default: cuda when there is one); a model given is used where it is.
        num_fewshot: Other examples of the same task shown before each one (as earlier turns, or text blocks).
        scoring: How categorical examples are scored: "letters", "continuation", "loglikelihood" or "auto" (see
            the module).
        progress: Called as progress(done, total) as examples are scored.
    """
    check_options(batch_size, num_samples, max_tokens, num_fewshot, scoring, progress)
    params = SamplingParams(temperature, top_k)
    task = as_task(task)
    if len(task) == 0:
        raise ValueError(f"task {task.name} has no examples to score")
    gpt, tokenizer, chat_format = resolve_model(model, tokenizer, device)
    scorer = _Scorer(gpt, tokenizer, chat_format, task, params, batch_size, num_samples, max_tokens, num_fewshot)
    started = time.perf_counter()
    was_training = gpt.training
    gpt.eval()
    try:
        scorer.run(scoring, progress, prepack=None if not was_training else False)
    finally:
        gpt.train(was_training)
    return scorer.score(time.perf_counter() - started)


def check_options(
    batch_size: Any, num_samples: Any, max_tokens: Any, num_fewshot: Any, scoring: Any, progress: Any
) -> None:
    """Refuse a bad option, naming it and what is accepted."""
    for name, value, least in (
        ("batch_size", batch_size, 1),
        ("num_samples", num_samples, 1),
        ("max_tokens", max_tokens, 1),
        ("num_fewshot", num_fewshot, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
    if scoring not in SCORINGS:
        raise ValueError(f"scoring must be one of {', '.join(SCORINGS)}, got {scoring!r}")
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be a callable(done, total) or None, got {progress!r}")


def as_task(task: Any) -> Task:
    """`task` itself, or the task a name or a task file stands for."""
    if isinstance(task, (str, Path)):
        from litllm.tasks.registry import get_task

        return get_task(str(task))
    if not isinstance(task, Task):
        raise TypeError(f"task must be a litllm Task (a subclass of litllm.tasks.Task) or a task name, got {task!r}")
    return task


# ---- the model ----------------------------------------------------------------------------------------------------


def resolve_model(
    model: Any, tokenizer: Tokenizer | str | os.PathLike | None, device: str | torch.device | None
) -> tuple[torch.nn.Module, Tokenizer, ChatFormat]:
    """The module to run, its tokenizer and the chat format conversations are rendered in."""
    chat_format = None
    if isinstance(model, (str, os.PathLike)):
        model, own = load_source(model, device)
    elif hasattr(model, "model") and hasattr(model, "tokenizer"):  # an LLM: its chat format may have been set on it
        own, chat_format = model.tokenizer, getattr(model, "chat_format", None)
        model = model.model
        check_device(model, device)
    elif isinstance(model, torch.nn.Module):
        if tokenizer is None:
            raise ValueError("a model given as a module needs its tokenizer: evaluate_task(model, tokenizer, task)")
        own = None
        check_device(model, device)
    else:
        raise TypeError(
            f"model must be a GPT, an LLM or a checkpoint source (a folder, base|mid|sft|rl), got {model!r}"
        )
    if tokenizer is not None:
        chat_format = None
        own = tokenizer if isinstance(tokenizer, Tokenizer) else Tokenizer.from_pretrained(tokenizer)
    if not isinstance(own, Tokenizer):
        raise TypeError(f"tokenizer must be a litllm Tokenizer or its folder, got {own!r}")
    return model, own, chat_format or own.chat_format


def load_source(source: str | os.PathLike, device: str | torch.device | None) -> tuple[torch.nn.Module, Tokenizer]:
    """The model and tokenizer of a checkpoint folder, a run folder or a phase (base, mid, sft, rl)."""
    from litllm.checkpoint.layout import checkpoint_kind
    from litllm.checkpoint.loading import load_checkpoint
    from litllm.checkpoint.phases import load_model, load_training_checkpoint
    from litllm.checkpoint.run_folders import PHASES, final_checkpoint, step_checkpoints
    from litllm.checkpoint.sources import resolve_checkpoint
    from litllm.lora.files import is_adapter_dir, load_adapted, read_adapter, tokenizer_folder

    device = (
        torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    )
    path = Path(source).expanduser()
    if str(source) in PHASES and not path.exists():
        model, tokenizer, _ = load_model(str(source), device)
        return model, tokenizer
    if path.is_dir() and checkpoint_kind(path) is None:  # a run folder: its final/, else its newest step
        final, steps = final_checkpoint(path), step_checkpoints(path)
        if is_adapter_dir(path) or (final is not None and is_adapter_dir(final)):  # base + LoRA adapter, unmerged
            adapter = read_adapter(path)
            return load_adapted(adapter.path, device=device), Tokenizer(tokenizer_folder(adapter))
        if final is not None:
            path = final
        elif steps:
            return load_training_checkpoint(steps[max(steps)], device), Tokenizer(path / "tokenizer")
    folder = resolve_checkpoint(str(path))
    return load_checkpoint(folder, device=device), Tokenizer(folder)


def check_device(model: torch.nn.Module, device: str | torch.device | None) -> None:
    if device is None:
        return
    wanted, have = torch.device(device), model_device(model)
    if wanted.type != have.type or (wanted.index is not None and wanted.index != have.index):
        raise ValueError(f"device={str(wanted)!r}, but the model is on {str(have)!r}: move it there first")


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def is_chat_format(chat_format: ChatFormat) -> bool:
    """Whether a format marks turns (a chat model's); `plain` is the fallback of checkpoints without one."""
    return not (isinstance(chat_format, PromptStyle) and chat_format.name == "plain")


# ---- scoring ------------------------------------------------------------------------------------------------------


class _Scorer:
    """Scores the examples of one task: categorical ones by forward passes, generative ones through the engine."""

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Tokenizer,
        chat_format: ChatFormat,
        task: Task,
        params: SamplingParams,
        batch_size: int,
        num_samples: int,
        max_tokens: int,
        num_fewshot: int,
    ) -> None:
        self.model, self.tokenizer, self.chat_format, self.task = model, tokenizer, chat_format, task
        self.params, self.batch_size, self.num_samples = params, batch_size, num_samples
        self.max_tokens, self.num_fewshot = max_tokens, num_fewshot
        self.block_size: int | None = getattr(getattr(model, "config", None), "block_size", None)
        self.device = model_device(model)
        self.owners = [task.locate(i) for i in range(len(task))]  # (owning task, its index) of each example
        self.examples = [owner.get_example(index) for owner, index in self.owners]
        self.results: dict[int, tuple[bool, str]] = {}  # position -> (correct, what the model answered)
        self.prompts: dict[int, str] = {}  # of the first SAMPLES_KEPT examples
        self.choices: list[int] = []  # number of choices of each categorical example
        self.letter_cache: dict[tuple[str, ...], tuple[list[int], list[int]]] = {}
        self.progress: Progress | None = None
        self.warned = False
        self.cropped = False

    def run(self, scoring: str, progress: Progress | None, prepack: bool | None) -> None:
        self.progress = progress
        self.report()
        kinds: dict[str, list[int]] = {"letters": [], "continuation": [], "generative": []}
        for position, ((owner, _), example) in enumerate(zip(self.owners, self.examples, strict=True)):
            kinds[self.kind(owner, example, scoring)].append(position)
        self.choices = [len(self.examples[p]["letters"]) for p in kinds["letters"]]
        self.choices += [len(self.examples[p]["choices"]) for p in kinds["continuation"]]
        if kinds["letters"]:
            self.score_rows(self.letter_rows(kinds["letters"]), self.pick_letter)
        if kinds["continuation"]:
            rows = self.continuation_rows(kinds["continuation"], summed=scoring == "loglikelihood")
            self.score_rows(rows, self.pick_choice)
        if kinds["generative"]:
            self.generate(kinds["generative"], prepack)

    def kind(self, owner: Task, example: Mapping[str, Any], scoring: str) -> str:
        """How an example is scored: "generative", "letters" or "continuation"."""
        if owner.eval_type == "generative":
            return "generative"
        if owner.eval_type != "categorical":
            raise ValueError(f"task {owner.name} has eval_type {owner.eval_type!r}; accepted: categorical, generative")
        has_text = "choices" in example and "context" in example
        if scoring in ("continuation", "loglikelihood") and not has_text:
            raise ValueError(
                f"scoring={scoring!r} needs examples with 'choices' and 'context' (as multiple_choice writes "
                f"them); task {owner.name} gives {sorted(example)}"
            )
        if scoring in ("continuation", "loglikelihood"):
            return "continuation"
        if scoring == "auto" and has_text and not is_chat_format(self.chat_format):
            return "continuation"
        if "letters" not in example:
            raise ValueError(f"a categorical example needs 'letters' (its answer labels); task {owner.name} has none")
        return "letters"

    # -- the prompts --

    def shots(self, position: int) -> list[dict[str, Any]]:
        """`num_fewshot` other examples of the task owning example `position`: the same ones on every call."""
        if not self.num_fewshot:
            return []
        owner, index = self.owners[position]
        total = owner.num_examples()
        if total - 1 < self.num_fewshot:
            raise ValueError(
                f"num_fewshot={self.num_fewshot} needs that many other examples, and task {owner.name} has "
                f"{total} in all"
            )
        picks = random.Random(index).sample(range(total - 1), self.num_fewshot)
        return [owner.get_example(p + (p >= index)) for p in picks]  # skipping the example itself

    def messages(self, position: int) -> list[dict[str, Any]]:
        """The example's conversation, after the turns of its few-shot examples (a system message stays first)."""
        own = list(self.examples[position]["messages"])
        system = own[:1] if own and own[0].get("role") == "system" else []
        turns = [m for shot in self.shots(position) for m in shot["messages"] if m.get("role") != "system"]
        return [*system, *turns, *own[len(system) :]]

    def prompt_ids(self, messages: Sequence[Mapping[str, Any]]) -> list[int]:
        """Tokens that ask for the assistant's reply: the conversation without its final assistant message."""
        messages = list(messages)
        if messages and messages[-1].get("role") == "assistant":
            messages.pop()
        if not messages:
            raise ValueError("an example holds only an assistant message: there is nothing to prompt with")
        return render_for_completion(messages, self.tokenizer, self.chat_format)

    def letter_tokens(
        self, messages: list[dict[str, Any]], letters: Sequence[str]
    ) -> tuple[list[int], list[int] | None, list[list[int]]]:
        """The reply tokens every letter's answer starts with, the token after them for each letter (None when two
        letters start with the same token), and each letter's tokens after the shared ones.

        Found by rendering the conversation answered with each letter, so a format that writes " A" gives " A"."""
        key = tuple(letters)
        if key not in self.letter_cache:
            head = messages[:-1] if messages[-1].get("role") == "assistant" else messages
            stops = set(stop_sequences(self.chat_format, self.tokenizer)[0])
            replies = []
            for letter in letters:
                answered = [*head, {"role": "assistant", "content": letter}]
                ids, mask = render_conversation(answered, self.tokenizer, self.chat_format)
                start = len(mask) - mask[::-1].index(1)  # after the last reply: walk back to where it starts
                while start > 0 and mask[start - 1]:
                    start -= 1
                replies.append([t for t in ids[start:] if t not in stops])
            shared = len(os.path.commonprefix(replies))
            tails = [r[shared:] for r in replies]
            firsts = [t[0] if t else None for t in tails]
            if None in tails or not all(tails):
                raise ValueError(
                    f"the answer letters {list(letters)} render to the same tokens: score with continuation"
                )
            distinct = None not in firsts and len(set(firsts)) == len(firsts)
            self.letter_cache[key] = replies[0][:shared], firsts if distinct else None, tails
        return self.letter_cache[key]

    def crop(self, ids: list[int], keep: int = 1) -> list[int]:
        """The last block_size tokens of a row (its last `keep` tokens must fit)."""
        if self.block_size is None or len(ids) <= self.block_size:
            return ids
        if keep >= self.block_size:
            raise ValueError(f"an answer of {keep} tokens does not fit the model's context of {self.block_size}")
        self.cropped = True
        return ids[-self.block_size :]

    # -- categorical --

    def letter_rows(self, positions: list[int]) -> list[tuple[int, int, list[int], Any]]:
        """(position, choice, tokens, letter ids) rows: one per example, its prompt ending where the letter goes
        (choice -1: the row's logits pick the letter). Where two letters start with the same token (a small
        vocabulary that splits " B" but not " A"), one row per letter instead, scored by the summed log-probability
        of its tokens."""
        rows = []
        for position in positions:
            messages = self.messages(position)
            prefix, letter_ids, tails = self.letter_tokens(messages, self.examples[position]["letters"])
            prompt = self.prompt_ids(messages) + prefix
            self.keep_prompt(position, lambda ids=prompt: self.tokenizer.decode(ids))
            if letter_ids is not None:
                rows.append((position, -1, self.crop(prompt), letter_ids))
                continue
            for choice, tail in enumerate(tails):
                rows.append((position, choice, self.crop(prompt + tail, len(tail)), ("sum", len(tail))))
        return rows

    def continuation_rows(self, positions: list[int], summed: bool = False) -> list[tuple[int, int, list[int], Any]]:
        """(position, choice, tokens, continuation length) rows: the context then each choice, a row per choice
        (`summed`: scored by the summed log-probability of the choice's tokens, else their mean)."""
        rows = []
        for position in positions:
            example = self.examples[position]
            blocks = []
            for shot in self.shots(position):
                if not {"context", "choices", "answer"} <= shot.keys():
                    raise ValueError("few-shot continuation needs examples with 'context', 'choices' and 'answer'")
                blocks.append(f"{shot['context']} {shot['choices'][shot['answer']]}\n\n")
            text = "".join(blocks) + example["context"]
            self.keep_prompt(position, lambda text=text: text)
            context = self.tokenizer.encode(text)
            for choice, answer in enumerate(example["choices"]):
                continuation = self.tokenizer.encode(" " + answer, bos=False)
                k = len(continuation)
                rows.append((position, choice, self.crop(context + continuation, k), ("sum", k) if summed else k))
        return rows

    def score_rows(self, rows: list[tuple[int, int, list[int], Any]], pick: Callable[..., None]) -> None:
        """Run rows in padded batches of batch_size, longest first; `pick` decides each example once its rows are in."""
        left: dict[int, int] = {}
        for position, *_ in rows:
            left[position] = left.get(position, 0) + 1
        found: dict[int, dict[int, Any]] = {}
        order = sorted(rows, key=lambda row: -len(row[2]))
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            lengths = [len(ids) for _, _, ids, _ in batch]
            idx = torch.full((len(batch), max(lengths)), PAD_ID, dtype=torch.long)
            for b, (_, _, ids, _) in enumerate(batch):
                idx[b, : len(ids)] = torch.tensor(ids)
            with torch.inference_mode():
                logits = self.model(idx.to(self.device))  # (B, T, V)
            for b, (position, choice, ids, extra) in enumerate(batch):
                found.setdefault(position, {})[choice] = row_score(logits[b, : len(ids)], ids, extra)
                left[position] -= 1
                if not left[position]:
                    pick(position, found.pop(position))
                    self.report()

    def pick_letter(self, position: int, found: dict[int, Any]) -> None:
        owner, _ = self.owners[position]
        example = self.examples[position]
        chosen = found[-1] if -1 in found else max(found, key=lambda choice: (found[choice], -choice))
        letter = example["letters"][chosen]
        self.results[position] = (self.passes(owner, example, letter), letter)

    def pick_choice(self, position: int, found: dict[int, Any]) -> None:
        owner, _ = self.owners[position]
        example = self.examples[position]
        chosen = max(found, key=lambda choice: (found[choice], -choice))  # highest mean log-probability, first on ties
        if "letters" in example:
            correct = self.passes(owner, example, example["letters"][chosen])
        else:
            correct = chosen == example.get("answer")
        self.results[position] = (correct, example["choices"][chosen])

    # -- generative --

    def generate(self, positions: list[int], prepack: bool | None) -> None:
        """Sample every example through one scheduler; score each as soon as its samples are done."""
        stop_ids, stop_strings = stop_sequences(self.chat_format, self.tokenizer)
        scheduler = Scheduler(
            self.model, self.tokenizer, max_batch_size=self.batch_size * self.num_samples, prepack=prepack
        )
        queued: list[tuple[int, list[Completion]]] = []
        for position in positions:
            ids = self.prompt_ids(self.messages(position))
            if self.block_size is not None and len(ids) >= self.block_size:
                ids, self.cropped = ids[-(self.block_size - 1) :], True
            room = self.max_tokens if self.block_size is None else min(self.max_tokens, self.block_size - len(ids))
            self.keep_prompt(position, lambda ids=ids: self.tokenizer.decode(ids))
            request = Request(
                ids,
                room,
                self.params,
                seed=self.owners[position][1],
                stop=stop_strings,
                stop_ids=stop_ids,
                num_samples=self.num_samples,
            )
            queued.append((position, scheduler.submit(request)))
        queued.reverse()  # admitted in submission order: pop() from the end is the next to be admitted
        running: list[tuple[int, list[Completion]]] = []
        while queued or running:
            if scheduler.busy:
                scheduler.step()
            while queued and queued[-1][1][0].slot >= 0:  # admitted this step
                running.append(queued.pop())
            for item in [item for item in running if all(c.finished for c in item[1])]:
                running.remove(item)
                self.judge(*item)
                self.report()

    def judge(self, position: int, completions: list[Completion]) -> None:
        """An example is right when any of its samples passes (pass@k); the first passing one is kept."""
        owner, _ = self.owners[position]
        example = self.examples[position]
        passing = next((c.text for c in completions if self.passes(owner, example, c.text)), None)
        self.results[position] = (passing is not None, completions[0].text if passing is None else passing)

    # -- bookkeeping --

    def passes(self, owner: Task, example: dict[str, Any], completion: str) -> bool:
        """The task's verdict; one that raises counts as wrong (and is reported once)."""
        try:
            return bool(owner.evaluate(example, completion))
        except NotImplementedError:
            raise
        except Exception as err:  # noqa: BLE001 - a task's own checker failing on one sample
            if not self.warned:
                self.warned = True
                warnings.warn(
                    f"{owner.name}.evaluate raised {type(err).__name__}: {err}; a sample whose check raises counts "
                    "as wrong",
                    RuntimeWarning,
                    stacklevel=2,
                )
            return False

    def keep_prompt(self, position: int, text: Callable[[], str]) -> None:
        if position < SAMPLES_KEPT:
            self.prompts[position] = text()

    def report(self) -> None:
        if self.progress is not None:
            self.progress(len(self.results), len(self.examples))

    def score(self, seconds: float) -> TaskScore:
        if self.cropped:
            warnings.warn(
                f"some prompts of {self.task.name} were longer than the model's context of {self.block_size} tokens "
                "and lost their first tokens",
                RuntimeWarning,
                stacklevel=3,
            )
        correct = sum(ok for ok, _ in self.results.values())
        count = len(self.examples)
        accuracy = correct / count
        num_choices = sum(self.choices) / len(self.choices) if self.choices else None
        centered = None
        if self.task.eval_type == "categorical" and num_choices:
            chance = 1 / num_choices
            centered = (accuracy - chance) / (1 - chance)
        samples = [ScoredExample(self.prompts[p], self.results[p][1], self.results[p][0]) for p in sorted(self.prompts)]
        return TaskScore(
            self.task.name, self.task.eval_type, accuracy, correct, count, num_choices, centered, samples, seconds
        )


def row_score(logits: torch.Tensor, ids: list[int], extra: Any) -> Any:
    """A row's verdict from its logits (n, V): the index of the best letter (letter rows, `extra` the letters'
    token ids), the summed log-probability of a letter's last k tokens (`extra` ("sum", k)), or the mean
    log-probability of the last `extra` tokens (continuation rows)."""
    if isinstance(extra, list):
        return int(logits[-1, extra].float().argmax())
    summed = isinstance(extra, tuple)  # ("sum", k): a letter's k tokens, their summed log-probability
    k, n = (extra[1] if summed else extra), len(ids)
    targets = torch.tensor(ids[n - k :], device=logits.device)
    loss = F.cross_entropy(logits[n - k - 1 : n - 1].float(), targets, reduction="sum" if summed else "mean")
    return -float(loss)
