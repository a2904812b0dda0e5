"""Shared fixtures: tiny real checkpoints written by transformers, with a tokenizer trained here."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

# before anything imports huggingface_hub, which reads this once: tests never reach the network
os.environ["HF_HUB_OFFLINE"] = "1"

SAMPLE_TEXT = (
    "def add(a, b):\n    return a + b\n\nclass Point:\n    def __init__(self, x, y):\n        self.x = x\n"
    "        self.y = y\n\n# héllo wörld, 你好 🙂\nprint('hello world')\n"
) * 40


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep every test's downloads, registries and caches out of the user's home; never touch the network."""
    monkeypatch.setenv("LITLLM_HOME", str(tmp_path_factory.mktemp("litllm_home")))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 320-token byte-level BPE tokenizer trained on a small code sample."""
    from litllm.tokenizer import train_bpe

    out = tmp_path_factory.mktemp("tokenizer")
    text = tmp_path_factory.mktemp("text") / "sample.py"
    text.write_text(SAMPLE_TEXT)
    train_bpe([text], vocab_size=320, out_dir=out, show_progress=False)
    return out


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of 300 KB of the standard library's source, one file each, for runs that tokenize text files."""
    from litllm.data.stdlib import stdlib_files

    out = tmp_path_factory.mktemp("corpus")
    for i, path in enumerate(stdlib_files(max_bytes=300_000)):
        (out / f"{i:03d}.py").write_text(path.read_text(encoding="utf-8", errors="replace"))
    return out


@pytest.fixture(scope="session")
def hf_llama_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer_dir: Path) -> Path:
    """A tiny random Llama-style Hugging Face checkpoint (GQA, tied embeddings) with the tokenizer beside it."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from litllm.checkpoint import copy_tokenizer_files

    out = tmp_path_factory.mktemp("hf_llama")
    config = LlamaConfig(
        vocab_size=320,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        bos_token_id=0,
        eos_token_id=0,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).eval().save_pretrained(out)
    copy_tokenizer_files(tokenizer_dir, out)
    return out


@pytest.fixture(scope="session")
def litllm_dir(tmp_path_factory: pytest.TempPathFactory, hf_llama_dir: Path) -> Path:
    """The tiny Llama converted to a litllm checkpoint directory."""
    from litllm.checkpoint import convert_to_litllm

    return convert_to_litllm(hf_llama_dir, tmp_path_factory.mktemp("litllm_ckpt") / "tiny-llama")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium driven by Playwright, for the chat page's tests; skipped without one (failed under CI,
    whose `.ci/run` installs it and sets LITLLM_REQUIRE_CHROMIUM=1)."""
    from playwright.sync_api import sync_playwright

    chromium = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    if chromium is None:
        message = "no Chromium on PATH: `make browser` (or `apt-get install chromium`) to run the chat page tests"
        if os.environ.get("LITLLM_REQUIRE_CHROMIUM") == "1":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium)
        yield browser
        browser.close()
