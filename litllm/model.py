"""The GPT: one decoder-only transformer whose `Config` fields cover every supported family.

Shapes: B batch, T tokens in this call, S keys visible (cache length), C n_embd, V vocab,
nh query heads, nkv key/value heads, hs head size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from litllm.config import Config
from litllm.config import GPTConfig as GPTConfig  # nanochat imports GPT and GPTConfig from one module
from litllm.cpu import attention as cpu_attention
from litllm.cpu import step as cpu_step
from litllm.cpu.packing import Linear
from litllm.gpt_nanochat import NanochatMethods


class GPT(NanochatMethods, nn.Module):
    """The transformer; nanoGPT's and nanochat's methods (generate, estimate_flops, setup_optimizers, ...) come from
    `NanochatMethods`."""

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd) if config.position_embedding == "learned" else None
        self.emb_norm = make_norm(config, config.n_embd) if config.embedding_norm else None
        self.drop = nn.Dropout(config.dropout) if config.dropout > 0 else None
        self.h = nn.ModuleList(Block(config, i) for i in range(config.n_layer))
        self.ln_f = make_norm(config, config.n_embd)
        self.lm_head = Linear(config.n_embd, config.vocab_size, bias=config.lm_head_bias)
        if config.tie_embeddings:
            self.lm_head.weight = self.wte.weight
        self.rope = RoPE(config) if config.rope_n_elem else None
        local = config.rope_n_elem and config.rope_local_base is not None  # a second table for local layers
        self.local_rope = RoPE(config, base=config.rope_local_base, scaling=None) if local else self.rope
        self.kv_caches: list[KVCache] | None = None

    @classmethod
    def empty(cls, config: Config, device: torch.device | str = "cpu") -> GPT:
        """A GPT with uninitialised weights on `device`, built without spending time on an init to overwrite."""
        with torch.device("meta"):
            model = cls(config)
        model.to_empty(device=device)
        if config.tie_embeddings:  # to_empty gives each module its own new tensor: tie them again
            model.lm_head.weight = model.wte.weight
        return model

    @property
    def max_seq_length(self) -> int:
        return self.config.block_size

    def forward(
        self,
        idx: torch.Tensor,
        input_pos: int | torch.Tensor | None = None,
        *,
        position_ids: torch.Tensor | None = None,
        key_mask: torch.Tensor | None = None,
        last_only: bool = False,
        length: int | None = None,
        hidden: bool = False,
        segments: Sequence[tuple[int, int]] | None = None,
        kv_caches: Sequence[KVCache] | None = None,
    ) -> torch.Tensor:
        """Logits (B, T, V) for tokens `idx` (B, T).

        input_pos: cache slot of idx[:, 0]; None runs without the KV cache from position 0. A (B,) tensor gives
            each row its own slot (and position) when T == 1: rows of a batch that are at different lengths.
        position_ids: (B, T) positions when they differ from the cache slots (left-padded batches).
        key_mask: (B, S) True where a cache slot holds a real token, S = input_pos + T.
        last_only: compute logits for the last position only (B, 1, V).
        length: with per-row input_pos, the keys the furthest row sees (max(input_pos) + 1), when the caller knows
            it: reading it off the tensor syncs with the device and breaks a torch.compile graph.
        hidden: return the final norm's output (B, T, C) instead of logits, for a loss that applies the head itself.
        segments: (cache row, length) of prompts packed one after the other into idx (1, T), input_pos 0: each is
            stored from slot 0 of its own cache row and attends to itself alone, with the arithmetic of running
            alone (one prefill for several prompts). last_only gives each one's last logits (len(segments), 1, V).
        kv_caches: one cache per layer to read and fill instead of the model's own (`set_kv_cache`).
        """
        B, T = idx.shape
        start = 0 if input_pos is None else input_pos
        caches = self.kv_caches if kv_caches is None else kv_caches
        if input_pos is not None and caches is None:
            raise RuntimeError("input_pos was given but no KV cache: pass kv_caches or call set_kv_cache() first")
        if segments is not None:
            position_ids = self.check_segments(idx, input_pos, segments, position_ids, key_mask, caches)
            start, T = 0, max(n for _, n in segments)  # positions (and masks) reach as far as the longest one
        if isinstance(start, torch.Tensor):
            if T != 1 or start.shape != (B,):
                raise ValueError(f"per-row input_pos must have shape ({B},) with one token per row, got {idx.shape}")
            S = length if length is not None else int(start.max()) + 1  # keys visible to the furthest row
            position_ids = start.view(B, 1) if position_ids is None else position_ids
        else:
            S = start + T
        if self.config.block_size < S:  # S: keys visible after this call
            raise ValueError(f"sequence of {S} tokens is longer than the model's block_size={self.config.block_size}")
        if position_ids is None:
            position_ids = torch.arange(start, S, device=idx.device).unsqueeze(0)  # (1, T)

        x = self.wte(idx)  # (B, T, C)
        if self.config.scale_embeddings:
            x = x * torch.tensor(math.sqrt(self.config.n_embd), dtype=x.dtype)
        if self.wpe is not None:
            x = x + self.wpe(position_ids)
        if self.emb_norm is not None:
            x = self.emb_norm(x)
        if self.drop is not None:
            x = self.drop(x)

        # positions never exceed the last cache slot, start + T - 1
        rope = self.rope.cos_sin(position_ids, S, x.dtype) if self.rope is not None else None
        local = self.local_rope
        local_rope = local.cos_sin(position_ids, S, x.dtype) if local is not self.rope else rope
        masks = AttentionMasks(self.config, start, B, T, S, key_mask, idx.device, segments)
        stepped = None  # a CPU decoding step: every block in one C call where it covers them (litllm.cpu.step)
        if T == 1 and input_pos is not None and segments is None and not self.training and x.device.type == "cpu":
            stepped = cpu_step.run(self, x, (rope, local_rope), masks.key_ranges(), start, caches, S)
        for i, block in enumerate(self.h if stepped is None else ()):  # else the C call ran them all
            sliding = self.config.is_sliding(i)
            cache = caches[i] if input_pos is not None else None
            x = block(x, local_rope if sliding else rope, masks.get(sliding), start, cache, S)
        x = x if stepped is None else stepped

        if last_only and segments is not None:
            ends = torch.tensor([n for _, n in segments], device=idx.device).cumsum(0)
            x = x[0, ends - 1].unsqueeze(1)  # (len(segments), 1, C)
        elif last_only:
            x = x[:, -1:]
        x = self.ln_f(x)
        if hidden:
            return x
        logits = self.lm_head(x)  # (B, T, V)
        if self.config.final_logit_softcap is not None:
            logits = softcap(logits, self.config.final_logit_softcap)
        return logits

    def check_segments(
        self,
        idx: torch.Tensor,
        input_pos: int | torch.Tensor | None,
        segments: Sequence[tuple[int, int]],
        position_ids: torch.Tensor | None,
        key_mask: torch.Tensor | None,
        caches: Sequence[KVCache],
    ) -> torch.Tensor:
        """The position ids (1, T) of packed prompts, after checking that the call can pack them into `caches`."""
        lengths = [n for _, n in segments]
        from_zero = isinstance(input_pos, int) and input_pos == 0
        if idx.shape[0] != 1 or not from_zero or position_ids is not None or key_mask is not None:
            raise ValueError("segments pack prompts into one row of idx at input_pos 0 (no position_ids, no key_mask)")
        rows = caches[0].k.shape[0]
        if not segments or min(lengths) < 1 or sum(lengths) != idx.shape[1]:
            raise ValueError(f"segment lengths {lengths} must be >= 1 and add up to the {idx.shape[1]} tokens given")
        if any(not 0 <= row < rows for row, _ in segments):
            raise ValueError(f"segment rows {[row for row, _ in segments]} must be cache rows, 0..{rows - 1}")
        return torch.cat([torch.arange(n, device=idx.device) for n in lengths]).unsqueeze(0)

    def set_kv_cache(
        self,
        batch_size: int,
        max_seq_length: int | None = None,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        """Preallocate a KV cache of `max_seq_length` slots per layer (default: block_size)."""
        self.kv_caches = self.new_kv_caches(batch_size, max_seq_length, device, dtype)

    def new_kv_caches(
        self,
        batch_size: int,
        max_seq_length: int | None = None,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> list[KVCache]:
        """One empty KV cache per layer, of `max_seq_length` slots (default: block_size), for `kv_caches=`."""
        max_seq_length = max_seq_length or self.config.block_size
        if max_seq_length > self.config.block_size:
            raise ValueError(f"max_seq_length={max_seq_length} exceeds block_size={self.config.block_size}")
        param = self.wte.weight
        device = device or param.device
        dtype = dtype or cpu_attention.kv_cache_dtype(param.dtype, device)
        c = self.config
        return [KVCache.empty(batch_size, c.n_query_groups, max_seq_length, c.head_size, device, dtype) for _ in self.h]

    def clear_kv_cache(self) -> None:
        self.kv_caches = None

    @torch.no_grad()
    def reset_parameters(self, std: float = 0.02) -> None:
        """Initialise for training from scratch: normal(0, std) weights, output projections scaled by
        1/sqrt(2 * n_layer) (GPT-2), zero biases, unit norms (zero where the norm adds a unit offset)."""
        proj_std = std / math.sqrt(2 * self.config.n_layer)
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, proj_std if name.endswith(".proj") else std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, 0.0, std)
            elif isinstance(module, (RMSNorm, nn.LayerNorm)):
                module.reset_parameters()


class Block(nn.Module):
    def __init__(self, config: Config, layer_idx: int) -> None:
        super().__init__()
        self.config = config
        c = config
        self.norm_1 = make_norm(c, c.n_embd) if c.pre_attention_norm else None
        self.attn = CausalSelfAttention(c, layer_idx)
        self.post_attn_norm = make_norm(c, c.n_embd) if c.post_attention_norm else None
        separate_mlp_norm = c.pre_attention_norm and not (c.parallel_residual and c.shared_attention_norm)
        self.norm_2 = make_norm(c, c.n_embd) if separate_mlp_norm else None
        self.mlp = MLP(c)
        self.post_mlp_norm = make_norm(c, c.n_embd) if c.post_mlp_norm else None
        self.drop = nn.Dropout(c.dropout) if c.dropout > 0 else None  # on each branch, before the residual

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor] | None,
        mask: Mask,
        input_pos: int | torch.Tensor,
        cache: KVCache | None,
        length: int,
    ) -> torch.Tensor:
        h = self.norm_1(x) if self.norm_1 is not None else x
        a = self.attn(h, rope, mask, input_pos, cache, length)
        if self.post_attn_norm is not None:
            a = self.post_attn_norm(a)
        if self.drop is not None:
            a = self.drop(a)
        if self.config.parallel_residual:
            return x + a + self.mlp_branch(self.norm_2(x) if self.norm_2 is not None else h)
        x = x + a
        return x + self.mlp_branch(self.norm_2(x) if self.norm_2 is not None else x)

    def mlp_branch(self, h: torch.Tensor) -> torch.Tensor:
        """What the MLP adds to the residual, from its normalised input h."""
        m = self.mlp(h)
        if self.post_mlp_norm is not None:
            m = self.post_mlp_norm(m)
        if self.drop is not None:
            m = self.drop(m)
        return m


class CausalSelfAttention(nn.Module):
    def __init__(self, config: Config, layer_idx: int) -> None:
        super().__init__()
        c = config
        self.config = c
        self.n_head, self.n_kv, self.hs = c.n_head, c.n_query_groups, c.head_size
        # queries, keys and values in one matmul: rows are [q (nh*hs); k (nkv*hs); v (nkv*hs)]
        self.qkv = Linear(c.n_embd, (c.n_head + 2 * c.n_query_groups) * c.head_size, bias=c.qkv_bias)
        self.proj = Linear(c.n_head * c.head_size, c.n_embd, bias=c.proj_bias)
        if c.qk_norm == "head":
            self.q_norm, self.k_norm = make_norm(c, c.head_size), make_norm(c, c.head_size)
        elif c.qk_norm == "all_heads":
            self.q_norm = make_norm(c, c.n_head * c.head_size)
            self.k_norm = make_norm(c, c.n_query_groups * c.head_size)
        else:
            self.q_norm = self.k_norm = None
        self.scale = 1.0 / math.sqrt(c.attention_scores_scalar or c.head_size)
        self.dropout = c.dropout  # on the attention weights, in training mode only

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor] | None,
        mask: Mask,
        input_pos: int | torch.Tensor,
        cache: KVCache | None,
        length: int,
    ) -> torch.Tensor:
        """length: how many cache slots the queries may look at (S)."""
        B, T, _ = x.shape
        nh, nkv, hs = self.n_head, self.n_kv, self.hs
        q, k, v = self.qkv(x).split((nh * hs, nkv * hs, nkv * hs), dim=-1)
        if self.config.qk_norm == "all_heads":
            q, k = self.q_norm(q), self.k_norm(k)
        q = q.view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, nkv, hs).transpose(1, 2)  # (B, nkv, T, hs)
        v = v.view(B, T, nkv, hs).transpose(1, 2)  # (B, nkv, T, hs)
        per_head_norm = self.config.qk_norm == "head"
        if per_head_norm and not self.config.qk_norm_after_rope:
            q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        if per_head_norm and self.config.qk_norm_after_rope:
            q, k = self.q_norm(q), self.k_norm(k)
        if isinstance(mask, Segments):
            y = self.attend_segments(q, k, v, mask, cache).to(x.dtype)
        else:
            if cache is not None:
                k, v = cache.update(input_pos, k, v, length)  # (B, nkv, S, hs), in the cache's dtype (kv_cache_dtype)
            y = self.attend(q.to(k.dtype), k, v, mask).to(x.dtype)  # (B, nh, T, hs)
        y = y.transpose(1, 2).reshape(B, T, nh * hs)
        return self.proj(y)

    def attend_segments(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, segments: Segments, cache: KVCache
    ) -> torch.Tensor:
        """Packed prompts (1, nh | nkv, T, hs): each stored in its own cache row and attended to as if it ran alone."""
        ys, start = [], 0
        for row, n, mask in zip(segments.rows, segments.lengths, segments.masks, strict=True):
            end = start + n
            ks, vs = cache.rows(row, row + 1).update(0, k[:, :, start:end], v[:, :, start:end], n)
            ys.append(self.attend(q[:, :, start:end].to(ks.dtype), ks, vs, mask))
            start = end
        return torch.cat(ys, dim=2)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: Mask) -> torch.Tensor:
        B, nh, T, hs = q.shape
        nkv = k.shape[1]
        p = self.dropout if self.training else 0.0
        if isinstance(mask, KeyRanges):  # one query per row (a decoding step): litllm's CPU kernel where it runs
            if p == 0 and cpu_attention.supports(q, k, v):
                cap = self.config.attn_logit_softcap or 0.0
                return cpu_attention.attend(q, k, v, mask.lo, mask.hi, self.scale, cap).to(q.dtype)
            mask = mask.dense
        if self.config.attn_logit_softcap is not None:
            return self.attend_softcapped(q, k, v, mask, p)
        if isinstance(mask, Tail):  # a single query: only the last `window` keys are visible
            k, v, mask = k[:, :, -mask.window :], v[:, :, -mask.window :], None
        if T == 1 and nkv < nh and (mask is None or isinstance(mask, torch.Tensor)):
            # one query per head, and every head of a row sees the same keys (the mask, if any, is per row):
            # fold the heads of a group into the query axis, no K/V copy (2x faster than enable_gqa with a mask)
            q = q.view(B, nkv, nh // nkv, hs)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p, scale=self.scale)
            return y.view(B, nh, 1, hs)
        is_causal = isinstance(mask, Causal)
        attn_mask = None if mask is None or is_causal else mask
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=p, is_causal=is_causal, scale=self.scale, enable_gqa=nkv < nh
        )

    def attend_softcapped(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: Mask, dropout: float = 0.0
    ) -> torch.Tensor:
        """Attention with tanh-capped scores, which SDPA cannot express."""
        B, nh, T, hs = q.shape
        nkv, S = k.shape[1], k.shape[2]
        if isinstance(mask, Tail):
            k, v, S, mask = k[:, :, -mask.window :], v[:, :, -mask.window :], mask.window, None
        if isinstance(mask, Causal):
            mask = torch.ones(T, S, dtype=torch.bool, device=q.device).tril()
        q = q.view(B, nkv, nh // nkv, T, hs)
        scores = q @ k.unsqueeze(2).transpose(-1, -2) * self.scale  # (B, nkv, g, T, S)
        scores = softcap(scores, self.config.attn_logit_softcap)
        if mask is not None:
            mask = mask.view(mask.shape[0], 1, 1, T, S) if mask.dim() == 4 else mask
            scores = scores.masked_fill(~mask, float("-inf"))
        probs = scores.softmax(dim=-1, dtype=torch.float32).to(v.dtype)
        if dropout:
            probs = F.dropout(probs, dropout)
        y = probs @ v.unsqueeze(2)  # (B, nkv, g, T, hs)
        return y.view(B, nh, T, hs)


@dataclass(frozen=True)
class Causal:
    """Mask kind: plain causal attention over keys that start at position 0 (SDPA's `is_causal`)."""


@dataclass(frozen=True)
class Tail:
    """Mask kind: a single query that sees only the last `window` keys."""

    window: int


@dataclass(frozen=True)
class KeyRanges:
    """Mask kind: one query per row, which sees the keys lo[b]..hi[b]-1 of its row ((B,) int64 each); `dense` is the
    same mask for torch's attention (None, Tail or a bool tensor)."""

    lo: torch.Tensor
    hi: torch.Tensor
    dense: Union[torch.Tensor, Tail, None]


@dataclass(frozen=True)
class Segments:
    """Mask kind: prompts packed into one row (GPT.forward's `segments`), each into cache row rows[i], attending to
    itself alone with the mask masks[i] it has when it runs alone."""

    rows: tuple[int, ...]
    lengths: tuple[int, ...]
    masks: tuple[Mask, ...]


Mask = Union[torch.Tensor, Causal, Tail, KeyRanges, Segments, None]
"""None: every key is visible; a bool tensor (B|1, 1, T, S): True where a query may see a key."""


class AttentionMasks:
    """The attention mask of one forward call, built once and shared by all layers of a kind."""

    def __init__(
        self,
        config: Config,
        start: int | torch.Tensor,
        B: int,
        T: int,
        S: int,
        key_mask: torch.Tensor | None,
        device: torch.device,
        segments: Sequence[tuple[int, int]] | None = None,
    ) -> None:
        self.config, self.start, self.B, self.T, self.S = config, start, B, T, S
        self.key_mask, self.device, self.segments = key_mask, device, segments
        self.cache: dict[bool, Mask] = {}

    def get(self, sliding: bool) -> Mask:
        if sliding not in self.cache:
            self.cache[sliding] = self.build(sliding)
        return self.cache[sliding]

    def key_ranges(self) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
        """(lo, hi) of the global layers' and of the sliding layers' masks, when both are one key range per row (a
        CPU decoding step, `litllm.cpu.step`); None otherwise."""
        sliding = self.config.sliding_window_size is not None
        masks = (self.get(False), self.get(True) if sliding else self.get(False))
        if not all(isinstance(m, KeyRanges) for m in masks):
            return None
        return [(m.lo, m.hi) for m in masks]

    def build(self, sliding: bool) -> Mask:
        if self.segments is not None:
            rows, lengths = zip(*self.segments, strict=True)
            alone = [AttentionMasks(self.config, 0, 1, n, n, None, self.device).build(sliding) for n in lengths]
            return Segments(rows, lengths, tuple(alone))
        window = self.config.sliding_window_size if sliding else None
        if window is not None and window >= self.S:
            window = None
        dense = self.dense(window)
        if self.T > 1 or self.key_mask is not None or self.device.type != "cpu":
            return dense
        # one query per row, at the row's last key
        hi = self.start + 1 if isinstance(self.start, torch.Tensor) else torch.full((self.B,), self.S)
        lo = (hi - window).clamp(min=0) if window is not None else torch.zeros_like(hi)
        return KeyRanges(lo, hi, dense)

    def dense(self, window: int | None) -> Mask:
        """The mask as torch's attention takes it: None, Causal, Tail or a bool tensor."""
        start, T, S = self.start, self.T, self.S
        per_row = isinstance(start, torch.Tensor)
        if self.key_mask is None and not per_row:
            if window is None and T == 1:
                return None
            if window is None and start == 0:
                return Causal()
            if T == 1:
                return Tail(window)
        if per_row:
            q_pos = start.view(-1, 1, 1, 1)  # (B, 1, 1, 1): each row's one query
        else:
            q_pos = torch.arange(start, S, device=self.device).view(1, 1, T, 1)
        k_pos = torch.arange(S, device=self.device).view(1, 1, 1, S)
        mask = k_pos <= q_pos  # (B|1, 1, T, S)
        if window is not None:
            mask = mask & (q_pos - k_pos < window)
        if self.key_mask is not None:
            mask = mask & self.key_mask[:, None, None, :S].to(torch.bool)  # (B, 1, T, S)
        return mask


class MLP(nn.Module):
    def __init__(self, config: Config) -> None:
        super().__init__()
        self.config = config
        c = config
        gated = c.mlp_class in ("swiglu", "geglu")
        # gated MLPs keep gate and up projections in one matmul: rows are [gate (I); up (I)]
        self.fc = Linear(c.n_embd, (2 if gated else 1) * c.intermediate_size, bias=c.mlp_bias)
        self.proj = Linear(c.intermediate_size, c.n_embd, bias=c.mlp_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x)  # (B, T, I) or (B, T, 2I)
        kind = self.config.mlp_class
        if kind == "gelu":
            h = F.gelu(h, approximate=self.config.gelu_approximate)
        elif kind == "relu2":
            h = F.relu(h).square()
        else:  # h holds the rows [gate; up]
            args = (h, kind == "swiglu", self.config.gelu_approximate)
            h = GatedActivation.apply(*args) if torch.is_grad_enabled() and h.requires_grad else gated(*args)
        return self.proj(h)


def gated(h: torch.Tensor, silu: bool, approximate: str) -> torch.Tensor:  # act(gate) * up, h = [gate; up]
    gate, up = h.chunk(2, dim=-1)
    return (F.silu(gate) if silu else F.gelu(gate, approximate=approximate)) * up


class GatedActivation(torch.autograd.Function):
    """`gated`, keeping h alone for backward and making act(gate) again there: autograd keeps act(gate) too, a third
    more of the MLP's activations (half in LoRA, whose frozen projection keeps no input). Autograd's bits exactly."""

    @staticmethod
    def forward(ctx, h: torch.Tensor, silu: bool, approximate: str) -> torch.Tensor:  # noqa: ANN001
        ctx.save_for_backward(h)
        ctx.silu, ctx.approximate = silu, approximate
        return gated(h, silu, approximate)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # noqa: ANN001
        (h,), silu, approximate = ctx.saved_tensors, ctx.silu, ctx.approximate
        dh = torch.empty_like(h)  # both halves written in place: no (..., I) pair to concatenate
        (gate, up), (d_gate, d_up) = h.chunk(2, dim=-1), dh.chunk(2, dim=-1)
        torch.mul(grad, F.silu(gate) if silu else F.gelu(gate, approximate=approximate), out=d_up)
        if silu:
            torch.ops.aten.silu_backward.grad_input(grad * up, gate, grad_input=d_gate)
        else:
            torch.ops.aten.gelu_backward.grad_input(grad * up, gate, approximate=approximate, grad_input=d_gate)
        return dh, None, None


class RMSNorm(nn.Module):
    """Root-mean-square norm computed in float32; `unit_offset` applies the scale as (1 + weight)."""

    def __init__(self, size: int, eps: float, affine: bool = True, unit_offset: bool = False) -> None:
        super().__init__()
        self.eps, self.unit_offset = eps, unit_offset
        self.weight = nn.Parameter(torch.empty(size)) if affine else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.weight is not None:
            nn.init.constant_(self.weight, 0.0 if self.unit_offset else 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        if self.weight is None:
            return x.to(dtype)
        if self.unit_offset:
            return (x * (1.0 + self.weight.float())).to(dtype)
        return self.weight * x.to(dtype)


def make_norm(config: Config, size: int) -> nn.Module:
    if config.norm_class == "rmsnorm":
        return RMSNorm(size, config.norm_eps, affine=config.norm_affine, unit_offset=config.norm_unit_offset)
    return nn.LayerNorm(size, eps=config.norm_eps, elementwise_affine=config.norm_affine, bias=config.norm_bias)


class RoPE:
    """Rotary position tables, computed in float32 on first use and grown as longer positions appear."""

    def __init__(self, config: Config, base: float | None = None, scaling: dict | None = ...) -> None:
        self.n_elem = config.rope_n_elem
        self.base = config.rope_base if base is None else base
        self.scaling = config.rope_scaling if scaling is ... else scaling
        self.negate_sin = config.rope_negate_sin
        self.tables: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def inv_freq(self) -> torch.Tensor:
        inv = 1.0 / (self.base ** (torch.arange(0, self.n_elem, 2, dtype=torch.float32) / self.n_elem))  # (n/2,)
        s = self.scaling
        if s is None:
            return inv
        if s["type"] == "linear":
            return inv / s["factor"]
        # llama3: long wavelengths are slowed by `factor`, short ones kept, the band between interpolated
        factor, low, high, old_len = s["factor"], s["low_freq_factor"], s["high_freq_factor"], s["original_max_seq_len"]
        wavelen = 2 * math.pi / inv
        scaled = torch.where(wavelen > old_len / low, inv / factor, inv)
        smooth = (old_len / wavelen - low) / (high - low)
        blended = (1 - smooth) * scaled / factor + smooth * scaled
        medium = (wavelen >= old_len / high) & (wavelen <= old_len / low)
        return torch.where(medium, blended, scaled)

    def cos_sin(self, position_ids: torch.Tensor, needed: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin for `position_ids` (B|1, T), all below `needed`: each (B|1, 1, T, n_elem) in `dtype`."""
        device = position_ids.device
        cos, sin = self.tables.get(device, (None, None))
        if cos is None or cos.shape[0] < needed:
            length = max(needed, 2 * (cos.shape[0] if cos is not None else 256))
            freqs = torch.outer(torch.arange(length, dtype=torch.float32), self.inv_freq())  # (L, n/2)
            emb = torch.cat((freqs, freqs), dim=-1).to(device)  # (L, n)
            cos, sin = emb.cos(), emb.sin()
            if self.negate_sin:
                sin = -sin
            self.tables[device] = (cos, sin)
        return cos[position_ids].unsqueeze(1).to(dtype), sin[position_ids].unsqueeze(1).to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the first n_elem dimensions of each head of x (B, h, T, hs) by position (rotate-half layout)."""
    n = cos.shape[-1]
    rot, rest = x[..., :n], x[..., n:]
    x1, x2 = rot[..., : n // 2], rot[..., n // 2 :]
    rotated = torch.cat((-x2, x1), dim=-1)
    out = rot * cos + rotated * sin
    return out if rest.shape[-1] == 0 else torch.cat((out, rest), dim=-1)


def softcap(x: torch.Tensor, cap: float) -> torch.Tensor:
    return torch.tanh(x / cap) * cap


class KVCache:
    """Preallocated keys and values of one layer: (B, nkv, max_seq_length, hs) each."""

    def __init__(self, k: torch.Tensor, v: torch.Tensor) -> None:
        self.k, self.v = k, v

    @classmethod
    def empty(
        cls, batch_size: int, n_kv: int, max_seq_length: int, head_size: int, device, dtype: torch.dtype
    ) -> KVCache:
        shape = (batch_size, n_kv, max_seq_length, head_size)
        return cls(torch.zeros(shape, device=device, dtype=dtype), torch.zeros(shape, device=device, dtype=dtype))

    def rows(self, start: int, stop: int) -> KVCache:
        """The cache of batch rows start..stop, sharing this one's memory."""
        return KVCache(self.k[start:stop], self.v[start:stop])

    def update(
        self, input_pos: int | torch.Tensor, k: torch.Tensor, v: torch.Tensor, length: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v (B, nkv, T, hs) at slots input_pos.. and return the keys and values of slots 0..length.

        input_pos: one start slot for every row, or a (B,) tensor of per-row slots when T == 1.
        """
        B, _, T, _ = k.shape
        if length > self.k.shape[2]:
            raise ValueError(f"KV cache holds {self.k.shape[2]} positions, {length} were asked for")
        k, v = k.to(self.k.dtype), v.to(self.v.dtype)
        if isinstance(input_pos, torch.Tensor):  # (B, nkv, hs) into each row's own slot
            if not (cpu_attention.store(self.k[:B], k, input_pos) and cpu_attention.store(self.v[:B], v, input_pos)):
                rows = torch.arange(B, device=k.device)
                self.k[rows, :, input_pos] = k[:, :, 0]
                self.v[rows, :, input_pos] = v[:, :, 0]
        else:
            self.k[:B, :, input_pos : input_pos + T] = k
            self.v[:B, :, input_pos : input_pos + T] = v
        return self.k[:B, :, :length], self.v[:B, :, :length]
