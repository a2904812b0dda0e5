"""`linear_cross_entropy`: the output head and the next-token loss of training in one pass over row chunks.

The full logits are never kept in float32 and there is no separate log-softmax backward: each chunk's softmax
turns into its gradient in place, and the head's two gradient matrix products run once over all rows. Same
values as `F.cross_entropy(F.linear(...))` up to float rounding (tests/test_loss.py). On a 2-core AMD EPYC,
pythia-160m's head and loss (2048 rows, bf16 autocast) took 695 ms forward and backward against 1071 ms for the
earlier logsumexp version, with the allocator keeping freed memory (`litllm.cpu.memory`); and no float32 copy of the
logits is held.

A head held in 4-bit (QLoRA's `quantize_head`) is read a block of vocabulary rows at a time (`WeightRows`), each block
dequantized alone and dropped: `RowBlockCrossEntropy`. The softmax needs a row's every logit, so the logits of a group
of rows are made block by block, and the blocks are read again to multiply the logits' gradient back. That holds one
block of the head in float (ROWS_BYTES) at a time, and a group's logits (GROUP_BYTES at most): when evaluating, more
than the plain head's loss holds (a chunk of rows), in training less (it holds the gradient of all rows' logits).
"""

from __future__ import annotations

from typing import Protocol

import torch

from litllm.cpu import frozen, kernels

CHUNK_BYTES = 32 * 2**20  # float32 logits per chunk: small enough to stay in a large last-level cache
GROUP_BYTES = 8 * CHUNK_BYTES  # logits of a group of rows, for a head read in blocks: each group reads it twice
# one block of a head's rows in float32: 1,365 of pythia-160m's 50,304. On a 2-core Xeon its head and loss (256 rows,
# float32) took 0.30 s forward and backward in 4 MB blocks, 0.29 s in 16 MB, 0.25 s with the float head; 16 MB
# blocks left 90 MB more in a training step's peak (the allocator keeps what training frees)
ROWS_BYTES = 4 * 2**20


class WeightRows(Protocol):
    """A (V, C) weight read a block of rows at a time (a 4-bit head: `litllm.quantize.Weight4bit`)."""

    shape: torch.Size
    row_step: int  # a block starts at a multiple of it

    def rows(self, start: int, stop: int) -> torch.Tensor: ...


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype autocast would run a matrix product in here, else x's own."""
    if torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type)
    return x.dtype


def linear_cross_entropy(
    h: torch.Tensor,
    weight: torch.Tensor | WeightRows,
    bias: torch.Tensor | None,
    labels: torch.Tensor,
    ignore_index: int,
) -> torch.Tensor:
    """sum over labelled rows of cross_entropy(h @ weight.T + bias, labels), rows labelled `ignore_index` skipped.

    h: (N, C) features, weight: (V, C) (a `WeightRows` gets no gradient), bias: (V,) or None, labels: (N,). Returns a
    scalar, float32 or float64.
    """
    if isinstance(weight, torch.Tensor):
        return LinearCrossEntropy.apply(h, weight, bias, labels, ignore_index)
    return RowBlockCrossEntropy.apply(h, weight, bias, labels, ignore_index)


def label_logprobs(
    logits: torch.Tensor,
    labels: torch.Tensor,
    ignore_index: int,
    acc: torch.dtype,
    grad: bool,
    out: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The sum over labelled rows of log softmax(logits)[label], logits (n, V), labels (n,); with grad, the loss's
    gradient d (-sum) / d logits (n, V) in `acc`: softmax - one_hot, zero on unlabelled rows. With grad and an `out`
    (n, V) where the gradient is wanted, of logits' dtype and acc's (it may be logits itself), the gradient is made
    there and `out` returned: no (n, V) of its own, no copy."""
    y = labels.clamp(min=0).unsqueeze(1)  # (n, 1)
    valid = labels != ignore_index  # (n,)
    # log_softmax is one vectorised pass; logsumexp and a subtraction took twice as long here
    if grad and out is not None and out.dtype == logits.dtype == acc:
        logp = torch.log_softmax(logits, dim=-1, out=out)  # in place where out is logits: the same values
    else:
        logp = torch.log_softmax(logits, dim=-1, dtype=acc)  # (n, V)
    total = (logp.gather(1, y).squeeze(1) * valid).sum()
    if not grad:
        return total, None
    probs = logp.exp_()
    probs.scatter_add_(1, y, -valid.to(acc).unsqueeze(1))
    if not valid.all():
        probs.mul_(valid.unsqueeze(1))
    return total, probs


def head_logits(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, packs: bool) -> torch.Tensor:
    """h (n, C) @ weight.T + bias, through weight's packed copy if packs."""
    return frozen.product(h, weight, bias) if packs else kernels.product(h, weight, bias)


def input_grad(grad_logits: torch.Tensor, weight: torch.Tensor, packs: bool) -> torch.Tensor:
    """grad_logits (N, V) @ weight (V, C): the gradient of the head's input, through weight's packed copy if packs."""
    return frozen.product(grad_logits, weight, transposed=True) if packs else kernels.product(grad_logits, weight.t())


class LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, weight, bias, labels, ignore_index):  # noqa: ANN001, ANN205 - autograd.Function's signature
        dtype = compute_dtype(h)
        want_grad = any(ctx.needs_input_grad[:3])
        with torch.autocast(h.device.type, enabled=False):
            h_, w_ = h.to(dtype), frozen.cast(weight, dtype)
            b_ = None if bias is None else bias.to(dtype)
            # a frozen float32 head multiplies through its kept packed copies (`litllm.cpu.frozen`)
            packs = frozen.packs_apply(h_, w_)
            if packs and ctx.needs_input_grad[0]:  # made first, while the logits do not exist: it holds the head twice
                frozen.packed_copy(w_, h.shape[0], transposed=True)
            N, V = h.shape[0], weight.shape[0]
            acc = torch.promote_types(dtype, torch.float32)  # softmax and loss precision: float32 at least
            chunk = max(1, CHUNK_BYTES // (4 * V))
            # one chunk: its logits become the gradient in place (no second (N, V)); several: each is written into
            # its rows of the whole gradient
            grad_logits = torch.empty(N, V, dtype=dtype, device=h.device) if want_grad and chunk < N else None
            total = torch.zeros((), dtype=acc, device=h.device)
            for start in range(0, N, chunk):
                rows = slice(start, min(start + chunk, N))
                logits = head_logits(h_[rows], w_, b_, packs)  # (n, V)
                if want_grad and grad_logits is None:
                    grad_logits = logits
                out = grad_logits[rows] if want_grad else None
                logp, grad = label_logprobs(logits, labels[rows], ignore_index, acc, want_grad, out)
                del logits  # before the next chunk's are made
                total -= logp
                if want_grad and grad is not out:
                    out.copy_(grad)
            if want_grad:
                ctx.save_for_backward(
                    input_grad(grad_logits, w_, packs) if ctx.needs_input_grad[0] else None,  # (N, C)
                    kernels.product(grad_logits.t(), h_.t()) if ctx.needs_input_grad[1] else None,  # (V, C)
                    grad_logits.sum(0) if bias is not None and ctx.needs_input_grad[2] else None,  # (V,)
                )
                ctx.dtypes = (h.dtype, weight.dtype, None if bias is None else bias.dtype)
        return total

    @staticmethod
    def backward(ctx, grad_out):  # noqa: ANN001, ANN205
        grads = []
        for g, dtype in zip(ctx.saved_tensors, ctx.dtypes, strict=True):
            # one copy scaled in place (the saved tensor stays as it is, for a second backward)
            grads.append(None if g is None else g.to(dtype, copy=True).mul_(grad_out.to(dtype)))
        return *grads, None, None


class RowBlockCrossEntropy(LinearCrossEntropy):
    """`LinearCrossEntropy` of a weight read a block of rows at a time (`WeightRows`), which gets no gradient: for each
    group of rows, their logits block by block, turned into their gradient in place, then multiplied back by the
    blocks read again. No whole weight in float, ever; the result differs from the plain head's by float rounding."""

    @staticmethod
    def forward(ctx, h, weight, bias, labels, ignore_index):  # noqa: ANN001, ANN205 - autograd.Function's signature
        dtype = compute_dtype(h)
        want_h, want_b = ctx.needs_input_grad[0], bias is not None and ctx.needs_input_grad[2]
        with torch.autocast(h.device.type, enabled=False):
            h_, b_ = h.to(dtype), None if bias is None else bias.to(dtype)
            N, V = h.shape[0], weight.shape[0]
            acc = torch.promote_types(dtype, torch.float32)
            blocks = row_blocks(weight)
            group, chunk = max(1, GROUP_BYTES // (dtype.itemsize * V)), max(1, CHUNK_BYTES // (4 * V))
            total = torch.zeros((), dtype=acc, device=h.device)
            grad_h = torch.empty_like(h_) if want_h else None  # (N, C)
            grad_b = torch.zeros(V, dtype=acc, device=h.device) if want_b else None
            for g in range(0, N, group):
                rows = slice(g, min(g + group, N))
                logits = torch.empty(rows.stop - g, V, dtype=dtype, device=h.device)  # (n, V)
                for start, stop in blocks:
                    b = None if b_ is None else b_[start:stop]
                    logits[:, start:stop] = kernels.product(h_[rows], weight.rows(start, stop).to(dtype), b)
                for c in range(0, len(logits), chunk):
                    part = slice(c, c + chunk)
                    chunk_logits = logits[part]
                    logp, grad = label_logprobs(
                        chunk_logits, labels[rows][part], ignore_index, acc, want_h or want_b, chunk_logits
                    )
                    total -= logp
                    if grad is not None and grad is not chunk_logits:
                        chunk_logits.copy_(grad)  # the logits become the loss's gradient with respect to them
                if want_h:
                    grad_h[rows] = back_product(logits, weight, blocks, acc)
                if want_b:
                    grad_b += logits.sum(0, dtype=acc)
            ctx.save_for_backward(grad_h, None, grad_b)
            ctx.dtypes = (h.dtype, None, None if bias is None else bias.dtype)
        return total


def row_blocks(weight: WeightRows) -> list[tuple[int, int]]:
    """(start, stop) of the blocks of rows a `WeightRows` is read in: ROWS_BYTES of float32 or one row_step each."""
    V, C = weight.shape
    step = weight.row_step
    rows = max(step, ROWS_BYTES // (4 * C) // step * step)
    return [(start, min(start + rows, V)) for start in range(0, V, rows)]


def back_product(grad_logits: torch.Tensor, weight: WeightRows, blocks: list, acc: torch.dtype) -> torch.Tensor:
    """grad_logits (n, V) @ weight (V, C), a block of the weight's rows at a time, summed in `acc`: (n, C)."""
    dtype = grad_logits.dtype
    total = torch.zeros(grad_logits.shape[0], weight.shape[1], dtype=acc, device=grad_logits.device)
    for start, stop in blocks:
        total += kernels.product(grad_logits[:, start:stop], weight.rows(start, stop).to(dtype).t())
    return total.to(dtype)
