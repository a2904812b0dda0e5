"""Training on several nodes, simulated on this machine: each "node" is a process with its own LITLLM_HOME and working
folder, as separate machines have, and the nodes share only the run directory, as a shared filesystem would. They
find each other through MASTER_ADDR/MASTER_PORT/NODE_RANK on loopback and talk over gloo."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from tests.serve_helpers import free_port

TESTS = Path(__file__).parent
ENV = {**os.environ, "PYTHONPATH": str(TESTS), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
for name in ("LITLLM_RUN_DIR", "LITLLM_DATA_DIR", "MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "RANK", "LOCAL_RANK"):
    ENV.pop(name, None)
STEPS = 16
TORCHRUN = str(Path(sys.executable).parent / "torchrun")


def write_recipe(path: Path, tokenizer_dir: Path, batch_size: int, **trainer: object) -> Path:
    """A tiny fp32 pretraining recipe on fixed windows (rank r of w takes windows r, r + w, ...): SGD, 16 steps."""
    config = {
        "model": {
            "model_config": {"name": "pythia-14m", "n_layer": 2, "vocab_size": 320},
            "tokenizer_dir": str(tokenizer_dir),
            "max_seq_length": 32,
            "warmup_steps": 0,
            "optimizer": {"class_path": "torch.optim.SGD", "init_args": {"lr": 0.5}},
        },
        "data": {"class_path": "toy_data.ToyTokens", "init_args": {"vocab": 256, "batch_size": batch_size}},
        "trainer": {
            "max_steps": STEPS,
            "precision": "32-true",
            "accelerator": "cpu",
            "log_every_n_steps": 1,
            "limit_val_batches": 0,
            "use_distributed_sampler": False,
            "enable_progress_bar": False,
            **trainer,
        },
        "checkpoint_every": 2,
    }
    path.write_text(yaml.safe_dump(config))
    return path


class Node:
    """One simulated machine: its own home and working folder; `start` launches `litllm pretrain` there."""

    def __init__(self, root: Path, rank: int) -> None:
        self.rank = rank
        self.home, self.cwd = root / f"node{rank}" / "home", root / f"node{rank}" / "work"
        self.cwd.mkdir(parents=True, exist_ok=True)
        self.log = root / f"node{rank}.log"
        self.proc: subprocess.Popen | None = None

    def start(self, args: list[str], port: int, nodes: int) -> subprocess.Popen:
        """`litllm pretrain ARGS` with MASTER_ADDR, MASTER_PORT and NODE_RANK set by hand."""
        env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "NODE_RANK": str(self.rank)}
        return self.launch(["-m", "litllm.cli", "pretrain", *args, "--trainer.num_nodes", str(nodes)], env)

    def launch(self, args: list[str], env: dict[str, str], program: str = sys.executable) -> subprocess.Popen:
        """`program ARGS` on this node, in its own process group, with `env` added to the node's environment."""
        env = {**ENV, "LITLLM_HOME": str(self.home), **env}
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [program, *args], env=env, cwd=self.cwd, stdout=out, stderr=out, start_new_session=True
            )
        return self.proc

    def stop(self) -> None:
        """SIGKILL the node's processes if they still run."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def output(self) -> str:
        return self.log.read_text()[-4000:] if self.log.exists() else ""


def run_nodes(root: Path, nodes: int, args: list[str], timeout: float = 300) -> list[Node]:
    """Start `nodes` nodes of one run and wait for all of them; each must succeed (the first failure stops all)."""
    port = free_port()
    group = [Node(root, rank) for rank in range(nodes)]
    for node in group:
        node.start(args, port, nodes)
    return wait_all(group, timeout)


def wait_all(group: list[Node], timeout: float = 300) -> list[Node]:
    """Wait for every node's process to succeed; the first failure (or the timeout) stops them all."""
    deadline = time.monotonic() + timeout
    try:
        while any(n.proc.poll() is None for n in group) and time.monotonic() < deadline:
            failed = [n for n in group if n.proc.poll() not in (None, 0)]
            assert not failed, "\n".join(f"node {n.rank}:\n{n.output()}" for n in failed)
            time.sleep(0.2)
        for node in group:
            assert node.proc.poll() == 0, f"node {node.rank}:\n{node.output()}"
    finally:
        for node in group:
            node.stop()
    return group


def train_losses(run: Path) -> dict[int, float]:
    losses = {}
    for path in sorted((run / "logs").glob("version_*/metrics.csv")):
        with open(path) as f:
            losses |= {int(r["step"]): float(r["train_loss"]) for r in csv.DictReader(f) if r.get("train_loss")}
    return losses


def single(tmp_path: Path, tokenizer_dir: Path, name: str, batch: int, *extra: str) -> Path:
    """One process (or one node with several) of the same recipe, for reference."""
    run = tmp_path / name
    recipe = write_recipe(tmp_path / f"{name}.yaml", tokenizer_dir, batch)
    command = [sys.executable, "-m", "litllm.cli", "pretrain", "--config", str(recipe), "--out_dir", str(run), *extra]
    result = subprocess.run(
        command, capture_output=True, text=True, env={**ENV, "LITLLM_HOME": str(tmp_path / f"{name}-home")}
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return run


def assert_same_training(a: Path, b: Path) -> None:
    """The same logged loss at every step and the same final weights, within float32 round-off."""
    la, lb = train_losses(a), train_losses(b)
    assert sorted(la) == sorted(lb) == list(range(STEPS))
    for step in la:
        assert la[step] == pytest.approx(lb[step], rel=1e-5, abs=1e-6), step
    wa, wb = load_file(a / "final" / "model.safetensors"), load_file(b / "final" / "model.safetensors")
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], atol=1e-5, rtol=0, msg=k)


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory: pytest.TempPathFactory, tokenizer_dir: Path) -> tuple[Path, list[Node]]:
    """The recipe trained on 2 nodes x 1 process, the nodes sharing only <root>/shared."""
    root = tmp_path_factory.mktemp("two_nodes")
    recipe = write_recipe(root / "nodes.yaml", tokenizer_dir, 4, strategy="ddp")
    nodes = run_nodes(root, 2, ["--config", str(recipe), "--out_dir", str(root / "shared" / "run")])
    return root / "shared" / "run", nodes


@pytest.mark.slow  # training processes on two nodes: `make test-slow` (and CI) runs it
def test_two_nodes_train_as_one_process_with_the_global_batch(
    two_nodes: tuple[Path, list[Node]], tmp_path: Path, tokenizer_dir: Path
) -> None:
    run, _ = two_nodes
    assert_same_training(run, single(tmp_path, tokenizer_dir, "one", 8))


@pytest.mark.slow  # training processes on two nodes: `make test-slow` (and CI) runs it
def test_two_nodes_train_and_write_as_one_node_with_two_processes(
    two_nodes: tuple[Path, list[Node]], tmp_path: Path, tokenizer_dir: Path
) -> None:
    run, nodes = two_nodes
    two = single(tmp_path, tokenizer_dir, "two", 4, "--trainer.devices", "2", "--trainer.strategy", "ddp")
    assert_same_training(run, two)
    # only rank 0 wrote: the shared run folder holds exactly the files of a one-machine run, and node 1 wrote nothing
    # in its working folder
    assert files(run) == files(two)
    assert not list(nodes[1].cwd.iterdir())


def files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


FSDP2 = {
    "class_path": "lightning.pytorch.strategies.ModelParallelStrategy",
    "init_args": {"data_parallel_size": 2, "tensor_parallel_size": 1},
}


@pytest.mark.slow  # training processes on two nodes: `make test-slow` (and CI) runs it
@pytest.mark.parametrize("strategy", ["ddp", FSDP2], ids=["ddp", "fsdp2"])
def test_a_node_that_dies_ends_the_run_clearly_and_resume_continues_exactly(
    tmp_path: Path, tokenizer_dir: Path, corpus: Path, strategy: str | dict
) -> None:
    """Text files, tokenized by each node into its own home and streamed by LitData, which resumes mid-epoch. Under
    FSDP2 each rank saves its shards into the shared checkpoint folder, and rank 0 gathers final/."""
    recipe = write_recipe(tmp_path / "nodes.yaml", tokenizer_dir, 4, strategy=strategy, use_distributed_sampler=True)
    data = {"class_path": "litllm.data.text_files.TextFiles", "init_args": {"path": str(corpus), "batch_size": 4}}
    recipe.write_text(yaml.safe_dump({**yaml.safe_load(recipe.read_text()), "data": data}))
    run_nodes(tmp_path / "reference", 2, ["--config", str(recipe), "--out_dir", str(tmp_path / "reference" / "run")])
    run = tmp_path / "killed" / "run"
    args = ["--config", str(recipe), "--out_dir", str(run), "--resume", "auto"]
    port, group = free_port(), [Node(tmp_path / "killed", rank) for rank in range(2)]
    for node in group:
        node.start(args, port, 2)
    deadline = time.monotonic() + 120
    while not (run / "checkpoints" / "step-0000006.ckpt").exists() and time.monotonic() < deadline:
        time.sleep(0.002)
    group[1].stop()  # SIGKILL node 1 mid-run
    try:
        code = group[0].proc.wait(timeout=60)  # not a hang: node 0 ends on its own
    finally:
        group[0].stop()
    log = group[0].output()
    assert code != 0, log
    assert "lost contact" in log and "--resume auto" in log and "Traceback" not in log, log
    assert not (run / "final").exists()
    run_nodes(tmp_path / "killed", 2, args)
    reference = tmp_path / "reference" / "run"
    # every loss either process logged is the uninterrupted run's (a killed process may not have flushed its last rows)
    got, want = train_losses(run), train_losses(reference)
    assert {step: want[step] for step in got} == got and set(range(6, STEPS)) <= set(got)
    a, b = load_file(reference / "final" / "model.safetensors"), load_file(run / "final" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def start_alone(
    tmp_path: Path,
    tokenizer_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    env: dict,
    *extra: str,
) -> str:
    """`litllm pretrain` of the recipe on 2 nodes, in this process alone with `env`: its one error line (exit 2)."""
    from litllm.cli import main

    for name in ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "RANK", "LOCAL_RANK", "LITLLM_RUN_DIR"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    recipe = write_recipe(tmp_path / "nodes.yaml", tokenizer_dir, 4, strategy="ddp")
    with pytest.raises(SystemExit) as exit:
        main(["pretrain", "--config", str(recipe), "--trainer.num_nodes", "2", *extra])
    stderr = capsys.readouterr().err
    assert exit.value.code == 2, stderr[-3000:]  # the error ended in the CLI's one line, not a traceback
    errors = [line for line in stderr.splitlines() if line.startswith("litllm: error:")]
    assert len(errors) == 1, stderr[-3000:]
    return errors[0]


def test_a_run_on_several_nodes_needs_an_out_dir(tmp_path: Path, tokenizer_dir: Path, monkeypatch, capsys) -> None:
    env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "NODE_RANK": "0"}
    error = start_alone(tmp_path, tokenizer_dir, monkeypatch, capsys, env)
    assert "2 nodes" in error and "--out_dir" in error


def test_processes_started_by_torchrun_need_an_out_dir(
    tmp_path: Path, tokenizer_dir: Path, monkeypatch, capsys
) -> None:
    env = {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0", "GROUP_RANK": "0", "MASTER_ADDR": "127.0.0.1"}
    error = start_alone(tmp_path, tokenizer_dir, monkeypatch, capsys, env, "--trainer.num_nodes", "1")
    assert "2 processes started by torchrun" in error and "--out_dir" in error


def test_several_nodes_without_a_launcher_name_the_missing_variables(
    tmp_path: Path, tokenizer_dir: Path, monkeypatch, capsys
) -> None:
    error = start_alone(tmp_path, tokenizer_dir, monkeypatch, capsys, {}, "--out_dir", str(tmp_path / "run"))
    assert "MASTER_ADDR, MASTER_PORT, NODE_RANK" in error and "torchrun" in error
    assert not (tmp_path / "run").exists()


def test_a_node_rank_beyond_the_nodes_is_refused(tmp_path: Path, tokenizer_dir: Path, monkeypatch, capsys) -> None:
    env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "NODE_RANK": "2"}
    error = start_alone(tmp_path, tokenizer_dir, monkeypatch, capsys, env, "--out_dir", str(tmp_path / "run"))
    assert "NODE_RANK='2'" in error and "0 to 1" in error


def test_a_node_whose_master_never_answers_ends_within_the_timeout(
    tmp_path: Path, tokenizer_dir: Path, monkeypatch, capsys
) -> None:
    port = free_port()  # nothing listens there
    env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "NODE_RANK": "1", "LITLLM_MASTER_TIMEOUT": "2"}
    began = time.monotonic()
    error = start_alone(tmp_path, tokenizer_dir, monkeypatch, capsys, env, "--out_dir", str(tmp_path / "run"))
    assert f"MASTER_ADDR:MASTER_PORT = 127.0.0.1:{port}" in error and "within 2 s" in error
    assert time.monotonic() - began < 30


@pytest.mark.slow  # training processes on two nodes: `make test-slow` (and CI) runs it
def test_two_nodes_under_torchrun_train_as_two_nodes_by_hand(
    two_nodes: tuple[Path, list[Node]], tmp_path: Path, tokenizer_dir: Path
) -> None:
    """`torchrun --nnodes 2 --node-rank R ... -m litllm.cli pretrain ...` on each node, as a user types it."""
    recipe = write_recipe(tmp_path / "nodes.yaml", tokenizer_dir, 4, strategy="ddp")
    run, port = tmp_path / "shared" / "run", free_port()
    torchrun = ["--nnodes", "2", "--nproc-per-node", "1", "--master-addr", "127.0.0.1", "--master-port", str(port)]
    group = [Node(tmp_path, rank) for rank in range(2)]
    for node in group:
        args = [*torchrun, "--node-rank", str(node.rank), "-m", "litllm.cli", "pretrain", "--config", str(recipe)]
        node.launch([*args, "--out_dir", str(run), "--trainer.num_nodes", "2"], {}, TORCHRUN)
    wait_all(group)
    reference, _ = two_nodes
    assert_same_training(run, reference)
    assert files(run) == files(reference)


@pytest.mark.slow  # training processes on two nodes: `make test-slow` (and CI) runs it
def test_two_nodes_under_srun_train_as_two_nodes_by_hand(
    two_nodes: tuple[Path, list[Node]], tmp_path: Path, tokenizer_dir: Path
) -> None:
    """What `srun` gives each task of a 2-node, 1-task-a-node job (Lightning's SLURMEnvironment reads it)."""
    recipe = write_recipe(tmp_path / "nodes.yaml", tokenizer_dir, 4, strategy="ddp")
    run = tmp_path / "shared" / "run"
    slurm = {"SLURM_NTASKS": "2", "SLURM_NTASKS_PER_NODE": "1", "SLURM_NNODES": "2", "SLURM_JOB_ID": "4242"}
    slurm |= {"SLURM_JOB_NAME": "litllm", "SLURM_NODELIST": "127.0.0.1", "MASTER_PORT": str(free_port())}
    group = [Node(tmp_path, rank) for rank in range(2)]
    for node in group:
        task = {"SLURM_PROCID": str(node.rank), "SLURM_NODEID": str(node.rank), "SLURM_LOCALID": "0"}
        args = ["-m", "litllm.cli", "pretrain", "--config", str(recipe), "--out_dir", str(run)]
        node.launch([*args, "--trainer.num_nodes", "2"], {**slurm, **task})
    wait_all(group)
    reference, _ = two_nodes
    assert_same_training(run, reference)
    assert files(run) == files(reference)


PREPARE = """
import sys
from litllm.data.text_files import TextFiles
from litllm.tokenizer import Tokenizer

data = TextFiles(sys.argv[1], cache_dir=sys.argv[2], num_workers=1)
data.connect(Tokenizer(sys.argv[3]), max_seq_length=32)
data.prepare_data()
data.setup()
print("windows", sum(1 for _ in data.train_dataset))
"""


@pytest.mark.slow  # two processes tokenizing: `make test-slow` (and CI) runs it
def test_two_nodes_preparing_one_shared_cache_at_once_build_it_once(
    tmp_path: Path, tokenizer_dir: Path, corpus: Path
) -> None:
    """Both nodes' local rank 0 runs prepare_data at the same moment into a cache on the shared filesystem: one
    tokenizes, the other waits for the lock and reads the finished cache."""
    cache = tmp_path / "shared" / "cache"
    group = [Node(tmp_path, rank) for rank in range(2)]
    for node in group:
        node.launch(["-c", PREPARE, str(corpus), str(cache), str(tokenizer_dir)], {})
    wait_all(group, timeout=120)
    logs = [node.log.read_text() for node in group]
    assert sum("tokenizing" in log for log in logs) == 1 and sum("reusing" in log for log in logs) == 1, logs
    windows = {line for log in logs for line in log.splitlines() if line.startswith("windows ")}
    assert len(windows) == 1 and windows != {"windows 0"}, logs
