"""litllm.cpu.memory: while training on the CPU, freed memory is kept and reused without fresh page faults; afterwards
glibc's defaults come back."""

from __future__ import annotations

import subprocess
import sys

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from litllm.config import Config
from litllm.cpu import memory
from litllm.training.module import GPTModule

pytestmark = pytest.mark.skipif(memory.glibc() is None, reason="the allocator settings are glibc's")


# run in a fresh interpreter: in a long-lived one, earlier tests leave free heap that a large tensor can reuse anyway
FAULTS = """
import resource, torch
from litllm.cpu import memory

def step():  # large tensors of a few sizes made and dropped, as a training step does
    a, b = torch.ones(16 * 2**20), torch.ones(8 * 2**20)
    c = a[: 8 * 2**20] + b
    del a
    (c.sum() + torch.ones(24 * 2**20).sum()).item()

def faults():  # minor page faults over 3 steps, after 4 warm-up steps
    for _ in range(4):
        step()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(3):
        step()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

default = faults()
memory.keep_freed_memory(True)
kept = faults()
memory.keep_freed_memory(False)
print(default, kept)
"""


def test_kept_memory_is_reused_without_page_faults() -> None:
    out = subprocess.run([sys.executable, "-c", FAULTS], capture_output=True, text=True, check=True).stdout
    default, kept = map(int, out.split())
    assert default > 3 * 3 * 16384  # glibc maps blocks this large afresh each time: 64 MiB is 16384 pages of 4 KiB
    assert kept < default / 4  # 0 once the heap's holes have settled, which can take a few more steps


def test_training_on_the_cpu_keeps_freed_memory_then_restores_the_defaults() -> None:
    seen = []

    class Probe(L.Callback):
        def on_train_batch_start(self, *args) -> None:
            seen.append(memory.keeping_freed_memory())

    config = Config(name="memory-test", block_size=16, vocab_size=32, n_layer=1, n_embd=16, n_head=2)
    batch = {"input_ids": torch.randint(0, 32, (2, 16)), "labels": torch.randint(0, 32, (2, 16))}
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[Probe()],
    )
    trainer.fit(GPTModule(model_config=config.to_dict()), train_dataloaders=DataLoader([batch, batch], batch_size=None))
    assert seen == [True, True]
    assert not memory.keeping_freed_memory()
