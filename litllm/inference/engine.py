"""Generation: stop conditions and a continuous-batching decode loop over the model's KV cache (sampling: `sampling`).

A `Scheduler` owns a KV cache of a few rows ("slots"). Requests admitted together are prefilled in one forward pass,
their prompts packed one after the other, each attending only to itself and filling its own free slot as it would
alone; then every active row decodes one token per step, each at its own position. Rows finish independently and
free their slot for the next waiting request: one loop serves `LLM.generate` over a list of prompts, streams, and the
server's continuous batching.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import torch

from litllm.cpu import kernels, packing
from litllm.cpu import step as cpu_step
from litllm.cpu.attention import kv_cache_dtype
from litllm.inference.options import SamplingParams
from litllm.inference.sampling import first_argmax, process_logits, sample
from litllm.lora.layers import BASE, adapter_names, applying
from litllm.model import GPT, KVCache

if TYPE_CHECKING:
    from litllm.tokenizer import StreamDecoder, Tokenizer


class Constraint(Protocol):
    """Limits which tokens may come next (schema-constrained JSON, for one)."""

    done: bool

    def allowed(self, budget: int) -> torch.Tensor:
        """Bool (V,) of the tokens that may come next, when at most `budget` more tokens may be generated."""

    def fits(self, token_id: int, budget: int) -> bool:
        """Whether the output can still be finished within `budget` - 1 tokens after `token_id` (an allowed token)."""

    def advance(self, token_id: int) -> None: ...

    def min_tokens(self) -> int: ...


@dataclass
class Request:
    """One prompt to continue: its tokens, how to sample, when to stop, and how many samples to draw."""

    prompt: Sequence[int]
    max_new_tokens: int = 50
    params: SamplingParams = SamplingParams()
    seed: int | None = None
    stop: Sequence[str] = ()
    stop_ids: Sequence[int] = ()
    num_samples: int = 1
    logprobs: bool = False
    constraint: Callable[[], Constraint] | None = None
    adapter: str | None = None  # the LoRA adapter that generates it: None the model's active one, "base" none

    def __post_init__(self) -> None:
        if isinstance(self.prompt, torch.Tensor):
            self.prompt = self.prompt.flatten().tolist()
        self.prompt = [int(t) for t in self.prompt]
        if not self.prompt:
            raise ValueError("the prompt is empty: give at least one token")
        if not isinstance(self.max_new_tokens, int) or isinstance(self.max_new_tokens, bool) or self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be an integer >= 1, got {self.max_new_tokens!r}")
        if isinstance(self.stop, str):
            self.stop = [self.stop]
        if not isinstance(self.stop, (list, tuple)) or not all(isinstance(s, str) and s for s in self.stop):
            raise TypeError(f"stop must be a string or a list of non-empty strings, got {self.stop!r}")
        if not isinstance(self.num_samples, int) or self.num_samples < 1:
            raise ValueError(f"num_samples must be an integer >= 1, got {self.num_samples!r}")
        if self.seed is not None and (not isinstance(self.seed, int) or isinstance(self.seed, bool)):
            raise TypeError(f"seed must be an integer or None, got {self.seed!r}")


@dataclass(eq=False)
class Completion:
    """One sample of a request as it is generated: its tokens, its text so far, and why it ended."""

    request: Request
    index: int
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    text: str = ""
    finish_reason: str | None = None  # "stop", "length" or "cancelled"
    pending: deque[str] = field(default_factory=deque)  # text pieces not yet taken by a reader
    slot: int = -1
    length: int = 0  # tokens in this row's cache
    decoder: StreamDecoder | None = None
    constraint: Constraint | None = None
    held: str = ""  # text that may be the start of a stop string
    seen: torch.Tensor | None = None  # (V,) bool: tokens of the prompt and the output, for the repetition penalty
    counts: torch.Tensor | None = None  # (V,) int: how often each token was generated, for presence/frequency penalties

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None

    @property
    def prompt_tokens(self) -> int:
        return len(self.request.prompt)

    def emit(self, piece: str) -> bool:
        """Adds decoded text; returns True when a stop string has appeared (the text ends before it)."""
        held = self.held + piece
        stops = self.request.stop
        hits = [i for i in (held.find(s) for s in stops) if i >= 0]
        if hits:
            self._publish(held[: min(hits)])
            self.held = ""
            return True
        # hold back the longest tail that could still grow into a stop string
        keep = max((n for s in stops for n in range(1, min(len(s), len(held) + 1)) if held.endswith(s[:n])), default=0)
        self._publish(held[: len(held) - keep])
        self.held = held[len(held) - keep :]
        return False

    def _publish(self, text: str) -> None:
        if text:
            self.text += text
            self.pending.append(text)


class _Group:
    """The completions of one request and the random generator they share."""

    def __init__(self, request: Request, completions: list[Completion], device: torch.device) -> None:
        self.request = request
        self.completions = completions
        self.generator = torch.Generator(device=device).manual_seed(request.seed) if request.seed is not None else None

    def active(self) -> list[Completion]:
        return [c for c in self.completions if not c.finished]

    @property
    def plain_greedy(self) -> bool:
        """Argmax of the raw logits: no bias or penalty, no constraint, no log-probabilities to report."""
        r = self.request
        return r.params.temperature == 0 and not r.params.adjusts_raw_logits and not r.logprobs and not r.constraint


PREFILL_TOKENS = 2048
"""Prompts admitted together run in one prefill forward of at most this many tokens: it reads the weights once and
multiplies larger matrices (16 prompts of 8-64 tokens, pythia-160m: 410 -> 245 ms in float32, 228 -> 116 ms in bfloat16,
AMD EPYC, 2 threads). A longer prompt runs alone."""


class Scheduler:
    """Continuous batching: requests wait for a free cache row, join the running batch, and leave when done.

    Call `submit` to queue a request and `step` to advance every active row by one token.

    `prepack`: on the CPU, linear weights can be replaced by packed copies (`packing.prepack(model, release=True)`:
    no extra memory; in `cpu_gemm` tiles where that kernel runs, else for oneDNN; 1.5-2.5x decoding speed on an AMD
    EPYC). None (default): at the first prompt, and at the first decode step of one row and of several, if the packed
    kernel is this CPU's fastest for such steps, timed on the model's own weights (`packing.pack_if_faster`), or if
    the model is one whose decoding step then runs in one call (`litllm.cpu.step`); True: at the first prompt; False:
    never.
    """

    def __init__(
        self,
        model: GPT,
        tokenizer: Tokenizer | None = None,
        max_batch_size: int = 16,
        max_seq_length: int | None = None,
        prepack: bool | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        self.model = model
        self.tokenizer = tokenizer
        self.max_batch_size = max_batch_size
        self.max_seq_length = min(max_seq_length or model.config.block_size, model.config.block_size)
        self.device = model.wte.weight.device
        # ids the tokenizer cannot decode are never sampled: a model may have more rows than its tokenizer has tokens
        # (random init, padded vocabularies); the logits are sliced to the tokenizer's, which costs nothing
        self.vocab_size = min(model.config.vocab_size, tokenizer.vocab_size) if tokenizer else model.config.vocab_size
        self.waiting: deque[_Group] = deque()
        self.groups: list[_Group] = []  # admitted requests with rows in the cache
        self.slots: list[Completion | None] = []
        self.caches: list[KVCache] = []
        self.prepack = prepack
        self.pack_decided: set[bool] = set()  # kinds of decode step (one row?) whose packing was decided

    def submit(self, request: Request) -> list[Completion]:
        """Queue a request; its completions fill in as `step` runs."""
        n = len(request.prompt)
        if n >= self.max_seq_length:
            raise ValueError(f"prompt is {n} tokens long; the model's context is {self.max_seq_length} tokens")
        if request.num_samples > self.max_batch_size:
            raise ValueError(f"num_samples={request.num_samples} exceeds max_batch_size={self.max_batch_size}")
        if request.adapter not in (None, BASE, *adapter_names(self.model)):
            have = ", ".join(adapter_names(self.model)) or "none"
            raise ValueError(f"no adapter named {request.adapter!r}; the model has: {have}")
        outside = [t for t in request.params.logit_bias or {} if t >= self.vocab_size]
        if outside:
            raise ValueError(f"logit_bias key {outside[0]} is not a token id of this model: 0 to {self.vocab_size - 1}")
        completions = [Completion(request, i) for i in range(request.num_samples)]
        for c in completions:
            if self.tokenizer is not None:
                c.decoder = self.tokenizer.stream_decoder()
            if request.constraint is not None:
                c.constraint = request.constraint()
                room = min(request.max_new_tokens, self.max_seq_length - n)
                if c.constraint.min_tokens() > room:
                    raise ValueError(
                        f"max_new_tokens={room} (what the context leaves after the prompt, or what was asked) is "
                        f"too small for the schema: its shortest valid output takes {c.constraint.min_tokens()} tokens"
                    )
        self.waiting.append(_Group(request, completions, self.device))
        return completions

    def cancel(self, request: Request) -> None:
        """Stop a request now, queued or running, and free its rows."""
        for group in [*self.waiting, *self.groups]:
            if group.request is request:
                for c in group.active():
                    self._finish(c, "cancelled")
        self.waiting = deque(g for g in self.waiting if g.request is not request)
        self.groups = [g for g in self.groups if g.active()]

    @property
    def busy(self) -> bool:
        return bool(self.waiting or self.groups)

    @torch.inference_mode()
    def step(self) -> None:
        """Admit waiting requests into free rows (prefill), then decode one token for every active row."""
        self._admit()
        rows = [c for c in self.slots if c is not None and not c.finished]
        if rows:
            self._decode(rows)
        self.groups = [g for g in self.groups if g.active()]
        if not self.busy:
            self.caches = []  # give the memory back between bursts of work
            self.slots = []

    def run(self) -> None:
        """Step until every submitted request is done."""
        while self.busy:
            self.step()

    def _admit(self) -> None:
        """Give waiting requests free rows, in order while they fit; grow the cache once for all, then prefill."""
        taken = {i for i, c in enumerate(self.slots) if c is not None}
        admitted: list[_Group] = []
        while self.waiting:
            group = self.waiting[0]
            free = [i for i in range(self.max_batch_size) if i not in taken]
            if len(free) < len(group.completions):
                break
            self.waiting.popleft()
            for c, slot in zip(group.completions, free, strict=False):
                c.slot = slot
                taken.add(slot)
            admitted.append(group)
        if not admitted:
            return
        rows = max(c.slot for g in admitted for c in g.completions) + 1
        self._reserve(rows, max(self._length_needed(g.request) for g in admitted))
        for group in admitted:
            for c in group.completions:
                self.slots[c.slot] = c
            self.groups.append(group)
        batch: list[_Group] = []  # prompts prefilled together, up to PREFILL_TOKENS (a longer one runs alone)
        tokens = 0
        for group in sorted(admitted, key=lambda g: g.request.adapter or ""):  # one adapter a prefill
            n = len(group.request.prompt)
            if batch and (tokens + n > PREFILL_TOKENS or group.request.adapter != batch[0].request.adapter):
                self._prefill(batch)
                batch, tokens = [], 0
            batch.append(group)
            tokens += n
        self._prefill(batch)

    def _length_needed(self, request: Request) -> int:
        return min(len(request.prompt) + request.max_new_tokens, self.max_seq_length)

    def _reserve(self, rows: int, length: int) -> None:
        """Grow the cache (copying what it holds) to at least `rows` rows of `length` slots."""
        self.slots += [None] * (rows - len(self.slots))
        have_rows, have_len = (self.caches[0].k.shape[0], self.caches[0].k.shape[2]) if self.caches else (0, 0)
        if rows <= have_rows and length <= have_len:
            return
        # grow geometrically so that a stream of requests reallocates a few times, not every time
        new_rows = min(self.max_batch_size, max(rows, 2 * have_rows))
        new_len = min(self.max_seq_length, max(length, 2 * have_len))
        c, grown = self.model.config, []
        for block, old in zip(self.model.h, self.caches or [None] * c.n_layer, strict=True):
            device = next(block.parameters()).device  # beside its layer, in a model spread over devices
            dtype = kv_cache_dtype(self.model.wte.weight.dtype, device)
            new = KVCache.empty(new_rows, c.n_query_groups, new_len, c.head_size, device, dtype)
            if old is not None:
                new.k[:have_rows, :, :have_len] = old.k
                new.v[:have_rows, :, :have_len] = old.v
            grown.append(new)
        self.caches = grown

    def _prefill(self, groups: list[_Group]) -> None:
        """Run each request's prompt once, into its first row, in one forward for all (packed one after the other,
        each attending to itself alone: GPT.forward's `segments`); then copy the cache to a request's other rows and
        sample each row's first token."""
        if self.prepack is not False and not self.pack_decided:
            # decided before the first forward: the prompt then runs on packed weights too, where unpacked ones would
            # make oneDNN reorder each weight into a temporary copy
            self._pack_if_faster(one_row=self.max_batch_size == 1)
        prompts = [g.request.prompt for g in groups]
        idx = torch.tensor([[t for prompt in prompts for t in prompt]], dtype=torch.long, device=self.device)  # (1, T)
        with applying(self.model, [groups[0].request.adapter]):
            logits = self._prefill_logits(groups, idx)
        for group, row in zip(groups, logits.split(1), strict=True):
            self._start(group, row)

    def _prefill_logits(self, groups: list[_Group], idx: torch.Tensor) -> torch.Tensor:
        """The last logits (groups, V) of each request's prompt, packed in idx (1, T)."""
        if len(groups) == 1:
            first = groups[0].completions[0].slot
            caches = [cache.rows(first, first + 1) for cache in self.caches]
            logits = self.model(idx, 0, last_only=True, kv_caches=caches)[:, -1, : self.vocab_size]  # (1, V)
        else:
            segments = [(g.completions[0].slot, len(g.request.prompt)) for g in groups]
            logits = self.model(idx, 0, last_only=True, segments=segments, kv_caches=self.caches)
            logits = logits[:, -1, : self.vocab_size]  # (groups, V)
        return logits

    def _start(self, group: _Group, logits: torch.Tensor) -> None:
        """After a request's prompt ran into its first row: its cache into its other rows, and each row's first
        token sampled from the prompt's last logits (1, V)."""
        request, completions = group.request, group.completions
        first, n = completions[0].slot, len(request.prompt)
        seen = None
        if request.params.repetition_penalty != 1.0:  # the prompt's tokens, the same for every row of the request
            seen = torch.zeros(self.vocab_size, dtype=torch.bool, device=self.device)
            prompt = torch.tensor(request.prompt, device=self.device)
            seen[prompt[prompt < self.vocab_size]] = True
        for c in completions:
            if c.slot != first:
                for cache in self.caches:
                    cache.k[c.slot, :, :n] = cache.k[first, :, :n]
                    cache.v[c.slot, :, :n] = cache.v[first, :, :n]
            c.length = n
            if seen is not None:
                c.seen = seen.clone()
            if request.params.presence_penalty or request.params.frequency_penalty:
                c.counts = torch.zeros(self.vocab_size, dtype=torch.int32, device=self.device)
        self._choose(group, completions, logits.expand(len(completions), -1))

    def _pack_if_faster(self, one_row: bool) -> None:
        """Pack the model's linear weights in place of their plain copies if asked to, or if this CPU runs the
        packed kernel fastest for this kind of step (`packing.pack_if_faster`)."""
        self.pack_decided.add(one_row)
        if self.device.type == "cpu":
            # packed, a model `cpu_step` covers decodes in one call a step, which beats any kernel's lead
            one_call = cpu_step.covers(self.model) and not kernels.fixed_kernels()
            packing.pack_if_faster(self.model, one_row, force=bool(self.prepack) or one_call)

    def _decode(self, rows: list[Completion]) -> None:
        """One forward pass over the cache rows in use: each active row feeds its last token at its own position."""
        R = max(c.slot for c in rows) + 1
        if self.prepack is not False and (R == 1) not in self.pack_decided:
            self._pack_if_faster(one_row=R == 1)
        tokens, positions = [0] * R, [0] * R  # idle rows feed token 0 to their slot 0, and are ignored
        for c in rows:
            tokens[c.slot], positions[c.slot] = c.token_ids[-1], c.length
        longest = max(c.length for c in rows)
        if len(rows) == R and all(c.length == longest for c in rows):
            input_pos: int | torch.Tensor = longest  # every row at one position: no mask needed
        else:
            input_pos = torch.tensor(positions, device=self.device)
        idx = torch.tensor(tokens, device=self.device).view(R, 1)
        caches = [cache.rows(0, R) for cache in self.caches]
        adapters: list[str | None] = [None] * R  # each row's adapter; one base matmul for all rows
        for c in rows:
            adapters[c.slot] = c.request.adapter
        with applying(self.model, adapters):
            logits = self.model(idx, input_pos, length=longest + 1, kv_caches=caches)[
                :, -1, : self.vocab_size
            ]  # (R, V)
        for c in rows:
            c.length += 1
        plain: list[Completion] = []  # greedy rows with nothing to adjust: one argmax for all of them
        for group in self.groups:
            active = [c for c in group.completions if not c.finished and self.slots[c.slot] is c]
            if active and group.plain_greedy:
                plain += active
            elif active:
                self._choose(group, active, logits[[c.slot for c in active]])
        if plain:
            slots = [c.slot for c in plain]
            best = first_argmax(logits if slots == list(range(R)) else logits[slots])
            for c, token in zip(plain, best.tolist(), strict=True):
                self._accept(c, token, None)

    def _choose(self, group: _Group, completions: list[Completion], logits: torch.Tensor) -> None:
        """Sample the next token of each completion of one request from its logits (n, V)."""
        request = group.request
        logits = logits.float()
        raw = logits
        if completions[0].seen is not None:
            seen = torch.stack([c.seen for c in completions])
        else:
            seen = None
        counts = torch.stack([c.counts for c in completions]) if completions[0].counts is not None else None
        if completions[0].constraint is not None:
            # the schema's mask first: top-k / top-p then choose among tokens that keep the output valid
            budgets = [
                min(request.max_new_tokens - len(c.token_ids), self.max_seq_length - c.length) for c in completions
            ]
            allowed = torch.stack([c.constraint.allowed(b) for c, b in zip(completions, budgets, strict=True)])
            width = min(logits.shape[1], allowed.shape[1])
            allowed = allowed[:, :width].to(self.device)
            logits = logits[:, :width].masked_fill(~allowed, float("-inf"))
            seen = seen[:, :width] if seen is not None else None
            counts = counts[:, :width] if counts is not None else None
        masked = logits
        logits = process_logits(masked, request.params, seen, counts)
        tokens = sample(logits, request.params, group.generator)
        if completions[0].constraint is not None:
            self._refit(group, completions, masked, (seen, counts), tokens, budgets)
        logprobs = raw.log_softmax(dim=-1).gather(1, tokens[:, None])[:, 0].tolist() if request.logprobs else None
        for i, (c, token) in enumerate(zip(completions, tokens.tolist(), strict=True)):
            self._accept(c, token, logprobs[i] if logprobs else None)

    def _refit(
        self,
        group: _Group,
        completions: list[Completion],
        masked: torch.Tensor,
        history: tuple[torch.Tensor | None, torch.Tensor | None],
        tokens: torch.Tensor,
        budgets: list[int],
    ) -> None:
        """Sample again, without it, a token after which a constrained output could no longer be finished in time:
        the same as masking every such token, at the cost of one check per sampled token."""
        params = group.request.params
        for i, c in enumerate(completions):
            while not c.constraint.fits(int(tokens[i]), budgets[i]):
                masked[i, tokens[i]] = float("-inf")
                seen, counts = (None if h is None else h[i : i + 1] for h in history)  # this row's (seen, counts)
                row = process_logits(masked[i : i + 1], params, seen, counts)
                tokens[i] = sample(row, params, group.generator)[0]

    def _accept(self, c: Completion, token: int, logprob: float | None) -> None:
        request = c.request
        c.token_ids.append(token)
        if logprob is not None:
            c.logprobs.append(logprob)
        if c.seen is not None:
            c.seen[token] = True
        if c.counts is not None:
            c.counts[token] += 1
        if token in request.stop_ids:
            return self._finish(c, "stop")
        if c.constraint is not None:
            c.constraint.advance(token)
        if c.decoder is not None and c.emit(c.decoder.push(token)):
            return self._finish(c, "stop", flush=False)
        if c.constraint is not None and c.constraint.done:
            return self._finish(c, "stop")
        if len(c.token_ids) >= request.max_new_tokens or c.length + 1 > self.max_seq_length:
            return self._finish(c, "length")

    def _finish(self, c: Completion, reason: str, flush: bool = True) -> None:
        if flush and c.decoder is not None and reason != "cancelled":
            if c.emit(c.decoder.flush()):
                reason = "stop"
            c._publish(c.held)
            c.held = ""
        c.finish_reason = reason
        if 0 <= c.slot < len(self.slots) and self.slots[c.slot] is c:
            self.slots[c.slot] = None


class TextStream(Iterator[str]):
    """Text pieces of one completion as they are decoded (never a broken character); `close()` cancels it.

    prompt_tokens, completion_tokens, finish_reason, token_ids and logprobs describe the generation so far.
    """

    def __init__(self, scheduler: Scheduler, completion: Completion) -> None:
        self.scheduler = scheduler
        self.completion = completion
        self.on_finish: Callable[[TextStream], None] | None = None  # called once, when the last piece was read

    def __next__(self) -> str:
        c = self.completion
        while not c.pending:
            if c.finished:
                self._done()
                raise StopIteration
            self.scheduler.step()
        return c.pending.popleft()

    def close(self) -> None:
        """Stop generating; `text` keeps what was generated up to here."""
        if not self.completion.finished:
            self.scheduler.cancel(self.completion.request)
            self.completion.pending.clear()
        self._done()

    def _done(self) -> None:
        if self.on_finish is not None:
            on_finish, self.on_finish = self.on_finish, None
            on_finish(self)

    def __enter__(self) -> TextStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def text(self) -> str:
        return self.completion.text

    @property
    def prompt_tokens(self) -> int:
        return self.completion.prompt_tokens

    @property
    def completion_tokens(self) -> int:
        return len(self.completion.token_ids)

    @property
    def token_ids(self) -> list[int]:
        return self.completion.token_ids

    @property
    def logprobs(self) -> list[float]:
        return self.completion.logprobs

    @property
    def finish_reason(self) -> str | None:
        return self.completion.finish_reason


class TokenStream(TextStream):
    """The token ids of one completion as they are generated (those `return_as_token_ids` gives, stop id included);
    `close()` cancels it."""

    def __init__(self, scheduler: Scheduler, completion: Completion) -> None:
        super().__init__(scheduler, completion)
        self.sent = 0

    def __next__(self) -> int:  # type: ignore[override] - ids, not text
        c = self.completion
        while self.sent == len(c.token_ids):
            if c.finished:
                self._done()
                raise StopIteration
            self.scheduler.step()
        self.sent += 1
        return c.token_ids[self.sent - 1]


def generate_tokens(model: GPT, request: Request) -> Iterator[int]:
    """Token ids of a single-sample request, one per decode step (a stop token is yielded and ends it)."""
    scheduler = Scheduler(model, max_batch_size=1)
    (completion,) = scheduler.submit(request)
    sent = 0
    while True:
        while sent < len(completion.token_ids):
            yield completion.token_ids[sent]
            sent += 1
        if completion.finished:
            return
        scheduler.step()


class Engine:
    """nanochat-style generation over token ids: several samples of one prompt share a single prefill."""

    def __init__(self, model: GPT, tokenizer: Tokenizer, max_batch_size: int = 64) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.max_batch_size = max_batch_size

    def generate(
        self,
        tokens: Sequence[int],
        num_samples: int = 1,
        max_tokens: int | None = 256,
        temperature: float = 1.0,
        top_k: int | None = None,
        seed: int | None = None,
    ) -> Iterator[tuple[list[int], list[int]]]:
        """Yield per step a column of one token per sample and its mask: 1 sampled, 0 after the sample ended.

        max_tokens: at most this many tokens a sample (None: as many as the context holds); seed: None draws fresh
        randomness on every call, an integer repeats the same samples."""
        room = max(self.model.config.block_size - len(tokens), 1)
        request = Request(
            list(tokens),
            room if max_tokens is None else min(max_tokens, room),
            SamplingParams(temperature, top_k),
            seed=seed,
            stop_ids=self.stop_ids,
            num_samples=num_samples,
        )
        scheduler = Scheduler(self.model, max_batch_size=max(num_samples, 1))
        completions = scheduler.submit(request)
        end = self.stop_ids[0] if self.stop_ids else 0
        sent = 0  # tokens of each sample already yielded
        while True:
            while any(len(c.token_ids) > sent for c in completions):
                yield (
                    [c.token_ids[sent] if len(c.token_ids) > sent else end for c in completions],
                    [1 if len(c.token_ids) > sent else 0 for c in completions],
                )
                sent += 1
            if all(c.finished for c in completions):
                return
            scheduler.step()

    def generate_batch(
        self, tokens: Sequence[int], num_samples: int = 1, **kwargs: object
    ) -> tuple[list[list[int]], list[list[int]]]:
        """Each sample's prompt + generated tokens (stop tokens left out), and masks: 0 prompt, 1 generated."""
        results = [list(tokens) for _ in range(num_samples)]
        masks = [[0] * len(tokens) for _ in range(num_samples)]
        done = [False] * num_samples
        for column, column_masks in self.generate(tokens, num_samples, **kwargs):
            for i, (token, mask) in enumerate(zip(column, column_masks, strict=True)):
                if done[i] or not mask or token in self.stop_ids:
                    done[i] = True
                    continue
                results[i].append(token)
                masks[i].append(mask)
        return results, masks

    @property
    def stop_ids(self) -> list[int]:
        ids = list(self.tokenizer.stop_ids)
        if self.tokenizer.eos_id is not None and self.tokenizer.eos_id not in ids:
            ids.append(self.tokenizer.eos_id)
        return ids
