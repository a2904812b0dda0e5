"""The inference side of `litllm serve`: a LitServe `LitAPI` whose continuous-batching loop drives litllm's Scheduler.

The HTTP side (routes.py) puts one message per operation on LitServe's request queue, which every worker takes from
(a generation, a question about the model), or in one worker's own mailbox (pool.py: the cancellation of a
generation it holds, each step of a model swap). A worker started without a model answers generations with a 503
until a swap loads one. Each step of the loop admits what arrived, advances every running generation by one token,
and sends each request the text it gained. Every reply is a dict: {"type": "delta" | "done" | "end" | "result" |
"error", "worker": the worker's index, ...}; "end", "result" and "error" close the request.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import signal
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import litserve as ls
import torch
from litserve.loops.continuous_batching_loop import ContinuousBatchingLoop, Output
from litserve.utils import LitAPIStatus

from litllm.api import LLM
from litllm.errors import HubError, UnknownModelError
from litllm.inference.engine import Completion, Scheduler
from litllm.lora.files import attach_adapters
from litllm.serve.control import model_id
from litllm.serve.errors import NO_MODEL
from litllm.serve.pool import WorkerPool

logger = logging.getLogger(__name__)
CANCELLED_KEPT = 1024  # cancellations of generations this worker has not seen: more than any burst of disconnects


class BatchingLoop(ContinuousBatchingLoop):
    """LitServe's continuous-batching loop, resting between requests instead of spinning on an idle CPU."""

    async def run(self, lit_api: ls.LitAPI, *args: Any) -> None:
        if not lit_api.has_active_requests():
            await asyncio.sleep(0.002)
            return
        await super().run(lit_api, *args)

    async def step(self, prev_outputs: list[Output] | None, lit_api: ls.LitAPI, lit_spec: Any) -> list[Output]:
        # straight to the worker's compute thread (LitServe would hop through its thread pool first)
        return await asyncio.get_running_loop().run_in_executor(lit_api.compute, lit_api.advance)

    async def schedule_task(self, lit_api: ls.LitAPI, lit_spec: Any, request_queue: Any, transport: Any) -> None:
        if lit_api.mailbox is not None:  # the task is kept: the event loop itself holds tasks only weakly
            self.mail = asyncio.get_running_loop().create_task(self.read_mailbox(lit_api, lit_spec, transport))
        await super().schedule_task(lit_api, lit_spec, request_queue, transport)

    async def read_mailbox(self, lit_api: ls.LitAPI, lit_spec: Any, transport: Any) -> None:
        """Admit what was sent to this worker alone as LitServe admits what it takes from the shared queue."""
        while True:
            item = await asyncio.to_thread(self.get_request, lit_api.mailbox, timeout=1.0)
            if item is not None:
                response_queue_id, uid, _, operation = item
                self.response_queue_ids[uid] = response_queue_id
                self.add_request(uid, operation, lit_api, lit_spec, transport)


@dataclass
class Running:
    """A generation in flight: its completions (one per choice) and how much of each was sent."""

    completions: list[Completion]
    reported: set[int] = field(default_factory=set)  # indices whose "done" was sent


class GenerationAPI(ls.LitAPI):
    """Loads a model in `setup` and serves generations, cancellations, model swaps and model questions."""

    def __init__(
        self,
        source: str | None,
        spec: ls.LitSpec,
        max_batch_size: int = 16,
        precision: str | None = None,
        quantize: str | None = None,
        init: str = "pretrained",
        tokenizer_dir: str | None = None,
        max_seq_length: int | None = None,
        adapters: dict[str, str] | None = None,
    ) -> None:
        """adapters: LoRA adapter folders to serve over the model, by the name requests give as their `model`."""
        super().__init__(max_batch_size=max_batch_size, stream=True, spec=spec, loop=BatchingLoop())
        self.source, self.precision, self.quantize = source, precision, quantize
        self.init, self.tokenizer_dir, self.max_seq_length = init, tokenizer_dir, max_seq_length
        self.adapters = dict(adapters or {})
        self.ready: Any = None  # a multiprocessing Event shared with the HTTP side: set while a model is loaded
        self.workers: WorkerPool | None = None  # all the workers (server.py); this one is number LITSERVE_WORKER_ID
        self.threads: int | None = None  # torch threads of this worker (None: torch's default)
        self.index, self.mailbox = 0, None

    def setup(self, device: str) -> None:
        # the server's SIGTERM handler (forked into this process) would turn LitServe's terminate() into a traceback
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server process shuts workers down itself
        if self.threads is not None:
            torch.set_num_threads(self.threads)  # before the compute thread starts: it takes the count as it starts
        if self.workers is not None:
            self.index = int(os.environ.get("LITSERVE_WORKER_ID", "0"))
            self.ready, self.mailbox = self.workers.ready[self.index], self.workers.mailboxes[self.index]
        self.prepare(device)
        self.compute.submit(self.publish)
        if self.source is None:
            self.loaded.set()  # nothing to load: operations are served at once, generations get a 503
            return
        # load in the background: the HTTP server starts at once and /health answers 503 until the model is in
        self.compute.submit(self.first_load)

    def prepare(self, device: str) -> None:
        """The worker's state before a model is loaded."""
        self.device = device
        self.inbox: queue.SimpleQueue[tuple[str, dict[str, Any]]] = queue.SimpleQueue()
        self.running: dict[str, Running] = {}
        self.replies: list[Output] = []
        self.llm: LLM | None = None
        self.scheduler: Scheduler | None = None
        self.model_id: str | None = None
        self.staged: tuple[LLM, str, str | None] | None = None  # a model loaded for a swap: (llm, source, name)
        self.cancelled: dict[str, None] = {}  # generations cancelled before they arrived, oldest first
        self.counts: Counter[str] = Counter()  # generations served, cancelled, their tokens: FIELDS of the board
        self.loaded = threading.Event()  # set once the inbox may be served (after the first load, if any)
        # every load and step runs on this one thread: LitServe calls `step` from whichever thread of its pool is
        # free, and each thread that runs torch gets its own team of OpenMP threads, whose idle spinning took the
        # cores from the team at work (one client streamed at 66% of the engine's speed; six threads were busy)
        self.compute = ThreadPoolExecutor(max_workers=1, thread_name_prefix="litllm-compute")

    def first_load(self) -> None:
        try:
            self.load(self.source, self.init, self.tokenizer_dir, adapters=self.adapters)
        except Exception:
            logger.exception("litllm serve: could not load %r", self.source)
            os._exit(1)  # nothing to serve; LitServe's monitor sees the worker die
        self.loaded.set()
        if self.ready is not None:
            self.ready.set()
        self.publish()

    def load(
        self,
        source: str,
        init: str = "pretrained",
        tokenizer_dir: str | None = None,
        name: str | None = None,
        adapters: dict[str, str] | None = None,
    ) -> None:
        """Load a model (replacing the current one) with its LoRA adapters ({name: folder}, unmerged: rows of one batch
        may each use another) and make a scheduler for it; `name` is what clients call the model."""
        self.use(self.build(source, init, tokenizer_dir, adapters), source, name)

    def build(
        self, source: str, init: str = "pretrained", tokenizer_dir: str | None = None, adapters: dict | None = None
    ) -> LLM:
        """A model on this worker's device in the server's precision, with its LoRA adapters, not yet served."""
        llm = LLM.load(source, init=init, tokenizer_dir=tokenizer_dir, device=self.device)
        if adapters:
            attach_adapters(llm.model, adapters)
            llm.adapter = None  # a request names its adapter; one that names none gets the base alone
        llm.distribute(accelerator=llm.device.type, precision=self.precision, quantize=self.quantize)
        return llm

    def use(self, llm: LLM, source: str, name: str | None = None) -> None:
        """Serve `llm` from now on, with a scheduler of its own; `name` is what clients call it."""
        self.llm, self.source = llm, source
        self.model_id = name or model_id(source)
        self.scheduler = Scheduler(llm.model, llm.tokenizer, self.max_batch_size, self.max_seq_length)

    # -- LitServe's continuous-batching hooks --

    def add_request(self, uid: str, request: dict[str, Any]) -> None:
        self.inbox.put((uid, request))  # called from the loop's event-loop thread; `step` runs in another

    def has_capacity(self) -> bool:
        return True  # the scheduler queues what does not fit and admits it as rows free up

    def has_active_requests(self) -> bool:
        if not self.loaded.is_set():
            return False  # requests wait in the inbox until the model is in
        return bool(self.running) or bool(self.replies) or not self.inbox.empty()

    def step(self, prev_outputs: list[Output] | None) -> list[Output]:
        return self.compute.submit(self.advance).result()

    def advance(self) -> list[Output]:
        """Handle what arrived and decode until there is something to send."""
        # a step whose tokens are all held back (part of a character, or maybe a stop string) has nothing to send;
        # LitServe's loop would then sleep 10 ms, so decode on until something is to be sent
        while not self.replies and self.has_active_requests():
            while not self.inbox.empty():
                self.handle(*self.inbox.get())
            if self.scheduler is not None and self.scheduler.busy:
                try:
                    self.scheduler.step()
                except Exception as e:  # noqa: BLE001 - one failed step must not take the server down with it
                    self.recover(e)
            for uid in list(self.running):
                self.report(uid)
        self.publish()
        replies, self.replies = self.replies, []
        return replies

    def publish(self) -> None:
        """Write this worker's state on the board (pool.FIELDS) that /stats and /api/status read."""
        if self.workers is not None:
            busy, queued = self.rows()
            threads = torch.get_num_threads()  # this runs on the compute thread: the count its torch work runs with
            self.workers.write(self.index, pid=os.getpid(), threads=threads, busy=busy, queued=queued, **self.counts)

    def rows(self) -> tuple[int, int]:
        """Cache rows taken, and generations waiting for one."""
        if self.scheduler is None:
            return 0, 0
        return sum(1 for s in self.scheduler.slots if s is not None), len(self.scheduler.waiting)

    def encode_response(self, output: Any) -> Any:
        return output

    def recover(self, exception: Exception) -> None:
        """A decoding step failed (out of memory, say): its cache rows may be half-written, so fail every running
        generation with a 500 and start over with a fresh scheduler; later requests are served as usual."""
        logger.error("litllm serve: a decoding step failed", exc_info=exception)
        failed = error(500, f"generation failed: {type(exception).__name__}: {exception}", code="generation_failed")
        for uid in list(self.running):
            self.close(uid, failed)
        self.running.clear()
        self.scheduler = Scheduler(self.llm.model, self.llm.tokenizer, self.max_batch_size, self.max_seq_length)

    # -- operations --

    def handle(self, uid: str, message: dict[str, Any]) -> None:
        op = message.get("op")
        try:
            if op == "generate" and uid in self.cancelled:
                del self.cancelled[uid]
                self.close(uid, {"type": "end", "cancelled": True, **usage([])})
            elif op == "generate" and self.llm is None:
                self.close(uid, error(503, NO_MODEL, code="model_not_loaded"))
            elif op == "generate":
                self.start(uid, message)
            elif op == "cancel":
                self.cancel(message["target"])
                self.close(uid, {"type": "result", "cancelled": message["target"]})
            elif op == "load_model":
                self.swap(uid, message)
            elif op == "commit" and self.staged is not None:
                self.commit()
                self.close(uid, {"type": "result", **self.info()})
            elif op == "commit":
                self.close(uid, error(409, "no model is staged: send load_model with stage=True first"))
            elif op == "discard":
                self.staged = None
                self.close(uid, {"type": "result", "discarded": True})
            elif op == "info":
                self.close(uid, {"type": "result", **self.info()})
            else:
                self.close(uid, error(400, f"unknown operation {op!r}"))
        except (ValueError, TypeError, OSError, KeyError) as e:
            self.close(uid, error(400, message_of(e)))

    def start(self, uid: str, message: dict[str, Any]) -> None:
        options = dict(message.get("options", {}))
        if message.get("messages") is not None:
            request = self.llm.chat_request(message["messages"], **options)
        else:
            request = self.llm.completion_request(message["prompt"], **options)
        self.running[uid] = Running(self.scheduler.submit(request))
        self.counts["requests"] += 1

    def cancel(self, target: str) -> None:
        running = self.running.pop(target, None)
        if running is None:  # done already, held by another worker, or not here yet: a cancellation sent to every
            self.cancelled[target] = None  # worker (its holder unknown) can overtake its generation
            if len(self.cancelled) > CANCELLED_KEPT:
                del self.cancelled[next(iter(self.cancelled))]
            return
        self.scheduler.cancel(running.completions[0].request)
        self.counts["cancelled"] += 1
        self.close(target, {"type": "end", "cancelled": True, **self.count(running.completions)})

    def count(self, completions: list[Completion]) -> dict[str, int]:
        """The usage of a generation that ended, added to this worker's counts."""
        used = usage(completions)
        self.counts["prompt_tokens"] += used["prompt_tokens"]
        self.counts["completion_tokens"] += used["completion_tokens"]
        return used

    def swap(self, uid: str, message: dict[str, Any]) -> None:
        """Load another model in place of the current one, which stays when the new one cannot be loaded. With
        "stage", only load it: a "commit" then serves it, a "discard" drops it (so that every worker swaps, or none)."""
        if self.running or (self.scheduler is not None and self.scheduler.busy):
            self.close(uid, error(409, "generations are running: load the model again when they are done"))
            return
        started = time.perf_counter()
        staging = bool(message.get("stage"))
        if self.ready is not None and not staging:
            self.ready.clear()
        try:
            init, tokenizer_dir = message.get("init", "pretrained"), message.get("tokenizer_dir")
            llm = self.build(message["source"], init, tokenizer_dir, message.get("adapters"))
        except Exception as e:  # noqa: BLE001 - a model that will not load must not take the worker down
            logger.warning("litllm serve: could not load %r: %s", message["source"], e)
            if self.ready is not None and self.llm is not None:
                self.ready.set()  # the model that was there serves on
            self.close(uid, load_error(message["source"], e))
            return
        self.staged = (llm, message["source"], message.get("name"))
        seconds = round(time.perf_counter() - started, 3)
        if staging:
            self.close(uid, {"type": "result", "staged": True, "seconds": seconds})
            return
        self.commit()
        self.close(uid, {"type": "result", "seconds": seconds, **self.info()})

    def commit(self) -> None:
        """Serve the staged model. Generations that started since it was staged (sent before the HTTP side began to
        refuse them for the swap) end with a 503: they cannot go on with another model's cache."""
        llm, source, name = self.staged
        self.staged = None
        swapped = error(503, "the model was swapped as this generation started; send it again", code="model_swapped")
        for uid in list(self.running):
            self.close(uid, swapped)
        self.running.clear()
        self.use(llm, source, name)
        if self.ready is not None:
            self.ready.set()

    def info(self) -> dict[str, Any]:
        if self.llm is None:
            empty = {"model": None, "adapters": [], "busy": 0, "queued": 0}
            return {**empty, "device": str(self.device), "pid": os.getpid()}
        config, (busy, queued) = self.llm.config, self.rows()
        return {
            "model": self.model_id,
            "adapters": self.llm.adapters,
            "source": str(self.source),
            "device": str(self.llm.device),
            "dtype": str(self.llm.model.wte.weight.dtype).removeprefix("torch."),
            "quantize": self.quantize,
            "context_length": config.block_size,
            "parameters": sum(p.numel() for p in self.llm.model.parameters()),
            "max_batch_size": self.max_batch_size,
            "busy": busy,
            "queued": queued,
            "pid": os.getpid(),
        }

    def report(self, uid: str) -> None:
        """Send a request the text its completions gained; close it when all of them are done."""
        running = self.running[uid]
        for c in running.completions:
            while c.pending:
                self.send(uid, {"type": "delta", "index": c.index, "text": c.pending.popleft()})
            if c.finished and c.index not in running.reported:
                running.reported.add(c.index)
                self.send(
                    uid,
                    {
                        "type": "done",
                        "index": c.index,
                        "finish_reason": c.finish_reason,
                        "completion_tokens": len(c.token_ids),
                        **self.token_logprobs(c),
                    },
                )
        if len(running.reported) == len(running.completions):
            del self.running[uid]
            self.close(uid, {"type": "end", **self.count(running.completions)})

    def token_logprobs(self, c: Completion) -> dict[str, Any]:
        """{"logprobs": [[token text, log-probability], ...]} of a completion that asked for them, else {}."""
        if not c.request.logprobs:
            return {}
        texts = [self.llm.tokenizer.decode([t]) for t in c.token_ids]
        return {"logprobs": [[text, lp] for text, lp in zip(texts, c.logprobs, strict=True)]}

    def send(self, uid: str, data: dict[str, Any]) -> None:
        # the worker's index tells the HTTP side where to send the cancellation of a generation
        self.replies.append(Output(uid, {**data, "worker": self.index}, LitAPIStatus.OK))

    def close(self, uid: str, data: dict[str, Any]) -> None:
        self.send(uid, data)
        self.replies.append(Output(uid, "", LitAPIStatus.FINISH_STREAMING))


def usage(completions: list[Completion]) -> dict[str, int]:
    prompt = completions[0].prompt_tokens if completions else 0
    generated = sum(len(c.token_ids) for c in completions)
    return {"prompt_tokens": prompt, "completion_tokens": generated, "total_tokens": prompt + generated}


def error(status: int, message: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"type": "error", "status": status, "message": message, "param": param, "code": code}


def load_error(source: str, exception: Exception) -> dict[str, Any]:
    """The reply to a model that would not load: 503 when the Hub is out of reach, 400 for a checkpoint or name
    that is wrong, 500 for anything else."""
    message = f"could not load {source!r}: {message_of(exception)}"
    if isinstance(exception, HubError):
        return error(503, message, code="hub_unavailable")
    if isinstance(exception, (ValueError, OSError, UnknownModelError)):
        return error(400, message, code="model_not_loadable")
    return error(500, f"could not load {source!r}: {type(exception).__name__}: {exception}", code="load_failed")


def message_of(exception: Exception) -> str:
    """An exception's message; a KeyError's str() would wrap it in quotes."""
    return str(exception.args[0]) if isinstance(exception, KeyError) and exception.args else str(exception)
