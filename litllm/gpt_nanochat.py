"""nanoGPT's and nanochat's methods of `GPT`: generate, get_device, estimate_flops, num_scaling_params,
setup_optimizers (nanochat) and configure_optimizers (nanoGPT), so that their scripts run on litllm's model.

`GPT` inherits them from `NanochatMethods`; they use the model only through its public surface (`forward` with
`kv_caches=`, `new_kv_caches`, its parameters), which keeps model.py the transformer alone.
"""

from __future__ import annotations

import math
import reprlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn as nn

from litllm.config import Config

if TYPE_CHECKING:
    from litllm.model import KVCache


class NanochatMethods:
    """Mixed into `GPT` (an nn.Module with `config`, `wte`, `wpe`, `h`, `ln_f`, `lm_head`)."""

    config: Config
    wte: nn.Embedding
    wpe: nn.Embedding | None

    # ---- generation -------------------------------------------------------------------------------------------

    def generate(
        self,
        input_ids: torch.Tensor | Sequence[int],
        max_new_tokens: int = 256,
        temperature: float = 1.0,
        top_k: int | None = None,
        seed: int | None = None,
        *,
        max_tokens: int | None = None,
    ) -> torch.Tensor | Iterator[int]:
        """Continue `input_ids`: a (B, T) LongTensor gives (B, T + max_new_tokens) back (nanoGPT); a list of ints
        gives an iterator over the new token ids, one int at a time (nanochat).

        temperature 0 picks the most likely token; top_k keeps the k most likely before sampling; seed makes the
        sampling repeatable (None: torch's global generator). `max_tokens` is nanochat's name for max_new_tokens.
        Runs without autograd, on a KV cache of its own (the model's `set_kv_cache` one is left alone), in the
        model's current mode: call `eval()` first when the model has dropout, as nanoGPT's sample.py does.
        A context longer than block_size is cropped to its last block_size tokens, as nanoGPT does: once the cache
        is full each step runs the last block_size tokens again, from position 0.
        """
        if max_tokens is not None:
            if max_new_tokens not in (256, max_tokens):
                raise ValueError(f"max_tokens={max_tokens} and max_new_tokens={max_new_tokens} disagree: give one")
            max_new_tokens = max_tokens
        check_sampling(max_new_tokens, temperature, top_k, seed)
        device = self.get_device()
        as_list = not isinstance(input_ids, torch.Tensor)
        idx = self.check_input_ids(input_ids, device)
        generator = torch.Generator(device=device).manual_seed(seed) if seed is not None and temperature > 0 else None
        steps = self.next_tokens(idx, max_new_tokens, temperature, top_k, generator)
        if as_list:
            return (int(token[0]) for token in steps)
        new = list(steps)
        return torch.cat([idx, torch.stack(new, dim=1)], dim=1) if new else idx

    def check_input_ids(self, input_ids: torch.Tensor | Sequence[int], device: torch.device) -> torch.Tensor:
        """input_ids as a (B, T) int64 tensor on `device`, after checking it holds token ids of this vocabulary."""
        V = self.config.vocab_size
        if isinstance(input_ids, torch.Tensor):
            if input_ids.dim() != 2 or input_ids.shape[1] == 0 or input_ids.shape[0] == 0:
                raise ValueError(f"input_ids must be a (batch, tokens) tensor with tokens, got shape {input_ids.shape}")
            if input_ids.dtype.is_floating_point or input_ids.dtype == torch.bool or input_ids.is_complex():
                raise ValueError(f"input_ids must hold integer token ids, got dtype {input_ids.dtype}")
            idx = input_ids.to(device=device, dtype=torch.long)
            low, high = int(idx.min()), int(idx.max())
        else:
            ids = list(input_ids) if isinstance(input_ids, Sequence) and not isinstance(input_ids, str) else None
            if not ids or not all(isinstance(t, int) and not isinstance(t, bool) for t in ids):
                got = reprlib.repr(input_ids)
                raise ValueError(f"input_ids must be a non-empty list of token ids or a (B, T) tensor, got {got}")
            idx = torch.tensor([ids], dtype=torch.long, device=device)  # (1, T)
            low, high = min(ids), max(ids)
        if low < 0 or high >= V:
            raise ValueError(f"token id {low if low < 0 else high} is outside the vocabulary (0..{V - 1})")
        return idx

    @torch.no_grad()
    def next_tokens(
        self,
        idx: torch.Tensor,
        steps: int,
        temperature: float,
        top_k: int | None,
        generator: torch.Generator | None,
    ) -> Iterator[torch.Tensor]:
        """The next `steps` tokens after idx (B, T), each (B,): one prefill, then one cached step per token."""
        block = self.config.block_size
        window = idx[:, -block:]  # (B, <= block): nanoGPT's crop
        slots = min(block, window.shape[1] + max(steps - 1, 0))  # the last token is never fed back
        caches: list[KVCache] = self.new_kv_caches(idx.shape[0], slots)
        logits = self(window, 0, last_only=True, kv_caches=caches)[:, -1]  # (B, V)
        pos = window.shape[1]
        for step in range(steps):
            token = pick_token(logits, temperature, top_k, generator)  # (B,)
            yield token
            if step == steps - 1:
                break
            window = torch.cat([window, token[:, None]], dim=1)[:, -block:]
            if pos < slots:
                logits = self(token[:, None], pos, kv_caches=caches)[:, -1]
                pos += 1
            else:  # the cache holds block_size tokens: slide the window and run it again from position 0
                logits = self(window, last_only=True)[:, -1]

    # ---- nanochat's helpers -----------------------------------------------------------------------------------

    def get_device(self) -> torch.device:
        """The device the model's parameters are on."""
        return self.wte.weight.device

    def num_scaling_params(self) -> int:
        """Parameters counted for scaling laws: all of them, embeddings included (Chinchilla's count, nanochat's);
        a weight shared by the embedding and the head counts once."""
        return sum(p.numel() for p in self.parameters())

    def estimate_flops(self, seq_len: int | None = None) -> int:
        """FLOPs per token of a forward and backward pass at `seq_len` (default block_size), nanochat's estimate
        (PaLM, appendix B): 6 * N + 12 * n_layer * n_head * head_size * seq_len, where N counts the parameters that
        take part in a matrix multiply: all but the token and position lookup tables (a token table tied to the
        output head does multiply, so it stays in N)."""
        c = self.config
        seq_len = c.block_size if seq_len is None else seq_len
        if seq_len < 1:
            raise ValueError(f"seq_len={seq_len} must be >= 1")
        lookups = 0 if c.tie_embeddings else self.wte.weight.numel()
        if self.wpe is not None:
            lookups += self.wpe.weight.numel()
        return 6 * (self.num_scaling_params() - lookups) + 12 * c.n_layer * c.n_head * c.head_size * seq_len

    # ---- optimizers -------------------------------------------------------------------------------------------

    def setup_optimizers(
        self,
        unembedding_lr: float = 0.004,
        embedding_lr: float = 0.2,
        matrix_lr: float = 0.02,
        weight_decay: float = 0.0,
        scalar_lr: float | None = None,
    ) -> list[torch.optim.Optimizer]:
        """nanochat's optimizers: [AdamW, Muon]. Muon (torch.optim.Muon; AdamW at matrix_lr on a torch without it)
        trains the blocks' matrices at matrix_lr. AdamW (betas (0.8, 0.95), eps 1e-10, `weight_decay`) trains the
        output head at unembedding_lr, the token and position embeddings at embedding_lr, and every vector (biases,
        norm scales) at scalar_lr (default unembedding_lr); its rates are scaled by (n_embd / 768) ** -0.5 as
        nanochat's are. Each parameter that requires grad is in exactly one group; each group keeps `initial_lr`."""
        scale = (self.config.n_embd / 768) ** -0.5
        head, embeddings, vectors, matrices = self.parameter_kinds()
        adam_groups = [
            {"params": head, "lr": unembedding_lr * scale},
            {"params": embeddings, "lr": embedding_lr * scale},
            {"params": vectors, "lr": (unembedding_lr if scalar_lr is None else scalar_lr) * scale},
        ]
        fused = self.get_device().type in ("cuda", "cpu")
        adam_kw = {"betas": (0.8, 0.95), "eps": 1e-10, "weight_decay": weight_decay, "fused": fused}
        adamw = torch.optim.AdamW([g for g in adam_groups if g["params"]], **adam_kw)
        if hasattr(torch.optim, "Muon"):  # torch >= 2.9
            muon = torch.optim.Muon(matrices, lr=matrix_lr, momentum=0.95, weight_decay=0.0)
        else:
            muon = torch.optim.AdamW(matrices, lr=matrix_lr, **adam_kw)
        optimizers = [adamw, muon]
        for optimizer in optimizers:
            for group in optimizer.param_groups:
                group["initial_lr"] = group["lr"]
        return optimizers

    def parameter_kinds(self) -> tuple[list[nn.Parameter], ...]:
        """The trainable parameters split as setup_optimizers trains them: (head, embeddings, vectors, matrices)."""
        head, embeddings, vectors, matrices = [], [], [], []
        for name, p in self.named_parameters():  # a weight tied to the head is listed once, as wte.weight
            if not p.requires_grad:
                continue
            if name.startswith(("wte.", "wpe.")):
                embeddings.append(p)
            elif name.startswith("lm_head.") and p.dim() >= 2:
                head.append(p)
            elif p.dim() >= 2:
                matrices.append(p)
            else:
                vectors.append(p)
        return head, embeddings, vectors, matrices

    def configure_optimizers(
        self,
        weight_decay: float,
        learning_rate: float,
        betas: tuple[float, float],
        device_type: str | None = None,
    ) -> torch.optim.AdamW:
        """nanoGPT's optimizer: one AdamW, weight decay on the parameters of 2 or more dimensions (matrices and
        embeddings) and none on the rest (biases, norm scales); fused on CUDA and CPU."""
        device_type = device_type or self.get_device().type
        params = [p for p in self.parameters() if p.requires_grad]
        groups = [
            {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
        ]
        fused = device_type in ("cuda", "cpu")
        return torch.optim.AdamW(groups, lr=learning_rate, betas=tuple(betas), fused=fused)


def check_sampling(max_new_tokens: int, temperature: float, top_k: int | None, seed: int | None) -> None:
    """Raise ValueError naming the first bad generation argument."""
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens={max_new_tokens!r} must be an int >= 0")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 <= temperature < math.inf:
        raise ValueError(f"temperature={temperature!r} must be a number >= 0 (0 picks the most likely token)")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k={top_k!r} must be None or an int >= 1")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValueError(f"seed={seed!r} must be None or an int")


def pick_token(
    logits: torch.Tensor, temperature: float, top_k: int | None, generator: torch.Generator | None
) -> torch.Tensor:
    """Next token ids (B,) from logits (B, V): the argmax at temperature 0, else a draw from the top_k softmax."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    # shifted so that the largest is 0: a tiny temperature sends the others to -inf, never the top to inf
    logits = (logits.float() - logits.float().amax(dim=-1, keepdim=True)) / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return torch.multinomial(logits.softmax(dim=-1), num_samples=1, generator=generator).squeeze(-1)
