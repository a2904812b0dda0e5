"""The pool of inference workers of `litllm serve`, as the HTTP side and each worker share it.

LitServe gives every worker one shared request queue: a generation goes to whichever worker takes it first. What must
reach one worker in particular (the cancellation of a generation it holds) or every worker (a model swap) goes to
that worker's own mailbox instead. Each worker writes its state (rows busy, tokens generated, ...) on a board in
shared memory, which /stats reads without a round trip, even while a worker is busy loading a model.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from typing import Any

# what each worker writes on the board, one signed 64-bit integer each
FIELDS = ("pid", "threads", "busy", "queued", "requests", "cancelled", "prompt_tokens", "completion_tokens")
ACCELERATORS = ("auto", "cpu", "cuda")


def worker_devices(accelerator: str, devices: int) -> tuple[str, list[str]]:
    """The accelerator `auto` stands for and the device of each of `devices` workers: one per GPU on CUDA, all `cpu`
    on the CPU. A ValueError names a count this machine cannot hold, before any model is loaded."""
    import torch

    if accelerator not in ACCELERATORS:
        raise ValueError(f"--accelerator {accelerator!r} is not one of {', '.join(ACCELERATORS)}")
    if devices < 1:
        raise ValueError(f"--devices {devices}: give 1 or more inference workers (each holds a copy of the model)")
    if accelerator == "auto":
        accelerator = "cuda" if torch.cuda.is_available() else "cpu"
    if accelerator == "cuda":
        found = torch.cuda.device_count()
        if devices > found:
            raise ValueError(f"--devices {devices}: this machine has {found} CUDA GPU(s); one worker per GPU at most")
        return accelerator, [f"cuda:{i}" for i in range(devices)]
    cores = usable_cores()
    if devices > cores:
        # workers beyond the cores would only take turns on them, each with its own copy of the model
        raise ValueError(f"--devices {devices}: this process may use {cores} CPU core(s); one worker per core at most")
    return accelerator, ["cpu"] * devices


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity: a container's or `taskset`'s share of the machine)."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity else os.cpu_count() or 1


def threads_per_worker(workers: int) -> int:
    """Torch threads of each of `workers` CPU workers: the threads this process has (its cores, or OMP_NUM_THREADS)
    split evenly, at least one."""
    import torch

    return max(1, torch.get_num_threads() // workers)


class WorkerPool:
    """The inference workers: a device, a mailbox, a ready flag and a row of the board each."""

    def __init__(self, devices: list[str], ready: list[Any] | None = None) -> None:
        """ready: one Event per worker, set while it has a model loaded (default: new ones)."""
        ctx = mp.get_context("spawn")  # LitServe spawns its workers: these travel to them as they start
        self.devices = list(devices)
        self.ready = ready or [ctx.Event() for _ in devices]
        self.mailboxes = [ctx.Queue() for _ in devices]
        self.board = ctx.RawArray("q", len(devices) * len(FIELDS))  # each worker writes its own row only

    def __len__(self) -> int:
        return len(self.devices)

    def write(self, index: int, **values: int) -> None:
        """Worker `index` writes some of its FIELDS."""
        row = index * len(FIELDS)
        for name, value in values.items():
            self.board[row + FIELDS.index(name)] = value

    def read(self, index: int) -> dict[str, int]:
        row = index * len(FIELDS)
        return dict(zip(FIELDS, self.board[row : row + len(FIELDS)], strict=True))

    def report(self) -> list[dict[str, Any]]:
        """Each worker's id, device, whether it has a model loaded, and what it last wrote on the board."""
        return [
            {"id": i, "device": device, "ready": self.ready[i].is_set(), **self.read(i)}
            for i, device in enumerate(self.devices)
        ]

    def all_ready(self) -> bool:
        return all(event.is_set() for event in self.ready)
