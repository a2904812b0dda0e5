"""nanochat's `load_model(source, device, phase, model_tag, step)` over litllm's training runs, and the phase names
(`base`, `sft`, ...) as sources of every loader (`LLM.load("sft")`, `Tokenizer.from_pretrained("sft")`)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from litllm.api import LLM
from litllm.checkpoint.phases import load_model, phase_checkpoint
from litllm.checkpoint.sources import resolve_checkpoint
from litllm.model import GPT
from litllm.tokenizer import Tokenizer

TRAINER = {"precision": "32-true", "accelerator": "cpu", "limit_val_batches": 0, "enable_progress_bar": False}
TRAINER |= {"log_every_n_steps": 1}


def train(command: str, config: dict, tmp: Path) -> None:
    """Run `litllm <command>` in this process with a recipe, the way the CLI does."""
    from litllm.training.runs import run_training

    recipe = tmp / f"{command}.yaml"
    recipe.write_text(yaml.safe_dump(config))
    run_training(command, ["--config", str(recipe)])


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, tokenizer_dir: Path) -> Path:
    """A runs folder holding a tiny `litllm pretrain` run (base) and a `litllm finetune` run from it (sft)."""
    tmp = tmp_path_factory.mktemp("runs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", ["litllm"])  # LightningCLI warns when args come with command-line arguments too
        mp.setenv("LITLLM_RUNS_DIR", str(tmp / "runs"))
        mp.setenv("LITLLM_HOME", str(tmp / "home"))
        mp.delenv("LITLLM_RUN_DIR", raising=False)  # resolve_run_dir pins it for a run's other ranks
        mp.delenv("LITLLM_TOKENIZER_PATH", raising=False)
        mp.setenv("NANOCHAT_TOKENIZER_PATH", str(tokenizer_dir))  # the base run names no tokenizer: it takes this
        model = {
            "model_config": {"name": "pythia-14m", "n_layer": 1, "n_embd": 32, "n_head": 2, "vocab_size": 320},
            "max_seq_length": 16,
            "warmup_steps": 1,
        }
        data = {"class_path": "toy_data.ToyTokens", "init_args": {"n": 16, "vocab": 256, "batch_size": 4}}
        train(
            "pretrain",
            {"model": model, "data": data, "trainer": {**TRAINER, "max_steps": 4}, "checkpoint_every": 2},
            tmp,
        )
        chat = tmp / "chat.jsonl"
        messages = [
            [{"role": "user", "content": f"add {i}"}, {"role": "assistant", "content": f"{2 * i}"}] for i in range(8)
        ]
        chat.write_text("\n".join(json.dumps({"messages": m}) for m in messages))
        sft = {
            "model": {"init_from": "base", "max_seq_length": 32, "warmup_steps": 1},  # the newest pretraining run
            "data": {"class_path": "litllm.data.sft.SFTData", "init_args": {"path": str(chat), "batch_size": 4}},
            "trainer": {**TRAINER, "max_steps": 2},
            "checkpoint_every": 0,
        }
        train("finetune", sft, tmp)
    return tmp / "runs"


@pytest.fixture
def in_runs(runs: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LITLLM_RUNS_DIR", str(runs))
    return runs


def only_run(folder: Path) -> Path:
    (run,) = folder.iterdir()
    return run


def weights_equal(model: GPT, safetensors_file: Path) -> bool:
    state = model.state_dict()
    return all(torch.equal(state[name], tensor) for name, tensor in load_file(safetensors_file).items())


def test_runs_go_to_the_runs_dir_with_the_tokenizer_path_variables_tokenizer(
    in_runs: Path, tokenizer_dir: Path
) -> None:
    run = only_run(in_runs / "pretrain")
    assert run.name.startswith("pythia-14m-")
    assert (run / "tokenizer" / "tokenizer.json").read_bytes() == (tokenizer_dir / "tokenizer.json").read_bytes()
    assert (run / "final" / "model.safetensors").is_file() and (run / "checkpoints" / "step-0000002.ckpt").is_file()


def test_load_model_as_the_doc_shows(in_runs: Path) -> None:
    model, tokenizer, meta = load_model("sft", "cpu", phase="eval")
    run = only_run(in_runs / "finetune")
    assert isinstance(model, GPT) and isinstance(tokenizer, Tokenizer)
    assert not model.training and model.wte.weight.device == torch.device("cpu")
    assert meta["source"] == "sft" and meta["run_dir"] == run and meta["model_tag"] == run.name
    assert meta["checkpoint"] == run / "final" and meta["step"] is None
    assert weights_equal(model, run / "final" / "model.safetensors")
    assert meta["model_config"] == model.config.to_dict() and meta["model_config"]["n_embd"] == 32
    assert meta["hyperparameters"]["trainer"]["max_steps"] == 2
    assert tokenizer.encode("add 3") == Tokenizer(run / "final").encode("add 3")


def test_the_model_generates_text_as_the_doc_example_does(in_runs: Path) -> None:
    model, tokenizer, _ = load_model("sft", "cpu", phase="eval")
    tokens = tokenizer.encode("What is the capital of France?")
    with torch.no_grad():
        logits = model(torch.tensor([tokens]))
    assert logits.shape[:2] == (1, len(tokens)) and logits.shape[2] >= tokenizer.vocab_size


def test_phase_train_returns_a_model_in_train_mode(in_runs: Path) -> None:
    model, _, _ = load_model("base", "cpu", phase="train")
    assert model.training


def test_a_step_loads_that_steps_lightning_checkpoint(in_runs: Path) -> None:
    run = only_run(in_runs / "pretrain")
    model, tokenizer, meta = load_model("base", "cpu", step=2)
    assert meta["step"] == 2 and meta["checkpoint"].name == "step-0000002.ckpt"
    assert meta["checkpoint"].parent == run / "checkpoints"
    assert not weights_equal(model, run / "final" / "model.safetensors")  # two more steps changed them
    assert tokenizer.checkpoint_dir == run / "tokenizer"
    final, _, _ = load_model("base", "cpu", step=4)
    assert weights_equal(final, run / "final" / "model.safetensors")


def test_model_tag_picks_a_run_by_folder_or_model_name(in_runs: Path) -> None:
    run = only_run(in_runs / "pretrain")
    assert load_model("base", "cpu", model_tag=run.name)[2]["run_dir"] == run
    assert load_model("base", "cpu", model_tag="pythia-14m")[2]["run_dir"] == run
    with pytest.raises(FileNotFoundError, match=f"no 'base' run named 'd20'.*{run.name}"):
        load_model("base", "cpu", model_tag="d20")


def test_the_newest_run_wins_and_without_final_its_highest_step_loads(in_runs: Path) -> None:
    run = only_run(in_runs / "pretrain")
    newer = in_runs / "midtrain" / "pythia-14m-29990101-000000"
    shutil.copytree(run, newer, ignore=shutil.ignore_patterns("final"))  # a run still training
    (in_runs / "midtrain" / "pythia-14m-20000101-000000").mkdir()  # an older run with nothing in it yet
    try:
        model, _, meta = load_model("mid", "cpu")
        assert meta["run_dir"] == newer and meta["step"] == 4 and meta["checkpoint"].name == "step-0000004.ckpt"
        assert weights_equal(model, run / "final" / "model.safetensors")
        with pytest.raises(FileNotFoundError, match="final/"):
            phase_checkpoint("mid")  # a source folder needs a finished run
    finally:
        shutil.rmtree(in_runs / "midtrain")


def test_nothing_to_load_is_a_file_not_found_error_naming_where_it_looked(in_runs: Path) -> None:
    message = ""
    try:
        model, tokenizer, meta = load_model("rl", "cpu")
    except FileNotFoundError as e:  # the doc's "Model checkpoint not found"
        message = str(e)
    assert str(in_runs.resolve() / "rl") in message and "no such folder" in message
    run = only_run(in_runs / "finetune")
    with pytest.raises(FileNotFoundError, match=f"a step-999 checkpoint.*{run.name}"):
        load_model("sft", "cpu", step=999)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"source": "chat"}, r"unknown model source 'chat'; accepted: base\|mid\|sft\|rl"),
        ({"source": "sft", "phase": "test"}, "phase must be one of train, eval, got 'test'"),
        ({"source": "sft", "step": -1}, "step must be a non-negative int"),
    ],
)
def test_bad_arguments_are_named(in_runs: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_model(**kwargs)


def test_a_phase_name_is_a_source_for_every_loader(in_runs: Path) -> None:
    final = only_run(in_runs / "finetune") / "final"
    assert resolve_checkpoint("sft") == final
    assert resolve_checkpoint("base") == only_run(in_runs / "pretrain") / "final"
    assert Tokenizer.from_pretrained("sft").checkpoint_dir == final
    llm = LLM.load("sft", device="cpu")
    assert llm.checkpoint_dir == final and weights_equal(llm.model, final / "model.safetensors")


def test_a_registered_model_named_like_a_phase_comes_first(in_runs: Path) -> None:
    from litllm.local_models import add

    base = only_run(in_runs / "pretrain") / "final"
    add("sft", base)
    assert resolve_checkpoint("sft") == base


def test_a_missing_phase_says_where_runs_go(in_runs: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"the runs of RL training go to <runs>/rl/"):
        resolve_checkpoint("rl")
