"""The `LLM` facade: load a model from anywhere litllm understands, and generate text with it."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from litllm.catalog import named_configs
from litllm.checkpoint.loading import load_checkpoint
from litllm.checkpoint.own import save_checkpoint
from litllm.checkpoint.sources import resolve_checkpoint
from litllm.config import Config
from litllm.inference.constraints import make_constraint
from litllm.inference.engine import Completion, Request, Scheduler, TextStream
from litllm.inference.options import GenerationOptions, with_options
from litllm.model import GPT
from litllm.prompts import ChatFormat, PromptStyle, load_prompt_style, render_for_completion, stop_sequences
from litllm.tokenizer import Tokenizer


class LLM:
    """A `GPT`, its `Tokenizer` and its `Config`, ready to generate.

    On CPUs where packed weights multiply fastest (`litllm.cpu.kernels`), generating replaces the linear
    layers' weights by packed copies, in place (no extra memory): read directly, `llm.model`'s linear weights then
    show NaN until `litllm.cpu.packing.prepack(llm.model, enabled=False)`; `state_dict`, `save`, training and `.to()`
    unpack by themselves.
    """

    max_batch_size = 64  # rows decoded together; longer lists of prompts join as rows finish

    def __init__(self, model: GPT, tokenizer: Tokenizer, checkpoint_dir: Path | None = None) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.checkpoint_dir = checkpoint_dir
        self._chat_format: ChatFormat | None = None
        self._on_first_token: Any = None
        self._last_run_tokens = 0
        check_vocab_fits(tokenizer, model.config)

    @property
    def config(self) -> Config:
        return self.model.config

    @property
    def device(self) -> torch.device:
        return self.model.wte.weight.device

    @classmethod
    def load(
        cls,
        source: str | Path | Config,
        init: Literal["pretrained", "random"] = "pretrained",
        tokenizer_dir: str | Path | None = None,
        device: str | torch.device | None = None,
        dtype: torch.dtype | str | None = None,
        seed: int = 0,
    ) -> LLM:
        """Load a litllm, Hugging Face or LitGPT checkpoint directory, a Hub repo id or a registry name.

        init="random" builds a named config (or a `Config`) with fresh weights and needs `tokenizer_dir`.
        """
        device = torch.device(device) if device is not None else default_device()
        dtype = resolve_dtype(dtype)
        if init == "random":
            config = source if isinstance(source, Config) else Config.from_name(str(source))
            if tokenizer_dir is None:
                raise ValueError("init='random' needs tokenizer_dir: a folder with tokenizer.json or tokenizer.model")
            tokenizer = Tokenizer(tokenizer_dir)
            check_vocab_fits(tokenizer, config)
            torch.manual_seed(seed)
            with torch.device(device):
                model = GPT(config)
            model.reset_parameters()
            model.to(dtype or torch.float32).eval()
            return cls(model, tokenizer)
        if init != "pretrained":
            raise ValueError(f"init must be 'pretrained' or 'random', got {init!r}")
        if isinstance(source, Config):
            raise ValueError(
                "init='pretrained' needs a checkpoint path, a Hub repo id or a registry name, not a Config"
            )
        checkpoint_dir = resolve_checkpoint(str(source))
        model = load_checkpoint(checkpoint_dir, device=device, dtype=dtype)
        tokenizer = Tokenizer(tokenizer_dir or checkpoint_dir)
        return cls(model, tokenizer, checkpoint_dir)

    @with_options()
    def generate(
        self,
        prompt: str | list[str],
        sys_prompt: str | None = None,
        *,
        stream: bool = False,
        return_as_token_ids: bool = False,
        **options: Any,
    ) -> Any:
        """Continue `prompt`; a list of prompts is generated as one batch and gives a list back.

        num_samples > 1 gives a list of that many samples of each prompt, which share one prefill; logprobs=True a
        `Generation` (text, token ids, their log-probabilities, finish reason) per sample. With schema, regex or
        grammar the output always parses under it. temperature 0 is greedy; a seed makes a request repeatable
        whatever else runs in its batch.

        Args:
            prompt: Text to continue, or a list of texts.
            sys_prompt: Treat the prompt as a user message in a chat with this system message.
            stream: With one prompt, a `TextStream` of text pieces as they are decoded.
            return_as_token_ids: The generated token ids instead of text.
        """
        prompts = [prompt] if isinstance(prompt, str) else prompt
        if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
            raise TypeError(f"prompt must be a string or a non-empty list of strings, got {_describe(prompt)}")
        if sys_prompt is not None:
            messages = [[{"role": "system", "content": sys_prompt}, {"role": "user", "content": p}] for p in prompts]
            ids = [self._chat_ids(m) for m in messages]
            stop_ids, stop_strings = self._chat_stops()
        else:
            ids = [self._encode_prompt(p) for p in prompts]
            stop_ids, stop_strings = self._completion_stops()
        chosen = GenerationOptions.from_options(**options)
        requests = [self.make_request(i, stop_ids, stop_strings, chosen) for i in ids]
        if stream:
            return self._stream(requests, prompt)
        results = [self._results(group, return_as_token_ids, chosen.logprobs) for group in self._run(requests)]
        if chosen.num_samples == 1:
            results = [r[0] for r in results]
        return results[0] if isinstance(prompt, str) else results

    @with_options()
    def chat(self, messages: str | list[dict[str, str]], stream: bool = False, **options: Any) -> Any:
        """The assistant's reply to a conversation, rendered with the checkpoint's chat format.

        Args:
            messages: [{"role": "system" | "user" | "assistant", "content": str}, ...], or one user message.
            stream: A `TextStream` of text pieces as they are decoded.
        """
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        if "sys_prompt" in options:
            raise TypeError("chat() takes the system prompt as the first message, not sys_prompt=")
        as_token_ids = options.pop("return_as_token_ids", False)
        request = self.chat_request(messages, **options)
        if stream:
            return self._stream([request], "")
        results = self._results(self._run([request])[0], as_token_ids, request.logprobs)
        return results if request.num_samples > 1 else results[0]

    def chat_request(self, messages: list[dict[str, str]], **options: Any) -> Request:
        """The engine request for the assistant's reply to `messages` (what `chat` runs)."""
        stop_ids, stop_strings = self._chat_stops()
        chosen = GenerationOptions.from_options(**options)
        return self.make_request(self._chat_ids(messages), stop_ids, stop_strings, chosen)

    def completion_request(self, prompt: str, **options: Any) -> Request:
        """The engine request for a plain continuation of `prompt` (what `generate` runs)."""
        stop_ids, stop_strings = self._completion_stops()
        chosen = GenerationOptions.from_options(**options)
        return self.make_request(self._encode_prompt(prompt), stop_ids, stop_strings, chosen)

    def conversation(self, system: str | None = None) -> ChatSession:
        """A chat that keeps its history: `conversation.send("...")` returns the reply and remembers both."""
        return ChatSession(self, system)

    def count_tokens(self, text: str) -> int:
        """How many tokens `text` encodes to (with BOS when the tokenizer adds one)."""
        return len(self.tokenizer.encode(text))

    def benchmark(self, num_iterations: int = 1, **generate_kwargs: Any) -> tuple[list[Any], dict[str, Any]]:
        """Run `generate` num_iterations times: the outputs and, per iteration, seconds, time to first token,
        tokens/s, and the peak memory in GB (the GPU's allocator, or the process's peak resident size on CPU)."""
        if not isinstance(num_iterations, int) or num_iterations < 1:
            raise ValueError(f"num_iterations must be an integer >= 1, got {num_iterations!r}")
        if generate_kwargs.get("stream"):
            raise ValueError("benchmark() measures whole generations: leave out stream=True")
        outputs, stats = [], {"seconds": [], "time_to_first_token": [], "tokens_per_sec": []}
        for _ in range(num_iterations):
            first: list[float] = []
            start = time.perf_counter()
            self._on_first_token = lambda first=first: first.append(time.perf_counter())
            output = self.generate(**generate_kwargs)
            seconds = time.perf_counter() - start
            outputs.append(output)
            stats["seconds"].append(seconds)
            stats["time_to_first_token"].append(first[0] - start if first else float("nan"))
            stats["tokens_per_sec"].append(self._last_run_tokens / seconds)
        stats["peak_memory_gb"] = peak_memory_bytes(self.device) / 1e9
        return outputs, stats

    def distribute(
        self,
        accelerator: str = "auto",
        devices: int = 1,
        precision: str | None = None,
        quantize: str | None = None,
        compile: bool = False,
    ) -> LLM:
        """Move the model to a device, cast it (precision "32-true", "bf16-true", "16-true" or a dtype name),
        quantize its transformer layers with bitsandbytes ("bnb.nf4", "bnb.int8"), and optionally compile it.

        compile=True wraps the forward in torch.compile: 35-45 s of compiling on first use at pythia-160m size on a
        2-core CPU, then 1.02-1.1x eager speed there (the linear layers keep this CPU's fastest kernels inside the
        graph, `litllm.cpu.packing.cpu_linear`); on accelerators it cuts the per-step overhead."""
        if accelerator not in ("auto", "cpu", "cuda", "gpu"):
            raise ValueError(f"accelerator must be 'auto', 'cpu', 'cuda' or 'gpu', got {accelerator!r}")
        if devices != 1:
            raise ValueError(f"devices={devices!r}: LLM generates on one device; `litllm serve` runs a copy per device")
        if accelerator == "auto":
            device = default_device()
        else:
            device = torch.device("cpu" if accelerator == "cpu" else "cuda")
            if device.type == "cuda" and not torch.cuda.is_available():
                raise ValueError(f"accelerator={accelerator!r} but no CUDA device is available")
        dtype = precision_dtype(precision) if precision is not None else None
        self.model.to(device=device, dtype=dtype)
        if quantize is not None:
            from litllm.quantize import quantize_model

            quantize_model(self.model, quantize)
        if compile:
            self.model.forward = torch.compile(self.model.forward, dynamic=True)
        return self

    def save(self, out_dir: str | Path) -> Path:
        """Write a litllm checkpoint directory that `LLM.load` reads back identically."""
        from litllm.quantize import is_quantized

        if is_quantized(self.model):
            raise ValueError("a quantized model cannot be saved; save before distribute(quantize=...)")
        out = save_checkpoint(self.model, out_dir, tokenizer_dir=self.tokenizer.checkpoint_dir)
        if isinstance(self.chat_format, PromptStyle) and self.chat_format.name != "plain":
            self.chat_format.save(out / "prompt_style.yaml")
        return out

    @property
    def chat_format(self) -> ChatFormat:
        """The checkpoint's chat format: its prompt_style.yaml, else its Jinja chat template, else plain text."""
        if self._chat_format is None:
            source = self.checkpoint_dir or self.tokenizer.checkpoint_dir
            self._chat_format = load_prompt_style(source) if source is not None else PromptStyle.from_name("plain")
        return self._chat_format

    @chat_format.setter
    def chat_format(self, style: ChatFormat | str) -> None:
        self._chat_format = PromptStyle.from_name(style) if isinstance(style, str) else style

    # -- the pieces under generate and chat --

    def _encode_prompt(self, prompt: str) -> list[int]:
        if not prompt:
            raise ValueError("prompt is empty")
        return self.tokenizer.encode(prompt)

    def _chat_ids(self, messages: list[dict[str, str]]) -> list[int]:
        return render_for_completion(messages, self.tokenizer, self.chat_format)

    def _completion_stops(self) -> tuple[list[int], list[str]]:
        ids = list(self.tokenizer.stop_ids)
        if self.tokenizer.eos_id is not None and self.tokenizer.eos_id not in ids:
            ids.append(self.tokenizer.eos_id)
        return ids, []

    def _chat_stops(self) -> tuple[list[int], list[str]]:
        return stop_sequences(self.chat_format, self.tokenizer)

    def make_request(
        self, ids: list[int], stop_ids: list[int], stop_strings: list[str], options: GenerationOptions
    ) -> Request:
        """The engine request for prompt token ids; max_new_tokens shrinks to the room left in the context."""
        limit = self.config.block_size
        if len(ids) >= limit:
            raise ValueError(f"prompt is {len(ids)} tokens long; the model's context is {limit} tokens")
        constraint = make_constraint(
            self.tokenizer,
            stop_ids,
            self.config.vocab_size,
            schema=options.schema,
            regex=options.regex,
            grammar=options.grammar,
        )
        return Request(
            ids,
            min(options.max_new_tokens, limit - len(ids)),
            options.sampling,
            seed=options.seed,
            stop=[*stop_strings, *options.stop_strings],
            stop_ids=stop_ids,
            num_samples=options.num_samples,
            logprobs=options.logprobs,
            constraint=constraint,
        )

    def _scheduler(self, rows: int) -> Scheduler:
        return Scheduler(self.model, self.tokenizer, max_batch_size=max(1, min(rows, self.max_batch_size)))

    def _run(self, requests: list[Request]) -> list[list[Completion]]:
        """Generate every request to its end, in one continuously refilled batch."""
        scheduler = self._scheduler(sum(r.num_samples for r in requests))
        groups = [scheduler.submit(r) for r in requests]
        on_first, self._on_first_token = self._on_first_token, None
        while scheduler.busy:
            scheduler.step()
            if on_first is not None and any(c.token_ids for g in groups for c in g):
                on_first()
                on_first = None
        self._last_run_tokens = sum(len(c.token_ids) for g in groups for c in g)
        return groups

    def _stream(self, requests: list[Request], prompt: Any) -> TextStream:
        if len(requests) != 1 or requests[0].num_samples != 1:
            raise ValueError("stream=True takes one prompt and num_samples=1; pass a list without stream=True")
        scheduler = self._scheduler(1)
        (completion,) = scheduler.submit(requests[0])
        return TextStream(scheduler, completion)

    @staticmethod
    def _results(completions: list[Completion], token_ids: bool, logprobs: bool) -> list[Any]:
        if logprobs:
            return [Generation.of(c) for c in completions]
        return [list(c.token_ids) if token_ids else c.text for c in completions]


@dataclass(frozen=True)
class Generation:
    """One generated sample with its details."""

    text: str
    token_ids: list[int]
    logprobs: list[float]
    finish_reason: str | None
    prompt_tokens: int

    @classmethod
    def of(cls, c: Completion) -> Generation:
        return cls(c.text, list(c.token_ids), list(c.logprobs), c.finish_reason, c.prompt_tokens)


class ChatSession:
    """A chat with an `LLM` that remembers what was said."""

    def __init__(self, llm: LLM, system: str | None = None) -> None:
        self.llm = llm
        self.messages: list[dict[str, str]] = [{"role": "system", "content": system}] if system else []

    def send(self, text: str, stream: bool = False, **options: Any) -> Any:
        """Add a user message and return the assistant's reply (a `TextStream` with stream=True)."""
        messages = [*self.messages, {"role": "user", "content": text}]
        if not stream:
            reply = self.llm.chat(messages, **options)
            self.messages = [*messages, {"role": "assistant", "content": reply}]
            return reply
        pieces = self.llm.chat(messages, stream=True, **options)

        def remember(done: TextStream) -> None:
            self.messages = [*messages, {"role": "assistant", "content": done.text}]

        pieces.on_finish = remember
        return pieces

    def reset(self) -> None:
        """Forget everything but the system message."""
        self.messages = [m for m in self.messages if m["role"] == "system"]


def peak_memory_bytes(device: torch.device) -> int:
    """Peak memory of this process: the CUDA allocator's peak, or on CPU the peak resident set size."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss * (1 if sys.platform == "darwin" else 1024)  # macOS reports bytes, Linux KiB


PRECISIONS = {"32-true": torch.float32, "bf16-true": torch.bfloat16, "16-true": torch.float16}


def precision_dtype(precision: str) -> torch.dtype:
    if precision in PRECISIONS:
        return PRECISIONS[precision]
    if precision in DTYPES:
        return DTYPES[precision]
    raise ValueError(f"unknown precision {precision!r}; accepted: {', '.join([*PRECISIONS, *DTYPES])}")


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"[:120]


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def resolve_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; accepted: {', '.join(DTYPES)}")
    return DTYPES[dtype]


def check_vocab_fits(tokenizer: Tokenizer, config: Config) -> None:
    if tokenizer.vocab_size > config.vocab_size:
        raise ValueError(
            f"the tokenizer has {tokenizer.vocab_size} tokens but the model's vocab_size is {config.vocab_size}: "
            "they do not belong together"
        )


__all__ = ["LLM", "ChatSession", "Generation", "named_configs"]
