"""nanochat's and nanoGPT's GPT API on litllm's model: `GPTConfig` with the documented defaults, `dropout` and
`bias`, `generate` (tensor and list forms), `get_device`, `estimate_flops`, `num_scaling_params`,
`setup_optimizers` and `configure_optimizers`."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from litllm.config import Config, GPTConfig
from litllm.model import GPT, Causal

VOCAB = 64


def tiny(**overrides) -> GPTConfig:
    sizes = {"vocab_size": VOCAB, "n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 32}
    return GPTConfig(**{**sizes, **overrides})


def tiny_model(seed: int = 0, **overrides) -> GPT:
    torch.manual_seed(seed)
    model = GPT(tiny(**overrides))
    model.reset_parameters()
    return model.eval()


# ---- GPTConfig ------------------------------------------------------------------------------------------------


def test_the_documented_example_gives_logits_of_batch_by_length_by_vocab() -> None:
    from litllm.model import GPTConfig as ModelGPTConfig  # nanochat imports both names from its gpt module

    config = ModelGPTConfig(vocab_size=VOCAB, n_layer=2, n_head=2, n_embd=32, block_size=32)
    model = GPT(config)
    input_ids = torch.randint(0, VOCAB, (3, 7))
    logits = model(input_ids)  # (batch_size, seq_len, vocab_size)
    assert logits.shape == (3, 7, VOCAB)


def test_gpt_config_defaults_are_the_documented_table() -> None:
    config = GPTConfig()
    documented = {
        "vocab_size": 32768,
        "n_layer": 12,
        "n_head": 12,
        "n_embd": 768,
        "block_size": 1024,
        "dropout": 0.0,
        "bias": True,
        "rope_base": 10000.0,
    }
    assert {key: getattr(config, key) for key in documented} == documented
    assert isinstance(config, Config)


def test_gpt_config_saves_and_loads_back_as_a_config_with_the_same_architecture(tmp_path) -> None:
    config = tiny(dropout=0.1)
    config.save(tmp_path / "model_config.yaml")
    loaded = Config.from_file(tmp_path / "model_config.yaml")
    assert type(loaded) is Config
    assert loaded.to_dict() == config.to_dict()
    assert GPTConfig.from_file(tmp_path / "model_config.yaml") == config


def test_a_config_saved_before_dropout_and_bias_existed_still_loads() -> None:
    saved = Config(n_layer=1, n_embd=16, n_head=2, qkv_bias=True).to_dict()
    del saved["dropout"], saved["bias"]
    loaded = Config.from_dict(saved)
    assert (loaded.dropout, loaded.bias, loaded.qkv_bias, loaded.mlp_bias) == (0.0, None, True, False)


@pytest.mark.parametrize("dropout", [-0.1, 1.0, 1.5, float("nan"), "0.1", True])
def test_dropout_outside_zero_to_one_is_refused_by_name(dropout) -> None:
    with pytest.raises(ValueError, match=r"dropout=.* must be a number in \[0, 1\)"):
        Config(dropout=dropout)


def test_bias_other_than_true_false_or_none_is_refused() -> None:
    with pytest.raises(ValueError, match="bias='yes' must be True, False or None"):
        Config(bias="yes")


def bias_names(model: nn.Module) -> list[str]:
    return [name for name, _ in model.named_parameters() if name.endswith(".bias")]


def test_bias_true_gives_every_linear_and_layernorm_but_the_head_a_bias() -> None:
    names = bias_names(GPT(tiny(bias=True, n_layer=1)))
    assert names == [
        "h.0.norm_1.bias",
        "h.0.attn.qkv.bias",
        "h.0.attn.proj.bias",
        "h.0.norm_2.bias",
        "h.0.mlp.fc.bias",
        "h.0.mlp.proj.bias",
        "ln_f.bias",
    ]


def test_bias_false_leaves_no_bias_anywhere() -> None:
    config = tiny(bias=False)
    assert not (config.qkv_bias or config.proj_bias or config.mlp_bias or config.norm_bias)
    assert bias_names(GPT(config)) == []


def test_bias_none_keeps_the_familys_own_flags() -> None:
    names = bias_names(GPT(Config(n_layer=1, n_embd=16, n_head=2, vocab_size=VOCAB, qkv_bias=True, norm_bias=False)))
    assert names == ["h.0.attn.qkv.bias"]


# ---- dropout --------------------------------------------------------------------------------------------------


def test_dropout_in_training_mode_changes_the_output_from_call_to_call() -> None:
    model = tiny_model(dropout=0.5).train()
    x = torch.randint(0, VOCAB, (2, 9))
    assert not torch.equal(model(x), model(x))


def test_dropout_in_training_mode_reaches_the_softcapped_attention_too() -> None:
    model = tiny_model(dropout=0.5, attn_logit_softcap=20.0).train()
    attention = model.h[0].attn
    q, k, v = (torch.randn(1, 2, 5, 16) for _ in range(3))
    assert not torch.equal(attention.attend(q, k, v, Causal()), attention.attend(q, k, v, Causal()))
    attention.eval()
    assert torch.equal(attention.attend(q, k, v, Causal()), attention.attend(q, k, v, Causal()))


def test_dropout_is_off_in_eval_mode() -> None:
    model = tiny_model(dropout=0.5)
    plain = tiny_model(dropout=0.0)
    plain.load_state_dict(model.state_dict())
    x = torch.randint(0, VOCAB, (2, 9))
    assert torch.equal(model(x), model(x))
    assert torch.equal(model(x), plain(x))


def test_dropout_zero_adds_no_module_and_trains_bit_identically_to_a_config_without_it() -> None:
    with_field = tiny_model(dropout=0.0).train()
    without = GPT(Config(**{k: v for k, v in tiny().to_dict().items() if k != "dropout"})).train()
    without.load_state_dict(with_field.state_dict())
    assert not any(isinstance(m, nn.Dropout) for m in with_field.modules())
    x = torch.randint(0, VOCAB, (2, 9))
    assert torch.equal(with_field(x), without(x))


def test_dropout_in_training_mode_decodes_through_the_kv_cache() -> None:
    model = tiny_model(dropout=0.5).train()
    out = model.generate(torch.randint(0, VOCAB, (2, 4)), max_new_tokens=3, temperature=0)
    assert out.shape == (2, 7)


# ---- generate -------------------------------------------------------------------------------------------------


def greedy_by_full_forward(model: GPT, idx: torch.Tensor, steps: int) -> torch.Tensor:
    """nanoGPT's loop: the whole (cropped) context through the model for every token, then the argmax."""
    with torch.no_grad():
        for _ in range(steps):
            logits = model(idx[:, -model.config.block_size :])[:, -1]
            idx = torch.cat([idx, logits.argmax(dim=-1, keepdim=True)], dim=1)
    return idx


def test_greedy_generate_of_a_tensor_is_the_argmax_of_the_forward_step_by_step() -> None:
    model = tiny_model()
    idx = torch.randint(0, VOCAB, (2, 5))
    out = model.generate(idx, max_new_tokens=12, temperature=0)
    assert out.shape == (2, 17) and out.dtype == torch.long
    assert torch.equal(out, greedy_by_full_forward(model, idx, 12))


def test_generate_past_block_size_crops_the_context_like_nanogpt() -> None:
    model = tiny_model(block_size=8)
    idx = torch.randint(0, VOCAB, (1, 11))  # already longer than the block
    out = model.generate(idx, max_new_tokens=6, temperature=0)
    assert out.shape == (1, 17) and torch.equal(out[:, :11], idx)
    assert torch.equal(out, greedy_by_full_forward(model, idx, 6))


def test_generate_of_a_list_yields_the_new_token_ids_one_int_at_a_time() -> None:
    model = tiny_model()
    prompt = [3, 1, 4, 1, 5]
    stream = model.generate(prompt, max_new_tokens=6, temperature=0)
    first = next(stream)
    rest = list(stream)
    assert isinstance(first, int) and all(isinstance(t, int) for t in rest)
    want = greedy_by_full_forward(model, torch.tensor([prompt]), 6)[0, 5:].tolist()
    assert [first, *rest] == want


def test_generate_accepts_nanochats_max_tokens_name() -> None:
    model = tiny_model()
    assert len(list(model.generate([1, 2], max_tokens=4, temperature=0))) == 4


def test_generate_leaves_the_models_own_kv_cache_alone() -> None:
    model = tiny_model()
    model.set_kv_cache(1, 16)
    caches = model.kv_caches
    model.generate(torch.tensor([[1, 2, 3]]), max_new_tokens=3)
    assert model.kv_caches is caches and all(not c.k.any() for c in caches)


def test_sampling_with_a_seed_repeats_and_top_k_1_is_greedy() -> None:
    model = tiny_model()
    prompt = [7, 8, 9]
    a = list(model.generate(prompt, max_new_tokens=10, temperature=1.5, seed=3))
    b = list(model.generate(prompt, max_new_tokens=10, temperature=1.5, seed=3))
    assert a == b
    greedy = list(model.generate(prompt, max_new_tokens=10, temperature=0))
    assert list(model.generate(prompt, max_new_tokens=10, temperature=1.5, top_k=1, seed=5)) == greedy


def test_sampled_tokens_come_from_the_top_k() -> None:
    model = tiny_model()
    idx = torch.tensor([[5, 6, 7]])
    with torch.no_grad():
        top = set(model(idx)[0, -1].topk(3).indices.tolist())
    drawn = {model.generate(idx, max_new_tokens=1, top_k=3, seed=s)[0, -1].item() for s in range(30)}
    assert drawn <= top and len(drawn) > 1


def test_zero_new_tokens_gives_the_input_back() -> None:
    model = tiny_model()
    idx = torch.tensor([[1, 2, 3]])
    assert torch.equal(model.generate(idx, max_new_tokens=0), idx)
    assert list(model.generate([1, 2, 3], max_new_tokens=0)) == []


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (([],), {}, "input_ids must be a non-empty list of token ids"),
        (("hello",), {}, "input_ids must be a non-empty list of token ids"),
        ((torch.zeros(1, 0, dtype=torch.long),), {}, r"input_ids must be a \(batch, tokens\) tensor"),
        ((torch.tensor([1, 2]),), {}, r"input_ids must be a \(batch, tokens\) tensor"),
        ((torch.tensor([[1.0, 2.0]]),), {}, "input_ids must hold integer token ids"),
        (([1, VOCAB],), {}, f"token id {VOCAB} is outside the vocabulary"),
        (([1, -2],), {}, "token id -2 is outside the vocabulary"),
        (([1],), {"max_new_tokens": -1}, "max_new_tokens=-1 must be an int >= 0"),
        (([1],), {"temperature": -0.5}, "temperature=-0.5 must be a number >= 0"),
        (([1],), {"temperature": float("nan")}, "temperature=nan must be a number >= 0"),
        (([1],), {"top_k": 0}, "top_k=0 must be None or an int >= 1"),
        (([1],), {"seed": 1.5}, "seed=1.5 must be None or an int"),
        (([1], 5), {"max_tokens": 4}, "max_tokens=4 and max_new_tokens=5 disagree"),
    ],
)
def test_bad_generate_arguments_are_refused_at_the_call_by_name(args, kwargs, message) -> None:
    model = tiny_model()
    with pytest.raises(ValueError, match=message):
        model.generate(*args, **kwargs)  # the list form raises here too, before the first token is asked for


# ---- nanochat's helpers ---------------------------------------------------------------------------------------


def test_get_device_is_the_parameters_device() -> None:
    assert tiny_model().get_device() == torch.device("cpu")
    with torch.device("meta"):
        assert GPT(tiny()).get_device() == torch.device("meta")


# vocab 10, C 4, 2 heads of 2, 1 layer, MLP 16, block 8, biases everywhere but the head:
# wte 40 | norm_1 4+4, qkv 4*12+12, proj 4*4+4, norm_2 4+4, fc 4*16+16, proj 16*4+4 = 244 | ln_f 4+4 | lm_head 40
HAND = {"vocab_size": 10, "n_layer": 1, "n_head": 2, "n_embd": 4, "block_size": 8}
ATTENTION_FLOPS = 12 * 1 * 2 * 2 * 8  # 12 * n_layer * n_head * head_size * seq_len = 384


def test_num_scaling_params_counts_every_parameter_once() -> None:
    assert GPT(GPTConfig(**HAND)).num_scaling_params() == 40 + 244 + 8 + 40
    assert GPT(GPTConfig(**HAND, tie_embeddings=True)).num_scaling_params() == 40 + 244 + 8


def test_estimate_flops_is_six_per_multiplying_parameter_plus_the_attention_term() -> None:
    assert GPT(GPTConfig(**HAND)).estimate_flops() == 6 * (244 + 8 + 40) + ATTENTION_FLOPS
    # a tied table is the head's matrix too: it multiplies, so the count is the same
    assert GPT(GPTConfig(**HAND, tie_embeddings=True)).estimate_flops() == 6 * (244 + 8 + 40) + ATTENTION_FLOPS
    # a learned position table (8 x 4) is a lookup: it adds parameters but no FLOPs
    learned = GPT(GPTConfig(**HAND, position_embedding="learned"))
    assert learned.num_scaling_params() == 40 + 244 + 8 + 40 + 32
    assert learned.estimate_flops() == 6 * (244 + 8 + 40) + ATTENTION_FLOPS
    assert GPT(GPTConfig(**HAND)).estimate_flops(seq_len=4) == 6 * (244 + 8 + 40) + ATTENTION_FLOPS // 2


# ---- optimizers -----------------------------------------------------------------------------------------------


def optimized(optimizers: list[torch.optim.Optimizer]) -> list[int]:
    return [id(p) for opt in optimizers for group in opt.param_groups for p in group["params"]]


@pytest.mark.parametrize("tie", [False, True])
@pytest.mark.parametrize("position_embedding", ["rope", "learned"])
def test_setup_optimizers_trains_every_parameter_exactly_once(tie: bool, position_embedding: str) -> None:
    model = tiny_model(tie_embeddings=tie, position_embedding=position_embedding, lm_head_bias=True)
    ids = optimized(model.setup_optimizers())
    assert sorted(ids) == sorted(id(p) for p in model.parameters())
    assert len(ids) == len(set(ids))


def test_setup_optimizers_uses_muon_for_the_block_matrices_and_adamw_for_the_rest() -> None:
    model = tiny_model(n_embd=48, n_head=2)
    adamw, matrices = model.setup_optimizers(unembedding_lr=0.01, embedding_lr=0.3, matrix_lr=0.05, weight_decay=0.1)
    assert isinstance(adamw, torch.optim.AdamW)
    if hasattr(torch.optim, "Muon"):
        assert isinstance(matrices, torch.optim.Muon)
    scale = (48 / 768) ** -0.5
    head, embeddings, vectors = adamw.param_groups
    assert head["params"] == [model.lm_head.weight] and math.isclose(head["lr"], 0.01 * scale)
    assert embeddings["params"] == [model.wte.weight] and math.isclose(embeddings["lr"], 0.3 * scale)
    assert all(p.dim() == 1 for p in vectors["params"]) and math.isclose(vectors["lr"], 0.01 * scale)
    assert all(g["weight_decay"] == 0.1 and g["initial_lr"] == g["lr"] for g in adamw.param_groups)
    (group,) = matrices.param_groups
    assert all(p.dim() == 2 for p in group["params"]) and len(group["params"]) == 4 * model.config.n_layer
    assert group["lr"] == group["initial_lr"] == 0.05


def test_setup_optimizers_take_a_step_that_lowers_the_loss() -> None:
    model = tiny_model().train()
    optimizers = model.setup_optimizers(unembedding_lr=0.01, embedding_lr=0.05, matrix_lr=0.01)
    x = torch.randint(0, VOCAB, (4, 16))

    def loss() -> torch.Tensor:
        logits = model(x[:, :-1])
        return nn.functional.cross_entropy(logits.reshape(-1, VOCAB), x[:, 1:].reshape(-1))

    before = loss()
    before.backward()
    for opt in optimizers:
        opt.step()
    assert loss().item() < before.item()


def test_configure_optimizers_decays_matrices_and_embeddings_only() -> None:
    model = tiny_model()
    opt = model.configure_optimizers(weight_decay=0.1, learning_rate=6e-4, betas=(0.9, 0.95), device_type="cpu")
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and all(p.dim() >= 2 for p in decay["params"])
    assert no_decay["weight_decay"] == 0.0 and all(p.dim() < 2 for p in no_decay["params"])
    assert sorted(optimized([opt])) == sorted(id(p) for p in model.parameters())
    assert opt.defaults["lr"] == 6e-4 and opt.defaults["betas"] == (0.9, 0.95)
