"""The LLM facade: loading from every kind of source, generating, streaming, saving, and bad input."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from litllm import LLM
from litllm.checkpoint import HubError, cached_checkpoint_dir
from litllm.config import Config
from litllm.inference.engine import Request, SamplingParams, generate_tokens


def hf_greedy(hf_dir: Path, ids: list[int], n: int) -> list[int]:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(hf_dir).eval()
    out = model.generate(torch.tensor([ids]), max_new_tokens=n, min_new_tokens=n, do_sample=False)
    return out[0, len(ids) :].tolist()


def test_greedy_generation_matches_transformers(hf_llama_dir: Path) -> None:
    llm = LLM.load(hf_llama_dir)
    ids = llm.tokenizer.encode("def add(a, b):")
    ours = list(generate_tokens(llm.model, Request(ids, 20, SamplingParams(temperature=0))))
    assert ours == hf_greedy(hf_llama_dir, ids, 20)


def test_kv_cache_decoding_equals_recomputing_the_whole_sequence(litllm_dir: Path) -> None:
    llm = LLM.load(litllm_dir)
    ids = llm.tokenizer.encode("class Point:")
    cached = list(generate_tokens(llm.model, Request(ids, 15, SamplingParams(temperature=0))))
    seq = list(ids)
    with torch.no_grad():
        for _ in range(15):
            seq.append(int(llm.model(torch.tensor([seq]))[0, -1].argmax()))
    assert cached == seq[len(ids) :]


def test_stream_pieces_join_to_the_full_text(litllm_dir: Path) -> None:
    llm = LLM.load(litllm_dir)
    full = llm.generate("print(", max_new_tokens=30, temperature=0)
    pieces = list(llm.generate("print(", max_new_tokens=30, temperature=0, stream=True))
    assert "".join(pieces) == full
    assert all("\ufffd" not in p for p in pieces) or "\ufffd" in full


def test_same_seed_gives_same_text(litllm_dir: Path) -> None:
    llm = LLM.load(litllm_dir)
    a = llm.generate("def", max_new_tokens=20, temperature=1.0, seed=3)
    b = llm.generate("def", max_new_tokens=20, temperature=1.0, seed=3)
    assert a == b


def test_load_accepts_hf_and_litllm_directories_with_equal_logits(hf_llama_dir: Path, litllm_dir: Path) -> None:
    a, b = LLM.load(hf_llama_dir), LLM.load(litllm_dir)
    idx = torch.tensor([[1, 5, 9, 200]])
    with torch.no_grad():
        torch.testing.assert_close(a.model(idx), b.model(idx), atol=0, rtol=0)


def test_save_then_load_gives_identical_model(litllm_dir: Path, tmp_path: Path) -> None:
    llm = LLM.load(litllm_dir)
    llm.save(tmp_path / "copy")
    again = LLM.load(tmp_path / "copy")
    for (name, p), (_, q) in zip(llm.model.state_dict().items(), again.model.state_dict().items(), strict=True):
        assert torch.equal(p, q), name
    assert again.tokenizer.encode("héllo 🙂") == llm.tokenizer.encode("héllo 🙂")


def test_dtype_argument_casts_the_weights(litllm_dir: Path) -> None:
    llm = LLM.load(litllm_dir, dtype="bfloat16")
    assert llm.model.wte.weight.dtype == torch.bfloat16
    assert isinstance(llm.generate("x", max_new_tokens=3, temperature=0), str)


def test_random_init_builds_a_named_config(tokenizer_dir: Path) -> None:
    llm = LLM.load("pythia-14m", init="random", tokenizer_dir=tokenizer_dir)
    assert llm.config.name == "pythia-14m"
    assert llm.config.n_layer == 6
    assert isinstance(llm.generate("def", max_new_tokens=5), str)


def test_random_init_accepts_a_config_object(tokenizer_dir: Path) -> None:
    config = Config(n_layer=1, n_embd=32, n_head=2, vocab_size=320, block_size=64)
    llm = LLM.load(config, init="random", tokenizer_dir=tokenizer_dir)
    assert llm.config is config


def test_random_init_without_tokenizer_is_refused() -> None:
    with pytest.raises(ValueError, match="tokenizer_dir"):
        LLM.load("pythia-14m", init="random")


def test_tokenizer_larger_than_the_vocabulary_is_refused(tokenizer_dir: Path) -> None:
    config = Config(n_layer=1, n_embd=32, n_head=2, vocab_size=100, block_size=64)
    with pytest.raises(ValueError, match=r"320 tokens.*vocab_size is 100"):
        LLM.load(config, init="random", tokenizer_dir=tokenizer_dir)


def test_hub_repo_id_uses_the_converted_cache(litllm_dir: Path) -> None:
    cached = cached_checkpoint_dir("tiny-org/tiny-llama")
    shutil.copytree(litllm_dir, cached)
    llm = LLM.load("tiny-org/tiny-llama")
    assert llm.checkpoint_dir == cached


def test_hub_repo_id_offline_fails_fast_with_a_clear_message() -> None:
    start = time.perf_counter()
    with pytest.raises(HubError, match="offline"):
        LLM.load("nobody/not-cached-anywhere")
    assert time.perf_counter() - start < 5


def test_unknown_source_names_close_models() -> None:
    with pytest.raises(FileNotFoundError, match="pythia-160m"):
        LLM.load("pythia-16m")


def test_missing_local_directory_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does-not-exist"):
        LLM.load(str(tmp_path / "does-not-exist"))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(temperature=-0.1), "temperature"),
        (dict(top_p=0.0), "top_p"),
        (dict(top_p=1.5), "top_p"),
        (dict(top_k=-1), "top_k"),
        (dict(max_new_tokens=0), "max_new_tokens"),
    ],
)
def test_bad_sampling_arguments_name_the_parameter(litllm_dir: Path, kwargs: dict, message: str) -> None:
    llm = LLM.load(litllm_dir)
    with pytest.raises(ValueError, match=message):
        llm.generate("def", **kwargs)


def test_empty_prompt_is_refused(litllm_dir: Path) -> None:
    with pytest.raises(ValueError, match="empty"):
        LLM.load(litllm_dir).generate("")


def test_prompt_longer_than_the_context_states_both_lengths(litllm_dir: Path) -> None:
    llm = LLM.load(litllm_dir)
    with pytest.raises(ValueError, match=r"\d+ tokens long; the model's context is 256 tokens"):
        llm.generate("x = 1\n" * 400)


def test_a_list_of_prompts_gives_a_list_of_texts(litllm_dir: Path) -> None:
    llm = LLM.load(litllm_dir)
    texts = llm.generate(["def", "class"], max_new_tokens=5, temperature=0)
    assert texts == [llm.generate(p, max_new_tokens=5, temperature=0) for p in ["def", "class"]]


def test_chat_renders_with_the_chat_format_and_stops_at_the_end_of_turn(litllm_dir: Path) -> None:
    from litllm.prompts import render_for_completion

    llm = LLM.load(litllm_dir)
    llm.chat_format = "chatml"
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    ids = render_for_completion(messages, llm.tokenizer, llm.chat_format)
    stream = llm.chat(messages, max_new_tokens=20, temperature=0, stream=True)
    reply = "".join(stream)
    assert stream.prompt_tokens == len(ids)
    assert reply == llm.tokenizer.decode(stream.token_ids) or stream.finish_reason == "stop"
    assert llm.chat(messages, max_new_tokens=20, temperature=0) == reply
    assert llm.generate("hi", sys_prompt="Be brief.", max_new_tokens=20, temperature=0) == reply


def test_conversation_keeps_the_history(litllm_dir: Path) -> None:
    llm = LLM.load(litllm_dir)
    llm.chat_format = "chatml"
    chat = llm.conversation(system="You write Python.")
    first = chat.send("def add", max_new_tokens=5, temperature=0)
    second = "".join(chat.send("and sub?", max_new_tokens=5, temperature=0, stream=True))
    assert [m["role"] for m in chat.messages] == ["system", "user", "assistant", "user", "assistant"]
    assert [chat.messages[2]["content"], chat.messages[4]["content"]] == [first, second]
    assert second == llm.chat(chat.messages[:4], max_new_tokens=5, temperature=0)
    chat.reset()
    assert chat.messages == [{"role": "system", "content": "You write Python."}]


def test_benchmark_reports_speed_and_memory(litllm_dir: Path) -> None:
    llm = LLM.load(litllm_dir)
    outputs, stats = llm.benchmark(num_iterations=2, prompt="def", max_new_tokens=8, temperature=0)
    assert len(outputs) == 2 and outputs[0] == outputs[1]
    assert len(stats["seconds"]) == len(stats["time_to_first_token"]) == len(stats["tokens_per_sec"]) == 2
    assert all(0 < t < s for t, s in zip(stats["time_to_first_token"], stats["seconds"], strict=True))
    assert stats["peak_memory_gb"] > 0


@pytest.mark.parametrize("mode", ["bnb.nf4", "bnb.int8"])
def test_distribute_quantizes_the_blocks_with_bitsandbytes(litllm_dir: Path, mode: str) -> None:
    from litllm.quantize import is_quantized, weight_bytes

    llm = LLM.load(litllm_dir)
    full_bytes = weight_bytes(llm.model)
    reference = llm.generate("def add", max_new_tokens=6, temperature=0)
    llm.distribute(accelerator="cpu", quantize=mode)
    assert is_quantized(llm.model) and weight_bytes(llm.model) < full_bytes
    text = llm.generate("def add", max_new_tokens=6, temperature=0)
    assert isinstance(text, str) and len(llm.tokenizer.encode(text, bos=False)) <= 6
    assert reference  # the quantized model still generates; its text may differ from full precision
    with pytest.raises(ValueError, match="quantized"):
        llm.save(litllm_dir.parent / "never")


QUANTIZE_TINY = """
from litllm.config import Config
from litllm.model import GPT
from litllm.quantize import quantize_model

quantize_model(GPT(Config(n_layer=1, n_embd=64, n_head=2, vocab_size=64, block_size=16)), "bnb.nf4")
print("done")
"""


def test_quantizing_with_bitsandbytes_writes_nothing_to_stderr() -> None:
    """In a fresh process, where bitsandbytes is imported for the first time: on a CPU with avx512_bf16, its import
    warns on every run that it could not fetch a 4-bit kernel from the Hugging Face Hub (which litllm's layers do not
    use); litllm imports it without that warning."""
    pytest.importorskip("bitsandbytes")
    out = subprocess.run([sys.executable, "-c", QUANTIZE_TINY], capture_output=True, text=True)
    assert (out.returncode, out.stdout.strip(), out.stderr) == (0, "done", "")


def test_distribute_casts_to_the_precision(litllm_dir: Path) -> None:
    llm = LLM.load(litllm_dir).distribute(accelerator="cpu", precision="bf16-true")
    assert llm.model.wte.weight.dtype == torch.bfloat16
    assert llm.generate("def", max_new_tokens=3, temperature=0) is not None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(quantize="int3"), "bnb.nf4"),
        (dict(precision="fp8"), "precision"),
        (dict(accelerator="tpu"), "accelerator"),
        (dict(devices=2), "devices"),
    ],
)
def test_distribute_bad_arguments_are_named(litllm_dir: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LLM.load(litllm_dir).distribute(**kwargs)


def test_save_keeps_the_chat_format(litllm_dir: Path, tmp_path: Path) -> None:
    llm = LLM.load(litllm_dir)
    llm.chat_format = "chatml"
    again = LLM.load(llm.save(tmp_path / "saved"))
    assert again.chat_format.name == "chatml"
    assert again.chat("hi", max_new_tokens=5, temperature=0) == llm.chat("hi", max_new_tokens=5, temperature=0)
