"""The HTTP side of `litllm serve`: a LitServe spec that adds OpenAI-compatible, nanochat-style and control routes.

Handlers run in LitServe's API-server process. They validate a request, put one operation on LitServe's request
queue, which the inference workers (worker.py) share, or in one worker's mailbox (pool.py), and turn the replies
into JSON or server-sent events. A client that disconnects mid-stream cancels its generation at the worker that holds
it, which frees its row in that worker's batch; a model swap goes to every worker.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from litserve.specs.base import LitSpec
from litserve.utils import LitAPIStatus, ResponseBufferItem

from litllm.lora.layers import BASE
from litllm.serve.control import ModelRef, download, list_models, resolve_adapters, resolve_model
from litllm.serve.errors import NO_MODEL, APIError, error_body
from litllm.serve.metrics import Metrics
from litllm.serve.pool import WorkerPool
from litllm.serve.request_models import (
    ChatCompletionRequest,
    CompletionRequest,
    GenerateRequest,
    LoadModelRequest,
    NanochatRequest,
    TrainRequest,
)

STATIC = Path(__file__).parent / "static"


class LitLLMSpec(LitSpec):
    """All of litllm's routes on one LitServe API: generation goes to the worker, control stays here."""

    def __init__(
        self,
        model_id: str | None,
        models_root: Path,
        runs_root: Path,
        recipes_root: Path,
        ready: Any = None,
        default_max_tokens: int = 256,
        adapters: list[str] | None = None,
        workers: WorkerPool | None = None,
    ) -> None:
        """ready: the multiprocessing Event a lone worker sets once its model is loaded (with no `workers`);
        adapters: the names of the LoRA adapters the workers serve over the model; workers: the inference workers
        (default: one on the CPU)."""
        super().__init__()
        self.api_path = "/v1/chat/completions"
        self.model_id, self.created = model_id, int(time.time())  # model_id None: no model loaded
        self.adapters = list(adapters or [])
        self.models_root, self.runs_root, self.recipes_root = models_root, runs_root, recipes_root
        self.workers = workers or WorkerPool(["cpu"], None if ready is None else [ready])
        self.default_max_tokens = default_max_tokens
        self.metrics = Metrics()
        self.jobs: Any = None  # TrainingJobs, made in the API process on first use
        self.loading = False
        routes = [
            ("/v1/chat/completions", self.chat_completions, ["POST"]),
            ("/v1/completions", self.completions, ["POST"]),
            ("/v1/models", self.list_models, ["GET"]),
            ("/chat/completions", self.nanochat, ["POST"]),
            ("/health", self.health, ["GET"]),
            ("/stats", self.stats, ["GET"]),
            ("/metrics", self.prometheus, ["GET"]),
            ("/api/status", self.status, ["GET"]),
            ("/api/models", self.models, ["GET"]),
            ("/api/load_model", self.load_model, ["POST"]),
            ("/api/generate", self.generate, ["POST"]),
            ("/api/train", self.train, ["POST"]),
            ("/api/train/{job_id}", self.job, ["GET"]),
            ("/api/train/{job_id}", self.stop_job, ["DELETE"]),
            ("/api/train/{job_id}/resume", self.resume_job, ["POST"]),
            ("/", self.chat_page, ["GET"]),
        ]
        for path, endpoint, methods in routes:
            self.add_endpoint(path, endpoint, methods)

    @property
    def stream(self) -> bool:
        return True

    def decode_request(self, request: Any, context_kwargs: Any = None) -> Any:
        return request  # the worker reads the operation dicts this spec sends

    def encode_response(self, output: Any, context_kwargs: Any = None) -> Any:
        return output

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["jobs"] = None  # the worker process has no use for (unpicklable) job handles
        return state

    # -- talking to the worker --

    @property
    def devices(self) -> list[str]:
        """Each inference worker's device."""
        return self.workers.devices

    async def call(self, operation: dict[str, Any], worker: int | None = None) -> AsyncIterator[dict[str, Any]]:
        """Send one operation to `worker` (None: whichever takes it first) and yield its replies; leaving a generation
        early cancels it there."""
        uid = str(uuid.uuid4())
        replies: deque = deque()
        event = asyncio.Event()
        self.response_buffer[uid] = ResponseBufferItem(event=event, response_queue=replies)
        self.send(uid, operation, worker)
        finished, holder = False, worker
        try:
            while True:
                await event.wait()
                while replies:
                    data, status = replies.popleft()
                    if status == LitAPIStatus.FINISH_STREAMING:
                        finished = True
                        return
                    if status == LitAPIStatus.ERROR:
                        finished = True
                        raise APIError(500, "the inference worker failed; see the server log")
                    reply = json.loads(data)
                    holder = reply.get("worker", holder)
                    yield reply
                event.clear()
        finally:
            self.response_buffer.pop(uid, None)
            if not finished and operation.get("op") == "generate":
                # to the worker that holds it; before any reply none is known, and every worker is told
                for target in range(len(self.workers)) if holder is None else [holder]:
                    self.send(str(uuid.uuid4()), {"op": "cancel", "target": uid}, target)

    def send(self, uid: str, operation: dict[str, Any], worker: int | None) -> None:
        """Put an operation on the queue every worker takes from, or in one worker's mailbox."""
        queue = self.request_queue if worker is None else self.workers.mailboxes[worker]
        queue.put((self.response_queue_id, uid, time.monotonic(), operation))

    async def result(self, operation: dict[str, Any], worker: int | None = None) -> dict[str, Any]:
        """The last reply to an operation: its result, or its error."""
        result: dict[str, Any] = {}
        async for reply in self.call(operation, worker):
            result = reply
        return result

    async def ask(self, operation: dict[str, Any]) -> dict[str, Any]:
        """The single result of an operation (model info), from whichever worker takes it."""
        result = await self.result(operation)
        raise_if_error(result)
        return result

    async def ask_each(self, operation: dict[str, Any]) -> list[dict[str, Any]]:
        """The result (or error) of one operation sent to every worker, in the workers' order."""
        return list(await asyncio.gather(*(self.result(operation, i) for i in range(len(self.workers)))))

    def state(self) -> str:
        """'ready' (a model is loaded), 'loading' (one is being loaded) or 'no_model' (none was asked for)."""
        if self.loading or (self.model_id is not None and not self.workers.all_ready()):
            return "loading"
        return "no_model" if self.model_id is None else "ready"

    def require_model(self) -> None:
        """A 503 unless a model is loaded and ready."""
        state = self.state()
        if state == "loading":
            raise APIError(503, "the model is loading; try again when /health says ready", code="model_loading")
        if state == "no_model":
            raise APIError(503, NO_MODEL, code="model_not_loaded")

    async def generation(self, operation: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """The replies of a generation, the first one awaited before any response starts (so errors are 4xx)."""
        self.require_model()
        replies = self.call(operation)
        first = await anext(replies)
        raise_if_error(first)
        self.metrics.started()
        return chain_first(first, replies, self.metrics)

    def check_model(self, model: str | None, adapter: str | None = None) -> str:
        """The adapter a request chooses by its `model` (an adapter's name; the base's, "base" or none: the base) or
        its `adapter` option: an adapter's name or BASE. A 400 names what is served when they name something else."""
        self.require_model()
        if model not in (None, "", BASE, self.model_id, *self.adapters):
            served = ", ".join(repr(name) for name in [self.model_id, *self.adapters])
            message = f"model {model!r} is not served here; this server serves {served}"
            raise APIError(400, message, param="model", code="model_not_found")
        if adapter not in (None, BASE, *self.adapters):
            names = ", ".join(repr(name) for name in self.adapters) or "none"
            message = f"adapter {adapter!r} is not served here; the adapters: {names}"
            raise APIError(400, f"{message} (or 'base': the model alone)", param="adapter", code="adapter_not_found")
        by_model = model if model in self.adapters else None if model in (None, "") else BASE
        if by_model is not None and adapter is not None and adapter != by_model:
            message = f"model {model!r} and adapter {adapter!r} disagree: give one of them, or the same adapter in both"
            raise APIError(400, message, param="adapter", code="adapter_mismatch")
        return by_model or adapter or BASE

    def served_name(self, adapter: str) -> str:
        """The `model` a response reports: the adapter's name, or the base's."""
        return self.model_id if adapter == BASE else adapter

    # -- OpenAI-compatible routes --

    async def chat_completions(self, body: ChatCompletionRequest) -> Response:
        adapter = self.check_model(body.model, body.adapter)
        messages = [{"role": m.role, "content": m.text} for m in body.messages]
        options = {**body.options(self.default_max_tokens), "adapter": adapter}
        replies = await self.generation({"op": "generate", "messages": messages, "options": options})
        answer = OpenAIAnswer("chat.completion", self.served_name(adapter), body.n)
        if body.stream:
            return sse(answer.chunks(replies, body.include_usage))
        return JSONResponse(await answer.whole(replies))

    async def completions(self, body: CompletionRequest) -> Response:
        adapter = self.check_model(body.model, body.adapter)
        prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
        if len(prompts) > 1 and body.stream:
            raise APIError(400, "stream=true takes a single prompt", param="prompt")
        options = {**body.options(16), "adapter": adapter}  # without max_tokens: OpenAI's default of 16
        answers = []
        for i, prompt in enumerate(prompts):
            replies = await self.generation({"op": "generate", "prompt": prompt, "options": options})
            answer = OpenAIAnswer("text_completion", self.served_name(adapter), body.n, offset=i * body.n)
            answers.append((answer, replies))
        if body.stream:
            answer, replies = answers[0]
            return sse(answer.chunks(replies, body.include_usage))
        wholes = [await answer.whole(replies) for answer, replies in answers]
        merged = wholes[0]
        merged["choices"] = [c for w in wholes for c in w["choices"]]
        for key in merged["usage"]:
            merged["usage"][key] = sum(w["usage"][key] for w in wholes)
        return JSONResponse(merged)

    async def list_models(self) -> JSONResponse:
        """The model, then each LoRA adapter over it with the model as its `parent` (as vLLM lists them)."""
        if self.model_id is None:
            return JSONResponse({"object": "list", "data": []})
        card = {"id": self.model_id, "object": "model", "created": self.created, "owned_by": "litllm"}
        adapters = [{**card, "id": name, "parent": self.model_id} for name in self.adapters]
        return JSONResponse({"object": "list", "data": [card, *adapters]})

    # -- nanochat-style route, health and statistics --

    async def nanochat(self, body: NanochatRequest) -> Response:
        adapter = self.check_model(body.model, body.adapter)
        messages = [{"role": m.role, "content": m.text} for m in body.messages]
        options = {"max_new_tokens": body.max_tokens, "temperature": body.temperature, "top_k": body.top_k or None}
        options["adapter"] = adapter
        replies = await self.generation({"op": "generate", "messages": messages, "options": options})

        async def events() -> AsyncIterator[str]:
            async for reply in replies:
                if reply["type"] == "error":
                    yield data_line({"error": reply["message"]})
                    return
                if reply["type"] == "delta":
                    yield f"data: {json.dumps({'token': reply['text'], 'gpu': 0})}\n\n"
            yield f"data: {json.dumps({'done': True})}\n\n"

        return sse(events())

    async def health(self) -> JSONResponse:
        """200 once the server is up (`ready` says whether a model is loaded), 503 while a model loads."""
        state = self.state()
        stats = self.metrics.stats(self.devices, serving=state == "ready")
        body = {
            "status": "loading" if state == "loading" else "ok",
            "ready": state == "ready",
            "model": self.model_id,
            "model_loaded": state == "ready",
            "num_gpus": sum(1 for d in self.devices if d.startswith("cuda")),
            "available_workers": stats["available_workers"],
        }
        return JSONResponse(body, status_code=503 if state == "loading" else 200)

    async def stats(self) -> JSONResponse:
        """nanochat's worker-pool fields and litllm's counters, then `worker_stats`: what each worker reports."""
        stats = self.metrics.stats(self.devices, serving=self.state() == "ready")
        return JSONResponse({**stats, "worker_stats": self.workers.report()})

    async def prometheus(self) -> PlainTextResponse:
        text = self.metrics.prometheus(self.workers.report())
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")

    # -- control API (after nanoGPT's API server) --

    async def status(self) -> JSONResponse:
        """nanoGPT's fields (status "online", model_loaded, device, timestamp in Unix seconds), then litllm's: busy and
        queued summed over the workers, and what each worker reports."""
        state = self.state()
        info = await self.ask({"op": "info"}) if state == "ready" else {}
        workers = self.workers.report()
        return JSONResponse(
            {
                "status": "online",
                "model_loaded": state == "ready",
                "device": info.get("device") or self.devices[0],
                "timestamp": time.time(),
                "state": state,
                "model": self.model_id,
                "adapters": self.adapters,
                "dtype": info.get("dtype"),
                "busy": sum(w["busy"] for w in workers),
                "queued": sum(w["queued"] for w in workers),
                "worker_stats": workers,
            }
        )

    async def models(self) -> JSONResponse:
        started = [job.run_dir for job in self.jobs.jobs.values()] if self.jobs is not None else []
        return JSONResponse(await asyncio.to_thread(list_models, self.models_root, self.runs_root, started))

    async def load_model(self, body: LoadModelRequest) -> JSONResponse:
        """Swap the served model for the one the request names (any of its fields: one resolver, confined paths) on
        every worker, or on none: each loads it beside its model, and all switch once all have it."""
        value = getattr(body, body.field)
        ref = resolve_model(value, body.field, self.roots)
        adapters = await asyncio.to_thread(resolve_adapters, body.adapters or {}, ref.name, self.roots)
        if self.loading:
            raise APIError(409, "a model is already being loaded", code="model_loading")
        self.loading = True  # generations are refused (503) from now until every worker has switched
        try:
            source = await asyncio.to_thread(self.local_checkpoint, ref, body.field)
            operation = {"op": "load_model", "source": str(source), "name": ref.name, "adapters": adapters}
            staged, committed = await self.swap_everywhere(operation)
        finally:
            self.loading = False
        first = committed[0]
        self.model_id, self.adapters = first["model"], first["adapters"]
        fields = {k: v for k, v in first.items() if k not in ("type", "worker")}
        fields["seconds"] = max(r["seconds"] for r in staged)
        fields["workers"] = [
            {"id": i, "device": c["device"], "pid": c["pid"], "seconds": s["seconds"]}
            for i, (s, c) in enumerate(zip(staged, committed, strict=True))
        ]
        return JSONResponse({"message": "Model loaded successfully", "status": "loaded", **fields})

    async def swap_everywhere(self, operation: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Each worker's replies to loading a model beside its own, then to switching to it; when any cannot load it,
        none switches, and an APIError says why."""
        staged = await self.ask_each({**operation, "stage": True})
        failed = [(i, reply) for i, reply in enumerate(staged) if reply.get("type") != "result"]
        if failed:
            await self.ask_each({"op": "discard"})
            raise swap_error(failed, len(staged))
        committed = await self.ask_each({"op": "commit"})
        for reply in committed:
            raise_if_error(reply)
        return staged, committed

    @property
    def roots(self) -> tuple[Path, Path]:
        """The folders a request's paths may name: the models root and the runs root."""
        return self.models_root, self.runs_root

    @staticmethod
    def local_checkpoint(ref: ModelRef, field: str) -> Path:
        """The checkpoint folder of a resolved model, downloading a Hub repo first (a 503 when the Hub is out of
        reach, offline included)."""
        return download(ref.target, field) if isinstance(ref.target, str) else ref.target

    async def generate(self, body: GenerateRequest) -> JSONResponse:
        adapter = self.check_model(body.model, body.adapter)
        parameters = body.model_dump(exclude={"prompt", "model", "adapter"})  # nanoGPT's three
        options = {"max_new_tokens": body.max_new_tokens, "temperature": body.temperature, "top_k": body.top_k or None}
        options["adapter"] = adapter
        replies = await self.generation({"op": "generate", "prompt": body.prompt, "options": options})
        pieces = []
        async for reply in replies:
            raise_if_error(reply)
            if reply["type"] == "delta":
                pieces.append(reply["text"])
        text = "".join(pieces)
        # as nanoGPT's server: generated_text is the prompt and its continuation; completion is the continuation
        return JSONResponse(
            {
                "prompt": body.prompt,
                "generated_text": body.prompt + text,
                "completion": text,
                "model": self.served_name(adapter),
                "parameters": parameters,
            }
        )

    async def train(self, body: TrainRequest) -> JSONResponse:
        """Start a training job: nanoGPT's form (dataset, output_dir, model_type, ...) or a litllm recipe."""
        jobs = self.training_jobs()
        if body.dataset is None:
            command = body.command or "pretrain"
            job = jobs.start(command, recipe=body.recipe, config=body.config, overrides=body.overrides)
            return JSONResponse(job, status_code=201)
        return JSONResponse(await asyncio.to_thread(self.start_from_dataset, body), status_code=201)

    def start_from_dataset(self, body: TrainRequest) -> dict[str, Any]:
        """nanoGPT's training request as a litllm recipe run by the jobs machinery; its answer has nanoGPT's fields
        (message, config, config_path: the request as written to <output_dir>/train_config.json, process_id) and
        the job's own (id, run_dir, job_config_path, ...)."""
        from litllm.serve.jobs import TRAIN_CONFIG, resolve_dataset, train_recipe

        given = body.given()
        init_from = None
        if body.model_type is not None:
            ref = resolve_model(body.model_type, "model_type", self.roots)
            init_from = str(self.local_checkpoint(ref, "model_type"))
        dataset = resolve_dataset(body.dataset, self.data_roots(), body.batch_size, finetune=init_from is not None)
        command, recipe = train_recipe(given, dataset, init_from)
        job = self.training_jobs().start(command, config=recipe, output_dir=body.output_dir, request=given)
        job["job_config_path"] = job.pop("config_path")
        return {
            "message": "Training started",
            "config": given,
            "config_path": str(Path(job["run_dir"]) / TRAIN_CONFIG),
            "process_id": job["pid"],
            **job,
        }

    def data_roots(self) -> list[Path]:
        """Where a training request's dataset is looked for: the working directory, the runs root and the data
        directory ($LITLLM_DATA_DIR or $NANOCHAT_DATA_DIR, default $LITLLM_HOME/data)."""
        from litllm.paths import data_dir

        return list(dict.fromkeys([Path.cwd().resolve(), self.runs_root, data_dir().resolve()]))

    async def job(self, job_id: str) -> JSONResponse:
        return JSONResponse(self.training_jobs().status(job_id))

    async def resume_job(self, job_id: str) -> JSONResponse:
        """Start an interrupted, stopped or failed job again in its run directory with `--resume auto`."""
        return JSONResponse(await asyncio.to_thread(self.training_jobs().resume, job_id), status_code=201)

    async def stop_job(self, job_id: str) -> JSONResponse:
        # stopping waits for the run to shut down: off the event loop, so other requests go on meanwhile
        return JSONResponse(await asyncio.to_thread(self.training_jobs().stop, job_id))

    def training_jobs(self) -> Any:
        if self.jobs is None:
            from litllm.serve.jobs import TrainingJobs

            self.jobs = TrainingJobs(self.runs_root, self.recipes_root)  # it reads the earlier servers' job records
        return self.jobs

    async def chat_page(self) -> HTMLResponse:
        return HTMLResponse((STATIC / "chat.html").read_text(encoding="utf-8"))


class OpenAIAnswer:
    """Builds OpenAI response bodies, whole or as stream chunks, from the worker's replies."""

    def __init__(self, kind: str, model: str, n: int, offset: int = 0) -> None:
        self.kind, self.model, self.n, self.offset = kind, model, n, offset
        self.id = ("chatcmpl-" if kind == "chat.completion" else "cmpl-") + uuid.uuid4().hex[:24]
        self.created = int(time.time())

    @property
    def chat(self) -> bool:
        return self.kind == "chat.completion"

    def choice(
        self, index: int, text: str, finish_reason: str | None, stream: bool, logprobs: list | None = None
    ) -> dict[str, Any]:
        choice: dict[str, Any] = {
            "index": self.offset + index,
            "finish_reason": finish_reason,
            "logprobs": None if logprobs is None else self.logprobs(logprobs),
        }
        if not self.chat:
            choice["text"] = text
        elif stream:
            choice["delta"] = {"content": text} if text or finish_reason is None else {}
        else:
            choice["message"] = {"role": "assistant", "content": text}
        return choice

    def logprobs(self, tokens: list) -> dict[str, Any]:
        """OpenAI's `logprobs` of a choice from [[token text, log-probability], ...] (no alternatives: top_logprobs is
        refused by the request models)."""
        if self.chat:
            content = [{"token": t, "logprob": lp, "bytes": list(t.encode()), "top_logprobs": []} for t, lp in tokens]
            return {"content": content, "refusal": None}
        offsets = [sum(len(t) for t, _ in tokens[:i]) for i in range(len(tokens))]
        return {
            "tokens": [t for t, _ in tokens],
            "token_logprobs": [lp for _, lp in tokens],
            "top_logprobs": None,
            "text_offset": offsets,
        }

    def envelope(self, choices: list[dict[str, Any]], stream: bool) -> dict[str, Any]:
        kind = f"{self.kind}.chunk" if stream and self.chat else self.kind
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model, "choices": choices}

    async def whole(self, replies: AsyncIterator[dict[str, Any]]) -> dict[str, Any]:
        texts, reasons, usage, logprobs = [""] * self.n, ["stop"] * self.n, {}, [None] * self.n
        async for reply in replies:
            raise_if_error(reply)
            if reply["type"] == "delta":
                texts[reply["index"]] += reply["text"]
            elif reply["type"] == "done":
                reasons[reply["index"]] = openai_reason(reply["finish_reason"])
                logprobs[reply["index"]] = reply.get("logprobs")
            elif reply["type"] == "end":
                usage = {k: reply[k] for k in ("prompt_tokens", "completion_tokens", "total_tokens")}
        body = self.envelope([self.choice(i, texts[i], reasons[i], False, logprobs[i]) for i in range(self.n)], False)
        body["usage"] = usage
        return body

    async def chunks(self, replies: AsyncIterator[dict[str, Any]], include_usage: bool) -> AsyncIterator[str]:
        if self.chat:
            opening = [
                {"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None, "logprobs": None}
                for i in range(self.n)
            ]
            yield data_line(self.envelope(opening, True))
        async for reply in replies:
            if reply["type"] == "error":  # the status line has gone out: the error becomes the stream's last event
                yield data_line({"error": error_body(reply["status"], reply["message"], reply["param"], reply["code"])})
                break
            if reply["type"] == "delta":
                yield data_line(self.envelope([self.choice(reply["index"], reply["text"], None, True)], True))
            elif reply["type"] == "done":
                # a stream gives the log-probabilities in a choice's last chunk
                reason = openai_reason(reply["finish_reason"])
                last = self.choice(reply["index"], "", reason, True, reply.get("logprobs"))
                yield data_line(self.envelope([last], True))
            elif reply["type"] == "end" and include_usage:
                chunk = self.envelope([], True)
                chunk["usage"] = {k: reply[k] for k in ("prompt_tokens", "completion_tokens", "total_tokens")}
                yield data_line(chunk)
        yield "data: [DONE]\n\n"


def openai_reason(reason: str | None) -> str:
    return "length" if reason == "length" else "stop"


def data_line(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


def sse(events: AsyncIterator[str]) -> StreamingResponse:
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(events, media_type="text/event-stream", headers=headers)


def raise_if_error(reply: dict[str, Any]) -> None:
    if reply.get("type") == "error":
        raise APIError(reply["status"], reply["message"], reply.get("param"), reply.get("code"))


def swap_error(failed: list[tuple[int, dict[str, Any]]], workers: int) -> APIError:
    """The answer to a swap some workers could not make: the error itself when every worker gave the same one, else
    each failed worker's, with the status and code of the first."""
    status, code = failed[0][1].get("status", 500), failed[0][1].get("code")
    messages = [reply.get("message", "no reply") for _, reply in failed]
    if len(failed) == workers and len(set(messages)) == 1:
        return APIError(status, messages[0], code=code)
    each = "; ".join(f"worker {i}: {message}" for (i, _), message in zip(failed, messages, strict=True))
    message = f"{len(failed)} of {workers} workers could not load it, so none serves it: {each}"
    return APIError(status, message, code=code)


async def chain_first(
    first: dict[str, Any], rest: AsyncIterator[dict[str, Any]], metrics: Metrics
) -> AsyncIterator[dict[str, Any]]:
    """`first` then `rest`, recording tokens and latencies as the replies pass by; closing it cancels `rest`."""
    started, last, reply = time.perf_counter(), None, first
    try:
        while True:
            if reply["type"] == "delta":
                now = time.perf_counter()
                metrics.token_gap(now - last if last is not None else None, now - started)
                last = now
            elif reply["type"] == "end":
                metrics.finished(reply["prompt_tokens"], reply["completion_tokens"], time.perf_counter() - started)
            yield reply
            try:
                reply = await anext(rest)
            except StopAsyncIteration:
                return
    finally:
        metrics.left()
        await rest.aclose()  # a client gone mid-stream: the worker stops its generation
