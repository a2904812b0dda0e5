"""The Hugging Face families litllm converts: one `HFFamily` record per transformers `model_type`.

A record says everything that differs between families: the fixed `Config` knobs, the architecture class, how
config.json names the sizes and quirks (`ConfigKey`, read and written through the same table), how it states a
sliding window (`Window`), and how each tensor is named (`Rule`, read in both directions). Adding a family is
writing one record in `FAMILIES`; `hf_config` and `hf` hold no family names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from litllm.errors import CheckpointError


@dataclass(frozen=True)
class Rule:
    """One litllm tensor and the Hugging Face tensor(s) it is made of; `{i}` stands for the layer index.

    A rule whose litllm tensor the model does not have (a bias, a QK-norm) is skipped."""

    ours: str
    theirs: tuple[str, ...]
    kind: Literal["copy", "cat", "conv1d", "neox_qkv"] = "copy"
    """copy | cat (concatenate rows) | conv1d (stored transposed) | neox_qkv (q, k, v interleaved per head)"""


@dataclass(frozen=True)
class ConfigKey:
    """A `Config` field and the config.json key that holds it, read and written as it is."""

    ours: str
    theirs: str
    default: Any = None
    """The value transformers assumes when config.json lacks the key (None: let `Config` derive it)."""
    fallback: str | None = None
    """The `Config` field written instead while `ours` is None (its derived meaning, spelled out)."""
    also_written_as: tuple[str, ...] = ()
    """Older names of the key, written too for readers that still look for them."""


@dataclass(frozen=True)
class Window:
    """How a family's config.json states a sliding window (a family without one ignores `sliding_window`)."""

    layer_types: Literal["both", "read", "none"] = "both"
    """Whether `layer_types` names the sliding layers: read and written, read only (the window is written as on
    every layer), or neither (the window is on every layer)."""
    switched: bool = False
    """`use_sliding_window` must be true; without `layer_types`, the layers from `max_window_layers` on slide."""
    period: int = 0
    """Without `layer_types`: every `period`-th layer is global, the rest slide (0: every layer slides)."""
    period_keys: tuple[str, ...] = ()
    """config.json keys that give that period instead."""
    lists_layers: bool = False
    """config.json lists `layer_types` even when no layer slides."""


@dataclass(frozen=True)
class HFFamily:
    """A transformers `model_type` and everything that converts it to and from a litllm `Config` and weights."""

    model_type: str
    architecture: str
    """The causal-LM class named in config.json's `architectures`."""
    knobs: dict[str, Any]
    """`Config` fields every model of the family has."""
    keys: tuple[ConfigKey, ...]
    """Sizes and quirks config.json holds, each under its key."""
    rules: tuple[Rule, ...]
    """The tensor names, one rule per litllm tensor."""
    base_model_prefix: str = "model."
    """What the causal-LM class puts before its base model's tensors (`GPT2LMHeadModel.transformer`, ...)."""
    activation_key: str = "hidden_act"
    """The config.json key that names the MLP's activation."""
    default_activation: str = "silu"
    """The activation transformers assumes when config.json names none."""
    tanh_gelu: str = "gelu_pytorch_tanh"
    """The name this family's config.json gives the tanh-approximated GELU."""
    attention_bias: bool | None = False
    """The default of config.json's `attention_bias` (q, k, v and output biases); None: the knobs fix them."""
    refused_keys: tuple[str, ...] = ()
    """config.json switches that litllm cannot load when they are true."""
    window: Window | None = None
    """How config.json states a sliding window; None: transformers ignores one."""
    text_tower_of: str | None = None
    """The model_type of a multimodal checkpoint whose `text_config` and language model are this family."""


# ---------------------------------------------------------------------------------------------------------------
# config.json keys


def transformers_keys(norm_eps: str = "rms_norm_eps", *extra: ConfigKey) -> tuple[ConfigKey, ...]:
    """The sizes as transformers names them since Llama, with the norm's epsilon under `norm_eps`."""
    return (
        ConfigKey("block_size", "max_position_embeddings", 2048),
        ConfigKey("vocab_size", "vocab_size"),
        ConfigKey("n_layer", "num_hidden_layers"),
        ConfigKey("n_embd", "hidden_size"),
        ConfigKey("n_head", "num_attention_heads"),
        ConfigKey("n_query_groups", "num_key_value_heads"),
        ConfigKey("head_size", "head_dim"),
        ConfigKey("intermediate_size", "intermediate_size"),
        ConfigKey("norm_eps", norm_eps, 1e-5),
        ConfigKey("tie_embeddings", "tie_word_embeddings", False),
        *extra,
    )


GPT2_KEYS = (
    ConfigKey("block_size", "n_positions", 1024, also_written_as=("n_ctx",)),
    ConfigKey("vocab_size", "vocab_size"),
    ConfigKey("n_layer", "n_layer"),
    ConfigKey("n_embd", "n_embd"),
    ConfigKey("n_head", "n_head"),
    ConfigKey("intermediate_size", "n_inner"),
    ConfigKey("norm_eps", "layer_norm_epsilon", 1e-5),
    ConfigKey("tie_embeddings", "tie_word_embeddings", True),
)
MLP_BIAS = ConfigKey("mlp_bias", "mlp_bias", False)
GEMMA_SOFTCAPS = (
    ConfigKey("attn_logit_softcap", "attn_logit_softcapping"),
    ConfigKey("final_logit_softcap", "final_logit_softcapping"),
    ConfigKey("attention_scores_scalar", "query_pre_attn_scalar", fallback="head_size"),
)


# ---------------------------------------------------------------------------------------------------------------
# tensor names


def llama_rules(
    norm_2: str = "post_attention_layernorm",
    post_attn: str | None = None,
    post_mlp: str | None = None,
    fused: bool = False,
    mlp: tuple[str, str | None, str] = ("gate_proj", "up_proj", "down_proj"),
) -> tuple[Rule, ...]:
    """Llama's names, which most later families keep, with the norms and MLP projections they renamed."""
    L, A = "model.layers.{i}.", "model.layers.{i}.self_attn."
    rules = [
        Rule("wte.weight", ("model.embed_tokens.weight",)),
        Rule("ln_f.weight", ("model.norm.weight",)),
        Rule("lm_head.weight", ("lm_head.weight",)),
        Rule("h.{i}.norm_1.weight", (L + "input_layernorm.weight",)),
        Rule("h.{i}.norm_2.weight", (L + norm_2 + ".weight",)),
        Rule("h.{i}.attn.q_norm.weight", (A + "q_norm.weight",)),
        Rule("h.{i}.attn.k_norm.weight", (A + "k_norm.weight",)),
    ]
    if post_attn:
        rules.append(Rule("h.{i}.post_attn_norm.weight", (L + post_attn + ".weight",)))
    if post_mlp:
        rules.append(Rule("h.{i}.post_mlp_norm.weight", (L + post_mlp + ".weight",)))
    for p in ("weight", "bias"):
        if fused:
            rules.append(Rule(f"h.{{i}}.attn.qkv.{p}", (A + f"qkv_proj.{p}",)))
        else:
            rules.append(Rule(f"h.{{i}}.attn.qkv.{p}", tuple(A + f"{x}_proj.{p}" for x in "qkv"), "cat"))
        rules.append(Rule(f"h.{{i}}.attn.proj.{p}", (A + f"o_proj.{p}",)))
        up = tuple(L + f"mlp.{name}.{p}" for name in mlp[:2] if name is not None)
        rules.append(Rule(f"h.{{i}}.mlp.fc.{p}", up, "cat" if len(up) > 1 else "copy"))
        rules.append(Rule(f"h.{{i}}.mlp.proj.{p}", (L + f"mlp.{mlp[2]}.{p}",)))
    return tuple(rules)


def gpt2_rules() -> tuple[Rule, ...]:
    """GPT-2's names; its linear layers are Conv1D, which store the weight transposed."""
    L = "transformer.h.{i}."
    rules = [
        Rule("wte.weight", ("transformer.wte.weight",)),
        Rule("wpe.weight", ("transformer.wpe.weight",)),
        Rule("lm_head.weight", ("lm_head.weight",)),
    ]
    for p in ("weight", "bias"):
        conv = "conv1d" if p == "weight" else "copy"
        rules += [
            Rule(f"ln_f.{p}", (f"transformer.ln_f.{p}",)),
            Rule(f"h.{{i}}.norm_1.{p}", (L + f"ln_1.{p}",)),
            Rule(f"h.{{i}}.norm_2.{p}", (L + f"ln_2.{p}",)),
            Rule(f"h.{{i}}.attn.qkv.{p}", (L + f"attn.c_attn.{p}",), conv),
            Rule(f"h.{{i}}.attn.proj.{p}", (L + f"attn.c_proj.{p}",), conv),
            Rule(f"h.{{i}}.mlp.fc.{p}", (L + f"mlp.c_fc.{p}",), conv),
            Rule(f"h.{{i}}.mlp.proj.{p}", (L + f"mlp.c_proj.{p}",), conv),
        ]
    return tuple(rules)


def neox_rules() -> tuple[Rule, ...]:
    """GPT-NeoX's names; its fused qkv interleaves q, k and v per head."""
    L = "gpt_neox.layers.{i}."
    rules = [Rule("wte.weight", ("gpt_neox.embed_in.weight",)), Rule("lm_head.weight", ("embed_out.weight",))]
    for p in ("weight", "bias"):
        rules += [
            Rule(f"ln_f.{p}", (f"gpt_neox.final_layer_norm.{p}",)),
            Rule(f"h.{{i}}.norm_1.{p}", (L + f"input_layernorm.{p}",)),
            Rule(f"h.{{i}}.norm_2.{p}", (L + f"post_attention_layernorm.{p}",)),
            Rule(f"h.{{i}}.attn.qkv.{p}", (L + f"attention.query_key_value.{p}",), "neox_qkv"),
            Rule(f"h.{{i}}.attn.proj.{p}", (L + f"attention.dense.{p}",)),
            Rule(f"h.{{i}}.mlp.fc.{p}", (L + f"mlp.dense_h_to_4h.{p}",)),
            Rule(f"h.{{i}}.mlp.proj.{p}", (L + f"mlp.dense_4h_to_h.{p}",)),
        ]
    return tuple(rules)


def phi_rules() -> tuple[Rule, ...]:
    """Phi-1/2's names: one shared norm per block, biases everywhere, a biased head."""
    L, A = "model.layers.{i}.", "model.layers.{i}.self_attn."
    rules = [Rule("wte.weight", ("model.embed_tokens.weight",))]
    for p in ("weight", "bias"):
        rules += [
            Rule(f"ln_f.{p}", (f"model.final_layernorm.{p}",)),
            Rule(f"lm_head.{p}", (f"lm_head.{p}",)),
            Rule(f"h.{{i}}.norm_1.{p}", (L + f"input_layernorm.{p}",)),
            Rule(f"h.{{i}}.attn.qkv.{p}", tuple(A + f"{x}_proj.{p}" for x in "qkv"), "cat"),
            Rule(f"h.{{i}}.attn.proj.{p}", (A + f"dense.{p}",)),
            Rule(f"h.{{i}}.mlp.fc.{p}", (L + f"mlp.fc1.{p}",)),
            Rule(f"h.{{i}}.mlp.proj.{p}", (L + f"mlp.fc2.{p}",)),
        ]
    return tuple(rules)


# ---------------------------------------------------------------------------------------------------------------
# the families

SWIGLU = dict(norm_class="rmsnorm", mlp_class="swiglu")
GEMMA = dict(
    norm_class="rmsnorm",
    norm_unit_offset=True,
    mlp_class="geglu",
    post_attention_norm=True,
    post_mlp_norm=True,
    scale_embeddings=True,
)
GEMMA_RULES = llama_rules(
    norm_2="pre_feedforward_layernorm", post_attn="post_attention_layernorm", post_mlp="post_feedforward_layernorm"
)
GEMMA_ACTIVATION = dict(activation_key="hidden_activation", default_activation="gelu_pytorch_tanh")
QWEN_WINDOW = Window(switched=True)
EVERY_LAYER = Window(layer_types="none")

FAMILIES = (
    HFFamily("llama", "LlamaForCausalLM", SWIGLU, transformers_keys("rms_norm_eps", MLP_BIAS), llama_rules()),
    HFFamily(
        "mistral",
        "MistralForCausalLM",
        SWIGLU,
        transformers_keys(),
        llama_rules(),
        window=Window(layer_types="read"),  # a "mistral" config with `layer_types` is read as Ministral
    ),
    HFFamily(
        "qwen2",
        "Qwen2ForCausalLM",
        dict(SWIGLU, qkv_bias=True, proj_bias=False),
        transformers_keys(),
        llama_rules(),
        attention_bias=None,
        window=QWEN_WINDOW,
    ),
    HFFamily(
        "qwen3",
        "Qwen3ForCausalLM",
        dict(SWIGLU, qk_norm="head"),
        transformers_keys(),
        llama_rules(),
        window=QWEN_WINDOW,
    ),
    HFFamily(
        "phi3",
        "Phi3ForCausalLM",
        SWIGLU,
        transformers_keys("rms_norm_eps", MLP_BIAS),
        llama_rules(fused=True, mlp=("gate_up_proj", None, "down_proj")),
        window=EVERY_LAYER,
    ),
    HFFamily(
        "olmo2",
        "Olmo2ForCausalLM",
        dict(SWIGLU, qk_norm="all_heads", pre_attention_norm=False, post_attention_norm=True, post_mlp_norm=True),
        transformers_keys(),
        llama_rules(post_attn="post_attention_layernorm", post_mlp="post_feedforward_layernorm"),
    ),
    HFFamily(
        "gemma2",
        "Gemma2ForCausalLM",
        GEMMA,
        transformers_keys("rms_norm_eps", *GEMMA_SOFTCAPS),
        GEMMA_RULES,
        **GEMMA_ACTIVATION,
        window=Window(period=2, lists_layers=True),
    ),
    HFFamily(
        "gemma3_text",
        "Gemma3ForCausalLM",
        dict(GEMMA, qk_norm="head"),
        transformers_keys("rms_norm_eps", *GEMMA_SOFTCAPS),
        GEMMA_RULES,
        **GEMMA_ACTIVATION,
        window=Window(period=6, period_keys=("sliding_window_pattern", "_sliding_window_pattern"), lists_layers=True),
        text_tower_of="gemma3",
    ),
    HFFamily(
        "gpt2",
        "GPT2LMHeadModel",
        dict(
            position_embedding="learned",
            norm_class="layernorm",
            mlp_class="gelu",
            qkv_bias=True,
            proj_bias=True,
            mlp_bias=True,
        ),
        GPT2_KEYS,
        gpt2_rules(),
        base_model_prefix="transformer.",
        activation_key="activation_function",
        default_activation="gelu_new",
        tanh_gelu="gelu_new",
        attention_bias=None,
    ),
    HFFamily(
        "gpt_neox",
        "GPTNeoXForCausalLM",
        dict(norm_class="layernorm", mlp_class="gelu", mlp_bias=True),
        transformers_keys("layer_norm_eps", ConfigKey("parallel_residual", "use_parallel_residual", True)),
        neox_rules(),
        base_model_prefix="gpt_neox.",
        default_activation="gelu",
        attention_bias=True,
    ),
    HFFamily(
        "phi",
        "PhiForCausalLM",
        dict(
            norm_class="layernorm",
            mlp_class="gelu",
            parallel_residual=True,
            shared_attention_norm=True,
            qkv_bias=True,
            proj_bias=True,
            mlp_bias=True,
            lm_head_bias=True,
        ),
        transformers_keys("layer_norm_eps"),
        phi_rules(),
        default_activation="gelu_new",
        tanh_gelu="gelu_new",
        attention_bias=None,
        refused_keys=("qk_layernorm",),
    ),
    HFFamily(
        "nanochat",
        "NanoChatForCausalLM",
        dict(
            norm_class="rmsnorm",
            norm_affine=False,
            mlp_class="relu2",
            qk_norm="head",
            qk_norm_after_rope=True,
            rope_negate_sin=True,
            embedding_norm=True,
        ),
        transformers_keys("rms_norm_eps", ConfigKey("final_logit_softcap", "final_logit_softcapping")),
        llama_rules(mlp=("fc1", None, "fc2")),
        default_activation="relu2",
    ),
)
HF_FAMILIES: dict[str, HFFamily] = {f.model_type: f for f in FAMILIES}
# multimodal model types whose text tower litllm loads: model_type -> the family of the text tower
TEXT_TOWERS: dict[str, HFFamily] = {f.text_tower_of: f for f in FAMILIES if f.text_tower_of}


def hf_family(model_type: str | None) -> HFFamily:
    """The family of a transformers `model_type`; a CheckpointError names the supported ones."""
    if model_type not in HF_FAMILIES:
        raise CheckpointError(
            f"unsupported Hugging Face model_type {model_type!r}; supported: {', '.join(sorted(HF_FAMILIES))}"
        )
    return HF_FAMILIES[model_type]


__all__ = ["HF_FAMILIES", "TEXT_TOWERS", "ConfigKey", "HFFamily", "Rule", "Window", "hf_family"]
