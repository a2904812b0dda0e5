"""nanochat's `load_model`: the model, tokenizer and facts of the newest training run of a phase.

`load_model("sft", "cpu", phase="eval")` loads the newest run of `litllm finetune` (`base`: `litllm pretrain`;
`mid`, `rl`: see `litllm.checkpoint.run_folders` for where their runs live). Without `step` it loads the run's
`final/` checkpoint, or its highest-step Lightning checkpoint while `final/` is not written yet; with `step`, that
step's `checkpoints/step-N.ckpt`, read with `torch.load(weights_only=True)` (no pickled code runs).

torch is imported inside the functions: importing this module (or `phase_checkpoint`) costs no start-up time.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from litllm.checkpoint.layout import ADAPTER_CONFIG
from litllm.checkpoint.run_folders import PHASES, final_checkpoint, find_run, phase_checkpoint, step_checkpoints
from litllm.config import Config
from litllm.errors import CheckpointError
from litllm.paths import read_yaml_mapping
from litllm.tokenizer import Tokenizer

if TYPE_CHECKING:
    import torch

    from litllm.model import GPT

MODES = ("train", "eval")


def load_model(
    source: str,
    device: str | torch.device | None = None,
    phase: str = "eval",
    model_tag: str | None = None,
    step: int | None = None,
) -> tuple[GPT, Tokenizer, dict[str, Any]]:
    """The `GPT`, `Tokenizer` and meta data of a training run of phase `source` (base, mid, sft or rl).

    Args:
        source: base (`litllm pretrain`), mid, sft (`litllm finetune`) or rl.
        device: Where the model goes (default: cuda when available, else cpu, as `LLM.load`).
        phase: "eval" returns the model in eval mode, "train" in train mode.
        model_tag: A run folder's name, or its model name for the newest such run (default: the newest run).
        step: Load the checkpoint saved at this optimizer step (default: final/, else the highest step).

    meta holds source, run_dir, model_tag (the run's folder name), checkpoint (the path loaded), step (None for
    final/), model_config (a dict) and hyperparameters (the run's resolved recipe, {} when it has none).
    A FileNotFoundError names every place looked at when no run has the checkpoint asked for.
    """
    import torch

    if phase not in MODES:
        raise ValueError(f"phase must be one of {', '.join(MODES)}, got {phase!r}")
    if step is not None and (isinstance(step, bool) or not isinstance(step, int) or step < 0):
        raise ValueError(f"step must be a non-negative int or None, got {step!r}")
    device = (
        torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    )
    run = find_run(source, model_tag, step=step)
    final = final_checkpoint(run) if step is None else None
    if final is not None and (final / ADAPTER_CONFIG).is_file():  # a LoRA run: its base with the adapter over it
        from litllm.lora.files import load_adapted, read_adapter, tokenizer_folder

        checkpoint, model = final, load_adapted(final, device=device)
        tokenizer = Tokenizer(tokenizer_folder(read_adapter(final)))
    elif final is not None:
        from litllm.checkpoint.loading import load_checkpoint

        checkpoint, model, tokenizer = final, load_checkpoint(final, device=device), Tokenizer(final)
    else:
        steps = step_checkpoints(run)
        step = max(steps) if step is None else step
        checkpoint, model = steps[step], load_training_checkpoint(steps[step], device)
        tokenizer = Tokenizer(run / "tokenizer")
    model.train(phase == "train")
    meta = {
        "source": source,
        "run_dir": run,
        "model_tag": run.name,
        "checkpoint": checkpoint,
        "step": step,
        "model_config": model.config.to_dict(),
        "hyperparameters": run_hyperparameters(run),
    }
    return model, tokenizer, meta


def read_training_checkpoint(path: str | Path) -> tuple[Config, dict[str, torch.Tensor]]:
    """The model config and weights of a Lightning `.ckpt` saved by a litllm run (read with weights_only=True)."""
    import torch

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    if path.is_dir():
        raise CheckpointError(f"{str(path)!r} is a sharded checkpoint folder; export it with the run's `final/`")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch reports a bad file in several ways
        raise CheckpointError(f"cannot read {str(path)!r} as a Lightning checkpoint: {e}") from e
    if "model_config" not in ckpt or "state_dict" not in ckpt:
        raise CheckpointError(f"{str(path)!r} is not a litllm training checkpoint (no model_config)")
    config = Config.from_dict(ckpt["model_config"], source=str(path))
    state = {
        k.removeprefix("gpt.").replace("._checkpoint_wrapped_module", ""): v for k, v in ckpt["state_dict"].items()
    }
    return config, {k: v for k, v in state.items() if not k.startswith(("val_", "train_"))}  # metrics' states


def load_training_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> GPT:
    """The `GPT` of a Lightning `.ckpt` saved by a litllm run, on `device`, in the dtype its weights were saved in."""
    from litllm.checkpoint.own import load_state_into
    from litllm.model import GPT

    config, state = read_training_checkpoint(path)
    dtype = next((v.dtype for v in state.values() if v.is_floating_point()), None)
    if dtype is None:
        raise CheckpointError(f"{str(path)!r}: the checkpoint holds no floating-point weights")
    model = GPT.empty(config, device).to(dtype)
    load_state_into(model, state, str(path))
    return model


def run_hyperparameters(run: Path) -> dict[str, Any]:
    """The resolved recipe a run saved (hyperparameters.yaml), or {} when it has none."""
    path = run / "hyperparameters.yaml"
    return read_yaml_mapping(path, "mapping of recipe keys", CheckpointError) if path.is_file() else {}


__all__ = ["PHASES", "load_model", "load_training_checkpoint", "phase_checkpoint", "read_training_checkpoint"]
