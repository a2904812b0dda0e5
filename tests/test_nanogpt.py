"""nanoGPT checkpoints (ckpt.pt, meta.pkl) and prepared datasets (train.bin, val.bin) in litllm.

The reference below is nanoGPT's model.py architecture written out from its known structure (GPTConfig, LayerNorm
with optional bias, CausalSelfAttention with c_attn/c_proj, MLP with c_fc/GELU/c_proj, pre-norm blocks, tied
lm_head); checkpoints are written the way nanoGPT's train.py writes them, with random weights.
"""

from __future__ import annotations

import math
import os
import pickle
from dataclasses import asdict, dataclass
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from litllm.checkpoint.layout import checkpoint_kind, detect_format
from litllm.checkpoint.loading import checkpoint_config, load_checkpoint
from litllm.checkpoint.nanogpt import (
    char_tokenizer,
    converted_checkpoint,
    find_meta,
    nanogpt_info,
    read_meta,
    unknown_characters,
)
from litllm.checkpoint.sources import resolve_checkpoint
from litllm.data.nanogpt import NanoGPTBins, find_nanogpt_dataset, prepare_char_dataset, prepare_token_dataset
from litllm.errors import CheckpointError
from litllm.tokenizer import Tokenizer

TEXT = (
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
    "First Citizen:\nYou are all resolved rather to die than to famish?\n\nAll:\nResolved. resolved.\n\n"
) * 30


# ---- the reference: nanoGPT's model ----------------------------------------------------------------------------


@dataclass
class GPTConfig:
    block_size: int = 1024
    vocab_size: int = 50304
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True


class LayerNorm(nn.Module):
    def __init__(self, ndim: int, bias: bool) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig, with_mask_buffer: bool) -> None:
        super().__init__()
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.n_head, self.n_embd = config.n_head, config.n_embd
        if with_mask_buffer:  # nanoGPT registers it when torch has no flash attention (torch < 2.0)
            mask = torch.tril(torch.ones(config.block_size, config.block_size))
            self.register_buffer("bias", mask.view(1, 1, config.block_size, config.block_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
        att = F.softmax(att.masked_fill(~causal, float("-inf")), dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.gelu(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, config: GPTConfig, with_mask_buffer: bool) -> None:
        super().__init__()
        self.ln_1 = LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config, with_mask_buffer)
        self.ln_2 = LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class NanoGPT(nn.Module):
    def __init__(self, config: GPTConfig, with_mask_buffer: bool = False) -> None:
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.vocab_size, config.n_embd),
                wpe=nn.Embedding(config.block_size, config.n_embd),
                drop=nn.Dropout(config.dropout),
                h=nn.ModuleList([Block(config, with_mask_buffer) for _ in range(config.n_layer)]),
                ln_f=LayerNorm(config.n_embd, bias=config.bias),
            )
        )
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # weight tying
        for p in self.parameters():  # random everywhere (nanoGPT's init zeroes biases and sets norms to one)
            nn.init.normal_(p, mean=0.0, std=0.2)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(idx.shape[1])
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        for block in self.transformer.h:
            x = block(x)
        return self.lm_head(self.transformer.ln_f(x))  # (B, T, V): every position, as with targets


def write_ckpt(
    path: Path,
    bias: bool = True,
    compiled: bool = False,
    vocab_size: int = 96,
    dataset: str = "shakespeare_char",
    with_mask_buffer: bool = False,
    seed: int = 0,
) -> NanoGPT:
    """A random nanoGPT model saved as train.py saves it; returns the model."""
    torch.manual_seed(seed)
    config = GPTConfig(block_size=64, vocab_size=vocab_size, n_layer=2, n_head=4, n_embd=32, bias=bias)
    model = NanoGPT(config, with_mask_buffer).eval()
    state = model.state_dict()
    if compiled:  # torch.compile's wrapper: train.py saves raw_model.state_dict() of the compiled module
        state = {f"_orig_mod.{k}": v for k, v in state.items()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.zeros(1, 4, dtype=torch.long)).sum().backward()
    optimizer.step()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "model": state,
            "optimizer": optimizer.state_dict(),
            "model_args": {**asdict(config)},
            "iter_num": 250,
            "best_val_loss": torch.tensor(1.4697),
            "config": {"dataset": dataset, "batch_size": 12, "learning_rate": 1e-3, "compile": compiled},
        },
        path,
    )
    return model


def write_meta(folder: Path, text: str = TEXT) -> dict:
    """nanoGPT's shakespeare_char meta.pkl for `text`."""
    chars = sorted(set(text))
    meta = {"vocab_size": len(chars), "itos": dict(enumerate(chars)), "stoi": {c: i for i, c in enumerate(chars)}}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "meta.pkl").write_bytes(pickle.dumps(meta))
    return meta


@pytest.fixture
def char_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """nanoGPT's layout: <repo>/data/shakespeare_char/meta.pkl and <repo>/out/my_model/ckpt.pt; cwd elsewhere."""
    meta = write_meta(tmp_path / "repo" / "data" / "shakespeare_char")
    write_ckpt(tmp_path / "repo" / "out" / "my_model" / "ckpt.pt", vocab_size=meta["vocab_size"])
    monkeypatch.chdir(tmp_path)
    return tmp_path / "repo" / "out" / "my_model" / "ckpt.pt"


# ---- checkpoints ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("compiled", [False, True], ids=["plain", "orig_mod"])
def test_logits_match_nanogpt(tmp_path: Path, bias: bool, compiled: bool) -> None:
    reference = write_ckpt(tmp_path / "ckpt.pt", bias=bias, compiled=compiled)
    model = load_checkpoint(tmp_path / "ckpt.pt")
    idx = torch.randint(0, 96, (2, 64), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(model(idx), reference(idx), atol=1e-5, rtol=0)
    assert model.config.norm_bias is bias and model.config.qkv_bias is bias and model.config.tie_embeddings


def test_a_nanogpt_model_with_biases_exports_to_transformers_gpt2(char_run: Path, tmp_path: Path) -> None:
    from transformers import GPT2LMHeadModel

    from litllm.checkpoint.hf import convert_to_hf

    reference = NanoGPT(GPTConfig(**torch.load(char_run, weights_only=True)["model_args"])).eval()
    reference.load_state_dict(torch.load(char_run, weights_only=True)["model"])
    out = convert_to_hf(converted_checkpoint(char_run), tmp_path / "hf")
    hf = GPT2LMHeadModel.from_pretrained(out).eval()
    idx = torch.randint(0, reference.config.vocab_size, (1, 64), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(hf(idx).logits, reference(idx), atol=1e-5, rtol=0)


def test_the_causal_mask_buffer_of_old_torch_is_not_a_weight(tmp_path: Path) -> None:
    reference = write_ckpt(tmp_path / "ckpt.pt", with_mask_buffer=True)
    idx = torch.arange(10).view(1, 10)
    with torch.no_grad():
        torch.testing.assert_close(load_checkpoint(tmp_path).forward(idx), reference(idx), atol=1e-5, rtol=0)


def test_a_folder_holding_ckpt_pt_or_the_file_itself_is_a_nanogpt_checkpoint(tmp_path: Path) -> None:
    write_ckpt(tmp_path / "run" / "ckpt.pt")
    assert checkpoint_kind(tmp_path / "run") == "nanogpt"
    assert detect_format(tmp_path / "run" / "ckpt.pt") == "nanogpt"
    config = checkpoint_config(tmp_path / "run")
    assert (config.n_layer, config.n_embd, config.block_size, config.vocab_size) == (2, 32, 64, 96)


def test_other_pickles_stay_refused(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    torch.save({"state_dict": {"w": torch.zeros(2)}}, tmp_path / "run" / "model.pt")
    with pytest.raises(CheckpointError, match="not a nanoGPT checkpoint"):
        detect_format(tmp_path / "run")
    with pytest.raises(CheckpointError, match="not a nanoGPT checkpoint"):
        resolve_checkpoint(tmp_path / "run" / "model.pt")


class Payload:
    """Unpickling this runs os.system: what a malicious pickle would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_ckpt_that_weights_only_refuses_is_refused_unrun(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    model = NanoGPT(GPTConfig(block_size=8, vocab_size=16, n_layer=1, n_head=2, n_embd=8))
    ckpt = {"model": model.state_dict(), "model_args": {}, "config": {"hook": Payload(marker)}}
    torch.save(ckpt, tmp_path / "ckpt.pt")
    with pytest.raises(CheckpointError, match=r"weights_only=True"):
        load_checkpoint(tmp_path / "ckpt.pt")
    with pytest.raises(CheckpointError, match=r"weights_only=True"):
        resolve_checkpoint(tmp_path / "ckpt.pt")
    assert not marker.exists()


# ---- meta.pkl and the tokenizer ----------------------------------------------------------------------------------


def test_the_char_tokenizer_round_trips_text_of_known_characters(tmp_path: Path) -> None:
    write_meta(tmp_path, TEXT + "\t~")
    meta = read_meta(tmp_path / "meta.pkl")
    tok = char_tokenizer(meta["stoi"])
    text = "First Citizen:\n  hear me ~speak.\n\n\t"
    ids = tok.encode(text).ids
    assert ids == [meta["stoi"][c] for c in text]  # nanoGPT's encode
    assert tok.decode(ids) == text == "".join(meta["itos"][i] for i in ids)  # and decode


def test_unknown_characters_are_dropped_and_can_be_listed(tmp_path: Path) -> None:
    meta = write_meta(tmp_path)
    tok = char_tokenizer(meta["stoi"])
    assert tok.decode(tok.encode("hear é me").ids) == "hear  me"
    assert unknown_characters("hear é me€", meta["stoi"]) == ["é", "€"]


def test_a_meta_pkl_that_names_a_class_is_refused_without_running_it(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    (tmp_path / "meta.pkl").write_bytes(pickle.dumps({"stoi": {"a": 0}, "x": Payload(marker)}))
    with pytest.raises(CheckpointError, match=r"names (posix|os|nt)\.system"):
        read_meta(tmp_path / "meta.pkl")
    assert not marker.exists()


def test_a_meta_pkl_with_an_inconsistent_vocabulary_is_refused(tmp_path: Path) -> None:
    (tmp_path / "meta.pkl").write_bytes(pickle.dumps({"stoi": {"a": 0, "b": 2}, "itos": {0: "a", 2: "b"}}))
    with pytest.raises(CheckpointError, match=r"ids must be the integers 0\.\.1"):
        read_meta(tmp_path / "meta.pkl")
    (tmp_path / "meta.pkl").write_bytes(pickle.dumps({"stoi": {"ab": 0}, "itos": {0: "ab"}}))
    with pytest.raises(CheckpointError, match="single characters"):
        read_meta(tmp_path / "meta.pkl")


def test_meta_pkl_is_looked_for_beside_the_ckpt_then_up_its_folders_then_in_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ckpt = tmp_path / "repo" / "out" / "run" / "ckpt.pt"
    ckpt.parent.mkdir(parents=True)
    cwd_meta = tmp_path / "cwd" / "data" / "ds"
    write_meta(cwd_meta)
    monkeypatch.chdir(tmp_path / "cwd")
    assert find_meta(ckpt, "ds") == cwd_meta / "meta.pkl"
    write_meta(tmp_path / "repo" / "data" / "ds")
    assert find_meta(ckpt, "ds") == tmp_path / "repo" / "data" / "ds" / "meta.pkl"
    write_meta(ckpt.parent)
    assert find_meta(ckpt, "ds") == ckpt.parent / "meta.pkl"
    assert find_meta(tmp_path / "elsewhere" / "ckpt.pt", "../ds") is None  # a dataset name is one folder name


# ---- loading and generating -------------------------------------------------------------------------------------


def test_llm_load_of_a_char_level_ckpt_generates_text(char_run: Path) -> None:
    from litllm.api import LLM

    reference = NanoGPT(GPTConfig(**torch.load(char_run, weights_only=True)["model_args"])).eval()
    reference.load_state_dict(torch.load(char_run, weights_only=True)["model"])
    llm = LLM.load(str(char_run), device="cpu")
    text = llm.generate("First", max_new_tokens=20, temperature=0)
    assert isinstance(text, str) and len(text) == 20
    # greedy: each character is the reference model's argmax after the prompt and what came before
    meta = read_meta(char_run.parents[2] / "data" / "shakespeare_char" / "meta.pkl")
    ids = [meta["stoi"][c] for c in "First"]
    with torch.no_grad():
        for _ in range(20):
            ids.append(int(reference(torch.tensor([ids]))[0, -1].argmax()))
    assert text == "".join(meta["itos"][i] for i in ids[5:])


def test_the_folder_and_the_file_load_the_same_converted_checkpoint(char_run: Path) -> None:
    from litllm.api import LLM

    folder = resolve_checkpoint(char_run.parent)
    assert resolve_checkpoint(str(char_run)) == folder
    assert checkpoint_kind(folder) == "litllm" and (folder / "tokenizer.json").is_file()
    assert Tokenizer(folder).decode(Tokenizer(folder).encode("Speak, speak.\n")) == "Speak, speak.\n"
    assert LLM.load(char_run.parent, device="cpu").config.vocab_size == len(set(TEXT))


def test_a_converted_checkpoint_is_reused_until_the_ckpt_changes(char_run: Path) -> None:
    first = converted_checkpoint(char_run)
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    assert converted_checkpoint(char_run) == first
    assert (first / "model.safetensors").stat().st_mtime_ns == stamp
    trained_on = write_ckpt(char_run, vocab_size=len(set(TEXT)), seed=1)  # training went on: a new ckpt.pt
    os.utime(char_run, ns=(stamp + 10**9, stamp + 10**9))  # a second later, on any filesystem's clock
    second = converted_checkpoint(char_run)
    assert second != first and not first.exists()
    torch.testing.assert_close(load_checkpoint(second).wte.weight, trained_on.transformer.wte.weight)


def test_nanogpt_info_describes_the_run(char_run: Path) -> None:
    info = nanogpt_info(char_run.parent)
    assert info["iter_num"] == 250 and info["best_val_loss"] == pytest.approx(1.4697)
    assert info["config"]["dataset"] == "shakespeare_char" and info["model_args"]["n_layer"] == 2


def test_without_meta_pkl_the_tokenizer_is_gpt2s_and_its_absence_says_how_to_get_it(tmp_path: Path) -> None:
    from litllm.checkpoint.hub import cached_checkpoint_dir

    write_ckpt(tmp_path / "run" / "ckpt.pt", vocab_size=400, dataset="openwebtext")
    with pytest.raises(CheckpointError, match="litllm download openai-community/gpt2 --tokenizer_only true"):
        resolve_checkpoint(tmp_path / "run")
    # a tokenizer-only download of openai-community/gpt2 (here a small byte-level BPE stands in for it)
    from litllm.tokenizer import train_bpe

    gpt2 = cached_checkpoint_dir("openai-community/gpt2")
    train_bpe(iter([TEXT]), vocab_size=300, out_dir=gpt2, show_progress=False)
    folder = resolve_checkpoint(tmp_path / "run")
    assert Tokenizer(folder).encode("hear me") == Tokenizer(gpt2).encode("hear me")
    assert (folder / "tokenizer_config.json").is_file()


# ---- prepared datasets -------------------------------------------------------------------------------------------

T, B = 16, 4  # max_seq_length, batch_size


def char_data(folder: Path, num_workers: int = 0, seed: int = 42, batch_size: int = B) -> NanoGPTBins:
    """NanoGPTBins over `folder`, connected to its own tokenizer and set up."""
    data = NanoGPTBins(folder, batch_size=batch_size, num_workers=num_workers, seed=seed)
    data.connect(Tokenizer(data.tokenizer_dir()), T)
    data.setup()
    return data


@pytest.fixture
def shakespeare(tmp_path: Path) -> Path:
    return prepare_char_dataset(TEXT, tmp_path / "data" / "shakespeare_char")


def test_prepare_char_dataset_writes_what_nanogpts_prepare_writes(shakespeare: Path) -> None:
    meta = read_meta(shakespeare / "meta.pkl")
    chars = sorted(set(TEXT))
    assert meta == {
        "vocab_size": len(chars),
        "itos": dict(enumerate(chars)),
        "stoi": {c: i for i, c in enumerate(chars)},
    }
    train = np.fromfile(shakespeare / "train.bin", dtype=np.uint16)
    val = np.fromfile(shakespeare / "val.bin", dtype=np.uint16)
    n = int(len(TEXT) * 0.9)
    assert "".join(meta["itos"][int(i)] for i in train) == TEXT[:n]
    assert "".join(meta["itos"][int(i)] for i in val) == TEXT[n:]


def test_batches_are_windows_of_train_bin_with_labels_shifted_by_one(shakespeare: Path) -> None:
    data = char_data(shakespeare)
    train = np.fromfile(shakespeare / "train.bin", dtype=np.uint16)
    starts = data.train_windows.window_starts(0)
    assert len({s % T for s in starts.tolist()}) == 1  # one epoch's windows sit on one grid
    assert starts.min() >= 0 and starts.max() + T + 1 <= len(train)
    batches = list(data.train_dataloader())
    assert len(batches) == len(data.train_dataloader()) == ((len(train) - T) // T) // B
    for k, batch in enumerate(batches):
        assert batch["input_ids"].shape == batch["labels"].shape == (B, T)
        assert batch["input_ids"].dtype == batch["labels"].dtype == torch.int64
        expected = np.stack([train[s : s + T + 1] for s in starts[k * B : (k + 1) * B]])
        assert np.array_equal(batch["input_ids"].numpy(), expected[:, :-1])
        assert np.array_equal(batch["labels"].numpy(), expected[:, 1:])


def test_an_epoch_visits_each_window_once_in_an_order_fixed_by_seed_and_epoch(shakespeare: Path) -> None:
    data = char_data(shakespeare)
    windows = data.train_windows
    first = windows.window_starts(0)
    assert len(set(first.tolist())) == len(first) == windows.n_windows
    assert np.array_equal(first, char_data(shakespeare).train_windows.window_starts(0))
    assert not np.array_equal(first, windows.window_starts(1))
    assert not np.array_equal(first, char_data(shakespeare, seed=7).train_windows.window_starts(0))


def test_worker_processes_give_the_same_batches_in_the_same_order(shakespeare: Path) -> None:
    alone = [b["input_ids"] for b in char_data(shakespeare).train_dataloader()]
    workers = [b["input_ids"] for b in char_data(shakespeare, num_workers=2).train_dataloader()]
    assert len(alone) == len(workers) and all(torch.equal(a, b) for a, b in zip(alone, workers, strict=True))


def test_ranks_share_an_epoch_without_overlap(shakespeare: Path) -> None:
    from litllm.data.nanogpt import Windows

    whole = Windows(shakespeare / "train.bin", T, B, 42, True, 0, 1).window_starts(0)
    ranks = [Windows(shakespeare / "train.bin", T, B, 42, True, r, 2).window_starts(0) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) and not set(ranks[0].tolist()) & set(ranks[1].tolist())
    assert set(ranks[0].tolist()) | set(ranks[1].tolist()) <= set(whole.tolist())


def test_the_loader_state_resumes_with_the_next_batch_and_the_next_epoch(shakespeare: Path) -> None:
    loader = char_data(shakespeare).train_dataloader()
    epoch_0 = [b["input_ids"] for b in loader]
    epoch_1 = [b["input_ids"] for b in loader]  # iterated again after a whole epoch: the next epoch
    assert not torch.equal(epoch_0[0], epoch_1[0])
    for stop in (3, len(epoch_0)):
        loader = char_data(shakespeare).train_dataloader()
        for _, _ in zip(range(stop), loader, strict=False):
            pass
        resumed = char_data(shakespeare, num_workers=1).train_dataloader()
        resumed.load_state_dict(loader.state_dict())
        expected = (epoch_0 + epoch_1)[stop]
        assert torch.equal(next(iter(resumed))["input_ids"], expected)


def test_validation_reads_val_bin_in_order(shakespeare: Path) -> None:
    val = np.fromfile(shakespeare / "val.bin", dtype=np.uint16)
    batches = list(char_data(shakespeare).val_dataloader())
    inputs = torch.cat([b["input_ids"] for b in batches])
    assert len(inputs) == (len(val) - 1) // T
    assert np.array_equal(inputs[1].numpy(), val[T : 2 * T])


def test_without_val_bin_there_is_no_validation(shakespeare: Path) -> None:
    (shakespeare / "val.bin").unlink()
    assert char_data(shakespeare).val_dataloader() == []


def test_missing_folder_or_train_bin_is_named(tmp_path: Path, shakespeare: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        char_data(tmp_path / "nowhere")
    (shakespeare / "train.bin").unlink()
    with pytest.raises(FileNotFoundError, match="has no train.bin"):
        char_data(shakespeare)


def test_a_bin_of_odd_size_is_refused(shakespeare: Path) -> None:
    with open(shakespeare / "val.bin", "ab") as f:
        f.write(b"\x00")
    with pytest.raises(ValueError, match=r"val\.bin.* not a whole number of 2-byte"):
        char_data(shakespeare)


def test_ids_beyond_the_vocabulary_are_refused_with_their_position(shakespeare: Path) -> None:
    ids = np.fromfile(shakespeare / "train.bin", dtype=np.uint16)
    ids[100] = 500
    ids.tofile(shakespeare / "train.bin")
    with pytest.raises(ValueError, match=r"token id 500 at position 100.*ids 0\.\.\d+"):
        char_data(shakespeare)


def test_a_char_dataset_with_another_tokenizer_is_refused(shakespeare: Path, tokenizer_dir: Path) -> None:
    data = NanoGPTBins(shakespeare, batch_size=B, num_workers=0)
    data.connect(Tokenizer(tokenizer_dir), T)
    with pytest.raises(ValueError, match="is char-level .* tokenizer_dir="):
        data.setup()


def test_too_little_data_for_one_batch_is_named(tmp_path: Path) -> None:
    folder = prepare_char_dataset("abcdefghij" * 5, tmp_path / "tiny")
    with pytest.raises(ValueError, match="too few for one batch of 4 windows"):
        char_data(folder)


def test_find_nanogpt_dataset_looks_under_each_root_in_order(tmp_path: Path, shakespeare: Path) -> None:
    assert find_nanogpt_dataset("shakespeare_char", [tmp_path / "other", tmp_path]) == shakespeare
    assert find_nanogpt_dataset("openwebtext", [tmp_path]) is None
    with pytest.raises(ValueError, match="invalid dataset name"):
        find_nanogpt_dataset("../etc", [tmp_path])


def test_prepare_token_dataset_encodes_with_the_tokenizer(tmp_path: Path, tokenizer_dir: Path) -> None:
    folder = prepare_token_dataset(TEXT, tmp_path / "bpe", tokenizer_dir)
    tok = Tokenizer(tokenizer_dir)
    n = int(len(TEXT) * 0.9)
    assert np.fromfile(folder / "train.bin", dtype=np.uint16).tolist() == tok.encode(TEXT[:n], bos=False)
    assert not (folder / "meta.pkl").exists()
    data = NanoGPTBins(folder, batch_size=B, num_workers=0)
    data.connect(tok, T)
    data.setup()
    assert next(iter(data.train_dataloader()))["input_ids"].shape == (B, T)


class Bigram(L.LightningModule):
    """The smallest model that trains on these batches; records what it saw."""

    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        self.logits = nn.Embedding(vocab_size, vocab_size)
        self.seen: list[torch.Tensor] = []

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        self.seen.append(batch["input_ids"])
        return F.cross_entropy(self.logits(batch["input_ids"]).flatten(0, 1), batch["labels"].flatten())

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self.logits(batch["input_ids"])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_the_trainer_resumes_mid_epoch_and_across_epochs_with_the_next_batch(tmp_path: Path) -> None:
    from lightning.pytorch.callbacks import ModelCheckpoint

    folder = prepare_char_dataset(TEXT[:500], tmp_path / "small")  # 27 windows of 17 in train.bin: 6 batches an epoch

    def fit(run: str, ckpt_path: str | None = None) -> Bigram:
        data = NanoGPTBins(folder, batch_size=B, num_workers=1)
        data.connect(Tokenizer(data.tokenizer_dir()), T)
        model = Bigram(len(set(TEXT[:500])))
        every_step = ModelCheckpoint(dirpath=tmp_path / run, every_n_train_steps=1, save_top_k=-1)
        trainer = L.Trainer(
            max_steps=15,
            val_check_interval=2,  # validation runs between the saved batches too
            limit_val_batches=2,
            callbacks=[every_step],
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        trainer.fit(model, datamodule=data, ckpt_path=ckpt_path)
        return model

    whole = fit("whole")
    assert len(whole.seen) == 15
    for step, epoch in ((4, 0), (6, 0), (9, 1)):  # mid-epoch, at an epoch's end, in the second epoch
        resumed = fit(f"from-{step}", ckpt_path=str(tmp_path / "whole" / f"epoch={epoch}-step={step}.ckpt"))
        assert len(resumed.seen) == 15 - step
        assert all(torch.equal(a, b) for a, b in zip(whole.seen[step:], resumed.seen, strict=True))


def test_litllm_pretrain_on_a_char_dataset_exports_a_model_with_its_char_tokenizer(
    tmp_path: Path, shakespeare: Path
) -> None:
    import subprocess
    import sys

    import yaml

    from litllm.api import LLM

    recipe = {
        "model": {
            "model_config": {
                "name": "gpt2",
                "n_layer": 2,
                "n_head": 2,
                "n_embd": 32,
                "block_size": 32,
                "vocab_size": len(set(TEXT)),
            },
            "tokenizer_dir": str(NanoGPTBins(shakespeare).tokenizer_dir()),
            "max_seq_length": T,
            "warmup_steps": 1,
        },
        "data": {
            "class_path": "litllm.data.nanogpt.NanoGPTBins",
            "init_args": {"path": str(shakespeare), "batch_size": B, "num_workers": 0},
        },
        "trainer": {
            "max_steps": 6,
            "precision": "32-true",
            "accelerator": "cpu",
            "val_check_interval": 3,
            "limit_val_batches": 2,
            "enable_progress_bar": False,
        },
        "checkpoint_every": 3,
    }
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    env.pop("LITLLM_RUN_DIR", None)
    cmd = [sys.executable, "-m", "litllm.cli", "pretrain", "--config", str(tmp_path / "recipe.yaml")]
    result = subprocess.run([*cmd, "--out_dir", str(tmp_path / "run")], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-3000:]

    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "step-0000003.ckpt", weights_only=True)
    assert ckpt["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [
        {"epoch": 0, "served": 3, "batches_per_epoch": len(char_data(shakespeare).train_dataloader())}
    ]
    final = tmp_path / "run" / "final"
    assert (final / "tokenizer.json").read_text() == (
        NanoGPTBins(shakespeare).tokenizer_dir() / "tokenizer.json"
    ).read_text()
    text = LLM.load(final, device="cpu").generate("First Citizen:\n", max_new_tokens=12, temperature=0.8, top_k=5)
    assert len(text) == 12 and set(text) <= set(TEXT)
