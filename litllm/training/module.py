"""`GPTModule`: the science of training a `GPT` — loss, metrics, optimizer, LR schedule, sharding.

The Trainer owns the loop; callbacks own checkpointing and logging. `pretrain`, `finetune` and `evaluate` are
configurations of this one module.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Union

import lightning as L
import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric, SumMetric

from litllm.catalog import named_configs
from litllm.config import Config
from litllm.cpu import kernels
from litllm.cpu.packing import Linear
from litllm.data.base import IGNORE_INDEX
from litllm.lora.layers import LoRAConfig
from litllm.model import GPT, Block
from litllm.quantize import Weight4bit, is_4bit
from litllm.training.callbacks import KeepFreedMemory, RandomStates
from litllm.training.loss import linear_cross_entropy

if TYPE_CHECKING:
    from litllm.data.base import DataModule
    from litllm.tokenizer import Tokenizer

OptimizerFactory = Callable[[Iterable], torch.optim.Optimizer]


def default_optimizer(params: Iterable) -> torch.optim.Optimizer:
    """AdamW(lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1), fused where torch supports it."""
    return torch.optim.AdamW(params, lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1, fused=True)


class GPTModule(L.LightningModule):
    def __init__(
        self,
        model_config: Union[str, dict, None] = None,
        init_from: Optional[str] = None,
        tokenizer_dir: Optional[str] = None,
        optimizer: OptimizerFactory = default_optimizer,
        warmup_steps: int = 100,
        min_lr_ratio: float = 0.1,
        init_std: float = 0.02,
        activation_checkpointing: bool = False,
        max_seq_length: Optional[int] = None,
        compile: bool = False,
        lora: Optional[LoRAConfig] = None,
    ) -> None:
        """
        Args:
            model_config: The architecture: a registry name (`litllm download list`), a model_config.yaml path, or a
                mapping of Config fields (a `name` key may select a registry config to override).
            init_from: Start from these weights (any source `LLM.load` accepts) instead of from scratch; the
                architecture is then the checkpoint's own.
            tokenizer_dir: Tokenizer folder or Hub repo id; defaults to init_from's, or (`litllm pretrain`) one
                trained on the data's corpus. Fitting by hand, the Trainer's data module gets it (`connect_data`).
            optimizer: Optimizer class and arguments; weight decay applies to matrices only.
            warmup_steps: Steps of linear LR warmup from 0.
            min_lr_ratio: The cosine schedule ends at this fraction of the peak LR, at the Trainer's max_steps.
            init_std: Standard deviation of the from-scratch initialisation (see `GPT.reset_parameters`).
            activation_checkpointing: Recompute each block's activations in the backward pass to save memory.
            max_seq_length: Longest training sequence (default: the model's block_size).
            compile: torch.compile each block (once: the blocks share one graph), fusing its elementwise work;
                the first steps take a minute or more to compile.
            lora: Train low-rank adapters (LoRA, DoRA; QLoRA with `quantize`) while the weights of init_from stay
                frozen; the run saves the adapter alone (`final/adapter.safetensors`).
        """
        super().__init__()
        if model_config is None and init_from is None:
            raise ValueError(
                "give the architecture (model_config: a registry name, YAML file or Config fields) or init_from"
            )
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
        if not 0 <= min_lr_ratio <= 1:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {min_lr_ratio}")
        self.lora = LoRAConfig.from_dict(lora) if isinstance(lora, dict) else lora
        self.save_hyperparameters(ignore=["optimizer", "lora"])
        self.hparams["lora"] = self.lora.to_dict() if self.lora is not None else None  # a plain mapping in .ckpt
        self.strict_loading = self.lora is None  # a LoRA run's checkpoints hold the adapter, not the frozen base
        self.init_from = init_from
        self.tokenizer_dir = tokenizer_dir
        self.optimizer_factory = optimizer
        self.warmup_steps = warmup_steps
        self.min_lr_ratio = min_lr_ratio
        self.init_std = init_std
        self.activation_checkpointing = activation_checkpointing
        self.compile_blocks = compile
        self.config = resolve_config(model_config, init_from)
        if max_seq_length is not None and not 1 <= max_seq_length <= self.config.block_size:
            raise ValueError(
                f"max_seq_length={max_seq_length} is outside 1..{self.config.block_size}, the model's block_size"
            )
        self.max_seq_length = max_seq_length or self.config.block_size
        self.gpt: GPT | None = None
        self.tokenizer: Tokenizer | None = None  # loaded on first need (`load_tokenizer`)
        self.token_bytes: torch.Tensor | None = None
        self.val_loss = MeanMetric()
        self.val_nats = SumMetric()
        self.val_tokens = SumMetric()
        self.val_bytes = SumMetric()

    @classmethod
    def from_model(cls, gpt: GPT, tokenizer: Tokenizer | None = None, **kwargs: Any) -> GPTModule:
        """A module that trains `gpt` itself, not a copy (an `LLM`'s model: `LLM.module`); kwargs as for __init__."""
        tokenizer_dir = str(tokenizer.checkpoint_dir) if tokenizer is not None else None
        module = cls(model_config=gpt.config.to_dict(), tokenizer_dir=tokenizer_dir, **kwargs)
        module.config = gpt.config
        module.gpt = gpt
        module.tokenizer = tokenizer
        return module

    # ---- model ------------------------------------------------------------------------------------------------

    def configure_model(self) -> None:
        """Build the GPT; under a strategy with a device mesh, on the meta device and sharded per block."""
        if self.gpt is not None:
            return
        mesh = self.device_mesh
        if mesh is None:
            if self.init_from is None:
                with torch.device(self.device):
                    self.gpt = GPT(self.config)
            else:  # init_from's own model: no random weights to overwrite, no second copy of the checkpoint's
                self.gpt = self.initial_model(self.device)
            self.load_initial_weights()
            self.add_lora(init=True)
        else:
            if self.lora is not None and self.lora.quantize is not None:
                raise ValueError("QLoRA (lora.quantize) does not combine with FSDP sharding: train it on one device")
            with torch.device("meta"):
                self.gpt = GPT(self.config)
            self.add_lora(init=False)  # before sharding: the adapters shard with their block
            self.shard(mesh)
            self.gpt.to_empty(device=self.device)
            self.load_initial_weights()
            if self.lora is not None:
                from litllm.lora.layers import reset_adapter

                reset_adapter(self.gpt)
        if self.activation_checkpointing:
            self.apply_activation_checkpointing()
        if self.compile_blocks:
            for block in self.gpt.h:
                block.compile()

    def load_initial_weights(self) -> None:
        """From scratch (`GPT.reset_parameters`), or the weights of `init_from` (the model already is init_from's
        unless it was built empty to be sharded)."""
        if self.init_from is None:
            self.gpt.reset_parameters(std=self.init_std)
            return
        if self.device_mesh is None:
            return
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        # strict but for the adapters, which the base does not have
        result = set_model_state_dict(
            self.gpt, self.initial_model().state_dict(), options=StateDictOptions(full_state_dict=True, strict=False)
        )
        unexpected = list(result.unexpected_keys)
        missing = [k for k in result.missing_keys if ".lora." not in k]
        if missing or unexpected:
            raise ValueError(
                f"init_from={self.init_from!r} does not fit the model: missing {missing}, unexpected {unexpected}"
            )

    def initial_model(self, device: torch.device | str = "cpu") -> GPT:
        """init_from's model in float32 on `device` (a LoRA run's: its base with the adapter folded in). For QLoRA its
        base is in 4-bit already, quantized one part at a time as it loads (`load_quantized`), so that the float32
        weights are never all in memory; a LoRA run, or a checkpoint that cannot be read in parts (LitGPT, nanoGPT),
        loads whole and is quantized after (`add_lora`)."""
        from litllm.checkpoint.loading import load_checkpoint
        from litllm.checkpoint.sources import resolve_checkpoint
        from litllm.lora.files import adapter_source, load_merged, load_quantized

        adapter = adapter_source(self.init_from)
        if adapter is not None:
            return load_merged(adapter).to(device)
        path = resolve_checkpoint(self.init_from)
        if self.lora is not None and self.lora.quantize is not None:
            return load_quantized(path, self.lora, dtype=torch.float32, device=device)
        return load_checkpoint(path, device=device, dtype=torch.float32)

    def add_lora(self, init: bool) -> None:
        """With `lora`: the base frozen (in 4-bit for QLoRA, if `initial_model` did not load it so) and the adapter
        added; init=False leaves its weights to `reset_adapter` (a model on the meta device)."""
        if self.lora is None:
            return
        from litllm.lora.layers import add_adapter, freeze_base, quantize_base

        if self.init_from is None:
            raise ValueError("lora adapts a trained model: give init_from (the checkpoint whose weights stay frozen)")
        if self.lora.quantize is not None:
            quantize_base(self.gpt, self.lora)
        add_adapter(self.gpt, self.lora, init=init)
        freeze_base(self.gpt)

    def shard(self, mesh: Any) -> None:
        """FSDP2: shard each block, then the rest, over the data-parallel mesh."""
        from torch.distributed.fsdp import fully_shard

        dp_mesh = mesh["data_parallel"] if "data_parallel" in (mesh.mesh_dim_names or ()) else mesh
        for block in self.gpt.h:
            fully_shard(block, mesh=dp_mesh)
        fully_shard(self.gpt, mesh=dp_mesh)

    def apply_activation_checkpointing(self) -> None:
        from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import apply_activation_checkpointing

        apply_activation_checkpointing(self.gpt, check_fn=lambda m: isinstance(m, Block))

    def configure_callbacks(self) -> list[L.Callback]:
        """What every run of this module needs, under any Trainer: CPU allocator reuse, exact-resume RNG states."""
        return [KeepFreedMemory(), RandomStates()]

    def on_fit_start(self) -> None:
        self.train()  # a model from `LLM.load` is in eval mode, and Lightning keeps the mode it finds

    def on_train_start(self) -> None:
        batch_size = getattr(self.trainer.datamodule, "batch_size", None)
        if batch_size:
            self.flops_per_batch = training_flops(self.config, batch_size, self.max_seq_length)

    def connect_tokenizer(self, tokenizer: Any) -> None:
        """Per-token UTF-8 byte counts, for bits per byte."""
        self.token_bytes = torch.tensor(tokenizer.token_byte_lengths(self.config.vocab_size), dtype=torch.long)

    def load_tokenizer(self) -> Tokenizer | None:
        """The tokenizer of tokenizer_dir, else of init_from's checkpoint; None when neither is given."""
        if self.tokenizer is None and (self.tokenizer_dir is not None or self.init_from is not None):
            from litllm.checkpoint.sources import resolve_tokenizer_dir
            from litllm.tokenizer import Tokenizer

            if self.tokenizer_dir is not None:
                self.tokenizer = Tokenizer(resolve_tokenizer_dir(self.tokenizer_dir))
            else:
                self.tokenizer = Tokenizer(self.init_tokenizer_folder())
        return self.tokenizer

    def init_tokenizer_folder(self) -> Path:
        """The folder of init_from's tokenizer (a LoRA run's: its adapter folder's, else its base's)."""
        from litllm.checkpoint.sources import resolve_checkpoint
        from litllm.lora.files import adapter_source, read_adapter, tokenizer_folder

        adapter = adapter_source(self.init_from)
        return tokenizer_folder(read_adapter(adapter)) if adapter else resolve_checkpoint(self.init_from)

    def connect_data(self, data: DataModule) -> None:
        """Give a data module this model's tokenizer and sequence length: a litllm `DataModule` asks for them by
        itself when a Trainer fits it with this module, so `Trainer.fit(module, data)` needs no other step."""
        tokenizer = self.load_tokenizer()
        if tokenizer is None:
            raise ValueError(
                f"{type(data).__name__} needs a tokenizer and GPTModule has none: give GPTModule(tokenizer_dir=...) "
                "(a folder or Hub repo id) or init_from=..., or call data.connect(tokenizer, max_seq_length) first"
            )
        data.connect(tokenizer, max_seq_length=self.max_seq_length)
        if self.token_bytes is None:
            self.connect_tokenizer(tokenizer)

    def setup(self, stage: str) -> None:
        """Bits per byte need the tokenizer: connected here when fitting by hand with a tokenizer to load. The run's
        float32 kernel is decided by rule, never by timing, and every rank takes rank 0's (a resumed run then takes
        its checkpoint's: `on_load_checkpoint`)."""
        if self.token_bytes is None and self.load_tokenizer() is not None:
            self.connect_tokenizer(self.tokenizer)
        kernels.use_training_gemm(self.trainer.strategy.broadcast(kernels.training_gemm_rule()))

    # ---- steps ------------------------------------------------------------------------------------------------

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.gpt(input_ids)

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean next-token cross-entropy over labelled positions, and the number of labelled positions."""
        return next_token_loss(self.gpt, batch["input_ids"], batch["labels"])

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, n = self.loss(batch)
        if self.loss_is_written():
            # the mean over every rank's rows (each rank holds as many), as one process with the global batch would log
            self.log("train_loss", loss, prog_bar=True, batch_size=batch["input_ids"].shape[0], sync_dist=True)
        return loss

    def loss_is_written(self) -> bool:
        """Whether this step's loss reaches the loggers: every `log_every_n_steps`, a run's last step and an epoch's
        last batch. Only then is it logged: `self.log` costs ~1 ms a call on a 2-core CPU (Lightning moves its record
        of the value each time, 5% of a small model's LoRA step) and an all-reduce across ranks. The progress bar's
        loss changes at those steps."""
        trainer = self._trainer
        connector = getattr(trainer, "_logger_connector", None)
        if trainer is None or connector is None or trainer.log_every_n_steps == 0:
            return True
        last = trainer.is_last_batch or 0 < trainer.max_steps <= self.global_step + 1
        return last or connector.should_update_logs

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self.evaluate_batch(batch, "val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self.evaluate_batch(batch, "test")

    def evaluate_batch(self, batch: dict[str, torch.Tensor], stage: str) -> None:
        with kernels.training_kernels():  # the same bits in every process, as the training steps
            loss, n = self.loss(batch)
        self.val_loss.update(loss, weight=n)
        self.val_nats.update(loss * n)
        self.val_tokens.update(n)
        if self.token_bytes is not None:
            labels = batch["labels"]
            valid = labels[labels != IGNORE_INDEX]
            self.val_bytes.update(self.token_bytes.to(valid.device)[valid].sum())

    def on_validation_epoch_end(self) -> None:
        self.log_eval_metrics("val")

    def on_test_epoch_end(self) -> None:
        self.log_eval_metrics("test")

    def log_eval_metrics(self, stage: str) -> None:
        loss = self.val_loss.compute()
        metrics = {f"{stage}_loss": loss, f"{stage}_ppl": torch.exp(loss)}
        if self.token_bytes is not None:
            nbytes = self.val_bytes.compute()
            metrics[f"{stage}_bpb"] = self.val_nats.compute() / (math.log(2) * nbytes.clamp(min=1))
        self.log_dict(metrics, prog_bar=True, sync_dist=False)
        for metric in (self.val_loss, self.val_nats, self.val_tokens, self.val_bytes):
            metric.reset()

    # ---- optimisation -----------------------------------------------------------------------------------------

    def configure_optimizers(self) -> dict[str, Any]:
        decay, no_decay = [], []
        for name, p in self.gpt.named_parameters():
            if not p.requires_grad:
                continue
            # matrices decay; biases, norms and embeddings (token lookups) do not
            (decay if p.dim() >= 2 and not name.startswith(("wte.", "wpe.")) else no_decay).append(p)
        groups = [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]
        optimizer = self.optimizer_factory(groups)
        total = self.trainer.max_steps if self.trainer.max_steps and self.trainer.max_steps > 0 else None
        if total is None:
            total = int(self.trainer.estimated_stepping_batches)
        schedule = warmup_cosine(self.warmup_steps, total, self.min_lr_ratio)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def optimizer_step(
        self,
        epoch: int,
        batch_idx: int,
        optimizer: torch.optim.Optimizer,
        optimizer_closure: Optional[Callable[[], Any]] = None,
    ) -> None:
        """The step, then its gradients dropped at once (set to None), as a plain loop drops them. Lightning would drop
        them inside the next step, after its forward, so they stayed alive through a forward in which the fused loss
        already makes the head's gradients."""
        optimizer.step(closure=optimizer_closure)
        optimizer.zero_grad(set_to_none=True)

    def configure_gradient_clipping(
        self, optimizer: torch.optim.Optimizer, gradient_clip_val: Any = None, gradient_clip_algorithm: Any = None
    ) -> None:
        """Clip as the Trainer says. Lightning refuses to clip for a fused optimizer under any mixed precision,
        because with float16 a fused step unscales the gradients itself; bf16-mixed has no scaler, so its gradients
        are the true ones and clipping them is right (recipes pair `fused: true` with `gradient_clip_val`)."""
        fused = getattr(optimizer, "_step_supports_amp_scaling", False)
        if gradient_clip_val and fused and str(self.trainer.precision) == "bf16-mixed":
            params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
            if gradient_clip_algorithm == "value":
                torch.nn.utils.clip_grad_value_(params, gradient_clip_val)
            else:
                torch.nn.utils.clip_grad_norm_(params, gradient_clip_val)
            return
        super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)

    # ---- exact resume -----------------------------------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["model_config"] = self.config.to_dict()
        if self.lora is not None:  # the adapter alone: the frozen base is init_from's, loaded again on resume
            checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if ".lora." in k}
        checkpoint["training_kernel"] = kernels.training_record()  # a resumed run computes with the same kernel

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get("model_config")
        if saved is not None and Config.from_dict(saved) != self.config:
            diff = sorted(k for k, v in saved.items() if getattr(self.config, k, None) != v)
            raise ValueError(f"the checkpoint was trained with a different model (fields differ: {', '.join(diff)})")
        kernels.follow_training_record(checkpoint.get("training_kernel"))
        if self.lora is not None:
            own = [k for k, v in self.state_dict().items() if ".lora." in k]
            missing = sorted(set(own) - set(checkpoint["state_dict"]))
            if missing:
                raise ValueError(f"the checkpoint lacks this run's adapter tensors ({', '.join(missing[:4])} ...)")


def next_token_loss(gpt: GPT, input_ids: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy of `gpt` on input_ids (B, T) against labels (B, T) (the token that should follow each
    position, or IGNORE_INDEX) over the labelled positions, and their number; the head fused into the loss where
    `fused_head_applies` (a 4-bit head read a block of its rows at a time)."""
    if not fused_head_applies(gpt):
        return logits_loss(gpt(input_ids), labels)
    head = gpt.lm_head
    weight = Weight4bit(head) if is_4bit(head) else head.weight
    h = gpt(input_ids, hidden=True)  # (B, T, C)
    total = linear_cross_entropy(h.flatten(0, 1), weight, head.bias, labels.flatten(), IGNORE_INDEX)
    n = (labels != IGNORE_INDEX).sum()
    return total / n.clamp(min=1), n


def logits_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy of logits (B, T, V) against labels (B, T) over the labelled positions, and their number."""
    total = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE_INDEX, reduction="sum")
    n = (labels != IGNORE_INDEX).sum()
    return total / n.clamp(min=1), n


def weights_in_lightning_checkpoint(trainer_ckpt: str | Path, model: GPT) -> dict[str, torch.Tensor]:
    """The weights of `model` in a Lightning .ckpt file of a module that held it under some attribute path."""
    path = Path(trainer_ckpt)
    if not path.is_file():
        raise FileNotFoundError(f"trainer_ckpt {str(path)!r} is not a file (a Lightning .ckpt)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    except (KeyError, TypeError, RuntimeError, pickle.UnpicklingError) as e:  # weights_only: no pickled code runs
        raise ValueError(f"{str(path)!r} is not a Lightning checkpoint with a state_dict ({e})") from None
    anchor = next(iter(model.state_dict()))
    prefixes = [k[: -len(anchor)] for k in state if k.endswith(anchor) and (k == anchor or k[-len(anchor) - 1] == ".")]
    if not prefixes:
        raise ValueError(f"{str(path)!r} holds no weights of this model (looked for a key ending in {anchor!r})")
    return {k[len(prefixes[0]) :]: v for k, v in state.items() if k.startswith(prefixes[0])}


def fused_head_applies(gpt: GPT) -> bool:
    """Whether the loss can apply the output head itself (`linear_cross_entropy`): on the CPU, a head without an
    adapter that is a plain `Linear` with a plain (not sharded or quantized) weight or a bitsandbytes 4-bit layer
    (QLoRA's `quantize_head`), and no final logit softcap."""
    head = gpt.lm_head
    plain = type(head) is Linear and type(head.weight.detach()) is torch.Tensor
    return (
        (plain or is_4bit(head))
        and "lora" not in head._modules
        and head.weight.device.type == "cpu"
        and gpt.config.final_logit_softcap is None
    )


def training_flops(config: Config, batch_size: int, seq_len: int) -> int:
    """FLOPs of one forward and backward pass over a (batch_size, seq_len) batch, counted on the meta device."""
    from lightning.fabric.utilities.throughput import measure_flops

    with torch.device("meta"):
        gpt = GPT(config)
        idx = torch.zeros(batch_size, seq_len, dtype=torch.long)
    return measure_flops(gpt, lambda: gpt(idx), loss_fn=torch.Tensor.sum)


def warmup_cosine(warmup_steps: int, total_steps: int, min_ratio: float) -> Callable[[int], float]:
    """LR multiplier: linear from 0 to 1 over warmup_steps, then cosine down to min_ratio at total_steps."""

    def schedule(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return schedule


def resolve_config(model: Union[str, dict, None], init_from: Optional[str]) -> Config:
    """The Config a training run uses: the checkpoint's when starting from one, else the one described."""
    if init_from is not None:
        from litllm.checkpoint.loading import checkpoint_config
        from litllm.checkpoint.sources import resolve_checkpoint
        from litllm.lora.files import adapter_source, read_adapter

        adapter = adapter_source(init_from)
        config = read_adapter(adapter).base_config if adapter else checkpoint_config(resolve_checkpoint(init_from))
        if model is not None:
            wanted = resolve_config(model, None)
            if wanted != config:
                raise ValueError(f"model {model!r} does not match the architecture of init_from={init_from!r}")
        return config
    if isinstance(model, dict):
        # a registry name under `name` is the base that the other fields override; any other name just names it
        fields = dict(model)
        name = fields.get("name")
        if name and name.lower() in named_configs():
            return Config.from_name(fields.pop("name"), **fields)
        return Config.from_dict(fields, source="model_config")
    if isinstance(model, str) and model.endswith((".yaml", ".yml")):
        return Config.from_file(Path(model))
    return Config.from_name(str(model))
