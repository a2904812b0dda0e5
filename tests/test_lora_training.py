"""`litllm finetune` with LoRA and QLoRA: what a run saves, loading and merging it, scoring it unmerged, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
ENV.pop("LITLLM_RUN_DIR", None)


def litllm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "litllm.cli", *args], capture_output=True, text=True, env=ENV, timeout=300
    )


def recipe(tmp_path: Path, base: Path, steps: int = 6, **lora: object) -> Path:
    records = [
        {"messages": [{"role": "user", "content": f"what is {i} plus {i}?"}, {"role": "assistant", "content": "four"}]}
        for i in range(24)
    ]
    (tmp_path / "chat.jsonl").write_text("\n".join(json.dumps(r) for r in records))
    config = {
        "model": {
            "init_from": str(base),
            "lora": {"r": 4, "alpha": 8, "mlp": True, **lora},
            "max_seq_length": 128,
            "warmup_steps": 1,
            "optimizer": {"class_path": "torch.optim.AdamW", "init_args": {"lr": 0.02}},
        },
        "data": {"class_path": "litllm.data.sft.SFTData", "init_args": {"path": str(tmp_path / "chat.jsonl"),
                                                                          "batch_size": 2}},
        "trainer": {"max_steps": steps, "precision": "32-true", "accelerator": "cpu", "log_every_n_steps": 1,
                    "limit_val_batches": 1, "val_check_interval": steps, "check_val_every_n_epoch": None,
                    "enable_progress_bar": False},
        "checkpoint_every": 3,
    }  # fmt: skip
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory: pytest.TempPathFactory, litllm_dir: Path) -> Path:
    tmp = tmp_path_factory.mktemp("lora")
    result = litllm("finetune", "--config", str(recipe(tmp, litllm_dir)), "--out_dir", str(tmp / "run"))
    assert result.returncode == 0, result.stderr[-3000:]
    return tmp / "run"


def test_a_lora_run_saves_the_adapter_alone(lora_run: Path, litllm_dir: Path) -> None:
    final = lora_run / "final"
    assert {"adapter.safetensors", "adapter_config.yaml", "tokenizer.json"} <= {p.name for p in final.iterdir()}
    assert not (final / "model.safetensors").exists()
    tensors = load_file(final / "adapter.safetensors")
    assert tensors and all(".lora." in k for k in tensors)
    assert any(k.endswith(".B.query") and v.abs().sum() > 0 for k, v in tensors.items())  # it trained
    config = yaml.safe_load((final / "adapter_config.yaml").read_text())
    assert config["base"] == str(litllm_dir.resolve()) and config["lora"]["r"] == 4
    ckpt = torch.load(lora_run / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["state_dict"] and all(".lora." in k for k in ckpt["state_dict"])  # the frozen base is not copied


def test_a_lora_run_loads_unmerged_and_merges_to_the_same_logits(lora_run: Path, tmp_path: Path) -> None:
    from litllm import LLM

    adapted = LLM.load(lora_run)  # the run: its final/ names the base
    assert adapted.adapters == ["run"] and adapted.adapter == "run"
    x = torch.randint(0, 300, (2, 10))
    result = litllm("merge_lora", str(lora_run), str(tmp_path / "merged"))
    assert result.returncode == 0, result.stderr
    merged = LLM.load(tmp_path / "merged")
    torch.testing.assert_close(merged.model(x), adapted.model(x), atol=1e-5, rtol=1e-5)
    base = LLM.load(adapted.checkpoint_dir)
    with torch.no_grad():
        assert not torch.allclose(base.model(x), adapted.model(x), atol=1e-3)
    text = adapted.generate("what is 3 plus 3?", max_new_tokens=4, temperature=0, adapter="base")
    assert text == base.generate("what is 3 plus 3?", max_new_tokens=4, temperature=0)


def test_several_adapters_over_one_base_switch_per_call(lora_run: Path, litllm_dir: Path) -> None:
    from litllm import LLM

    llm = LLM.load(litllm_dir, adapter={"one": lora_run, "two": lora_run / "final"})
    alone = LLM.load(lora_run)
    prompt = "what is 5 plus 5?"
    assert llm.generate(prompt, max_new_tokens=5, temperature=0, adapter="two") == alone.generate(
        prompt, max_new_tokens=5, temperature=0
    )
    with pytest.raises(ValueError, match="no adapter named 'three'; loaded: one, two"):
        llm.generate(prompt, adapter="three")


def test_an_exported_lora_checkpoint_is_an_adapter_folder(lora_run: Path, tmp_path: Path) -> None:
    from litllm.training.export import export_ckpt  # what `litllm export` runs

    export_ckpt(lora_run / "checkpoints" / "last.ckpt", tmp_path / "exported")
    ours, theirs = (
        load_file(tmp_path / "exported" / "adapter.safetensors"),
        load_file(lora_run / "final" / "adapter.safetensors"),
    )
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_a_task_scores_the_same_on_the_unmerged_adapter_and_the_merged_model(lora_run: Path, tmp_path: Path) -> None:
    from litllm import LLM, evaluate_task
    from litllm.tasks.files import FileTask

    rows = [{"question": f"{i} plus {i}?", "choices": ["two", "four", "six"], "answer": i % 3} for i in range(6)]
    rows += [{"messages": [{"role": "user", "content": f"{i} plus {i}?"}, {"role": "assistant", "content": "4"}]}
             for i in range(3)]  # fmt: skip
    (tmp_path / "mc.jsonl").write_text("\n".join(json.dumps(r) for r in rows[:6]))
    (tmp_path / "gen.jsonl").write_text("\n".join(json.dumps(r) for r in rows[6:]))
    from litllm.lora.files import merge_to_checkpoint  # what `litllm merge_lora` runs

    merge_to_checkpoint(lora_run, tmp_path / "merged")
    adapted, merged = LLM.load(lora_run), LLM.load(tmp_path / "merged")
    for name in ("mc.jsonl", "gen.jsonl"):
        task = FileTask(tmp_path / name)
        unmerged = evaluate_task(adapted, task=task, max_tokens=4)
        assert unmerged == evaluate_task(merged, task=task, max_tokens=4)


@pytest.mark.slow  # bitsandbytes' 4-bit layers are slow on the CPU: `make test-slow` (and CI) runs it
def test_qlora_trains_over_a_4bit_base_on_the_cpu_and_merges(tmp_path: Path, litllm_dir: Path) -> None:
    pytest.importorskip("bitsandbytes")
    from litllm import LLM

    result = litllm("finetune", "--config", str(recipe(tmp_path, litllm_dir, steps=4, quantize="nf4")),
                    "--out_dir", str(tmp_path / "run"))  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert yaml.safe_load((tmp_path / "run/final/adapter_config.yaml").read_text())["lora"]["quantize"] == "nf4"
    adapted = LLM.load(tmp_path / "run")
    assert type(adapted.model.h[0].attn.qkv).__name__ == "Linear4bit"  # loaded as it was trained
    assert litllm("merge_lora", str(tmp_path / "run"), str(tmp_path / "merged")).returncode == 0
    x = torch.randint(0, 300, (1, 12))
    merged = LLM.load(tmp_path / "merged")
    torch.testing.assert_close(merged.model(x), adapted.model(x), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("--model.lora.r=0", "lora r must be an integer > 0, got 0"),
        ("--model.lora.targets=[query,wq]", "unknown lora target 'wq'; accepted: query, key, value, projection"),
        ("--model.lora.quantize_head=true", "lora quantize_head=true needs quantize set too, nf4 or fp4 (the head"),
    ],
)
def test_bad_lora_options_end_in_one_line(tmp_path: Path, litllm_dir: Path, flag: str, message: str) -> None:
    result = litllm("finetune", "--config", str(recipe(tmp_path, litllm_dir)), flag, "--out_dir", str(tmp_path / "r"))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert f"litllm: error: {message}" in result.stderr
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "strategy",
    [["fsdp"], ["lightning.pytorch.strategies.ModelParallelStrategy", "--trainer.strategy.data_parallel_size", "2"]],
    ids=["fsdp", "fsdp2"],
)
def test_qlora_under_fsdp_is_refused_before_any_process_starts(
    tmp_path: Path, litllm_dir: Path, strategy: list[str]
) -> None:
    args = ["--trainer.devices", "2", "--trainer.strategy", *strategy, "--out_dir", str(tmp_path / "r")]
    result = litllm("finetune", "--config", str(recipe(tmp_path, litllm_dir, quantize="nf4")), *args)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert "litllm: error: QLoRA (lora.quantize=nf4) does not combine with FSDP sharding" in result.stderr
    assert not (tmp_path / "r").exists()


def test_merge_lora_of_a_folder_that_is_no_adapter_is_one_line(tmp_path: Path, litllm_dir: Path) -> None:
    result = litllm("merge_lora", str(litllm_dir), str(tmp_path / "out"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "is not a LoRA adapter: expected adapter_config.yaml and adapter.safetensors" in result.stderr


def test_an_llm_with_adapters_saves_only_after_merging_one(lora_run: Path, tmp_path: Path) -> None:
    from litllm import LLM

    llm = LLM.load(lora_run)
    x = torch.randint(0, 300, (1, 8))
    want = llm.model(x)
    with pytest.raises(ValueError, match=r"has LoRA adapters \(run\): fold one in first"):
        llm.save(tmp_path / "out")
    llm.merge_adapter()
    llm.save(tmp_path / "out")
    torch.testing.assert_close(LLM.load(tmp_path / "out").model(x), want, atol=1e-5, rtol=1e-5)


def test_a_lora_sft_run_is_found_by_its_phase_and_trains_on(
    lora_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`sft` names the newest finetune run: a LoRA one loads as its base with the adapter over it (LLM.load,
    nanochat's load_model, evaluate), and a later phase starting from it starts from the merged weights."""
    import shutil

    from litllm import LLM, load_model
    from litllm.training.module import GPTModule

    shutil.copytree(lora_run, tmp_path / "out" / "finetune" / "tiny-20260101-000000")
    monkeypatch.setenv("LITLLM_RUNS_DIR", str(tmp_path / "out"))
    x = torch.randint(0, 300, (1, 8))
    want = LLM.load(lora_run).model(x)
    assert LLM.load("sft").adapters == ["tiny-20260101-000000"]
    torch.testing.assert_close(LLM.load("sft").model(x), want)
    model, tokenizer, meta = load_model("sft", device="cpu")
    torch.testing.assert_close(model(x), want)
    module = GPTModule(init_from="sft")
    module.configure_model()
    module.gpt.eval()
    torch.testing.assert_close(module.gpt(x), want, atol=1e-5, rtol=1e-5)
