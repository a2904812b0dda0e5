"""Every recipe in config_hub parses against the real classes (`--print_config`); debug.yaml trains."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

HUB = Path(__file__).parent.parent / "config_hub"
RECIPES = sorted(HUB.glob("*/**/*.yaml"))
COMMAND = {
    "pretrain": "pretrain",
    "mid": "midtrain",
    "finetune": "finetune",
    "sft": "finetune",
    "rl": "rl",
    "eval": "evaluate",
}
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def litllm(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "litllm.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=600)


@pytest.mark.parametrize("recipe", RECIPES, ids=[str(r.relative_to(HUB).with_suffix("")) for r in RECIPES])
def test_recipe_prints_its_resolved_config(
    recipe: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from litllm.training.runs import run_training  # in this process: a subprocess a recipe would cost seconds more

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SystemExit) as done:
        run_training(COMMAND[recipe.relative_to(HUB).parts[0]], ["--config", str(recipe), "--print_config"])
    assert done.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["data"]["class_path"].startswith("litllm.data.")
    assert "trainer" in printed and "model" in printed


def test_a_shipped_recipe_is_found_by_name_from_any_folder(tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "litllm.cli",
        "midtrain",
        "--config",
        "config_hub/mid/speedrun-cpu.yaml",
        "--print_config",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert yaml.safe_load(result.stdout)["data"]["class_path"] == "litllm.data.tasks.TaskData"
    result = subprocess.run([*cmd[:5], "sft/speedrun-cpu", "--print_config"], capture_output=True, text=True, env=ENV,
                            timeout=600, cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.slow
def test_debug_recipe_trains_and_its_loss_falls(tmp_path: Path) -> None:
    """debug.yaml, shortened: the full recipe (150 steps) runs in `make demo`."""
    import csv

    recipe = HUB / "pretrain" / "debug.yaml"
    result = litllm(
        "pretrain",
        "--config",
        str(recipe),
        "--out_dir",
        str(tmp_path / "run"),
        "--trainer.max_steps",
        "40",
        "--trainer.val_check_interval",
        "40",
        "--data.init_args.max_bytes",
        "600000",
        "--trainer.log_every_n_steps",
        "1",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with open(tmp_path / "run" / "logs" / "version_0" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    losses = [float(r["train_loss"]) for r in rows if r.get("train_loss")]
    assert losses[-1] < 0.8 * losses[0], losses
    assert (tmp_path / "run" / "final" / "model.safetensors").is_file()


@pytest.mark.slow  # a shell and a litllm process, about 12 s: `make test-slow` (and CI) runs it
def test_the_slurm_script_runs_its_recipe_on_every_task_of_the_job(tmp_path: Path) -> None:
    """The sbatch script's srun line, with the job's variables, parses to 2 nodes x 8 GPUs sharded 16 ways."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    srun = bin_dir / "srun"  # stands in for SLURM's srun: runs the task's command once, printing its config
    srun.write_text(f'#!/bin/sh\nshift\nexec {sys.executable} -m litllm.cli "$@" --print_config\n')
    srun.chmod(0o755)
    job = {"SLURM_NNODES": "2", "SLURM_NTASKS_PER_NODE": "8", "SLURM_NTASKS": "16", "RUN_DIR": str(tmp_path / "run")}
    env = {**ENV, **job, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    script = HUB / "pretrain" / "tinyllama-1.1b.sbatch"
    result = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env, cwd=HUB.parent, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    printed = yaml.safe_load(result.stdout)
    assert (printed["trainer"]["num_nodes"], str(printed["trainer"]["devices"])) == (2, "8")  # Lightning reads "8"
    assert printed["trainer"]["strategy"]["init_args"]["data_parallel_size"] == 16
    assert printed["out_dir"] == str(tmp_path / "run") and printed["resume"] == "auto"
    assert printed["data"]["init_args"]["path"].startswith("s3://")
