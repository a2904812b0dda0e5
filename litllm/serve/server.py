"""Assembling `litllm serve`: the LitServer, its routes, authentication, error bodies, and a clean shutdown.

Processes: the main one (LitServe's manager), one HTTP server (routes.py) and the inference workers (worker.py), each
holding a copy of the model and its continuous-batching scheduler: one per GPU on CUDA, `devices` of them sharing the
cores on the CPU (pool.py).
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import os
import re
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import litserve as ls
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from litllm.serve.errors import APIError, error_response
from litllm.serve.metrics import Metrics
from litllm.serve.pool import WorkerPool, threads_per_worker, worker_devices
from litllm.serve.routes import LitLLMSpec
from litllm.serve.worker import GenerationAPI, message_of, model_id


class Gate:
    """ASGI middleware: the API key check (every route but /health and the chat page) and the request counters."""

    def __init__(self, app: Any, api_key: str | None, metrics: Metrics) -> None:
        self.app, self.api_key, self.metrics = app, api_key, metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        route = route_label(scope["path"])
        if self.api_key and scope["path"] not in OPEN_ROUTES and not self.authorized(scope):
            self.metrics.request(route, 401)
            response = error_response(401, "missing or wrong API key: send the header 'Authorization: Bearer KEY'")
            return await response(scope, receive, send)

        async def counted(message: dict) -> None:
            if message["type"] == "http.response.start":
                self.metrics.request(route, message["status"])
            await send(message)

        await self.app(scope, receive, counted)

    def authorized(self, scope: dict) -> bool:
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"authorization", b"").decode("latin-1")
        scheme, _, token = given.partition(" ")
        # compare in constant time, so the key cannot be guessed one character at a time
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self.api_key.encode())


# a browser sends no Authorization header when it opens a page: the (static) chat page is open, and asks for the
# key for its own API calls; /health is for load balancers
OPEN_ROUTES = ("/health", "/")
KNOWN_ROUTES = (
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/models",
    "/chat/completions",
    "/health",
    "/stats",
    "/metrics",
    "/api/status",
    "/api/models",
    "/api/load_model",
    "/api/generate",
    "/api/train",
    "/",
)


def route_label(path: str) -> str:
    """The route a path belongs to, so that metrics never get one label per job id or per random URL."""
    if path in KNOWN_ROUTES:
        return path
    return "/api/train/{job_id}" if re.fullmatch(r"/api/train/[^/]+", path) else "other"


# pydantic error types that mean a value out of range or not among those accepted (400, as nanochat answers them);
# any other (a missing field, a wrong type, a body that is not JSON) means a malformed body (422)
OUT_OF_RANGE = {
    "greater_than",
    "greater_than_equal",
    "less_than",
    "less_than_equal",
    "multiple_of",
    "finite_number",
    "too_short",
    "too_long",
    "string_too_short",
    "string_too_long",
    "literal_error",
    "enum",
    "value_error",
}


def install_error_handlers(app: FastAPI) -> None:
    """Every error becomes a JSON body with OpenAI's `error` object and FastAPI's `detail` (see errors.py)."""
    from litllm.serve.jobs import JobConflict, JobNotFound

    async def api_error(request: Any, exc: APIError) -> Any:
        return exc.response()

    async def invalid(request: Any, exc: RequestValidationError) -> Any:
        first = exc.errors()[0] if exc.errors() else {"msg": "invalid request", "loc": ()}
        loc = [str(part) for part in first.get("loc", ()) if part != "body"]
        if first.get("type") == "json_invalid":
            return error_response(422, f"the body is not valid JSON: {first.get('msg')}", code="invalid_json")
        message = str(first.get("msg", "invalid request")).removeprefix("Value error, ")
        where = ".".join(loc)
        status = 400 if first.get("type") in OUT_OF_RANGE else 422
        return error_response(
            status, f"{where}: {message}" if where else message, param=where or None, code=first.get("type")
        )

    async def http_error(request: Any, exc: StarletteHTTPException) -> Any:
        return error_response(exc.status_code, str(exc.detail))

    async def job_error(request: Any, exc: Exception) -> Any:
        status = 409 if isinstance(exc, JobConflict) else 404 if isinstance(exc, JobNotFound) else 400
        return error_response(status, message_of(exc))

    app.add_exception_handler(APIError, api_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(StarletteHTTPException, http_error)
    for kind in (JobConflict, JobNotFound, ValueError):
        app.add_exception_handler(kind, job_error)


def build_server(
    source: str | None,
    api_key: str | None = None,
    max_batch_size: int = 16,
    accelerator: str = "auto",
    devices: int = 1,
    precision: str | None = None,
    quantize: str | None = None,
    init: str = "pretrained",
    tokenizer_dir: str | None = None,
    max_seq_length: int | None = None,
    models_root: Path | None = None,
    runs_root: Path | None = None,
    default_max_tokens: int = 256,
    adapters: dict[str, str] | None = None,
) -> tuple[ls.LitServer, LitLLMSpec]:
    """The LitServer for `source` (None: start with no model) and the LoRA adapters served over it ({name: folder},
    checked: `control.served_adapters`), its routes registered; `server.run(...)` starts it. `devices` inference
    workers each load the model: one per GPU, or that many processes on the CPU, each with an even share of its
    threads; a ValueError names a count this machine cannot hold."""
    from litllm.paths import litllm_home, recipes_dir, runs_dir

    accelerator, placement = worker_devices(accelerator, devices)
    workers = WorkerPool(placement)
    spec = LitLLMSpec(
        None if source is None else model_id(source),
        models_root=Path(models_root or litllm_home()).resolve(),
        runs_root=Path(runs_root or runs_dir()).resolve(),
        recipes_root=recipes_dir(),
        default_max_tokens=default_max_tokens,
        adapters=list(adapters or {}),
        workers=workers,
    )
    spec.metrics.max_batch_size = max_batch_size
    api = GenerationAPI(
        source, spec, max_batch_size, precision, quantize, init, tokenizer_dir, max_seq_length, adapters=adapters
    )
    api.workers = workers
    api.threads = threads_per_worker(devices) if accelerator == "cpu" else None
    server = ls.LitServer(
        api,
        accelerator=accelerator,
        devices=1 if accelerator == "cpu" else devices,
        workers_per_device=devices if accelerator == "cpu" else 1,  # LitServe counts the CPU as one device
        healthcheck_path="/litserve/health",
        info_path="/litserve/info",
        timeout=False,
        middlewares=[(Gate, {"api_key": api_key, "metrics": spec.metrics})],
    )
    # LitServe's own index page would shadow the chat page at "/"
    server.app.router.routes = [
        r for r in server.app.router.routes if not (getattr(r, "path", None) == "/" and r.endpoint != spec.chat_page)
    ]
    install_error_handlers(server.app)
    wrap_lifespan(server.app, spec)
    return server, spec


def wrap_lifespan(app: FastAPI, spec: LitLLMSpec) -> None:
    """Stop the training jobs the HTTP process started when it shuts down."""
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            async with inner(app):
                yield
        finally:
            if spec.jobs is not None:
                spec.jobs.shutdown()

    app.router.lifespan_context = lifespan


def run(server: ls.LitServer, host: str = "127.0.0.1", port: int = 8000, log_level: str = "warning") -> None:
    """Serve until SIGINT or SIGTERM; either one shuts down every process the server started."""

    main_pid = os.getpid()
    quiet = QuietShutdown()
    logging.getLogger("litserve.server").addFilter(quiet)

    def interrupt(signum: int, frame: Any) -> None:
        if os.getpid() != main_pid:  # the forked HTTP process: uvicorn re-raises SIGTERM once it has shut down
            raise SystemExit(0)
        quiet.stopping = True
        raise KeyboardInterrupt  # LitServe cleans up its processes on KeyboardInterrupt, not on SIGTERM

    signal.signal(signal.SIGTERM, interrupt)
    # a process started with SIGINT ignored keeps it ignored (a background job of a shell script starts so), and
    # then would not stop on the SIGINT it is documented to stop on
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        server.run(
            host=host,
            port=port,
            num_api_servers=1,  # one HTTP process: it owns the training jobs and the counters
            log_level=log_level,
            generate_client_file=False,
        )
    finally:
        quiet.stopping = True


class QuietShutdown(logging.Filter):
    """Drops the error LitServe's worker monitor logs when the server's manager goes away under it at shutdown."""

    stopping = False

    def filter(self, record: logging.LogRecord) -> bool:
        return not (self.stopping and record.getMessage() == "Monitoring worker crashed")
