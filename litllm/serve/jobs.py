"""Training jobs of the control API: `litllm pretrain | finetune` run as a subprocess, one at a time.

Each job has its own run directory, `<runs_root>/<job id>` or the `output_dir` a request gives (inside the runs
root), which holds, besides the run's own files (checkpoints/, logs/version_N/metrics.csv, final/, see
litllm/training/runs.py):
    job_config.yaml   the resolved recipe the job runs (written before the process starts)
    job.log           the process's stdout and stderr
    train_config.json the request as given, for a job started in nanoGPT's form (dataset, model_type, ...)
    job.json          the job's record (id, command, pid, state, returncode, ...), rewritten on each change of state

The records let a restarted server answer for the jobs of the one before it: it reads them from the runs root when
it starts. A job whose process is gone (it ended, or was stopped when the server shut down) is reported as the
record says, or `interrupted` and resumable when it died without a word; one whose process survived (the server was
killed; jobs run in their own session) is `running` again and can be followed and stopped. A pid counts as the job's
only while the process's start time is the recorded one (pids are reused).

A job's status reports the last step and training loss of logs/version_N/metrics.csv (Lightning counts steps
from 0, and its CSVLogger writes the file every 100 steps and when the run ends).

This module runs in the HTTP process, so it imports neither torch nor lightning.
A request can name any importable class in its config (that is what a recipe is): whoever may start jobs may
run code on the server. The path checks here keep a job's files inside its roots; the API key guards the rest.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import io
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from litllm.paths import read_json_object, read_yaml_mapping, write_json, write_yaml

COMMANDS = ("pretrain", "finetune")
CONFIG_FILE = "job_config.yaml"
LOG_FILE = "job.log"
TRAIN_CONFIG = "train_config.json"
RECORD_FILE = "job.json"
ENDED = ("succeeded", "failed", "stopped", "interrupted")
RESUMABLE = ("failed", "stopped", "interrupted")
LOG_TAIL_LINES = 20
LOG_TAIL_BYTES = 64 * 1024


class JobConflict(Exception):
    """A job is already running (the server runs one at a time), or its output folder holds another run."""


class JobNotFound(KeyError):
    """No job has this id."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "job not found"  # KeyError's own str() adds quotes


@dataclass
class Job:
    """A training process (started here, or by an earlier server and found by its record) and its progress."""

    id: str
    command: str
    run_dir: Path
    config_path: Path
    process: subprocess.Popen | None  # None: a process an earlier server started (not a child of this one)
    pid: int
    started: float
    pid_start: str | None = None  # the process's start time, to tell it from a later process given the same pid
    ended: float | None = None
    returncode: int | None = None
    final_state: str | None = None  # one of ENDED, once the process has ended
    stop_requested: bool = False
    shutting_down: bool = False
    resumed: int = 0
    progress: dict[str, Any] = field(default_factory=lambda: {"step": None, "loss": None})

    def state(self) -> str:
        if self.final_state is not None:
            return self.final_state
        if self.process is not None:
            returncode = self.process.poll()
            if returncode is None:
                return "running"
            self.returncode = returncode
            finished = (self.run_dir / "final" / "model.safetensors").is_file()
            # exit 0 is a finished run unless a stop reached it first: Lightning ends a SIGTERMed fit cleanly too
            if returncode == 0 and (not self.stop_requested or (self.shutting_down and finished)):
                self.end("succeeded")
            else:  # a server that shuts down stops its jobs: they are interrupted, to be resumed by the next one
                self.end("interrupted" if self.shutting_down else "stopped" if self.stop_requested else "failed")
        elif self.pid_start is not None and process_start(self.pid) == self.pid_start:
            return "running"
        else:
            # it ended while no server watched it: its exit status is lost; an exported model says it finished,
            # and its log's last write says about when
            with contextlib.suppress(OSError):
                self.ended = (self.run_dir / LOG_FILE).stat().st_mtime
            self.end("succeeded" if (self.run_dir / "final" / "model.safetensors").is_file() else "interrupted")
        return self.final_state

    def end(self, state: str) -> None:
        self.final_state, self.ended = state, self.ended or time.time()
        self.save()

    def record(self) -> dict[str, Any]:
        """The job as its job.json holds it."""
        return {
            **summary(self),
            "pid_start": self.pid_start,
            "state": self.final_state or "running",
            "returncode": self.returncode,
            "ended": self.ended,
            "resumed": self.resumed,
        }

    def save(self) -> None:
        write_json(self.run_dir / RECORD_FILE, self.record())

    @classmethod
    def load(cls, path: Path) -> Job:
        """The job a job.json describes; a ValueError when it is not one."""
        record = read_json_object(path)
        try:
            state = record["state"]
            if state not in ("running", *ENDED):
                raise ValueError(f"unknown state {state!r}")
            return cls(
                id=str(record["id"]),
                command=str(record["command"]),
                run_dir=path.parent,
                config_path=path.parent / CONFIG_FILE,
                process=None,
                pid=int(record["pid"]),
                started=float(record["started"]),
                pid_start=record.get("pid_start"),
                ended=record.get("ended"),
                returncode=record.get("returncode"),
                final_state=None if state == "running" else state,
                resumed=int(record.get("resumed") or 0),
            )
        except (KeyError, TypeError) as e:
            raise ValueError(f"{str(path)!r} is not a job record: {e!r}") from e


class TrainingJobs:
    """Starts, watches and stops training jobs; at most one runs at a time."""

    def __init__(self, runs_root: Path, recipes_root: Path, python: str = sys.executable, grace_s: float = 10.0):
        self.runs_root, self.recipes_root = Path(runs_root).resolve(), Path(recipes_root).resolve()
        self.python, self.grace_s = python, grace_s
        self.jobs: dict[str, Job] = {job.id: job for job in find_records(self.runs_root)}
        self.lock = threading.Lock()  # the server may call from several threads

    def start(
        self,
        command: str,
        recipe: str | None = None,
        config: dict | None = None,
        overrides: dict | None = None,
        output_dir: str | None = None,
        request: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Start `litllm <command>` on a recipe name or an inline config, plus dotted-key overrides.

        The job always writes into its own run directory, `output_dir` (inside the runs root, empty or new) or a
        new one named by its id: an `out_dir` in the config or overrides is replaced. `request`, when given, is
        written into it as train_config.json.
        """
        if command not in COMMANDS:
            raise ValueError(f"unknown training command {command!r}; accepted: {', '.join(COMMANDS)}")
        resolved = self.resolve_config(recipe, config, overrides)
        run_dir = self.output_dir(output_dir) if output_dir is not None else None
        with self.lock:
            running = [j.id for j in self.jobs.values() if j.state() == "running"]
            if running:
                raise JobConflict(f"job {running[0]!r} is still running; stop it first or wait for it to end")
            job_id, run_dir = self.new_run_dir(command, run_dir)
            resolved["out_dir"] = str(run_dir)
            if request is not None:
                write_json(run_dir / TRAIN_CONFIG, request)
            config_path = run_dir / CONFIG_FILE
            write_yaml(config_path, resolved)
            process = self.launch(command, config_path, run_dir / LOG_FILE)
            job = Job(job_id, command, run_dir, config_path, process, process.pid, time.time())
            job.pid_start = process_start(process.pid)
            job.save()
            self.jobs[job_id] = job
        return {**summary(job), "state": job.state()}

    def resume(self, job_id: str) -> dict[str, Any]:
        """Start an ended job again in its run directory with `--resume auto` (from its newest checkpoint)."""
        with self.lock:
            job = self.get(job_id)
            state = job.state()
            if state not in RESUMABLE:
                raise JobConflict(f"job {job_id!r} is {state}: only a job that is {', '.join(RESUMABLE)} resumes")
            running = [j.id for j in self.jobs.values() if j.state() == "running"]
            if running:
                raise JobConflict(f"job {running[0]!r} is still running; stop it first or wait for it to end")
            process = self.launch(job.command, job.config_path, job.run_dir / LOG_FILE, resume=True)
            resumed = Job(job.id, job.command, job.run_dir, job.config_path, process, process.pid, time.time())
            resumed.pid_start, resumed.resumed = process_start(process.pid), job.resumed + 1
            resumed.save()
            self.jobs[job_id] = resumed
        return self.status(job_id)

    def status(self, job_id: str) -> dict[str, Any]:
        """The job's state, latest step and training loss, and the last lines of its log."""
        job = self.get(job_id)
        state = job.state()
        progress = read_progress(job.run_dir)
        # a read that caught Lightning rewriting the file may show fewer rows: never report a step going back
        if progress["step"] is not None and progress["step"] >= (job.progress["step"] or 0):
            job.progress = progress
        answer = {
            **summary(job),
            "state": state,
            "returncode": job.returncode,
            **job.progress,
            "last_lines": tail_lines(job.run_dir / LOG_FILE),
            "ended": job.ended,
            "resumed": job.resumed,
            "resumable": state in RESUMABLE,
        }
        if state in RESUMABLE:
            answer["resume"] = {
                "route": f"POST /api/train/{job.id}/resume",
                "command": f"litllm {job.command} --config {job.config_path} --out_dir {job.run_dir} --resume auto",
            }
        return answer

    def stop(self, job_id: str) -> dict[str, Any]:
        """Interrupt the job (Lightning stops at the end of a step), then kill its process group if it lingers."""
        job = self.get(job_id)
        if job.state() == "running":
            job.stop_requested = True
            if job.process is not None:
                terminate_group(job.process, self.grace_s)
            else:
                terminate_adopted(job.pid, job.pid_start, self.grace_s)
                job.end("interrupted" if job.shutting_down else "stopped")
            job.state()
        return self.status(job_id)

    def list(self) -> list[dict[str, Any]]:
        """Every job of the runs root (this server's and the earlier ones'), oldest first."""
        return [self.status(job_id) for job_id in sorted(self.jobs, key=lambda i: self.jobs[i].started)]

    def shutdown(self) -> None:
        """Stop every running job (the server calls this as it exits); their records say `interrupted`."""
        for job in list(self.jobs.values()):
            if job.state() == "running":
                job.shutting_down = True
                self.stop(job.id)

    def get(self, job_id: str) -> Job:
        if job_id not in self.jobs:
            raise JobNotFound(f"no training job {job_id!r}; known jobs: {', '.join(self.jobs) or 'none'}")
        return self.jobs[job_id]

    def resolve_config(self, recipe: str | None, config: dict | None, overrides: dict | None) -> dict[str, Any]:
        """The recipe's (or the inline config's) content with the overrides applied."""
        if (recipe is None) == (config is None):
            raise ValueError("give exactly one of recipe (a name under the recipes folder) or config (a dict)")
        if config is not None and not isinstance(config, dict):
            raise ValueError(f"config must be a mapping of recipe keys, not {type(config).__name__}")
        resolved = load_recipe(self.find_recipe(recipe)) if recipe is not None else copy.deepcopy(config)
        for key, value in (overrides or {}).items():
            set_dotted(resolved, key, value)
        if resolved.get("resume") not in (None, "auto"):
            resolved["resume"] = str(self.find_resume(resolved["resume"]))
        return resolved

    def find_recipe(self, name: str) -> Path:
        """The recipe file `name` (like `pretrain/debug`) stands for, inside the recipes folder."""
        relative = Path(name if name.endswith((".yaml", ".yml")) else f"{name}.yaml")
        path = (self.recipes_root / relative).resolve()
        if relative.is_absolute() or ".." in relative.parts or not path.is_relative_to(self.recipes_root):
            raise ValueError(f"recipe {name!r} is outside the recipes folder; name one like pretrain/debug")
        if not path.is_file():
            known = sorted(
                str(p.relative_to(self.recipes_root).with_suffix("")) for p in self.recipes_root.rglob("*.yaml")
            )
            raise ValueError(f"unknown recipe {name!r}; available: {', '.join(known) or 'none'}")
        return path

    def find_resume(self, resume: Any) -> Path:
        """The checkpoint a job continues from: another job's, inside the runs folder (relative paths start there)."""
        path = (self.runs_root / str(resume)).resolve()
        if not path.is_relative_to(self.runs_root):
            raise ValueError(f"resume {resume!r} is outside the runs folder {str(self.runs_root)!r}")
        return path

    def output_dir(self, output_dir: str) -> Path:
        """The run directory a request's `output_dir` names inside the runs root.

        A relative one is read from the server's working directory when it lands inside the runs root there (so
        nanoGPT's `out/NAME` is `<runs root>/NAME` when the runs root is ./out), else from the runs root."""
        given = Path(output_dir).expanduser()
        if given.is_absolute():
            path = given.resolve()
        else:
            from_cwd = given.resolve()
            path = from_cwd if from_cwd.is_relative_to(self.runs_root) else (self.runs_root / given).resolve()
        if path == self.runs_root or not path.is_relative_to(self.runs_root):
            raise ValueError(
                f"output_dir {output_dir!r} is outside the runs folder {str(self.runs_root)!r}: give a folder inside it"
            )
        return path

    def new_run_dir(self, command: str, run_dir: Path | None = None) -> tuple[str, Path]:
        """A new job id and its run directory: `run_dir` (which must hold no files yet) or `<runs root>/<id>`."""
        self.runs_root.mkdir(parents=True, exist_ok=True)
        while True:
            job_id = f"{command}-{datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"
            if job_id in self.jobs:
                continue
            if run_dir is not None:
                if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
                    raise JobConflict(
                        f"output_dir {str(run_dir)!r} already holds files (another run?); choose a new folder"
                    )
                run_dir.mkdir(parents=True, exist_ok=True)
                return job_id, run_dir
            try:
                (self.runs_root / job_id).mkdir()
                return job_id, self.runs_root / job_id
            except FileExistsError:
                continue

    def launch(self, command: str, config_path: Path, log_path: Path, resume: bool = False) -> subprocess.Popen:
        """`litllm <command> --config <config_path>` (`--resume auto` to continue), its output into `log_path`."""
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("LITLLM_RUN_DIR", None)  # a run directory pinned for another run's ranks must not leak in
        args = [self.python, "-m", "litllm.cli", command, "--config", str(config_path)]
        with open(log_path, "ab" if resume else "wb") as log:  # a resumed job's log goes on after the earlier one
            return subprocess.Popen(
                args + (["--resume", "auto"] if resume else []),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # its own process group: stop() reaches the data-loader workers too
            )


# ---- nanoGPT's training request as a litllm recipe ------------------------------------------------------------

# from scratch: nanoGPT's README's CPU model (--n_layer=4 --n_head=4 --n_embd=128 --block_size=64), GPT-2's design
SCRATCH = {"n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 64}
SCRATCH_VOCAB = 4096  # the BPE trained on a text dataset for a from-scratch run (nanoGPT .bin data bring their own)
BATCH_SIZE, MAX_ITERS = 4, 100
LEARNING_RATE = {"scratch": 1e-3, "finetune": 3e-5}  # nanoGPT's shakespeare_char and finetune_shakespeare
VAL_BATCHES = 20  # batches per validation (nanoGPT's eval_iters, shortened for CPUs)
BUILTIN_CORPORA = {
    "stdlib": {"class_path": "litllm.data.text_files.PythonStdlib", "init_args": {"max_bytes": 4_000_000}}
}


@dataclass
class Dataset:
    """What a request's `dataset` names: the recipe's data section, and the tokenizer its ids are in (a nanoGPT
    .bin folder's; None when the run's tokenizer is the model's own or one trained on the text)."""

    data: dict[str, Any]
    tokenizer_dir: str | None = None


def resolve_dataset(name: str, roots: list[Path], batch_size: int | None, finetune: bool) -> Dataset:
    """The data a training request names, first found: a built-in corpus (stdlib); a nanoGPT prepared folder
    `<root>/data/<name>` for each root in order; a URL litdata streams; a path (absolute, or under a root) to a
    nanoGPT folder (train.bin), a litdata folder (index.json) or text files (a folder, a file or a glob).

    A ValueError lists what exists when nothing matches."""
    from litllm.checkpoint.nanogpt import is_plain_name
    from litllm.data.nanogpt import find_nanogpt_dataset

    args = {"batch_size": batch_size or BATCH_SIZE}
    if name in BUILTIN_CORPORA:
        corpus = BUILTIN_CORPORA[name]
        return Dataset({**corpus, "init_args": {**corpus["init_args"], **args}})
    found = find_nanogpt_dataset(name, roots) if is_plain_name(name) else None
    if found is not None:
        return nanogpt_dataset(found, args, finetune)
    if "://" in name:
        return Dataset({"class_path": "litllm.data.litdata.LitData", "init_args": {"path": name, **args}})
    given = Path(name).expanduser()
    path = next((p for p in ([given] if given.is_absolute() else [r / given for r in roots]) if p.exists()), None)
    if path is not None and (path / "train.bin").is_file():
        return nanogpt_dataset(path, args, finetune)
    if path is not None and ((path / "index.json").is_file() or (path / "train" / "index.json").is_file()):
        return Dataset({"class_path": "litllm.data.litdata.LitData", "init_args": {"path": str(path), **args}})
    if path is not None or any(c in name for c in "*?["):
        text = str(path) if path is not None else str(given if given.is_absolute() else roots[0] / given)
        return Dataset({"class_path": "litllm.data.text_files.TextFiles", "init_args": {"path": text, **args}})
    raise ValueError(
        f"unknown dataset {name!r}; nanoGPT datasets here: {', '.join(nanogpt_datasets(roots)) or 'none'} "
        f"(prepared folders data/<name>/train.bin under {', '.join(str(r) for r in roots)}); built-in corpora: "
        f"{', '.join(BUILTIN_CORPORA)}; or a folder of text files, a text file, a glob or a litdata folder"
    )


def nanogpt_dataset(path: Path, args: dict[str, Any], finetune: bool) -> Dataset:
    """A nanoGPT folder's data section; its tokenizer is its meta.pkl's (char-level), else GPT-2's for a run from
    scratch, or the finetuned model's own (whose vocabulary the ids must fit; the data module checks)."""
    from litllm.data.nanogpt import NanoGPTBins

    data = {"class_path": "litllm.data.nanogpt.NanoGPTBins", "init_args": {"path": str(path), **args}}
    if finetune and not (path / "meta.pkl").is_file():
        return Dataset(data)
    return Dataset(data, str(NanoGPTBins(path).tokenizer_dir()))


def nanogpt_datasets(roots: list[Path]) -> list[str]:
    """The names of the prepared nanoGPT folders under `roots` (`<root>/data/<name>/train.bin`)."""
    return sorted({p.parent.name for root in roots for p in root.glob("data/*/train.bin")})


def train_recipe(fields: dict[str, Any], dataset: Dataset, init_from: str | None) -> tuple[str, dict[str, Any]]:
    """The command and recipe of a nanoGPT-form request: finetune `init_from` (model_type), else pretrain the small
    GPT-2-style model of SCRATCH (n_layer, n_head, n_embd, block_size from the request override it)."""
    max_iters = fields.get("max_iters") or MAX_ITERS
    eval_interval = fields.get("eval_interval") or max_iters
    lr = fields.get("learning_rate") or LEARNING_RATE["finetune" if init_from else "scratch"]
    model: dict[str, Any] = {
        "warmup_steps": min(100, max_iters // 10),
        "optimizer": {"class_path": "torch.optim.AdamW", "init_args": {"lr": lr, "betas": [0.9, 0.95]}},
    }
    if dataset.tokenizer_dir is not None:
        model["tokenizer_dir"] = dataset.tokenizer_dir
    if init_from is not None:
        model["init_from"] = init_from
        if fields.get("block_size"):
            model["max_seq_length"] = fields["block_size"]
    else:
        shape = {k: fields.get(k) or SCRATCH[k] for k in SCRATCH}
        vocab = vocab_size(dataset.tokenizer_dir) if dataset.tokenizer_dir is not None else SCRATCH_VOCAB
        model["model_config"] = {"name": "gpt2", "hf_repo": None, **shape, "vocab_size": vocab}
        model["max_seq_length"] = shape["block_size"]
    trainer = {
        "max_steps": max_iters,
        "val_check_interval": eval_interval,
        "check_val_every_n_epoch": None,
        "limit_val_batches": VAL_BATCHES,
        "log_every_n_steps": min(10, max_iters),
        "accelerator": "auto",
        "devices": 1,
    }
    recipe = {"model": model, "data": dataset.data, "trainer": trainer, "checkpoint_every": eval_interval}
    return ("finetune" if init_from is not None else "pretrain"), recipe


def vocab_size(tokenizer_dir: str) -> int:
    from litllm.tokenizer import Tokenizer

    return Tokenizer(tokenizer_dir).vocab_size


def summary(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "command": job.command,
        "pid": job.pid,
        "run_dir": str(job.run_dir),
        "config_path": str(job.config_path),
        "started": job.started,
    }


def load_recipe(path: Path) -> dict[str, Any]:
    return read_yaml_mapping(path, "mapping of recipe keys")


def set_dotted(config: dict[str, Any], key: str, value: Any) -> None:
    """Set `trainer.max_steps`-style keys inside the nested config."""
    *parents, last = str(key).split(".")
    node = config
    for i, part in enumerate(parents):
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ValueError(f"override {key!r}: {'.'.join(parents[: i + 1])!r} is a value, not a section")
    node[last] = value


def terminate_group(process: subprocess.Popen, grace_s: float) -> None:
    """SIGINT the job, then SIGTERM and SIGKILL its process group, each after a wait; return once it has ended."""
    # SIGINT to the main process alone: Lightning stops its workers itself, which would each print a traceback
    steps = ((os.kill, signal.SIGINT, grace_s), (os.killpg, signal.SIGTERM, 5.0), (os.killpg, signal.SIGKILL, 5.0))
    for send, sig, wait_s in steps:
        try:
            send(process.pid, sig)
            process.wait(wait_s)
            break
        except ProcessLookupError:
            break
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(ProcessLookupError):  # workers that outlived the main process
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def find_records(runs_root: Path) -> list[Job]:
    """The jobs whose records lie in the runs root (a run directory's own folders are not searched)."""
    jobs = []
    for folder, dirs, files in os.walk(runs_root):
        if RECORD_FILE in files:
            dirs.clear()
            try:
                jobs.append(Job.load(Path(folder) / RECORD_FILE))
            except (OSError, ValueError) as e:
                print(f"litllm serve: skipping a damaged job record: {e}", file=sys.stderr)
        dirs[:] = [d for d in dirs if not d.startswith(".")]
    return jobs


def process_start(pid: int) -> str | None:
    """When the process `pid` started (in clock ticks since boot, from /proc), None when there is no such process.

    Where /proc is missing, psutil's start time if it is installed, else "alive" for any live process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()  # the command name in parentheses may hold spaces
        return None if fields[0] == "Z" else fields[19]  # a zombie has ended; field 22 of stat is starttime
    except FileNotFoundError:
        if Path("/proc/self/stat").exists():
            return None
    except (OSError, ValueError, IndexError):
        return None
    try:
        import psutil  # noqa: PLC0415 - optional: a test dependency, not a runtime one
    except ImportError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return "alive"
    try:
        return str(psutil.Process(pid).create_time())
    except psutil.Error:
        return None


def terminate_adopted(pid: int, pid_start: str | None, grace_s: float) -> None:
    """terminate_group for a job that is not a child of this process: signal it while it is still the job."""
    steps = ((os.kill, signal.SIGINT, grace_s), (os.killpg, signal.SIGTERM, 5.0), (os.killpg, signal.SIGKILL, 5.0))
    for send, sig, wait_s in steps:
        if process_start(pid) != pid_start:
            break
        with contextlib.suppress(ProcessLookupError):
            send(pid, sig)
        deadline = time.monotonic() + wait_s
        while process_start(pid) == pid_start and time.monotonic() < deadline:
            time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError, PermissionError):  # workers that outlived the main process
        os.killpg(pid, signal.SIGKILL)


def read_progress(run_dir: Path) -> dict[str, Any]:
    """The last logged step and training loss in the newest metrics.csv (which Lightning may be rewriting)."""
    files = sorted(run_dir.glob("logs/version_*/metrics.csv"), key=version_number)
    if not files:
        return {"step": None, "loss": None}
    try:
        text = files[-1].read_text()
    except OSError:
        return {"step": None, "loss": None}
    complete = text[: text.rfind("\n") + 1]  # a row still being written is left out
    step, loss = None, None
    for row in csv.DictReader(io.StringIO(complete)):
        try:
            loss, step = float(row["train_loss"]), int(float(row["step"]))
        except (KeyError, TypeError, ValueError):
            continue
    return {"step": step, "loss": loss}


def version_number(path: Path) -> int:
    match = re.fullmatch(r"version_(\d+)", path.parent.name)
    return int(match.group(1)) if match else -1


def tail_lines(path: Path, n: int = LOG_TAIL_LINES) -> list[str]:
    """The last `n` lines of a log as a terminal shows them (a progress bar's `\\r` redraws collapsed)."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - LOG_TAIL_BYTES))
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    lines = text.split("\n")
    if size > LOG_TAIL_BYTES:
        lines = lines[1:]  # the first one is cut
    if lines and lines[-1] == "":
        lines.pop()
    return [next((s for s in reversed(line.split("\r")) if s.strip()), "") for line in lines[-n:]]
