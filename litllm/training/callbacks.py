"""The callbacks and the checkpoint plugin of a training run: throughput, atomic checkpoints, and two that
`GPTModule` brings with it whatever Trainer runs it (`configure_callbacks`): the allocator mode of CPU
training and the random number generators' states for an exact resume."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import Any, Optional

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, ThroughputMonitor
from lightning.pytorch.plugins.io import TorchCheckpointIO

from litllm.cpu import frozen
from litllm.cpu.memory import keep_freed_memory
from litllm.errors import CheckpointError
from litllm.paths import atomic_path


class TokenThroughput(ThroughputMonitor):
    """Lightning's ThroughputMonitor (tokens/s, FLOPs/s, MFU) with a settable peak, plus tokens/s on the bar."""

    def __init__(self, peak_flops: Optional[float] = None) -> None:
        super().__init__(batch_size_fn=lambda b: b["input_ids"].shape[0], length_fn=lambda b: b["input_ids"].numel())
        self.peak_flops = peak_flops
        self.last: tuple[float, int] | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if self.peak_flops:
            self.available_flops = int(self.peak_flops)
            for throughput in self._throughputs.values():
                throughput.available_flops = int(self.peak_flops)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, *args
    ) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, *args)
        now, tokens = time.perf_counter(), batch["input_ids"].numel() * trainer.world_size
        if self.last is not None:
            pl_module.log("tok/s", tokens / max(now - self.last[0], 1e-9), prog_bar=True, logger=False)
        self.last = (now, tokens)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temporary file beside it, then renames: a crash never leaves a torn file.
    A checkpoint that cannot be read (damaged since) is named in a CheckpointError, not a torch traceback."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        try:
            # through a Python file, so that a failed write (a full disk) surfaces as an OSError with its errno
            with atomic_path(path) as tmp, open(tmp, "wb") as f:
                torch.save(checkpoint, f)
        except (OSError, RuntimeError) as e:
            cause = write_error(e)
            if cause is None:
                raise
            error = OSError(
                f"could not write checkpoint {str(path)!r} ({cause.strerror or cause}); earlier checkpoints are intact"
            )
            error.errno = cause.errno
            raise error from e

    def load_checkpoint(self, path: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        try:
            return super().load_checkpoint(path, *args, **kwargs)
        except (FileNotFoundError, PermissionError):
            raise
        except Exception as e:  # noqa: BLE001 - torch reports a damaged file in several ways
            raise CheckpointError(f"{str(path)!r} is truncated or corrupted: {one_line(e)}") from e


def checkpoint_damage(path: Path) -> Optional[str]:
    """What is wrong with a Lightning checkpoint (None when nothing is). A .ckpt file must be a zip (torch's format)
    whose central directory reads, whose records match their CRC-32s, and whose data.pkl loads with
    weights_only=True; it is read once, its tensors memory-mapped, not loaded. A sharded checkpoint (a folder, as
    FSDP2 saves) must hold the shards' index `.metadata` and Lightning's `meta.pt`, which are written last."""
    if Path(path).is_dir():
        missing = [name for name in (".metadata", "meta.pt") if not (Path(path) / name).is_file()]
        if missing:
            return f"an incomplete sharded checkpoint (no {' or '.join(missing)}: its save was interrupted)"
        return file_damage(Path(path) / "meta.pt", state_dict=False)
    return file_damage(path, state_dict=True)


def file_damage(path: Path, state_dict: bool) -> Optional[str]:
    """What is wrong with a file torch.save wrote (None when nothing is); `state_dict`: it must hold one."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if info.CRC == 0 and info.file_size:  # saved with torch's CRC-32s switched off: nothing to check
                    continue
                with archive.open(info) as record:  # a CRC-32 mismatch raises at the end of the record
                    while record.read(1 << 24):
                        pass
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as e:
        return f"truncated or corrupted ({one_line(e)})"
    except OSError as e:
        return f"unreadable ({e.strerror or e})"
    except Exception as e:  # noqa: BLE001 - torch.load reports a damaged pickle in several ways
        return f"truncated or corrupted ({one_line(e)})"
    if not isinstance(checkpoint, dict) or (state_dict and "state_dict" not in checkpoint):
        return "not a Lightning checkpoint (no state_dict)"
    return None


def write_error(error: BaseException) -> Optional[OSError]:
    """The OSError behind a failed write: `error` itself, or the one torch's writer raised its RuntimeError over."""
    while error is not None:
        if isinstance(error, OSError):
            return error
        error = error.__cause__ or error.__context__
    return None


def one_line(error: BaseException) -> str:
    """An exception's message on one line, at most 200 characters."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 200 else text[:197] + "..."


class KeepFreedMemory(Callback):
    """While training on the CPU, freed memory stays in the process for the tensors every step allocates again
    (`litllm.cpu.memory`); the allocator's defaults come back at the end, and the copies kept of frozen weights
    (`litllm.cpu.frozen`: as large as the weights) go."""

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if trainer.strategy.root_device.type == "cpu":
            keep_freed_memory(True)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        frozen.forget()
        keep_freed_memory(False)


class RandomStates(Callback):
    """Saves the torch, numpy and Python random number generators' states in every checkpoint and restores them on
    resume, so that a resumed run draws what the uninterrupted one would have. Each training batch also starts torch's
    generator from the run's seed and the batch's place (epoch, index): dropout then draws the same masks for a batch
    however the run got there (a resumed run makes its data loader anew, which draws from that generator first)."""

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        seed = int(os.environ.get("PL_GLOBAL_SEED", 0))
        seed = hash((seed, trainer.current_epoch, batch_idx)) % 2**63  # ints hash the same in every run
        # the generators the run draws from: torch.manual_seed seeds every accelerator's too, and each one that is not
        # running records a stack trace to seed later (~1 ms a batch on a CPU, 6% of a small model's LoRA step)
        torch.default_generator.manual_seed(seed)
        device = pl_module.device.type
        if device == "cuda":
            torch.cuda.manual_seed_all(seed)
        elif device != "cpu":
            torch.manual_seed(seed)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        # plain tensors and numbers only, so the file loads with torch.load(weights_only=True)
        checkpoint["rng_states"] = {
            "torch": torch.get_rng_state(),
            "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss),
            "python": random.getstate(),
        }

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        states = checkpoint.get("rng_states")
        if states:
            torch.set_rng_state(states["torch"])
            kind, keys, pos, has_gauss, gauss = states["numpy"]
            np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
            random.setstate(states["python"])
