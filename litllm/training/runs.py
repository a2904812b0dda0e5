"""Training runs: `litllm pretrain | finetune | evaluate` on LightningCLI, run directories, resume and export.

A run directory holds:
    checkpoints/      Lightning .ckpt files (model, optimizer, scheduler, data-loader position, RNG states)
    tokenizer/        the tokenizer the run trains with
    hyperparameters.yaml  the resolved recipe
    logs/version_N/   the CSV logger's metrics.csv (a new version each time the run is started or resumed)
    final/            the exported inference checkpoint (model.safetensors, model_config.yaml, tokenizer files)
"""

from __future__ import annotations

import json
import logging
import os
import sys
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

import lightning as L
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import CSVLogger

from litllm.checkpoint.layout import copy_tokenizer_files
from litllm.checkpoint.run_folders import step_checkpoints
from litllm.data.base import DataModule
from litllm.errors import CheckpointError, RunDirectoryError
from litllm.paths import atomic_write_text, recipes_dir, runs_dir, tokenizer_path
from litllm.tasks.results import build_tasks
from litllm.tokenizer import Tokenizer
from litllm.training.callbacks import AtomicCheckpointIO, TokenThroughput, checkpoint_damage
from litllm.training.export import ExportFinal
from litllm.training.module import GPTModule
from litllm.training.nodes import check_nodes, global_rank_zero, lost_node
from litllm.training.report import ReportCard, record_start, refresh_report
from litllm.training.rl import RLModule

COMMANDS = ("pretrain", "midtrain", "finetune", "evaluate", "rl")
DESCRIPTIONS = {
    "evaluate": "Loss, perplexity and bits per byte of a checkpoint on a recipe's data (this form), plus --tasks. "
    "To score a model on tasks alone: litllm evaluate SOURCE --tasks arc_easy,gsm8k (litllm evaluate SOURCE --help)."
}
# library warnings every run would print, about things litllm already handles
QUIET = (
    # lightning's pytree helper on torch >= 2.10: a deprecation inside lightning, nothing a recipe can change
    (FutureWarning, r".*isinstance\(treespec, LeafSpec\)"),
    # litllm's iterable datasets (LitData's, NanoGPTBins) give each worker its own share, so their length is right
    (UserWarning, r"Your `IterableDataset` has `__len__` defined"),
    # litllm runs LightningCLI with the recipe's arguments (its `args=`) from the `litllm` command's own argv
    (Warning, r"LightningCLI's args parameter is intended to run from within Python"),
    # the model summary counts parameters in float32 under a mixed precision: its size column says so already
    (Warning, r"Precision .* is not supported by the model summary"),
    # a new run never starts in a folder with checkpoints (resolve_run_dir refuses): only a resume finds them there
    (Warning, r"Checkpoint directory .* exists and is not empty"),
    # the validation metrics are torchmetrics, whose compute() already gathers every rank's sums
    (Warning, r"It is recommended to use `self.log\('(val|test)_"),
)
# Lightning's lines every run would print that tell a litllm user nothing about their run
QUIET_INFO = (
    "💡 Tip:",
    # a module that brings its own variant of a callback the run adds (RLModule's throughput) replaces it, as meant
    "The following callbacks returned in `LightningModule.configure_callbacks` will override",
)


class DropInfo(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(QUIET_INFO)


def quiet_library_warnings() -> None:
    """Silence the library warnings and tips every run would print; any other warning still shows."""
    for category, message in QUIET:
        warnings.filterwarnings("ignore", message=message, category=category)
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, DropInfo) for f in rank_zero.filters):
        rank_zero.addFilter(DropInfo())


def cpu_supports_bf16() -> bool:
    """Whether bf16-mixed training is the faster precision on this CPU (`isa.bfloat16_training`)."""
    from litllm.cpu import isa

    return isa.bfloat16_training()


def default_precision() -> str:
    """bf16-mixed where the device multiplies bf16 in hardware (CPUs with avx512_bf16 or AMX, Ampere+ GPUs), else
    32-true."""
    if torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "32-true"
    return "bf16-mixed" if cpu_supports_bf16() else "32-true"


# the options of a run besides the module, data and Trainer: (name, type, default, help)
RUN_OPTIONS = (
    ("out_dir", Optional[str], None, "Run directory (default: <$LITLLM_RUNS_DIR or out>/<command>/<model>-<time>)."),
    ("resume", Optional[str], None, "'auto' (the latest checkpoint in out_dir) or a .ckpt path."),
    ("checkpoint_every", int, 100, "Save a checkpoint every N optimizer steps (0: at the end only)."),
    ("logger_kind", str, "csv", "csv, tensorboard or csv,tensorboard (ignored when trainer.logger is set)."),
    ("peak_flops", Optional[float], None, "Peak FLOP/s of one device in the training dtype, for MFU."),
    ("tasks", Optional[str], None, "Tasks to score the model on at the end (arc_easy,mmlu,...; core; chat)."),
    ("limit", Optional[int], None, "With --tasks: at most this many examples a task."),
    ("num_fewshot", int, 0, "With --tasks: solved examples shown before each question."),
    ("scoring", str, "auto", "With --tasks: letters | continuation | loglikelihood | auto (see litllm evaluate)."),
)


class LitLLMCLI(LightningCLI):
    """LightningCLI plus litllm's run options; the Trainer it builds writes into the run directory."""

    command = "pretrain"

    def add_arguments_to_parser(self, parser) -> None:
        for name, kind, default, text in RUN_OPTIONS:
            parser.add_argument(f"--{name}", type=kind, default=default, help=text)

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        cfg, module, data = self.config, self.model, self.datamodule
        if self.command in ("midtrain", "finetune", "evaluate", "rl") and module.init_from is None:
            raise ValueError(f"litllm {self.command} needs --model.init_from: the checkpoint to start from")
        trainer_config = {**self._get(self.config_init, "trainer", default={}), **kwargs}
        check_nodes(trainer_config.get("num_nodes") or 1, cfg.out_dir)
        check_qlora_strategy(module, trainer_config.get("strategy"))
        self.run_dir = resolve_run_dir(self.command, cfg.out_dir, module, cfg.resume)
        self.ckpt_path = resolve_resume(self.run_dir, cfg.resume)
        if global_rank_zero():
            record_start(self.run_dir, self.command, sys.argv)
        self.tokenizer_dir = resolve_tokenizer(module, data, self.run_dir)
        tokenizer = Tokenizer(self.tokenizer_dir)
        data.connect(tokenizer, max_seq_length=module.max_seq_length)
        module.connect_tokenizer(tokenizer)

        check_precision(trainer_config.get("precision"))
        trainer_config["default_root_dir"] = str(self.run_dir)
        if not trainer_config.get("plugins"):
            trainer_config["plugins"] = [AtomicCheckpointIO()]
        if not trainer_config.get("logger"):
            trainer_config["logger"] = make_loggers(cfg.logger_kind, self.run_dir)
        extra = [self._get(self.config_init, c) for c in self._parser(self.subcommand).callback_keys]
        extra += [LearningRateMonitor(logging_interval="step"), TokenThroughput(cfg.peak_flops), ReportCard()]
        if self.command != "evaluate":
            every = cfg.checkpoint_every or None
            extra.append(
                ModelCheckpoint(
                    dirpath=self.run_dir / "checkpoints",
                    filename="step-{step:07d}",
                    every_n_train_steps=every,
                    save_last=True,
                    save_top_k=2,
                    monitor="step",
                    mode="max",
                    auto_insert_metric_name=False,
                )
            )
            extra.append(ExportFinal(self.run_dir, self.tokenizer_dir))
        return self._instantiate_trainer(trainer_config, extra)


def make_loggers(kind: str, run_dir: Path) -> list:
    from lightning.pytorch.loggers import TensorBoardLogger

    loggers = []
    for name in (k.strip() for k in kind.split(",")):
        # logs/version_N: a resumed run starts a new version instead of rewriting the earlier metrics
        if name == "csv":
            # written every 10 steps (Lightning's default is 100), so that progress shows while a run goes
            loggers.append(CSVLogger(save_dir=run_dir, name="logs", flush_logs_every_n_steps=10))
        elif name == "tensorboard":
            loggers.append(TensorBoardLogger(save_dir=run_dir, name="tensorboard"))
        else:
            raise ValueError(f"unknown logger_kind {name!r}; accepted: csv, tensorboard")
    return loggers


def check_qlora_strategy(module: GPTModule, strategy: Any) -> None:
    """QLoRA's 4-bit base weights (bitsandbytes) cannot be sharded: refuse FSDP before any process starts."""
    from lightning.pytorch.strategies import FSDPStrategy, ModelParallelStrategy

    if module.lora is None or module.lora.quantize is None:
        return
    if isinstance(strategy, (FSDPStrategy, ModelParallelStrategy)) or str(strategy).startswith("fsdp"):
        name = strategy if isinstance(strategy, str) else type(strategy).__name__
        raise ValueError(
            f"QLoRA (lora.quantize={module.lora.quantize}) does not combine with FSDP sharding (strategy {name}): "
            "bitsandbytes' 4-bit weights cannot be sharded; train it on one device, or use LoRA without quantize"
        )


def check_precision(precision: Any) -> None:
    if precision is None:
        return
    if str(precision) in ("16", "16-true", "16-mixed", "fp16", "half") and not torch.cuda.is_available():
        raise ValueError(
            f"precision={precision!r} is float16, which CPUs only emulate (about 80x slower) and which gives NaN "
            "losses here; use bf16-mixed, bf16-true or 32-true"
        )


def resolve_run_dir(command: str, out_dir: Optional[str], module: GPTModule, resume: Optional[str]) -> Path:
    """The run directory; a new run never reuses one that already holds a run's files."""
    pinned = os.environ.get("LITLLM_RUN_DIR")  # set by rank 0 so that the ranks it launches agree
    if pinned and os.environ.get("LOCAL_RANK", "0") != "0":
        return Path(pinned)
    if out_dir is None and resume not in (None, "auto"):
        run_dir = Path(resume).resolve().parent.parent
    elif out_dir is None:
        if resume == "auto":
            raise RunDirectoryError("--resume auto needs --out_dir: the run directory to continue")
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        run_dir = runs_dir() / command / f"{module.config.name or 'model'}-{stamp}"
    else:
        run_dir = Path(out_dir)
    # rank 0 checks (the other nodes would find the files it has begun to write) and writes the run's files
    if resume is None and global_rank_zero() and holds_a_run(run_dir):
        raise RunDirectoryError(
            f"{str(run_dir)!r} already holds a run; pass --resume auto to continue it, or choose another --out_dir"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    os.environ["LITLLM_RUN_DIR"] = str(run_dir.resolve())
    return run_dir.resolve()


def holds_a_run(run_dir: Path) -> bool:
    markers = ("checkpoints", "final", "logs", "hyperparameters.yaml", "results.json")
    return run_dir.is_dir() and any((run_dir / m).exists() for m in markers)


def resolve_resume(run_dir: Path, resume: Optional[str]) -> Optional[str]:
    """The checkpoint to resume from: `auto` takes the newest one that reads, warning about each damaged one."""
    if resume is None:
        return None
    if resume == "auto":
        latest = latest_checkpoint(run_dir / "checkpoints")
        if latest is not None:
            print(f"resuming from {latest}")
            return str(latest)
        print(f"no readable checkpoint in {run_dir / 'checkpoints'}: starting from the beginning")
        return None
    path = Path(resume)
    if not path.exists():
        raise RunDirectoryError(f"resume checkpoint {resume!r} does not exist")
    if damage := checkpoint_damage(path):
        raise CheckpointError(f"resume checkpoint {resume!r} is {damage}; pass an earlier one or --resume auto")
    return str(path)


def latest_checkpoint(folder: Path) -> Optional[Path]:
    """The highest-step checkpoint in `folder` that reads (a run killed between two saves may have a stale
    last.ckpt); a damaged one is skipped with a warning that names it, and the one before it is taken."""
    candidates = [path for _, path in sorted(step_checkpoints(folder.parent).items(), reverse=True)]
    if (folder / "last.ckpt").exists():
        candidates.append(folder / "last.ckpt")
    for path in candidates:
        damage = checkpoint_damage(path)
        if damage is None:
            return path
        print(f"litllm: warning: skipping checkpoint {str(path)!r}: it is {damage}", file=sys.stderr)
    return None


def resolve_tokenizer(module: GPTModule, data: DataModule, run_dir: Path) -> Path:
    """The run's tokenizer, copied into <run>/tokenizer: the module's, init_from's, the data's own (a nanoGPT dataset's
    meta.pkl), $LITLLM_TOKENIZER_PATH's, or one trained on the data."""
    target = run_dir / "tokenizer"
    if (target / "tokenizer.json").is_file() or (target / "tokenizer.model").is_file():
        return target
    source = tokenizer_source(module, data)
    if not global_rank_zero():  # another node: rank 0 copies it into the run folder
        return Path(source)
    Tokenizer(source).save(target)
    copy_tokenizer_files(Path(source), target)  # the chat format (prompt_style.yaml, chat template) travels too
    return target


def tokenizer_source(module: GPTModule, data: DataModule) -> Path | str:
    """Where the run's tokenizer comes from (training one on the data if nothing gives one)."""
    if module.tokenizer_dir is not None:
        from litllm.checkpoint.sources import resolve_tokenizer_dir

        return resolve_tokenizer_dir(module.tokenizer_dir)  # a folder, or a Hub repo id like LLM.load's
    if module.init_from is not None:
        return module.init_tokenizer_folder()
    if callable(getattr(data, "tokenizer_dir", None)):  # data that comes tokenized already
        return data.tokenizer_dir()
    if tokenizer_path() is not None:
        return tokenizer_path()
    from litllm.training.tokenizer_training import tokenizer_for_corpus

    return tokenizer_for_corpus(data, vocab_size=module.config.vocab_size)


def shipped_recipes(args: list[str]) -> list[str]:
    """`--config config_hub/sft/speedrun-cpu.yaml` (or `sft/speedrun-cpu`) names litllm's own recipe when no such
    file is here: an installed litllm has no config_hub folder beside the user's files."""
    out = list(args)
    for i, arg in enumerate(out):
        value = (
            out[i + 1] if arg == "--config" and i + 1 < len(out) else arg[9:] if arg.startswith("--config=") else None
        )
        if value is None or Path(value).exists():
            continue
        name = value.removeprefix("config_hub/")
        for candidate in (recipes_dir() / name, recipes_dir() / f"{name}.yaml"):
            if candidate.is_file():
                out[i + 1 if arg == "--config" else i] = (
                    str(candidate) if arg == "--config" else f"--config={candidate}"
                )
                break
    return out


def run_training(command: str, args: list[str]) -> Optional[dict[str, float]]:
    """Parse a recipe and flags with LightningCLI, then fit (pretrain, finetune) or validate (evaluate)."""
    quiet_library_warnings()
    cli_class = type(f"{command.title()}CLI", (LitLLMCLI,), {"command": command})
    cli = cli_class(
        RLModule if command == "rl" else GPTModule,
        DataModule,
        subclass_mode_model=False,
        subclass_mode_data=True,
        run=False,
        args=shipped_recipes(args),
        save_config_callback=None,
        trainer_defaults={"precision": default_precision(), "logger": False},
        parser_kwargs={"prog": f"litllm {command}", "exit_on_error": False, "description": DESCRIPTIONS.get(command)},
        auto_configure_optimizers=False,
        seed_everything_default=42,  # the same recipe gives the same run
    )
    trainer, module, data = cli.trainer, cli.model, cli.datamodule
    cfg = cli.config
    tasks = build_tasks(cfg.tasks, cfg.limit) if cfg.tasks else {}  # a bad task name fails before any training
    if cfg.num_fewshot < 0:
        raise ValueError(f"--num_fewshot must be an integer >= 0, got {cfg.num_fewshot}")
    if cfg.scoring not in ("auto", "letters", "continuation", "loglikelihood"):
        raise ValueError(f"--scoring must be auto, letters, continuation or loglikelihood, got {cfg.scoring!r}")
    if trainer.is_global_zero:
        atomic_write_text(cli.run_dir / "hyperparameters.yaml", cli.parser.dump(cli.config, skip_none=False))
    if command == "evaluate":
        results = trainer.validate(module, datamodule=data)
        metrics: dict[str, Any] = {k: float(v) for k, v in (results[0] if results else {}).items()}
        if trainer.is_global_zero:
            if tasks:
                metrics.update(score_tasks(module, cli.tokenizer_dir, tasks, cfg, cli.run_dir))
            atomic_write_text(cli.run_dir / "results.json", json.dumps(metrics, indent=2))
            print(json.dumps(metrics, indent=2))
        return metrics
    try:
        trainer.fit(module, datamodule=data, ckpt_path=cli.ckpt_path)
    except Exception as error:
        if (lost := lost_node(error)) is None:
            raise
        raise lost from error
    if tasks and trainer.is_global_zero:
        score_tasks(module, cli.tokenizer_dir, tasks, cfg, cli.run_dir)
    return None


def score_tasks(module: GPTModule, tokenizer_dir: Path, tasks: dict, cfg: Any, run_dir: Path) -> dict[str, Any]:
    """Score the trained model on tasks, print the table and write <run>/eval/results.json; returns the report."""
    from litllm.tasks import results as evaluation

    tokenizer = Tokenizer(tokenizer_dir)
    report = evaluation.evaluate_tasks(
        module.gpt,
        tokenizer,
        tasks,
        num_fewshot=cfg.num_fewshot,
        scoring=cfg.scoring,
        show_progress=sys.stderr.isatty(),
    )
    report["source"] = str(run_dir)
    path = evaluation.write_results(run_dir / "eval", report)
    print(evaluation.format_table(report))
    print(f"results: {path}")
    refresh_report(run_dir)  # now with the task scores
    return {"tasks": report["tasks"], "core": report["core"]}
