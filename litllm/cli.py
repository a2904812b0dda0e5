"""The `litllm` command. Each subcommand is a typed function whose signature is its command line.

torch and lightning are imported inside the commands, so `litllm --help` stays fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Literal, Optional, Union

from litllm.cli_checkpoints import download, export, from_peft, merge_lora, to_hf, to_litllm, to_peft
from litllm.errors import HubError, MissingDependencyError, UnknownModelError
from litllm.inference.options import option_names, with_options
from litllm.serve.client import ClientCLI

# the generation options the commands take (printing log-probabilities is left to the Python API and the server)
CLI_OPTIONS = [name for name in option_names() if name != "logprobs"]


CLI_TYPES = {"schema": Optional[str]}  # JSON schema text or llm's "name, age int" syntax


@with_options(CLI_OPTIONS, defaults={"temperature": 0.8}, types=CLI_TYPES)
def generate(
    source: str,
    prompt: Optional[str] = None,
    system: Optional[str] = None,
    stream: bool = False,
    init: Literal["pretrained", "random"] = "pretrained",
    tokenizer_dir: Optional[Path] = None,
    device: Optional[str] = None,
    dtype: Optional[str] = None,
    quantize: Optional[str] = None,
    **options: Any,
) -> None:
    """Generate a continuation of a prompt; several samples (--num_samples) are printed one after another.

    Args:
        source: Checkpoint directory, Hub repo id, registered model name, or model name (with --init random).
        prompt: Text to continue.
        system: Treat the prompt as a user message in a chat with this system message.
        stream: Print text as it is generated.
        init: `pretrained` loads weights; `random` builds a named config with fresh weights.
        tokenizer_dir: Tokenizer folder (needed with --init random).
        device: cpu, cuda, cuda:1, ... (default: cuda if available).
        dtype: float32, bfloat16 or float16 (default: the checkpoint's).
        quantize: int8 (litllm's CPU kernel, fastest decoding on a CPU) or bnb.nf4, bnb.int8 (bitsandbytes).
    """
    if prompt is None:
        raise ValueError("--prompt is required: the text to continue")
    llm = load_for_inference(source, init, tokenizer_dir, device, dtype, quantize)
    num_samples = options.get("num_samples", 1)
    if stream and num_samples == 1:
        for piece in llm.generate(prompt, system, stream=True, **options):
            print(piece, end="", flush=True)
        print()
        return
    samples = llm.generate(prompt, system, **options)
    for i, text in enumerate(samples if num_samples > 1 else [samples]):
        if num_samples > 1:
            print(f"--- sample {i + 1} ---")
        print(text)


@with_options(
    [name for name in CLI_OPTIONS if name != "num_samples"],
    defaults={"max_new_tokens": 512, "temperature": 0.7, "top_k": 50},
    types=CLI_TYPES,
)
def chat(
    source: str,
    system: Optional[str] = None,
    init: Literal["pretrained", "random"] = "pretrained",
    tokenizer_dir: Optional[Path] = None,
    device: Optional[str] = None,
    dtype: Optional[str] = None,
    quantize: Optional[str] = None,
    prompt: Optional[str] = None,
    **options: Any,
) -> None:
    """Chat with a model in the terminal: replies stream, the conversation is remembered.

    End a line with \\ to continue on the next one, or wrap a block in triple quotes (\"\"\").
    /reset forgets the conversation, /exit (or Ctrl-D) leaves. nanochat's flags work too:
    `litllm chat -i sft -p "Why is the sky blue?" -t 0.6 -k 50`.

    Args:
        source: Checkpoint directory, Hub repo id, registered model name, model name (with --init random), or
            base | mid | sft | rl: the latest training run of that phase (also -i/--source).
        system: System message that opens the conversation.
        init: `pretrained` loads weights; `random` builds a named config with fresh weights.
        tokenizer_dir: Tokenizer folder (needed with --init random).
        device: cpu, cuda, cuda:1, ... (default: cuda if available).
        dtype: float32, bfloat16 or float16 (default: the checkpoint's).
        quantize: int8 (litllm's CPU kernel, fastest decoding on a CPU) or bnb.nf4, bnb.int8 (bitsandbytes).
        prompt: Send this one message, print the reply and exit (-p).
    """
    from litllm.terminal_chat import run_chat

    llm = load_for_inference(source, init, tokenizer_dir, device, dtype, quantize)
    if prompt is None:
        run_chat(llm, system, options)
        return
    for piece in llm.conversation(system).send(prompt, stream=True, **options):
        print(piece, end="", flush=True)
    print()


def serve(
    source: Optional[str] = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    model_type: Optional[str] = None,
    model_path: Optional[str] = None,
    adapters: Optional[str] = None,
    api_key: Optional[str] = None,
    max_batch_size: int = 16,
    accelerator: str = "auto",
    devices: int = 1,
    num_gpus: Optional[int] = None,
    precision: Optional[str] = None,
    quantize: Optional[str] = None,
    init: Literal["pretrained", "random"] = "pretrained",
    tokenizer_dir: Optional[Path] = None,
    max_seq_length: Optional[int] = None,
    max_tokens: int = 256,
    models_root: Optional[Path] = None,
    runs_root: Optional[Path] = None,
    limits: Optional[dict[str, int]] = None,
    log_level: str = "warning",
) -> None:
    """Serve a model over HTTP: OpenAI-compatible routes, a web chat page, and a control API (LitServe).

    Routes: POST /v1/chat/completions, /v1/completions, GET /v1/models; POST /chat/completions (nanochat);
    GET /health, /stats, /metrics; /api/status, /api/models, /api/load_model, /api/generate, /api/train;
    GET / (chat page). Stop it with Ctrl-C or SIGTERM. Without SOURCE, --model_type or --model_path the server
    starts with no model: generation routes answer 503 until POST /api/load_model loads one (as nanoGPT's
    api_server.py).

    Args:
        source: Checkpoint directory, Hub repo id, registered model name, or model name (with --init random);
            none: start with no model.
        host: Address to listen on: 127.0.0.1 (this machine only), 0.0.0.0 or :: (every interface).
        port: Port to listen on (1024-65535).
        model_type: Load this model by name (registered, downloaded, a catalog name such as gpt2, a Hub repo id).
        model_path: Load this checkpoint: a folder, a nanoGPT ckpt.pt, or a training run's folder (its final/).
        adapters: LoRA adapters to serve over the model, `name1=DIR1,name2=DIR2` (DIR: an adapter folder or a run
            whose final/ holds one); a request's `model` picks one by name, and rows of each decode in one batch.
        api_key: Require `Authorization: Bearer KEY` on every route but /health (default: $LITLLM_API_KEY).
        max_batch_size: Generations decoded together; more wait for a free row.
        accelerator: auto, cpu or cuda.
        devices: Inference workers, one model copy each: one per GPU on CUDA (at most the GPUs present); on the CPU,
            processes that share its cores (at most one per core), each with an even share of the torch threads.
        num_gpus: The same as devices (nanochat's -n/--num-gpus).
        precision: 32-true, bf16-true or 16-true (default: the checkpoint's dtype).
        quantize: int8 (litllm's CPU kernel, fastest decoding on a CPU) or bnb.nf4, bnb.int8 (bitsandbytes).
        init: `pretrained` loads weights; `random` builds a named config with fresh weights.
        tokenizer_dir: Tokenizer folder (needed with --init random).
        max_seq_length: Longest prompt + reply a row holds (default: the model's context).
        max_tokens: Reply length when a request does not say.
        models_root: Folder whose checkpoints /api/load_model may load by path (default: $LITLLM_HOME).
        runs_root: Folder for training runs started by /api/train, whose runs /api/load_model may load too
            (default: $LITLLM_RUNS_DIR, else ./out).
        limits: Request limits to change, e.g. '{"max_messages": 100, "max_tokens": 1024}'. Defaults: 500 messages,
            8000 characters a message, 32000 in all, max_tokens 4096, top_k 200, n 16, 8 stop strings.
        log_level: debug, info, warning or error.
    """
    import os

    from litllm.serve.pool import worker_devices

    source = serve_source(source, model_type, model_path)
    if num_gpus is not None:
        if num_gpus < 1 or devices not in (1, num_gpus):
            raise ValueError(f"--num_gpus {num_gpus} must be >= 1 and agree with --devices {devices} (give one)")
        devices = num_gpus
    worker_devices(accelerator, devices)  # a count this machine cannot hold fails before any model is looked up
    from litllm.serve.control import served_adapters
    from litllm.serve.server import build_server, run

    if source is not None:
        check_serve_source(source, init, tokenizer_dir)
    adapter_dirs = served_adapters(adapters, source, init) if adapters is not None else None
    if limits:
        from litllm.serve.request_models import set_limits

        set_limits(limits)
    api_key = api_key or os.environ.get("LITLLM_API_KEY") or None
    server, _ = build_server(
        source,
        api_key=api_key,
        max_batch_size=max_batch_size,
        accelerator=accelerator,
        devices=devices,
        precision=precision,
        quantize=quantize,
        init=init,
        tokenizer_dir=None if tokenizer_dir is None else str(tokenizer_dir),
        max_seq_length=max_seq_length,
        models_root=models_root,
        runs_root=runs_root,
        default_max_tokens=max_tokens,
        adapters=adapter_dirs,
    )
    where = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    what = source if source is not None else "no model yet (POST /api/load_model loads one)"
    what += f" with adapters {', '.join(adapter_dirs)}" if adapter_dirs else ""
    print(f"litllm serve: {what} at {where} (chat page: {where}/, API: {where}/v1)", file=sys.stderr, flush=True)
    run(server, host=host, port=port, log_level=log_level)


def serve_source(source: Optional[str], model_type: Optional[str], model_path: Optional[str]) -> Optional[str]:
    """The model `litllm serve` starts with: SOURCE, --model_type or --model_path (a run folder: its final/)."""
    named = {"SOURCE": source, "--model_type": model_type, "--model_path": model_path}
    given = [name for name, value in named.items() if value is not None]
    if len(given) > 1:
        raise ValueError(f"give at most one of SOURCE, --model_type and --model_path; got {' and '.join(given)}")
    if model_path is None:
        return source or model_type
    path = Path(model_path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"--model_path {model_path!r} does not exist")
    return str(path / "final") if (path / "final").is_dir() else str(path)


def check_serve_source(source: str, init: str, tokenizer_dir: Optional[Path]) -> None:
    """Fail before any process starts when the model cannot be found (a Hub id is downloaded here, once)."""
    if init == "random":
        from litllm.config import Config

        Config.from_name(source)
        if tokenizer_dir is None:
            raise ValueError("--init random needs --tokenizer_dir: a folder with tokenizer.json or tokenizer.model")
        return
    from litllm.checkpoint.sources import resolve_checkpoint

    resolve_checkpoint(source)


def load_for_inference(
    source: str,
    init: str,
    tokenizer_dir: Optional[Path],
    device: Optional[str],
    dtype: Optional[str],
    quantize: Optional[str],
):
    from litllm.api import LLM

    llm = LLM.load(source, init=init, tokenizer_dir=tokenizer_dir, device=device, dtype=dtype)
    if quantize is not None:
        llm.distribute(accelerator=llm.device.type, quantize=quantize)
    return llm


def report(run: str) -> None:
    """Rebuild a training run's report card, report.md (recipe, environment, speed, loss curve, evaluations, samples
    of it and of the runs it started from), and print its path.

    Args:
        run: A run directory, or base | mid | sft | rl: the newest run of that phase.
    """
    from litllm.training.report import resolve_run, write_report

    print(write_report(resolve_run(run)))


def estimate(
    recipe: Optional[str] = None,
    devices: Optional[int] = None,
    mfu: Optional[float] = None,
    price_per_gpu_hour: Optional[float] = None,
    peak_flops: Optional[float] = None,
    max_steps: Optional[int] = None,
) -> None:
    """Plan a training recipe on paper: memory per GPU under DDP and FSDP2, with and without activation
    checkpointing, and the time and cost of the run at an assumed MFU (see docs/scaling.md).

    Args:
        recipe: The recipe, also given as --config: a YAML file or a shipped one such as pretrain/tinyllama-1.1b.
        devices: Number of GPUs (default: the recipe's trainer.devices).
        mfu: Model FLOPs utilization to assume, in (0, 1] (default 0.4).
        price_per_gpu_hour: Dollars a GPU-hour (default 2.50, an assumed H100 rate).
        peak_flops: Peak FLOP/s of one GPU in the training dtype (default: the recipe's, else 989e12: H100 bf16).
        max_steps: Optimizer steps of the run (default: the recipe's trainer.max_steps).
    """
    from litllm.training.estimate import format_plan, plan

    if recipe is None:
        raise ValueError("give the recipe to plan: --config FILE.yaml or a shipped name like pretrain/tinyllama-1.1b")
    print(format_plan(plan(recipe, devices, mfu, price_per_gpu_hour, peak_flops, max_steps)))


def tokenizer_train(
    out: Path,
    files: Union[list[str], str, None] = None,
    corpus: Optional[str] = None,
    vocab_size: int = 8192,
    special_tokens: Optional[list[str]] = None,
    max_bytes: Optional[int] = None,
    train_ratio: float = 1.0,
    val_ratio: float = 0.0,
) -> None:
    """Train a byte-level BPE tokenizer.

    Args:
        out: Folder to write tokenizer.json and tokenizer_config.json to (must not hold a tokenizer already).
        files: Text files or globs to train on (one, or a list: --files '[a.txt, "b/*.md"]').
        corpus: `stdlib` (the Python standard library's source) or a folder of text files.
        vocab_size: Number of tokens, special tokens included.
        special_tokens: Special tokens to reserve (default: <|endoftext|>).
        max_bytes: Train on at most this many bytes of the corpus.
        train_ratio: Train on this leading share of the files, in (0, 1].
        val_ratio: Hold out this trailing share of the files, in [0, 1), and print the bytes per token on them.
    """
    from litllm.training.tokenizer_training import train_tokenizer

    kwargs = {} if special_tokens is None else {"special_tokens": special_tokens}
    files = [files] if isinstance(files, str) else files
    path = train_tokenizer(
        files=files,
        corpus=corpus,
        vocab_size=vocab_size,
        out=str(out),
        max_bytes=max_bytes,
        train_ratio=train_ratio,
        val_ratio=val_ratio,
        **kwargs,
    )
    print(f"saved to {path}")


def tokenizer_evaluate(
    tokenizer_dir: Optional[str] = None,
    files: Union[list[str], str, None] = None,
    corpus: Optional[str] = None,
    max_bytes: Optional[int] = 1_000_000,
) -> None:
    """Print a tokenizer's compression (UTF-8 bytes per token) on kinds of text, beside GPT-2's when it is here.

    Args:
        tokenizer_dir: Tokenizer folder, model name or training phase (sft, ...); default: $LITLLM_TOKENIZER_PATH.
        files: Text files, folders or globs, one row each (one, or a list: --files '[a.txt, "b/*.md"]').
        corpus: `stdlib` or a folder of text files: one row per kind of file.
        max_bytes: Read at most this many bytes for each row (null: all).
    """
    from litllm.training.tokenizer_training import evaluate_tokenizer

    files = [files] if isinstance(files, str) else files
    print(evaluate_tokenizer(tokenizer_dir, files=files, corpus=corpus, max_bytes=max_bytes))


def models_list() -> None:
    """List the local models: checkpoints downloaded to $LITLLM_HOME and directories registered by name."""
    from litllm.local_models import get_default_model, list_models

    entries = list_models()
    if not entries:
        print("no models yet: `litllm download ORG/NAME` fetches one, `litllm models add NAME PATH` registers one")
        return
    width = max(len(e.name) for e in entries)
    for e in entries:
        aliases = f"  (aliases: {', '.join(e.aliases)})" if e.aliases else ""
        print(f"{e.name:<{width}}  {e.source:<10}  {e.path}{aliases}")
    if get_default_model():
        print(f"default: {get_default_model()}")


def models_add(name: str, path: Path) -> None:
    """Register a checkpoint directory (a training run's final/, a converted model) under a name.

    Args:
        name: The name to use it by, like `tiny` or `me/tiny`.
        path: The checkpoint directory (litllm, Hugging Face or LitGPT layout).
    """
    from litllm.local_models import add

    entry = add(name, path)
    print(f"registered {entry.name} -> {entry.path}")


def models_remove(name: str) -> None:
    """Forget a registered model and its aliases; its files stay where they are.

    Args:
        name: A name given with `litllm models add`.
    """
    from litllm.local_models import remove

    remove(name)
    print(f"removed {name}")


def models_alias_set(alias: str, name: str) -> None:
    """Give a model another name.

    Args:
        alias: The new name.
        name: The model it stands for.
    """
    from litllm.local_models import set_alias

    set_alias(alias, name)
    print(f"{alias} -> {name}")


def models_alias_remove(alias: str) -> None:
    """Forget an alias.

    Args:
        alias: An alias made with `litllm models alias set`.
    """
    from litllm.local_models import remove_alias

    remove_alias(alias)
    print(f"removed alias {alias}")


def models_default(name: str) -> None:
    """Set the model used when none is named (`litllm models list` shows it).

    Args:
        name: A model name or alias.
    """
    from litllm.local_models import set_default_model

    set_default_model(name)
    print(f"default model: {name}")


COMMANDS = {
    "download": download,
    "convert": {"to_litllm": to_litllm, "to_hf": to_hf, "to_peft": to_peft, "from_peft": from_peft},
    "generate": generate,
    "chat": chat,
    "serve": serve,
    "client": ClientCLI,
    "export": export,
    "merge_lora": merge_lora,
    "report": report,
    "estimate": estimate,
    "tokenizer": {"train": tokenizer_train, "evaluate": tokenizer_evaluate},
    "models": {
        "list": models_list,
        "add": models_add,
        "remove": models_remove,
        "alias": {"set": models_alias_set, "remove": models_alias_remove},
        "default": models_default,
    },
}
TRAINING_COMMANDS = {
    "pretrain": "train a model from scratch (LightningCLI: --config recipe.yaml, --model.*, --data.*, --trainer.*)",
    "midtrain": "continue a base model on a mixture of conversations, every token learned (runs: mid)",
    "finetune": "train from a checkpoint on SFT data or a task mixture (same options as pretrain)",
    "evaluate": "score a model on tasks (SOURCE --tasks arc_easy,gsm8k), or loss/perplexity/bpb on a recipe's data",
    "rl": "reinforcement learning on a task's reward, GRPO-style, from a checkpoint (runs: rl)",
}


def user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean the user asked for something impossible: shown as one line, exit 2."""
    return (ValueError, OSError, UnknownModelError, HubError, MissingDependencyError)


def argument_error(error: Exception) -> str:
    """jsonargparse's message, or for an optional group of options (`--model.lora.r 0`), the reason its values were
    refused, rather than one reason per type of the Union."""
    text = str(error)
    if not text.startswith("Does not validate against any of the Union subtypes"):
        return text
    reasons = [line[4:] for line in text.splitlines() if line.startswith("  - ") and "NoneType" not in line]
    return reasons[0] if reasons else text.splitlines()[0]


def RawEpilogFormatter():  # noqa: N802 - a class factory, so jsonargparse is imported only when needed
    from jsonargparse import DefaultHelpFormatter

    class Formatter(DefaultHelpFormatter):
        def _fill_text(self, text: str, width: int, indent: str) -> str:
            return "".join(indent + line for line in text.splitlines(keepends=True))

    return Formatter


# nanochat's short flags per command (chat_cli -i sft -p "..." -t 0.6 -k 50; chat_web -n 4 -p 8000)
SHORT_FLAGS = {
    "chat": {"-i": "--source", "-p": "--prompt", "-t": "--temperature", "-k": "--top_k"},
    "serve": {"-i": "--source", "-n": "--num_gpus", "-p": "--port"},
}


def normalize_argv(argv: list[str]) -> list[str]:
    """Accept nanochat's spellings: short flags, dashed names (--top-k) and the source as a flag or a positional.

    `--source X` / `-i X` become the positional SOURCE of a command that requires one, a leading positional
    becomes `--source X` for a command whose source is optional (`litllm serve` may start with no model), and
    `litllm evaluate -i sft` evaluates the newest finetuning run (`--model.init_from sft`)."""
    if argv and argv[0] == "evaluate" and task_form(argv[1:]):  # litllm evaluate SOURCE --tasks ...
        rest = [underscored(t) for t in argv[1:]]
        rest = ["--source" if t == "-i" else t for t in rest]
        return ["evaluate-tasks", *rest]
    if argv and argv[0] == "evaluate":  # nanochat's chat_eval -i sft: the checkpoint to evaluate
        rest = [f"--model.init_from={t[9:]}" if t.startswith("--source=") else t for t in argv[1:]]
        return ["evaluate", *("--model.init_from" if t in ("-i", "--source") else t for t in rest)]
    if not argv or argv[0] in TRAINING_COMMANDS:
        return argv
    command, short = argv[0], SHORT_FLAGS.get(argv[0], {})
    rest = [short.get(token, token) for token in map(underscored, argv[1:])]
    if command == "estimate":  # --config names the recipe to plan, as for `litllm pretrain` (jsonargparse drops it)
        rest = ["--recipe" + t[8:] if t.partition("=")[0] == "--config" else t for t in rest]
    if command not in SHORT_FLAGS:
        return [command, *rest]
    import inspect

    source = inspect.signature(COMMANDS[command]).parameters["source"]
    flag_at = next((i for i, t in enumerate(rest) if t == "--source" or t.startswith("--source=")), None)
    if source.default is inspect.Parameter.empty and flag_at is not None:
        token = rest.pop(flag_at)
        value = token.partition("=")[2] if "=" in token else rest.pop(flag_at)
        rest.insert(0, value)
    elif source.default is not inspect.Parameter.empty and flag_at is None and rest and not rest[0].startswith("-"):
        rest.insert(0, "--source")
    return [command, *rest]


def task_form(args: list[str]) -> bool:
    """Whether `litllm evaluate` was asked for tasks (`--tasks`) rather than a recipe (`--config`, `--model.*`)."""
    recipe = any(a == "--config" or a.startswith(("--config=", "--model.", "--data.", "--trainer.")) for a in args)
    named = bool(args) and not args[0].startswith("-")  # litllm evaluate SOURCE ...: a model to score on tasks
    return not recipe and (named or any(a == "--tasks" or a.startswith("--tasks=") for a in args))


def underscored(token: str) -> str:
    """`--top-k=5` -> `--top_k=5`: an option's name with dashes read as underscores."""
    if not token.startswith("--"):
        return token
    name, eq, value = token.partition("=")
    return "--" + name[2:].replace("-", "_") + eq + value


def main(argv: list[str] | None = None) -> None:
    from jsonargparse import CLI

    argv = normalize_argv(sys.argv[1:] if argv is None else argv)
    epilog = "training subcommands (each has its own --help):\n" + "\n".join(
        f"    {name:<10} {text}" for name, text in TRAINING_COMMANDS.items()
    )
    try:
        if argv and argv[0] == "evaluate-tasks":
            rest = argv[1:]
            if "--source" in rest:  # -i sft: the positional SOURCE
                at = rest.index("--source")
                rest = [rest[at + 1], *rest[:at], *rest[at + 2 :]] if at + 1 < len(rest) else rest
            from litllm.evaluation import evaluate_tasks

            CLI(evaluate_tasks, args=rest, as_positional=True, exit_on_error=False, prog="litllm evaluate")
        elif argv and argv[0] in TRAINING_COMMANDS:
            from litllm.training.runs import run_training

            run_training(argv[0], argv[1:])
        else:
            CLI(
                COMMANDS,
                args=argv,
                as_positional=True,
                epilog=epilog,
                formatter_class=RawEpilogFormatter(),
                exit_on_error=False,
            )
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:  # output piped into a reader that closed early (`| head`)
        sys.stderr.close()
        sys.exit(0)
    except Exception as e:
        from jsonargparse import ArgumentError

        if isinstance(e, ArgumentError):
            command = " ".join(a for a in argv[:2] if not a.startswith("-"))
            print(f"litllm: error: {argument_error(e)} (see `litllm {command} --help`)", file=sys.stderr)
            sys.exit(2)
        if not isinstance(e, user_errors()):
            raise
        print(f"litllm: error: {argument_error(e)}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
