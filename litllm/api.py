"""The `LLM` facade: load a model from anywhere litllm understands, generate text with it, and train it."""

from __future__ import annotations

import contextlib
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch

from litllm.catalog import named_configs
from litllm.checkpoint.hub import download
from litllm.checkpoint.loading import load_checkpoint
from litllm.checkpoint.own import save_checkpoint
from litllm.checkpoint.sources import locate, resolve_tokenizer_dir
from litllm.config import Config
from litllm.inference.constraints import make_constraint
from litllm.inference.engine import Completion, Request, Scheduler, TextStream, TokenStream
from litllm.inference.options import GenerationOptions, with_options
from litllm.inference.placement import (
    check_kv_cache_size,
    default_device,
    precision_dtypes,
    resolve_dtype,
    spread_layers,
)
from litllm.lora.files import attach_adapter, attach_adapters, split_sources
from litllm.lora.layers import BASE, adapter_names, adapters_lifted, merge_adapter, route_of
from litllm.model import GPT
from litllm.prompts import ChatFormat, PromptStyle, load_prompt_style, render_for_completion, stop_sequences
from litllm.tensor_parallel import placement, process_count, process_rank, shared_seed, this_process_devices
from litllm.tokenizer import Tokenizer

if TYPE_CHECKING:
    from litllm.training.module import GPTModule


class LLM(torch.nn.Module):
    """A `GPT`, its `Tokenizer` and its `Config`, ready to generate, and to train: `llm.module` is the `GPTModule`
    of this very model for `L.Trainer(...).fit(llm.module, data)`, and an `LLM` inside a LightningModule of one's own
    trains as LitGPT's does (`trainer_setup`, `logits, loss = llm(input_ids, target_ids)`). After training, `generate`
    uses the new weights.

    On CPUs where packed weights multiply fastest (`litllm.cpu.kernels`), generating replaces the linear
    layers' weights by packed copies, in place (no extra memory): read directly, `llm.model`'s linear weights then
    show NaN until `litllm.cpu.packing.prepack(llm.model, enabled=False)`; `state_dict`, `save`, training and `.to()`
    unpack by themselves.
    """

    max_batch_size = 64  # rows decoded together; longer lists of prompts join as rows finish

    def __init__(self, model: GPT, tokenizer: Tokenizer, checkpoint_dir: Path | None = None) -> None:
        super().__init__()
        self.model = model
        self.training = model.training
        self.tokenizer = tokenizer
        self.checkpoint_dir = checkpoint_dir
        self.fixed_kv_cache_size: int | Literal["max_model_supported"] | None = None
        self._chat_format: ChatFormat | None = None
        self._on_first_token: Any = None
        self._last_run_tokens = 0
        self._autocast: torch.dtype | None = None  # a mixed precision: generate under autocast to this dtype
        self._placement_hooks: list[Any] = []
        self._targets_checked = False
        object.__setattr__(self, "_training_module", None)  # not a submodule: its GPT is already `model`
        check_vocab_fits(tokenizer, model.config)
        if tokenizer.vocab_size < model.config.vocab_size and tokenizer.checkpoint_dir != checkpoint_dir:
            # a checkpoint's own tokenizer may be a little smaller (a vocabulary padded for speed): not worth a word
            warnings.warn(
                f"the model has {model.config.vocab_size} token ids but the tokenizer in "
                f"{str(tokenizer.checkpoint_dir)!r} only {tokenizer.vocab_size}: ids from {tokenizer.vocab_size} on "
                "decode to nothing, so generation never samples them; give a tokenizer of the model's vocab_size to "
                "use them all",
                stacklevel=3,
            )

    @property
    def config(self) -> Config:
        return self.model.config

    @property
    def device(self) -> torch.device:
        return self.model.wte.weight.device

    @property
    def rank(self) -> int:
        """This process's rank, 0..world_size-1, once `distribute(generate_strategy="tensor_parallel")` runs the
        script in several processes; 0 otherwise."""
        return process_rank()

    @property
    def world_size(self) -> int:
        """How many processes run the script (1 unless distributed)."""
        return process_count()

    @classmethod
    def load(
        cls,
        model: str | Path | Config,
        init: Literal["pretrained", "random"] = "pretrained",
        tokenizer_dir: str | Path | None = None,
        access_token: str | None = None,
        distribute: Literal["auto"] | None = "auto",
        *,
        device: str | torch.device | None = None,
        dtype: torch.dtype | str | None = None,
        seed: int = 0,
        adapter: str | Path | list | dict | None = None,
    ) -> LLM:
        """Load a litllm, Hugging Face or LitGPT checkpoint directory, a Hub repo id or a registry name.

        Args:
            model: The checkpoint: a folder, a local model name, a Hub repo id (downloaded once), a catalog name; with
                init="random" a catalog name or a `Config`.
            init: "pretrained" loads the checkpoint's weights; "random" builds the architecture with fresh weights.
            tokenizer_dir: The tokenizer: a folder or any source `model` takes (a Hub repo id is found in the local
                cache first, else only its tokenizer files are downloaded). Needed with init="random".
            access_token: Hugging Face token for gated or private repos (default: $HF_TOKEN).
            distribute: "auto" puts the model on the GPU if there is one, else the CPU; None leaves it on the CPU in
                float32 (unless dtype says otherwise) for a Lightning Trainer to place, or for `distribute()`.
            device: Where to put the model instead ("cpu", "cuda:1", ...).
            dtype: Weights' dtype ("bfloat16", torch.float16, ...); default: the checkpoint's own.
            seed: Seed of the random initialisation.
            adapter: LoRA adapter folders (or runs) to apply unmerged: one, a list (named after their folders) or a
                {name: folder} dict; the first is active, `generate(..., adapter=name)` picks another per call. `model`
                may itself be an adapter folder: its base is then loaded from where the adapter says.
        """
        if init not in ("pretrained", "random"):
            raise ValueError(f"init must be 'pretrained' or 'random', got {init!r}")
        if distribute not in ("auto", None):
            raise ValueError(f"distribute must be 'auto' or None (placed later, by distribute()), got {distribute!r}")
        if device is not None:
            device = torch.device(device)
        else:
            device = default_device() if distribute == "auto" else torch.device("cpu")
        dtype = resolve_dtype(dtype) or (None if distribute == "auto" else torch.float32)
        tokenizer = Tokenizer(resolve_tokenizer_dir(tokenizer_dir, access_token)) if tokenizer_dir is not None else None
        if init == "random":
            config = model if isinstance(model, Config) else Config.from_name(str(model))
            if tokenizer is None:
                raise ValueError("init='random' needs tokenizer_dir: a folder with tokenizer.json or a Hub repo id")
            check_vocab_fits(tokenizer, config)
            torch.manual_seed(seed)
            with torch.device(device):
                gpt = GPT(config)
            gpt.reset_parameters()
            gpt.to(dtype or torch.float32).eval()
            return cls(gpt, tokenizer)
        if isinstance(model, Config):
            raise ValueError(
                "init='pretrained' needs a checkpoint path, a Hub repo id or a registry name, not a Config"
            )
        model, adapters = split_sources(model, adapter)
        found = locate(str(model))
        checkpoint_dir = found if isinstance(found, Path) else download(found, access_token)
        gpt = load_checkpoint(checkpoint_dir, device=device, dtype=dtype)
        attach_adapters(gpt, adapters)
        return cls(gpt, tokenizer or Tokenizer(checkpoint_dir), checkpoint_dir)

    # -- adapters --

    def load_adapter(self, source: str | Path, name: str | None = None) -> str:
        """Add a LoRA adapter folder (or a run holding one) to the model, unmerged, as `name` (default: the folder's
        name); returns the name, which `generate(..., adapter=name)` takes. The first adapter becomes the active one."""
        return attach_adapter(self.model, source, name)

    def merge_adapter(self, name: str | None = None) -> None:
        """Fold adapter `name` (default: the active one) into the model's weights, and drop every adapter."""
        name = self._checked_adapter(name or self.adapter)
        if name in (None, BASE):
            raise ValueError(f"no adapter to merge; loaded: {', '.join(self.adapters) or 'none'}")
        merge_adapter(self.model, name)

    @property
    def adapters(self) -> list[str]:
        """The names of the LoRA adapters over this model, in the order they were loaded."""
        return adapter_names(self.model)

    @property
    def adapter(self) -> str | None:
        """The adapter that generates when a call names none (None: the base model alone)."""
        route = self.model.__dict__.get("lora_route")
        return route.active if route is not None else None

    @adapter.setter
    def adapter(self, name: str | None) -> None:
        route_of(self.model).active = None if self._checked_adapter(name) == BASE else name

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
            stream: With one prompt, a `TextStream` of text pieces as they are decoded (a `TokenStream` of token ids
                with return_as_token_ids).
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
            return self._stream(requests, return_as_token_ids)
        results = [self._results(group, return_as_token_ids, chosen.logprobs) for group in self._run(requests)]
        if chosen.num_samples == 1:
            results = [r[0] for r in results]
        return results[0] if isinstance(prompt, str) else results

    @with_options()
    def chat(self, messages: str | list[dict[str, str]], stream: bool = False, **options: Any) -> Any:
        """The assistant's reply to a conversation, rendered with the checkpoint's chat format.

        Args:
            messages: [{"role": "system" | "user" | "assistant", "content": str}, ...], or one user message.
            stream: A `TextStream` of text pieces as they are decoded (token ids with return_as_token_ids).
        """
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        if "sys_prompt" in options:
            raise TypeError("chat() takes the system prompt as the first message, not sys_prompt=")
        as_token_ids = options.pop("return_as_token_ids", False)
        request = self.chat_request(messages, **options)
        if stream:
            return self._stream([request], as_token_ids)
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
        accelerator: Literal["auto", "cpu", "cuda", "gpu"] = "auto",
        devices: int | Literal["auto"] = "auto",
        precision: str | None = None,
        quantize: str | None = None,
        generate_strategy: Literal["sequential", "tensor_parallel"] | None = None,
        fixed_kv_cache_size: int | Literal["max_model_supported"] | None = None,
        compile: bool = False,
    ) -> LLM:
        """Place the model for generating, as LitGPT's `LLM.distribute` does.

        Args:
            accelerator: "cpu", "cuda" (or "gpu"), or "auto": a GPU if there is one.
            devices: How many devices; "auto" is 1, or every GPU with a generate_strategy (CPU processes for
                "tensor_parallel" on the CPU: give their number).
            precision: "32-true", "bf16-true", "16-true" (the weights cast), "bf16-mixed", "16-mixed" (weights kept,
                generation under autocast), or a dtype name.
            quantize: "int8": int8 weights with a scale per output on litllm's CPU kernel (blocks and an untied head;
                decoding reads a quarter of float32's bytes); "bnb.nf4" or "bnb.int8": the transformer layers with
                bitsandbytes (CPU and GPU).
            generate_strategy: "sequential" spreads the layers over `devices` GPUs, one after the other, for a model
                larger than one GPU. "tensor_parallel" splits every layer over `devices` processes, one per GPU (or,
                with accelerator="cpu", CPU processes that share the cores), each holding 1/N of the heads and MLP
                columns: from this call on your script runs once per device (start it as `python script.py`), every
                process must make the same generate calls, which give the same text on each, and `llm.rank == 0`
                guards what only one should print. n_head, n_query_groups and intermediate_size must divide by
                devices (devices=1 keeps the model whole, here); `llm.config` is then this rank's shard, and the model
                cannot be saved.
            fixed_kv_cache_size: Cap the KV cache, and so prompt + generated tokens, at this many tokens;
                "max_model_supported" or None: the model's block_size.
            compile: torch.compile the forward: 35-45 s of compiling on first use at pythia-160m size on a 2-core
                CPU, then 1.02-1.1x eager speed there (the linear layers keep this CPU's fastest kernels inside the
                graph, `litllm.cpu.packing.cpu_linear`); on accelerators it cuts the per-step overhead.
        """
        targets = placement(accelerator, devices, generate_strategy, self.device)
        cast, autocast = precision_dtypes(precision)
        if quantize is not None and autocast is not None:
            raise ValueError(f"quantize={quantize!r} does not combine with precision={precision!r}; use 'bf16-true'")
        self.fixed_kv_cache_size = check_kv_cache_size(fixed_kv_cache_size, self.config.block_size)
        targets = this_process_devices(self.model, targets, generate_strategy)  # tensor_parallel: starts the others
        for hook in self._placement_hooks:
            hook.remove()
        self.model.to(device=targets[0], dtype=cast)
        self._placement_hooks = spread_layers(self.model, targets) if len(targets) > 1 else []
        self._autocast = autocast
        if quantize is not None:
            from litllm.quantize import quantize_model

            with adapters_lifted(self.model):  # quantizing replaces the layers the adapters sit on
                quantize_model(self.model, quantize)
        if compile:
            self.model.forward = torch.compile(self.model.forward, dynamic=True)
        return self

    # -- training --

    @property
    def module(self) -> GPTModule:
        """The `GPTModule` (what `litllm pretrain` trains) of this very `GPT`, not a copy: `L.Trainer(...).fit(
        llm.module, data)` trains `llm.model` in place, with this tokenizer given to the data module. (A Trainer on a
        GPU hands the model back on the CPU at the end: `llm.distribute()` places it again.)"""
        if self._training_module is None or self._training_module.gpt is not self.model:
            from litllm.training.module import GPTModule

            object.__setattr__(self, "_training_module", GPTModule.from_model(self.model, self.tokenizer))
        return self._training_module

    def forward(
        self,
        input_ids: torch.Tensor,
        target_ids: torch.Tensor | None = None,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Logits (B, T, V) of input_ids (B, T); with target_ids (B, T) also the loss `litllm pretrain` trains on.

        target_ids[b, t] is the token that should follow input_ids[b, :t+1] (IGNORE_INDEX -100: no loss there), as
        the `labels` of litllm's data modules. LitGPT's batches hold the input tokens themselves there and its forward
        shifts them; litllm's data shifts when it builds the batch. loss_fn(logits, target_ids) replaces the mean
        cross-entropy.
        """
        logits = self.model(input_ids)  # (B, T, V)
        if target_ids is None:
            return logits
        if not self._targets_checked:  # a LitGPT-style batch would train the model to copy its input
            self._targets_checked = True
            if target_ids.shape == input_ids.shape and torch.equal(target_ids, input_ids):
                raise ValueError(
                    "target_ids equals input_ids: give the next tokens (target_ids[:, t] = input_ids[:, t + 1], -100 "
                    "where there is none) as litllm's data modules do: LitGPT shifts inside its forward, litllm not"
                )
        if loss_fn is not None:
            return logits, loss_fn(logits, target_ids)
        from litllm.training.module import logits_loss

        return logits, logits_loss(logits, target_ids)[0]

    def trainer_setup(self, trainer_ckpt: str | Path | None = None) -> None:
        """Ready the model for a Lightning Trainer (call it in a LightningModule's `setup`, as with LitGPT): training
        mode, plain weights instead of packed copies and, from trainer_ckpt, the weights of a Lightning checkpoint of a
        module that held this model (under any attribute name: "llm.model.wte.weight", "gpt.wte.weight", ...)."""
        from litllm.cpu.packing import prepack

        prepack(self.model, enabled=False)
        self.train()  # LLM.load gives it in eval mode, which a Trainer keeps
        if trainer_ckpt is not None:
            from litllm.training.module import weights_in_lightning_checkpoint

            self.model.load_state_dict(weights_in_lightning_checkpoint(trainer_ckpt, self.model))

    def save(self, out_dir: str | Path) -> Path:
        """Write a litllm checkpoint directory that `LLM.load` reads back identically."""
        from litllm.quantize import is_quantized

        if is_quantized(self.model):
            raise ValueError("a quantized model cannot be saved; save before distribute(quantize=...)")
        if self.adapters:
            raise ValueError(
                f"the model has LoRA adapters ({', '.join(self.adapters)}): fold one in first, llm.merge_adapter(name)"
            )
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
        limit = self.context_limit
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
            seed=options.seed if options.seed is not None else shared_seed(self.model),  # the same on every rank
            stop=[*stop_strings, *options.stop_strings],
            stop_ids=stop_ids,
            num_samples=options.num_samples,
            logprobs=options.logprobs,
            constraint=constraint,
            adapter=self._checked_adapter(options.adapter),
        )

    def _checked_adapter(self, name: str | None) -> str | None:
        if name not in (None, BASE, *self.adapters):
            raise ValueError(f"no adapter named {name!r}; loaded: {', '.join(self.adapters) or 'none'} (or 'base')")
        return name

    @property
    def context_limit(self) -> int:
        """Most tokens of prompt and generation together: the model's block_size, or the fixed_kv_cache_size."""
        size = self.fixed_kv_cache_size
        return size if isinstance(size, int) else self.config.block_size

    def _scheduler(self, rows: int) -> Scheduler:
        rows = max(1, min(rows, self.max_batch_size))
        return Generating(self.model, self.tokenizer, rows, self.context_limit, autocast=self._autocast)

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

    def _stream(self, requests: list[Request], token_ids: bool) -> TextStream:
        if len(requests) != 1 or requests[0].num_samples != 1:
            raise ValueError("stream=True takes one prompt and num_samples=1; pass a list without stream=True")
        scheduler = self._scheduler(1)
        (completion,) = scheduler.submit(requests[0])
        return (TokenStream if token_ids else TextStream)(scheduler, completion)

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


class Generating(Scheduler):
    """The engine's scheduler as an `LLM` runs it: in eval mode (a Trainer leaves the model in training mode, with
    dropout on; the mode comes back after each step) and under autocast for a mixed precision."""

    def __init__(self, *args: Any, autocast: torch.dtype | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.autocast = autocast

    def step(self) -> None:
        training = self.model.training
        if training:
            self.model.eval()
        try:
            with torch.autocast(self.device.type, self.autocast) if self.autocast else contextlib.nullcontext():
                super().step()
        finally:
            if training:
                self.model.train()


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"[:120]


def check_vocab_fits(tokenizer: Tokenizer, config: Config) -> None:
    if tokenizer.vocab_size > config.vocab_size:
        raise ValueError(
            f"the tokenizer has {tokenizer.vocab_size} tokens but the model's vocab_size is {config.vocab_size}: "
            "they do not belong together"
        )


__all__ = ["LLM", "ChatSession", "Generation", "named_configs"]
