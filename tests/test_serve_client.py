"""`litllm client` against a stand-in control API: a real HTTP server in this process answering canned JSON."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from litllm.cli import main
from litllm.serve.client import Client, ClientError, new_lines

JOB = {"id": "job-1", "pid": 123, "command": "pretrain", "run_dir": "/runs/job-1", "config_path": "/runs/job-1/c.yaml"}


class StandIn(ThreadingHTTPServer):
    """Records every request; answers like `litllm serve`'s control routes."""

    def __init__(self, api_key: str | None = None) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.api_key, self.requests = api_key, []
        self.job_answers: list[dict[str, Any]] = []  # what successive GET /api/train/job-1 return

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def answer(self, method: str, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if method == "GET" and path == "/api/status":
            return 200, {"status": "ready", "model_loaded": True, "model": "tiny", "device": "cpu", "timestamp": "t"}
        if method == "GET" and path == "/api/models":
            return 200, {
                "pretrained_models": ["tiny", "gpt2"],
                "trained_models": [{"name": "out/mine", "path": "/r/out/mine", "config": {"dataset": "tinychar"}}],
                "named": ["debug", "pythia-14m"],
                "local": [{"name": "tiny", "path": "/m/tiny", "config": {}}],
            }
        if method == "POST" and path == "/api/load_model":
            return 200, {"message": "Model loaded successfully", "model": next(iter(body.values()))}
        if method == "POST" and path == "/api/generate":
            return 200, {"generated_text": body["prompt"] + " world", "parameters": body}
        if method == "POST" and path == "/api/train":
            if body.get("recipe") == "busy":
                return 409, error("job 'job-0' is still running; stop it first")
            return 201, {**JOB, "state": "running"}
        if path == "/api/train/job-1":
            if method == "DELETE":
                return 200, {**JOB, "state": "stopped", "returncode": 130}
            return 200, self.job_answers.pop(0) if len(self.job_answers) > 1 else self.job_answers[0]
        return 404, error(f"no route {method} {path}")


def error(message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}}


class Handler(BaseHTTPRequestHandler):
    server: StandIn

    def handle_one(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self.server.requests.append(
            {"method": self.command, "path": self.path, "body": body, "auth": self.headers.get("Authorization")}
        )
        if self.server.api_key and self.headers.get("Authorization") != f"Bearer {self.server.api_key}":
            status, answer = 401, error("missing or wrong API key")
        else:
            status, answer = self.server.answer(self.command, self.path, body or {})
        payload = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_DELETE = handle_one

    def log_message(self, *args: Any) -> None:  # keep the test output clean
        pass


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[StandIn]:
    monkeypatch.setenv("no_proxy", "*")  # a proxy in the environment must not sit between us and loopback
    monkeypatch.delenv("LITLLM_API_KEY", raising=False)
    server = StandIn()
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def client(server: StandIn, *args: str) -> None:
    main(["client", "--url", server.url, *args])


def test_status_prints_the_server_fields(server: StandIn, capsys: pytest.CaptureFixture) -> None:
    client(server, "status")
    assert server.requests == [{"method": "GET", "path": "/api/status", "body": None, "auth": None}]
    out = capsys.readouterr().out
    assert "model:" in out and "tiny" in out and "device:" in out


def test_json_prints_the_raw_answer(server: StandIn, capsys: pytest.CaptureFixture) -> None:
    client(server, "--json", "true", "status")
    assert json.loads(capsys.readouterr().out)["model_loaded"] is True


def test_the_api_key_is_sent_as_a_bearer_token(server: StandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    server.api_key = "s3cret"
    client(server, "--api_key", "s3cret", "status")
    monkeypatch.setenv("LITLLM_API_KEY", "s3cret")
    client(server, "status")
    assert [r["auth"] for r in server.requests] == ["Bearer s3cret", "Bearer s3cret"]


def test_a_refused_api_key_is_one_line_and_exit_2(server: StandIn, capsys: pytest.CaptureFixture) -> None:
    server.api_key = "s3cret"
    with pytest.raises(SystemExit) as exit:
        client(server, "--api_key", "wrong", "status")
    assert exit.value.code == 2
    assert capsys.readouterr().err == "litllm client: error: missing or wrong API key (HTTP 401)\n"


def test_models_lists_local_checkpoints_and_named_configs(server: StandIn, capsys: pytest.CaptureFixture) -> None:
    client(server, "models")
    out = capsys.readouterr().out
    assert "tiny" in out and "/m/tiny" in out and "debug, pythia-14m" in out


@pytest.mark.parametrize("command", ["models", "list"])
def test_list_shows_pretrained_and_trained_models(server: StandIn, capsys: pytest.CaptureFixture, command: str) -> None:
    client(server, command)
    assert server.requests[0]["path"] == "/api/models"
    out = capsys.readouterr().out
    assert "pretrained models (2): tiny, gpt2" in out and "out/mine  /r/out/mine  (dataset=tinychar)" in out


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--model_name", "pythia-14m"), ("--model_path", "out/my_model/ckpt.pt"), ("--model_type", "gpt2")],
)
def test_load_sends_the_model_to_load(server: StandIn, capsys: pytest.CaptureFixture, flag: str, value: str) -> None:
    client(server, "load", flag, value)
    assert server.requests[0]["method"] == "POST" and server.requests[0]["path"] == "/api/load_model"
    assert server.requests[0]["body"] == {flag.removeprefix("--"): value}
    assert value in capsys.readouterr().out


def test_generate_sends_only_the_given_options_and_prints_the_text(
    server: StandIn, capsys: pytest.CaptureFixture
) -> None:
    client(server, "generate", "--prompt", "hello", "--max_new_tokens", "7")
    assert server.requests[0]["body"] == {"prompt": "hello", "max_new_tokens": 7}
    assert capsys.readouterr().out == "hello world\n"


def test_generate_takes_nanogpts_client_flags(server: StandIn, capsys: pytest.CaptureFixture) -> None:
    prompt = "Once upon a time"
    client(server, "generate", "--prompt", prompt, "--max_tokens", "200", "--temperature", "0.9", "--top_k", "50")
    assert server.requests[0]["body"] == {"prompt": prompt, "max_new_tokens": 200, "temperature": 0.9, "top_k": 50}
    assert capsys.readouterr().out == "Once upon a time world\n"


def test_train_sends_nanogpts_fields(server: StandIn, capsys: pytest.CaptureFixture) -> None:
    client(
        server,
        *("train", "--dataset", "openwebtext", "--output_dir", "out/my_model", "--model_type", "gpt2"),
        *("--batch_size", "8", "--learning_rate", "5e-5", "--max_iters", "100", "--eval_interval", "10"),
    )
    assert server.requests[0]["body"] == {
        "dataset": "openwebtext",
        "output_dir": "out/my_model",
        "model_type": "gpt2",
        "batch_size": 8,
        "learning_rate": 5e-5,
        "max_iters": 100,
        "eval_interval": 10,
    }
    assert "litllm client job job-1" in capsys.readouterr().out


def test_train_sends_the_recipe_and_overrides(server: StandIn, capsys: pytest.CaptureFixture) -> None:
    client(server, "train", "--recipe", "pretrain/debug", "--overrides", '{"trainer.max_steps": 5}')
    request = server.requests[0]
    assert (request["method"], request["path"]) == ("POST", "/api/train")
    assert request["body"] == {"recipe": "pretrain/debug", "overrides": {"trainer.max_steps": 5}}
    assert "job-1" in capsys.readouterr().out


def test_train_sends_a_local_recipe_file_inline(server: StandIn, tmp_path: Path) -> None:
    recipe = {"model": {"model_config": {"name": "debug"}}, "trainer": {"max_steps": 3}}
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump(recipe))
    client(server, "train", "--command", "finetune", "--config_file", str(tmp_path / "mine.yaml"))
    assert server.requests[0]["body"] == {"command": "finetune", "config": recipe}


def test_an_error_answer_is_one_line_and_exit_2(server: StandIn, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit:
        client(server, "train", "--recipe", "busy")
    assert exit.value.code == 2
    captured = capsys.readouterr()
    assert captured.err == "litllm client: error: job 'job-0' is still running; stop it first (HTTP 409)\n"
    assert captured.out == ""


def test_job_shows_its_state_and_last_log_lines(server: StandIn, capsys: pytest.CaptureFixture) -> None:
    server.job_answers = [{**JOB, "state": "running", "step": 40, "loss": 3.21, "last_lines": ["a", "b"]}]
    client(server, "job", "job-1")
    assert server.requests[0]["path"] == "/api/train/job-1"
    out = capsys.readouterr().out
    assert "running" in out and "3.21" in out and out.endswith("a\nb\n")


def test_job_follow_prints_new_log_lines_until_the_job_ends(server: StandIn, capsys: pytest.CaptureFixture) -> None:
    running = {**JOB, "state": "running", "returncode": None, "step": None, "loss": None}
    server.job_answers = [
        {**running, "last_lines": ["start", "bar 1%"]},
        {**running, "last_lines": ["start", "model", "bar 50%"], "step": 99, "loss": 2.5},
        {**running, "state": "succeeded", "returncode": 0, "last_lines": ["model", "bar 100%", "done"]},
    ]
    client(server, "job", "job-1", "--follow", "true", "--interval", "0.01")
    lines = capsys.readouterr().out.splitlines()
    assert [line for line in lines if not line.startswith("[job")] == ["start", "model", "bar 100%", "done"]
    assert "[job job-1] step 99  loss 2.5" in lines and lines[-1] == "[job job-1] succeeded (return code 0)"


def test_job_follow_exits_1_when_the_job_fails(server: StandIn) -> None:
    server.job_answers = [{**JOB, "state": "failed", "returncode": 1, "step": None, "last_lines": []}]
    with pytest.raises(SystemExit) as exit:
        client(server, "job", "job-1", "--follow", "true")
    assert exit.value.code == 1


def test_an_unknown_job_is_one_line_and_exit_2(server: StandIn, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit:
        client(server, "job", "nope/../x")
    assert exit.value.code == 2
    assert server.requests[0]["path"] == "/api/train/nope%2F..%2Fx"  # the id stays one path segment
    assert "(HTTP 404)" in capsys.readouterr().err


def test_stop_sends_delete(server: StandIn, capsys: pytest.CaptureFixture) -> None:
    client(server, "stop", "job-1")
    assert (server.requests[0]["method"], server.requests[0]["path"]) == ("DELETE", "/api/train/job-1")
    assert "stopped" in capsys.readouterr().out


def test_an_unreachable_server_is_one_line_naming_the_url_and_exit_2(capsys: pytest.CaptureFixture) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    with pytest.raises(SystemExit) as exit:
        main(["client", "--url", url, "status"])
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"litllm client: error: cannot reach the litllm server at {url}") and err.count("\n") == 1


def test_the_python_client_returns_answers_and_raises_client_errors(server: StandIn) -> None:
    api = Client(server.url + "/")
    assert api.generate("hi", top_k=5)["generated_text"] == "hi world"
    with pytest.raises(ClientError) as e:
        api.train(recipe="busy")
    assert e.value.status == 409 and "still running" in e.value.message


def test_a_url_without_scheme_is_refused() -> None:
    with pytest.raises(ValueError, match="'localhost:8000' must start with http://"):
        Client("localhost:8000")


def test_new_lines_are_those_after_the_overlap_of_two_windows() -> None:
    assert new_lines([], ["a", "b"]) == ["a", "b"]
    assert new_lines(["a", "b", "c"], ["b", "c", "d", "e"]) == ["d", "e"]
    assert new_lines(["a", "b"], ["a", "b"]) == []
    assert new_lines(["x"], ["y", "z"]) == ["y", "z"]
