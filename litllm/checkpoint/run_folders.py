"""The folders training runs leave behind, found by the phase that made them (nanochat's `base`, `mid`, `sft`, `rl`).

A run lives in `<runs>/<command>/<name>-<YYYYmmdd-HHMMSS>/` (`litllm.training.runs`), with `<runs>` = $LITLLM_RUNS_DIR
or `./out`. A phase is the command that made its runs:

    base  `litllm pretrain`   <runs>/pretrain/
    mid   midtraining         <runs>/midtrain/   (the folder a midtraining command writes to)
    sft   `litllm finetune`   <runs>/finetune/
    rl    reinforcement       <runs>/rl/         (the folder an RL command writes to)

A run holds `final/` (its exported inference checkpoint, written when training ends) and `checkpoints/step-N.ckpt`
(Lightning checkpoints). The newest run is the one whose name's time stamp is latest (a folder without a stamp
counts by its modification time). Standard library only: `sources` resolves `sft` to a folder without torch.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

from litllm.checkpoint.layout import ADAPTER_CONFIG, checkpoint_kind
from litllm.paths import runs_dir

PHASES = {"base": "pretrain", "mid": "midtrain", "sft": "finetune", "rl": "rl"}
STAMP = re.compile(r"-(\d{8}-\d{6})$")  # resolve_run_dir's `<name>-%Y%m%d-%H%M%S`
MADE_BY = {"base": "`litllm pretrain`", "mid": "midtraining", "sft": "`litllm finetune`", "rl": "RL training"}
STEP_CHECKPOINT = re.compile(r"step-(\d+)(?:-v\d+)?\.ckpt")  # ModelCheckpoint's step-{step:07d}[-vN].ckpt


def phase_folder(source: str) -> Path:
    """The folder that holds the runs of a phase; a ValueError lists the phases for any other `source`."""
    if source not in PHASES:
        raise ValueError(f"unknown model source {source!r}; accepted: {'|'.join(PHASES)}")
    return runs_dir() / PHASES[source]


def phase_runs(source: str) -> list[Path]:
    """The run folders of a phase, newest first."""
    folder = phase_folder(source)
    runs = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")] if folder.is_dir() else []
    return sorted(runs, key=lambda p: (started(p), p.name), reverse=True)


def started(run: Path) -> float:
    """When a run started: the time stamp in its name, else its folder's modification time (seconds since 1970)."""
    match = STAMP.search(run.name)
    if match:
        return datetime.strptime(match.group(1), "%Y%m%d-%H%M%S").timestamp()
    return run.stat().st_mtime


def step_checkpoints(run: Path) -> dict[int, Path]:
    """Step -> the Lightning checkpoint a run saved at that step (the newest version when a step was saved twice)."""
    found = {}
    for path in sorted((run / "checkpoints").glob("step-*.ckpt"), key=lambda p: p.stat().st_mtime):
        match = STEP_CHECKPOINT.fullmatch(path.name)
        if match:
            found[int(match.group(1))] = path
    return found


def final_checkpoint(run: Path) -> Path | None:
    """The run's exported inference checkpoint (a LoRA run's: its adapter folder), when training has finished
    writing it."""
    final = run / "final"
    return final if checkpoint_kind(final) is not None or (final / ADAPTER_CONFIG).is_file() else None


def find_run(source: str, model_tag: str | None = None, step: int | None = None, final: bool = False) -> Path:
    """The newest run of a phase that holds a checkpoint: `final/` when `final`, the `step` one when given, else either.

    `model_tag` picks runs by name: a run folder's whole name (`pythia-14m-20260101-120000`) or its model name
    (`pythia-14m`, the newest such run). A FileNotFoundError names every place looked at.
    """
    folder = phase_folder(source)
    runs = phase_runs(source)
    if model_tag is not None:
        exact = [r for r in runs if r.name == model_tag]
        runs = exact or [r for r in runs if STAMP.sub("", r.name) == model_tag]
        if not runs:
            tags = ", ".join(r.name for r in phase_runs(source)) or "none"
            raise FileNotFoundError(
                f"no {source!r} run named {model_tag!r} in {str(folder.resolve())!r}; the runs there: {tags}"
            )
    for run in runs:
        if holds(run, final, step):
            return run
    wanted = "final/" if final else "final/ or checkpoints/step-*.ckpt" if step is None else f"a step-{step} checkpoint"
    looked = [str(r.resolve()) for r in runs] or [f"{str(folder.resolve())} ({missing(folder)})"]
    raise FileNotFoundError(
        f"no {source!r} model checkpoint ({wanted}): looked in {', '.join(looked)}; the runs of "
        f"{MADE_BY[source]} go to <runs>/{PHASES[source]}/, with <runs> = $LITLLM_RUNS_DIR or ./out"
    )


def holds(run: Path, final: bool, step: int | None) -> bool:
    """Whether a run has `final/` (when `final`), the checkpoint of `step` (when given), else either."""
    if final:
        return final_checkpoint(run) is not None
    if step is not None:
        return step in step_checkpoints(run)
    return final_checkpoint(run) is not None or bool(step_checkpoints(run))


def missing(folder: Path) -> str:
    return "no such folder" if not folder.exists() else "no runs"


def phase_checkpoint(source: str, model_tag: str | None = None) -> Path:
    """The `final/` checkpoint folder of the newest run of a phase (or of the run `model_tag` names) that has one."""
    return find_run(source, model_tag, final=True) / "final"


__all__ = ["PHASES", "find_run", "final_checkpoint", "phase_checkpoint", "phase_folder", "phase_runs"]
