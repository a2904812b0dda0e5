"""Packed linear weights for CPU inference: the `Linear` layer that holds them, the operator a compiled graph calls
them through, and packing a whole model's layers (`prepack`, `pack_if_faster`).
"""

from __future__ import annotations

import weakref
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.nn as nn
import torch.nn.functional as F

from litllm.cpu import frozen, kernels, memory

if TYPE_CHECKING:
    from litllm.model import GPT

TUNE_BYTES = 64 * 2**20  # block weights `pack_if_faster` times its kernels on, besides the output head


class Linear(nn.Linear):
    """nn.Linear whose CPU inference goes through the kernel this machine runs fastest (`litllm.cpu.kernels`).

    `prepack()` adds a oneDNN prepacked copy of the weight, which on some CPUs multiplies 1.5-2.5x faster than
    F.linear (benchmarks/decode.py). The copy is used only without autograd and only while the weight is the one it
    was made from (same storage, same version counter, so an optimizer step or `load_state_dict` retires it).
    `prepack(release=True)` makes the copy the only one, so packing costs no memory: the weight's own storage is
    freed and it reads NaN until `unpack()` gives it back. Every path that needs its values unpacks first: a
    forward with autograd or off the CPU, `state_dict`, `load_state_dict`, `.to()` and friends, copies and pickles.
    """

    packed: tuple[kernels.Packed, int, int] | None = None  # (oneDNN copy, weight's data_ptr, its _version)
    released: bool = False  # the weight's storage was freed: `packed` holds its only copy

    def prepack(self, release: bool = False) -> int:
        """Make the packed copy (CPU, float32/bfloat16 weights); returns the bytes it adds to the weight's: the
        weight's size, 0 if released or if no copy was made."""
        w = self.weight.detach()
        size = w.numel() * w.element_size()
        packed = self.current_pack()
        if packed is None:
            if not kernels.can_pack(w):
                return 0
            # a weight about to be released gives its memory back block by block as it is packed (when nothing else
            # shares it), so that packing a large output head never holds it twice
            handing_back = release and not self.released and memory.sole_owner(self.weight, other_handles=1)
            packed = kernels.pack(w, memory.release_pages if handing_back else None)
        if release and not self.released:
            # a zero-stride NaN view: same shape and dtype, no memory, and stray reads show up as NaN (made outside
            # inference mode, like the weight it stands for, so that it keeps a version counter)
            with torch.inference_mode(False):
                self.weight.data = torch.full((), float("nan"), dtype=w.dtype).expand(w.shape)
            self.released = True
        self.packed = (packed, self.weight.data_ptr(), self.weight._version)
        key = id(self.weight)
        _packed_layers[key] = weakref.ref(
            self, lambda ref: _packed_layers.pop(key) if _packed_layers.get(key) is ref else None
        )
        return 0 if self.released else size

    def unpack(self) -> None:
        """Drop the packed copy, first giving a released weight its storage and values back from it."""
        if self.packed is not None:
            _forget_plans()
        if self.released and self.current_pack() is not None:
            blocks = list(self.packed[0])
            self.packed = None  # the blocks' only references are now in `blocks`, which `unpacked` empties
            with torch.inference_mode(False):  # a plain tensor again, even when unpacked while generating
                self.weight.data = kernels.unpacked(blocks)
        self.packed = None
        self.released = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu" and not torch.is_grad_enabled():
            if torch.compiler.is_compiling():  # one opaque operator in the graph (see cpu_linear)
                return torch.ops.litllm.cpu_linear(x, self.weight, self.bias)
            return self.cpu_inference(x)
        if self.released:
            self.unpack()
        low = kernels.autocast_dtype(x)
        if low is not None and not self.weight.requires_grad and self.weight.dtype == torch.float32:
            return F.linear(x, frozen.cast(self.weight, low), self.bias)  # a frozen base under autocast
        if x.device.type == "cpu" and frozen.packs_apply(x, self.weight):
            return frozen.PackedLinear.apply(x, self.weight, self.bias)  # a frozen base in float32
        if x.device.type == "cpu" and kernels.train_with_onednn(x, self.weight):
            return kernels.OneDNNLinear.apply(x, self.weight, self.bias)
        return F.linear(x, self.weight, self.bias)

    @torch.compiler.disable  # under torch.compile too: inductor's own lowering of these is slower (mv a lot)
    def cpu_inference(self, x: torch.Tensor) -> torch.Tensor:
        if self.released and kernels.fixed_kernels():  # a training run's evaluation computes as its steps do
            self.unpack()
        packed = self.current_pack()
        if self.released:
            if x.dtype == packed[0].dtype:
                return kernels.packed_linear(x, packed, self.bias)
            self.unpack()
            packed = None
        return kernels.linear(x, self.weight, self.bias, packed)

    def current_pack(self) -> kernels.Packed | None:
        """The packed copy if the weight is still the one it was made from; a stale copy is dropped."""
        if self.packed is None:
            return None
        packed, ptr, version = self.packed
        if self.weight.data_ptr() != ptr or self.weight._version != version:
            _forget_plans()
            self.packed = None  # changed since packing (an optimizer step, load_state_dict): free the copy
            self.released = False  # and a released weight was replaced: it holds what it was given
            return None
        return packed

    def _apply(self, fn, recurse: bool = True):  # .to(), .float(), ...: the packed copy would be stale
        self.unpack()
        return super()._apply(fn, recurse)

    def _save_to_state_dict(self, destination: dict, prefix: str, keep_vars: bool) -> None:
        self.unpack()
        super()._save_to_state_dict(destination, prefix, keep_vars)

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args) -> None:
        self.unpack()
        super()._load_from_state_dict(state_dict, prefix, *args)

    def __getstate__(self) -> dict:  # copies and pickles carry the plain weight, never the packed copy
        state = {**super().__getstate__(), "packed": None, "released": False}
        if self.released and self.current_pack() is not None:
            weight = nn.Parameter(kernels.unpacked(self.packed[0]), requires_grad=self.weight.requires_grad)
            state["_parameters"] = {**state["_parameters"], "weight": weight}
        return state


_unpack_listeners: list[Callable[[], None]] = []  # called before any packed copy goes (`litllm.cpu.step`'s plans)


def on_unpack(listener: Callable[[], None]) -> None:
    """Call `listener` before any packed copy is dropped, so that whatever points into the copies lets go first."""
    _unpack_listeners.append(listener)


def _forget_plans() -> None:
    for listener in _unpack_listeners:
        listener()


# torch.compile cannot trace Linear.cpu_inference (data pointers, version counters, a packed copy in a module
# attribute); broken into pieces around every linear layer, a compiled decode step ran 0.83-0.87x eager speed. So a
# compiled forward calls one opaque operator, which finds the layer that owns the weight and runs its eager path.
_packed_layers: dict[int, weakref.ref] = {}  # id(weight) -> the Linear that packed it


@torch.library.custom_op("litllm::cpu_linear", mutates_args=())
def cpu_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """`Linear.cpu_inference` of the layer `weight` belongs to (plain `kernels.linear` if it never packed)."""
    ref = _packed_layers.get(id(weight))
    layer = ref() if ref is not None else None
    if layer is None or layer.weight is not weight:
        return kernels.linear(x, weight, bias, None)
    return layer.cpu_inference(x)


@cpu_linear.register_fake
def _(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return x.new_empty(*x.shape[:-1], weight.shape[0])


def prepack(model: nn.Module, enabled: bool = True, release: bool = False) -> int:
    """Give every linear layer of `model` a oneDNN prepacked copy of its weight (see `Linear`), or with `enabled=False`
    drop the copies. `release`: the copies replace the weights they were made from, which costs no memory; a weight
    shared with another module (a tied output head) is then left as it is. Returns the bytes the copies add to the
    weights'."""
    linears = [m for m in model.modules() if isinstance(m, Linear)]
    if not enabled:
        for m in linears:
            m.unpack()
            memory.return_freed_memory()  # layer by layer: the packed copies' memory goes back as they are freed
        return 0
    if not release:
        return sum(m.prepack() for m in linears)
    for m in unshared_linears(model):
        if not m.released:
            m.prepack(release=True)
            memory.return_freed_memory()  # layer by layer: the copies never pile up beside the weights
    return 0


@torch.no_grad()
def pack_if_faster(model: GPT, one_row: bool, force: bool = False) -> bool:
    """Replace the model's linear weights by packed copies (`prepack(release=True)`) if `force`, or if on this CPU the
    packed kernel runs decode steps of this kind (one row, or several) faster than the best unpacked kernel, timed on
    the model's own weights (about TUNE_BYTES of the blocks'). Records the kernels it timed as this process's choices
    (`kernels.choose`). Returns whether the weights are packed."""
    linears = [m for m in unshared_linears(model) if m.released or kernels.can_pack(m.weight.detach())]
    if not linears:
        return False
    if any(m.released for m in linears):
        return True  # packed already
    if force:
        prepack(model, release=True)
        return True
    # the blocks' weights only: oneDNN runs an unpacked weight through a reordered copy in a scratchpad it keeps,
    # which for a large output head would stay as big as the head
    sample, size = [], 0
    for m in linears:
        if m is not model.lm_head and size < TUNE_BYTES:
            sample.append(m)
            size += m.weight.numel() * m.weight.element_size()
    if not sample:
        sample = linears
    rows, dtype = 1 if one_row else kernels.PROBE_ROWS, linears[0].weight.dtype
    if model.lm_head in linears and sample is not linears:
        # packed first, before the timing's kernels leave their buffers: packing holds the largest weight twice
        model.lm_head.prepack(release=True)
        memory.return_freed_memory()
    weights = [m.weight.detach() for m in sample]
    seconds = {k: kernels.seconds_per_pass(k, rows, weights) for k in kernels.unpacked_candidates(one_row, dtype)}
    best = min(seconds, key=seconds.get)
    del weights  # they would keep the released weights' memory alive
    prepack(model, release=True)
    packed = kernels.seconds_per_pass("packed", rows, [m.current_pack() for m in sample]) < seconds[best]
    kernels.record(dtype, one_row, False, best)
    kernels.record(dtype, one_row, True, "packed" if packed else best)
    if not packed:
        prepack(model, enabled=False)
    return packed


def unshared_linears(model: nn.Module) -> list[Linear]:
    """The linear layers whose weight no other module uses (a head tied to the embedding is left out)."""
    uses = Counter(id(p) for _, p in model.named_parameters(remove_duplicate=False))
    return [m for m in model.modules() if isinstance(m, Linear) and uses[id(m.weight)] == 1]


def prepacked_bytes(model: nn.Module) -> int:
    """Bytes held by the packed copies that are still current."""
    linears = [m for m in model.modules() if isinstance(m, Linear)]
    return sum(m.weight.numel() * m.weight.element_size() for m in linears if m.current_pack() is not None)
