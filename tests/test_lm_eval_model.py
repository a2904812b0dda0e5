"""lm-eval's "litllm" model: loglikelihoods equal a plain forward's, `simple_evaluate` scores real ARC-Easy rows as the
adapter's numbers say (and as litllm's own continuation scoring does under the same rule), request order survives
batching, generation stops at `until`, and a missing lm-eval is one clear error."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from litllm.api import LLM
from litllm.tasks import get_task
from litllm.tasks.evaluate import score_task

ROWS = 16  # ARC-Easy's first rows that fit the tiny model's 256 tokens whole (row 16 does not)


@pytest.fixture(scope="module")
def lm_eval() -> Any:
    return pytest.importorskip("lm_eval")


@pytest.fixture(scope="module")
def llm(litllm_dir: Path) -> LLM:
    return LLM.load(str(litllm_dir), device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def arc() -> Any:
    return get_task("arc_easy", stop=ROWS)


def adapter(llm: LLM, **options: Any) -> Any:
    from litllm.lm_eval_model import LitLLMLM

    return LitLLMLM(llm, **options)


def instances(kind: str, args: list[tuple]) -> list[Any]:
    from lm_eval.api.instance import Instance

    return [Instance(request_type=kind, doc={}, arguments=a, idx=i) for i, a in enumerate(args)]


def arc_pairs(arc: Any) -> list[tuple[str, str]]:
    return [(example["context"], " " + choice) for example in arc for choice in example["choices"]]


def plain_logprobs(llm: LLM, context: str, continuation: str) -> torch.Tensor:
    """The log-probability of each continuation token, from one unbatched forward of litllm's own encoding (a row
    longer than the context keeps its last block_size + 1 tokens, the final one only as a target)."""
    cont = llm.tokenizer.encode(continuation, bos=False)
    ids = (llm.tokenizer.encode(context) + cont)[-(llm.config.block_size + 1) :]
    with torch.inference_mode():
        logits = llm.model(torch.tensor([ids[:-1]]))[0]  # (T, V)
    losses = F.cross_entropy(logits[-len(cont) :].float(), torch.tensor(cont), reduction="none")
    return -losses


def test_loglikelihood_is_the_summed_log_probability_of_a_plain_forward(lm_eval: Any, llm: LLM) -> None:
    lm = adapter(llm, batch_size=4)
    pairs = arc_pairs(get_task("arc_easy", start=14, stop=18))  # row 16 is longer than the context: it is cropped
    assert max(len(llm.tokenizer.encode(c + x)) for c, x in pairs) > llm.config.block_size
    for context, continuation in pairs:  # lm-eval's split of context + continuation is litllm's encoding
        assert lm._encode_pair(context, continuation) == (
            llm.tokenizer.encode(context),
            llm.tokenizer.encode(continuation, bos=False),
        )
    got = lm.loglikelihood(instances("loglikelihood", pairs), disable_tqdm=True)
    for (context, continuation), (logprob, _) in zip(pairs, got, strict=True):
        assert logprob == pytest.approx(float(plain_logprobs(llm, context, continuation).sum()), abs=1e-5)


def test_is_greedy_says_whether_every_continuation_token_is_the_argmax(lm_eval: Any, llm: LLM) -> None:
    prompt = llm.tokenizer.encode("def add(a, b):")
    with torch.inference_mode():
        greedy = int(llm.model(torch.tensor([prompt]))[0, -1].argmax())
    other = (greedy + 1) % llm.tokenizer.vocab_size
    lm = adapter(llm)
    rows = [(None, prompt, [greedy]), (None, prompt, [other])]
    assert [is_greedy for _, is_greedy in lm._loglikelihood_tokens(rows)] == [True, False]


def test_loglikelihood_keeps_request_order_across_batch_sizes(lm_eval: Any, llm: LLM, arc: Any) -> None:
    pairs = arc_pairs(arc)[:14]  # contexts and choices of many lengths: sorting by length reorders them
    one = adapter(llm, batch_size=1).loglikelihood(instances("loglikelihood", pairs), disable_tqdm=True)
    four = adapter(llm, batch_size=4).loglikelihood(instances("loglikelihood", pairs), disable_tqdm=True)
    assert len({round(logprob, 3) for logprob, _ in one}) > 1
    for (a, greedy_a), (b, greedy_b) in zip(one, four, strict=True):
        assert a == pytest.approx(b, abs=1e-5)
        assert greedy_a == greedy_b


def test_simple_evaluate_scores_arc_rows_by_the_adapters_loglikelihoods(
    lm_eval: Any, llm: LLM, arc: Any, tmp_path: Path
) -> None:
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    data = tmp_path / "arc.jsonl"
    data.write_text(
        "".join(json.dumps({"query": e["context"], "choices": e["choices"], "gold": e["answer"]}) + "\n" for e in arc)
    )
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "arc_rows.yaml").write_text(
        "task: arc_rows\ndataset_path: json\n"
        f"dataset_kwargs:\n  data_files: {data}\n  cache_dir: {tmp_path / 'datasets'}\n"
        "test_split: train\noutput_type: multiple_choice\n"
        'doc_to_text: "{{query}}"\ndoc_to_choice: "{{choices}}"\ndoc_to_target: gold\n'
        "metric_list:\n  - metric: acc\n"
    )
    out = simple_evaluate(
        model=adapter(llm, batch_size=4),
        tasks=["arc_rows"],
        task_manager=TaskManager(include_path=str(tmp_path / "tasks"), include_defaults=False),
        bootstrap_iters=0,
        log_samples=True,
    )
    samples = sorted(out["samples"]["arc_rows"], key=lambda s: s["doc_id"])
    assert len(samples) == ROWS
    assert max(len(llm.tokenizer.encode(c + x)) for c, x in arc_pairs(arc)) <= llm.config.block_size  # none cropped
    asked = [tuple(a) for sample in samples for a in sample["arguments"]]
    assert asked == arc_pairs(arc)  # lm-eval's target_delimiter " " joins each choice to its context

    # lm-eval's acc: the largest summed log-probability, computed here by plain forwards
    summed = [[float(plain_logprobs(llm, e["context"], " " + c).sum()) for c in e["choices"]] for e in arc]
    right = [max(range(len(s)), key=s.__getitem__) == e["answer"] for s, e in zip(summed, arc, strict=True)]
    assert out["results"]["arc_rows"]["acc,none"] == pytest.approx(sum(right) / ROWS)

    # litllm's continuation scoring: the largest mean log-probability, from the same per-request loglikelihoods
    mean_right = []
    for sample, example in zip(samples, arc, strict=True):
        lengths = [len(llm.tokenizer.encode(" " + c, bos=False)) for c in example["choices"]]
        means = [ll / n for (ll, _), n in zip(sample["filtered_resps"], lengths, strict=True)]
        mean_right.append(max(range(len(means)), key=lambda i: (means[i], -i)) == example["answer"])
    ours = score_task(llm, None, arc, batch_size=4, scoring="continuation")
    assert ours.correct == sum(mean_right)
    # and litllm's own `--scoring loglikelihood` is lm-eval's acc: the same accuracy on the same checkpoint and rows
    assert score_task(llm, None, arc, batch_size=4, scoring="loglikelihood").accuracy == pytest.approx(
        out["results"]["arc_rows"]["acc,none"]
    )


def test_loglikelihood_rolling_is_the_texts_log_probability_after_the_prefix_token(lm_eval: Any, llm: LLM) -> None:
    text = "class Point:\n    def __init__(self, x, y):\n        self.x = x\n"
    lm = adapter(llm)
    ids = llm.tokenizer.encode(text, bos=False)
    with torch.inference_mode():
        logits = llm.model(torch.tensor([[lm.prefix_token_id, *ids]]))[0, :-1]  # (T, V)
    expected = -float(F.cross_entropy(logits, torch.tensor(ids), reduction="sum"))
    (got,) = lm.loglikelihood_rolling(instances("loglikelihood_rolling", [(text,)]), disable_tqdm=True)
    assert got == pytest.approx(expected, abs=1e-4)
    windowed = adapter(llm, max_length=8)  # several windows, each conditioned on what fits
    (short,) = windowed.loglikelihood_rolling(instances("loglikelihood_rolling", [(text,)]), disable_tqdm=True)
    assert short < 0 and short != pytest.approx(expected, abs=1e-4)


def test_generate_until_stops_before_the_first_until_string(lm_eval: Any, llm: LLM) -> None:
    lm = adapter(llm, batch_size=2)
    prompts = ["def add(a, b):", "print('hello"]
    free = lm.generate_until(
        instances("generate_until", [(p, {"until": [], "max_gen_toks": 24, "do_sample": False}) for p in prompts])
    )
    assert all(len(text) >= 4 for text in free), free
    stops = [text[2:4] for text in free]  # a piece each greedy continuation is known to reach
    cut = lm.generate_until(
        instances(
            "generate_until", [(p, {"until": [s], "max_gen_toks": 24}) for p, s in zip(prompts, stops, strict=True)]
        )
    )
    assert cut == [text[: text.index(stop)] for text, stop in zip(free, stops, strict=True)]


def test_litllm_is_registered_and_built_from_lm_evals_argument_string(lm_eval: Any, litllm_dir: Path) -> None:
    from lm_eval.api.registry import get_model

    from litllm.lm_eval_model import LitLLMLM

    cls = get_model("litllm")
    assert cls is LitLLMLM
    lm = cls.create_from_arg_string(f"pretrained={litllm_dir},dtype=float32,device=cpu", {"batch_size": "4"})
    assert (lm.batch_size, lm.llm.model.lm_head.weight.dtype, lm.max_length) == (4, torch.float32, 256)


def test_bad_batch_size_names_the_value(lm_eval: Any, llm: LLM) -> None:
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1, got 'auto'"):
        adapter(llm, batch_size="auto")


def test_a_missing_lm_eval_says_which_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in sys.modules if n == "lm_eval" or n.startswith("lm_eval.")] or ["lm_eval"]:
        monkeypatch.setitem(sys.modules, name, None)  # None in sys.modules: importing it fails
    monkeypatch.delitem(sys.modules, "litllm.lm_eval_model", raising=False)
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'litllm\[lm-eval\]'"):
        importlib.import_module("litllm.lm_eval_model")


def test_import_litllm_does_not_import_lm_eval() -> None:
    code = "import sys, litllm; assert 'lm_eval' not in sys.modules and 'litllm.lm_eval_model' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
