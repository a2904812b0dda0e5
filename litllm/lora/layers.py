"""LoRA: low-rank adapters on the linear layers of a `GPT`, trained while the base weights stay frozen.

An adapted layer keeps its own weights and its place in the model (its state-dict keys do not change); a `LoRA`
child module holds one or more named adapters and adds the chosen one's update to the layer's output:

    y = W x + b + scale · B (A dropout(x))        A: (r, in), B: (out, r), scale = alpha / r (alpha / √r: rsLoRA)

A fused layer gets one adapter per enabled projection, each on its own rows of the output: `attn.qkv` holds
query, key and value rows (grouped-query shapes: key and value have n_query_groups heads); a gated `mlp.fc` holds
gate and up rows. DoRA rescales each output row of W + scale·BA to a learned magnitude.

Which adapter applies is a property of the model (`use_adapter`), or of each batch row (`adapter_rows`), so one
base matmul serves a batch whose rows use different adapters.
"""

from __future__ import annotations

import dataclasses
import math
import zlib
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from litllm.quantize import dense_linear, dequantize_model, dequantized_weight, is_4bit

if TYPE_CHECKING:
    from litllm.model import GPT

TARGETS = ("query", "key", "value", "projection", "gate", "up", "down", "head")
# names peft, LitGPT and Hugging Face models use for the same layers, and groups of them
ALIASES = {
    "q_proj": ("query",), "k_proj": ("key",), "v_proj": ("value",), "o_proj": ("projection",),
    "out_proj": ("projection",), "dense": ("projection",), "attn": ("query", "key", "value", "projection"),
    "gate_proj": ("gate",), "up_proj": ("up",), "down_proj": ("down",), "fc1": ("up",), "fc2": ("down",),
    "dense_h_to_4h": ("up",), "dense_4h_to_h": ("down",), "mlp": ("gate", "up", "down"), "lm_head": ("head",),
    "all-linear": ("query", "key", "value", "projection", "gate", "up", "down"),
}  # fmt: skip
QUANTIZE = ("nf4", "fp4")
BASE = "base"  # the adapter name that asks for the base model alone


class LoRAError(ValueError):
    """An adapter that does not fit the model, or a LoRA option out of range."""


@dataclass
class LoRAConfig:
    """What to adapt and how: the LoRA options of `GPTModule(lora=...)` and of an adapter folder."""

    r: int = 8
    """Rank of each adapter (A is r x in, B is out x r)."""
    alpha: float = 16.0
    """The update is scaled by alpha / r (alpha / sqrt(r) with rslora)."""
    dropout: float = 0.0
    """Dropout on the adapter's input, in training."""
    query: bool = True
    key: bool = False
    value: bool = True
    projection: bool = False
    """The attention's output projection."""
    mlp: bool = False
    """Every linear layer of the MLP (gate, up, down)."""
    head: bool = False
    """The output head."""
    targets: Optional[list[str]] = None
    """Instead of the switches above: the layers by name (query, key, value, projection, gate, up, down, head, mlp,
    all-linear, or peft's q_proj, v_proj, ...)."""
    rslora: bool = False
    """Rank-stabilised scaling, alpha / sqrt(r)."""
    dora: bool = False
    """DoRA: a learned magnitude for each output row of the adapted weight."""
    quantize: Optional[str] = None
    """QLoRA: hold the frozen weights of the blocks in bitsandbytes 4-bit, "nf4" or "fp4"."""
    double_quant: bool = False
    """With quantize: quantize the 4-bit scales too (about 0.4 bits a weight less)."""
    quantize_head: bool = False
    """With quantize: hold an output head not tied to the embedding in 4-bit too (a small model's head is a large
    share of its weights: a quarter of pythia-160m's). A tied head is the embedding, which stays as it is: then this
    changes nothing. The training loss reads the 4-bit head a block of vocabulary rows at a time."""

    def __post_init__(self) -> None:
        if isinstance(self.r, bool) or not isinstance(self.r, int) or self.r <= 0:
            raise LoRAError(f"lora r must be an integer > 0, got {self.r!r}")
        if not self.alpha > 0:
            raise LoRAError(f"lora alpha must be > 0, got {self.alpha!r}")
        if not 0 <= self.dropout < 1:
            raise LoRAError(f"lora dropout must be in [0, 1), got {self.dropout!r}")
        if self.quantize is not None and self.quantize not in QUANTIZE:
            raise LoRAError(f"lora quantize must be one of {', '.join(QUANTIZE)} (or null), got {self.quantize!r}")
        if self.quantize_head and self.quantize is None:
            raise LoRAError(
                "lora quantize_head=true needs quantize set too, nf4 or fp4 (the head goes to 4-bit with the base)"
            )
        self.target_names()  # an unknown name fails here, not when the model is built

    @property
    def scale(self) -> float:
        return self.alpha / math.sqrt(self.r) if self.rslora else self.alpha / self.r

    def target_names(self) -> tuple[str, ...]:
        """The layers to adapt, as names from TARGETS."""
        if self.targets is None:
            chosen = {t for t in ("query", "key", "value", "projection", "head") if getattr(self, t)}
            if self.mlp:
                chosen |= {"gate", "up", "down"}
        else:
            chosen = set()
            for name in self.targets:
                if name not in TARGETS and name not in ALIASES:
                    accepted = ", ".join([*TARGETS, *ALIASES])
                    raise LoRAError(f"unknown lora target {name!r}; accepted: {accepted}")
                chosen |= set(ALIASES.get(name, (name,)))
        if not chosen:
            raise LoRAError("lora adapts no layer: enable query, key, value, projection, mlp or head, or give targets")
        return tuple(t for t in TARGETS if t in chosen)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LoRAConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise LoRAError(f"unknown LoRA option(s) {', '.join(unknown)}; accepted: {', '.join(sorted(known))}")
        return cls(**data)


def layer_slices(gpt: GPT) -> dict[str, dict[str, tuple[int, int]]]:
    """Each adaptable linear layer of `gpt` by its path, with the output rows (start, stop) of each target in it."""
    c = gpt.config
    q, kv, inner = c.n_head * c.head_size, c.n_query_groups * c.head_size, c.intermediate_size
    gated = c.mlp_class in ("swiglu", "geglu")
    layers: dict[str, dict[str, tuple[int, int]]] = {}
    for i in range(c.n_layer):
        layers[f"h.{i}.attn.qkv"] = {"query": (0, q), "key": (q, q + kv), "value": (q + kv, q + 2 * kv)}
        layers[f"h.{i}.attn.proj"] = {"projection": (0, c.n_embd)}
        layers[f"h.{i}.mlp.fc"] = {"gate": (0, inner), "up": (inner, 2 * inner)} if gated else {"up": (0, inner)}
        layers[f"h.{i}.mlp.proj"] = {"down": (0, c.n_embd)}
    layers["lm_head"] = {"head": (0, c.vocab_size)}
    return layers


class Route:
    """Which adapter the model's LoRA layers apply: one for every row (`active`), or one per batch row (`rows`)."""

    def __init__(self) -> None:
        self.names: list[str] = []  # the model's adapters, in the order they were added
        self.configs: dict[str, LoRAConfig] = {}
        self.active: str | None = None
        self.rows: list[str | None] | None = None
        self.indices: dict[tuple[str, torch.device], torch.Tensor] = {}  # rows of each adapter, for `rows`

    def set_rows(self, rows: list[str | None] | None) -> None:
        self.rows, self.indices = rows, {}

    def row_ids(self, device: torch.device) -> torch.Tensor:
        """(B,): each row's adapter as 1 + its place in `names`, 0 for none (made once per batch)."""
        key = ("", device)
        if key not in self.indices:
            place = {n: i + 1 for i, n in enumerate(self.names)}
            self.indices[key] = torch.tensor([place.get(n, 0) for n in self.rows], device=device)
        return self.indices[key]

    def index(self, name: str, device: torch.device) -> torch.Tensor:
        """The batch rows that use adapter `name` (made once per batch, not once per layer)."""
        key = (name, device)
        if key not in self.indices:
            self.indices[key] = torch.tensor([i for i, n in enumerate(self.rows) if n == name], device=device)
        return self.indices[key]


class LoRAWeights(nn.Module):
    """One adapter of one layer: A (r, in) and B (rows, r) for each of its targets, and DoRA magnitudes."""

    def __init__(self, in_features: int, rows: dict[str, int], config: LoRAConfig, **like: Any) -> None:
        """like: the dtype and device of the tensors."""
        super().__init__()
        self.scale, self.dora = config.scale, config.dora
        self.A = nn.ParameterDict({t: nn.Parameter(torch.empty(config.r, in_features, **like)) for t in rows})
        self.B = nn.ParameterDict({t: nn.Parameter(torch.zeros(n, config.r, **like)) for t, n in rows.items()})
        dora = rows if config.dora else {}
        self.magnitude = nn.ParameterDict({t: nn.Parameter(torch.ones(n, **like)) for t, n in dora.items()})
        self.dropout = nn.Dropout(config.dropout) if config.dropout > 0 else None
        self.norms: dict[str, tuple[tuple, torch.Tensor]] = {}  # DoRA's row norms, while A and B are unchanged
        self.stacks: tuple[tuple, tuple[torch.Tensor, torch.Tensor]] | None = None  # `LoRA.stacked`'s, likewise

    def reset_parameters(self, seed: int, base_rows: dict[str, torch.Tensor] | None = None) -> None:
        """A Kaiming-uniform (drawn from `seed` alone, so a sharded model starts where a whole one does), B zero
        (the layer's output is unchanged until training moves B); DoRA magnitudes the norms of the base weight's
        rows (`base_rows`, per target)."""
        generator = torch.Generator().manual_seed(seed)
        for t, a in self.A.items():
            bound = 1 / math.sqrt(a.shape[1])  # kaiming_uniform_(a=√5), as nn.Linear initialises its weight
            fill(a, (torch.rand(a.shape, generator=generator) * 2 - 1) * bound)
            nn.init.zeros_(self.B[t])
        for t, m in self.magnitude.items():
            fill(m, base_rows[t].float().norm(dim=1))

    def version(self) -> tuple:
        """Changes whenever a tensor of the adapter does (for what is computed from them and kept)."""
        return tuple((p.data_ptr(), p._version) for p in self.parameters())

    def update(self, target: str) -> torch.Tensor:
        """scale · B A: what this adapter adds to the target's rows of the weight, (rows, in)."""
        return (self.B[target] @ self.A[target]) * self.scale


class LoRA(nn.Module):
    """The adapters of one linear layer (a child of it, named `lora`), added to its output by a forward hook."""

    def __init__(self, layer: nn.Module, slices: dict[str, tuple[int, int]], route: Route) -> None:
        super().__init__()
        self.slices = slices
        self.in_features = layer.in_features
        self.adapters = nn.ModuleDict()
        self.gather_cache: tuple[tuple, tuple[torch.Tensor, torch.Tensor]] | None = None  # `gathered`'s
        object.__setattr__(self, "route", route)  # shared by every layer of the model; not a submodule
        object.__setattr__(self, "layer", layer)  # the parent: a reference, not a child (no cycle in modules())
        self.handle = layer.register_forward_hook(self.add_update)

    def add(self, name: str, targets: list[str], config: LoRAConfig, dtype: torch.dtype) -> LoRAWeights:
        rows = {t: self.slices[t][1] - self.slices[t][0] for t in targets}
        weights = LoRAWeights(self.in_features, rows, config, dtype=dtype, device=self.layer.weight.device)
        self.adapters[name] = weights
        return weights

    def base_rows(self, targets: list[str]) -> dict[str, torch.Tensor]:
        w = dense_weight(self.layer)
        return {t: w[slice(*self.slices[t])] for t in targets}

    def add_update(self, layer: nn.Module, args: tuple, out: torch.Tensor) -> torch.Tensor:
        x, route = args[0], self.route
        if route.rows is None:
            if route.active is None or route.active not in self.adapters:
                return out
            return out + self.delta(self.adapters[route.active], x, out)
        if len(route.rows) != x.shape[0]:
            raise LoRAError(f"adapter_rows names {len(route.rows)} adapters for a batch of {x.shape[0]} rows")
        if not torch.is_grad_enabled() and x.dim() == 3 and not any(w.dora for w in self.adapters.values()):
            a, b = self.gathered()  # every adapter at once: two batched matmuls, each row with its own A and B
            ids = route.row_ids(x.device)
            h = torch.bmm(x.to(a.dtype), a[ids].transpose(1, 2))  # (B, T, KR)
            return out + torch.bmm(h, b[ids].transpose(1, 2)).to(out.dtype)  # (B, T, rows)
        delta = None
        for name in dict.fromkeys(route.rows):
            if name is None or name not in self.adapters:
                continue
            idx = route.index(name, x.device)
            part = self.delta(self.adapters[name], x.index_select(0, idx), out.index_select(0, idx))
            delta = (torch.zeros_like(out) if delta is None else delta).index_add(0, idx, part)
        return out if delta is None else out + delta

    def delta(self, w: LoRAWeights, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """What adapter w adds to the layer's output `out` (..., rows) for input x (..., in)."""
        xd = w.dropout(x) if w.dropout is not None else x
        if not w.dora:  # every target at once: two matmuls for the layer
            a, b = self.stacked(w)
            h = F.linear(xd.to(a.dtype), a) * w.scale  # (..., k·r)
            return F.linear(h, b).to(out.dtype)  # (..., rows)
        parts = []
        for t, (start, stop) in self.slices.items():
            if t not in w.A:
                parts.append(out.new_zeros((*out.shape[:-1], stop - start)))
                continue
            a, b = w.A[t], w.B[t]
            d = F.linear(F.linear(xd.to(a.dtype), a), b) * w.scale  # (..., rows of t)
            if w.dora:
                d = self.dora_delta(w, t, d, out[..., start:stop])
            parts.append(d.to(out.dtype))
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)

    def gathered(self) -> tuple[torch.Tensor, torch.Tensor]:
        """For a batch whose rows use different adapters: A (1 + n, KR, in) and B (1 + n, rows, KR) of the model's n
        adapters in `route.names` order (`stacked`, the scale folded into B, zero-padded to the widest, zero for an
        adapter this layer lacks), after an all-zero entry for rows with none; kept while no adapter changes."""
        names = self.route.names
        key = tuple((n, self.adapters[n].version() if n in self.adapters else None) for n in names)
        if self.gather_cache is not None and self.gather_cache[0] == key:
            return self.gather_cache[1]
        parts = [self.stacked(self.adapters[n]) if n in self.adapters else None for n in names]
        first = next(p for p in parts if p is not None)
        width = max(p[0].shape[0] for p in parts if p is not None)
        a = first[0].new_zeros(1 + len(names), width, self.in_features)
        b = first[0].new_zeros(1 + len(names), first[1].shape[0], width)
        for i, (name, p) in enumerate(zip(names, parts, strict=True), start=1):
            if p is not None:
                a[i, : p[0].shape[0]] = p[0]
                b[i, :, : p[1].shape[1]] = p[1] * self.adapters[name].scale
        self.gather_cache = key, (a, b)
        return a, b

    def stacked(self, w: LoRAWeights) -> tuple[torch.Tensor, torch.Tensor]:
        """The A of each of w's targets stacked, (k·r, in), and a B of the layer's whole width, (rows, k·r), that puts
        each target's B on its rows and zeros elsewhere; kept while w is unchanged and no gradient is wanted."""
        targets = [t for t in self.slices if t in w.A]
        if len(targets) == len(self.slices) == 1:
            return w.A[targets[0]], w.B[targets[0]]
        key = w.version()
        grad = torch.is_grad_enabled()
        if not grad and w.stacks is not None and w.stacks[0] == key:
            return w.stacks[1]
        r, k = w.A[targets[0]].shape[0], len(targets)
        a = torch.cat([w.A[t] for t in targets])
        blocks = []
        for t, (start, stop) in self.slices.items():
            if t in w.B:
                i = targets.index(t)
                blocks.append(F.pad(w.B[t], (i * r, (k - 1 - i) * r)))  # its columns of the k·r
            else:
                blocks.append(a.new_zeros(stop - start, k * r))
        stacks = a, torch.cat(blocks)
        if not grad:  # a training step builds them anew: its gradient flows into each A and B
            w.stacks = key, stacks
        return stacks

    def dora_delta(self, w: LoRAWeights, t: str, d: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """DoRA's change to the rows of t: g·(Wx + d) - Wx with g = magnitude / ‖W + scale·BA‖ per row (the norm
        is not differentiated, as in the DoRA paper)."""
        start, stop = self.slices[t]
        g = w.magnitude[t] / self.dora_norm(w, t)
        bias = getattr(self.layer, "bias", None)
        base = out.to(d.dtype) - (bias[start:stop].to(d.dtype) if bias is not None else 0)
        return (g - 1) * base + g * d

    def dora_norm(self, w: LoRAWeights, t: str) -> torch.Tensor:
        """‖W + scale·BA‖ of each row of t, (rows,); kept while A and B are unchanged (generating), so a decode
        step does not multiply B A again."""
        key = (w.A[t]._version, w.B[t]._version, w.A[t].data_ptr(), w.B[t].data_ptr())
        cached = w.norms.get(t)
        if cached is not None and cached[0] == key and not torch.is_grad_enabled():
            return cached[1]
        start, stop = self.slices[t]
        weight = dense_weight(self.layer)[start:stop].to(w.A[t].dtype)
        norm = (weight + w.update(t)).norm(dim=1).detach()  # (rows,)
        w.norms[t] = (key, norm)
        return norm

    def remove(self) -> None:
        self.handle.remove()
        del self.layer._modules["lora"]


def fill(param: nn.Parameter, values: torch.Tensor) -> None:
    """Copy full-size `values` into a parameter, or into this process's shard of a sharded (FSDP2) one."""
    if hasattr(param, "device_mesh"):  # a DTensor
        from torch.distributed.tensor import distribute_tensor

        values = distribute_tensor(values.to(param.dtype), param.device_mesh, param.placements)
    with torch.no_grad():
        param.copy_(values)


def dense_weight(layer: nn.Module) -> torch.Tensor:
    """The weight of a linear layer as a plain (out, in) tensor: a bitsandbytes 4-bit weight dequantized, litllm's
    packed copy read back."""
    if is_4bit(layer):
        return dequantized_weight(layer)
    if getattr(layer, "released", False):
        layer.unpack()
    weight = layer.weight.detach()
    return weight.full_tensor() if hasattr(weight, "full_tensor") else weight  # a DTensor: gathered


# ---- the model's adapters --------------------------------------------------------------------------------------


def route_of(gpt: GPT) -> Route:
    route = gpt.__dict__.get("lora_route")
    if route is None:
        route = Route()
        gpt.__dict__["lora_route"] = route  # plain attribute: not a module, not in the state dict
    return route


def lora_layers(gpt: GPT) -> dict[str, LoRA]:
    """The model's LoRA modules by the path of the layer they adapt."""
    return {name.removesuffix(".lora"): m for name, m in gpt.named_modules() if isinstance(m, LoRA)}


def adapter_names(gpt: GPT) -> list[str]:
    """The names of the adapters on `gpt`, in the order they were added."""
    route = gpt.__dict__.get("lora_route")
    return list(route.names) if route is not None else []


def add_adapter(gpt: GPT, config: LoRAConfig, name: str = "default", init: bool = True) -> None:
    """Add adapter `name` to the layers config targets, in float32 (the base's dtype when that is a float type of a
    model not being trained), and make it the active one if it is the model's first. `init=False` leaves the weights
    to be loaded (or initialised later: `reset_adapter`)."""
    if name in adapter_names(gpt) or name == BASE or not name:
        taken = f"the model already has an adapter named {name!r}" if name else "an adapter needs a name"
        raise LoRAError(taken if name != BASE else f"{BASE!r} names the base model: give the adapter another name")
    targets = set(config.target_names())
    route = route_of(gpt)
    modules = dict(gpt.named_modules())
    for path, slices in layer_slices(gpt).items():
        chosen = [t for t in slices if t in targets]
        if not chosen:
            continue
        layer = modules[path]
        lora = layer._modules.get("lora") or LoRA(layer, slices, route)
        layer.lora = lora
        weights = lora.add(name, chosen, config, adapter_dtype(layer))
        lora.train(layer.training)  # a model loaded for inference is in eval mode: no dropout in its adapters
        if init and weights.A[chosen[0]].device.type != "meta":
            weights.reset_parameters(init_seed(path, name), lora.base_rows(chosen) if config.dora else None)
    route.names.append(name)
    route.configs[name] = config
    if route.active is None and route.rows is None:
        route.active = name


def reset_adapter(gpt: GPT, name: str = "default") -> None:
    """Initialise adapter `name` (A Kaiming-uniform, B zero, DoRA magnitudes from the base weights)."""
    for path, lora in lora_layers(gpt).items():
        if name in lora.adapters:
            w = lora.adapters[name]
            w.reset_parameters(init_seed(path, name), lora.base_rows(list(w.A)) if w.dora else None)


def init_seed(path: str, name: str) -> int:
    """The seed of one layer's adapter, from torch's (the run's seed), the layer and the adapter name (through CRC-32:
    Python's str hash differs from one process to the next)."""
    return (torch.initial_seed() * 1_000_003 + zlib.crc32(f"{path}/{name}".encode())) % 2**63


def adapter_dtype(layer: nn.Module) -> torch.dtype:
    weight = layer.weight
    dtype = weight.dtype
    if type(weight).__name__ in ("Params4bit", "Int8Params") or not dtype.is_floating_point:
        return getattr(layer, "compute_dtype", None) or torch.float32
    return dtype


def quantize_base(gpt: GPT, config: LoRAConfig) -> GPT:
    """Hold the frozen base in 4-bit as `config` asks (QLoRA: its quantize, double_quant and quantize_head), in place;
    layers already in 4-bit, or not loaded yet (on the meta device: `load_checkpoint_in_parts`), stay as they are."""
    from litllm.quantize import quantize_model

    # every 4-bit layer litllm makes is kept from bitsandbytes' CPU repacking (`litllm.quantize._quantized`)
    return quantize_model(gpt, f"bnb.{config.quantize}", double_quant=config.double_quant, head=config.quantize_head)


def freeze_base(gpt: GPT) -> None:
    """Only the adapters train."""
    for name, p in gpt.named_parameters():
        p.requires_grad = ".lora.adapters." in name


@contextmanager
def use_adapter(gpt: GPT, name: str | None) -> Iterator[None]:
    """Apply adapter `name` (None: the base alone) to every row inside the block."""
    if name is not None and name not in adapter_names(gpt):
        raise LoRAError(f"no adapter named {name!r}; the model has: {', '.join(adapter_names(gpt)) or 'none'}")
    route = route_of(gpt)
    saved = route.active, route.rows
    route.active = name
    route.set_rows(None)
    try:
        yield
    finally:
        route.active = saved[0]
        route.set_rows(saved[1])


@contextmanager
def adapter_rows(gpt: GPT, names: list[str | None]) -> Iterator[None]:
    """Apply names[i] (None: the base alone) to batch row i inside the block."""
    known = set(adapter_names(gpt))
    unknown = sorted({n for n in names if n is not None and n not in known})
    if unknown:
        raise LoRAError(f"no adapter named {', '.join(unknown)}; the model has: {', '.join(sorted(known)) or 'none'}")
    route = route_of(gpt)
    saved = route.active, route.rows
    route.set_rows(list(names))
    try:
        yield
    finally:
        route.active = saved[0]
        route.set_rows(saved[1])


def applying(gpt: GPT, names: list[str | None]) -> AbstractContextManager:
    """For one forward: adapter names[i] on batch row i (None: the model's active adapter, if any; BASE: the base
    alone); nothing to do for a model that has never had an adapter."""
    route = gpt.__dict__.get("lora_route")
    if route is None:
        asked = [n for n in names if n not in (None, BASE)]
        if asked:
            raise LoRAError(f"no adapter named {asked[0]!r}: the model has none")
        return nullcontext()
    resolved = [route.active if n is None else None if n == BASE else n for n in names]
    if len(set(resolved)) == 1:
        return use_adapter(gpt, resolved[0])
    return adapter_rows(gpt, resolved)


def remove_adapter(gpt: GPT, name: str) -> None:
    """Drop adapter `name` from every layer (a layer left without adapters loses its LoRA module)."""
    route = route_of(gpt)
    if name not in route.names:
        raise LoRAError(f"no adapter named {name!r}; the model has: {', '.join(route.names) or 'none'}")
    for lora in lora_layers(gpt).values():
        if name in lora.adapters:
            del lora.adapters[name]
            if not len(lora.adapters):
                lora.remove()
    route.names.remove(name)
    route.configs.pop(name, None)
    if route.active == name:
        route.active = None


@contextmanager
def adapters_lifted(gpt: GPT) -> Iterator[None]:
    """Take the adapters off for the block (which may replace the layers they sit on: quantizing), then put them
    back, with the same weights and the same one active."""
    route = gpt.__dict__.get("lora_route")
    if route is None or not route.names:
        yield
        return
    saved = [(n, route.configs[n], {k: v.clone() for k, v in adapter_state_dict(gpt, n).items()}) for n in route.names]
    active = route.active
    for name, _, _ in saved:
        remove_adapter(gpt, name)
    yield
    for name, config, state in saved:
        add_adapter(gpt, config, name, init=False)
        load_adapter_state(gpt, state, name)
    route.active = active


def adapter_state_dict(gpt: GPT, name: str = "default") -> dict[str, torch.Tensor]:
    """Adapter `name`'s tensors, keyed `<layer>.lora.<A|B|magnitude>.<target>` (the adapter file's keys)."""
    return adapter_tensors(gpt.state_dict(), name)


def adapter_tensors(state: dict[str, torch.Tensor], name: str = "default") -> dict[str, torch.Tensor]:
    """Adapter `name`'s tensors in a model's state dict (a full one, gathered from shards), keyed as in its file."""
    infix = f".lora.adapters.{name}."
    return {k.replace(infix, ".lora."): v.detach() for k, v in state.items() if infix in k}


def load_adapter_state(gpt: GPT, state: dict[str, torch.Tensor], name: str = "default", source: str = "") -> None:
    """Copy an adapter file's tensors into adapter `name`; missing, unexpected or misshapen tensors fail, named."""
    own = {}
    for path, lora in lora_layers(gpt).items():
        if name in lora.adapters:
            for key, p in lora.adapters[name].named_parameters():
                own[f"{path}.lora.{key}"] = p
    where = f" in {source}" if source else ""
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or unexpected:
        from litllm.checkpoint.own import first_names

        parts = [f"missing {first_names(missing)}"] if missing else []
        parts += [f"unexpected {first_names(unexpected)}"] if unexpected else []
        raise LoRAError(f"adapter tensors do not match the model{where}: {'; '.join(parts)}")
    for key, p in own.items():
        if tuple(state[key].shape) != tuple(p.shape):
            raise LoRAError(
                f"adapter tensor {key}{where} has shape {tuple(state[key].shape)}, the model needs {tuple(p.shape)}"
            )
        with torch.no_grad():
            p.copy_(state[key])


def merge_adapter(gpt: GPT, name: str = "default") -> None:
    """Fold adapter `name` into the weights of the layers it adapts and remove every adapter. A layer held in 4-bit
    is dequantized first and stays in full precision (its compute dtype); so does every other 4-bit layer (a 4-bit
    head too) when the adapter was trained over a 4-bit base (QLoRA): the result is the merged model in float."""
    route = route_of(gpt)
    config = route.configs.get(name)
    for path, lora in lora_layers(gpt).items():
        layer = lora.layer
        lora.remove()
        if name not in lora.adapters:
            continue
        if is_4bit(layer):
            layer = dense_linear(layer)
            parent, _, child = path.rpartition(".")
            setattr(gpt.get_submodule(parent) if parent else gpt, child, layer)
        w = lora.adapters[name]
        weight = dense_weight(layer).to(torch.float32).clone()
        for t in w.A:
            start, stop = lora.slices[t]
            with torch.no_grad():
                merged = weight[start:stop] + w.update(t).float()
                if w.dora:
                    merged = merged * (w.magnitude[t].float() / merged.norm(dim=1)).unsqueeze(1)
                weight[start:stop] = merged
        if path == "lm_head" and gpt.config.tie_embeddings:  # the head's own weight now: untie it
            gpt.config = dataclasses.replace(gpt.config, tie_embeddings=False)
        layer.weight = nn.Parameter(weight.to(layer.weight.dtype), requires_grad=layer.weight.requires_grad)
    route.names, route.configs, route.active = [], {}, None
    route.set_rows(None)
    if config is not None and config.quantize is not None:
        dequantize_model(gpt)
