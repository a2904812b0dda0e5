"""Caches are complete or absent: a process SIGKILLed while it writes one leaves nothing the next process trusts,
and the next process builds it again. (The tokenizer and tokenized-corpus caches are killed mid-write in
tests/test_kill_resume.py, inside a training run.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

TESTS = Path(__file__).parent


def run_until(code: str, env: dict[str, str], marker: Path, timeout: float = 60) -> None:
    """Run `code` in a new Python process and SIGKILL it the moment `marker` exists."""
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, start_new_session=True, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    try:
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert marker.exists(), f"the process never reached the write: {proc.communicate()[1].decode()[-2000:]}"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the C kernels are built on Linux only")
def test_a_kernel_build_killed_while_compiling_is_built_again(tmp_path: Path) -> None:
    import shutil

    compiler = shutil.which(os.environ.get("CC") or "cc")
    if compiler is None:
        pytest.skip("no C compiler")
    # a compiler that says when it starts and, when told to, takes its time: the kill lands mid-compile
    slow_cc = tmp_path / "slow-cc"
    slow_cc.write_text(
        f'#!/bin/sh\ncase "$*" in *-o*) touch "$COMPILING"; sleep "${{CC_DELAY:-0}}";; esac\nexec {compiler} "$@"\n'
    )
    slow_cc.chmod(0o755)
    home = tmp_path / "home"
    env = {**os.environ, "LITLLM_HOME": str(home), "CC": str(slow_cc), "COMPILING": str(tmp_path / "compiling")}
    build = textwrap.dedent("""
        from pathlib import Path
        import ctypes
        from litllm.cpu import native
        library = native.build(Path(native.__file__).with_name("attention.c"))
        ctypes.CDLL(str(library))
        print(library)
    """)
    run_until(build, {**env, "CC_DELAY": "60"}, tmp_path / "compiling")
    kernels = home / "kernels"
    assert not list(kernels.glob("[!.]*.so")), "a killed compile left a library where the next process takes it"

    done = subprocess.run([sys.executable, "-c", build], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert Path(done.stdout.strip()).parent == kernels and Path(done.stdout.strip()).is_file()


def test_a_download_killed_while_converting_is_fetched_again(tmp_path: Path, hf_llama_dir: Path) -> None:
    # the Hub is out of reach: snapshot_download copies a local Hugging Face folder, and writing the weights is slow,
    # so that the kill lands in the middle of converting the download into the model cache
    home = tmp_path / "home"
    writing = tmp_path / "writing"
    env = {**os.environ, "LITLLM_HOME": str(home), "PYTHONPATH": str(TESTS), "HF_HUB_OFFLINE": "1"}
    env.pop("LITLLM_MODEL_DIR", None)
    download = textwrap.dedent(f"""
        import shutil, sys, time
        import huggingface_hub, safetensors.torch

        def snapshot_download(repo_id, local_dir, **kwargs):
            shutil.copytree({str(hf_llama_dir)!r}, local_dir, dirs_exist_ok=True)
            return str(local_dir)

        save_file = safetensors.torch.save_file
        def slow_save_file(*args, **kwargs):
            save_file(*args, **kwargs)
            open({str(writing)!r}, "w").close()
            time.sleep(float(sys.argv[1]))

        huggingface_hub.snapshot_download = snapshot_download
        safetensors.torch.save_file = slow_save_file
        from litllm.checkpoint.hub import download
        print(download("tiny-org/tiny-llama"))
    """)
    proc = subprocess.Popen(
        [sys.executable, "-c", download, "60"], env=env, start_new_session=True, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 120
    try:
        while not writing.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert writing.exists(), proc.communicate()[1].decode()[-2000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    from litllm.checkpoint.hub import cached_checkpoint_dir
    from litllm.checkpoint.layout import checkpoint_kind
    from litllm.checkpoint.sources import locate

    os.environ["LITLLM_HOME"] = str(home)  # the autouse fixture's monkeypatch restores it
    cached = cached_checkpoint_dir("tiny-org/tiny-llama")
    assert checkpoint_kind(cached) is None
    assert locate("tiny-org/tiny-llama") == "tiny-org/tiny-llama"  # not trusted: it would be downloaded again

    done = subprocess.run([sys.executable, "-c", download, "0"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert checkpoint_kind(cached) == "litllm" and locate("tiny-org/tiny-llama") == cached
    # what is left of the killed conversion is one hidden temporary folder, which nothing reads
    assert len([p for p in cached.parent.iterdir() if p.name.startswith(".")]) == 1
