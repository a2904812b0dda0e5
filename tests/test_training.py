"""Training runs end to end: `litllm pretrain | evaluate | export`, run directories, bad input, DDP and FSDP2."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

TESTS = Path(__file__).parent
ENV = {**os.environ, "PYTHONPATH": str(TESTS), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
ENV.pop("LITLLM_RUN_DIR", None)


def recipe(tmp_path: Path, tokenizer_dir: Path, **overrides) -> Path:
    """A tiny pretraining recipe on the toy data: 2-layer model, 32-token windows, fp32."""
    config = {
        "model": {
            "model_config": {"name": "pythia-14m", "n_layer": 2, "vocab_size": 320},
            "tokenizer_dir": str(tokenizer_dir),
            "max_seq_length": 32,
            "warmup_steps": 2,
            "optimizer": {"class_path": "torch.optim.AdamW", "init_args": {"lr": 0.01}},
        },
        "data": {"class_path": "toy_data.ToyTokens", "init_args": {"vocab": 256, "batch_size": 8}},
        "trainer": {
            "max_steps": 12,
            "precision": "32-true",
            "accelerator": "cpu",
            "log_every_n_steps": 1,
            "val_check_interval": 6,
            "enable_progress_bar": False,
        },
        "checkpoint_every": 6,
    }
    for key, value in overrides.items():
        node = config
        *parents, last = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def litllm(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "litllm.cli", *args], capture_output=True, text=True, env=ENV, cwd=cwd, timeout=600
    )


def metrics(run_dir: Path, version: int = 0) -> list[dict[str, str]]:
    with open(run_dir / "logs" / f"version_{version}" / "metrics.csv") as f:
        return list(csv.DictReader(f))


def train_losses(run_dir: Path, version: int = 0) -> dict[int, str]:
    return {int(r["step"]): r["train_loss"] for r in metrics(run_dir, version) if r.get("train_loss")}


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory, tokenizer_dir: Path) -> Path:
    tmp = tmp_path_factory.mktemp("pretrain")
    result = litllm("pretrain", "--config", str(recipe(tmp, tokenizer_dir)), "--out_dir", str(tmp / "run"))
    assert result.returncode == 0, result.stderr[-3000:]
    (tmp / "run.stderr").write_text(result.stderr)
    return tmp / "run"


def test_a_run_prints_no_library_warnings(trained_run: Path) -> None:
    stderr = (trained_run.parent / "run.stderr").read_text()
    noise = ("Warning", "deprecated", "site-packages", "💡")  # a library's warning names its file
    assert not [line for line in stderr.splitlines() if any(n in line for n in noise)], stderr[-3000:]


def test_pretrain_loss_falls_well_below_its_start(trained_run: Path) -> None:
    losses = train_losses(trained_run)
    first, last = float(losses[min(losses)]), float(losses[max(losses)])
    assert last < 0.6 * first, losses


def test_run_directory_holds_checkpoints_recipe_tokenizer_and_export(trained_run: Path) -> None:
    ckpts = sorted(p.name for p in (trained_run / "checkpoints").iterdir())
    assert "last.ckpt" in ckpts and "step-0000012.ckpt" in ckpts
    assert yaml.safe_load((trained_run / "hyperparameters.yaml").read_text())["trainer"]["max_steps"] == 12
    assert (trained_run / "tokenizer" / "tokenizer.json").is_file()
    for name in ("model.safetensors", "model_config.yaml", "tokenizer.json", "hyperparameters.yaml"):
        assert (trained_run / "final" / name).is_file(), name


def test_validation_reports_loss_perplexity_and_bits_per_byte(trained_run: Path) -> None:
    rows = [r for r in metrics(trained_run) if r.get("val_loss")]
    assert rows
    last = rows[-1]
    assert float(last["val_ppl"]) == pytest.approx(torch.exp(torch.tensor(float(last["val_loss"]))).item(), rel=1e-4)
    assert 0 < float(last["val_bpb"]) < 20


def test_exported_model_loads_generates_and_converts(trained_run: Path, tmp_path: Path) -> None:
    from litllm import LLM
    from litllm.checkpoint.hf import read_hf_weights

    llm = LLM.load(trained_run / "final")
    assert isinstance(llm.generate("ab", max_new_tokens=5, temperature=0), str)
    result = litllm("convert", "to_hf", str(trained_run / "final"), str(tmp_path / "hf"))
    assert result.returncode == 0, result.stderr
    assert read_hf_weights(tmp_path / "hf")


def test_export_command_matches_the_final_export(trained_run: Path, tmp_path: Path) -> None:
    result = litllm("export", str(trained_run / "checkpoints" / "step-0000012.ckpt"), str(tmp_path / "exported"))
    assert result.returncode == 0, result.stderr
    a, b = (
        load_file(trained_run / "final" / "model.safetensors"),
        load_file(tmp_path / "exported" / "model.safetensors"),
    )
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_evaluate_writes_metrics(trained_run: Path, tmp_path: Path, tokenizer_dir: Path) -> None:
    config = yaml.safe_load(recipe(tmp_path, tokenizer_dir).read_text())
    config["model"] = {"init_from": str(trained_run / "final"), "max_seq_length": 32}
    (tmp_path / "eval.yaml").write_text(yaml.safe_dump(config))
    quiz = tmp_path / "quiz.jsonl"
    quiz.write_text("".join(f'{{"question": "q{i}", "choices": ["ab", "cd"], "answer": {i % 2}}}\n' for i in range(4)))
    out = tmp_path / "eval"
    result = litllm("evaluate", "--config", str(tmp_path / "eval.yaml"), "--out_dir", str(out), "--tasks", str(quiz))
    assert result.returncode == 0, result.stderr[-3000:]
    scores = yaml.safe_load((out / "results.json").read_text())
    assert set(scores) >= {"val_loss", "val_ppl", "val_bpb", "tasks", "core"}
    assert scores["tasks"]["quiz"]["count"] == 4 and (out / "eval" / "results.json").is_file()
    assert "| quiz |" in (out / "report.md").read_text()  # the report card holds the task table


def test_a_new_run_never_overwrites_an_earlier_one(trained_run: Path, tmp_path: Path, tokenizer_dir: Path) -> None:
    before = (trained_run / "final" / "model.safetensors").read_bytes()
    result = litllm("pretrain", "--config", str(recipe(tmp_path, tokenizer_dir)), "--out_dir", str(trained_run))
    assert result.returncode == 2
    assert "already holds a run" in result.stderr and "Traceback" not in result.stderr
    assert (trained_run / "final" / "model.safetensors").read_bytes() == before


def test_resume_from_a_different_model_is_refused(trained_run: Path, tmp_path: Path, tokenizer_dir: Path) -> None:
    other = recipe(
        tmp_path, tokenizer_dir, **{"model.model_config": {"name": "pythia-14m", "n_layer": 3, "vocab_size": 320}}
    )
    ckpt = trained_run / "checkpoints" / "step-0000006.ckpt"
    result = litllm("pretrain", "--config", str(other), "--out_dir", str(tmp_path / "r"), "--resume", str(ckpt))
    assert result.returncode == 2, result.stderr[-2000:]
    assert "different model" in result.stderr and "n_layer" in result.stderr


@pytest.mark.parametrize(
    ("override", "fragments"),
    [
        (["--trainer.precision", "16-true"], ["16-true", "bf16-mixed"]),
        (["--model.max_seq_length", "5000"], ["max_seq_length=5000", "block_size"]),
        (["--model.warmup_stepz", "3"], ["warmup_stepz"]),
        (["--model.model_config", "pythia-16m"], ["pythia-16m", "pythia-160m"]),
    ],
)
def test_bad_recipe_values_end_in_one_line(
    tmp_path: Path, tokenizer_dir: Path, override: list, fragments: list
) -> None:
    result = litllm(
        "pretrain", "--config", str(recipe(tmp_path, tokenizer_dir)), "--out_dir", str(tmp_path / "r"), *override
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr


def test_print_config_shows_the_resolved_recipe(tmp_path: Path, tokenizer_dir: Path) -> None:
    result = litllm("pretrain", "--config", str(recipe(tmp_path, tokenizer_dir)), "--print_config")
    assert result.returncode == 0, result.stderr
    printed = yaml.safe_load(result.stdout)
    assert printed["model"]["max_seq_length"] == 32
    assert printed["trainer"]["max_steps"] == 12


def run_parallel(
    tmp_path: Path, tokenizer_dir: Path, name: str, init: Path, batch: int, *extra: str, lora: dict | None = None
) -> dict:
    config = recipe(
        tmp_path,
        tokenizer_dir,
        **{
            "model": {
                "init_from": str(init),
                "max_seq_length": 32,
                "warmup_steps": 0,
                "optimizer": {"class_path": "torch.optim.SGD", "init_args": {"lr": 0.5}},
                **({"lora": lora} if lora else {}),
            },
            "data.init_args.batch_size": batch,
            "trainer.max_steps": 4,
            "trainer.limit_val_batches": 0,
            "trainer.use_distributed_sampler": False,
            "checkpoint_every": 0,
        },
    )
    result = litllm("pretrain", "--config", str(config), "--out_dir", str(tmp_path / name), *extra)
    assert result.returncode == 0, result.stderr[-3000:]
    return load_file(tmp_path / name / "final" / ("adapter.safetensors" if lora else "model.safetensors"))


@pytest.mark.slow  # 26-32 s each: `make test-slow` (and CI) runs them
@pytest.mark.parametrize(
    "strategy",
    [
        ["--trainer.strategy", "ddp"],
        [
            "--trainer.strategy",
            "lightning.pytorch.strategies.ModelParallelStrategy",
            "--trainer.strategy.data_parallel_size",
            "2",
            "--trainer.strategy.tensor_parallel_size",
            "1",
        ],
    ],
    ids=["ddp", "fsdp2"],
)
def test_two_processes_match_one_process_on_the_same_global_batch(
    trained_run: Path, tmp_path: Path, tokenizer_dir: Path, strategy: list
) -> None:
    single = run_parallel(tmp_path, tokenizer_dir, "one", trained_run / "final", 8)
    double = run_parallel(tmp_path, tokenizer_dir, "two", trained_run / "final", 4, "--trainer.devices", "2", *strategy)
    assert set(single) == set(double)
    for k in single:
        torch.testing.assert_close(single[k], double[k], atol=1e-5, rtol=0, msg=k)


@pytest.mark.slow  # two processes: `make test-slow` (and CI) runs it
def test_lora_sharded_by_fsdp2_trains_the_adapter_one_process_would(
    trained_run: Path, tmp_path: Path, tokenizer_dir: Path
) -> None:
    """The adapters are added on the meta device before sharding and initialised after; final/ gathers them."""
    lora = {"r": 4, "alpha": 8, "mlp": True}
    single = run_parallel(tmp_path, tokenizer_dir, "one", trained_run / "final", 8, lora=lora)
    fsdp = ["--trainer.strategy", "lightning.pytorch.strategies.ModelParallelStrategy",
            "--trainer.strategy.data_parallel_size", "2", "--trainer.strategy.tensor_parallel_size", "1"]  # fmt: skip
    double = run_parallel(tmp_path, tokenizer_dir, "two", trained_run / "final", 4, "--trainer.devices", "2", *fsdp,
                          lora=lora)  # fmt: skip
    assert set(single) == set(double) and all(".lora." in k for k in single)
    for k in single:
        torch.testing.assert_close(single[k], double[k], atol=1e-5, rtol=0, msg=k)


def test_finetune_on_chat_data_learns_the_replies(tmp_path: Path, litllm_dir: Path) -> None:
    import json

    records = [
        {"messages": [{"role": "user", "content": f"add {i} and {i}"}, {"role": "assistant", "content": f"{2 * i}"}]}
        for i in range(40)
    ]
    data = tmp_path / "chat.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in records))
    config = {
        "model": {
            "init_from": str(litllm_dir),
            "max_seq_length": 64,
            "warmup_steps": 2,
            "optimizer": {"class_path": "torch.optim.AdamW", "init_args": {"lr": 0.01}},
        },
        "data": {"class_path": "litllm.data.sft.SFTData", "init_args": {"path": str(data), "batch_size": 8}},
        "trainer": {"max_steps": 30, "precision": "32-true", "log_every_n_steps": 1, "enable_progress_bar": False},
        "checkpoint_every": 0,
    }
    (tmp_path / "ft.yaml").write_text(yaml.safe_dump(config))
    result = litllm("finetune", "--config", str(tmp_path / "ft.yaml"), "--out_dir", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr[-3000:]
    losses = train_losses(tmp_path / "run")
    assert float(losses[max(losses)]) < 0.5 * float(losses[min(losses)])
    assert (tmp_path / "run" / "final" / "model.safetensors").is_file()


def test_finetune_without_a_checkpoint_is_refused(tmp_path: Path, tokenizer_dir: Path) -> None:
    result = litllm("finetune", "--config", str(recipe(tmp_path, tokenizer_dir)), "--out_dir", str(tmp_path / "r"))
    assert result.returncode == 2
    assert "init_from" in result.stderr and "Traceback" not in result.stderr


def test_sft_record_errors_name_file_and_line(tmp_path: Path, litllm_dir: Path) -> None:
    data = tmp_path / "bad.jsonl"
    data.write_text('{"instruction": "a", "output": "b"}\n{"instruction": "a"}\n')
    config = {
        "model": {"init_from": str(litllm_dir), "max_seq_length": 64},
        "data": {"class_path": "litllm.data.sft.SFTData", "init_args": {"path": str(data)}},
        "trainer": {"max_steps": 2},
    }
    (tmp_path / "ft.yaml").write_text(yaml.safe_dump(config))
    result = litllm("finetune", "--config", str(tmp_path / "ft.yaml"), "--out_dir", str(tmp_path / "run"))
    assert result.returncode == 2, result.stderr[-2000:]
    assert "bad.jsonl" in result.stderr and "line 2" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("algorithm", ["norm", "value"])
def test_a_fused_optimizer_clips_under_bf16_mixed(algorithm: str) -> None:
    """Lightning refuses clipping with a fused optimizer under mixed precision; bf16-mixed (no scaler) clips."""
    import lightning as L

    from litllm.training.module import GPTModule

    module = GPTModule(model_config={"name": "pythia-14m", "n_layer": 1, "n_embd": 32, "n_head": 2, "vocab_size": 64})
    module.configure_model()
    module.trainer = L.Trainer(precision="bf16-mixed", accelerator="cpu", logger=False)
    optimizer = torch.optim.AdamW(module.parameters(), fused=True)
    for p in module.parameters():
        p.grad = torch.full_like(p, 3.0)
    module.configure_gradient_clipping(optimizer, 0.5, algorithm)
    grads = [p.grad for p in module.parameters()]
    if algorithm == "norm":
        assert torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])).item() == (
            pytest.approx(0.5, rel=1e-4)
        )
    else:
        assert all(g.abs().max().item() == 0.5 for g in grads)


@pytest.mark.parametrize("accumulate", [1, 2])
def test_gradients_are_dropped_right_after_each_optimizer_step(accumulate: int) -> None:
    """Not inside the next step after its forward (Lightning's own place), where they stayed alive beside the forward's
    memory; gradients accumulating between steps stay. The run learns as before: its loss falls."""
    import lightning as L
    from torch.utils.data import DataLoader

    from litllm.training.module import GPTModule

    class Grads(L.Callback):
        def __init__(self) -> None:
            self.seen: list[bool] = []  # after each batch: whether any parameter holds a gradient

        def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, *args) -> None:
            self.seen.append(any(p.grad is not None for p in module.parameters()))

    torch.manual_seed(0)
    x = torch.randint(0, 64, (4, 17))
    batch = {"input_ids": x[:, :-1], "labels": x[:, 1:]}
    module = GPTModule(
        model_config={"name": "pythia-14m", "n_layer": 1, "n_embd": 32, "n_head": 2, "vocab_size": 64},
        warmup_steps=0,
    )
    losses, grads = [], Grads()

    class Losses(L.Callback):
        def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, outputs, *args) -> None:
            losses.append(float(outputs["loss"]))

    trainer = L.Trainer(
        accelerator="cpu", max_steps=4, accumulate_grad_batches=accumulate, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[grads, Losses()],
    )  # fmt: skip
    trainer.fit(module, train_dataloaders=DataLoader([batch] * 4 * accumulate, batch_size=None))
    # a batch that ends an accumulation window has stepped and dropped them; one inside a window keeps them
    assert grads.seen == [(i + 1) % accumulate != 0 for i in range(4 * accumulate)]
    assert losses[-1] < losses[0]


def test_the_training_loss_is_logged_where_the_loggers_write_it_and_at_the_end(tmp_path: Path) -> None:
    """`self.log` (a Lightning cost per call, and an all-reduce across ranks) runs at the steps the loggers write,
    every `log_every_n_steps`, and at the run's last step, whose loss the run's final metrics then hold."""
    import lightning as L
    from lightning.pytorch.loggers import CSVLogger
    from torch.utils.data import DataLoader

    from litllm.training.module import GPTModule

    torch.manual_seed(0)
    batches = []
    for _ in range(8):
        x = torch.randint(0, 64, (2, 17))
        batches.append({"input_ids": x[:, :-1], "labels": x[:, 1:]})
    module = GPTModule(
        model_config={"name": "pythia-14m", "n_layer": 1, "n_embd": 32, "n_head": 2, "vocab_size": 64},
        warmup_steps=0,
    )
    logged, losses = [], []

    def log(name: str, value: torch.Tensor, **kwargs) -> None:
        logged.append(module.global_step)
        L.LightningModule.log(module, name, value, **kwargs)

    module.log = log

    class Losses(L.Callback):
        def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, outputs, *args) -> None:
            losses.append(float(outputs["loss"]))

    trainer = L.Trainer(
        accelerator="cpu", max_steps=7, log_every_n_steps=3, logger=CSVLogger(tmp_path), enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[Losses()],
    )  # fmt: skip
    trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=None))
    assert logged == [2, 5, 6]
    assert float(trainer.callback_metrics["train_loss"]) == losses[-1]
    with next(tmp_path.rglob("metrics.csv")).open() as f:
        written = {int(r["step"]): float(r["train_loss"]) for r in csv.DictReader(f) if r.get("train_loss")}
    assert written == {2: losses[2], 5: losses[5]}
