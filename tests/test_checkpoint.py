"""The litllm checkpoint directory: a save/load round trip, atomic writes, clear errors for bad input, and Hub
downloads (with the network replaced by local files)."""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from hf_models import VOCAB, save_hf_model
from safetensors.torch import load_file, save_file
from torch.testing import assert_close

from litllm.checkpoint import (
    CheckpointError,
    HubError,
    detect_format,
    download,
    load_checkpoint,
    save_checkpoint,
)
from litllm.config import Config
from litllm.model import GPT

TOKENS = torch.randint(0, VOCAB, (2, 12), generator=torch.Generator().manual_seed(7))


def tiny_model(**overrides) -> GPT:
    config = Config(
        **{
            "vocab_size": VOCAB,
            "block_size": 64,
            "n_layer": 2,
            "n_embd": 64,
            "n_head": 4,
            "n_query_groups": 2,
            "norm_class": "rmsnorm",
            "mlp_class": "swiglu",
            "tie_embeddings": True,
            **overrides,
        }
    )
    torch.manual_seed(0)
    model = GPT(config)
    with torch.no_grad():  # norms and biases too, so a tensor loaded into the wrong place shows
        for p in model.parameters():
            p.normal_(0.0, 0.5)
    return model.eval()


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    """A litllm checkpoint directory of a tiny model with tied embeddings."""
    return save_checkpoint(tiny_model(), tmp_path / "ckpt")


def edit_config(path: Path, **changes) -> None:
    data = yaml.safe_load((path / "model_config.yaml").read_text())
    (path / "model_config.yaml").write_text(yaml.safe_dump({**data, **changes}))


# ---------------------------------------------------------------------------------------------------------------
# the litllm format


def test_save_and_load_round_trip_keeps_every_weight(tmp_path: Path):
    model = tiny_model(tie_embeddings=False, qkv_bias=True)
    loaded = load_checkpoint(save_checkpoint(model, tmp_path))
    assert loaded.config == model.config
    expected, actual = model.state_dict(), loaded.state_dict()
    assert sorted(actual) == sorted(expected)
    assert all(torch.equal(actual[k], expected[k]) for k in expected)


LOAD_PEAK = """
import sys, torch
from pathlib import Path
from litllm.checkpoint import load_checkpoint
import litllm.model

def status(field):
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(field + ":"))
    return int(line.split()[1]) * 1024

Path("/proc/self/clear_refs").write_text("5")  # VmHWM from here on
before = status("VmRSS")
model = load_checkpoint(sys.argv[1], dtype=getattr(torch, sys.argv[2]))
weights = sum(p.numel() * p.element_size() for p in model.parameters())
print((status("VmHWM") - before) / weights)
"""


@pytest.mark.skipif(not os.access("/proc/self/clear_refs", os.W_OK), reason="needs Linux's resettable peak RSS")
@pytest.mark.parametrize("dtype, most", [("float32", 1.3), ("bfloat16", 2.5)])
def test_a_safetensors_checkpoint_loads_without_holding_its_weights_twice(tmp_path: Path, dtype: str, most: float):
    """The peak over the resident set before loading, in units of the loaded weights: a float32 checkpoint (181 MB)
    loads part by part, where reading the whole file first peaked at 2.2x (float32) and 4.3x (bfloat16). What
    remains above 1x: the blocks of a tensor being read (2 x 16 MB) and, for bfloat16, a part in float32 before its
    cast (the 65 MB head here)."""
    config = Config(vocab_size=32000, block_size=64, n_layer=4, n_embd=512, n_head=8, tie_embeddings=False)
    model = GPT(config)
    ckpt = save_checkpoint(model, tmp_path / "ckpt")
    del model
    out = subprocess.run([sys.executable, "-c", LOAD_PEAK, str(ckpt), dtype], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout) <= most


def test_tied_embeddings_stay_tied_and_are_stored_once(saved: Path):
    assert "lm_head.weight" not in load_file(saved / "model.safetensors")
    loaded = load_checkpoint(saved)
    assert loaded.lm_head.weight is loaded.wte.weight
    assert torch.equal(loaded.wte.weight, tiny_model().wte.weight)


def test_save_writes_only_safetensors_and_yaml(saved: Path):
    assert sorted(p.name for p in saved.iterdir()) == ["model.safetensors", "model_config.yaml"]
    assert not (saved / "model.safetensors").read_bytes().startswith((b"\x80", b"PK"))  # pickle, torch.save zip


def test_saved_files_are_as_readable_as_any_other_new_file(tmp_path: Path):
    old_umask = os.umask(0o022)
    try:
        out = save_checkpoint(tiny_model(), tmp_path)
    finally:
        os.umask(old_umask)
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in out.iterdir()} == {
        "model.safetensors": "0o644",
        "model_config.yaml": "0o644",
    }


def test_save_copies_tokenizer_files(tmp_path: Path):
    (tmp_path / "tok").mkdir()
    (tmp_path / "tok" / "tokenizer.json").write_text("{}")
    (tmp_path / "tok" / "notes.txt").write_text("not a tokenizer file")
    out = save_checkpoint(tiny_model(), tmp_path / "ckpt", tokenizer_dir=tmp_path / "tok")
    assert (out / "tokenizer.json").read_text() == "{}"
    assert not (out / "notes.txt").exists()


def test_failed_save_keeps_the_previous_weights_and_leaves_no_temp_file(saved: Path, monkeypatch):
    before = {p.name: p.read_bytes() for p in saved.iterdir()}

    def disk_full(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("safetensors.torch.save_file", disk_full)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(tiny_model(n_layer=1), saved)
    assert {p.name: p.read_bytes() for p in saved.iterdir()} == before
    assert load_checkpoint(saved).config.n_layer == 2


# ---------------------------------------------------------------------------------------------------------------
# bad input


def test_missing_directory_is_file_not_found_naming_it(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="no-such-dir"):
        load_checkpoint(tmp_path / "no-such-dir")


def test_a_file_instead_of_a_directory_is_named(tmp_path: Path):
    (tmp_path / "weights.txt").write_text("")
    with pytest.raises(CheckpointError, match=r"weights\.txt.* is not a directory"):
        load_checkpoint(tmp_path / "weights.txt")


def test_empty_directory_says_what_a_checkpoint_holds(tmp_path: Path):
    with pytest.raises(
        CheckpointError, match=r"is not a checkpoint: expected model_config\.yaml \+ model\.safetensors"
    ):
        load_checkpoint(tmp_path)


def test_config_without_weights_names_the_missing_file(saved: Path):
    (saved / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"no weights file \(model\.safetensors"):
        load_checkpoint(saved)


def test_corrupt_weights_file_is_named(saved: Path):
    (saved / "model.safetensors").write_bytes(os.urandom(64))
    with pytest.raises(CheckpointError, match=r"cannot read weights file .*model\.safetensors"):
        load_checkpoint(saved)


def test_truncated_weights_file_is_named(saved: Path):
    data = (saved / "model.safetensors").read_bytes()
    (saved / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"cannot read weights file .*model\.safetensors"):
        load_checkpoint(saved)


def test_weights_of_another_vocab_size_name_the_tensor_and_both_shapes(saved: Path):
    edit_config(saved, vocab_size=128)
    with pytest.raises(
        CheckpointError, match=r"tensor 'wte\.weight' has shape \(96, 64\), the config expects \(128, 64\)"
    ):
        load_checkpoint(saved)


def test_weights_of_another_width_name_a_tensor_and_both_shapes(saved: Path):
    edit_config(saved, n_embd=32)
    with pytest.raises(CheckpointError, match=r"tensor '[\w.]+' has shape \([^)]*64[^)]*\), the config expects \("):
        load_checkpoint(saved)


def test_weights_of_another_depth_name_the_missing_tensors(saved: Path):
    edit_config(saved, n_layer=3)
    with pytest.raises(CheckpointError, match=r"missing tensors h\.2\."):
        load_checkpoint(saved)


def test_unknown_config_field_is_named(saved: Path):
    edit_config(saved, n_embdd=64)
    with pytest.raises(ValueError, match=r"'n_embdd' \(did you mean 'n_embd'\?\)"):
        load_checkpoint(saved)


def test_config_that_is_not_yaml_is_named(saved: Path):
    (saved / "model_config.yaml").write_text("n_embd: [64\n")
    with pytest.raises(CheckpointError, match=r"model_config\.yaml.* is not valid YAML"):
        load_checkpoint(saved)


def test_unsupported_hf_model_type_lists_the_supported_ones(tmp_path: Path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "vocab_size": 8}))
    save_file({"embeddings.word_embeddings.weight": torch.zeros(8, 4)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"unsupported Hugging Face model_type 'bert'; supported: .*llama"):
        load_checkpoint(tmp_path)


def test_hf_config_that_is_not_json_is_named(tmp_path: Path):
    (tmp_path / "config.json").write_text("{model_type: llama")
    save_file({"x": torch.zeros(1)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"config\.json.* is not valid JSON"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize("with_config_json", [True, False])
def test_pickled_weights_are_refused(tmp_path: Path, with_config_json: bool):
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04not loaded")
    if with_config_json:
        (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(CheckpointError, match=r"only pickled PyTorch weights \(pytorch_model\.bin\).* refuses to load"):
        load_checkpoint(tmp_path)


def test_missing_shard_is_named(tmp_path: Path):
    save_hf_model("llama2", tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    names = sorted(weights)
    half = len(names) // 2
    save_file({k: weights[k] for k in names[:half]}, str(tmp_path / "model-00001-of-00002.safetensors"))
    weight_map = {k: f"model-0000{1 + (i >= half)}-of-00002.safetensors" for i, k in enumerate(names)}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"shards .* are missing: model-00002-of-00002\.safetensors"):
        load_checkpoint(tmp_path)


def test_hf_tensor_the_config_does_not_use_is_named(tmp_path: Path):
    # a bias that config.json does not declare (attention_bias=false) would otherwise be silently dropped
    save_hf_model("llama2", tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    weights["model.layers.0.self_attn.q_proj.bias"] = torch.ones(64)
    save_file(weights, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"does not use: model\.layers\.0\.self_attn\.q_proj\.bias"):
        load_checkpoint(tmp_path)


def test_hf_tensor_the_model_needs_is_named(tmp_path: Path):
    save_hf_model("llama2", tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    del weights["model.layers.1.mlp.up_proj.weight"]
    save_file(weights, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"lack tensor 'model\.layers\.1\.mlp\.up_proj\.weight'"):
        load_checkpoint(tmp_path)


# ---------------------------------------------------------------------------------------------------------------
# the Hugging Face Hub (the network replaced by local files)


def test_offline_download_says_so_and_how_to_load_a_local_folder(tmp_path: Path):
    # huggingface_hub reads HF_HUB_OFFLINE once, at import: only a fresh interpreter sees it set
    script = (
        "import time\n"
        "from litllm.checkpoint import HubError, download\n"
        "start = time.monotonic()\n"
        "try:\n"
        "    download('litllm-tests/tiny-llama', progress=None)\n"
        "except HubError as e:\n"
        "    print(f'{time.monotonic() - start:.2f}')\n"
        "    print(e)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "LITLLM_HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    seconds, message = result.stdout.strip().split("\n", 1)
    assert float(seconds) < 5
    assert "offline" in message and "HF_HUB_OFFLINE" in message
    assert "litllm-tests/tiny-llama" in message and "pass their folder instead" in message


def hub_error(cls: type, status: int) -> Exception:
    import httpx2

    request = httpx2.Request("GET", "https://huggingface.co/api/models/litllm-tests/tiny-llama")
    return cls(f"{status} Client Error", response=httpx2.Response(status, request=request))


def raise_from_snapshot(monkeypatch, error: Exception) -> None:
    def snapshot_download(repo_id, **kwargs):
        raise error

    monkeypatch.setattr("huggingface_hub.snapshot_download", snapshot_download)


def test_missing_repository_is_named(monkeypatch, tmp_path: Path):
    from huggingface_hub.errors import RepositoryNotFoundError

    monkeypatch.setenv("LITLLM_HOME", str(tmp_path))
    raise_from_snapshot(monkeypatch, hub_error(RepositoryNotFoundError, 404))
    with pytest.raises(HubError, match=r"no Hub repository 'litllm-tests/tiny-llama' \(or it is private"):
        download("litllm-tests/tiny-llama", progress=None)


def test_gated_repository_says_how_to_get_access(monkeypatch, tmp_path: Path):
    from huggingface_hub.errors import GatedRepoError

    monkeypatch.setenv("LITLLM_HOME", str(tmp_path))
    raise_from_snapshot(monkeypatch, hub_error(GatedRepoError, 403))
    with pytest.raises(HubError, match=r"litllm-tests/tiny-llama is gated: accept its license .* HF_TOKEN"):
        download("litllm-tests/tiny-llama", progress=None)


def test_download_converts_the_snapshot_into_litllm_home(monkeypatch, tmp_path: Path):
    hub_repo = tmp_path / "hub"
    hf_model = save_hf_model("llama3", hub_repo)
    (hub_repo / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<s>"}))
    (hub_repo / "pytorch_model.bin").write_bytes(b"\x80\x04pickled copy of the weights")
    (hub_repo / "README.md").write_text("# tiny llama")
    calls = []

    def snapshot_download(repo_id, *, allow_patterns, local_dir, **kwargs):
        calls.append(repo_id)
        Path(local_dir).mkdir(parents=True, exist_ok=True)
        for f in hub_repo.iterdir():
            if any(fnmatch.fnmatch(f.name, p) for p in allow_patterns):
                shutil.copy(f, Path(local_dir) / f.name)
        return str(local_dir)

    monkeypatch.setenv("LITLLM_HOME", str(tmp_path / "home"))
    monkeypatch.setattr("huggingface_hub.snapshot_download", snapshot_download)
    out = download("litllm-tests/tiny-llama", progress=None)

    assert calls == ["litllm-tests/tiny-llama"]
    assert out == tmp_path / "home" / "checkpoints" / "litllm-tests" / "tiny-llama"
    assert detect_format(out) == "litllm"
    assert (out / "tokenizer_config.json").is_file()
    assert not list((tmp_path / "home").rglob("*.bin")) and not list((tmp_path / "home").rglob("README.md"))
    with torch.no_grad():
        assert_close(load_checkpoint(out)(TOKENS), hf_model(TOKENS).logits, atol=1e-5, rtol=0)
