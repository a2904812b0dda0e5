"""nanoGPT's "Language Model API Server" document, run against a live `litllm serve` started with no model: its
requests near-verbatim (with `requests`), its responses' fields and types, a training run end to end then loaded,
the confinement of paths, the offline Hub, nanochat's /health and /stats fields, and the client's flags."""

from __future__ import annotations

import json
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from litllm import LLM
from litllm.cli import main, serve_source
from litllm.data.nanogpt import prepare_char_dataset
from litllm.local_models import add
from tests.serve_helpers import Server, running_server
from tests.test_nanogpt import TEXT, write_ckpt, write_meta

PROMPT = "Once upon a time"


def my_model(tmp: Path) -> dict:
    """The nanoGPT run of the `tmp` fixture as /api/models lists it, with write_ckpt's training config."""
    path = str(tmp / "runs" / "out" / "my_model" / "ckpt.pt")
    config = {"dataset": "shakespeare_char", "model_type": None, "batch_size": 12}
    return {"name": "out/my_model", "path": path, "config": config, "ready": True}


@pytest.fixture(scope="module")
def tmp(tmp_path_factory: pytest.TempPathFactory, litllm_dir: Path) -> Iterator[Path]:
    """The server's folders: models/ holds a litllm checkpoint and a nanoGPT ckpt.pt (with its meta.pkl), the runs
    root a prepared nanoGPT dataset, data/tinychar, and a nanoGPT run, out/my_model/ckpt.pt (as nanoGPT's train.py
    leaves them); the tiny model is registered as `tiny` in the module's
    own $LITLLM_HOME (module fixtures run before the per-test one), which the module's server inherits."""
    tmp = tmp_path_factory.mktemp("serve_nanogpt")
    shutil.copytree(litllm_dir, tmp / "models" / "tiny-llama")
    meta = write_meta(tmp / "models" / "nano")
    write_ckpt(tmp / "models" / "nano" / "ckpt.pt", vocab_size=meta["vocab_size"])
    prepare_char_dataset(TEXT, tmp / "runs" / "data" / "tinychar")
    write_meta(tmp / "runs" / "out" / "my_model")
    write_ckpt(tmp / "runs" / "out" / "my_model" / "ckpt.pt", vocab_size=meta["vocab_size"], seed=1)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LITLLM_HOME", str(tmp / "home"))
        add("tiny", litllm_dir)
        yield tmp


@pytest.fixture(scope="module")
def server(tmp: Path) -> Iterator[Server]:
    with running_server(None, tmp, api_key=None) as server:  # `litllm serve` alone, as `python api_server.py`
        yield server


@pytest.fixture(scope="module")
def api_url(server: Server) -> str:
    return server.url


def test_status_before_a_model_is_online_with_no_model(api_url: str) -> None:
    before = time.time()
    status = requests.get(f"{api_url}/api/status").json()
    assert status["status"] == "online" and status["model_loaded"] is False and status["device"] == "cpu"
    assert isinstance(status["timestamp"], float) and before - 1 < status["timestamp"] < time.time() + 1


def test_health_and_stats_have_nanochats_worker_fields(api_url: str) -> None:
    health = requests.get(f"{api_url}/health")
    assert health.status_code == 200
    assert health.json() | {"model": None} == {
        "status": "ok",
        "ready": False,
        "model": None,
        "model_loaded": False,
        "num_gpus": 0,
        "available_workers": 0,
    }
    stats = requests.get(f"{api_url}/stats").json()
    assert (stats["total_workers"], stats["available_workers"], stats["busy_workers"]) == (1, 0, 0)
    assert stats["workers"] == [{"gpu_id": 0, "device": "cpu"}]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/generate", {"prompt": PROMPT, "max_new_tokens": 150, "temperature": 0.8, "top_k": 40}),
        ("/v1/completions", {"prompt": PROMPT}),
        ("/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}),
    ],
)
def test_generation_without_a_model_is_503_saying_how_to_load_one(api_url: str, path: str, body: dict) -> None:
    response = requests.post(f"{api_url}{path}", json=body)
    assert response.status_code == 503
    answer = response.json()
    assert answer["detail"].startswith("no model loaded; POST /api/load_model")
    assert answer["error"]["code"] == "model_not_loaded" and answer["error"]["message"] == answer["detail"]


def test_models_lists_the_names_model_type_loads_and_the_trained_runs(api_url: str, tmp: Path) -> None:
    models = requests.get(f"{api_url}/api/models").json()
    assert {"tiny", "gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl"} <= set(models["pretrained_models"])
    assert models["trained_models"] == [my_model(tmp)]


def test_load_by_model_type_then_generate(api_url: str, litllm_dir: Path) -> None:
    response = requests.post(f"{api_url}/api/load_model", json={"model_type": "tiny"})
    assert response.status_code == 200 and response.json()["message"] == "Model loaded successfully"
    assert requests.get(f"{api_url}/api/status").json()["model_loaded"] is True

    response = requests.post(
        f"{api_url}/api/generate",
        json={"prompt": PROMPT, "max_new_tokens": 150, "temperature": 0.8, "top_k": 40},
    )
    answer = response.json()
    assert response.status_code == 200 and answer["prompt"] == PROMPT
    assert answer["generated_text"].startswith(PROMPT) and answer["generated_text"] == PROMPT + answer["completion"]
    assert answer["parameters"] == {"max_new_tokens": 150, "temperature": 0.8, "top_k": 40}
    greedy = requests.post(f"{api_url}/api/generate", json={"prompt": PROMPT, "max_new_tokens": 8, "temperature": 0})
    expected = LLM.load(litllm_dir).generate(PROMPT, max_new_tokens=8, temperature=0)
    assert greedy.json()["generated_text"] == PROMPT + expected
    health = requests.get(f"{api_url}/health").json()
    assert health["ready"] is True and health["available_workers"] == 1


@pytest.mark.parametrize("model_path", ["nano/ckpt.pt", "nano"])
def test_load_a_nanogpt_checkpoint_by_model_path(api_url: str, tmp: Path, model_path: str) -> None:
    response = requests.post(f"{api_url}/api/load_model", json={"model_path": model_path})
    assert response.status_code == 200 and response.json()["model"] == "nano", response.text
    first = "First Citizen:"  # characters of the char-level vocabulary in meta.pkl
    answer = requests.post(f"{api_url}/api/generate", json={"prompt": first, "max_new_tokens": 10, "temperature": 0})
    expected = LLM.load(tmp / "models" / "nano" / "ckpt.pt").generate(first, max_new_tokens=10, temperature=0)
    assert answer.json()["generated_text"] == first + expected


@pytest.mark.parametrize("field", ["model_path", "model_name", "model_type"])
def test_paths_outside_the_roots_are_refused_for_every_field(api_url: str, litllm_dir: Path, field: str) -> None:
    for value in (str(litllm_dir), "../serve_nanogpt", "nano/../../.."):
        response = requests.post(f"{api_url}/api/load_model", json={field: value})
        assert response.status_code == 400 and "outside the server's roots" in response.json()["detail"], value


def test_a_symlink_out_of_the_roots_is_refused(api_url: str, tmp: Path, litllm_dir: Path) -> None:
    (tmp / "models" / "link").symlink_to(litllm_dir)
    response = requests.post(f"{api_url}/api/load_model", json={"model_path": "link"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "path_outside_root"


def test_a_hub_name_offline_is_503_with_the_hub_message(api_url: str) -> None:
    response = requests.post(f"{api_url}/api/load_model", json={"model_type": "gpt2-medium"})
    assert response.status_code == 503
    assert "cannot download openai-community/gpt2-medium" in response.json()["detail"]
    assert "HF_HUB_OFFLINE" in response.json()["detail"]


def test_load_the_documents_trained_nanogpt_model(api_url: str, tmp: Path) -> None:
    response = requests.post(f"{api_url}/api/load_model", json={"model_path": "out/my_model/ckpt.pt"})
    assert response.status_code == 200 and response.json()["model"] == "my_model", response.text
    first = "All:"
    answer = requests.post(f"{api_url}/api/generate", json={"prompt": first, "max_new_tokens": 10, "temperature": 0})
    expected = LLM.load(tmp / "runs" / "out" / "my_model").generate(first, max_new_tokens=10, temperature=0)
    assert answer.json()["generated_text"] == first + expected


def wait_for_job(api_url: str, job_id: str, timeout_s: float = 300) -> dict:
    deadline = time.monotonic() + timeout_s
    while (job := requests.get(f"{api_url}/api/train/{job_id}").json())["state"] == "running":
        assert time.monotonic() < deadline, job
        time.sleep(0.5)
    return job


def test_train_from_scratch_end_to_end_then_load_the_result(api_url: str, tmp: Path) -> None:
    request = {
        "dataset": "tinychar",
        "output_dir": "out/tiny_model",
        "batch_size": 4,
        "learning_rate": 1e-3,
        "max_iters": 3,
        "eval_interval": 2,
    }
    response = requests.post(f"{api_url}/api/train", json=request)
    assert response.status_code == 201, response.text
    answer = response.json()
    assert answer["message"] == "Training started" and answer["config"] == request
    assert isinstance(answer["process_id"], int) and answer["process_id"] == answer["pid"]
    config_path = Path(answer["config_path"])
    assert config_path == tmp / "runs" / "out" / "tiny_model" / "train_config.json"
    assert json.loads(config_path.read_text()) == request

    job = wait_for_job(api_url, answer["id"])
    assert job["state"] == "succeeded", job["last_lines"]
    assert job["step"] == 2  # Lightning counts from 0: three steps
    trained = requests.get(f"{api_url}/api/models").json()["trained_models"]
    assert trained[0] == my_model(tmp)
    run = {"name": "out/tiny_model", "path": str(tmp / "runs" / "out" / "tiny_model"), "ready": True}
    assert trained[1:] == [{**run, "config": {"model_type": None, **request}}]

    response = requests.post(f"{api_url}/api/load_model", json={"model_path": "out/tiny_model"})
    assert response.status_code == 200 and response.json()["model"] == "tiny_model", response.text
    assert response.json()["context_length"] == 64  # the small from-scratch model
    text = requests.post(f"{api_url}/api/generate", json={"prompt": "All:", "max_new_tokens": 12}).json()
    assert text["generated_text"].startswith("All:") and len(text["completion"]) > 0


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"dataset": "shakesphere", "output_dir": "out/x"}, 400, "unknown dataset 'shakesphere'"),
        ({"dataset": "tinychar", "output_dir": "/tmp/elsewhere"}, 400, "outside the runs folder"),
        ({"dataset": "tinychar", "output_dir": "../../elsewhere"}, 400, "outside the runs folder"),
        ({"dataset": "tinychar", "output_dir": "out/tiny_model"}, 409, "already holds files"),
        ({"dataset": "tinychar", "output_dir": "out/y", "model_type": "gpt2"}, 503, "HF_HUB_OFFLINE"),
        ({"dataset": "tinychar", "model_type": "/etc"}, 400, "outside the server's roots"),
        ({"dataset": "tinychar", "max_iters": 0}, 400, "max_iters"),
        ({"dataset": "tinychar", "batch_size": "four"}, 422, "batch_size"),
        ({"output_dir": "out/z"}, 400, "output_dir needs dataset"),
        ({"dataset": "tinychar", "recipe": "pretrain/debug"}, 400, "not both"),
    ],
)
def test_bad_training_requests_are_refused_naming_the_value(
    api_url: str, body: dict, status: int, fragment: str
) -> None:
    response = requests.post(f"{api_url}/api/train", json=body)
    assert response.status_code == status and fragment in response.json()["detail"], response.text


def test_an_unknown_dataset_lists_the_datasets_there_are(api_url: str) -> None:
    detail = requests.post(f"{api_url}/api/train", json={"dataset": "openwebtext"}).json()["detail"]
    assert "nanoGPT datasets here: tinychar" in detail and "built-in corpora: stdlib" in detail


def test_the_client_commands_of_the_document(
    api_url: str, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.delenv("LITLLM_API_KEY", raising=False)
    main(["client", "--url", api_url, "status"])
    assert "online" in capsys.readouterr().out
    main(["client", "--url", api_url, "list"])
    assert "out/tiny_model" in capsys.readouterr().out
    main(["client", "--url", api_url, "load", "--model_type", "tiny"])
    assert "Model loaded successfully" in capsys.readouterr().out
    main(["client", "--url", api_url, "generate", "--prompt", PROMPT])
    assert capsys.readouterr().out.startswith(PROMPT)
    args = ["--prompt", PROMPT, "--max_tokens", "5", "--temperature", "0.9", "--top_k", "50"]
    main(["client", "--url", api_url, "--json", "true", "generate", *args])
    assert json.loads(capsys.readouterr().out)["parameters"] == {"max_new_tokens": 5, "temperature": 0.9, "top_k": 50}
    main(["client", "--url", api_url, "load", "--model_path", "out/tiny_model"])
    assert "tiny_model" in capsys.readouterr().out


def test_serve_takes_one_of_source_model_type_and_model_path() -> None:
    with pytest.raises(ValueError, match="at most one of SOURCE, --model_type and --model_path"):
        serve_source("a", "b", None)
    with pytest.raises(FileNotFoundError, match="does-not-exist"):
        serve_source(None, None, "does-not-exist")
    assert serve_source(None, "gpt2", None) == "gpt2" and serve_source(None, None, None) is None


def test_serve_preloads_a_model_type_and_a_run_by_model_path(tmp: Path, server: Server, litllm_dir: Path) -> None:
    server.stop(signal.SIGINT)  # the module's server is done: two CPU cores do not run three servers well
    add("tiny", litllm_dir)  # this test's $LITLLM_HOME is a new one
    with running_server(None, tmp, "--model_type", "tiny", "--num_gpus", "1", api_key=None) as preloaded:
        status = requests.get(f"{preloaded.url}/api/status").json()
        assert status["model_loaded"] is True and status["model"] == "tiny"
    run = tmp / "runs" / "out" / "tiny_model"
    with running_server(None, tmp, "--model_path", str(run), api_key=None) as preloaded:
        status = requests.get(f"{preloaded.url}/api/status").json()
        assert status["model_loaded"] is True and status["model"] == "tiny_model"
        answer = requests.post(f"{preloaded.url}/api/generate", json={"prompt": "All:", "max_new_tokens": 4}).json()
        assert answer["generated_text"].startswith("All:")
