"""The plan of a training recipe on paper: memory per GPU and the time and cost of the run (`litllm estimate`).

Memory is counted per GPU, in bytes, at the peak of a step: the end of one micro-batch's forward pass, when every
tensor kept for the backward pass is alive. With P parameters (Q of them block weights held in 4 bits by QLoRA),
T trainable, O outside the blocks (embeddings, final norm, untied head), L in one block, d devices, and per
precision M bytes per stored weight, C per compute copy and A per activation (`PRECISIONS`):

    weights      M*(P-Q) + NF4*Q                   (/d under FSDP2)
                 + C * the weights whose 16-bit copy autograd keeps: all of them, or with checkpointing those
                   outside the blocks and one block's (litllm's FSDP2 casts after the all-gather, with autocast)
                 + FSDP2 on d > 1: M*(O + L) gathered (the root's stay gathered through the step, one block's in
                   flight)
    gradients    M*T                               (/d under FSDP2, + the trainable part of O + L gathered)
    AdamW        2*M*T, two moments in the parameters' dtype (/d under FSDP2)

bf16-mixed thus costs 4 + 2 + 4 + 8 = 18 bytes a trained parameter: fp32 master weights, their bf16 copies, fp32
gradients and moments. Activations, for a micro-batch of n = batch * seq tokens, per token and layer (Korthikanti
et al. 2022, arXiv:2205.05198, without dropout masks and with SDPA's fused attention, which keeps no score matrix):

    2*d_model*M (the two norms' inputs, on the residual stream) + A*(2*d_model + 2*q + 2*kv + g*I)

the two linear inputs after the norms, queries and attention output (q = n_head*head_size), keys and values
(kv = n_query_groups*head_size), and the MLP's I-wide tensors (g = 4 gated: gate, up, act(gate), their product;
g = 2 otherwise). The head adds V*(A + 8) a token: the logits, their fp32 copy and the fp32 log-probabilities
cross-entropy keeps. Activation checkpointing keeps each block's input (d_model*M a token and layer) plus one
block's activations while it is recomputed. Not counted: the CUDA context, allocator fragmentation, DDP's gradient
buckets, and transient buffers of the optimizer step.

Time: FLOPs a token from the model's own `estimate_flops` at the recipe's sequence length, tokens a step =
micro-batch * seq * devices * accumulate, a step takes FLOPs / (devices * peak FLOP/s * MFU).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from litllm.config import Config

GIB = 2**30
DEFAULT_MFU = 0.4  # a typical share of peak for a well-tuned PyTorch run; published runs are cited in docs/scaling.md
DEFAULT_PRICE = 2.50  # dollars a GPU-hour: an assumed on-demand H100 rate, not a quote
DEFAULT_PEAK_FLOPS = 989e12  # FLOP/s of an H100 SXM, dense bf16
DEFAULT_PRECISION = "bf16-mixed"  # what litllm trains in on a GPU with bf16 (Ampere or newer) when a recipe says none
# bytes of (a stored weight, the 16-bit compute copy autocast makes of it, an activation)
PRECISIONS = {
    "bf16-mixed": (4, 2, 2),
    "16-mixed": (4, 2, 2),
    "32-true": (4, 0, 4),
    "bf16-true": (2, 0, 2),
    "16-true": (2, 0, 2),
}
PRECISION_ALIASES = {"bf16": "bf16-mixed", "16": "16-mixed", "32": "32-true"}
# a 4-bit weight: half a byte plus an fp32 scale per block of 64 (0.5 bits); double quantization stores the scales
# in 8 bits with an fp32 scale per 256 of them (8/64 + 32/(64*256) = 0.127 bits), as in QLoRA (arXiv:2305.14314)
NF4_BYTES = {False: 0.5 + 4 / 64, True: 0.5 + (1 + 4 / 256) / 64}


@dataclass(frozen=True)
class Counts:
    """Parameter counts of the model a recipe trains, from the model built on the meta device."""

    params: int
    trainable: int
    outside: int  # outside the blocks: FSDP2's root module keeps these gathered
    outside_trainable: int
    block: int  # one block's parameters, adapters included
    block_trainable: int
    quantized: int  # block weights held in 4 bits (QLoRA)
    quantized_block: int


@dataclass(frozen=True)
class Memory:
    """Bytes per GPU of one way to run a recipe."""

    strategy: str  # DDP or FSDP2
    checkpointing: bool
    weights: float
    grads: float
    optimizer: float
    activations: float

    @property
    def total(self) -> float:
        return self.weights + self.grads + self.optimizer + self.activations


@dataclass(frozen=True)
class Plan:
    """The figures of a recipe: its model and batch, memory per GPU for each way to run it, time and cost."""

    recipe: str
    config: Config
    counts: Counts
    adapter: str | None  # e.g. "QLoRA r=16 (nf4, double quant) on query, key, ..."
    precision: str
    devices: int
    strategy: str | None  # the recipe's: DDP, FSDP2, or None when it names another
    checkpointing: bool  # the recipe's model.activation_checkpointing
    micro_batch: int
    seq_len: int
    accumulate: int
    max_steps: int | None
    max_epochs: int | None
    memory: tuple[Memory, ...]
    flops_per_token: int
    peak_flops: float
    mfu: float
    price_per_gpu_hour: float

    @property
    def tokens_per_step(self) -> int:
        return self.micro_batch * self.seq_len * self.devices * self.accumulate

    @property
    def step_seconds(self) -> float:
        return self.flops_per_token * self.tokens_per_step / (self.devices * self.peak_flops * self.mfu)

    @property
    def tokens_per_second(self) -> float:
        return self.tokens_per_step / self.step_seconds

    @property
    def hours(self) -> float | None:
        return None if self.max_steps is None else self.max_steps * self.step_seconds / 3600

    @property
    def cost(self) -> float | None:
        hours = self.hours
        return None if hours is None else hours * self.devices * self.price_per_gpu_hour


def plan(
    recipe: str | Path,
    devices: int | None = None,
    mfu: float | None = None,
    price_per_gpu_hour: float | None = None,
    peak_flops: float | None = None,
    max_steps: int | None = None,
) -> Plan:
    """The plan of a recipe (a YAML file or a shipped name like `pretrain/tinyllama-1.1b`); options override it."""
    mfu = DEFAULT_MFU if mfu is None else mfu
    price_per_gpu_hour = DEFAULT_PRICE if price_per_gpu_hour is None else price_per_gpu_hour
    data = read_recipe(recipe_path(recipe))
    peak_flops = peak_flops if peak_flops is not None else number(data.get("peak_flops", DEFAULT_PEAK_FLOPS))
    check_options(devices, mfu, price_per_gpu_hour, peak_flops, max_steps)
    model, trainer = section(data, "model"), section(data, "trainer")
    init_args = section(section(data, "data"), "init_args") or section(data, "data")
    config = recipe_config(model)
    lora = recipe_lora(model)
    seq_len = positive(model.get("max_seq_length") or config.block_size, "model.max_seq_length")
    devices = devices if devices is not None else recipe_devices(trainer)
    precision = recipe_precision(trainer.get("precision"))
    counts = count_parameters(config, lora)
    nf4 = NF4_BYTES[bool(lora.double_quant)] if counts.quantized else 0.0  # bytes a 4-bit weight
    micro_batch = positive(init_args.get("batch_size", default_batch_size()), "data batch_size")
    accumulate = positive(trainer.get("accumulate_grad_batches", 1), "trainer.accumulate_grad_batches")
    memory = tuple(
        memory_per_gpu(config, counts, precision, devices, strategy, checkpointing, micro_batch * seq_len, nf4)
        for strategy in ("DDP", "FSDP2")
        for checkpointing in (False, True)
        if not (strategy == "FSDP2" and counts.quantized)  # litllm refuses QLoRA under FSDP
    )
    steps = trainer.get("max_steps") if max_steps is None else max_steps
    return Plan(
        recipe=str(recipe),
        config=config,
        counts=counts,
        adapter=describe_adapter(lora),
        precision=precision,
        devices=devices,
        strategy=recipe_strategy(trainer.get("strategy")),
        checkpointing=bool(model.get("activation_checkpointing", False)),
        micro_batch=micro_batch,
        seq_len=seq_len,
        accumulate=accumulate,
        max_steps=steps if isinstance(steps, int) and steps > 0 else None,  # Lightning's -1: no limit
        max_epochs=trainer.get("max_epochs"),
        memory=memory,
        flops_per_token=flops_per_token(config, seq_len),
        peak_flops=peak_flops,
        mfu=mfu,
        price_per_gpu_hour=price_per_gpu_hour,
    )


def check_options(devices: int | None, mfu: float, price: float, peak_flops: float, max_steps: int | None) -> None:
    """Refuse options outside their range, naming the option and what it accepts."""
    if devices is not None and devices < 1:
        raise ValueError(f"--devices {devices} must be >= 1: the number of GPUs")
    if not 0 < mfu <= 1:
        raise ValueError(f"--mfu {mfu} is outside (0, 1]: the share of peak FLOP/s the run reaches, e.g. 0.4")
    if price < 0:
        raise ValueError(f"--price_per_gpu_hour {price} must be >= 0 (dollars a GPU-hour)")
    if not peak_flops > 0:
        raise ValueError(f"--peak_flops {peak_flops} must be > 0 (FLOP/s of one GPU, e.g. 989e12 for an H100)")
    if max_steps is not None and max_steps < 1:
        raise ValueError(f"--max_steps {max_steps} must be >= 1")


def recipe_path(recipe: str | Path) -> Path:
    """The recipe's file: a path, or a recipe shipped in litllm's config_hub (`pretrain/tinyllama-1.1b`)."""
    from litllm.training.runs import shipped_recipes

    path = Path(shipped_recipes(["--config", str(recipe)])[1])
    if not path.is_file():
        raise FileNotFoundError(f"recipe {str(recipe)!r} not found: give a YAML file or one of {shipped_names()}")
    return path


def read_recipe(path: Path) -> dict[str, Any]:
    """The recipe's mapping; a YAML error in one line."""
    from litllm.paths import read_yaml_mapping

    try:
        return read_yaml_mapping(path, "recipe (model, data, trainer)")
    except ValueError as e:  # YAML's message points at the line over several lines: keep its first
        raise ValueError(str(e).splitlines()[0]) from None


def shipped_names() -> str:
    """The recipes litllm ships, as names `litllm estimate --config` takes."""
    from litllm.paths import recipes_dir

    root = recipes_dir()
    return ", ".join(sorted(str(p.relative_to(root).with_suffix("")) for p in root.glob("*/**/*.yaml")))


def section(data: dict[str, Any], key: str) -> dict[str, Any]:
    """A mapping of the recipe (`model`, `trainer`, ...), empty when absent."""
    value = data.get(key) or {}
    if not isinstance(value, dict):
        raise ValueError(f"the recipe's {key!r} must be a mapping, got {value!r}")
    return value


def positive(value: Any, name: str) -> int:
    """`value`, checked to be an integer >= 1 (`name` says where in the recipe it is)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"the recipe's {name} must be an integer >= 1, got {value!r}")
    return value


def number(value: Any) -> float:
    """The recipe's peak_flops as a float (YAML reads `989e12`, without a dot, as text)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"the recipe's peak_flops {value!r} is not a number of FLOP/s, e.g. 989.0e+12") from None


def default_batch_size() -> int:
    """A data module's batch size when the recipe gives none."""
    import inspect

    from litllm.data.base import DataModule

    return inspect.signature(DataModule.__init__).parameters["batch_size"].default


def recipe_config(model: dict[str, Any]) -> Config:
    """The architecture a recipe trains; for init_from, the catalog's config when its weights are not here yet,
    so that planning a finetune downloads nothing."""
    from litllm.training.module import resolve_config

    model_config, init_from = model.get("model_config"), model.get("init_from")
    if model_config is None and init_from is None:
        raise ValueError("the recipe's model needs model_config (the architecture) or init_from (a checkpoint)")
    if init_from is not None:
        from litllm.checkpoint.sources import locate

        if not isinstance(locate(str(init_from)), Path):  # only on the Hub: read its architecture from the catalog
            return resolve_config(model_config or str(init_from), None)
    return resolve_config(model_config, init_from)


def recipe_lora(model: dict[str, Any]) -> Any:
    """The recipe's `LoRAConfig` (checked as `GPTModule` checks it), or None."""
    from litllm.lora.layers import LoRAConfig

    lora = model.get("lora")
    return None if lora is None else LoRAConfig.from_dict(lora) if isinstance(lora, dict) else lora


def recipe_devices(trainer: dict[str, Any]) -> int:
    """The number of GPUs trainer.devices asks for; `auto` or -1 cannot be planned."""
    devices = trainer.get("devices", 1)
    if isinstance(devices, list):
        devices = len(devices)
    if isinstance(devices, bool) or not isinstance(devices, int) or devices < 1:
        raise ValueError(f"the recipe's trainer.devices is {devices!r}: give --devices N, the number of GPUs")
    return devices


def recipe_precision(precision: Any) -> str:
    """The recipe's precision under its full Lightning name, bf16-mixed when it names none."""
    if precision is None:
        return DEFAULT_PRECISION
    name = PRECISION_ALIASES.get(str(precision), str(precision))
    if name not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    return name


def recipe_strategy(strategy: Any) -> str | None:
    """DDP or FSDP2 for the recipe's trainer.strategy (a name or a class_path mapping); None for another."""
    name = str(strategy.get("class_path", "") if isinstance(strategy, dict) else strategy or "auto").lower()
    if "fsdp" in name or "modelparallel" in name:
        return "FSDP2"
    if "ddp" in name or name in ("auto", "single_device"):  # auto: DDP on several devices, plain on one
        return "DDP"
    return None


def count_parameters(config: Config, lora: Any) -> Counts:
    """Counts from the model (and its adapter) built on the meta device: shapes only, no memory."""
    import torch

    from litllm.model import GPT

    with torch.device("meta"):
        gpt = GPT(config)
    quantized_block = 0
    if lora is not None and lora.quantize is not None:  # QLoRA quantizes every Linear weight of the blocks
        quantized_block = sum(m.weight.numel() for m in gpt.h[0].modules() if isinstance(m, torch.nn.Linear))
    if lora is not None:
        from litllm.lora.layers import add_adapter, freeze_base

        add_adapter(gpt, lora, init=False)
        freeze_base(gpt)
    params = list(gpt.parameters())  # a tied head and embedding are one parameter
    in_block = {id(p) for p in gpt.h.parameters()}
    outside = [p for p in params if id(p) not in in_block]
    block = list(gpt.h[0].parameters())
    return Counts(
        params=sum(p.numel() for p in params),
        trainable=sum(p.numel() for p in params if p.requires_grad),
        outside=sum(p.numel() for p in outside),
        outside_trainable=sum(p.numel() for p in outside if p.requires_grad),
        block=sum(p.numel() for p in block),
        block_trainable=sum(p.numel() for p in block if p.requires_grad),
        quantized=quantized_block * config.n_layer,
        quantized_block=quantized_block,
    )


def flops_per_token(config: Config, seq_len: int) -> int:
    """FLOPs of a forward and backward pass a token: the model's own `estimate_flops` (6N + attention)."""
    import torch

    from litllm.model import GPT

    with torch.device("meta"):
        return GPT(config).estimate_flops(seq_len)


def memory_per_gpu(
    config: Config,
    counts: Counts,
    precision: str,
    devices: int,
    strategy: str,
    checkpointing: bool,
    tokens: int,
    nf4: float = 0.0,
) -> Memory:
    """Bytes per GPU under `strategy` (DDP or FSDP2), with or without activation checkpointing, for a micro-batch
    of `tokens`; nf4: bytes of a 4-bit weight (QLoRA) (module docstring)."""
    stored, copy, _ = PRECISIONS[precision]
    c = counts
    kept_copies = c.params - c.quantized if not checkpointing else c.outside + c.block - c.quantized_block
    weights = stored * (c.params - c.quantized) + nf4 * c.quantized
    grads, optimizer = stored * c.trainable, 2 * stored * c.trainable
    if strategy == "FSDP2":
        weights, grads, optimizer = weights / devices, grads / devices, optimizer / devices
        if devices > 1:  # the root's parameters and one block's, all-gathered, with their gradients
            weights += stored * (c.outside + c.block)
            grads += stored * (c.outside_trainable + c.block_trainable)
    weights += copy * kept_copies
    return Memory(
        strategy, checkpointing, weights, grads, optimizer, activation_bytes(config, precision, tokens, checkpointing)
    )


def activation_bytes(config: Config, precision: str, tokens: int, checkpointing: bool) -> float:
    """Bytes of activations kept for the backward pass of one micro-batch of `tokens` (module docstring)."""
    stored, _, a = PRECISIONS[precision]
    d = config.n_embd
    q = config.n_head * config.head_size
    kv = config.n_query_groups * config.head_size
    g = 4 if config.mlp_class in ("swiglu", "geglu") else 2
    layer = 2 * d * stored + a * (2 * d + 2 * q + 2 * kv + g * config.intermediate_size)  # bytes a token
    head = config.vocab_size * (a + 4 + (4 if a < 4 else 0))  # logits, their fp32 copy (16-bit runs), log-probs
    blocks = config.n_layer * d * stored + layer if checkpointing else config.n_layer * layer
    return tokens * (blocks + head)


def describe_adapter(lora: Any) -> str | None:
    """One line on the adapter: kind, rank, quantization and layers."""
    if lora is None:
        return None
    kind = "QLoRA" if lora.quantize else "LoRA"
    quant = f" ({lora.quantize}{', double quant' if lora.double_quant else ''})" if lora.quantize else ""
    return f"{kind} r={lora.r}{quant} on {', '.join(lora.target_names())}"


def format_plan(p: Plan) -> str:
    """The plan as a plain-text table for a terminal."""
    c, cfg = p.counts, p.config
    trained = "all trained" if c.trainable == c.params else f"{c.trainable:,} trained ({c.trainable / c.params:.2%})"
    kv = f" ({cfg.n_query_groups} kv)" if cfg.n_query_groups != cfg.n_head else ""
    lines = [
        f"recipe   {p.recipe}",
        f"model    {cfg.name or 'custom'}: {c.params:,} parameters, {trained}; {cfg.n_layer} layers, d_model "
        f"{cfg.n_embd}, {cfg.n_head} heads{kv}, MLP {cfg.intermediate_size}, vocab {cfg.vocab_size}",
    ]
    if p.adapter:
        quant = f"; {c.quantized:,} block weights in 4 bits" if c.quantized else ""
        lines.append(f"adapter  {p.adapter}{quant}")
    gpus = f"{p.devices} GPU{'s' if p.devices > 1 else ''}"
    lines += [
        f"batch    {gpus}, {p.precision}; micro-batch {p.micro_batch} x {p.seq_len} tokens, accumulate "
        f"{p.accumulate}: {p.tokens_per_step:,} tokens a step",
        "",
        f"memory per GPU (GiB)      {'weights':>8} {'grads':>8} {'AdamW':>8} {'activations':>12} {'total':>8}",
    ]
    for m in p.memory:
        name = m.strategy + (" + checkpointing" if m.checkpointing else "")
        mark = "  <- recipe" if (m.strategy, m.checkpointing) == (p.strategy, p.checkpointing) else ""
        lines.append(
            f"  {name:<24}{m.weights / GIB:>8.2f} {m.grads / GIB:>8.2f} {m.optimizer / GIB:>8.2f} "
            f"{m.activations / GIB:>12.2f} {m.total / GIB:>8.2f}{mark}"
        )
    if c.quantized:
        lines.append("  (FSDP2: litllm does not shard a QLoRA model)")
    if p.devices == 1:
        lines.append("  (one GPU: DDP is plain training and FSDP2 shards nothing; --devices N plans more)")
    lines += ["", *time_lines(p)]
    return "\n".join(lines)


def time_lines(p: Plan) -> list[str]:
    """The FLOPs, step time and throughput, then the wall time and cost of the run (or of 1,000 steps)."""
    step_flops = p.flops_per_token * p.tokens_per_step
    lines = [
        f"time     {si(p.flops_per_token)}FLOP a token (estimate_flops at {p.seq_len}) x {p.tokens_per_step:,} tokens"
        f" = {si(step_flops)}FLOP a step",
        f"         at {p.mfu:.0%} MFU of {si(p.peak_flops)}FLOP/s a GPU: {duration(p.step_seconds / 3600)} a step, "
        f"{p.tokens_per_second:,.0f} tokens/s ({p.tokens_per_second / p.devices:,.0f} a GPU)",
    ]
    hours, price = p.hours, p.price_per_gpu_hour
    if hours is None:
        per_1000 = 1000 * p.step_seconds / 3600
        epochs = f" (max_epochs: {p.max_epochs})" if p.max_epochs else ""
        return [
            *lines,
            f"run      no max_steps in the recipe{epochs}: give --max_steps N. 1,000 steps: {duration(per_1000)}, "
            f"{money(per_1000 * p.devices * price)} at {money(price)} a GPU-hour",
        ]
    tokens = si(p.max_steps * p.tokens_per_step, ("", "K", "M", "B", "T")).replace(" ", "")
    gpu_hours = p.devices * hours
    gpu_hours_text = f"{gpu_hours:,.0f}" if gpu_hours >= 100 else f"{gpu_hours:.3g}"
    return [
        *lines,
        f"run      {p.max_steps:,} steps, {tokens} tokens: {duration(hours)} x {p.devices} GPU"
        f"{'s' if p.devices > 1 else ''} = {gpu_hours_text} GPU-hours, {money(p.cost)} at {money(price)} a GPU-hour",
    ]


def si(x: float, prefixes: tuple[str, ...] = ("", "k", "M", "G", "T", "P", "E")) -> str:
    """3 significant digits and a prefix: 3.83e15 -> '3.83 P', 375e9 with counting prefixes -> '375 B'."""
    i = 0
    while abs(x) >= 1000 and i < len(prefixes) - 1:
        x, i = x / 1000, i + 1
    return f"{x:.3g} {prefixes[i]}"


def duration(hours: float) -> str:
    """Seconds, minutes or hours, with days beside long runs."""
    if hours < 1 / 60:
        return f"{hours * 3600:.3g} s"
    if hours < 1:
        return f"{hours * 60:.3g} min"
    return f"{hours:,.1f} h" + (f" ({hours / 24:.1f} days)" if hours >= 48 else "")


def money(dollars: float) -> str:
    """Dollars, with cents below $100."""
    return f"${dollars:,.2f}" if dollars < 100 else f"${dollars:,.0f}"
