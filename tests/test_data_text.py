"""Text-file pretraining data: tokenized once into a litdata cache, streamed in windows, resumable mid-epoch."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import SAMPLE_TEXT
from lightning.pytorch.callbacks import ModelCheckpoint

from litllm.data import LitData, PythonStdlib, TextFiles
from litllm.data import text_files as text_files_module
from litllm.data.text_files import tokenize_file
from litllm.paths import litllm_home
from litllm.tokenizer import Tokenizer, train_bpe
from litllm.training.tokenizer_training import tokenizer_for_corpus, train_tokenizer

T = 16  # max_seq_length
B = 4  # batch_size


def write_corpus(root: Path) -> Path:
    """Four files with text, one that is not UTF-8, one empty, and files a folder search must leave out."""
    (root / "sub").mkdir(parents=True)
    (root / ".hidden").mkdir()
    for i, name in enumerate(["a.txt", "b.md", "c.py", "sub/d.txt"]):
        (root / name).write_text(SAMPLE_TEXT[i * 100 :])
    (root / "latin1.txt").write_bytes("café au lait\n".encode("latin-1") * 50)
    (root / "empty.txt").write_text("")
    (root / ".hidden" / "e.txt").write_text("hidden")
    (root / "table.csv").write_text("a,b\n1,2\n")
    return root


def text_files(path: Path, tokenizer_dir: Path, max_seq_length: int = T, **kwargs) -> TextFiles:
    data = TextFiles(str(path), batch_size=B, num_workers=kwargs.pop("num_workers", 0), **kwargs)
    data.connect(Tokenizer(tokenizer_dir), max_seq_length)
    return data


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory, tokenizer_dir: Path) -> TextFiles:
    """A TextFiles corpus tokenized once into its own cache folder, set up."""
    corpus = write_corpus(tmp_path_factory.mktemp("corpus"))
    data = text_files(corpus, tokenizer_dir, cache_dir=str(tmp_path_factory.mktemp("cache")))
    data.prepare_data()
    data.setup()
    return data


def test_batches_are_windows_with_labels_shifted_by_one(prepared: TextFiles) -> None:
    for batch in [next(iter(prepared.train_dataloader())), next(iter(prepared.val_dataloader()))]:
        assert batch["input_ids"].shape == batch["labels"].shape == (B, T)
        assert batch["input_ids"].dtype == batch["labels"].dtype == torch.int64
        assert torch.equal(batch["labels"][:, :-1], batch["input_ids"][:, 1:])


def test_a_file_is_one_document_ending_in_eos(prepared: TextFiles, tokenizer_dir: Path) -> None:
    path = prepared.split().train[0]
    tokenizer = Tokenizer(tokenizer_dir)
    ids = tokenize_file(str(path), str(tokenizer_dir)).tolist()
    assert ids == tokenizer.encode(path.read_text()) + [tokenizer.eos_id]


def test_split_is_by_file_and_skips_files_without_text(prepared: TextFiles) -> None:
    split = prepared.split()
    assert (len(split.train), len(split.val), split.not_utf8, split.empty) == (3, 1, 1, 1)
    assert {p.name for p in split.train + split.val} == {"a.txt", "b.md", "c.py", "d.txt"}


def test_reports_skipped_non_utf8_files(prepared: TextFiles, capsys: pytest.CaptureFixture) -> None:
    prepared.prepare_data()
    assert "skipped 1 non-UTF-8 files and 1 empty files" in capsys.readouterr().out


def test_second_prepare_reuses_the_cache(prepared: TextFiles, tokenizer_dir: Path, capsys) -> None:
    index = Path(prepared.cache_dir, "train", "index.json")
    before = index.stat().st_mtime_ns
    again = text_files(Path(prepared.path), tokenizer_dir, cache_dir=prepared.cache_dir)
    again.prepare_data()
    assert index.stat().st_mtime_ns == before
    assert "reusing the tokenized corpus" in capsys.readouterr().out


def test_cache_depends_on_tokenizer_and_max_seq_length(tmp_path: Path, tokenizer_dir: Path) -> None:
    corpus = write_corpus(tmp_path / "corpus")
    other_tokenizer = tmp_path / "other"
    train_bpe([corpus / "a.txt"], vocab_size=300, out_dir=other_tokenizer, show_progress=False)
    base = text_files(corpus, tokenizer_dir).cache_location()[0]
    assert base.parent == litllm_home() / "data"
    assert text_files(corpus, tokenizer_dir).cache_location()[0] == base
    assert text_files(corpus, tokenizer_dir, max_seq_length=T + 1).cache_location()[0] != base
    assert text_files(corpus, other_tokenizer).cache_location()[0] != base


def test_missing_path_is_named(tmp_path: Path, tokenizer_dir: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere"):
        text_files(tmp_path / "nowhere", tokenizer_dir).prepare_data()
    with pytest.raises(FileNotFoundError, match=r"no files match .*\*\.txt"):
        text_files(tmp_path / "*.txt", tokenizer_dir).prepare_data()


def test_corpus_without_text_is_named(tmp_path: Path, tokenizer_dir: Path) -> None:
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "latin1.txt").write_bytes(b"caf\xe9")
    with pytest.raises(ValueError, match=f"no text to train on in '{tmp_path}'"):
        text_files(tmp_path, tokenizer_dir).prepare_data()
    with pytest.raises(ValueError, match=f"no .json files in '{tmp_path}'"):
        text_files(tmp_path, tokenizer_dir, extensions=(".json",)).prepare_data()


def test_tokenizing_prints_its_own_lines_only_and_counts_every_file(
    tmp_path: Path, tokenizer_dir: Path, capfd: pytest.CaptureFixture
) -> None:
    """litdata's chatter (an advertisement, setup steps, each worker's start and end, its progress bar) stays out of
    the output, from the parent and from the forked workers alike; the files tokenized are counted for the bar."""
    corpus = write_corpus(tmp_path / "corpus")
    data = text_files(corpus, tokenizer_dir, cache_dir=str(tmp_path / "cache"), num_workers=2)
    capfd.readouterr()
    data.prepare_data()
    out, err = capfd.readouterr()
    lines = [line for line in (out + err).splitlines() if line.strip()]
    assert [line.split(" files")[0] for line in lines[:2]] == ["tokenizing 3 train", "tokenizing 1 val"]
    assert "3 train files (" in lines[2] and "1 val files (" in lines[2]  # the summary
    assert lines[3].startswith("skipped 1 non-UTF-8 files and 1 empty files")
    assert len(lines) == 4, lines
    assert text_files_module._files_done.value == 1  # the last split's files (val), counted by the workers


def test_interrupted_cache_is_rebuilt(tmp_path: Path, tokenizer_dir: Path, capsys) -> None:
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "a.txt").write_text(SAMPLE_TEXT)
    data = text_files(tmp_path / "corpus", tokenizer_dir, val_split_fraction=0.0, cache_dir=str(tmp_path / "cache"))
    data.prepare_data()
    (tmp_path / "cache" / "complete.json").unlink()  # as if the run died before finishing
    with pytest.raises(RuntimeError, match="no finished tokenized corpus"):
        data.setup()
    capsys.readouterr()
    data.prepare_data()
    assert "tokenizing 1 train files" in capsys.readouterr().out
    data.setup()
    assert next(iter(data.train_dataloader()))["input_ids"].shape == (B, T)


def test_short_validation_split_is_reported(tmp_path: Path, tokenizer_dir: Path) -> None:
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "long.txt").write_text(SAMPLE_TEXT)
    (tmp_path / "corpus" / "short.txt").write_text("x = 1\n")
    seed = next(
        s
        for s in range(100)
        if text_files(tmp_path / "corpus", tokenizer_dir, seed=s).split().val[0].name == "short.txt"
    )
    data = text_files(tmp_path / "corpus", tokenizer_dir, seed=seed)
    with pytest.warns(UserWarning, match="fewer than one window of max_seq_length \\+ 1 = 17: no validation"):
        data.prepare_data()
    data.setup()
    assert data.val_dataloader() == []


def test_loader_state_dict_resumes_at_the_next_batch(prepared: TextFiles, tokenizer_dir: Path) -> None:
    def loader():  # a fresh dataset and loader each time, as in a resumed run; reuses the prepared cache
        data = text_files(Path(prepared.path), tokenizer_dir, cache_dir=prepared.cache_dir, num_workers=1)
        data.setup()
        return data.train_dataloader()

    first = loader()
    batches = iter(first)
    for _ in range(3):
        next(batches)
    state = first.state_dict()
    expected = next(batches)
    resumed = loader()
    resumed.load_state_dict(state)
    assert torch.equal(next(iter(resumed))["input_ids"], expected["input_ids"])


class Bigram(L.LightningModule):
    """The smallest model that trains on these batches; records what it saw."""

    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        self.logits = torch.nn.Embedding(vocab_size, vocab_size)
        self.seen: list[torch.Tensor] = []

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        self.seen.append(batch["input_ids"])
        return torch.nn.functional.cross_entropy(
            self.logits(batch["input_ids"]).flatten(0, 1), batch["labels"].flatten()
        )

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self.logits(batch["input_ids"])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_trainer_resumes_mid_epoch_with_the_next_batch(prepared: TextFiles, tokenizer_dir: Path, tmp_path) -> None:
    def fit(run: str, ckpt_path: str | None = None) -> Bigram:
        model = Bigram(Tokenizer(tokenizer_dir).vocab_size)
        every_3 = ModelCheckpoint(dirpath=tmp_path / run, every_n_train_steps=3, save_top_k=-1)
        trainer = L.Trainer(
            max_steps=6,
            val_check_interval=2,  # validation runs between the saved batches too
            limit_val_batches=2,
            callbacks=[every_3],
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        data = text_files(Path(prepared.path), tokenizer_dir, cache_dir=prepared.cache_dir, num_workers=1)
        trainer.fit(model, datamodule=data, ckpt_path=ckpt_path)
        return model

    uninterrupted = fit("first")
    resumed = fit("resumed", ckpt_path=str(tmp_path / "first" / "epoch=0-step=3.ckpt"))
    assert len(resumed.seen) == 3
    for a, b in zip(uninterrupted.seen[3:], resumed.seen, strict=True):
        assert torch.equal(a, b)


def test_litdata_streams_an_optimized_directory(prepared: TextFiles, tokenizer_dir: Path) -> None:
    data = LitData(prepared.cache_dir, batch_size=B, num_workers=0)  # holds train/ and val/
    data.connect(Tokenizer(tokenizer_dir), T)
    data.setup()
    manifest = json.loads(Path(prepared.cache_dir, "complete.json").read_text())
    assert (len(data.train_dataset), len(data.val_dataset)) == (manifest["train_windows"], manifest["val_windows"])
    batch = next(iter(data.train_dataloader()))
    assert torch.equal(batch["labels"][:, :-1], batch["input_ids"][:, 1:])


def test_litdata_holds_out_a_fraction_without_a_val_folder(prepared: TextFiles, tokenizer_dir: Path) -> None:
    data = LitData(str(Path(prepared.cache_dir, "train")), val_split_fraction=0.1, batch_size=B, num_workers=0)
    data.connect(Tokenizer(tokenizer_dir), T)
    data.setup()
    total = json.loads(Path(prepared.cache_dir, "complete.json").read_text())["train_windows"]
    assert len(data.val_dataset) == int(0.1 * total)
    assert len(data.train_dataset) + len(data.val_dataset) <= total


def test_litdata_missing_or_unoptimized_path_is_named(tmp_path: Path, tokenizer_dir: Path) -> None:
    for path, error, message in [
        (tmp_path / "nowhere", FileNotFoundError, "does not exist"),
        (tmp_path, ValueError, "is not a litdata-optimized directory"),
    ]:
        data = LitData(str(path))
        data.connect(Tokenizer(tokenizer_dir), T)
        with pytest.raises(error, match=f"'{path}'.*{message}"):
            data.setup()


def test_python_stdlib_yields_batches(tokenizer_dir: Path) -> None:
    data = PythonStdlib(max_bytes=300_000, batch_size=B, num_workers=1)
    data.connect(Tokenizer(tokenizer_dir), T)
    data.prepare_data()
    data.setup()
    batch = next(iter(data.train_dataloader()))
    assert batch["input_ids"].shape == (B, T)
    assert sum(f.stat().st_size for f in data.files()) <= 300_000


def test_train_tokenizer_writes_a_tokenizer_and_refuses_to_overwrite(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text(SAMPLE_TEXT)
    (tmp_path / "b.txt").write_text("hello world\n" * 20)
    (tmp_path / "latin1.txt").write_bytes(b"caf\xe9")
    (tmp_path / "out").mkdir()  # an empty folder may be filled
    out = train_tokenizer(
        files=[str(tmp_path / "*.py"), str(tmp_path / "*.txt")], vocab_size=300, out=str(tmp_path / "out")
    )
    tokenizer = Tokenizer(out)
    assert tokenizer.vocab_size == 300
    assert tokenizer.decode(tokenizer.encode("def add(a, b):")) == "def add(a, b):"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left
    with pytest.raises(FileExistsError, match=f"'{out}' already exists"):
        train_tokenizer(files=[str(tmp_path / "a.py")], vocab_size=300, out=str(out))


def test_train_tokenizer_needs_one_source(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="exactly one of --files"):
        train_tokenizer(out=str(tmp_path / "out"))


def test_tokenizer_for_corpus_is_trained_once(tmp_path: Path) -> None:
    data = TextFiles(str(write_corpus(tmp_path / "corpus")))
    first = tokenizer_for_corpus(data, vocab_size=300)
    mtime = (first / "tokenizer.json").stat().st_mtime_ns
    assert tokenizer_for_corpus(TextFiles(str(tmp_path / "corpus")), vocab_size=300) == first
    assert (first / "tokenizer.json").stat().st_mtime_ns == mtime
    assert tokenizer_for_corpus(data, vocab_size=301) != first
    assert json.loads((first / "tokenizer_config.json").read_text())["eos_token"] == "<|endoftext|>"
