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
        """What the server can load: model names, trained runs, local checkpoints and named configs."""
        return self.request("GET", "/api/models")

    def load_model(
        self, model_path: str | None = None, model_name: str | None = None, model_type: str | None = None
    ) -> dict[str, Any]:
        """Replace the served model with a checkpoint or training run under the server's roots (`model_path`), or a
        model by name (`model_type`, or `model_name`)."""
        body = given(model_path=model_path, model_name=model_name, model_type=model_type)
        return self.request("POST", "/api/load_model", body)

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
        command: str | None = None,
        recipe: str | None = None,
        config: dict[str, Any] | None = None,
        overrides: dict[str, Any] | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """Start a training job from a server-side recipe name or an inline config (run by `command`, default
        pretrain), or in nanoGPT's form: `dataset=`, `output_dir=`, `model_type=`, `batch_size=`, ..."""
        body = given(command=command, recipe=recipe, config=config, overrides=overrides, **fields)
        return self.request("POST", "/api/train", body)

    def job(self, job_id: str) -> dict[str, Any]:
        """A training job's state, step, loss and last log lines."""
        return self.request("GET", f"/api/train/{urllib.parse.quote(job_id, safe='')}")

    def stop(self, job_id: str) -> dict[str, Any]:
        """Stop a training job."""
        return self.request("DELETE", f"/api/train/{urllib.parse.quote(job_id, safe='')}")

    def resume(self, job_id: str) -> dict[str, Any]:
        """Start an interrupted, stopped or failed training job again from its newest checkpoint."""
        return self.request("POST", f"/api/train/{urllib.parse.quote(job_id, safe='')}/resume")

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
        """List what the server can load: model names (--model_type), trained runs and local checkpoints."""
        answer = self._call(self.client.models)
        if self.as_json:
            print_json(answer)
            return
        pretrained = answer.get("pretrained_models") or []
        print(f"pretrained models ({len(pretrained)}): {', '.join(pretrained) or 'none'}")
        trained = answer.get("trained_models") or []
        print("trained models:" if trained else "trained models: none")
        for m in trained:
            config = m.get("config") or {}
            about = ", ".join(f"{k}={config[k]}" for k in ("dataset", "model_type") if config.get(k) is not None)
            print(f"  {m['name']}  {m.get('path', '')}" + (f"  ({about})" if about else ""))
        local = answer.get("local") or []
        width = max((len(m["name"]) for m in local), default=0)
        print("local checkpoints:" if local else "local checkpoints: none")
        for m in local:
            print(f"  {m['name']:<{width}}  {m.get('path', '')}")
        print(f"named configs ({len(answer.get('named', []))}): {', '.join(answer.get('named', []))}")

    def list(self) -> None:
        """List what the server can load (the same as `models`, under nanoGPT's client's name)."""
        self.models()

    def load(
        self, model_path: Optional[str] = None, model_name: Optional[str] = None, model_type: Optional[str] = None
    ) -> None:
        """Make the server load another model: give one of the three.

        Args:
            model_path: A checkpoint (folder, or nanoGPT ckpt.pt) or a training run's output_dir, under the server's
                models or runs folder.
            model_type: A model name: registered, downloaded, a catalog name or a Hub repo id, like gpt2
                (`litllm client list` shows them).
            model_name: The same as model_type.
        """
        self._show(self._call(self.client.load_model, model_path, model_name, model_type))

    def generate(
        self,
        prompt: Optional[str] = None,
        max_new_tokens: Optional[int] = None,
        temperature: Optional[float] = None,
        top_k: Optional[int] = None,
        max_tokens: Optional[int] = None,
    ) -> None:
        """Continue a prompt with the served model and print the prompt and its continuation.

        Args:
            prompt: Text to continue.
            max_new_tokens: Most tokens to generate (default: the server's).
            temperature: Sampling temperature; 0 is greedy (default: the server's).
            top_k: Sample among the k most likely tokens only (default: the server's).
            max_tokens: The same as max_new_tokens (nanoGPT's client's name).
        """
        if prompt is None:
            raise ValueError("--prompt is required: the text to continue")
        if max_tokens is not None and max_new_tokens is not None and max_tokens != max_new_tokens:
            raise ValueError(f"--max_tokens {max_tokens} and --max_new_tokens {max_new_tokens} disagree: give one")
        limit = max_new_tokens if max_new_tokens is not None else max_tokens
        answer = self._call(self.client.generate, prompt, limit, temperature, top_k)
        if self.as_json:
            print_json(answer)
        else:
            print(answer.get("generated_text", ""))

    def train(
        self,
        command: Optional[Literal["pretrain", "finetune"]] = None,
        recipe: Optional[str] = None,
        config_file: Optional[Path] = None,
        overrides: Optional[dict[str, Any]] = None,
        dataset: Optional[str] = None,
        output_dir: Optional[str] = None,
        model_type: Optional[str] = None,
        batch_size: Optional[int] = None,
        learning_rate: Optional[float] = None,
        max_iters: Optional[int] = None,
        eval_interval: Optional[int] = None,
    ) -> None:
        """Start a training job on the server (one runs at a time): from a recipe, or in nanoGPT's form from a
        dataset (`--dataset shakespeare_char --output_dir out/mine [--model_type gpt2] ...`).

        Args:
            command: The training command a recipe runs (default: pretrain).
            recipe: A recipe of the server's config_hub, like `pretrain/debug`.
            config_file: A local recipe YAML, sent to the server inline (instead of --recipe).
            overrides: Recipe keys to change, like '{"trainer.max_steps": 5}'.
            dataset: What to train on: a prepared nanoGPT data/<name> folder, a folder of text files, or stdlib.
            output_dir: The run's folder, inside the server's runs folder (default: one named by the job's id).
            model_type: Finetune this model (a model name, or a checkpoint under the server's folders); without it
                a small GPT-2-style model is trained from scratch.
            batch_size: Sequences per step.
            learning_rate: Peak learning rate.
            max_iters: Optimizer steps.
            eval_interval: Steps between validations (default: at the end).
        """
        config = read_yaml(config_file) if config_file is not None else None
        fields = given(
            dataset=dataset,
            output_dir=output_dir,
            model_type=model_type,
            batch_size=batch_size,
            learning_rate=learning_rate,
            max_iters=max_iters,
            eval_interval=eval_interval,
        )
        answer = self._call(lambda: self.client.train(command, recipe, config, overrides, **fields))
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

    def resume(self, job_id: str) -> None:
        """Resume an interrupted, stopped or failed training job from its newest checkpoint (`--resume auto`).

        A job that was running when the server stopped is interrupted; it goes on in its own run directory.

        Args:
            job_id: The id `litllm client train` printed.
        """
        self._show_job(self._call(self.client.resume, job_id))
        if not self.as_json:
            print(f"follow it with: litllm client job {job_id} --follow true")

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
    if key in ("started", "ended", "timestamp") and isinstance(value, (int, float)):
        return datetime.fromtimestamp(value).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, float):
        return f"{value:.4g}"
    return dumps(value) if isinstance(value, (dict, list)) else str(value)


def print_json(answer: Any) -> None:
    print(dumps(answer, indent=2))


def read_yaml(path: Path) -> dict[str, Any]:
    from litllm.paths import read_yaml_mapping

    return read_yaml_mapping(path, "recipe: expected a mapping of recipe keys")
