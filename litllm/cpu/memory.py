"""The C library's allocator on Linux (glibc): hand freed memory back, or keep it for reuse during training.

PyTorch's CPU tensors come from `malloc`. glibc maps every large block (above 128 KiB to 32 MiB, adjusted as it
goes) afresh from the kernel and unmaps it on free, so a tensor allocated again at the next step pays a page fault
and a zero-fill for each of its 4 KiB pages. A training step allocates and frees the same large tensors (logits,
activations, gradients, the bf16 copies of autocast) every step: on a 2-core AMD EPYC that cost pythia-160m 12% of a
bf16 step (3.73 s vs 3.29 s) and its output head and loss 26%. Decoding, the other way round, wants released
weights' pages handed back at once.
"""

from __future__ import annotations

import ctypes
import functools
import mmap
import sys

import torch

# mallopt parameters (malloc.h) and glibc's documented defaults
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_MMAP_MAX = -1, -3, -4
DEFAULTS = {M_TRIM_THRESHOLD: 128 * 1024, M_MMAP_THRESHOLD: 128 * 1024, M_MMAP_MAX: 65536}
KEEP = {M_MMAP_MAX: 0, M_TRIM_THRESHOLD: 2**31 - 1}  # no block mapped on its own; nothing trimmed (C ints)

_keeping = False


@functools.cache
def glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (it has malloc_trim and mallopt), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        lib = ctypes.CDLL("libc.so.6")
        lib.malloc_trim, lib.mallopt  # noqa: B018 - musl and others lack them
    except (OSError, AttributeError):
        return None
    return lib


def return_freed_memory() -> None:
    """Hand the pages of freed memory back to the OS (glibc keeps small freed blocks for reuse otherwise, so a
    released weight would still count in the process's memory)."""
    lib = glibc()
    if lib is not None:
        lib.malloc_trim(0)


def keep_freed_memory(keep: bool) -> bool:
    """keep=True: serve every allocation from the allocator's heap and keep freed memory for the next allocation
    (training); False: back to glibc's defaults, and the kept memory is handed back. Returns whether it applies
    here (glibc)."""
    global _keeping
    lib = glibc()
    if lib is None:
        return False
    if keep != _keeping:
        for param, value in (KEEP if keep else DEFAULTS).items():
            lib.mallopt(param, value)
        if not keep:
            lib.malloc_trim(0)
        _keeping = keep
    return True


def return_freed_memory_at_once() -> None:
    """glibc's allocator with its default thresholds, fixed: a large block freed goes back to the OS at once. Left to
    itself glibc raises its threshold as large blocks are freed, and keeps the next ones; training's
    `keep_freed_memory(True)` keeps them all. A model loaded in parts would keep each part's float weights."""
    keep_freed_memory(False)
    lib = glibc()
    if lib is not None:  # set even where they are the defaults: once set, glibc no longer moves them
        for param, value in DEFAULTS.items():
            lib.mallopt(param, value)


def keeping_freed_memory() -> bool:
    """Whether `keep_freed_memory(True)` is in force."""
    return _keeping


MADV_DONTNEED = 4


def sole_owner(t: torch.Tensor, other_handles: int = 0) -> bool:
    """Whether t is the only tensor on its storage (besides `other_handles` handles the caller holds) and spans all
    of it: the condition for `release_pages`."""
    storage = t.untyped_storage()
    use_count = getattr(torch._C, "_storage_Use_Count", None)
    if use_count is None or t.storage_offset() != 0 or storage.nbytes() != t.numel() * t.element_size():
        return False
    return use_count(storage._cdata) == 2 + other_handles  # t's and this function's handles


def release_pages(t: torch.Tensor) -> None:
    """Hand the whole memory pages inside t's bytes back to the OS at once (they read as zeros afterwards): for a
    weight being replaced block by block, whose storage is freed as a whole only at the end."""
    lib = glibc()
    if lib is None or not t.is_contiguous() or t.device.type != "cpu":
        return
    page = mmap.PAGESIZE
    start = -(-t.data_ptr() // page) * page  # the allocator's own header lies before data_ptr: never touched
    end = (t.data_ptr() + t.numel() * t.element_size()) // page * page
    if end > start:
        lib.madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start), MADV_DONTNEED)
