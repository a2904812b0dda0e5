"""`litllm client`: talk to a running `litllm serve` through its control API (after nanoGPT's API client).

`Client` has one method per route and returns the server's JSON; `ClientCLI` is the command line over it. Only the
standard library is used, so the client starts at once and runs where torch is not installed.
"""

from __future__ import annotations

import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime
from json import JSONDecodeError, dumps, loads
from pathlib import Path
from typing import Any, Literal, Optional

DEFAULT_URL = "http://127.0.0.1:8000"


class ClientError(Exception):
    """The server answered with an error (`status` is its HTTP status) or could not be reached (`status` None)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message, self.status = message, status

    def __str__(self) -> str:
        return f"{self.message} (HTTP {self.status})" if self.status is not None else self.message


class Client:
    """The control API of a litllm server: one method per route, each returning the JSON answer."""

    def __init__(self, url: str = DEFAULT_URL, api_key: str | None = None, timeout: float = 600.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"url {url!r} must start with http:// or https://")
        self.url = url.rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("LITLLM_API_KEY")
        self.timeout = timeout

    def status(self) -> dict[str, Any]:
        """Whether the server is up, and the model it serves."""
        return self.request("GET", "/api/status")

    def models(self) -> dict[str, Any]:
        """The named configs and the local checkpoints the server can load."""
        return self.request("GET", "/api/models")

    def load_model(self, model_path: str | None = None, model_name: str | None = None) -> dict[str, Any]:
        """Replace the served model with a checkpoint under the server's models folder, or a named model."""
        return self.request("POST", "/api/load_model", given(model_path=model_path, model_name=model_name))

    def generate(
        self,
        prompt: str,
        max_new_tokens: int | None = None,
        temperature: float | None = None,
        top_k: int | None = None,
    ) -> dict[str, Any]:
        """Continue a prompt; options left out take the server's defaults."""
        body = given(prompt=prompt, max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k)
        return self.request("POST", "/api/generate", body)

    def train(
        self,
        command: str = "pretrain",
        recipe: str | None = None,
        config: dict[str, Any] | None = None,
        overrides: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Start a training job from a server-side recipe name or an inline config."""
        body = given(command=command, recipe=recipe, config=config, overrides=overrides)
        return self.request("POST", "/api/train", body)

    def job(self, job_id: str) -> dict[str, Any]:
        """A training job's state, step, loss and last log lines."""
        return self.request("GET", f"/api/train/{urllib.parse.quote(job_id, safe='')}")

    def stop(self, job_id: str) -> dict[str, Any]:
        """Stop a training job."""
        return self.request("DELETE", f"/api/train/{urllib.parse.quote(job_id, safe='')}")

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send one request and decode the JSON answer; errors become ClientError."""
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        data = None if body is None else dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return decode(response.read(), response.status)
        except urllib.error.HTTPError as e:
            raise ClientError(error_message(e.read(), e.reason), e.code) from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", None) or e
            raise ClientError(f"cannot reach the litllm server at {self.url} ({reason})") from None


def given(**fields: Any) -> dict[str, Any]:
    """The fields that were given (the server fills in the rest)."""
    return {k: v for k, v in fields.items() if v is not None}


def decode(payload: bytes, status: int) -> dict[str, Any]:
    try:
        return loads(payload)
    except (JSONDecodeError, UnicodeDecodeError):
        raise ClientError(f"the server's answer is not JSON: {payload[:200]!r}", status) from None


def error_message(payload: bytes, reason: str) -> str:
    """The message of an error answer: OpenAI-style {"error": {"message"}}, FastAPI's {"detail"}, or its text."""
    try:
        body = loads(payload)
    except (JSONDecodeError, UnicodeDecodeError):
        return payload.decode(errors="replace").strip()[:500] or str(reason)
    error = body.get("error", body.get("detail")) if isinstance(body, dict) else body
    if isinstance(error, dict):
        error = error.get("message", error)
    return str(error)


class ClientCLI:
    """Talk to a running `litllm serve`: its status and models, generation, and training jobs."""

    def __init__(self, url: str = DEFAULT_URL, api_key: Optional[str] = None, json: bool = False) -> None:
        """
        Args:
            url: The server's address.
            api_key: The server's API key (default: $LITLLM_API_KEY).
            json: Print the server's JSON answers as they are.
        """
        self.client, self.as_json = Client(url, api_key), json

    def status(self) -> None:
        """Show whether the server is up and which model it serves."""
        self._show(self._call(self.client.status))

    def models(self) -> None:
        """List the models the server can load: local checkpoints and named configs."""
        answer = self._call(self.client.models)
        if self.as_json:
            print_json(answer)
            return
        local = answer.get("local") or []
        width = max((len(m["name"]) for m in local), default=0)
        print("local checkpoints:" if local else "local checkpoints: none")
        for m in local:
            print(f"  {m['name']:<{width}}  {m.get('path', '')}")
        print(f"named configs ({len(answer.get('named', []))}): {', '.join(answer.get('named', []))}")

    def load(self, model_path: Optional[str] = None, model_name: Optional[str] = None) -> None:
        """Make the server load another model.

        Args:
            model_path: A checkpoint directory, relative to the server's models folder.
            model_name: A model name the server knows (`litllm client models` lists them).
        """
        self._show(self._call(self.client.load_model, model_path, model_name))

    def generate(
        self,
        prompt: Optional[str] = None,
        max_new_tokens: Optional[int] = None,
        temperature: Optional[float] = None,
        top_k: Optional[int] = None,
    ) -> None:
        """Continue a prompt with the served model and print the text.

        Args:
            prompt: Text to continue.
            max_new_tokens: Most tokens to generate (default: the server's).
            temperature: Sampling temperature; 0 is greedy (default: the server's).
            top_k: Sample among the k most likely tokens only (default: the server's).
        """
        if prompt is None:
            raise ValueError("--prompt is required: the text to continue")
        answer = self._call(self.client.generate, prompt, max_new_tokens, temperature, top_k)
        if self.as_json:
            print_json(answer)
        else:
            print(answer.get("generated_text", ""))

    def train(
        self,
        command: Literal["pretrain", "finetune"] = "pretrain",
        recipe: Optional[str] = None,
        config_file: Optional[Path] = None,
        overrides: Optional[dict[str, Any]] = None,
    ) -> None:
        """Start a training job on the server (one runs at a time).

        Args:
            command: The training command the job runs.
            recipe: A recipe of the server's config_hub, like `pretrain/debug`.
            config_file: A local recipe YAML, sent to the server inline (instead of --recipe).
            overrides: Recipe keys to change, like '{"trainer.max_steps": 5}'.
        """
        config = read_yaml(config_file) if config_file is not None else None
        answer = self._call(self.client.train, command, recipe, config, overrides)
        self._show(answer)
        if not self.as_json:
            print(f"follow it with: litllm client job {answer['id']} --follow true")

    def job(self, job_id: str, follow: bool = False, interval: float = 2.0) -> None:
        """Show a training job; with --follow true, print its log until it ends (exit 1 unless it succeeded).

        Ctrl-C stops following; the job goes on (`litllm client stop ID` stops it).

        Args:
            job_id: The id `litllm client train` printed.
            follow: Poll the job until it ends, printing new log lines.
            interval: Seconds between polls.
        """
        if not follow:
            self._show_job(self._call(self.client.job, job_id))
            return
        final = self._follow(job_id, interval)
        if final["state"] != "succeeded":
            sys.exit(1)

    def stop(self, job_id: str) -> None:
        """Stop a training job (interrupted at the end of a step; killed if it lingers).

        Args:
            job_id: The id `litllm client train` printed.
        """
        self._show_job(self._call(self.client.stop, job_id))

    # the helpers start with an underscore: every public method is a subcommand

    def _follow(self, job_id: str, interval: float) -> dict[str, Any]:
        """Poll a job until it ends, printing the log lines (or JSON answers) that are new; return the last answer."""
        shown: list[str] = []
        last_step, last_answer = None, None
        while True:
            answer = self._call(self.client.job, job_id)
            running = answer["state"] == "running"
            if self.as_json:
                if answer != last_answer:
                    print(dumps(answer), flush=True)
            else:
                # the last line may still be growing (a progress bar): it is printed once a newer one follows it
                complete = answer.get("last_lines", [])[:-1] if running else answer.get("last_lines", [])
                for line in new_lines(shown, complete):
                    print(line, flush=True)
                shown = complete
                if answer.get("step") != last_step and answer.get("step") is not None:
                    print(f"[job {job_id}] step {answer['step']}  loss {fmt(answer.get('loss'))}", flush=True)
                    last_step = answer["step"]
            last_answer = answer
            if not running:
                if not self.as_json:
                    print(f"[job {job_id}] {answer['state']} (return code {answer.get('returncode')})")
                return answer
            time.sleep(interval)

    def _call(self, method: Any, *args: Any) -> dict[str, Any]:
        """Call the server; an error answer or an unreachable server ends the command with one line and exit 2."""
        try:
            return method(*args)
        except ClientError as e:
            print(f"litllm client: error: {e}", file=sys.stderr)
            sys.exit(2)

    def _show_job(self, answer: dict[str, Any]) -> None:
        if self.as_json:
            print_json(answer)
            return
        self._show({k: v for k, v in answer.items() if k != "last_lines"})
        print("\n".join(["--- last lines of job.log ---", *answer.get("last_lines", [])]))

    def _show(self, answer: dict[str, Any]) -> None:
        """Print an answer as `key: value` lines, or as JSON with --json true."""
        if self.as_json:
            print_json(answer)
            return
        width = max((len(k) for k in answer), default=0)
        for key, value in answer.items():
            print(f"{key + ':':<{width + 1}} {fmt(value, key)}")


def new_lines(shown: list[str], lines: list[str]) -> list[str]:
    """The lines of a sliding log window not shown yet: those after its longest overlap with the previous window."""
    for k in range(min(len(shown), len(lines)), 0, -1):
        if shown[-k:] == lines[:k]:
            return lines[k:]
    return lines


def fmt(value: Any, key: str = "") -> str:
    if value is None:
        return "-"
    if key in ("started", "ended") and isinstance(value, (int, float)):
        return datetime.fromtimestamp(value).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, float):
        return f"{value:.4g}"
    return dumps(value) if isinstance(value, (dict, list)) else str(value)


def print_json(answer: Any) -> None:
    print(dumps(answer, indent=2))


def read_yaml(path: Path) -> dict[str, Any]:
    from litllm.paths import read_yaml_mapping

    return read_yaml_mapping(path, "recipe: expected a mapping of recipe keys")
