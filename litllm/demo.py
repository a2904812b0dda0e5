"""`make demo`: the main job on the built-in default.

Until training lands this builds a random-weight model on a tokenizer trained on the Python standard library,
and streams a generation from it (expect gibberish: the weights are random).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from litllm.checkpoint import litllm_home

TOKENIZER_VOCAB = 4096


def stdlib_tokenizer_dir() -> Path:
    """A byte-level BPE tokenizer trained on the standard library, trained once and cached."""
    from litllm.data.stdlib import stdlib_files
    from litllm.tokenizer import train_bpe

    out = litllm_home() / "tokenizers" / f"stdlib-bpe-{TOKENIZER_VOCAB}"
    if (out / "tokenizer.json").is_file():
        return out
    print(f"training a {TOKENIZER_VOCAB}-token BPE tokenizer on the Python standard library -> {out}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".stdlib-bpe-", dir=out.parent))
    try:
        train_bpe(stdlib_files(max_bytes=5_000_000), TOKENIZER_VOCAB, tmp)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def main() -> None:
    from litllm.api import LLM
    from litllm.config import Config

    config = Config.from_name("pythia-14m", vocab_size=TOKENIZER_VOCAB)
    llm = LLM.load(config, init="random", tokenizer_dir=stdlib_tokenizer_dir())
    n_params = sum(p.numel() for p in llm.model.parameters())
    prompt = "def fibonacci(n):"
    print(f"{config.name} ({n_params / 1e6:.1f}M parameters, random weights) continuing {prompt!r}:\n")
    start, n_pieces = time.perf_counter(), 0
    print(prompt, end="", flush=True)
    for piece in llm.generate(prompt, max_new_tokens=100, temperature=0.8, top_k=50, seed=0, stream=True):
        print(piece, end="", flush=True)
        n_pieces += 1
    print(f"\n\n{n_pieces} text pieces in {time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    main()
