"""Faults a run survives: a damaged newest checkpoint (resume falls back to the one before), damaged files given to
`litllm export` and `LLM.load` (one line naming the file), and a full disk (the run stops with one line, and what
was written before stays intact)."""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

TESTS = Path(__file__).parent
MODEL = {
    "model_config": {"name": "pythia-14m", "n_layer": 1, "n_embd": 32, "n_head": 2, "vocab_size": 320},
    "max_seq_length": 16,
    "warmup_steps": 1,
}
TRAINER = {"precision": "32-true", "accelerator": "cpu", "limit_val_batches": 0, "enable_progress_bar": False}


def recipe(folder: Path, tokenizer_dir: Path, max_steps: int) -> Path:
    """A tiny pretraining recipe that checkpoints every 2 steps."""
    config = {
        "model": {**MODEL, "tokenizer_dir": str(tokenizer_dir)},
        "data": {"class_path": "toy_data.ToyTokens", "init_args": {"n": 64, "vocab": 256, "batch_size": 4}},
        "trainer": {**TRAINER, "max_steps": max_steps, "log_every_n_steps": 1},
        "checkpoint_every": 2,
    }
    path = folder / f"recipe-{max_steps}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def train(run_dir: Path, config: Path, *extra: str) -> None:
    """`litllm pretrain` in this process, the way the CLI runs it."""
    from litllm.training.runs import run_training

    run_training("pretrain", ["--config", str(config), "--out_dir", str(run_dir), *extra])


@pytest.fixture(autouse=True)
def _one_run_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["litllm"])  # LightningCLI warns when args come with command-line arguments too
    monkeypatch.delenv("LITLLM_RUN_DIR", raising=False)  # resolve_run_dir pins it for a run's other ranks


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory, tokenizer_dir: Path) -> Path:
    """A 6-step run: checkpoints at steps 4 and 6 (the newest two), last.ckpt and final/."""
    tmp = tmp_path_factory.mktemp("faults")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", ["litllm"])
        mp.delenv("LITLLM_RUN_DIR", raising=False)
        train(tmp / "run", recipe(tmp, tokenizer_dir, 6))
    assert (tmp / "run" / "checkpoints" / "step-0000006.ckpt").is_file()
    assert (tmp / "run" / "final" / "model.safetensors").is_file()
    return tmp / "run"


@pytest.fixture
def run_copy(finished_run: Path, tmp_path: Path) -> Path:
    """A copy of the finished run that a test may damage."""
    return Path(shutil.copytree(finished_run, tmp_path / "run"))


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def flip_middle(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(b ^ 0xFF for b in data[middle : middle + 64])
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [truncate, flip_middle], ids=["truncated", "corrupted"])
def test_resume_auto_skips_a_damaged_newest_checkpoint(
    damage, run_copy: Path, tokenizer_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    bad = run_copy / "checkpoints" / "step-0000006.ckpt"
    damage(bad)
    train(run_copy, recipe(run_copy.parent, tokenizer_dir, 8), "--resume", "auto")
    out, err = capsys.readouterr()
    assert f"skipping checkpoint {str(bad)!r}" in err and "truncated or corrupted" in err
    assert f"resuming from {run_copy / 'checkpoints' / 'step-0000004.ckpt'}" in out
    assert (run_copy / "checkpoints" / "step-0000008.ckpt").is_file()  # the resumed run went on to the end


def test_damaged_checkpoints_are_told_apart_from_good_ones(finished_run: Path, tmp_path: Path) -> None:
    from litllm.training.callbacks import checkpoint_damage

    good = finished_run / "checkpoints" / "step-0000006.ckpt"
    assert checkpoint_damage(good) is None
    for damage in (truncate, flip_middle):
        bad = Path(shutil.copy(good, tmp_path / f"{damage.__name__}.ckpt"))
        damage(bad)
        assert "truncated or corrupted" in checkpoint_damage(bad)
    text = tmp_path / "text.ckpt"
    text.write_text("not a checkpoint")
    assert "truncated or corrupted" in checkpoint_damage(text)


def test_a_sharded_checkpoint_is_damaged_until_its_index_and_metadata_are_written(tmp_path: Path) -> None:
    """FSDP2's checkpoint folder: each rank's shards, then the shards' `.metadata`, then Lightning's `meta.pt`."""
    from litllm.training.callbacks import checkpoint_damage

    folder = tmp_path / "step-0000006.ckpt"
    folder.mkdir()
    (folder / "__0_0.distcp").write_bytes(b"shard")
    assert "no .metadata or meta.pt" in checkpoint_damage(folder)
    (folder / ".metadata").write_bytes(b"index")
    assert "no meta.pt" in checkpoint_damage(folder)
    torch.save({"epoch": 0, "global_step": 6}, folder / "meta.pt")
    assert checkpoint_damage(folder) is None
    truncate(folder / "meta.pt")
    assert "truncated or corrupted" in checkpoint_damage(folder)


def test_export_of_a_damaged_checkpoint_is_one_line(
    finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from litllm.cli import main

    bad = Path(shutil.copy(finished_run / "checkpoints" / "step-0000006.ckpt", tmp_path / "bad.ckpt"))
    truncate(bad)
    with pytest.raises(SystemExit) as exit_:
        main(["export", str(bad), str(tmp_path / "out")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(bad) in err and "truncated or corrupted" in err
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_resume_from_a_named_damaged_checkpoint_is_refused(run_copy: Path, tokenizer_dir: Path) -> None:
    from litllm.errors import CheckpointError

    bad = run_copy / "checkpoints" / "step-0000006.ckpt"
    flip_middle(bad)
    with pytest.raises(CheckpointError, match="truncated or corrupted") as error:
        train(run_copy, recipe(run_copy.parent, tokenizer_dir, 8), "--resume", str(bad))
    assert str(bad) in str(error.value)


def test_llm_load_of_a_truncated_weights_file_names_it(finished_run: Path, tmp_path: Path) -> None:
    from litllm import LLM
    from litllm.errors import CheckpointError

    folder = Path(shutil.copytree(finished_run / "final", tmp_path / "final"))
    truncate(folder / "model.safetensors")
    with pytest.raises(CheckpointError, match="truncated or corrupted.*re-export or re-download it") as error:
        LLM.load(str(folder))
    assert str(folder / "model.safetensors") in str(error.value)


def limit_file_size() -> None:
    """In the child: files may not grow past 64 KiB, and a write past it fails with EFBIG instead of killing."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))


def test_a_full_disk_stops_the_run_with_one_line_and_keeps_what_was_written(
    run_copy: Path, tokenizer_dir: Path
) -> None:
    from litllm import LLM
    from litllm.checkpoint.phases import read_training_checkpoint

    checkpoints = run_copy / "checkpoints"
    before = {p.name: p.read_bytes() for p in [*checkpoints.iterdir(), *(run_copy / "final").iterdir()]}
    assert len((checkpoints / "step-0000006.ckpt").read_bytes()) > 64 * 1024  # the next checkpoint cannot fit
    env = {**os.environ, "PYTHONPATH": str(TESTS), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    env.pop("LITLLM_RUN_DIR", None)
    config = recipe(run_copy.parent, tokenizer_dir, 10)
    cmd = [sys.executable, "-m", "litllm.cli", "pretrain", "--config", str(config), "--out_dir", str(run_copy)]
    result = subprocess.run(
        [*cmd, "--resume", "auto"], env=env, capture_output=True, text=True, timeout=300, preexec_fn=limit_file_size
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, result.stderr[-3000:]
    assert str(checkpoints / "step-0000008.ckpt") in errors[0]
    assert "File too large" in errors[0] and "earlier checkpoints are intact" in errors[0]

    assert not [p for p in checkpoints.iterdir() if p.name.endswith(".tmp")]  # no half-written file left behind
    assert not (checkpoints / "step-0000008.ckpt").exists()
    for name in ("step-0000004.ckpt", "step-0000006.ckpt"):
        assert (checkpoints / name).read_bytes() == before[name]
        read_training_checkpoint(checkpoints / name)
    assert (run_copy / "final" / "model.safetensors").read_bytes() == before["model.safetensors"]
    LLM.load(str(run_copy / "final"))


def test_an_export_onto_a_full_disk_is_one_line_and_keeps_the_folder(finished_run: Path, tmp_path: Path) -> None:
    from litllm import LLM

    out = Path(shutil.copytree(finished_run / "final", tmp_path / "final"))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    env = {**os.environ, "PYTHONPATH": str(TESTS), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    ckpt = finished_run / "checkpoints" / "step-0000006.ckpt"
    result = subprocess.run(
        [sys.executable, "-m", "litllm.cli", "export", str(ckpt), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=limit_file_size,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"litllm: error: could not write {str(out / 'model.safetensors')!r} (File too large (os error 27)); "
        "earlier checkpoints and files there are intact"
    ]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    LLM.load(str(out))
