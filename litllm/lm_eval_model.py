"""lm-evaluation-harness over a litllm model: `LitLLMLM`, lm-eval's model "litllm" (`pip install 'litllm[lm-eval]'`).

lm-eval finds its models in a registry filled by imports and has no plugin entry points, so this module registers
"litllm" when it is imported. Three ways in:

    python -m litllm.lm_eval_model run --model litllm --model_args pretrained=out/pretrain/run-1,dtype=float32 \\
        --tasks arc_easy --batch_size 8 --device cpu          # lm-eval's own CLI, with "litllm" registered

    import lm_eval, litllm.lm_eval_model                      # registers "litllm"
    lm_eval.simple_evaluate(model="litllm", model_args="pretrained=base", tasks=["arc_easy"])

    from litllm.lm_eval_model import LitLLMLM                 # or an LLM already loaded
    lm_eval.simple_evaluate(model=LitLLMLM(llm, batch_size=8), tasks=["arc_easy"])

With lm-eval's CLI, give batch_size and device as its own flags (--batch_size, --device), not in --model_args: it
passes both to every model itself (its --device defaults to cuda:0, which falls back to the CPU without CUDA).

Loglikelihoods are summed log-probabilities from one forward of each right-padded row (lm-eval's `acc`); litllm's
own `score_task(..., scoring="continuation")` picks the lowest *mean* loss instead, so the two accuracies differ
unless the choices have equal token counts. Generation runs through litllm's continuous-batching `Scheduler`.
Only this module imports lm-eval; nothing in litllm imports this module.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

try:
    from lm_eval.api.model import TemplateLM
    from lm_eval.api.registry import register_model
    from lm_eval.models.utils import normalize_gen_kwargs
    from lm_eval.utils import get_rolling_token_windows, make_disjoint_window
except ModuleNotFoundError as err:
    if not (err.name or "").startswith("lm_eval"):
        raise
    raise ModuleNotFoundError(
        "litllm.lm_eval_model needs lm-evaluation-harness: pip install 'litllm[lm-eval]'", name=err.name
    ) from err

from litllm.api import LLM
from litllm.inference.engine import Request, Scheduler
from litllm.inference.options import SamplingParams

PAD_ID = 0  # right padding: a causal model's logits at the real positions never see it
GEN_KWARGS = ("until", "max_gen_toks", "do_sample", "temperature", "top_k", "top_p")  # what generate_until follows

Row = tuple[Any, list[int], list[int]]  # ((context, continuation) or None, context ids, continuation ids)


@register_model("litllm")
class LitLLMLM(TemplateLM):
    """A litllm `LLM` as an lm-eval model: loglikelihoods by batched forwards, generation by litllm's engine.

    Args:
        pretrained: An `LLM`, or what `litllm evaluate` takes: a checkpoint folder, a run folder (its final/, else
            its newest step checkpoint), base|mid|sft|rl (the newest run of that phase), or a model name.
        batch_size: Rows per forward (loglikelihoods) and requests decoded together (generation).
        max_batch_size: A cap on batch_size (lm-eval's option; batch_size="auto" is not supported).
        device: cpu, cuda, ... (default: cuda when there is one); only when loading from a source.
        dtype: float32, bfloat16 or float16 (default: the checkpoint's); only when loading from a source.
        max_length: Most tokens a row holds (default: the model's context); longer rows lose tokens from the left.
        max_gen_toks: Tokens generated when a request does not say.
    """

    def __init__(
        self,
        pretrained: LLM | str | os.PathLike,
        batch_size: int | str = 8,
        max_batch_size: int | None = None,
        device: str | None = None,
        dtype: str | None = None,
        max_length: int | None = None,
        max_gen_toks: int = 256,
    ) -> None:
        super().__init__()
        self.llm = load_llm(pretrained, device, dtype)
        self.batch_size = positive_int("batch_size", batch_size)
        if max_batch_size is not None:
            self.batch_size = min(self.batch_size, positive_int("max_batch_size", max_batch_size))
        limit = self.llm.context_limit
        self.max_length = limit if max_length is None else positive_int("max_length", max_length)
        if self.max_length > limit:
            raise ValueError(f"max_length={self.max_length} exceeds the model's context of {limit} tokens")
        self.max_gen_toks = positive_int("max_gen_toks", max_gen_toks)
        self._device = self.llm.device
        self.warned: set[str] = set()

    # -- tokens --

    @property
    def eot_token_id(self) -> int:
        tokenizer = self.llm.tokenizer
        eot = tokenizer.eos_id if tokenizer.eos_id is not None else tokenizer.bos_id
        if eot is None:
            raise ValueError(f"the tokenizer in {tokenizer.checkpoint_dir} has neither an EOS nor a BOS token")
        return eot

    @property
    def prefix_token_id(self) -> int:
        """What an empty context (and each rolling window's start) is conditioned on: BOS, else EOS."""
        bos = self.llm.tokenizer.bos_id
        return bos if bos is not None else self.eot_token_id

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs: Any) -> list[int]:
        """Token ids of `string`; add_special_tokens=None adds BOS when the checkpoint does (never twice)."""
        return self.llm.tokenizer.encode(string, bos=add_special_tokens)

    def tok_decode(self, tokens: list[int], skip_special_tokens: bool = False) -> str:
        return self.llm.tokenizer.decode(tokens, skip_special_tokens=skip_special_tokens)

    # -- loglikelihoods --

    def _loglikelihood_tokens(self, requests: list[Row], disable_tqdm: bool = False, **kwargs: Any) -> list[Any]:
        """(summed log-probability of the continuation, whether it is the greedy one) per request, in their order.

        Rows run longest first in right-padded batches of batch_size, so similar lengths share a batch."""
        rows = [self.row(context, continuation) for _, context, continuation in requests]
        order = sorted(range(len(rows)), key=lambda i: -len(rows[i][0]))
        found: list[tuple[float, bool]] = [(0.0, False)] * len(rows)
        with evaluating(self.llm.model) as model, torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                batch = order[start : start + self.batch_size]
                idx = torch.full((len(batch), max(len(rows[i][0]) for i in batch)), PAD_ID, dtype=torch.long)
                for b, i in enumerate(batch):
                    idx[b, : len(rows[i][0])] = torch.tensor(rows[i][0])
                logits = model(idx.to(self.device))  # (B, T, V)
                for b, i in enumerate(batch):
                    found[i] = continuation_score(logits[b], len(rows[i][0]), rows[i][1])
        for (pair, _, _), answer in zip(requests, found, strict=True):
            if pair is not None:
                self.cache_hook.add_partial("loglikelihood", pair, answer)
        return found

    def row(self, context: list[int], continuation: list[int]) -> tuple[list[int], list[int]]:
        """The model's input for a request (its last max_length + 1 tokens but the final one) and the continuation."""
        if not context or not continuation:
            raise ValueError(
                f"a loglikelihood request needs context and continuation tokens, got {len(context)} and "
                f"{len(continuation)}"
            )
        if len(continuation) > self.max_length:
            raise ValueError(f"a continuation of {len(continuation)} tokens does not fit max_length={self.max_length}")
        return (context + continuation)[-(self.max_length + 1) :][:-1], continuation

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
        """The log-probability of each whole string, scored in windows of max_length tokens (perplexity tasks)."""
        totals = []
        for request in requests:
            (text,) = request.args
            windows = [
                (None, *make_disjoint_window(w))
                for w in get_rolling_token_windows(
                    token_list=self.tok_encode(text, add_special_tokens=False),
                    prefix_token=self.prefix_token_id,
                    max_seq_len=self.max_length,
                    context_len=1,
                )
            ]
            total = sum(logprob for logprob, _ in self._loglikelihood_tokens(windows)) if windows else 0.0
            self.cache_hook.add_partial("loglikelihood_rolling", (text,), total)
            totals.append(total)
        return totals

    # -- generation --

    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        """Each request's continuation up to the first of its `until` strings (or EOS, or max_gen_toks tokens), all
        requests decoded together in one continuously refilled batch."""
        tokenizer = self.llm.tokenizer
        eos = [] if tokenizer.eos_id is None else [tokenizer.eos_id]
        stop_ids = list(dict.fromkeys([*tokenizer.stop_ids, *eos]))  # EOS ends a completion as in LLM.generate
        scheduler = Scheduler(self.llm.model, tokenizer, max_batch_size=self.batch_size, max_seq_length=self.max_length)
        groups = []
        for seed, request in enumerate(requests):
            context, gen_kwargs = request.args
            ids, room, params, until = self.generation(context, gen_kwargs)
            groups.append(scheduler.submit(Request(ids, room, params, seed=seed, stop=until, stop_ids=stop_ids)))
        with evaluating(self.llm.model):
            scheduler.run()
        texts = [completions[0].text for completions in groups]
        for request, text in zip(requests, texts, strict=True):
            self.cache_hook.add_partial("generate_until", request.args, text)
        return texts

    def generation(self, context: str, gen_kwargs: dict[str, Any]) -> tuple[list[int], int, SamplingParams, list[str]]:
        """A request's prompt ids (cropped from the left to leave room for max_gen_toks), tokens to generate, sampling
        and stop strings."""
        if not isinstance(gen_kwargs, dict):
            raise TypeError(f"generate_until's gen_kwargs must be a dict, got {gen_kwargs!r}")
        kwargs = dict(normalize_gen_kwargs(gen_kwargs, self.max_gen_toks))
        ignored = sorted(set(kwargs) - set(GEN_KWARGS) - self.warned)
        if ignored:
            self.warned.update(ignored)
            warnings.warn(f"litllm ignores the gen_kwargs {ignored}; it follows {list(GEN_KWARGS)}", stacklevel=3)
        until = [s for s in kwargs["until"] if s]
        max_gen_toks = kwargs["max_gen_toks"]
        ids = self.tok_encode(context)
        ids = ids[-max(1, self.max_length - max_gen_toks) :]
        temperature = float(kwargs.get("temperature") or 0.0) if kwargs.get("do_sample") else 0.0
        params = SamplingParams(temperature, kwargs.get("top_k"), float(kwargs.get("top_p", 1.0)))
        return ids, min(max_gen_toks, self.max_length - len(ids)), params, until


def continuation_score(logits: torch.Tensor, length: int, continuation: list[int]) -> tuple[float, bool]:
    """(summed log-probability of `continuation`, whether each of its tokens is the argmax) from the logits (T, V) of
    a row whose first `length` positions are real and end just before the continuation's last token."""
    n = len(continuation)
    # position length - n predicts the continuation's first token
    logprobs = F.log_softmax(logits[length - n : length].float(), dim=-1)  # (n, V)
    targets = torch.tensor(continuation, device=logits.device)
    picked = logprobs.gather(1, targets[:, None])[:, 0]  # (n,)
    return float(picked.sum()), bool((logprobs.argmax(dim=-1) == targets).all())


@contextlib.contextmanager
def evaluating(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """`model` in eval mode for the block, then back in the mode it was in."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def load_llm(pretrained: Any, device: str | None, dtype: str | None) -> LLM:
    """`pretrained` itself when it is an `LLM`, else the model its source names, loaded on `device` in `dtype`."""
    if isinstance(pretrained, LLM):
        if device is not None or dtype is not None:
            raise ValueError("device and dtype apply when loading from a source; move or cast the LLM given instead")
        return pretrained
    if not isinstance(pretrained, (str, os.PathLike)) or not str(pretrained):
        raise TypeError(
            "pretrained must be an LLM, a checkpoint or run folder, base|mid|sft|rl or a model name, "
            f"got {pretrained!r}"
        )
    from litllm.checkpoint.layout import checkpoint_kind
    from litllm.checkpoint.run_folders import final_checkpoint

    if device is not None and torch.device(device).type == "cuda" and not torch.cuda.is_available():
        # lm-eval's CLI passes --device cuda:0 unless told otherwise; its own HFLM falls back the same way
        warnings.warn(f"device={device!r} but CUDA is not available: loading on the CPU", stacklevel=3)
        device = "cpu"

    path = Path(pretrained).expanduser()
    if path.is_dir() and checkpoint_kind(path) is None:  # a run folder: its final/, else its newest step checkpoint
        final = final_checkpoint(path)
        if final is None:
            from litllm.api import resolve_dtype
            from litllm.tasks.evaluate import load_source

            model, tokenizer = load_source(path, device)
            return LLM(model.to(resolve_dtype(dtype) or next(model.parameters()).dtype), tokenizer)
        pretrained = final
    return LLM.load(str(pretrained), device=device, dtype=dtype)


def positive_int(name: str, value: Any) -> int:
    """`value` as an integer >= 1 (lm-eval's CLI passes numbers as strings)."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if isinstance(value, bool) or number < 1 or str(number) != str(value).strip():
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return number


if __name__ == "__main__":  # lm-eval's CLI with "litllm" registered: python -m litllm.lm_eval_model run --model litllm
    from lm_eval.__main__ import cli_evaluate

    sys.argv[0] = "lm_eval"
    cli_evaluate()
