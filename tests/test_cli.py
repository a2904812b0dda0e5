"""The `litllm` command line: real subprocesses, exit codes, one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def litllm(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "litllm.cli", *args], capture_output=True, text=True, env=env or ENV, timeout=300
    )


def assert_clean_failure(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr


def test_help_does_not_import_torch() -> None:
    code = "import sys\nfrom litllm.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
    code += "assert 'torch' not in sys.modules, 'torch imported by --help'"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV)
    assert result.returncode == 0, result.stderr
    assert "generate" in result.stdout and "download" in result.stdout


def test_download_list_names_registry_models() -> None:
    result = litllm("download", "list")
    assert result.returncode == 0
    assert "pythia-160m" in result.stdout and "EleutherAI/pythia-160m" in result.stdout
    assert "Llama-3.2-1B" in result.stdout


def test_download_offline_fails_fast_in_one_line() -> None:
    start = time.perf_counter()
    result = litllm("download", "Qwen/Qwen2.5-0.5B")
    assert time.perf_counter() - start < 15  # interpreter start-up included; the Hub call itself fails at once
    assert_clean_failure(result, "Qwen/Qwen2.5-0.5B", "folder")
    assert len(result.stderr.strip().splitlines()) == 1


def test_generate_prints_a_continuation(litllm_dir: Path) -> None:
    result = litllm("generate", str(litllm_dir), "--prompt", "def add(", "--max_new_tokens", "8", "--temperature", "0")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()


def test_generate_streams_the_same_text(litllm_dir: Path) -> None:
    args = ("generate", str(litllm_dir), "--prompt", "def add(", "--max_new_tokens", "8", "--temperature", "0")
    assert litllm(*args, "--stream", "true").stdout == litllm(*args).stdout


def test_generate_missing_directory_is_one_line_exit_2(tmp_path: Path) -> None:
    result = litllm("generate", str(tmp_path / "nope"), "--prompt", "hi")
    assert_clean_failure(result, "nope")


def test_generate_bad_temperature_names_it(litllm_dir: Path) -> None:
    result = litllm("generate", str(litllm_dir), "--prompt", "hi", "--temperature", "-1")
    assert_clean_failure(result, "temperature")


def test_misspelt_option_is_rejected_by_name(litllm_dir: Path) -> None:
    result = litllm("generate", str(litllm_dir), "--prompt", "hi", "--max_new_tokenz", "3")
    assert result.returncode == 2
    assert "max_new_tokenz" in result.stderr
    assert "Traceback" not in result.stderr


def test_convert_round_trip_through_the_command_line(hf_llama_dir: Path, tmp_path: Path) -> None:
    from litllm.checkpoint.hf import read_hf_weights

    assert litllm("convert", "to_litllm", str(hf_llama_dir), str(tmp_path / "lit")).returncode == 0
    assert litllm("convert", "to_hf", str(tmp_path / "lit"), str(tmp_path / "hf")).returncode == 0
    a, b = read_hf_weights(hf_llama_dir), read_hf_weights(tmp_path / "hf")
    assert set(a) == set(b)
    assert all((a[k] == b[k]).all() for k in a)
    assert (tmp_path / "hf" / "tokenizer.json").is_file()


def test_convert_unsupported_model_type_is_one_line(tmp_path: Path) -> None:
    import json

    import torch
    from safetensors.torch import save_file

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    save_file({"w": torch.zeros(1)}, str(tmp_path / "model.safetensors"))
    result = litllm("convert", "to_litllm", str(tmp_path), str(tmp_path / "out"))
    assert_clean_failure(result, "bert")


@pytest.mark.parametrize("missing", ["model.safetensors"])
def test_generate_checkpoint_without_weights(litllm_dir: Path, tmp_path: Path, missing: str) -> None:
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(litllm_dir, broken)
    (broken / missing).unlink()
    assert_clean_failure(litllm("generate", str(broken), "--prompt", "hi"), missing)


def test_generate_draws_several_samples_and_honours_stop(litllm_dir: Path, capsys: pytest.CaptureFixture) -> None:
    from litllm.cli import main

    main(["generate", str(litllm_dir), "--prompt", "def", "--max_new_tokens", "6", "--num_samples", "3", "--seed", "1"])
    out = capsys.readouterr().out
    assert [line for line in out.splitlines() if line.startswith("---")] == [f"--- sample {i} ---" for i in (1, 2, 3)]
    full_args = ["generate", str(litllm_dir), "--prompt", "def", "--max_new_tokens", "30", "--temperature", "0"]
    main(full_args)
    full = capsys.readouterr().out.rstrip("\n")
    main([*full_args, "--stop", f"[{full[5:9]!r}]"])
    assert capsys.readouterr().out.rstrip("\n") == full[: full.index(full[5:9])]


def test_chat_streams_replies_keeps_history_and_understands_commands(
    litllm_dir: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    from litllm.api import ChatSession as Conversation
    from litllm.cli import main

    sent: list[list[dict]] = []
    real_send = Conversation.send

    def spy(self: Conversation, text: str, **kwargs: object) -> object:
        sent.append([*self.messages, {"role": "user", "content": text}])
        return real_send(self, text, **kwargs)

    monkeypatch.setattr(Conversation, "send", spy)
    session = 'hello\nsecond line \\\ncontinued\n/reset\n"""\nblock one\nblock two\n"""\n/exit\nnever read\n'
    monkeypatch.setattr("sys.stdin", io.StringIO(session))
    main(["chat", str(litllm_dir), "--system", "Be brief.", "--max_new_tokens", "4", "--temperature", "0"])
    out = capsys.readouterr().out
    assert "(conversation reset)" in out
    assert [m[-1]["content"] for m in sent] == ["hello", "second line \ncontinued", "block one\nblock two"]
    assert [len(m) for m in sent] == [2, 4, 2]  # history grows, /reset keeps only the system message
    assert all(m[0] == {"role": "system", "content": "Be brief."} for m in sent)


def test_chat_takes_nanochats_flags_and_answers_one_prompt(
    litllm_dir: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    from litllm.api import LLM
    from litllm.cli import main

    monkeypatch.setattr("sys.stdin", io.StringIO("never read\n"))
    main(["chat", "-i", str(litllm_dir), "-p", "Why is the sky blue?", "-t", "0", "-k", "50", "--max-new-tokens", "6"])
    reply = capsys.readouterr().out
    llm = LLM.load(litllm_dir, device="cpu")
    expected = llm.chat([{"role": "user", "content": "Why is the sky blue?"}], max_new_tokens=6, temperature=0)
    assert reply == expected + "\n"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["chat", "-i", "sft", "-p", "hi", "-t", "0.6", "-k", "5"],
            ["chat", "sft", "--prompt", "hi", "--temperature", "0.6", "--top_k", "5"],
        ),
        (["chat", "--source=sft", "--top-k", "5"], ["chat", "sft", "--top_k", "5"]),
        (["chat", "tiny", "--max-new-tokens=4"], ["chat", "tiny", "--max_new_tokens=4"]),
        (
            ["serve", "-n", "1", "-p", "8000", "--host", "0.0.0.0", "-i", "sft"],
            ["serve", "--num_gpus", "1", "--port", "8000", "--host", "0.0.0.0", "--source", "sft"],
        ),
        (["serve", "tiny", "--port", "8000"], ["serve", "--source", "tiny", "--port", "8000"]),
        (["serve", "--port", "8000"], ["serve", "--port", "8000"]),
        (["tokenizer", "train", "--train-ratio", "0.9"], ["tokenizer", "train", "--train_ratio", "0.9"]),
        (["pretrain", "--data.init-args.x", "1"], ["pretrain", "--data.init-args.x", "1"]),  # LightningCLI's own
        (
            ["evaluate", "-i", "sft", "--config", "e.yaml"],
            ["evaluate", "--model.init_from", "sft", "--config", "e.yaml"],
        ),
        (["evaluate", "--source=base"], ["evaluate", "--model.init_from=base"]),
    ],
)
def test_nanochat_spellings_of_options_are_read_as_litllms(argv: list[str], expected: list[str]) -> None:
    from litllm.cli import normalize_argv

    assert normalize_argv(argv) == expected
