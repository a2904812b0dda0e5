"""Exact resume from any point: a run SIGKILLed at each moment of its life and resumed with `--resume auto` ends
with the same weights, bit for bit, and logs the same losses as the run that was never interrupted.

One run folder is killed and resumed again and again, one kill point after the other (a chain: each point costs one
process), then resumed to the end and compared with a reference run of the same recipe. Each kill point is a file
or folder appearing: the trained tokenizer's temporary folder, the tokenized corpus' cache, the start of training, a
checkpoint's temporary file, a checkpoint followed by validation, the export's `final/` folder.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

pytestmark = pytest.mark.slow  # about two minutes: `make test-slow` (and CI) runs it

TESTS = Path(__file__).parent
ENV = {**os.environ, "PYTHONPATH": str(TESTS), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
ENV.pop("LITLLM_RUN_DIR", None)
ENV.pop("LITLLM_DATA_DIR", None)
MAX_STEPS = 12

KillPoint = tuple[str, Callable[[Path], bool]]


def write_recipe(path: Path, data: dict, **model: object) -> Path:
    """A tiny fp32 recipe: 1 layer, 32 dimensions, 32-token windows, 12 steps, a checkpoint every 2 steps."""
    config = {
        "model": {
            "max_seq_length": 32,
            "warmup_steps": 2,
            "optimizer": {"class_path": "torch.optim.AdamW", "init_args": {"lr": 0.01}},
            **model,
        },
        "data": data,
        "trainer": {
            "max_steps": MAX_STEPS,
            "precision": "32-true",
            "accelerator": "cpu",
            "log_every_n_steps": 1,
            "val_check_interval": 4,
            "limit_val_batches": 2,
            "enable_progress_bar": False,
        },
        "checkpoint_every": 2,
    }
    path.write_text(yaml.safe_dump(config))
    return path


def start(config: Path, run: Path, home: Path, log: Path, *extra: str) -> subprocess.Popen:
    """`litllm pretrain|finetune --config config --out_dir run ...` in its own process group (DDP ranks too)."""
    command = "finetune" if "init_from" in yaml.safe_load(config.read_text())["model"] else "pretrain"
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "litllm.cli", command, "--config", str(config), "--out_dir", str(run), *extra],
            env={**ENV, "LITLLM_HOME": str(home)},
            stdout=out,
            stderr=out,
            start_new_session=True,
        )


def run_to_the_end(config: Path, run: Path, home: Path, *extra: str) -> None:
    log = run.parent / f"{run.name}.log"
    proc = start(config, run, home, log, "--resume", "auto", *extra)
    assert proc.wait(timeout=300) == 0, log.read_text()[-3000:]


def kill_when(config: Path, run: Path, home: Path, point: KillPoint, *extra: str) -> None:
    """Start (or resume) the run and SIGKILL its whole process group the moment `point` holds."""
    name, reached = point
    log = run.parent / f"{run.name}.log"
    proc = start(config, run, home, log, "--resume", "auto", *extra)
    deadline = time.monotonic() + 120
    try:
        while not reached(run) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        assert proc.poll() is None, f"the run ended before the kill point {name!r}:\n{log.read_text()[-3000:]}"
        assert reached(run), f"kill point {name!r} not reached in 120 s"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        with open(log, "a") as out:
            out.write(f"\n=== SIGKILL at {name}\n")


def logged_losses(run: Path) -> dict[tuple[int, str], str]:
    """Every train and validation loss the run's processes logged, by (step, name); a later process's value wins.
    A killed process may leave its last line half written: that line is dropped."""
    losses: dict[tuple[int, str], str] = {}
    versions = sorted((run / "logs").glob("version_*/metrics.csv"), key=lambda p: int(p.parent.name.split("_")[1]))
    for path in versions:
        text = path.read_text()
        lines = text.splitlines(keepends=True)
        if lines and not lines[-1].endswith("\n"):
            lines.pop()
        for row in csv.DictReader(lines):
            for name in ("train_loss", "val_loss"):
                if row.get(name):
                    losses[int(row["step"]), name] = row[name]
    return losses


def chain(tmp_path: Path, config: Path, points: list[KillPoint], home: Path, *extra: str) -> Path:
    """Run the recipe whole into tmp_path/reference; kill one run (tmp_path/killed, its own LITLLM_HOME `home`) at
    every point in turn, resume it to the end, and compare the two."""
    reference, run = tmp_path / "reference", tmp_path / "killed"
    run_to_the_end(config, reference, tmp_path / "home_reference", *extra)
    for point in points:
        kill_when(config, run, home, point, *extra)
    finished = [run / "final" / name for name in ("model_config.yaml", "adapter_config.yaml")]
    assert not any(p.exists() for p in finished), "the last kill came after the export finished"
    run_to_the_end(config, run, home, *extra)
    compare(reference, run)
    return run


def appears(pattern: str) -> Callable[[Path], bool]:
    """The moment a file or folder matching `pattern` (a glob relative to the run folder) exists."""
    return lambda run: any(run.glob(pattern))


TRAINING_POINTS: list[KillPoint] = [
    ("the first steps", appears("checkpoints/step-0000002.ckpt")),
    ("a checkpoint being written", appears("checkpoints/.step-0000004.ckpt.*.tmp")),
    ("validation after a checkpoint", appears("checkpoints/step-0000004.ckpt")),
    ("the export of final/", appears("final")),
]
TINY_MODEL = {"name": "pythia-14m", "n_layer": 1, "n_embd": 32, "n_head": 2, "vocab_size": 320, "block_size": 32}


def text_data(corpus: Path) -> dict:
    """Text files tokenized into $LITLLM_HOME/data (a cache per run here, as each run has its own home)."""
    init = {"path": str(corpus), "batch_size": 4, "num_workers": 1}
    return {"class_path": "litllm.data.text_files.TextFiles", "init_args": init}


def test_pretrain_killed_at_every_point_resumes_bit_exactly(tmp_path: Path, corpus: Path) -> None:
    # no tokenizer_dir: the run trains its tokenizer into $LITLLM_HOME/tokenizers, then tokenizes the corpus
    home = tmp_path / "home_killed"
    config = write_recipe(tmp_path / "recipe.yaml", text_data(corpus), model_config=TINY_MODEL)
    points: list[KillPoint] = [
        ("tokenizer training", lambda run: any(home.glob("tokenizers/.bpe-*.tmp"))),
        ("corpus tokenization", lambda run: any(home.glob("data/text-*/train"))),
        *TRAINING_POINTS,
    ]
    chain(tmp_path, config, points, home)
    # the killed run rebuilt what the kills left half done, to the same content as the uninterrupted run
    (mine,), (theirs,) = home.glob("data/text-*/complete.json"), (tmp_path / "home_reference").glob("data/*/*.json")
    assert json.loads(mine.read_text()) == json.loads(theirs.read_text())


def test_ddp_run_killed_at_every_point_resumes_bit_exactly(tmp_path: Path, corpus: Path, tokenizer_dir: Path) -> None:
    config = write_recipe(
        tmp_path / "recipe.yaml", text_data(corpus), model_config=TINY_MODEL, tokenizer_dir=str(tokenizer_dir)
    )
    points = [TRAINING_POINTS[2]]  # validation after a checkpoint: both ranks killed, both resumed
    ddp = ("--trainer.devices", "2", "--trainer.strategy", "ddp")
    chain(tmp_path, config, points, tmp_path / "home_killed", *ddp)


def chat_data(tmp_path: Path) -> dict:
    """SFT data: 40 short conversations in a JSONL file."""
    records = [
        {"messages": [{"role": "user", "content": f"add {i} and {i}"}, {"role": "assistant", "content": f"{2 * i}"}]}
        for i in range(40)
    ]
    data = tmp_path / "chat.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in records))
    return {"class_path": "litllm.data.sft.SFTData", "init_args": {"path": str(data), "batch_size": 4}}


def test_finetune_killed_at_every_point_resumes_bit_exactly(tmp_path: Path, litllm_dir: Path) -> None:
    sft = chat_data(tmp_path)
    config = write_recipe(tmp_path / "recipe.yaml", sft, init_from=str(litllm_dir))
    points = [TRAINING_POINTS[1], TRAINING_POINTS[3]]  # a checkpoint being written, the export
    chain(tmp_path, config, points, tmp_path / "home_killed")


def test_lora_finetune_killed_resumes_to_the_same_adapter(tmp_path: Path, litllm_dir: Path) -> None:
    """With dropout on the adapters' input, so the random state matters too; final/ holds the adapter alone."""
    sft = chat_data(tmp_path)
    lora = {"r": 4, "alpha": 8, "dropout": 0.2, "mlp": True}
    config = write_recipe(tmp_path / "recipe.yaml", sft, init_from=str(litllm_dir), lora=lora)
    points = [TRAINING_POINTS[1], TRAINING_POINTS[2], TRAINING_POINTS[3]]
    run = chain(tmp_path, config, points, tmp_path / "home_killed")
    assert sorted(p.name for p in (run / "final").glob("*.safetensors")) == ["adapter.safetensors"]


def compare(reference: Path, run: Path) -> None:
    """The same logged losses (each one the killed run logged) and bit-identical final weights."""
    want, got = logged_losses(reference), logged_losses(run)
    assert {step for step, name in want if name == "train_loss"} == set(range(MAX_STEPS))
    assert max(step for step, _ in got) == MAX_STEPS - 1
    assert {key: want[key] for key in got} == got  # bit-exact: the CSV holds each float's repr
    weights = "adapter.safetensors" if (reference / "final" / "adapter.safetensors").exists() else "model.safetensors"
    a, b = load_file(reference / "final" / weights), load_file(run / "final" / weights)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
