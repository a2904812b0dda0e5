"""The generation engine: batches of different-length prompts, samples sharing a prefill, sampling filters,
stop conditions, batch invariance, streams and their cancellation, and the nanochat-style Engine."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from litllm import LLM
from litllm.config import Config
from litllm.inference.engine import Engine, Request, SamplingParams, Scheduler, first_argmax, process_logits

PROMPTS = ["def add(a, b):", "class Point:\n    def __init__(self, x, y):\n        self.x", "x", "print('hello world')"]


@pytest.fixture(scope="module")
def llm(litllm_dir: Path) -> LLM:
    return LLM.load(litllm_dir)


@pytest.fixture(scope="module")
def smollm(tokenizer_dir: Path) -> LLM:
    """A real checkpoint shape (SmolLM2-135M: GQA, RoPE, tied head) with random weights, in float32."""
    return LLM.load("smollm2-135m", init="random", tokenizer_dir=tokenizer_dir, dtype="float32")


@pytest.mark.slow  # about 30 s on a 135M model: `make test-slow` (and CI) runs it
def test_a_batch_of_different_lengths_gives_each_prompt_its_output_alone(smollm: LLM) -> None:
    alone = [smollm.generate(p, max_new_tokens=12, temperature=0, return_as_token_ids=True) for p in PROMPTS]
    batched = smollm.generate(PROMPTS, max_new_tokens=12, temperature=0, return_as_token_ids=True)
    assert batched == alone


def test_seeded_sampling_is_the_same_alone_and_inside_a_batch(smollm: LLM) -> None:
    options = dict(max_new_tokens=12, temperature=1.0, top_k=50, seed=7)
    alone = smollm.generate(PROMPTS[1], **options)
    batched = smollm.generate(PROMPTS, **options)
    assert batched[1] == alone
    assert smollm.generate(PROMPTS[1], **options) == alone  # and the same seed gives the same text again


def test_batched_decoding_equals_recomputing_each_sequence(llm: LLM) -> None:
    outputs = llm.generate(PROMPTS, max_new_tokens=10, temperature=0, return_as_token_ids=True)
    for prompt, out in zip(PROMPTS, outputs, strict=True):
        seq = llm.tokenizer.encode(prompt)
        with torch.no_grad():
            for _ in range(10):
                seq.append(int(llm.model(torch.tensor([seq]))[0, -1].argmax()))
        assert out == seq[-10:]


def test_continuous_batching_refills_rows_and_keeps_every_output(llm: LLM) -> None:
    prompts = PROMPTS * 2
    alone = [llm.generate(p, max_new_tokens=8, temperature=0, return_as_token_ids=True) for p in prompts]
    scheduler = Scheduler(llm.model, llm.tokenizer, max_batch_size=3)
    completions = [scheduler.submit(Request(llm.tokenizer.encode(p), 8, SamplingParams(0)))[0] for p in prompts]
    widest = 0
    while scheduler.busy:
        scheduler.step()
        widest = max(widest, sum(s is not None for s in scheduler.slots))
    assert widest == 3
    assert [c.token_ids for c in completions] == alone


def test_rows_finish_independently(llm: LLM) -> None:
    scheduler = Scheduler(llm.model, llm.tokenizer)
    short = scheduler.submit(Request(llm.tokenizer.encode("def"), 2, SamplingParams(0)))[0]
    long = scheduler.submit(Request(llm.tokenizer.encode("class"), 9, SamplingParams(0)))[0]
    scheduler.step()
    scheduler.step()
    assert short.finished and short.finish_reason == "length" and len(short.token_ids) == 2
    assert not long.finished
    scheduler.run()
    assert len(long.token_ids) == 9


def test_samples_of_one_prompt_share_a_single_prefill(llm: LLM) -> None:
    prefills = []
    hook = llm.model.register_forward_hook(
        lambda m, args, out: prefills.append(args[0].shape) if args[0].shape[1] > 1 else None
    )
    try:
        samples = llm.generate("def add", max_new_tokens=10, temperature=1.0, seed=0, num_samples=4)
    finally:
        hook.remove()
    assert len(prefills) == 1 and prefills[0][0] == 1
    assert len(samples) == 4 and len(set(samples)) > 1
    assert len(set(llm.generate("def add", max_new_tokens=10, temperature=0, num_samples=3))) == 1


def test_a_stop_token_ends_the_row(llm: LLM) -> None:
    ids = llm.tokenizer.encode("def add")
    greedy = llm.generate("def add", max_new_tokens=10, temperature=0, return_as_token_ids=True)
    scheduler = Scheduler(llm.model, llm.tokenizer)
    (c,) = scheduler.submit(Request(ids, 10, SamplingParams(0), stop_ids=[greedy[3]]))
    scheduler.run()
    assert c.finish_reason == "stop"
    assert c.token_ids == greedy[: greedy.index(greedy[3]) + 1]


def test_a_stop_string_spanning_several_tokens_ends_the_text_before_it(llm: LLM) -> None:
    full = llm.generate("def add", max_new_tokens=40, temperature=0)
    stop = full[10:16]
    assert len(llm.tokenizer.encode(stop, bos=False)) > 1
    text = llm.generate("def add", max_new_tokens=40, temperature=0, stop=stop)
    assert text == full[: full.index(stop)]
    pieces = list(llm.generate("def add", max_new_tokens=40, temperature=0, stop=[stop, "never appears"], stream=True))
    assert "".join(pieces) == text


def test_logprobs_are_those_of_the_model(llm: LLM) -> None:
    out = llm.generate("def add", max_new_tokens=6, temperature=0, logprobs=True)
    seq = llm.tokenizer.encode("def add") + out.token_ids
    with torch.no_grad():
        logits = llm.model(torch.tensor([seq]))[0].float().log_softmax(-1)
    n = len(out.token_ids)
    expected = logits[-n - 1 : -1].gather(1, torch.tensor(out.token_ids)[:, None])[:, 0]
    torch.testing.assert_close(torch.tensor(out.logprobs), expected, atol=1e-4, rtol=0)


def test_top_k_keeps_the_k_largest() -> None:
    logits = torch.tensor([[1.0, 4.0, 2.0, 3.0]])
    kept = process_logits(logits, SamplingParams(top_k=2)).isfinite()
    assert kept.tolist() == [[False, True, False, True]]


def test_top_p_keeps_the_smallest_set_covering_p() -> None:
    logits = torch.tensor([[0.5, 0.3, 0.2]]).log()
    assert process_logits(logits, SamplingParams(top_p=0.7)).isfinite().tolist() == [[True, True, False]]
    assert process_logits(logits, SamplingParams(top_p=0.4)).isfinite().tolist() == [[True, False, False]]


def test_min_p_drops_tokens_below_a_share_of_the_most_likely() -> None:
    logits = torch.tensor([[0.6, 0.3, 0.1]]).log()
    assert process_logits(logits, SamplingParams(min_p=0.2)).isfinite().tolist() == [[True, True, False]]


def test_repetition_penalty_lowers_tokens_already_seen() -> None:
    logits = torch.tensor([[2.0, -2.0, 2.0]])
    seen = torch.tensor([[True, True, False]])
    out = process_logits(logits, SamplingParams(temperature=0, repetition_penalty=2.0), seen)
    assert out.tolist() == [[1.0, -4.0, 2.0]]


def test_repetition_penalty_changes_greedy_output(llm: LLM) -> None:
    plain = llm.generate("def add", max_new_tokens=30, temperature=0, return_as_token_ids=True)
    penalised = llm.generate(
        "def add", max_new_tokens=30, temperature=0, repetition_penalty=5.0, return_as_token_ids=True
    )
    assert penalised != plain
    assert len(set(penalised)) >= len(set(plain))


def test_stream_yields_whole_characters_and_close_frees_the_row(llm: LLM) -> None:
    stream = llm.generate("# héllo wörld, 你好", max_new_tokens=40, temperature=1.0, seed=1, stream=True)
    first = next(stream)
    assert first
    stream.close()
    assert stream.finish_reason == "cancelled"
    assert list(stream) == []
    assert not stream.scheduler.busy
    for piece in llm.generate("# héllo wörld, 你好", max_new_tokens=40, temperature=0, stream=True):
        piece.encode("utf-8")  # a broken character would be a lone surrogate or U+FFFD from a split byte sequence


def test_stream_reports_usage(llm: LLM) -> None:
    stream = llm.generate("def add", max_new_tokens=7, temperature=0, stream=True)
    "".join(stream)
    assert stream.prompt_tokens == len(llm.tokenizer.encode("def add"))
    assert stream.completion_tokens == 7 and stream.finish_reason == "length"


def test_sliding_window_model_batches_like_alone(tokenizer_dir: Path) -> None:
    config = Config.from_name(
        "mistral-7b-v0.1",
        n_layer=2,
        n_embd=64,
        n_head=4,
        n_query_groups=2,
        intermediate_size=128,
        vocab_size=320,
        sliding_window_size=6,
        block_size=128,
    )
    model = LLM.load(config, init="random", tokenizer_dir=tokenizer_dir)
    alone = [model.generate(p, max_new_tokens=12, temperature=0, return_as_token_ids=True) for p in PROMPTS]
    assert model.generate(PROMPTS, max_new_tokens=12, temperature=0, return_as_token_ids=True) == alone


def test_nanochat_engine_generate_batch(llm: LLM) -> None:
    engine = Engine(llm.model, llm.tokenizer)
    tokens = llm.tokenizer.encode("def add")
    results, masks = engine.generate_batch(tokens, num_samples=3, max_tokens=8, temperature=0)
    greedy = llm.generate("def add", max_new_tokens=8, temperature=0, return_as_token_ids=True)
    assert results == [tokens + greedy] * 3
    assert masks == [[0] * len(tokens) + [1] * 8] * 3
    columns = list(engine.generate(tokens, num_samples=2, max_tokens=5, temperature=1.0, seed=3))
    assert len(columns) <= 5 and all(len(col) == 2 and len(m) == 2 for col, m in columns)
    assert columns[0][1] == [1, 1]
    assert columns == list(engine.generate(tokens, num_samples=2, max_tokens=5, temperature=1.0, seed=3))


def test_nanochat_engine_defaults_draw_fresh_samples_of_at_most_256_tokens(llm: LLM) -> None:
    engine = Engine(llm.model, llm.tokenizer)
    tokens = llm.tokenizer.encode("def add")
    first, _ = engine.generate_batch(tokens, num_samples=2, max_tokens=12, temperature=1.0)
    second, _ = engine.generate_batch(tokens, num_samples=2, max_tokens=12, temperature=1.0)
    assert first != second  # no seed: each call draws anew (with seed=42 as default, every call repeated)
    greedy, masks = engine.generate_batch(tokens, temperature=0)
    assert len(greedy[0]) - len(tokens) == sum(masks[0]) <= min(256, llm.config.block_size - len(tokens))


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (dict(min_p=1.5), ValueError, "min_p"),
        (dict(repetition_penalty=0), ValueError, "repetition_penalty"),
        (dict(stop=[1, 2]), TypeError, "stop"),
        (dict(num_samples=0), ValueError, "num_samples"),
        (dict(seed="x"), TypeError, "seed"),
        (dict(temperature="hot"), ValueError, "temperature"),
        (dict(bogus=1), TypeError, "bogus"),
    ],
)
def test_bad_generation_options_name_the_parameter(llm: LLM, kwargs: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        llm.generate("def", **kwargs)


def test_prompt_list_must_hold_strings(llm: LLM) -> None:
    with pytest.raises(TypeError, match="prompt"):
        llm.generate(["ok", 3])
    with pytest.raises(ValueError, match="stream=True"):
        llm.generate(["a", "b"], stream=True)


@pytest.mark.parametrize("temperature", [1e-300, 1e-40])
def test_a_tiny_temperature_samples_the_greedy_tokens(llm: LLM, temperature: float) -> None:
    greedy = llm.generate("hello", max_new_tokens=6, temperature=0, return_as_token_ids=True)
    sampled = llm.generate("hello", max_new_tokens=6, temperature=temperature, seed=1, return_as_token_ids=True)
    assert sampled == greedy  # no NaN probabilities from logits / temperature overflowing


@pytest.mark.parametrize("top_p", [5e-324, 1e-300, 1e-40])
def test_a_tiny_top_p_keeps_the_most_likely_token(llm: LLM, top_p: float) -> None:
    greedy = llm.generate("hello", max_new_tokens=6, temperature=0, return_as_token_ids=True)
    sampled = llm.generate("hello", max_new_tokens=6, top_p=top_p, seed=1, return_as_token_ids=True)
    assert sampled == greedy  # top_p underflowing float32 dropped every token: NaN probabilities


@pytest.mark.parametrize("penalty", [5e-324, 1e-300, 1e300])
def test_an_extreme_repetition_penalty_leaves_probabilities_finite(penalty: float) -> None:
    logits = torch.tensor([[1.0, 2.0, -1.0], [3.0, -2.0, -1.0]])
    seen = torch.tensor([[True, False, False], [True, True, True]])
    params = SamplingParams(temperature=1.0, repetition_penalty=penalty)
    probs = process_logits(logits, params, seen).softmax(dim=-1)
    assert probs.isfinite().all()
    torch.testing.assert_close(probs.sum(dim=-1), torch.ones(2))
    if penalty < 1:  # seen positive logits pushed to the float32 maximum: they take all the probability
        assert probs[0, 0] == 1 and probs[1, 0] == 1


@pytest.mark.parametrize("vocab", [50304, 50257, 300, 200, 7])
def test_first_argmax_is_argmax_ties_included(vocab: int) -> None:
    g = torch.Generator().manual_seed(vocab)
    spread = torch.randn(5, vocab, generator=g)
    ties = torch.randint(0, 3, (5, vocab), generator=g).float()  # many equal maxima: the first one is taken
    ties[0, -1] = 9.0  # a maximum in the last, partial block
    ties[1, :] = 1.0
    for logits in (spread, ties, ties.t().contiguous().t()):  # the last: a column-major view
        assert torch.equal(first_argmax(logits), logits.argmax(dim=-1))


def test_prompts_admitted_together_share_one_prefill(smollm: LLM) -> None:
    calls: list[tuple[int, object]] = []

    def record(module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        calls.append((args[0].shape[1], kwargs.get("segments")))

    handle = smollm.model.register_forward_pre_hook(record, with_kwargs=True)
    try:
        smollm.generate(PROMPTS, max_new_tokens=3, temperature=0)
    finally:
        handle.remove()
    prefill, *decode = calls
    lengths = [len(smollm.tokenizer.encode(p)) for p in PROMPTS]
    assert prefill == (sum(lengths), [(row, n) for row, n in enumerate(lengths)])
    assert [t for t, _ in decode] == [1, 1] and all(segments is None for _, segments in decode)
