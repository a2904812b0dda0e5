"""Runs on several machines: what each node must be told, and a clear end when a node cannot join or drops out.

Lightning finds the nodes of a run from its launcher: SLURM (`srun`: SLURMEnvironment reads SLURM_*), torchrun
(`--nnodes`: RANK, WORLD_SIZE, MASTER_ADDR, ...), or plain variables set on each node by hand (MASTER_ADDR and
MASTER_PORT name node 0's address, NODE_RANK this node's index). Left alone, a node whose master never answers waits
for torch.distributed's 30-minute timeout, and a node whose peer died fails deep inside a collective; here both end in
one line that says what happened and what to do.
"""

from __future__ import annotations

import os
import socket
import time

from litllm.errors import RunDirectoryError

MASTER_TIMEOUT = 120.0  # seconds a node waits for node 0 to open MASTER_PORT (LITLLM_MASTER_TIMEOUT overrides)


class NodeError(ConnectionError):
    """A node could not join the run, or the run lost a node (an OSError: the CLI prints it as one line)."""


def launcher() -> str | None:
    """The launcher that started this process, as Lightning would detect it: slurm, torchrun, or None."""
    if "SLURM_NTASKS" in os.environ and os.environ.get("SLURM_JOB_NAME") not in ("bash", "interactive"):
        return "slurm"
    if all(name in os.environ for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "GROUP_RANK")):
        return "torchrun"
    return None


def global_rank_zero() -> bool:
    """Whether this process is global rank zero, before any Trainer exists: torchrun's RANK, srun's SLURM_PROCID,
    else node and local rank (Lightning sets them for the processes it starts)."""
    if os.environ.get("RANK"):
        return os.environ["RANK"] == "0"
    if os.environ.get("SLURM_NTASKS") and os.environ.get("SLURM_PROCID"):
        return os.environ["SLURM_PROCID"] == "0"
    return os.environ.get("NODE_RANK", "0") == "0" and os.environ.get("LOCAL_RANK", "0") == "0"


def check_nodes(num_nodes: int, out_dir: str | None) -> None:
    """Before any model is built: a run on several nodes names its run folder and, without a launcher, its master and
    this node's rank; a node other than 0 waits (up to LITLLM_MASTER_TIMEOUT seconds) for the master to answer."""
    started_by = launcher()
    processes = int(os.environ.get("WORLD_SIZE" if started_by == "torchrun" else "SLURM_NTASKS", "1") or 1)
    if out_dir is None and (num_nodes > 1 or (started_by and processes > 1)):
        # each process would name its own run folder after the time it started
        what = f"{num_nodes} nodes" if num_nodes > 1 else f"{processes} processes started by {started_by}"
        raise RunDirectoryError(
            f"a run on {what} needs --out_dir: the same folder for every process, on a filesystem the nodes share"
        )
    if num_nodes <= 1 or started_by is not None:
        return  # SLURM and torchrun give every process its address and rank
    missing = [name for name in ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK") if not os.environ.get(name)]
    if missing:
        raise NodeError(
            f"--trainer.num_nodes {num_nodes} without a launcher needs {', '.join(missing)} set on each node "
            "(MASTER_ADDR:MASTER_PORT: node 0's address and a free port; NODE_RANK: 0 to num_nodes - 1), or start "
            "the nodes with torchrun --nnodes or srun"
        )
    rank = os.environ["NODE_RANK"]
    if not rank.isdigit() or int(rank) >= num_nodes:
        raise NodeError(f"NODE_RANK={rank!r} must be an integer from 0 to {num_nodes - 1} (--trainer.num_nodes)")
    if int(rank) > 0 and os.environ.get("LOCAL_RANK", "0") == "0":
        wait_for_master(os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"], master_timeout())


def master_timeout() -> float:
    value = os.environ.get("LITLLM_MASTER_TIMEOUT", str(MASTER_TIMEOUT))
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if seconds <= 0:
        raise ValueError(f"LITLLM_MASTER_TIMEOUT={value!r} must be a number of seconds > 0")
    return seconds


def wait_for_master(host: str, port: str, timeout: float) -> None:
    """Return once host:port accepts a connection; NodeError naming MASTER_ADDR:MASTER_PORT after `timeout` s."""
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise NodeError(f"MASTER_PORT={port!r} must be a port number from 1 to 65535")
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, int(port)), timeout=min(5.0, timeout)):
                return
        except OSError as e:
            if time.monotonic() >= deadline:
                raise NodeError(
                    f"node {os.environ.get('NODE_RANK')} found no master at MASTER_ADDR:MASTER_PORT = {host}:{port} "
                    f"within {timeout:g} s ({e.strerror or e}); start node 0 with the same MASTER_ADDR and "
                    "MASTER_PORT, check that this machine reaches it, or raise LITLLM_MASTER_TIMEOUT"
                ) from None
        time.sleep(0.5)


def lost_node(error: BaseException) -> NodeError | None:
    """The run's error when `error` means another process of a distributed run went away, else None."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return None
    signs = ("Connection closed by peer", "Connection reset by peer", "Broken pipe", "Socket Timeout", "timed out")
    sign = next((s for s in signs if s in str(error)), None)
    if sign is None or not isinstance(error, RuntimeError):  # gloo's and NCCL's errors are RuntimeErrors
        return None
    return NodeError(
        f"rank {dist.get_rank()} of {dist.get_world_size()} lost contact with the others ({sign}): a node or process "
        "of the run died; restart every node with --resume auto to continue from the last checkpoint"
    )
