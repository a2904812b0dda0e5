"""The same recipe gives the same model: no kernel choice made by timing reaches a training run's numbers.

The float32 training kernel (F.linear or oneDNN, `litllm.cpu.kernels.training_gemm`) follows a rule (the CPU's
features, or LITLLM_TRAINING_GEMM), is kept in the run's checkpoints and taken back on resume. Here: the rule
answers alike on a busy and a quiet machine and times nothing, two runs of a recipe (one while other processes keep
the cores busy, each with its own LITLLM_HOME, as on a second node) give bit-identical weights and logged losses,
and a run resumed without the switch it was started with continues with the kernel its checkpoint recorded.
"""

from __future__ import annotations

import contextlib
import csv
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_training import recipe as training_recipe

from litllm.cpu import isa, kernels, native
from litllm.cpu.packing import Linear

TESTS = Path(__file__).parent
ENV = {**os.environ, "PYTHONPATH": str(TESTS), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
for name in ("LITLLM_RUN_DIR", kernels.TRAINING_GEMM_SWITCH):
    ENV.pop(name, None)
LOSSES = ("train_loss", "val_loss", "val_ppl", "val_bpb")  # the logged numbers a run computes (not its timings)
BUSY = "b = bytearray(32 << 20)\nwhile True:\n    bytes(b)"  # copies 32 MiB over and over: memory and a core busy


def other_kernel() -> str:
    """The training kernel this machine's rule does not pick."""
    return "linear" if kernels.training_gemm_rule() == "onednn" else "onednn"


@pytest.fixture(autouse=True)
def rule_kernel(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts from this machine's rule, without the switch, and leaves no run's kernel behind."""
    monkeypatch.delenv(kernels.TRAINING_GEMM_SWITCH, raising=False)
    kernels.use_training_gemm(None)
    yield
    kernels.use_training_gemm(None)


@contextlib.contextmanager
def busy_cores() -> Iterator[None]:
    """Two processes that copy memory without pause, one per core of a 2-core machine."""
    procs = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(2)]
    try:
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def recipe(tmp_path: Path, tokenizer_dir: Path) -> Path:
    """test_training's tiny recipe: 10 steps with a checkpoint and a validation every 5."""
    # 5 batches an epoch: the step-5 checkpoint ends an epoch, where ToyTokens (no loader state) resumes exactly
    return training_recipe(
        tmp_path,
        tokenizer_dir,
        **{
            "data.init_args.n": 40,
            "trainer.max_steps": 10,
            "trainer.val_check_interval": 5,
            "trainer.limit_val_batches": 1,
            "checkpoint_every": 5,
        },
    )


def pretrain(config: Path, out_dir: Path, home: Path, *args: str, **env: str) -> None:
    """`litllm pretrain` in a fresh process with its own LITLLM_HOME."""
    cmd = [sys.executable, "-m", "litllm.cli", "pretrain", "--config", str(config), "--out_dir", str(out_dir), *args]
    done = subprocess.run(
        cmd, capture_output=True, text=True, env={**ENV, "LITLLM_HOME": str(home), **env}, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]


def logged_losses(run_dir: Path, version: int = 0) -> list[tuple[str, str, str]]:
    """(step, metric, value as written) for every loss the run logged."""
    with open(run_dir / "logs" / f"version_{version}" / "metrics.csv") as f:
        return [(row["step"], k, row[k]) for row in csv.DictReader(f) for k in LOSSES if row.get(k)]


def same_weights(a: Path, b: Path) -> bool:
    x, y = load_file(a / "final" / "model.safetensors"), load_file(b / "final" / "model.safetensors")
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def recorded_kernel(ckpt: Path) -> dict:
    return torch.load(ckpt, map_location="cpu", weights_only=True)["training_kernel"]


def fresh_process_answer(home: Path) -> str:
    code = "from litllm.cpu import kernels; print(kernels.training_gemm())"
    env = {**ENV, "LITLLM_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    ).stdout.strip()


def test_the_rule_follows_the_cpu_features() -> None:
    flags = Path("/proc/cpuinfo").read_text().split() if Path("/proc/cpuinfo").exists() else []
    intel = "GenuineIntel" in flags  # MKL, the faster BLAS there
    onednn = "avx512f" in flags and not intel and torch.backends.mkldnn.is_available()
    assert kernels.training_gemm() == kernels.training_gemm_rule() == ("onednn" if onednn else "linear")


def test_training_never_times_a_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    def timed(*args: object) -> None:
        raise AssertionError("a training step timed its kernels")

    monkeypatch.setattr(kernels, "seconds_per_pass", timed)
    monkeypatch.setattr(kernels, "fastest", timed)
    layer = Linear(64, 48)
    x = torch.randn(8, 64, requires_grad=True)
    layer(x).sum().backward()
    kernels.product(x.detach(), layer.weight.detach())
    with torch.no_grad(), kernels.training_kernels():  # a training run's validation: the rule, not the probe
        assert torch.equal(layer(x), kernels.run_nd(kernels.training_gemm(), x, layer.weight, layer.bias, None))


def test_the_rule_answers_alike_on_a_busy_machine(tmp_path: Path) -> None:
    quiet = kernels.training_gemm_rule()
    with busy_cores():
        answers = {fresh_process_answer(tmp_path / "home")}
        for _ in range(5):  # decided afresh each time: nothing cached in this process
            isa.supported.cache_clear()
            isa._from_environment.cache_clear()
            native.cpu_identity.cache_clear()
            answers.add(kernels.training_gemm_rule())
    assert answers == {quiet}


@pytest.fixture(scope="module")
def quiet_run(tmp_path_factory: pytest.TempPathFactory, tokenizer_dir: Path) -> Path:
    """The recipe run once with nothing else started by these tests: its folder holds recipe.yaml and run/."""
    tmp = tmp_path_factory.mktemp("quiet")
    pretrain(recipe(tmp, tokenizer_dir), tmp / "run", tmp / "home")
    return tmp


@pytest.mark.slow  # ~40 s of a second training run with both cores kept busy
def test_the_same_recipe_gives_the_same_model_on_a_busy_machine(quiet_run: Path, tmp_path: Path) -> None:
    with busy_cores():  # another LITLLM_HOME too: as on a second node
        pretrain(quiet_run / "recipe.yaml", tmp_path / "busy", tmp_path / "home")
    assert same_weights(quiet_run / "run", tmp_path / "busy")
    quiet = logged_losses(quiet_run / "run")
    assert {m for _, m, _ in quiet} >= {"train_loss", "val_loss"}
    assert logged_losses(tmp_path / "busy") == quiet
    ckpt = tmp_path / "busy" / "checkpoints" / "step-0000005.ckpt"
    assert recorded_kernel(ckpt) == {"kernel": kernels.training_gemm_rule(), "cpu": kernels.cpu_model()}


@pytest.mark.slow  # 32 s: with the slow tests, which CI runs too
def test_the_switch_picks_the_kernel_and_a_resume_takes_the_recorded_one(quiet_run: Path, tmp_path: Path) -> None:
    other = other_kernel()
    config = quiet_run / "recipe.yaml"
    pretrain(config, tmp_path / "switched", tmp_path / "home", **{kernels.TRAINING_GEMM_SWITCH: other})
    assert not same_weights(quiet_run / "run", tmp_path / "switched")  # the two kernels round differently here
    ckpt = tmp_path / "switched" / "checkpoints" / "step-0000005.ckpt"
    assert recorded_kernel(ckpt)["kernel"] == other
    # resumed without the switch: the checkpoint's kernel, so the run ends as the one it continues
    pretrain(config, tmp_path / "resumed", tmp_path / "home", "--resume", str(ckpt))
    assert same_weights(tmp_path / "switched", tmp_path / "resumed")
    after = logged_losses(tmp_path / "resumed")
    assert after and set(after) <= set(logged_losses(tmp_path / "switched"))


def test_the_switch_is_honoured_and_a_bad_value_named(monkeypatch: pytest.MonkeyPatch) -> None:
    layer, x = Linear(16, 8), torch.randn(4, 16)
    for kernel, backward in (("onednn", "OneDNNLinearBackward"), ("linear", "AddmmBackward0")):
        monkeypatch.setenv(kernels.TRAINING_GEMM_SWITCH, kernel)
        assert kernels.training_gemm() == kernel
        assert type(layer(x).grad_fn).__name__ == backward
    monkeypatch.setenv(kernels.TRAINING_GEMM_SWITCH, "fastest")
    with pytest.raises(ValueError, match="LITLLM_TRAINING_GEMM='fastest'.*linear or onednn"):
        kernels.training_gemm_rule()


def test_a_recorded_kernel_is_followed_and_a_conflict_warned(monkeypatch: pytest.MonkeyPatch) -> None:
    other = other_kernel()
    kernels.follow_training_record({"kernel": other, "cpu": kernels.cpu_model()})
    assert kernels.training_gemm() == other
    with pytest.warns(UserWarning, match=rf"trained on 'Some Other CPU'.*continuing with its {other}"):
        kernels.follow_training_record({"kernel": other, "cpu": "Some Other CPU"})
    monkeypatch.setenv(kernels.TRAINING_GEMM_SWITCH, "linear")
    with pytest.warns(UserWarning, match="trained with the onednn float32 kernel; continuing with linear"):
        kernels.follow_training_record({"kernel": "onednn", "cpu": kernels.cpu_model()})
    assert kernels.training_gemm() == "linear"
    kernels.follow_training_record(None)  # a checkpoint from before kernels were recorded: nothing changes
    assert kernels.training_gemm() == "linear"
