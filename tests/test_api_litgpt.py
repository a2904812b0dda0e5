"""LitGPT's Python API on litllm: `LLM.load`'s and `distribute`'s arguments, streamed token ids, a tokenizer smaller
than the model's vocabulary, and training: `Trainer.fit(llm.module, data)`, a GPTModule fitted by hand, and an `LLM`
inside a LightningModule of one's own (`trainer_setup`, `logits, loss = llm(input_ids, target_ids)`)."""

from __future__ import annotations

import shutil
import time
import warnings
from pathlib import Path

import lightning as L
import pytest
import torch
from toy_data import ToyTokens

from litllm import LLM
from litllm.checkpoint import HubError, cached_checkpoint_dir
from litllm.config import Config
from litllm.cpu import packing
from litllm.model import GPT
from litllm.training.module import GPTModule

TINY = dict(n_layer=2, n_embd=32, n_head=2, block_size=32)


def fit(module: L.LightningModule, data: L.LightningDataModule, steps: int = 3) -> L.Trainer:
    trainer = L.Trainer(
        max_steps=steps,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    trainer.fit(module, datamodule=data)
    return trainer


def greedy_by_recomputing(model: GPT, ids: list[int], n: int) -> list[int]:
    """Greedy continuation by a full forward per token on a plain copy of the weights: no cache, no packing."""
    copy = GPT(model.config)
    copy.load_state_dict(model.state_dict())
    copy.eval()
    seq = list(ids)
    with torch.no_grad():
        for _ in range(n):
            seq.append(int(copy(torch.tensor([seq]))[0, -1].argmax()))
    return seq[len(ids) :]


# ---- loading ------------------------------------------------------------------------------------------------------


def test_tokenizer_dir_may_be_a_hub_repo_id_already_downloaded(litllm_dir: Path) -> None:
    cached = cached_checkpoint_dir("tiny-org/tiny-llama")
    shutil.copytree(litllm_dir, cached)
    llm = LLM.load(Config(vocab_size=320, **TINY), init="random", tokenizer_dir="tiny-org/tiny-llama")
    assert llm.tokenizer.checkpoint_dir == cached
    assert llm.tokenizer.encode("def add") == LLM.load(litllm_dir).tokenizer.encode("def add")


def test_tokenizer_dir_may_be_an_earlier_tokenizer_only_download(tokenizer_dir: Path) -> None:
    cached = cached_checkpoint_dir("tiny-org/only-the-tokenizer")
    shutil.copytree(tokenizer_dir, cached)  # what download(..., tokenizer_only=True) leaves: no weights
    llm = LLM.load(Config(vocab_size=320, **TINY), init="random", tokenizer_dir="tiny-org/only-the-tokenizer")
    assert llm.tokenizer.checkpoint_dir == cached


def test_tokenizer_dir_hub_repo_id_offline_fails_fast_with_a_clear_message() -> None:
    start = time.perf_counter()
    with pytest.raises(HubError, match="cannot download nobody/no-tokenizer.*offline"):
        LLM.load(Config(vocab_size=320, **TINY), init="random", tokenizer_dir="nobody/no-tokenizer")
    assert time.perf_counter() - start < 5


def test_load_takes_litgpt_arguments_and_distribute_none_leaves_float32_on_the_cpu(litllm_dir: Path) -> None:
    llm = LLM.load(litllm_dir, "pretrained", None, "hf_unused_token", distribute=None)
    assert llm.device.type == "cpu" and llm.model.wte.weight.dtype == torch.float32
    assert isinstance(llm.generate("def", max_new_tokens=3, temperature=0), str)
    with pytest.raises(ValueError, match="distribute must be 'auto' or None"):
        LLM.load(litllm_dir, distribute="cuda")


# ---- distribute ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(devices=2), r"devices=2 spreads the model over several GPUs.*use devices=1.*'sequential'"),
        (dict(generate_strategy="sequential"), r"generate_strategy='sequential'.*CPU.*devices=1"),
        (dict(generate_strategy="tensor_parallel"), r"tensor_parallel' on the CPU needs devices=N"),
        (dict(generate_strategy="pipeline"), "generate_strategy must be"),
        (dict(devices=0), "devices must be"),
    ],
)
def test_distribute_on_the_cpu_refuses_several_devices_and_names_what_works(
    litllm_dir: Path, kwargs: dict, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        LLM.load(litllm_dir).distribute(accelerator="cpu", **kwargs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without a GPU")
def test_distribute_auto_on_a_machine_without_gpu_says_so(litllm_dir: Path) -> None:
    with pytest.raises(ValueError, match="no CUDA device here"):
        LLM.load(litllm_dir).distribute(devices=2, generate_strategy="sequential")


def test_distribute_bf16_mixed_keeps_the_weights_and_generates_under_autocast(litllm_dir: Path) -> None:
    llm = LLM.load(litllm_dir).distribute(accelerator="cpu", precision="bf16-mixed")
    assert llm.model.wte.weight.dtype == torch.float32
    ids = llm.generate("def add", max_new_tokens=8, temperature=0, return_as_token_ids=True)
    prompt = llm.tokenizer.encode("def add")
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16):
        first = int(llm.model(torch.tensor([prompt]))[0, -1].argmax())
    assert ids[0] == first


def test_fixed_kv_cache_size_caps_prompt_and_generation(litllm_dir: Path) -> None:
    llm = LLM.load(litllm_dir).distribute(accelerator="cpu", fixed_kv_cache_size=12)
    prompt = llm.tokenizer.encode("def add")
    ids = llm.generate("def add", max_new_tokens=50, temperature=0, return_as_token_ids=True)
    assert len(prompt) + len(ids) <= 12
    with pytest.raises(ValueError, match="context is 12 tokens"):
        llm.generate("x = 1\n" * 20)
    llm.distribute(accelerator="cpu", fixed_kv_cache_size="max_model_supported")
    assert llm.context_limit == llm.config.block_size == 256
    with pytest.raises(ValueError, match=r"fixed_kv_cache_size must be .* 2\.\.256"):
        llm.distribute(fixed_kv_cache_size=1000)


# ---- generate -----------------------------------------------------------------------------------------------------


def test_stream_with_return_as_token_ids_yields_the_ids_of_the_whole_generation(litllm_dir: Path) -> None:
    llm = LLM.load(litllm_dir)
    whole = llm.generate("class Point:", max_new_tokens=20, top_k=1, return_as_token_ids=True)
    stream = llm.generate("class Point:", max_new_tokens=20, top_k=1, return_as_token_ids=True, stream=True)
    streamed = list(stream)
    assert all(type(t) is int for t in streamed)
    assert streamed == whole and stream.token_ids == whole


def test_a_tokenizer_smaller_than_the_vocabulary_warns_once_and_its_ids_alone_are_sampled(
    tokenizer_dir: Path,
) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        llm = LLM.load(Config(vocab_size=2048, **TINY), init="random", tokenizer_dir=tokenizer_dir)
        # 1728 of the 2048 ids decode to nothing: unmasked, ~84% of these tokens would be such ids
        samples = llm.generate("def", max_new_tokens=25, temperature=1.5, num_samples=4, return_as_token_ids=True)
        greedy = llm.generate("def", max_new_tokens=25, temperature=0, return_as_token_ids=True)
        text = llm.generate("def", max_new_tokens=10, temperature=1.0, seed=1)
    assert [str(w.message).split(":")[0] for w in caught] == [
        f"the model has 2048 token ids but the tokenizer in {str(tokenizer_dir)!r} only 320"
    ]
    assert all(0 <= t < 320 for ids in [*samples, greedy] for t in ids)
    assert text != ""


def test_a_checkpoint_with_its_own_tokenizer_loads_without_warning(litllm_dir: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        LLM.load(litllm_dir)


# ---- training -----------------------------------------------------------------------------------------------------


def test_llm_module_is_the_gpt_module_of_the_very_same_model(litllm_dir: Path) -> None:
    llm = LLM.load(litllm_dir)
    assert isinstance(llm.module, GPTModule)
    assert llm.module.gpt is llm.model and llm.module is llm.module
    assert llm.module.tokenizer is llm.tokenizer
    assert "module" not in dict(llm.named_children())  # the GPT is in llm's state_dict once, as model.*


def test_fit_llm_module_then_generate_with_the_trained_weights(litllm_dir: Path) -> None:
    llm = LLM.load(litllm_dir)
    before = llm.generate("def add", max_new_tokens=12, temperature=0, return_as_token_ids=True)
    packing.prepack(llm.model, release=True)  # packed copies in place of the weights, as fast CPUs generate
    x = torch.tensor([llm.tokenizer.encode("def add(a, b):")])
    with torch.no_grad():
        logits_before = llm.model(x)
    data = ToyTokens(n=16, vocab=320, batch_size=4)
    llm.module.warmup_steps = 0
    llm.module.optimizer_factory = lambda params: torch.optim.AdamW(params, lr=1e-2)
    fit(llm.module, data)
    assert data.tokenizer is llm.tokenizer and data.max_seq_length == llm.config.block_size  # connected by setup
    with torch.no_grad():
        logits_after = llm.model(x)
    assert (logits_after - logits_before).abs().max() > 0.1
    after = llm.generate("def add", max_new_tokens=12, temperature=0, return_as_token_ids=True)
    prompt = llm.tokenizer.encode("def add")
    assert after == greedy_by_recomputing(llm.model, prompt, len(after))
    assert after != before


def test_generating_after_fit_turns_dropout_off_and_gives_training_mode_back(tokenizer_dir: Path) -> None:
    llm = LLM.load(Config(vocab_size=320, dropout=0.5, **TINY), init="random", tokenizer_dir=tokenizer_dir)
    fit(llm.module, ToyTokens(n=8, vocab=320, batch_size=4), steps=1)
    assert llm.model.training  # as the Trainer left it
    a = llm.generate("def", max_new_tokens=10, temperature=0, return_as_token_ids=True)
    b = llm.generate("def", max_new_tokens=10, temperature=0, return_as_token_ids=True)
    assert a == b == greedy_by_recomputing(llm.model, llm.tokenizer.encode("def"), len(a))
    assert llm.model.training


def test_a_gpt_module_and_data_module_built_by_hand_fit_with_no_connect_step(tokenizer_dir: Path) -> None:
    module = GPTModule(model_config=dict(vocab_size=320, **TINY), tokenizer_dir=str(tokenizer_dir), warmup_steps=0)
    data = ToyTokens(n=8, vocab=320, batch_size=4)
    fit(module, data, steps=2)
    assert data.tokenizer is module.tokenizer and data.max_seq_length == 32
    assert module.token_bytes is not None  # bits per byte can be reported


def test_a_gpt_module_without_tokenizer_names_the_missing_argument() -> None:
    module = GPTModule(model_config=dict(vocab_size=320, **TINY))
    with pytest.raises(ValueError, match=r"give GPTModule\(tokenizer_dir=...\).*or init_from"):
        fit(module, ToyTokens(n=8, vocab=320, batch_size=4), steps=1)


class LitLLM(L.LightningModule):
    """LitGPT's finetuning pattern, word for word but for the import."""

    def __init__(self, checkpoint_dir: Path, trainer_ckpt_path: Path | None = None) -> None:
        super().__init__()
        self.llm = LLM.load(checkpoint_dir, distribute=None)
        self.trainer_ckpt_path = trainer_ckpt_path

    def setup(self, stage: str) -> None:
        self.llm.trainer_setup(trainer_ckpt=self.trainer_ckpt_path)

    def training_step(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logits, loss = self.llm(input_ids=batch["input_ids"], target_ids=batch["labels"])
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=1e-2)


def test_an_llm_inside_a_lightning_module_trains_saves_and_loads_back(litllm_dir: Path, tmp_path: Path) -> None:
    lit = LitLLM(litllm_dir)
    data = ToyTokens(n=8, vocab=320, batch_size=4)
    data.connect(lit.llm.tokenizer, max_seq_length=64)
    start = {k: v.clone() for k, v in lit.llm.model.state_dict().items()}
    trainer = fit(lit, data, steps=2)
    trainer.save_checkpoint(tmp_path / "finetuned.ckpt")
    trained = lit.llm.model.state_dict()
    assert any(not torch.equal(start[k], trained[k]) for k in start)

    again = LitLLM(litllm_dir, trainer_ckpt_path=tmp_path / "finetuned.ckpt")
    again.setup("predict")
    for name, value in again.llm.model.state_dict().items():
        assert torch.equal(value, trained[name]), name
    text = lit.llm.generate("def", max_new_tokens=5, temperature=0)
    assert text == again.llm.generate("def", max_new_tokens=5, temperature=0)


def test_llm_forward_gives_logits_and_the_loss_gpt_module_trains_on(litllm_dir: Path) -> None:
    llm = LLM.load(litllm_dir)
    batch = next(iter(_connected_toy(llm).train_dataloader()))
    logits, loss = llm(input_ids=batch["input_ids"], target_ids=batch["labels"])
    assert logits.shape == (*batch["input_ids"].shape, 320)
    torch.testing.assert_close(loss, llm.module.loss(batch)[0], rtol=1e-5, atol=1e-5)
    assert torch.equal(llm(batch["input_ids"]), logits)


def test_llm_forward_refuses_litgpt_style_unshifted_targets(litllm_dir: Path) -> None:
    llm = LLM.load(litllm_dir)
    ids = torch.tensor([[5, 6, 7, 8]])
    with pytest.raises(ValueError, match="target_ids equals input_ids: give the next tokens"):
        llm(input_ids=ids, target_ids=ids)


def test_trainer_ckpt_that_holds_no_such_model_is_refused(litllm_dir: Path, tmp_path: Path) -> None:
    torch.save({"state_dict": {"other.weight": torch.zeros(2)}}, tmp_path / "other.ckpt")
    with pytest.raises(ValueError, match="holds no weights of this model"):
        LLM.load(litllm_dir).trainer_setup(tmp_path / "other.ckpt")


def test_trainer_ckpt_with_pickled_objects_is_refused_without_running_them(litllm_dir: Path, tmp_path: Path) -> None:
    torch.save({"state_dict": {}, "callback": Path("anything")}, tmp_path / "pickled.ckpt")
    with pytest.raises(ValueError, match="is not a Lightning checkpoint with a state_dict"):
        LLM.load(litllm_dir).trainer_setup(tmp_path / "pickled.ckpt")


def _connected_toy(llm: LLM) -> ToyTokens:
    data = ToyTokens(n=4, vocab=320, batch_size=2)
    data.connect(llm.tokenizer, max_seq_length=16)
    data.setup()
    return data


# ---- several devices ----------------------------------------------------------------------------------------------


SPREADS = [["cpu", "cpu", "cpu"]]  # the same device thrice: the hooks and the per-layer caches still run
if torch.cuda.is_available():
    SPREADS.append(["cuda:0", "cpu"])


@pytest.mark.parametrize("devices", SPREADS)
def test_layers_spread_over_devices_generate_what_one_device_does(litllm_dir: Path, devices: list[str]) -> None:
    from litllm.api import spread_layers

    llm = LLM.load(litllm_dir, device="cpu")
    prompts = ["def add", "class Point:\n    def"]  # two prompts: prefilled together (segment masks), then batched
    alone = llm.generate(prompts, max_new_tokens=12, temperature=0, return_as_token_ids=True)
    handles = spread_layers(llm.model, [torch.device(d) for d in devices])
    assert llm.model.h[0].attn.qkv.weight.device == torch.device(devices[0])
    assert llm.model.h[-1].mlp.fc.weight.device == torch.device(devices[-1])
    assert llm.generate(prompts, max_new_tokens=12, temperature=0, return_as_token_ids=True) == alone
    for handle in handles:
        handle.remove()
