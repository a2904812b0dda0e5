"""Finetuning on the CPU: tokens/s and peak memory of litllm (full, LoRA, QLoRA) against peft + transformers.

    .venv/bin/python benchmarks/finetune.py                              # pythia-160m and debug.yaml's model
    .venv/bin/python benchmarks/finetune.py --model debug --precision 32-true --steps 3 --no-serve
    .venv/bin/python benchmarks/finetune.py --model SmolLM2-135M --precision 32-true --warmup 3 --no-serve
    .venv/bin/python benchmarks/finetune.py --model pythia-160m --rows litllm:lora litllm:qlora litllm:qlora-head

Both sides start from the same random weights: a seeded litllm checkpoint and its `convert_to_hf` conversion. Every
row trains on one fixed batch of random token ids with fused AdamW, in `32-true` and, where the CPU does bfloat16
(`cpu_supports_bf16`), `bf16-mixed` (CPU autocast for transformers). litllm: `GPTModule(init_from=...,
lora=LoRAConfig(...))` in a Lightning Trainer (lora=None: full; QLoRA: frozen blocks in bitsandbytes nf4, loaded and
quantized block by block; "QLoRA, head too": an untied output head in nf4 as well, `quantize_head`). peft:
`get_peft_model(AutoModelForCausalLM.from_pretrained(...))` with the same r, alpha, dropout and layers in a plain
loop (forward with labels, backward, step, zero_grad); transformers alone is the full reference. "LoRA, compile" is
`GPTModule(compile=True)` (each block compiled during the warm-up steps, so give --warmup 3). On GPT-NeoX
(pythia) query, key and value share one Hugging Face module: peft gives it one rank-r adapter, litllm one each.
Every row runs in a fresh process (this script with a hidden `--worker`), inheriting no allocator state or kernel
choice. Columns: **tok/s**: batch x seq-len over the median (`--stat best`: the shortest) of the `--steps` timed
steps after `--warmup`; **peak MB**: the process's peak resident set (VmHWM, imports included); **train MB**: that
peak minus the resident set just before the model is built, once a 1-layer copy of the model has trained a step (the
library code that training maps in, ~40 MB and the same for every row, is resident by then: `warm_up`); **in steps
MB**: the same over the training steps alone (the peak is reset once the weights are loaded); **base MB**: the base
weights (`litllm.quantize.weight_bytes`, adapters excluded, 4-bit layers with their scales). Targets: litllm LoRA
>= 1.2x peft's tokens/s; LoRA's train MB <= 0.6x full's; QLoRA's base MB <= 0.45x LoRA's. The serving table decodes
16 rows (float32, greedy) with `Scheduler(model, max_batch_size=16)` on the base, on one adapter and over 4 adapters
(random non-zero B), median (or best) of rounds; target: 4 adapters >= 0.7x the base's tokens/s. Run it on an
otherwise idle machine.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from litllm.config import Config  # noqa: E402

DEBUG_RECIPE = ROOT / "config_hub" / "pretrain" / "debug.yaml"
ROWS = (("litllm", "full"), ("litllm", "lora"), ("litllm", "lora-compiled"), ("litllm", "qlora"),
        ("litllm", "qlora-head"), ("peft", "lora"), ("transformers", "full"))  # fmt: skip
# litllm's target names -> the Hugging Face module that holds those rows, per family (peft's target_modules)
HF_TARGETS = {
    "llama": {
        "query": "q_proj", "key": "k_proj", "value": "v_proj", "projection": "o_proj",
        "gate": "gate_proj", "up": "up_proj", "down": "down_proj", "head": "lm_head",
    },
    "gpt_neox": {
        "query": "query_key_value", "key": "query_key_value", "value": "query_key_value", "projection": "dense",
        "up": "dense_h_to_4h", "down": "dense_4h_to_h", "head": "embed_out",
    },
}  # fmt: skip
# the reference of each litllm row's speed ratio, and of each LoRA row's memory ratio (its own library's full run)
SPEED_REFS = {("litllm", "full"): ("transformers", "full"), ("litllm", "lora"): ("peft", "lora")}
for mode in ("qlora", "qlora-head", "lora-compiled"):
    SPEED_REFS["litllm", mode] = ("peft", "lora")
FULL_REFS = {"litllm": ("litllm", "full"), "peft": ("transformers", "full")}
MB = 1e6
STATS = {"median": statistics.median, "best": min}  # of the step times


# ---- the parent: checkpoints, workers, tables ------------------------------------------------------------------


def model_config(name: str, seq_len: int) -> Config:
    """pythia-160m from the catalog, or debug.yaml's Llama-shaped model (its block size stretched to seq_len)."""
    import yaml

    if name == "debug":
        fields = yaml.safe_load(DEBUG_RECIPE.read_text())["model"]["model_config"]
        block = max(fields["block_size"], seq_len)
        return Config(**{**fields, "block_size": block, "hf_model_type": "llama"})
    return Config.from_name(name)


def build_checkpoint(name: str, seq_len: int, root: Path) -> tuple[Path, Path]:
    """A litllm checkpoint of random weights (seeded) and its Hugging Face conversion: (litllm dir, HF dir)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    from litllm.checkpoint.hf import convert_to_hf
    from litllm.checkpoint.own import save_checkpoint
    from litllm.model import GPT

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())  # 256 byte tokens: enough for `Tokenizer` to load
    tokenizer = Tokenizer(models.BPE({c: i for i, c in enumerate(alphabet)}, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    (root / "tokenizer").mkdir(parents=True)
    tokenizer.save(str(root / "tokenizer" / "tokenizer.json"))
    torch.manual_seed(0)
    gpt = GPT(model_config(name, seq_len))
    gpt.reset_parameters(std=0.02)
    lit = save_checkpoint(gpt, root / "litllm", tokenizer_dir=root / "tokenizer")
    return lit, convert_to_hf(lit, root / "hf")


def in_fresh_process(spec: dict) -> dict:
    """Run one measurement in a new Python process; its result, or {"error": ...} when it failed."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error", "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    lines = out.stdout.strip().splitlines()
    if out.returncode or not lines:
        last = [line for line in out.stderr.strip().splitlines() if line.strip()]
        return {"error": last[-1][:160] if last else f"exit code {out.returncode}"}
    return json.loads(lines[-1])


def ratio(results: dict, key: tuple[str, str], ref: tuple[str, str] | None, field: str) -> str:
    a, b = results[key].get(field), results.get(ref, {}).get(field) if ref else None
    return f"{a / b:.2f}x" if a and b else ""


def finetune_table(results: dict[tuple[str, str], dict]) -> list[str]:
    """The markdown rows of one model and precision."""
    lines = [
        "| run | tok/s | vs HF | peak MB | train MB | vs own full | in steps MB | base MB | vs LoRA base | trainable |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for key, r in results.items():
        names = {"full": "full", "lora": "LoRA", "lora-compiled": "LoRA, compile", "qlora": "QLoRA (nf4)",
                 "qlora-head": "QLoRA (nf4, head too)"}  # fmt: skip
        label = f"{key[0]} {names[key[1]]}"
        if "error" in r:
            lines.append(f"| {label} | failed: {r['error']} |" + " |" * 8)
            continue
        full = FULL_REFS[key[0]] if key[1] != "full" else None
        lora = ("litllm", "lora") if key[1].startswith("qlora") else None  # and its blocks alone
        base = ratio(results, key, lora, "base_bytes")
        base += f" (blocks {ratio(results, key, lora, 'block_bytes')})" if lora and "block_bytes" in r else ""
        steps = f"{r['steps'] / MB:.0f}" if r["steps"] is not None else "?"  # "?": the peak could not be reset
        lines.append(
            f"| {label} | {r['tok_s']:.0f} | {ratio(results, key, SPEED_REFS.get(key), 'tok_s')} "
            f"| {r['peak'] / MB:.0f} | {r['train'] / MB:.0f} | {ratio(results, key, full, 'train')} | {steps} "
            f"| {r['base_bytes'] / MB:.1f} | {base} | {r['trainable'] / 1e6:.3f}M |"
        )
    return lines


def verdicts(results: dict[tuple[str, str], dict], where: str) -> list[str]:
    """PASS/FAIL against the issue's finetuning targets (not judged where one of the two rows failed or did not run)."""
    row = {(side, mode): results.get((side, mode), {}) for side, mode in ROWS}
    full, lora, peft = row["litllm", "full"], row["litllm", "lora"], row["peft", "lora"]
    checks = (
        ("LoRA tokens/s vs peft LoRA's", lora, peft, "tok_s", ">=", 1.2),
        ("LoRA (compile: true) tokens/s vs peft LoRA's", row["litllm", "lora-compiled"], peft, "tok_s", ">=", 1.2),
        ("LoRA train memory vs full's", lora, full, "train", "<=", 0.6),
        ("QLoRA base weights vs LoRA's", row["litllm", "qlora"], lora, "base_bytes", "<=", 0.45),
        ("QLoRA (head too) base weights vs LoRA's", row["litllm", "qlora-head"], lora, "base_bytes", "<=", 0.45),
    )
    out = []
    for what, a, b, field, op, target in checks:
        if field in a and field in b:
            x = a[field] / b[field]
            ok = x >= target if op == ">=" else x <= target
            out.append(f"{'PASS' if ok else 'FAIL'} {where}: {what} {x:.2f}x (target {op} {target}x)")
    return out


def serve_table(r: dict, rows: int, n_adapters: int) -> list[str]:
    if "error" in r:
        return [f"serving failed: {r['error']}"]
    lines = ["| rows on | tok/s | vs base |", "| --- | ---: | ---: |"]
    for key, label in (("base", "the base alone"), ("one", "one adapter"), ("multi", f"{n_adapters} adapters")):
        lines.append(f"| {label} ({rows} rows) | {r[key]:.0f} | {r[key] / r['base']:.2f}x |")
    x = r["multi"] / r["base"]
    return [*lines, f"\n{'PASS' if x >= 0.7 else 'FAIL'}: {n_adapters} adapters {x:.2f}x the base's tokens/s (>= 0.7x)"]


# ---- the workers: one measurement each, in a fresh process -----------------------------------------------------


def status_bytes(field: str) -> int:
    """A size from /proc/self/status, in bytes: VmRSS, the resident set now; VmHWM, its peak (what getrusage's
    ru_maxrss reads, less the parent's peak that ru_maxrss inherits through fork and exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}: this benchmark reads memory as Linux reports it")


def restart_peak() -> tuple[int, bool]:
    """The peak resident set so far, and whether the peak could be reset to the current size (Linux >= 4.0
    clear_refs), so that a later VmHWM is the peak of what follows alone."""
    peak = status_bytes("VmHWM")
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return peak, True
    except OSError:
        return peak, False


def measured(times: list[float], spec: dict, baseline: int, before_steps: tuple[int, bool]) -> dict:
    """tokens/s of the timed steps; peak: of the whole process; train: the peak over the resident set before the model
    was built; steps: the same in the training steps alone (None where the peak could not be reset)."""
    (loaded, was_reset), end = before_steps, status_bytes("VmHWM")
    peak, timed = max(loaded, end), times[spec["warmup"] :]
    tok_s = spec["batch_size"] * spec["seq_len"] / STATS[spec["stat"]](timed)
    return {"tok_s": tok_s, "peak": peak, "train": peak - baseline, "steps": end - baseline if was_reset else None}


def fixed_batch(spec: dict) -> torch.Tensor:
    """(B, T + 1) random token ids, the same in every worker."""
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, spec["vocab_size"], (spec["batch_size"], spec["seq_len"] + 1), generator=g)


def base_bytes(model: torch.nn.Module, adapter_marker: str) -> int:
    """Bytes of the model's weights but the adapters' (parameters whose name holds adapter_marker); 4-bit layers
    count their quantization state too."""
    from litllm.quantize import is_4bit, weight_bytes

    adapters = [p for n, p in model.named_parameters() if adapter_marker in n]
    total = weight_bytes(model) - sum(p.numel() * p.element_size() for p in adapters)
    for m in model.modules():
        if "weight" in m._parameters and is_4bit(m):
            state = m.weight.quant_state
            nested = [state.absmax, *(([state.state2.absmax, state.state2.code]) if state.nested else [])]
            total += sum(t.numel() * t.element_size() for t in nested)
    return total


def warm_up(spec: dict, train: Callable[[dict], dict]) -> None:
    """Train a 1-layer copy of the row's model (random weights) for one step before the baseline is read: the pages of
    torch's, the BLAS's and Lightning's code that training maps in as it first runs them (~40 MB on a 2-core Xeon,
    the same for every row) are then resident already, and the train MB that follow are the finetuning's own. The
    peak is reset afterwards."""
    from litllm.cpu.memory import return_freed_memory

    train({**spec, "one_layer": True, "warmup": 0, "steps": 1, "mode": spec["mode"].replace("-compiled", "")})
    gc.collect()
    return_freed_memory()  # what the copy freed, not a part of the baseline that the row then reuses
    restart_peak()


def one_layer_checkpoint(ckpt_dir: Path, root: Path) -> Path:
    """A checkpoint in root/litllm of ckpt_dir's model cut to 1 layer (random weights), with ckpt_dir's tokenizer."""
    from litllm.checkpoint.own import save_checkpoint
    from litllm.model import GPT

    config = Config.from_file(ckpt_dir / "model_config.yaml")
    gpt = GPT(Config(**{**config.to_dict(), "n_layer": 1}))
    gpt.reset_parameters(std=0.02)
    return save_checkpoint(gpt, root / "litllm", tokenizer_dir=ckpt_dir.parent / "tokenizer")


def train_litllm(spec: dict) -> dict:
    from functools import partial

    import lightning as L
    from torch.utils.data import DataLoader

    from litllm.lora.layers import LoRAConfig
    from litllm.training.module import GPTModule

    one_layer = spec.get("one_layer", False)
    if not one_layer:
        warm_up(spec, train_litllm)

    class StepTimer(L.Callback):
        def on_train_start(self, *args) -> None:
            self.times: list[float] = []
            self.before_steps = restart_peak()  # the weights are loaded, the steps (optimizer state included) follow

        def on_train_batch_start(self, *args) -> None:
            self.start = time.perf_counter()

        def on_train_batch_end(self, *args) -> None:
            self.times.append(time.perf_counter() - self.start)

    x = fixed_batch(spec)
    batch = {"input_ids": x[:, :-1].contiguous(), "labels": x[:, 1:].contiguous()}
    steps = spec["warmup"] + spec["steps"]
    timer = StepTimer()
    trainer = L.Trainer(
        accelerator="cpu", devices=1, precision=spec["precision"], max_steps=steps, logger=False, callbacks=[timer],
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    options = {"r": spec["r"], "alpha": spec["alpha"], "dropout": spec["dropout"], "targets": spec["targets"]}
    quantize = "nf4" if spec["mode"].startswith("qlora") else None
    head = spec["mode"] == "qlora-head"
    lora = LoRAConfig(**options, quantize=quantize, quantize_head=head) if spec["mode"] != "full" else None
    init_from = spec["litllm_dir"]
    if one_layer:  # a checkpoint of its own, as LoRA starts from one
        init_from = one_layer_checkpoint(Path(init_from), Path(tempfile.mkdtemp(prefix="litllm-warm-up-")))
    module = GPTModule(
        init_from=init_from, lora=lora, max_seq_length=spec["seq_len"], warmup_steps=0,
        compile=spec["mode"].endswith("compiled"),  # the blocks compiled while the warm-up steps run
        optimizer=partial(torch.optim.AdamW, lr=1e-4, fused=True),
    )  # fmt: skip
    gc.collect()
    baseline = status_bytes("VmRSS")
    trainer.fit(module, train_dataloaders=DataLoader([batch] * steps, batch_size=None))
    if one_layer:
        shutil.rmtree(Path(init_from).parent)
        return {}
    gpt = module.gpt
    return {
        **measured(timer.times, spec, baseline, timer.before_steps),
        "base_bytes": base_bytes(gpt, ".lora."),
        "block_bytes": base_bytes(gpt.h, ".lora."),
        "trainable": sum(p.numel() for p in gpt.parameters() if p.requires_grad),
    }


def train_hf(spec: dict) -> dict:
    import peft
    from transformers import AutoConfig, AutoModelForCausalLM

    one_layer = spec.get("one_layer", False)
    if not one_layer:
        warm_up(spec, train_hf)
    x = fixed_batch(spec)[:, :-1].contiguous()  # transformers shifts the labels itself
    gc.collect()
    baseline = status_bytes("VmRSS")
    if one_layer:
        config = AutoConfig.from_pretrained(spec["hf_dir"], num_hidden_layers=1)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    else:
        model = AutoModelForCausalLM.from_pretrained(spec["hf_dir"], dtype=torch.float32)
    if spec["mode"] == "lora":
        options = {"r": spec["r"], "lora_alpha": spec["alpha"], "lora_dropout": spec["dropout"]}
        model = peft.get_peft_model(model, peft.LoraConfig(**options, target_modules=spec["hf_targets"]))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4, fused=True)
    times = []
    before_steps = restart_peak()
    for _ in range(spec["warmup"] + spec["steps"]):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=spec["precision"] == "bf16-mixed"):
            loss = model(input_ids=x, labels=x).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    if one_layer:
        return {}
    return {
        **measured(times, spec, baseline, before_steps),
        "base_bytes": base_bytes(model, "lora_"),
        "trainable": sum(p.numel() for p in params),
    }


def serve(spec: dict) -> dict:
    """Greedy tokens/s of 16 rows on the base, on one adapter, and spread over several, alternated over rounds."""
    from litllm.api import LLM
    from litllm.inference.engine import Request, Scheduler
    from litllm.inference.options import SamplingParams
    from litllm.lora.layers import BASE, LoRAConfig, add_adapter

    torch.manual_seed(0)
    gpt = LLM.load(spec["litllm_dir"], device="cpu", dtype="float32").model
    config = LoRAConfig(r=spec["r"], alpha=spec["alpha"], targets=spec["targets"])
    names = [f"adapter{i}" for i in range(spec["adapters"])]
    for name in names:
        add_adapter(gpt, config, name)
    with torch.no_grad():  # B starts at zero, which would leave every adapter equal to the base
        for b in [p for key, p in gpt.named_parameters() if ".lora.adapters." in key and ".B." in key]:
            b.normal_(std=0.02)
    g = torch.Generator().manual_seed(1)
    prompts = [torch.randint(0, spec["vocab_size"], (spec["prompt_len"],), generator=g).tolist() for _ in range(16)]
    plans = {"base": [BASE] * 16, "one": [names[0]] * 16, "multi": [names[i % len(names)] for i in range(16)]}
    scheduler, greedy = Scheduler(gpt, max_batch_size=16), SamplingParams(temperature=0)
    speeds: dict[str, list[float]] = {k: [] for k in plans}
    for round_ in range(spec["rounds"] + 1):  # round 0 warms up: kernel choices, packing, caches
        for key in [*plans][round_ % 3 :] + [*plans][: round_ % 3]:  # each plan first in turn
            adapters = plans[key]
            requests = [Request(p, spec["new_tokens"], greedy, adapter=a) for p, a in zip(prompts, adapters)]  # noqa: B905
            start = time.perf_counter()
            completions = [c for r in requests for c in scheduler.submit(r)]
            scheduler.run()
            seconds = time.perf_counter() - start
            if round_:
                speeds[key].append(sum(len(c.token_ids) for c in completions) / seconds)
    return {k: (max if spec["stat"] == "best" else statistics.median)(v) for k, v in speeds.items()}


def worker(spec: dict) -> None:
    torch.set_num_threads(spec["threads"])
    if spec["job"] == "serve":
        result = serve(spec)
    elif spec["side"] == "litllm":
        result = train_litllm(spec)
    else:
        result = train_hf(spec)
    print(json.dumps(result), flush=True)


# ---- the command ---------------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", choices=("pythia-160m", "debug", "SmolLM2-135M", "both"), default="both")
    p.add_argument("--precision", choices=("auto", "32-true", "bf16-mixed"), default="auto",
                   help="auto: 32-true, and bf16-mixed where the CPU does bfloat16")  # fmt: skip
    p.add_argument("--steps", type=int, default=3, help="timed steps (after --warmup)")
    p.add_argument("--stat", choices=STATS, default="median", help="step time reported; best: on a busy machine")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--r", type=int, default=8)
    p.add_argument("--alpha", type=float, default=16.0)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--targets", nargs="+", default=["query", "value"], help="litllm or peft names (q_proj, ...)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rows", nargs="+", choices=[f"{side}:{mode}" for side, mode in ROWS], default=None,
                   help="the finetuning rows to run (default: all)")  # fmt: skip
    p.add_argument("--no-serve", action="store_true", help="skip the multi-adapter serving table")
    p.add_argument("--new-tokens", type=int, default=32, help="serving: tokens generated per row")
    p.add_argument("--rounds", type=int, default=2, help="serving: timed rounds (their median or best)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args()
    counts = (args.steps, args.batch_size, args.seq_len, args.threads, args.new_tokens, args.rounds)
    if min(counts) < 1 or args.warmup < 0:
        p.error("--steps, --batch-size, --seq-len, --threads, --new-tokens and --rounds must be >= 1, --warmup >= 0")
    return args


def hf_target_names(args: argparse.Namespace, family: str, model: str) -> list[str]:
    """peft's target_modules for the LoRA options (checked by LoRAConfig: a bad value fails with what is accepted);
    a layer the model lacks (gate, without a gated MLP) is left out, as litllm leaves it out."""
    from litllm.lora.layers import LoRAConfig, LoRAError

    try:
        names = LoRAConfig(r=args.r, alpha=args.alpha, dropout=args.dropout, targets=args.targets).target_names()
    except LoRAError as e:
        sys.exit(f"the LoRA options: {e}")
    layers = HF_TARGETS[family]
    if not any(t in layers for t in names):
        sys.exit(f"--targets {' '.join(args.targets)}: {model} has none of these layers; it has {', '.join(layers)}")
    return sorted({layers[t] for t in names if t in layers})


def measure_model(name: str, precisions: list[str], args: argparse.Namespace, root: Path) -> bool:
    """Print the finetuning table of each precision and the serving table of one model; False if a row failed."""
    config = model_config(name, args.seq_len)
    if args.seq_len > config.block_size:
        sys.exit(f"--seq-len {args.seq_len} exceeds {name}'s block size {config.block_size}")
    hf_targets = hf_target_names(args, config.hf_model_type, name)
    lit_dir, hf_dir = build_checkpoint(name, args.seq_len, root / name)
    common = {
        "litllm_dir": str(lit_dir), "hf_dir": str(hf_dir), "vocab_size": config.vocab_size, "threads": args.threads,
        "r": args.r, "alpha": args.alpha, "dropout": args.dropout, "targets": args.targets,
        "hf_targets": hf_targets, "stat": args.stat,
    }  # fmt: skip
    ok = True
    for precision in precisions:
        results = {}
        for side, mode in [r for r in ROWS if args.rows is None or f"{r[0]}:{r[1]}" in args.rows]:
            spec = {**common, "job": "train", "side": side, "mode": mode, "precision": precision,
                    "batch_size": args.batch_size, "seq_len": args.seq_len, "steps": args.steps,
                    "warmup": args.warmup}  # fmt: skip
            results[side, mode] = in_fresh_process(spec)
            ok &= "error" not in results[side, mode]
        shape = f"{config.n_layer} layers, n_embd {config.n_embd}, vocab {config.vocab_size}"
        print(f"\n{name} ({shape}), {precision}", *finetune_table(results), *verdicts(results, f"{name} {precision}"),
              sep="\n", flush=True)  # fmt: skip
    if not args.no_serve:
        spec = {**common, "job": "serve", "adapters": 4, "prompt_len": 32, "new_tokens": args.new_tokens,
                "rounds": args.rounds}  # fmt: skip
        result = in_fresh_process(spec)
        ok &= "error" not in result
        print(f"\n{name}, serving 16 rows (prompts of 32 tokens, {args.new_tokens} new, greedy, float32)",
              *serve_table(result, 16, 4), sep="\n", flush=True)  # fmt: skip
    return ok


def main() -> None:
    args = parse_args()
    if args.worker:
        return worker(json.loads(args.worker))
    from litllm.cpu import isa
    from litllm.cpu.kernels import cpu_model
    from litllm.training.runs import cpu_supports_bf16

    bf16 = cpu_supports_bf16()
    precisions = ["32-true", *(["bf16-mixed"] if bf16 else [])] if args.precision == "auto" else [args.precision]
    print(
        f"CPU: {cpu_model() or 'unknown'} (kernels for {isa.active()}, torch {torch.backends.cpu.get_cpu_capability()}"
        f"; bf16 {'native' if bf16 else 'not native'}), "
        f"{args.threads} threads; torch {torch.__version__}\nbatch {args.batch_size} x {args.seq_len}, "
        f"{args.warmup} warm-up + {args.steps} timed steps ({args.stat}); LoRA r {args.r}, alpha {args.alpha:g}, "
        f"dropout {args.dropout:g}, targets {' '.join(args.targets)}",
        flush=True,
    )
    ok = True
    with tempfile.TemporaryDirectory(prefix="litllm-finetune-") as tmp:
        for name in ["pythia-160m", "debug"] if args.model == "both" else [args.model]:
            ok &= measure_model(name, precisions, args, Path(tmp))
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
