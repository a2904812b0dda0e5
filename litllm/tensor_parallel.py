"""Where `LLM.distribute` puts a model, and its generation strategy "tensor_parallel": every transformer block split
over N processes, one per GPU (or N CPU processes, which share the cores), as LitGPT's and gpt-fast's.

The processes all run the user's script (SPMD): Lightning Fabric starts it again for ranks 1..N-1 and joins them in
one process group (gloo on the CPU, NCCL on GPUs). Each rank then keeps 1/N of every block: its share of the query
heads and of the key/value groups (the column slices of `attn.qkv`, and so a KV cache of 1/N the heads), of the MLP's
hidden columns (`mlp.fc`, gate and up alike) and the matching input columns of both output projections (`attn.proj`,
`mlp.proj`), whose partial outputs are summed over the ranks (an all-reduce) as they leave the attention and the MLP.
Their biases are added once: rank 0 keeps them, the other ranks hold zeros. Embeddings, norms and the output head are
whole on every rank; the logits are rank 0's, sent to all, so that ranks whose kernels round differently (chosen by
timing in each process, `litllm.cpu.kernels`) still pick the same token and stay in step.
"""

from __future__ import annotations

import dataclasses
import weakref
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed._functional_collectives as funcol

from litllm.config import Config
from litllm.cpu.packing import prepack
from litllm.model import GPT, Block

_split: weakref.WeakKeyDictionary[GPT, int] = weakref.WeakKeyDictionary()  # model -> processes it is split over


def placement(accelerator: str, devices: int | str, strategy: str | None, current: torch.device) -> list[torch.device]:
    """The devices `distribute` puts the model on: several are spread over in order ("sequential") or each run by one
    process holding a shard ("tensor_parallel"; on the CPU, N times the CPU)."""
    if accelerator not in ("auto", "cpu", "cuda", "gpu"):
        raise ValueError(f"accelerator must be 'auto', 'cpu', 'cuda' or 'gpu', got {accelerator!r}")
    if strategy not in (None, "sequential", "tensor_parallel"):
        raise ValueError(f"generate_strategy must be None, 'sequential' or 'tensor_parallel', got {strategy!r}")
    if devices != "auto" and (not isinstance(devices, int) or isinstance(devices, bool) or devices < 1):
        raise ValueError(f"devices must be 'auto' or an integer >= 1, got {devices!r}")
    has_cuda = torch.cuda.is_available()
    kind = "cpu" if accelerator == "cpu" or (accelerator == "auto" and not has_cuda) else "cuda"
    gpus = torch.cuda.device_count() if kind == "cuda" else 0
    if kind == "cuda" and not gpus:
        raise ValueError(f"accelerator={accelerator!r} but no CUDA device is available; use accelerator='cpu'")
    if kind == "cpu" and strategy == "tensor_parallel":
        if devices == "auto":
            raise ValueError(
                "generate_strategy='tensor_parallel' on the CPU needs devices=N: the number of processes that split "
                "the model (they share the CPU's cores)"
            )
        return [torch.device("cpu")] * devices
    count = devices if devices != "auto" else (gpus if strategy else 1)
    if kind == "cpu" and (count > 1 or strategy):
        asked = f"devices={devices!r}" + (f" with generate_strategy={strategy!r}" if strategy else "")
        raise ValueError(
            f"{asked} spreads the model over several GPUs, and this runs on the CPU"
            + ("" if has_cuda else " (no CUDA device here)")
            + ": use devices=1 without generate_strategy (all CPU cores serve one device), or devices=N with "
            "generate_strategy='tensor_parallel' (N CPU processes, each with a shard of the model); on a machine with "
            "2 or more CUDA GPUs, devices=N with generate_strategy='sequential' or 'tensor_parallel'"
        )
    if count > 1 and strategy is None:
        raise ValueError(
            f"devices={count} needs generate_strategy='sequential' (the layers spread over the GPUs) or "
            "'tensor_parallel' (each layer split over them); for one copy per GPU, run `litllm serve`"
        )
    if kind == "cuda" and count > gpus:
        raise ValueError(f"devices={count} but {gpus} CUDA device(s) are available")
    if count == 1 and current.type == kind:
        return [current]  # stay on the GPU it is on ("cuda:1"), not the current default one
    return [torch.device(kind, i) if kind == "cuda" else torch.device(kind) for i in range(count)]


def this_process_devices(model: GPT, targets: list[torch.device], strategy: str | None) -> list[torch.device]:
    """The devices this process puts `model` on: `targets`, or with "tensor_parallel" over several, this rank's one,
    after starting the processes and splitting the model (once: placing it again keeps the shards)."""
    split = _split.get(model)
    tensor_parallel = strategy == "tensor_parallel" and len(targets) > 1
    if split is not None and not (tensor_parallel and len(targets) == split):
        raise ValueError(
            f"this model is split over {split} processes (generate_strategy='tensor_parallel'): distribute() may "
            f"change its precision or KV cache with devices={split} and generate_strategy='tensor_parallel'; for "
            "another placement, load it again"
        )
    if not tensor_parallel:
        return targets
    if split is None:
        shard_config(model.config, len(targets))  # a model that does not split is refused before any process starts
    rank = launch(targets[0].type, len(targets))
    if split is None:
        prepack(model, enabled=False)  # the plain weights, to slice; generating packs the shards again
        shard_model(model, rank, len(targets))
        connect(model)
        _split[model] = len(targets)
    return [targets[rank]]


def launch(kind: str, world_size: int) -> int:
    """Start this script in `world_size` processes (Lightning Fabric runs it again for ranks 1..N-1) and join them in
    one process group; returns this process's rank. A group already running (a second call) is kept."""
    if dist.is_available() and dist.is_initialized():
        if dist.get_world_size() != world_size:
            raise ValueError(f"devices={world_size}, but this script already runs in {dist.get_world_size()} processes")
        return dist.get_rank()
    import lightning as L

    fabric = L.Fabric(accelerator=kind, devices=world_size, strategy="ddp")
    fabric.launch()
    return fabric.global_rank


def process_rank() -> int:
    """This process's rank among those the script runs in (0 when it runs in one)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def process_count() -> int:
    """How many processes the script runs in (1 unless distributed)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def shared_seed(model: GPT) -> int | None:
    """A seed for a request given none: None for a whole model (the global generator draws); for one split over
    processes, a fresh one drawn on rank 0 (from its global generator) and sent to every rank, so all sample alike."""
    if model not in _split:
        return None
    seed = torch.zeros(1, dtype=torch.int64, device=model.wte.weight.device)
    if dist.get_rank() == 0:
        seed.random_(2**62)
    dist.broadcast(seed, src=0)
    return int(seed.item())


# -- splitting --


def allowed_world_sizes(config: Config) -> list[int]:
    """The process counts a model splits over: those dividing n_head, n_query_groups and intermediate_size."""
    sizes = (config.n_head, config.n_query_groups, config.intermediate_size)
    return [n for n in range(1, min(sizes) + 1) if all(size % n == 0 for size in sizes)]


def shard_config(config: Config, world_size: int) -> Config:
    """The `Config` of one rank's shard: n_head, n_query_groups and intermediate_size divided by world_size (head_size
    and n_embd kept), which sizes its blocks and its KV cache."""
    allowed = allowed_world_sizes(config)
    if world_size not in allowed:
        raise ValueError(
            f"devices={world_size} does not split this model: n_head={config.n_head}, n_query_groups="
            f"{config.n_query_groups} and intermediate_size={config.intermediate_size} must all be divisible by it; "
            f"generate_strategy='tensor_parallel' takes devices in {allowed}"
        )
    if config.qk_norm == "all_heads":
        raise ValueError(
            "qk_norm='all_heads' normalises over every head together, which a shard of the heads cannot: use "
            "generate_strategy='sequential' for this model"
        )
    return dataclasses.replace(
        config,
        depth=None,  # n_layer, n_embd and head_size are already derived from it
        head_size=config.head_size,
        n_head=config.n_head // world_size,
        n_query_groups=config.n_query_groups // world_size,
        intermediate_size=config.intermediate_size // world_size,
    )


def shard_model(model: GPT, rank: int, world_size: int) -> GPT:
    """Keep rank's share of every block of `model` (plain weights, not packed), in place; `model.config` becomes the
    shard's. Without `connect`, each block's attention and MLP return this rank's partial sums."""
    config = shard_config(model.config, world_size)
    for i, block in enumerate(model.h):
        state = shard_block_state(block.state_dict(), model.config, rank, world_size)
        with torch.device("meta"):
            shard = Block(config, i)
        shard.load_state_dict(state, assign=True)
        model.h[i] = shard.train(block.training)
    model.config = config
    return model


def shard_block_state(
    state: dict[str, torch.Tensor], config: Config, rank: int, world_size: int
) -> dict[str, torch.Tensor]:
    """A block's weights (as `Block.state_dict` names them) cut to rank's share; the rest (norms) kept whole."""
    nh, nkv, hs, size = config.n_head, config.n_query_groups, config.head_size, config.intermediate_size
    q, kv, inner = nh // world_size * hs, nkv // world_size * hs, size // world_size  # this rank's widths
    gated = config.mlp_class in ("swiglu", "geglu")
    # the first dimension's ranges this rank keeps: qkv rows are [q (nh*hs); k (nkv*hs); v (nkv*hs)], and those of a
    # gated fc [gate (I); up (I)]
    qkv = [(rank * q, q), (nh * hs + rank * kv, kv), ((nh + nkv) * hs + rank * kv, kv)]
    fc = [(rank * inner, inner), (size + rank * inner, inner)] if gated else [(rank * inner, inner)]
    out = dict(state)
    for name, tensor in state.items():
        layer, _, kind = name.rpartition(".")
        if layer in ("attn.qkv", "mlp.fc"):
            out[name] = torch.cat([tensor.narrow(0, start, n) for start, n in (qkv if layer == "attn.qkv" else fc)])
        elif layer in ("attn.proj", "mlp.proj") and kind == "weight":
            width = q if layer == "attn.proj" else inner
            out[name] = tensor.narrow(1, rank * width, width).clone(memory_format=torch.contiguous_format)
        elif layer in ("attn.proj", "mlp.proj"):  # a bias: added once, by rank 0
            out[name] = tensor.clone() if rank == 0 else torch.zeros_like(tensor)
    return out


def connect(model: GPT) -> list[Any]:
    """Join a sharded model's ranks: each block's attention and MLP outputs summed over the process group, the
    logits rank 0's. Returns the hooks' handles."""
    handles = []
    for block in model.h:  # on attn and mlp, not their proj: `quantize` replaces the linear layers
        handles.append(block.attn.register_forward_hook(lambda module, args, out: all_reduce(out)))
        handles.append(block.mlp.register_forward_hook(lambda module, args, out: all_reduce(out)))
    handles.append(model.lm_head.register_forward_hook(lambda module, args, out: broadcast(out)))
    handles.append(model.register_state_dict_pre_hook(refuse_state_dict))
    return handles


# functional collectives: torch.compile traces them into its graph, where `dist.all_reduce` breaks it
def all_reduce(t: torch.Tensor) -> torch.Tensor:
    return funcol.wait_tensor(funcol.all_reduce(t, "sum", dist.group.WORLD))


def broadcast(t: torch.Tensor) -> torch.Tensor:
    return funcol.wait_tensor(funcol.broadcast(t, 0, dist.group.WORLD))


def refuse_state_dict(model: GPT, *args: Any) -> None:
    raise ValueError(
        f"this model is split over {_split.get(model, 'several')} processes (generate_strategy='tensor_parallel'): "
        "each holds a shard, not the weights; save or train before distribute(), or load the checkpoint again"
    )
