"""`Config`: every architecture knob of a GPT as a named field.

Nothing here looks at a model's name to decide how it behaves; named configs are data (`litllm.catalog`).
"""

from __future__ import annotations

import copy
import difflib
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from litllm.errors import UnknownModelError
from litllm.paths import read_yaml_mapping, write_yaml


@dataclass
class Config:
    """The architecture of a GPT. Derived fields are filled in by `__post_init__`."""

    name: str = ""
    """Registry name of this config ("" for an ad-hoc one)."""
    hf_repo: str | None = None
    """Hugging Face repo id of the checkpoint this config describes, when there is one."""
    hf_model_type: str | None = None
    """`model_type` of the matching transformers architecture (for conversion to Hugging Face format)."""

    # sizes
    block_size: int = 2048
    """Longest sequence the model was trained for (positions)."""
    vocab_size: int = 50304
    """Rows of the token embedding (and of the output head)."""
    n_layer: int = 12
    n_embd: int = 768
    n_head: int = 12
    n_query_groups: int | None = None
    """Key/value heads: n_head = MHA, 1 = MQA, in between = GQA. Defaults to n_head."""
    head_size: int | None = None
    """Width of one attention head. Defaults to n_embd // n_head."""
    intermediate_size: int | None = None
    """Hidden width of the MLP. Defaults to 4 * n_embd."""
    depth: int | None = None
    """nanochat-style scaling: when set, n_layer = depth, n_embd = 64 * depth, heads of 128 (MHA)."""

    # positions
    position_embedding: Literal["learned", "rope", "none"] = "rope"
    rotary_percentage: float = 1.0
    """Fraction of each head's dimensions that are rotated (partial rotary)."""
    rope_base: float = 10000.0
    rope_scaling: dict[str, Any] | None = None
    """RoPE frequency scaling: {"type": "linear", "factor": f} or {"type": "llama3", "factor", "low_freq_factor",
    "high_freq_factor", "original_max_seq_len"}."""
    rope_local_base: float | None = None
    """RoPE base of the sliding-window layers when it differs from the global one (no scaling applied there)."""
    rope_negate_sin: bool = False
    """Rotate by the negative angle (nanochat's convention)."""

    # attention
    qkv_bias: bool = False
    proj_bias: bool = False
    qk_norm: Literal["none", "head", "all_heads"] = "none"
    """Normalise queries and keys: per head ("head") or over all heads together ("all_heads")."""
    qk_norm_after_rope: bool = False
    """Apply the QK-norm after RoPE instead of before it (nanochat)."""
    attn_logit_softcap: float | None = None
    """tanh soft-capping of attention scores: cap * tanh(scores / cap)."""
    attention_scores_scalar: float | None = None
    """Scores are scaled by 1/sqrt(this) instead of 1/sqrt(head_size)."""
    sliding_window_size: int | None = None
    """A query sees at most this many keys (itself included) on sliding-window layers."""
    sliding_window_period: int = 0
    """0: every layer uses the window; p > 0: every p-th layer (counting from 1) is global, the rest slide."""

    # MLP
    mlp_class: Literal["gelu", "swiglu", "geglu", "relu2"] = "gelu"
    gelu_approximate: Literal["none", "tanh"] = "none"
    mlp_bias: bool = False

    # norms and residuals
    norm_class: Literal["layernorm", "rmsnorm"] = "layernorm"
    norm_eps: float = 1e-5
    norm_bias: bool = True
    """LayerNorm has a bias (RMSNorm never does)."""
    norm_affine: bool = True
    """Norms have a learned scale; False gives parameter-free norms (nanochat)."""
    norm_unit_offset: bool = False
    """The norm's scale is stored as w and applied as (1 + w) (Gemma)."""
    pre_attention_norm: bool = True
    """Normalise the block's input before attention (and before the MLP, unless parallel with a shared norm)."""
    post_attention_norm: bool = False
    """Normalise the attention output before it joins the residual."""
    post_mlp_norm: bool = False
    """Normalise the MLP output before it joins the residual."""
    parallel_residual: bool = False
    """x + attn(norm(x)) + mlp(norm(x)) instead of two sequential residual steps."""
    shared_attention_norm: bool = False
    """With parallel_residual: attention and MLP read the same normalised input (one norm)."""
    embedding_norm: bool = False
    """Normalise the token embeddings before the first block (nanochat)."""
    scale_embeddings: bool = False
    """Multiply token embeddings by sqrt(n_embd) (Gemma)."""

    # output
    tie_embeddings: bool = False
    lm_head_bias: bool = False
    final_logit_softcap: float | None = None

    # training
    dropout: float = 0.0
    """Dropout probability in training mode (off in eval mode): on the attention weights, on the embeddings and on
    each block's attention and MLP outputs before they join the residual (nanoGPT's places). 0 adds no op."""
    bias: bool | None = None
    """nanoGPT's switch: True or False sets qkv_bias, proj_bias, mlp_bias and norm_bias (the LayerNorms' bias; RMSNorm
    has none) all at once; None keeps the individual flags. lm_head_bias is left alone (nanoGPT's head has none)."""

    # derived
    rope_n_elem: int = field(init=False, default=0)
    """Rotated dimensions per head: rotary_percentage * head_size."""

    def __post_init__(self) -> None:
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise ValueError(f"dropout={self.dropout!r} must be a number in [0, 1)")
        if self.bias is not None and not isinstance(self.bias, bool):
            raise ValueError(f"bias={self.bias!r} must be True, False or None (keep qkv_bias, proj_bias, ... as set)")
        if self.bias is not None:
            self.qkv_bias = self.proj_bias = self.mlp_bias = self.norm_bias = self.bias
        if self.depth is not None:
            self.n_layer = self.depth
            self.n_embd = 64 * self.depth
            self.n_head = max(1, math.ceil(self.n_embd / 128))
            self.n_query_groups = self.n_head
            self.head_size = 128
        if self.head_size is None:
            if self.n_embd % self.n_head:
                raise ValueError(f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}; set head_size")
            self.head_size = self.n_embd // self.n_head
        if self.n_query_groups is None:
            self.n_query_groups = self.n_head
        if self.n_head % self.n_query_groups:
            raise ValueError(f"n_head={self.n_head} is not a multiple of n_query_groups={self.n_query_groups}")
        if self.intermediate_size is None:
            self.intermediate_size = 4 * self.n_embd
        self.rope_n_elem = int(self.rotary_percentage * self.head_size) if self.position_embedding == "rope" else 0
        if self.rope_n_elem % 2:
            raise ValueError(f"rotary dimensions per head must be even, got {self.rope_n_elem}")
        if self.rope_scaling is not None and self.rope_scaling.get("type") not in ("linear", "llama3"):
            raise ValueError(f"rope_scaling type {self.rope_scaling.get('type')!r} is not one of 'linear', 'llama3'")

    def is_sliding(self, layer_idx: int) -> bool:
        """Whether layer `layer_idx` (0-based) attends through the sliding window."""
        if self.sliding_window_size is None:
            return False
        return self.sliding_window_period == 0 or (layer_idx + 1) % self.sliding_window_period != 0

    def to_dict(self) -> dict[str, Any]:
        """The init fields, as saved in `model_config.yaml`."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.init}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> Config:
        """Build from a mapping, rejecting keys that are not fields."""
        known = {f.name for f in fields(cls) if f.init}
        unknown = sorted(set(data) - known)
        if unknown:
            hints = [difflib.get_close_matches(k, known, n=1) for k in unknown]
            detail = ", ".join(
                f"{k!r}" + (f" (did you mean {h[0]!r}?)" if h else "") for k, h in zip(unknown, hints, strict=True)
            )
            raise ValueError(f"{source}: unknown Config field(s) {detail}")
        return cls(**data)

    @classmethod
    def from_file(cls, path: str | Path) -> Config:
        """Load a `model_config.yaml`."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no model config at {str(path)!r}")
        return cls.from_dict(read_yaml_mapping(path, "mapping of Config fields"), source=str(path))

    def save(self, path: str | Path) -> None:
        """Write `model_config.yaml` atomically."""
        write_yaml(path, self.to_dict())

    @classmethod
    def from_name(cls, name: str, **overrides: Any) -> Config:
        """The catalog's config called `name` (case-insensitive; an HF repo id works too), with overrides."""
        from litllm.catalog import named_configs  # noqa: PLC0415 - the catalog reads its YAML files on first use

        registry = named_configs()
        key = name.lower()
        if key not in registry:
            by_repo = {(c.get("hf_repo") or "").lower(): n for n, c in registry.items()}
            if key in by_repo:
                key = by_repo[key]
            else:
                close = difflib.get_close_matches(key, list(registry), n=5, cutoff=0.5)
                hint = f"; closest: {', '.join(close)}" if close else ""
                raise UnknownModelError(f"unknown model name {name!r}{hint} (`litllm download list` shows all)")
        return cls.from_dict({**copy.deepcopy(registry[key]), **overrides}, source=f"config {name!r}")


@dataclass
class GPTConfig(Config):
    """nanochat's / nanoGPT's `GPTConfig`: a `Config` with their documented defaults (a GPT-2 small sized model
    with RoPE, biases everywhere but the head, a 32768-token vocabulary). It saves as a plain `Config`."""

    vocab_size: int = 32768
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    block_size: int = 1024
    dropout: float = 0.0
    bias: bool | None = True
    rope_base: float = 10000.0


__all__ = ["Config", "GPTConfig", "UnknownModelError"]
