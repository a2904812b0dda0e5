"""Starting and stopping a real `litllm serve` in a subprocess for the server tests."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

API_KEY = "test-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A `litllm serve` process and a small HTTP client for it."""

    def __init__(
        self,
        source: Path | str | None,
        tmp: Path,
        *extra: str,
        api_key: str | None = API_KEY,
        ignore_sigint: bool = False,
    ) -> None:
        """ignore_sigint: start it with SIGINT ignored, as a shell script's background job starts."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api_key = api_key
        source_args = [] if source is None else [str(source)]  # none: the server starts with no model
        args = [sys.executable, "-m", "litllm.cli", "serve", *source_args, "--port", str(self.port)]
        args += ["--models_root", str(tmp / "models"), "--runs_root", str(tmp / "runs"), *extra]
        if api_key:
            args += ["--api_key", api_key]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
        self.log = (tmp / "server.log").open("w")
        ignore = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if ignore_sigint else None
        self.process = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=env, preexec_fn=ignore)

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}: {self.read_log()}")
            try:
                status, _ = self.request("GET", "/health")
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"server not ready after {timeout} s: {self.read_log()}")

    def read_log(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text()[-3000:]

    def headers(self, auth: bool = True) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if auth and self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def request(
        self, method: str, path: str, body: Any = None, auth: bool = True, raw: bytes | None = None
    ) -> tuple[int, Any]:
        """Status and decoded JSON (or text) of one request."""
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=self.headers(auth))
        try:
            with urllib.request.urlopen(req, timeout=120) as response:
                status, text = response.status, response.read().decode()
        except urllib.error.HTTPError as e:
            status, text = e.code, e.read().decode()
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text

    def events(self, path: str, body: Any) -> list[Any]:
        """The `data:` payloads of a server-sent event stream, decoded ([DONE] kept as a string)."""
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(), headers=self.headers())
        out = []
        with urllib.request.urlopen(req, timeout=120) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            for line in response:
                line = line.decode().strip()
                if line.startswith("data: "):
                    payload = line[len("data: ") :]
                    out.append(payload if payload == "[DONE]" else json.loads(payload))
        return out

    def processes(self) -> list[psutil.Process]:
        """The server and every process under it."""
        parent = psutil.Process(self.process.pid)
        return [parent, *parent.children(recursive=True)]

    def stop(self, sig: int = signal.SIGINT, timeout: float = 60) -> int:
        tree = self.processes() if self.process.poll() is None else []
        self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout)
        finally:
            self.log.close()
        gone, alive = psutil.wait_procs(tree, timeout=timeout)
        for p in alive:
            p.kill()
        assert not alive, f"left behind after {signal.Signals(sig).name}: {[p.pid for p in alive]}"
        return code


@contextlib.contextmanager
def running_server(
    source: Path | str | None, tmp: Path, *extra: str, api_key: str | None = API_KEY
) -> Iterator[Server]:
    """A ready server for the duration of the block, stopped with SIGINT after it (unless a test stopped it)."""
    server = Server(source, tmp, *extra, api_key=api_key)
    try:
        server.wait_ready()
        yield server
    finally:
        if server.process.poll() is None:
            server.stop(signal.SIGINT)
