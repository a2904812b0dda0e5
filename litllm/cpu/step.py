"""A CPU decoding step through all the blocks in one C call (`step.c`), in place of the layer-by-layer forward.

At batch 1 a decoding step of a small model spent ~45% of its time outside the linear kernels (pythia-160m in
bfloat16 on an Intel Xeon: 19.8 ms a token, of which the 49 products took 10.8): each block makes ~40 small torch
calls (norms, rotary embeddings, the cache store, activations, residual adds) at 2-20 us each, plus the Python of
the modules around them. `step.c` does that glue in C and calls the same tile and attention kernels
(`litllm.cpu.gemm`, `litllm.cpu.attention`) with the same inputs, so the products are the layer-by-layer path's.

It runs when `GPT.forward` makes one decoding step on the CPU without autograd and every block is one it covers:
float32 or bfloat16 activations and cache, linear weights packed in tiles (`packing.prepack(release=True)`, as the
`Scheduler` packs them) or int8 (`quantize="int8"`), no hooks or adapters on them, LayerNorms or RMSNorms (before
and after attention and MLP, on queries and keys per head or over all heads), a GELU, ReLU² or gated (SwiGLU, GeGLU)
MLP: every family litllm loads. Anything else goes layer by layer, as does everything with `LITLLM_CPU_STEP=0`.
"""

from __future__ import annotations

import ctypes
import functools
import operator
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn as nn

from litllm.cpu import attention as cpu_attention
from litllm.cpu import gemm as cpu_gemm
from litllm.cpu import isa, kernels, native
from litllm.cpu.int8 import Int8Linear
from litllm.cpu.packing import Linear, on_unpack

if TYPE_CHECKING:
    from litllm.model import KVCache

PARTS = 16  # row blocks of one packed weight the C side takes (step.c's PARTS)
DTYPES = {torch.float32: 0, torch.bfloat16: 1}
NORMS = {"layernorm": 1, "rmsnorm": 2}
QK_NORMS = {"none": 0, "head": 1, "all_heads": 2}
BLOCK_PARTS = ("attn", "mlp", "norm_1", "norm_2", "post_attn_norm", "post_mlp_norm")  # a Block's submodules
# step.c's MLP codes: by (mlp_class, gelu_approximate), or by mlp_class alone where no GELU is involved
MLPS = {("gelu", "none"): 0, ("gelu", "tanh"): 1, ("geglu", "none"): 3, ("geglu", "tanh"): 4}
MLPS_WITHOUT_GELU = {"swiglu": 2, "relu2": 5}
GATED_MLPS = (2, 3, 4)  # their fc layer holds gate and up: twice the intermediate size


class _Linear(ctypes.Structure):
    _fields_ = [
        ("in_", ctypes.c_int64),
        ("out", ctypes.c_int64),
        ("parts", ctypes.c_int64),
        ("int8", ctypes.c_int),
        ("tiles", ctypes.c_void_p * PARTS),
        ("scale", ctypes.c_void_p * PARTS),
        ("width", ctypes.c_int64 * PARTS),
        ("bias", ctypes.c_void_p),
    ]


class _Norm(ctypes.Structure):
    _fields_ = [
        ("kind", ctypes.c_int),
        ("unit_offset", ctypes.c_int),
        ("eps", ctypes.c_float),
        ("weight", ctypes.c_void_p),
        ("bias", ctypes.c_void_p),
    ]


class _Block(ctypes.Structure):
    _fields_ = [
        ("norm_1", _Norm),
        ("norm_2", _Norm),
        ("q_norm", _Norm),
        ("k_norm", _Norm),
        ("post_attn", _Norm),
        ("post_mlp", _Norm),
        ("qkv", _Linear),
        ("proj", _Linear),
        ("fc", _Linear),
        ("down", _Linear),
        ("parallel_residual", ctypes.c_int),
        ("mlp", ctypes.c_int),
        ("sliding", ctypes.c_int),
        ("qk_norm", ctypes.c_int),
        ("qk_norm_after_rope", ctypes.c_int),
        ("nh", ctypes.c_int64),
        ("nkv", ctypes.c_int64),
        ("hs", ctypes.c_int64),
        ("rope_n", ctypes.c_int64),
        ("intermediate", ctypes.c_int64),
        ("scale", ctypes.c_float),
        ("cap", ctypes.c_float),
    ]


class _Model(ctypes.Structure):
    _fields_ = [
        ("dtype", ctypes.c_int),
        ("n_layer", ctypes.c_int64),
        ("C", ctypes.c_int64),
        ("blocks", ctypes.POINTER(_Block)),
        ("linear", ctypes.c_void_p),
        ("linear_int8", ctypes.c_void_p),
        ("attend", ctypes.c_void_p),
    ]


class Unsupported(Exception):
    """The model has a part `step.c` does not cover: it decodes layer by layer."""


class Plan:
    """One model's blocks as `step.c` reads them: pointers to its weights (valid while its `Watch` is current) and
    the packed copies they point into."""

    def __init__(self, model: nn.Module, dtype: torch.dtype) -> None:
        c = model.config
        self.dtype = dtype
        self.n_layer = c.n_layer
        self.rope_n = c.rope_n_elem if model.rope is not None else 0
        blocks = (_Block * c.n_layer)()
        for i, (block, b) in enumerate(zip(model.h, blocks, strict=True)):
            attn, mlp = block.attn, block.mlp
            b.norm_1, b.norm_2 = _norm(block.norm_1, dtype), _norm(block.norm_2, dtype)
            b.q_norm, b.k_norm = _norm(attn.q_norm, dtype), _norm(attn.k_norm, dtype)
            b.post_attn, b.post_mlp = _norm(block.post_attn_norm, dtype), _norm(block.post_mlp_norm, dtype)
            b.qk_norm, b.qk_norm_after_rope = QK_NORMS[c.qk_norm], int(c.qk_norm_after_rope)
            b.qkv, b.proj = _linear(attn.qkv, dtype), _linear(attn.proj, dtype)
            b.fc, b.down = _linear(mlp.fc, dtype), _linear(mlp.proj, dtype)
            b.parallel_residual, b.sliding = int(c.parallel_residual), int(c.is_sliding(i))
            b.mlp = MLPS_WITHOUT_GELU.get(c.mlp_class, MLPS.get((c.mlp_class, c.gelu_approximate), -1))
            if b.mlp < 0:
                raise Unsupported(f"mlp_class {c.mlp_class!r}")
            b.nh, b.nkv, b.hs, b.rope_n = attn.n_head, attn.n_kv, attn.hs, self.rope_n
            b.intermediate = c.intermediate_size
            b.scale, b.cap = attn.scale, c.attn_logit_softcap or 0.0
            if b.qkv.out != (b.nh + 2 * b.nkv) * b.hs or b.fc.out != (1 + (b.mlp in GATED_MLPS)) * b.intermediate:
                raise Unsupported("layer shapes")
            if b.proj.out != c.n_embd or b.down.out != c.n_embd or b.down.in_ != b.intermediate:
                raise Unsupported("layer shapes")
        self.blocks = blocks
        gemm, attention = cpu_gemm._library(isa.active()), cpu_attention._library(isa.active())
        self.model = _Model(
            DTYPES[dtype],
            c.n_layer,
            c.n_embd,
            ctypes.cast(blocks, ctypes.POINTER(_Block)),
            _address(gemm, "linear_float32" if dtype == torch.float32 else "linear_bfloat16"),
            _address(gemm, "linear_int8"),
            _address(attention, "attend_float32" if dtype == torch.float32 else "attend_bfloat16"),
        )


def _address(lib: ctypes.CDLL, name: str) -> int:
    return ctypes.cast(getattr(lib, name), ctypes.c_void_p).value


def _norm(module: nn.Module | None, dtype: torch.dtype) -> _Norm:
    if module is None:
        return _Norm(0, 0, 0.0, None, None)
    weight, bias = module.weight, getattr(module, "bias", None)
    for t in (weight, bias):
        if t is not None and (t.dtype != dtype or not t.is_contiguous()):
            raise Unsupported("norm parameters of another dtype")
    if isinstance(module, nn.LayerNorm):
        if len(module.normalized_shape) != 1:
            raise Unsupported("LayerNorm shape")
        kind, unit_offset = NORMS["layernorm"], False
    elif type(module).__name__ == "RMSNorm":
        kind, unit_offset = NORMS["rmsnorm"], module.unit_offset
    else:
        raise Unsupported(f"norm {type(module).__name__}")
    return _Norm(kind, int(unit_offset), module.eps, _ptr(weight), _ptr(bias))


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _linear(module: nn.Module, dtype: torch.dtype) -> _Linear:
    if module._modules:
        raise Unsupported("an adapter on a linear layer")
    bias = module.bias
    if bias is not None and (bias.dtype != dtype or not bias.is_contiguous()):
        raise Unsupported("bias of another dtype")
    if isinstance(module, Int8Linear):
        q = module.qweight
        if not module.tiled or q.shape[0] * cpu_gemm.TILE != module.out_features or module.scale.dtype != torch.float32:
            raise Unsupported("int8 layer")
        parts, scales, int8 = [q], [module.scale], 1
    else:
        if not isinstance(module, Linear) or not module.released or module.current_pack() is None:
            raise Unsupported("weights not packed")
        parts, scales, int8 = list(module.packed[0]), [None] * len(module.packed[0]), 0
        if not all(cpu_gemm.is_tiles(p) and p.dtype == dtype for p in parts) or len(parts) > PARTS:
            raise Unsupported("weights not in tiles")
    widths = [cpu_gemm.out_features(p) for p in parts]
    out = sum(widths)
    if out != module.out_features or any(cpu_gemm.in_features(p) != module.in_features for p in parts):
        raise Unsupported("packed shape")
    lin = _Linear(module.in_features, out, len(parts), int8)
    for i, (p, s, w) in enumerate(zip(parts, scales, widths, strict=True)):
        lin.tiles[i], lin.scale[i], lin.width[i] = p.data_ptr(), _ptr(s), w
    lin.bias = _ptr(bias)
    return lin


class Watch:
    """What a plan read off a model, checked before every step: the same modules, packed copies and parameters, the
    parameters' storage where it was, and no hook or adapter added since. `ok` is the plan, or None if `step.c` does
    not run the model as it was then."""

    def __init__(self, model: nn.Module, dtype: torch.dtype) -> None:
        self.dtype = dtype
        self.same: list[tuple[dict, str, object]] = []  # owner dict, name, the object it held
        self.storage: list[tuple[torch.Tensor, int]] = []  # tensor, its data_ptr then
        self.empty: list[dict] = []  # hook dicts of the modules, and the linear layers' children
        for i, block in enumerate(model.h):
            self._module(model.h, str(i), block)
            attn, mlp = block.attn, block.mlp
            for owner, names in ((block, BLOCK_PARTS), (attn, ("q_norm", "k_norm"))):
                for name in names:
                    self._module(owner, name, owner._modules.get(name))
            for owner, name in ((attn, "qkv"), (attn, "proj"), (mlp, "fc"), (mlp, "proj")):
                m = owner._modules[name]
                self._module(owner, name, m)
                self.empty.append(m._modules)
                for attr in ("packed", "released"):
                    self.same.append((m.__dict__, attr, m.__dict__.get(attr)))
                for store in (m._parameters, m._buffers):
                    for key, t in store.items():
                        self._tensor(store, key, t)
            for norm in [block._modules.get(n) for n in BLOCK_PARTS[2:]] + [attn.q_norm, attn.k_norm]:
                for key, t in ({} if norm is None else norm._parameters).items():
                    self._tensor(norm._parameters, key, t)
        # the checks as columns, for loops that run in C (~30 us a step for 12 blocks)
        owners, names, objs = zip(*self.same, strict=True)
        tensors, ptrs = zip(*self.storage, strict=True) if self.storage else ((), ())
        self.columns = owners, names, objs, tensors, ptrs
        self.hooked = any(self.empty)  # a hook or an adapter: the model goes layer by layer while it has one
        self.ok: Plan | None = None

    def _module(self, owner: nn.Module, name: str, m: nn.Module | None) -> None:
        self.same.append((owner._modules, name, m))
        if m is not None:
            self.empty += (m._forward_hooks, m._forward_pre_hooks)

    def _tensor(self, store: dict, key: str, t: torch.Tensor | None) -> None:
        self.same.append((store, key, t))
        if t is not None:
            self.storage.append((t, t.data_ptr()))

    def current(self, dtype: torch.dtype) -> bool:
        owners, names, objs, tensors, ptrs = self.columns
        return (
            dtype == self.dtype
            and all(map(operator.is_, map(dict.get, owners, names), objs))
            and any(self.empty) == self.hooked
            and all(map(operator.eq, map(torch.Tensor.data_ptr, tensors), ptrs))
        )


_plans: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> its Watch


def plan(model: nn.Module, dtype: torch.dtype) -> Plan | None:
    """The model's plan for activations of `dtype`, built again if anything it reads changed; None if `step.c` does
    not run the model."""
    if dtype not in DTYPES or not _config_covered(model.config) or not available():
        return None
    if nn.modules.module._global_forward_hooks or nn.modules.module._global_forward_pre_hooks:
        return None
    watch = _plans.get(model)
    if watch is None or not watch.current(dtype):
        watch = _plans[model] = Watch(model, dtype)
        try:
            watch.ok = None if watch.hooked else Plan(model, dtype)
        except Unsupported:
            watch.ok = None
    return watch.ok


def forget() -> None:
    """Drop every plan, so that none keeps a packed copy alive (called before any copy goes: `packing.on_unpack`)."""
    _plans.clear()


on_unpack(forget)


def covers(model: nn.Module) -> bool:
    """Whether `step.c` will run this model's decoding steps once its linear weights are packed in tiles (as
    `packing.prepack(release=True)` packs them here): a model of a kind it covers, with layers it takes."""
    dtype = model.wte.weight.dtype
    if dtype not in DTYPES or not _config_covered(model.config) or not available():
        return False
    for block in model.h:
        for m in (block.attn.qkv, block.attn.proj, block.mlp.fc, block.mlp.proj):
            if m._forward_hooks or m._forward_pre_hooks or m._modules:
                return False
            if type(m) is Int8Linear:
                continue
            packable = isinstance(m, Linear) and (m.released or cpu_gemm.supports(m.weight))
            if not packable or m.weight.dtype != dtype:
                return False
    return True


def _config_covered(c) -> bool:
    return c.qk_norm in QK_NORMS and c.norm_class in NORMS


def run(
    model: nn.Module,
    x: torch.Tensor,
    ropes: Sequence[tuple[torch.Tensor, torch.Tensor] | None],
    ranges: Sequence[tuple[torch.Tensor, torch.Tensor]] | None,
    start: int | torch.Tensor,
    caches: Sequence[KVCache],
    length: int,
) -> torch.Tensor | None:
    """x (B, 1, C) after every block, computed by `step.c` (in place); None, nothing done, where it does not run
    these inputs: autograd on, a compiled graph, a training run's evaluation (`kernels.training_kernels`), masks
    other than one key range per row, caches it cannot read.

    ropes: (cos, sin) of the global and of the sliding layers, each (B or 1, 1, 1, n), or None without rotary
    embeddings; ranges: each row's visible keys (lo, hi), (B,) each, for the global and the sliding layers (None:
    the masks are not key ranges); start: the rows' new cache slot (an int for all, or (B,)); caches: one
    KVCache per layer; length: keys visible to the furthest row."""
    B, T, C = x.shape
    if ranges is None or T != 1 or x.device.type != "cpu" or torch.is_grad_enabled() or torch.compiler.is_compiling():
        return None
    if kernels.fixed_kernels():  # a training run's evaluation: its own kernels, the same bits in every process
        return None
    p = plan(model, x.dtype)
    if p is None or len(caches) != p.n_layer:
        return None
    S = caches[0].k.shape[2]
    kv, strides = [], []
    for cache in caches:
        k, v = cache.k, cache.v
        if k.dtype != x.dtype or v.dtype != x.dtype or k.shape[2] != S or v.shape[2] != S or k.shape[0] < B:
            return None
        if k.stride(3) != 1 or v.stride(3) != 1:
            return None
        kv += (k.data_ptr(), v.data_ptr())
        strides += (*k.stride()[:3], *v.stride()[:3])
    if length > S:
        raise ValueError(f"KV cache holds {S} positions, {length} were asked for")
    tables = []
    for rope in ropes:
        if rope is None:
            tables += (None, None)
            continue
        cos, sin = (t.reshape(t.shape[0], -1) for t in rope)
        if cos.shape[1] != p.rope_n or cos.dtype != x.dtype or not (cos.is_contiguous() and sin.is_contiguous()):
            return None
        tables += (cos.data_ptr(), sin.data_ptr())
    rope_rows = ropes[0][0].shape[0] if ropes[0] is not None else 1
    if rope_rows not in (1, B):
        return None
    pos = start.to(torch.int64) if isinstance(start, torch.Tensor) else torch.full((B,), start, dtype=torch.int64)
    bounds = [t.to(torch.int64).contiguous() for pair in ranges for t in pair]
    x = x.contiguous()
    status = _library(isa.active()).step(
        ctypes.byref(p.model),
        x.data_ptr(),
        B,
        (ctypes.c_void_p * 4)(*tables),
        p.rope_n if rope_rows == B else 0,
        pos.contiguous().data_ptr(),
        (ctypes.c_void_p * 4)(*(t.data_ptr() for t in bounds)),
        (ctypes.c_void_p * len(kv))(*kv),
        (ctypes.c_int64 * len(strides))(*strides),
        S,
        torch.get_num_threads(),
    )
    if status == 2:
        raise ValueError(f"cache positions and key ranges must lie within 0..{S - 1}, got positions {pos.tolist()}")
    if status:
        raise MemoryError("cpu step: out of memory for the activations")
    return x


def argmax(logits: torch.Tensor) -> torch.Tensor | None:
    """`logits.argmax(dim=-1)` (the first of equal maxima; the first NaN where a row holds one) of (n, V) float32 or
    bfloat16 CPU logits with contiguous rows, by `step.c`'s vectorized scan; None where that does not run them."""
    if logits.dim() != 2 or logits.dtype not in DTYPES or logits.device.type != "cpu" or logits.stride(1) != 1:
        return None
    n, V = logits.shape
    lib = _library(isa.active()) if 0 < V < 2**31 else None
    if lib is None or logits.requires_grad:
        return None
    out = torch.empty(n, dtype=torch.int64)
    lib.argmax_rows(
        logits.data_ptr(), n, V, logits.stride(0), DTYPES[logits.dtype], out.data_ptr(), torch.get_num_threads()
    )
    return out


def available() -> bool:
    """Whether the step, the tile kernel and the attention kernel all build here (and LITLLM_CPU_STEP is not 0)."""
    return cpu_gemm.available() and cpu_attention.available() and _library(isa.active()) is not None


@functools.cache
def _library(name: str) -> ctypes.CDLL | None:
    """step.c built for instruction set `name`, loaded."""
    # -ffp-contract=off: torch rounds each product of an element-wise operation, and so does this.
    # -fno-trapping-math: the element-wise functions' branches become selects, and their loops vectorize on AVX2 too
    # (AVX-512's masks did without it): a batch-16 step of pythia-160m ran its GELUs in scalar code, ~2 ms a token
    flags = (*isa.build_flags(name), "-ffp-contract=off", "-fno-trapping-math")
    lib = native.load("step.c", "LITLLM_CPU_STEP", "CPU decoding step", "decoding runs layer by layer", flags)
    if lib is None:
        return None
    pointer, i64 = ctypes.c_void_p, ctypes.c_int64
    lib.step.restype = ctypes.c_int
    lib.step.argtypes = [pointer, pointer, i64, pointer, i64, pointer, pointer, pointer, pointer, i64, ctypes.c_int]
    lib.activation.restype = None
    lib.activation.argtypes = [ctypes.c_int, pointer, pointer, i64]
    lib.argmax_rows.restype = None
    lib.argmax_rows.argtypes = [pointer, i64, i64, i64, ctypes.c_int, pointer, ctypes.c_int]
    return lib
