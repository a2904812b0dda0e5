"""`litllm estimate`: a recipe's memory per GPU, FLOPs, time and cost, checked against figures worked out by hand."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from litllm.cli import main
from litllm.model import GPT
from litllm.training.estimate import GIB, NF4_BYTES, plan

# pretrain/debug: vocab 4096, 4 layers, d_model 128, 4 heads of 32, SwiGLU MLP 384, RMSNorm, tied head, no biases
DEBUG_BLOCK = 128 + 128 * 384 + 128 * 128 + 128 + 128 * 2 * 384 + 384 * 128  # norm, qkv, proj, norm, fc, proj
DEBUG_OUTSIDE = 4096 * 128 + 128  # the embedding (the head's weight too) and the final norm
DEBUG_PARAMS = DEBUG_OUTSIDE + 4 * DEBUG_BLOCK  # 1,377,408
DEBUG_TOKENS = 16 * 256  # micro-batch x max_seq_length
# bytes a token, bf16-mixed: 2 norm inputs in fp32 + (2 linear inputs, q and attention output, k and v, 4 MLP-wide)
DEBUG_LAYER = 2 * 128 * 4 + 2 * (2 * 128 + 2 * 128 + 2 * 128 + 4 * 384)  # 5,632
DEBUG_HEAD = 4096 * (2 + 4 + 4)  # bf16 logits, their fp32 copy, fp32 log-probabilities

# pretrain/gpt2-124m-openwebtext: GPT-2 124M, LayerNorm and biases, GELU MLP 3072, tied head, learned positions
GPT2_BLOCK = 2 * 768 + (768 * 2304 + 2304) + (768 * 768 + 768) + 2 * 768 + (768 * 3072 + 3072) + (3072 * 768 + 768)
GPT2_OUTSIDE = 50257 * 768 + 1024 * 768 + 2 * 768  # token and position embeddings, final norm
GPT2_PARAMS = GPT2_OUTSIDE + 12 * GPT2_BLOCK  # 124,439,808
GPT2_TOKENS = 12 * 1024
GPT2_LAYER = 2 * 768 * 4 + 2 * (2 * 768 + 2 * 768 + 2 * 768 + 2 * 3072)  # 27,648
GPT2_HEAD = 50257 * (2 + 4 + 4)


def memory(p, strategy: str, checkpointing: bool):
    return next(m for m in p.memory if (m.strategy, m.checkpointing) == (strategy, checkpointing))


def test_debug_parameters_are_counted_from_its_shapes() -> None:
    p = plan("pretrain/debug")
    assert DEBUG_PARAMS == 1_377_408
    assert (p.counts.params, p.counts.trainable) == (DEBUG_PARAMS, DEBUG_PARAMS)
    assert (p.counts.outside, p.counts.block) == (DEBUG_OUTSIDE, DEBUG_BLOCK)


def test_debug_ddp_keeps_18_bytes_a_parameter_under_bf16_mixed() -> None:
    m = memory(plan("pretrain/debug"), "DDP", False)
    assert (m.weights, m.grads, m.optimizer) == (6 * DEBUG_PARAMS, 4 * DEBUG_PARAMS, 8 * DEBUG_PARAMS)


def test_debug_checkpointing_keeps_16_bit_copies_of_one_block_and_the_rest() -> None:
    m = memory(plan("pretrain/debug"), "DDP", True)
    assert m.weights == 4 * DEBUG_PARAMS + 2 * (DEBUG_OUTSIDE + DEBUG_BLOCK)


def test_debug_fsdp2_on_8_devices_shards_states_and_gathers_root_and_one_block() -> None:
    m = memory(plan("pretrain/debug", devices=8), "FSDP2", False)
    gathered = 4 * (DEBUG_OUTSIDE + DEBUG_BLOCK)
    assert m.weights == pytest.approx(4 * DEBUG_PARAMS / 8 + gathered + 2 * DEBUG_PARAMS)
    assert m.grads == pytest.approx(4 * DEBUG_PARAMS / 8 + gathered)
    assert m.optimizer == pytest.approx(8 * DEBUG_PARAMS / 8)


def test_debug_activations_with_and_without_checkpointing() -> None:
    p = plan("pretrain/debug")
    assert memory(p, "DDP", False).activations == DEBUG_TOKENS * (4 * DEBUG_LAYER + DEBUG_HEAD)
    block_inputs = 4 * 128 * 4  # fp32 residual stream, one d_model vector a layer
    assert memory(p, "DDP", True).activations == DEBUG_TOKENS * (block_inputs + DEBUG_LAYER + DEBUG_HEAD)


def test_debug_flops_are_the_models_own_estimate() -> None:
    p = plan("pretrain/debug")
    with torch.device("meta"):
        model_estimate = GPT(p.config).estimate_flops(256)
    assert p.flops_per_token == model_estimate == 6 * DEBUG_PARAMS + 12 * 4 * 4 * 32 * 256


def test_debug_step_time_follows_devices_peak_and_mfu() -> None:
    p = plan("pretrain/debug", devices=2, mfu=0.5, peak_flops=1e12)
    assert p.tokens_per_step == 16 * 256 * 2 * 1
    assert p.step_seconds == pytest.approx(p.flops_per_token * p.tokens_per_step / (2 * 1e12 * 0.5))
    assert p.hours == pytest.approx(150 * p.step_seconds / 3600)


def test_gpt2_parameters_and_flops() -> None:
    p = plan("config_hub/pretrain/gpt2-124m-openwebtext.yaml")
    assert p.counts.params == GPT2_PARAMS == 124_439_808
    # tied head: only the position table is a lookup outside 6N; attention 12 * layers * heads * head_size * T
    assert p.flops_per_token == 6 * (GPT2_PARAMS - 1024 * 768) + 12 * 12 * 12 * 64 * 1024


def test_gpt2_ddp_against_fsdp2_on_8_devices() -> None:
    p = plan("pretrain/gpt2-124m-openwebtext")
    ddp, fsdp = memory(p, "DDP", False), memory(p, "FSDP2", False)
    assert (ddp.weights, ddp.grads, ddp.optimizer) == (6 * GPT2_PARAMS, 4 * GPT2_PARAMS, 8 * GPT2_PARAMS)
    gathered = 4 * (GPT2_OUTSIDE + GPT2_BLOCK)
    assert fsdp.weights == pytest.approx(4 * GPT2_PARAMS / 8 + gathered + 2 * GPT2_PARAMS)
    assert fsdp.grads == pytest.approx(4 * GPT2_PARAMS / 8 + gathered)
    assert fsdp.optimizer == pytest.approx(GPT2_PARAMS)


def test_gpt2_activations_with_and_without_checkpointing() -> None:
    p = plan("pretrain/gpt2-124m-openwebtext")
    assert memory(p, "DDP", False).activations == GPT2_TOKENS * (12 * GPT2_LAYER + GPT2_HEAD)
    assert memory(p, "DDP", True).activations == GPT2_TOKENS * (12 * 768 * 4 + GPT2_LAYER + GPT2_HEAD)
    assert memory(p, "DDP", False).activations / GIB == pytest.approx(9.55, abs=0.01)


def test_gpt2_wall_time_and_cost() -> None:
    p = plan("pretrain/gpt2-124m-openwebtext", price_per_gpu_hour=2.0)
    assert p.tokens_per_step == 12 * 1024 * 8 * 5
    step = p.flops_per_token * 491_520 / (8 * 312e12 * 0.4)  # the recipe's A100 peak, the default 40% MFU
    assert p.hours == pytest.approx(600_000 * step / 3600)
    assert p.cost == pytest.approx(p.hours * 8 * 2.0)


def test_lora_trains_and_keeps_optimizer_state_for_adapters_only() -> None:
    p = plan("finetune/llama-3.2-1b/lora")
    # rank 16 on every linear of 16 layers (d_model 2048, 8 kv heads of 64, MLP 8192); fused qkv: one A per target
    qkv = 3 * 16 * 2048 + 16 * (2048 + 512 + 512)
    proj = 16 * (2048 + 2048)
    mlp = 2 * 16 * (2048 + 8192) + 16 * (8192 + 2048)  # gate, up, down
    adapters = 16 * (qkv + proj + mlp)
    assert p.counts.trainable == adapters == 11_272_192
    m = memory(p, "DDP", False)
    assert (m.grads, m.optimizer) == (4 * adapters, 8 * adapters)


def test_qlora_holds_block_weights_in_4_bits() -> None:
    p = plan("finetune/llama-3.2-1b/qlora")
    per_block = 2048 * (32 + 2 * 8) * 64 + 2048 * 2048 + 2048 * 2 * 8192 + 8192 * 2048  # qkv, proj, fc, proj
    assert p.counts.quantized == 16 * per_block
    rest = p.counts.params - p.counts.quantized
    assert memory(p, "DDP", False).weights == pytest.approx(4 * rest + NF4_BYTES[True] * 16 * per_block + 2 * rest)
    assert not [m for m in p.memory if m.strategy == "FSDP2"]


def test_cli_prints_the_table(capsys: pytest.CaptureFixture) -> None:
    main(["estimate", "--config", "pretrain/gpt2-124m-openwebtext", "--mfu", "0.5"])
    out = capsys.readouterr().out
    assert "gpt2: 124,439,808 parameters" in out
    assert "491,520 tokens a step" in out
    ddp = next(line for line in out.splitlines() if line.strip().startswith("DDP "))
    assert ddp.split()[1:6] == ["0.70", "0.46", "0.93", "9.55", "11.63"] and ddp.endswith("<- recipe")
    assert "at 50% MFU of 312 TFLOP/s" in out and "600,000 steps" in out


def test_cli_takes_a_recipe_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    recipe = tmp_path / "mine.yaml"
    recipe.write_text("model: {model_config: gpt2}\ntrainer: {devices: 2, max_steps: 10, precision: bf16-true}\n")
    main(["estimate", f"--config={recipe}"])
    out = capsys.readouterr().out
    assert "2 GPUs, bf16-true" in out and "10 steps" in out


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--config", "pretrain/no-such-recipe"], "'pretrain/no-such-recipe' not found"),
        (["--config", "pretrain/debug", "--mfu", "1.5"], "--mfu 1.5 is outside (0, 1]"),
        (["--config", "pretrain/debug", "--mfu", "0"], "--mfu 0.0 is outside (0, 1]"),
        (["--config", "pretrain/debug", "--devices", "0"], "--devices 0 must be >= 1"),
        ([], "give the recipe to plan"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], fragment: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["estimate", *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err and len(err.splitlines()) == 1 and "Traceback" not in err
