"""The report card of a training run, as nanochat's report.md: what ran, on what, how fast, and how well.

A run directory (`litllm.training.runs`) gains:
    run_info.json   each start (a resume is one): command line, time, git state, versions, CPU, GPUs (`record_start`)
    run_stats.json  parameters, tokens, seconds, tokens/s, MFU, peak memory, final metrics, samples (`ReportCard`)
    loss.png        train loss against step, with the validation loss as points
    report.md       rebuilt from files alone (`write_report`, `litllm report RUN`): a section per phase of the chain
                    that led to the run (model.init_from back through earlier runs), then a summary table
"""

from __future__ import annotations

import csv
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import time
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.trainer.states import TrainerFn

from litllm.checkpoint.run_folders import PHASES, find_run, phase_runs, started
from litllm.checkpoint.sources import locate
from litllm.cpu import isa
from litllm.inference.engine import Request, Scheduler
from litllm.inference.options import SamplingParams
from litllm.paths import atomic_path, atomic_write_text, write_json
from litllm.tokenizer import Tokenizer

INFO, STATS, REPORT, PLOT = "run_info.json", "run_stats.json", "report.md", "loss.png"
# the phase a command's runs belong to (run_folders.PHASES the other way round)
PHASE_OF = {command: phase for phase, command in PHASES.items()}
# prompts for the greedy samples: the set the tokenizer encodes in the fewest tokens per character is the one that
# resembles what it was trained on (a tokenizer trained on code splits English prose into many small pieces)
PROMPTS = {
    "text": ("The capital of France is", "The chemical symbol of gold is", "If yesterday was Friday, then tomorrow is"),
    "code": ("def main():\n", "import os\n", "class Point:\n"),
}
SAMPLE_TOKENS = 32
MAX_CHAIN = 16  # runs followed back through init_from: guards against a loop of folders


# ---- run_info.json: each start of the run ------------------------------------------------------------------------


def record_start(run_dir: Path, command: str, argv: list[str]) -> Path:
    """Append this start (command line, time, git state, versions, hardware) to <run>/run_info.json."""
    path = Path(run_dir) / INFO
    starts = read_json(path).get("starts", [])
    start = {
        "command": command,
        "argv": list(argv),
        "command_line": command_line(argv),
        "time": datetime.now().astimezone().isoformat(timespec="seconds"),
        "cwd": os.getcwd(),
        "git": git_states(),
        "environment": environment(),
    }
    write_json(path, {"starts": [*(s for s in starts if isinstance(s, dict)), start]})
    return path


def command_line(argv: list[str]) -> str:
    """The command as typed: `litllm ...` also when it ran as `python -m litllm.cli` (argv[0] is then cli.py)."""
    if argv and Path(argv[0]).name in ("litllm", "cli.py", "__main__.py"):
        return shlex.join(["litllm", *argv[1:]])
    return shlex.join(argv)


def git_states() -> dict[str, Optional[dict[str, Any]]]:
    """The git state of the working directory's repository and of the one litllm is imported from (None: no git)."""
    return {"cwd": git_state(Path.cwd()), "litllm": git_state(Path(__file__).resolve().parent)}


def git_state(folder: Path) -> Optional[dict[str, Any]]:
    """Commit, branch and whether tracked files are modified, of the repository holding `folder`; None outside one."""

    def git(*args: str) -> Optional[str]:
        return quiet_output(["git", "-C", str(folder), *args])

    top = git("rev-parse", "--show-toplevel")
    if top is None:
        return None
    status = git("status", "--porcelain", "--untracked-files=no")
    return {
        "repo": top,
        "commit": git("rev-parse", "HEAD"),  # None in a repository with no commit yet
        "branch": git("rev-parse", "--abbrev-ref", "HEAD"),
        "dirty": None if status is None else bool(status),
    }


def quiet_output(command: list[str]) -> Optional[str]:
    """A command's output, or None when it is missing, fails or takes over 10 s; never prints."""
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}  # `git status` must not take the index lock from a user's git
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10, env=env, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def environment() -> dict[str, Any]:
    """Versions of Python, torch, lightning and litllm; the CPU, its kernels' ISA, the GPUs and the thread count."""
    import litllm

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": L.__version__,
        "litllm": litllm.__version__,
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "isa": cpu_isa(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "gpus": gpu_names(),
    }


def gpu_names() -> list[str]:
    """The GPUs' names, found without initialising CUDA in this process (a fork-based strategy forbids that)."""
    from lightning.fabric.accelerators.cuda import num_cuda_devices

    count = num_cuda_devices()  # NVML-based: no CUDA context
    if count == 0:
        return []
    if torch.cuda.is_initialized():
        return [torch.cuda.get_device_name(i) for i in range(count)]
    names = (quiet_output(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"]) or "").splitlines()
    return names if len(names) == count else ["CUDA device"] * count


def cpu_name() -> str:
    """The processor's model name (/proc/cpuinfo on Linux), else what the platform module knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_isa() -> Optional[str]:
    try:
        return isa.active()
    except ValueError:  # a bad LITLLM_CPU_ISA: the kernels say so when they are built; the start goes on
        return None


# ---- run_stats.json: the callback -------------------------------------------------------------------------------


class ReportCard(Callback):
    """Times the run, counts its parameters and tokens, tracks peak memory, takes a few greedy samples, and at the
    end (of fit, or of `evaluate`'s validation) writes <run>/run_stats.json and report.md on global rank zero.
    Tokens and seconds add up over resumes (they travel in the checkpoints). A failure warns once; the run goes on."""

    def __init__(self, run_dir: Optional[Path] = None) -> None:
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.start = time.perf_counter()
        self.tokens = 0  # this session's
        self.earlier = {"tokens": 0, "seconds": 0.0}  # the sessions before a resume
        self.stats: dict[str, Any] = {}
        self.warned = False

    def state_dict(self) -> dict[str, Any]:
        return {"tokens": self.total_tokens(), "seconds": self.total_seconds()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.earlier = {"tokens": int(state_dict.get("tokens", 0)), "seconds": float(state_dict.get("seconds", 0.0))}

    def total_tokens(self) -> int:
        return self.earlier["tokens"] + self.tokens

    def total_seconds(self) -> float:
        return self.earlier["seconds"] + time.perf_counter() - self.start

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.start, self.tokens = time.perf_counter(), 0

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, *_
    ) -> None:
        self.tokens += batch_tokens(batch) * trainer.world_size

    def on_validation_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, *_: Any, **__: Any
    ) -> None:
        if trainer.state.fn == TrainerFn.VALIDATING:  # `evaluate`: the tokens it read
            self.tokens += batch_tokens(batch) * trainer.world_size

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.guarded(self.collect, trainer, pl_module)  # here the model is still on its device; at fit end on CPU

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.guarded(self.write, trainer, pl_module)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == TrainerFn.VALIDATING and not trainer.sanity_checking:
            self.guarded(self.collect, trainer, pl_module)
            self.guarded(self.write, trainer, pl_module)

    def guarded(self, step: Any, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        try:
            step(trainer, pl_module)
        except Exception as e:  # noqa: BLE001 - the report must never cost a finished run
            if not self.warned:
                warnings.warn(f"litllm: could not write the run's report card: {type(e).__name__}: {e}", stacklevel=2)
                self.warned = True

    def collect(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        gpt = getattr(pl_module, "gpt", None) or getattr(pl_module, "model", None)
        seconds, tokens = self.total_seconds(), self.total_tokens()
        self.stats = {
            "stage": "fit" if trainer.state.fn == TrainerFn.FITTING else "validate",
            "parameters": sum(p.numel() for p in gpt.parameters()) if gpt is not None else None,
            "tokens": tokens,
            "seconds": seconds,
            "tokens_per_second": tokens / seconds if seconds > 0 else None,
            "global_step": trainer.global_step,
            "world_size": trainer.world_size,
            "precision": str(trainer.precision),
            "peak_memory_bytes": peak_memory_bytes(trainer.strategy.root_device),
        }
        self.stats["samples"] = self.samples(gpt, pl_module, trainer)

    def samples(self, gpt: Any, pl_module: L.LightningModule, trainer: L.Trainer) -> list[dict[str, str]]:
        if gpt is None or any(type(p).__name__ == "DTensor" for p in gpt.parameters()):
            return []  # a sharded model generates only with every rank taking part
        tokenizer, run_tokenizer = getattr(pl_module, "tokenizer", None), self.folder(trainer) / "tokenizer"
        if tokenizer is None and run_tokenizer.is_dir():
            tokenizer = Tokenizer(run_tokenizer)
        return greedy_samples(gpt, tokenizer) if tokenizer is not None else []

    def write(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.stats:
            self.collect(trainer, pl_module)
        for logger in trainer.loggers:  # the last rows reach metrics.csv only when the Trainer tears down
            logger.save()
        run = self.folder(trainer)
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if getattr(v, "numel", lambda: 1)() == 1}
        mfu = last_value(read_metrics(run), "train/device/mfu")
        write_json(run / STATS, {**self.stats, "mfu": mfu, "metrics": metrics})
        write_report(run)

    def folder(self, trainer: L.Trainer) -> Path:
        return self.run_dir or Path(trainer.default_root_dir)


def batch_tokens(batch: Any) -> int:
    ids = batch.get("input_ids") if isinstance(batch, dict) else None
    return int(ids.numel()) if isinstance(ids, torch.Tensor) else 0


def peak_memory_bytes(device: torch.device) -> int:
    """The CUDA allocator's peak on a GPU, else the process's peak resident set size."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss * (1 if sys.platform == "darwin" else 1024)  # macOS reports bytes, Linux KiB


def sample_prompts(tokenizer: Any) -> tuple[str, ...]:
    """The prompt set the tokenizer encodes most compactly (tokens per character)."""

    def cost(prompts: tuple[str, ...]) -> float:
        return sum(len(tokenizer.encode(p, bos=False)) for p in prompts) / sum(len(p) for p in prompts)

    return min(PROMPTS.values(), key=cost)


def greedy_samples(gpt: Any, tokenizer: Any, max_new_tokens: int = SAMPLE_TOKENS) -> list[dict[str, str]]:
    """Greedy continuations of three prompts, in eval mode (the model's mode comes back after)."""
    stop = [t for t in (tokenizer.eos_id,) if t is not None]
    training, out = gpt.training, []
    gpt.eval()
    try:
        for prompt in sample_prompts(tokenizer):
            ids = tokenizer.encode(prompt)
            room = gpt.config.block_size - len(ids)
            if room < 1:
                continue
            # prepack=False: packing would replace the trained weights, which the export still has to read
            scheduler = Scheduler(gpt, tokenizer, max_batch_size=1, prepack=False)
            request = Request(ids, min(max_new_tokens, room), SamplingParams(temperature=0.0), stop_ids=stop)
            (completion,) = scheduler.submit(request)
            scheduler.run()
            new = [t for t in completion.token_ids if t not in stop]
            out.append({"prompt": prompt, "completion": tokenizer.decode(new)})
    finally:
        gpt.train(training)
    return out


# ---- reading a run's files -------------------------------------------------------------------------------------


def read_json(path: Path) -> dict[str, Any]:
    """The object a JSON file holds; {} when it is missing or unreadable."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def read_recipe(run: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load((run / "hyperparameters.yaml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def read_metrics(run: Path) -> list[dict[str, float]]:
    """The rows of every logs/version_*/metrics.csv, oldest version first, numbers only."""
    rows: list[dict[str, float]] = []
    versions = sorted(run.glob("logs/version_*/metrics.csv"), key=lambda p: int(p.parent.name[8:] or 0))
    for path in versions:
        try:
            with open(path, newline="", encoding="utf-8") as f:
                rows.extend({k: float(v) for k, v in row.items() if k and number(v)} for row in csv.DictReader(f))
        except (OSError, UnicodeDecodeError, csv.Error):
            continue
    return rows


def number(text: Any) -> bool:
    try:
        float(text)
    except (TypeError, ValueError):
        return False
    return True


def last_value(rows: list[dict[str, float]], key: str) -> Optional[float]:
    return next((row[key] for row in reversed(rows) if key in row), None)


def by_step(rows: list[dict[str, float]], key: str) -> dict[int, float]:
    """Step -> value of `key`; a later version's value wins (a resumed run logs the steps after its checkpoint anew)."""
    points = {int(row["step"]): row[key] for row in rows if key in row and "step" in row}
    return dict(sorted(points.items()))


def is_run(folder: Path) -> bool:
    """A training run's folder (an exported final/ holds hyperparameters.yaml too, but none of the rest)."""
    marks = ("logs", "checkpoints", INFO, STATS, "final", "results.json")
    return (folder / "hyperparameters.yaml").is_file() and any((folder / m).exists() for m in marks)


def starts(run: Path) -> list[dict[str, Any]]:
    return [s for s in read_json(run / INFO).get("starts", []) if isinstance(s, dict)]


def earlier_run(run: Path) -> Optional[Path]:
    """The run whose model this run started from (model.init_from), when that run is on disk."""
    init = (read_recipe(run).get("model") or {}).get("init_from")
    if not isinstance(init, str) or not init:
        return None
    if init in PHASES:  # the newest run of that phase that began before this one
        return next((r.resolve() for r in phase_runs(init) if r.resolve() != run and started(r) <= started(run)), None)
    path = Path(init).expanduser()
    if not path.is_absolute():  # relative to where the run was started
        path = Path(next((s["cwd"] for s in starts(run) if s.get("cwd")), os.getcwd())) / path
    if not path.exists():  # a name: of the local model registry (`litllm models add`), the catalog, the Hub
        try:
            path = locate(init, paths=False)
        except Exception:  # noqa: BLE001 - a name that leads nowhere on this machine ends the chain
            return None
    if not isinstance(path, Path):
        return None
    for folder in (path, path.parent, path.parent.parent):  # final/, a file in final/ or checkpoints/
        if folder.is_dir() and is_run(folder):
            return folder.resolve()
    return None


def run_chain(run_dir: Path) -> list[Path]:
    """The runs that led to `run_dir` through model.init_from, earliest first, ending with `run_dir`."""
    chain = [Path(run_dir).resolve()]
    while len(chain) < MAX_CHAIN and (earlier := earlier_run(chain[-1])) is not None and earlier not in chain:
        chain.append(earlier)
    return chain[::-1]


def phase_of(run: Path) -> str:
    """base, mid, sft, rl (or the command, such as evaluate) of the run: its start's command, else its parent folder."""
    command = next((s.get("command") for s in reversed(starts(run)) if s.get("command")), None) or run.parent.name
    return PHASE_OF.get(command, command)


def task_results(run: Path) -> tuple[dict[str, dict[str, Any]], Optional[float]]:
    """The tasks scored for a run and its CORE score: eval/results.json, else `evaluate`'s results.json."""
    for path in (run / "eval" / "results.json", run / "results.json"):
        data = read_json(path)
        if isinstance(data.get("tasks"), dict) and data["tasks"]:
            tasks = {k: v for k, v in data["tasks"].items() if isinstance(v, dict)}
            return tasks, data.get("core") if isinstance(data.get("core"), (int, float)) else None
    return {}, None


def final_metrics(run: Path, rows: list[dict[str, float]]) -> dict[str, float]:
    """The last validation metrics: the logs' val_* values, over which `evaluate`'s results.json is laid."""
    found = {}
    for row in rows:
        found.update({k: v for k, v in row.items() if k.startswith("val_")})
    stats = read_json(run / STATS).get("metrics") or {}
    found = {**{k: v for k, v in stats.items() if k.startswith("val_") and number(v)}, **found}
    found.update({k: v for k, v in read_json(run / "results.json").items() if k.startswith("val_") and number(v)})
    return found


# ---- report.md ---------------------------------------------------------------------------------------------------


def write_report(run_dir: Path) -> Path:
    """Rebuild <run>/report.md (and each run's loss.png) from the files of the run and of the runs before it."""
    run_dir = Path(run_dir).resolve()
    sections = [run_section(run, run_dir) for run in run_chain(run_dir)]
    lines = [f"# Report card: {run_dir.name}", "", f"Built {datetime.now().astimezone():%Y-%m-%d %H:%M:%S %Z}.", ""]
    lines += [line for section, _ in sections for line in section] + summary_table([row for _, row in sections])
    atomic_write_text(run_dir / REPORT, "\n".join(lines).rstrip() + "\n")
    return run_dir / REPORT


def refresh_report(run_dir: Path) -> Optional[Path]:
    """`write_report` for the end of a run: a failure is a warning, never an exception."""
    try:
        return write_report(run_dir)
    except Exception as e:  # noqa: BLE001 - the report must never cost a finished run
        warnings.warn(f"litllm: could not write {str(Path(run_dir) / REPORT)!r}: {type(e).__name__}: {e}", stacklevel=2)
        return None


def run_section(run: Path, report_dir: Path) -> tuple[list[str], dict[str, Any]]:
    """One phase's markdown, and its row of the summary table."""
    phase, rows, stats = phase_of(run), read_metrics(run), read_json(run / STATS)
    lines = [f"## {phase}: {run.parent.name}/{run.name}", "", f"Folder: `{run}`", ""]
    lines += command_lines(run) + recipe_lines(run) + environment_lines(run) + stats_lines(stats, rows)
    lines += plot_lines(run, rows, report_dir)
    metrics = final_metrics(run, rows)
    if metrics:
        lines += ["### Final validation", "", "| metric | value |", "| --- | --- |"]
        lines += [f"| {k} | {v:.4f} |" for k, v in metrics.items()] + [""]
    tasks, core = task_results(run)
    lines += task_lines(tasks, core) + sample_lines(stats.get("samples") or [])
    train = by_step(rows, "train_loss")
    row = {
        "phase": phase,
        "run": run.name,
        "train_loss": train[max(train)] if train else None,
        "val_loss": metrics.get("val_loss"),
        "core": core,
        "tasks": {name: r.get("accuracy") for name, r in tasks.items()},
    }
    return lines, row


def command_lines(run: Path) -> list[str]:
    runs = starts(run)
    if not runs:
        return []
    lines = ["### Command", ""]
    for s in runs:
        lines += [f"{s.get('time', '?')}, in `{s.get('cwd', '?')}`:", "", "```", s.get("command_line", ""), "```", ""]
    return lines


def recipe_lines(run: Path) -> list[str]:
    try:
        text = (run / "hyperparameters.yaml").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return []
    fence = ["<details><summary>Resolved recipe (hyperparameters.yaml)</summary>", "", "```yaml", text.rstrip(), "```"]
    return [*fence, "", "</details>", ""]


def environment_lines(run: Path) -> list[str]:
    if not (runs := starts(run)):
        return []
    last = runs[-1]
    env, lines = last.get("environment") or {}, ["### Environment", "", "| | |", "| --- | --- |"]
    for name, state in (last.get("git") or {}).items():
        lines.append(f"| git ({name}) | {git_text(state)} |")
    names = {"python": "Python", "torch": "torch", "lightning": "lightning", "litllm": "litllm", "platform": "platform"}
    lines += [f"| {label} | {env[key]} |" for key, label in names.items() if env.get(key)]
    if env.get("cpu"):
        lines.append(f"| CPU | {env['cpu']} ({env.get('cpu_count')} cores, kernels: {env.get('isa')}) |")
    if env.get("threads"):
        lines.append(f"| threads | {env['threads']} |")
    lines.append(f"| GPUs | {', '.join(env.get('gpus') or []) or 'none'} |")
    return [*lines, ""]


def git_text(state: Any) -> str:
    if not isinstance(state, dict):
        return "not a git checkout"
    commit = (state.get("commit") or "no commit")[:12]
    dirty = {True: ", modified", False: ", clean"}.get(state.get("dirty"), "")
    return f"`{commit}` on {state.get('branch') or '?'}{dirty} ({state.get('repo')})"


def stats_lines(stats: dict[str, Any], rows: list[dict[str, float]]) -> list[str]:
    mfu = stats.get("mfu") if stats.get("mfu") is not None else last_value(rows, "train/device/mfu")
    tokens_label = "tokens evaluated" if stats.get("stage") == "validate" else "tokens trained"
    cells = [
        ("parameters", count(stats.get("parameters"))),
        (tokens_label, count(stats.get("tokens"))),
        ("optimizer steps", count(stats.get("global_step"))),
        ("time", duration(stats.get("seconds"))),
        ("tokens/s", count(stats.get("tokens_per_second"))),
        ("MFU", f"{mfu:.2%}" if isinstance(mfu, (int, float)) else None),
        ("peak memory", size(stats.get("peak_memory_bytes"))),
        ("precision", stats.get("precision")),
    ]
    cells = [(k, v) for k, v in cells if v is not None]
    if not cells:
        return []
    return ["### Run", "", "| | |", "| --- | --- |", *(f"| {k} | {v} |" for k, v in cells), ""]


def count(value: Any) -> Optional[str]:
    return f"{value:,.0f}" if isinstance(value, (int, float)) else None


def duration(seconds: Any) -> Optional[str]:
    if not isinstance(seconds, (int, float)):
        return None
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{seconds:.1f} s ({hours}h {minutes:02d}m {secs:02d}s)" if minutes or hours else f"{seconds:.1f} s"


def size(nbytes: Any) -> Optional[str]:
    if not isinstance(nbytes, (int, float)):
        return None
    unit, scale = next(((u, s) for u, s in (("GiB", 2**30), ("MiB", 2**20)) if nbytes >= s), ("KiB", 2**10))
    return f"{nbytes / scale:.2f} {unit}"


def plot_lines(run: Path, rows: list[dict[str, float]], report_dir: Path) -> list[str]:
    train, val = by_step(rows, "train_loss"), by_step(rows, "val_loss")
    if not train and not val:
        return []
    try:
        plot_loss(run / PLOT, train, val, title=f"{phase_of(run)}: {run.name}")
    except ImportError:
        return ["Loss curve: not drawn (matplotlib is not installed: `pip install matplotlib`).", ""]
    except OSError as e:
        return [f"Loss curve: not drawn ({e.strerror or e}).", ""]
    return ["### Loss", "", f"![loss]({Path(os.path.relpath(run / PLOT, report_dir)).as_posix()})", ""]


def plot_loss(path: Path, train: dict[int, float], val: dict[int, float], title: str) -> None:
    """train loss against step as a line, validation loss as points, written to `path` as a PNG (atomically)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure  # a Figure of its own: no pyplot state, no GUI

    figure = Figure(figsize=(7, 4), dpi=100)
    axes = figure.subplots()
    if train:
        axes.plot(list(train), list(train.values()), label="train loss", linewidth=1)
    if val:
        axes.plot(list(val), list(val.values()), "o", label="val loss")
    axes.set(xlabel="step", ylabel="loss", title=title)
    axes.grid(alpha=0.3)
    axes.legend()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")


def task_lines(tasks: dict[str, dict[str, Any]], core: Optional[float]) -> list[str]:
    if not tasks:
        return []
    lines = ["### Evaluation", "", "| task | accuracy | centered | count |", "| --- | --- | --- | --- |"]
    for name, r in tasks.items():
        lines.append(f"| {name} | {fixed(r.get('accuracy'))} | {fixed(r.get('centered'))} | {r.get('count', '')} |")
    return [*lines, "", f"CORE: {fixed(core)}", ""]


def fixed(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "-"


def sample_lines(samples: list[Any]) -> list[str]:
    lines = ["### Samples (greedy)", ""]
    for s in samples:
        if isinstance(s, dict):
            text = f"{s.get('prompt', '')}{s.get('completion', '')}"
            lines += ["```", re.sub(r"```", "ʼʼʼ", text), "```", ""]
    return lines if len(lines) > 2 else []


def summary_table(rows: list[dict[str, Any]]) -> list[str]:
    names = list(dict.fromkeys(name for row in rows for name in row["tasks"]))
    header = ["phase", "run", "train loss", "val loss", "CORE", *names]
    lines = ["## Summary", "", "| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for row in rows:
        cells = [row["phase"], row["run"], fixed(row["train_loss"]), fixed(row["val_loss"]), fixed(row["core"])]
        cells += [fixed(row["tasks"].get(name)) for name in names]
        lines.append("| " + " | ".join(cells) + " |")
    return [*lines, ""]


def resolve_run(source: str) -> Path:
    """A run directory, or base|mid|sft|rl: the newest run of that phase (`find_run`)."""
    if source in PHASES:
        return find_run(source)
    path = Path(source).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"run directory {source!r} does not exist; give a run directory or base|mid|sft|rl")
    if not is_run(path):
        raise ValueError(
            f"{source!r} is not a training run's directory (no hyperparameters.yaml beside logs/, checkpoints/ or "
            "run_info.json); give a run directory or base|mid|sft|rl"
        )
    return path.resolve()


__all__ = ["ReportCard", "read_metrics", "record_start", "refresh_report", "resolve_run", "run_chain", "write_report"]
