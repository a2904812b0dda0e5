"""Specification of litllm.tokenizer: loading, BOS/EOS, encode/decode, streaming, saving and training."""

import json
import random
import shutil
from pathlib import Path

import pytest
import torch

from litllm.tokenizer import Tokenizer, train_bpe

SENTENCES = [
    "héllo wörld 你好 🙂",
    "The quick brown fox jumps over the lazy dog while the cat sleeps.",
    "Tokenizers split text into pieces; a model predicts the next piece.",
    "Ünïcödé çharacters like ß, ø, å and é appear in European words.",
    "中文文本没有空格，分词器需要处理汉字。",
    "日本語のテキストも少し入れておきます。",
    "Emoji such as 🙂, 🎉, 🚀 and 👍🏽 take four bytes or more in UTF-8.",
    "def train(model, data):\n    for batch in data:\n        loss = model(batch)\n",
    "Numbers 12345 and 3.14159 and 2026-11-21 show up in logs.",
    "Streaming decoding must never print half of a character.",
]
SAMPLES = [
    "héllo wörld 你好 🙂",
    "Emoji 🎉🙂👍🏽 and CJK 日本語のテキスト, 中文分词。",
    "Unseen: Ω ∑ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 🦙🧪 ✓",
    "  two leading spaces,  two inner  spaces\tand a tab",
]


def corpus() -> str:
    """A few KB of varied text, non-ASCII included."""
    return "\n".join(f"{sentence} ({i})" for i in range(12) for sentence in SENTENCES) + "\n"


def stream(tokenizer: Tokenizer, ids: list[int], skip_special_tokens: bool = False) -> list[str]:
    """The pieces a stream decoder returns for `ids`, flush included."""
    decoder = tokenizer.stream_decoder(skip_special_tokens)
    return [decoder.push(i) for i in ids] + [decoder.flush()]


def checkpoint(directory: Path, tokenizer_dir: Path, **json_files: dict) -> Path:
    """A checkpoint directory with `tokenizer_dir`'s tokenizer.json and the given JSON files (name without .json)."""
    directory.mkdir(parents=True)
    shutil.copy(tokenizer_dir / "tokenizer.json", directory / "tokenizer.json")
    for name, content in json_files.items():
        (directory / f"{name}.json").write_text(json.dumps(content))
    return directory


def with_bos_template(directory: Path, bos_token: str) -> None:
    """Rewrites tokenizer.json with a Llama-style post-processor that puts `bos_token` first."""
    path = directory / "tokenizer.json"
    data = json.loads(path.read_text())
    bos_id = next(t["id"] for t in data["added_tokens"] if t["content"] == bos_token)
    data["post_processor"] = {
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": bos_token, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {bos_token: {"id": bos_token, "ids": [bos_id], "tokens": [bos_token]}},
    }
    path.write_text(json.dumps(data))


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text(corpus(), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def bpe_dir(tmp_path_factory, corpus_file) -> Path:
    out_dir = tmp_path_factory.mktemp("bpe")
    train_bpe(corpus_file, 512, out_dir, special_tokens=("<|endoftext|>", "<|im_start|>", "<|im_end|>"))
    return out_dir


@pytest.fixture(scope="module")
def sp_dir(tmp_path_factory, corpus_file) -> Path:
    import sentencepiece

    out_dir = tmp_path_factory.mktemp("sentencepiece")
    # Llama's settings: BPE with byte fallback, no normalisation, spaces kept as they are.
    sentencepiece.SentencePieceTrainer.train(
        input=str(corpus_file),
        model_prefix=str(out_dir / "tokenizer"),
        vocab_size=400,
        model_type="bpe",
        byte_fallback=True,
        character_coverage=1.0,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        split_digits=True,
        minloglevel=2,
    )
    (out_dir / "tokenizer.vocab").unlink()
    return out_dir


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory, sp_dir) -> Path:
    """A Llama-style tokenizer.json written by transformers from the SentencePiece model's vocabulary."""
    transformers = pytest.importorskip("transformers")
    import sentencepiece
    from transformers.tokenization_utils_base import generate_merges

    sp = sentencepiece.SentencePieceProcessor(model_file=str(sp_dir / "tokenizer.model"))
    vocab = {sp.id_to_piece(i): i for i in range(sp.get_piece_size())}
    hf = transformers.LlamaTokenizerFast(vocab=vocab, merges=generate_merges(vocab), add_bos_token=True)
    out_dir = tmp_path_factory.mktemp("llama")
    hf.save_pretrained(out_dir)
    return out_dir


@pytest.fixture(scope="module")
def bpe(bpe_dir) -> Tokenizer:
    return Tokenizer(bpe_dir)


# Training


@pytest.mark.parametrize("text", SAMPLES)
def test_trained_bpe_round_trips_unicode_text(bpe, text):
    assert bpe.decode(bpe.encode(text)) == text


def test_trained_bpe_loads_with_first_special_token_as_bos_and_eos(bpe_dir, bpe):
    config = json.loads((bpe_dir / "tokenizer_config.json").read_text())
    assert config["bos_token"] == config["eos_token"] == "<|endoftext|>"
    assert bpe.bos_id == bpe.eos_id == bpe.token_to_id("<|endoftext|>")
    assert bpe.stop_ids == (bpe.eos_id,)
    assert bpe.use_bos is False
    assert bpe.backend == "huggingface"


def test_train_bpe_accepts_an_iterator_of_texts(tmp_path):
    tokenizer = train_bpe(iter(corpus().splitlines()), 300, tmp_path, show_progress=False)
    assert tokenizer.decode(tokenizer.encode(SAMPLES[0])) == SAMPLES[0]
    assert 256 < tokenizer.vocab_size <= 300


def test_train_bpe_rejects_a_vocab_smaller_than_bytes_plus_special_tokens(tmp_path):
    with pytest.raises(ValueError, match="vocab_size=257.*256 byte tokens"):
        train_bpe(iter(["text"]), 257, tmp_path, special_tokens=("<a>", "<b>"))


def test_train_bpe_names_a_missing_training_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        train_bpe([tmp_path / "nope.txt"], 300, tmp_path / "out")


# BOS / EOS from the checkpoint's files


def test_bos_and_eos_from_tokenizer_config_strings(tmp_path, bpe_dir, bpe):
    config = {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>"}
    tokenizer = Tokenizer(checkpoint(tmp_path / "ckpt", bpe_dir, tokenizer_config=config))
    assert tokenizer.bos_id == bpe.token_to_id("<|im_start|>")
    assert tokenizer.eos_id == bpe.token_to_id("<|im_end|>")
    assert tokenizer.stop_ids == (tokenizer.eos_id,)


def test_bos_and_eos_from_tokenizer_config_dicts(tmp_path, bpe_dir, bpe):
    config = {
        "bos_token": {"__type": "AddedToken", "content": "<|im_start|>", "special": True},
        "eos_token": {"__type": "AddedToken", "content": "<|im_end|>", "special": True},
        "add_bos_token": True,
    }
    tokenizer = Tokenizer(checkpoint(tmp_path / "ckpt", bpe_dir, tokenizer_config=config))
    assert (tokenizer.bos_id, tokenizer.eos_id) == (bpe.token_to_id("<|im_start|>"), bpe.token_to_id("<|im_end|>"))
    assert tokenizer.use_bos is True
    assert tokenizer.encode("hi")[0] == tokenizer.bos_id


def test_eos_list_from_generation_config_gives_every_stop_id(tmp_path, bpe_dir, bpe):
    eos, im_end = bpe.token_to_id("<|endoftext|>"), bpe.token_to_id("<|im_end|>")
    generation_config = {"bos_token_id": bpe.token_to_id("<|im_start|>"), "eos_token_id": [im_end, eos]}
    tokenizer = Tokenizer(checkpoint(tmp_path / "ckpt", bpe_dir, generation_config=generation_config))
    assert tokenizer.bos_id == bpe.token_to_id("<|im_start|>")
    assert tokenizer.eos_id == im_end
    assert tokenizer.stop_ids == (im_end, eos)


def test_tokenizer_config_eos_comes_first_and_generation_config_eos_ids_also_stop(tmp_path, bpe_dir, bpe):
    eos, im_end = bpe.token_to_id("<|endoftext|>"), bpe.token_to_id("<|im_end|>")
    tokenizer = Tokenizer(
        checkpoint(
            tmp_path / "ckpt",
            bpe_dir,
            tokenizer_config={"eos_token": "<|im_end|>"},
            generation_config={"eos_token_id": eos},
        )
    )
    assert tokenizer.eos_id == im_end
    assert tokenizer.stop_ids == (im_end, eos)


def test_bos_and_eos_ids_from_config_json(tmp_path, bpe_dir):
    tokenizer = Tokenizer(checkpoint(tmp_path / "ckpt", bpe_dir, config={"bos_token_id": 1, "eos_token_id": 2}))
    assert (tokenizer.bos_id, tokenizer.eos_id, tokenizer.stop_ids) == (1, 2, (2,))


def test_no_bos_or_eos_anywhere_gives_none(tmp_path, bpe_dir):
    tokenizer = Tokenizer(checkpoint(tmp_path / "ckpt", bpe_dir))
    assert (tokenizer.bos_id, tokenizer.eos_id, tokenizer.stop_ids, tokenizer.use_bos) == (None, None, (), False)
    with pytest.raises(ValueError, match="bos=True.*no BOS token"):
        tokenizer.encode("hi", bos=True)


def test_add_bos_token_false_is_respected_even_with_a_bos_template(tmp_path, bpe_dir):
    config = {"bos_token": "<|endoftext|>", "add_bos_token": False}
    directory = checkpoint(tmp_path / "ckpt", bpe_dir, tokenizer_config=config)
    with_bos_template(directory, "<|endoftext|>")
    tokenizer = Tokenizer(directory)
    assert tokenizer.use_bos is False
    assert tokenizer.bos_id not in tokenizer.encode("hello")
    assert tokenizer.encode("hello", bos=True).count(tokenizer.bos_id) == 1


def test_bos_template_with_add_bos_token_true_adds_bos_once(tmp_path, bpe_dir):
    config = {"bos_token": "<|endoftext|>", "add_bos_token": True}
    directory = checkpoint(tmp_path / "ckpt", bpe_dir, tokenizer_config=config)
    with_bos_template(directory, "<|endoftext|>")
    tokenizer = Tokenizer(directory)
    ids = tokenizer.encode("hello")
    assert ids.count(tokenizer.bos_id) == 1 and ids[0] == tokenizer.bos_id
    assert ids[1:] == tokenizer.encode("hello", bos=False)


def test_bos_template_alone_makes_its_token_the_default_bos(tmp_path, bpe_dir, bpe):
    directory = checkpoint(tmp_path / "ckpt", bpe_dir)
    with_bos_template(directory, "<|im_start|>")
    tokenizer = Tokenizer(directory)
    assert tokenizer.bos_id == bpe.token_to_id("<|im_start|>")
    assert tokenizer.use_bos is True
    assert tokenizer.encode("hello").count(tokenizer.bos_id) == 1


def test_text_that_starts_with_bos_gets_no_second_one(tmp_path, bpe_dir):
    config = {"bos_token": "<|im_start|>", "add_bos_token": True}
    tokenizer = Tokenizer(checkpoint(tmp_path / "ckpt", bpe_dir, tokenizer_config=config))
    assert tokenizer.encode("<|im_start|>user") == tokenizer.encode("user")
    assert tokenizer.encode("<|im_start|>user").count(tokenizer.bos_id) == 1


# encode / decode / vocabulary


def test_encode_appends_eos_once_and_truncates_to_max_length(bpe):
    ids = bpe.encode("hello world", eos=True)
    assert ids[-1] == bpe.eos_id and ids[:-1] == bpe.encode("hello world")
    assert bpe.encode("hello world<|endoftext|>", eos=True).count(bpe.eos_id) == 1
    assert bpe.encode("hello world", eos=True, max_length=2) == ids[:2]


def test_decode_accepts_a_1d_tensor_and_rejects_2d(bpe):
    ids = bpe.encode(SAMPLES[0])
    assert bpe.decode(torch.tensor(ids)) == SAMPLES[0]
    with pytest.raises(ValueError, match="1-D"):
        bpe.decode(torch.tensor([ids]))


def test_decode_skips_special_tokens_only_when_asked(bpe):
    ids = [bpe.eos_id, *bpe.encode("hi"), bpe.eos_id]
    assert bpe.decode(ids) == "<|endoftext|>hi<|endoftext|>"
    assert bpe.decode(ids, skip_special_tokens=True) == "hi"


def test_vocab_size_counts_added_tokens(tmp_path, bpe_dir, bpe):
    directory = checkpoint(tmp_path / "ckpt", bpe_dir)
    data = json.loads((directory / "tokenizer.json").read_text())
    data["added_tokens"].append({**data["added_tokens"][0], "id": 512, "content": "<|tool|>"})
    (directory / "tokenizer.json").write_text(json.dumps(data))
    tokenizer = Tokenizer(directory)
    assert bpe.vocab_size == 512
    assert tokenizer.vocab_size == 513
    assert tokenizer.token_to_id("<|tool|>") == 512 and tokenizer.id_to_token(512) == "<|tool|>"
    assert tokenizer.token_to_id("<|not a token|>") is None
    for bad_id in (700, -1):
        with pytest.raises(ValueError, match=f"token id {bad_id}"):
            tokenizer.id_to_token(bad_id)


# Streaming


@pytest.mark.parametrize("text", SAMPLES)
def test_stream_decode_equals_full_decode_and_never_yields_a_broken_character(bpe, text):
    ids = [bpe.eos_id, *bpe.encode(text), bpe.eos_id]
    pieces = stream(bpe, ids)
    assert "".join(pieces) == bpe.decode(ids)
    assert not any("\ufffd" in piece for piece in pieces)


def test_byte_level_tokens_do_split_characters_so_streaming_has_something_to_hold(bpe):
    ids = bpe.encode(SAMPLES[2])
    assert any(bpe.decode([i]) == "\ufffd" for i in ids)


def test_stream_flush_returns_an_unfinished_character(bpe):
    first_byte = bpe.encode("🦙")[0]
    decoder = bpe.stream_decoder()
    assert decoder.push(first_byte) == ""
    assert decoder.flush() == bpe.decode([first_byte]) == "\ufffd"
    assert decoder.flush() == ""


@pytest.mark.parametrize("directory", ["bpe_dir", "sp_dir", "llama_dir"])
def test_stream_decode_equals_full_decode_for_random_text_between_special_tokens(request, directory):
    tokenizer = Tokenizer(request.getfixturevalue(directory))
    rng = random.Random(0)
    alphabet = [*"ab z  \t\n.", *"éß你好日本", "🙂", "👍🏽", "𝔘", "\u200d", "▁"]
    for _ in range(100):
        ids = []
        for _ in range(rng.randint(1, 4)):
            text = "".join(rng.choices(alphabet, k=rng.randint(0, 12)))
            ids += tokenizer.encode(text, bos=False) + [tokenizer.eos_id] * rng.randint(0, 2)
        for skip_special_tokens in (False, True):
            pieces = stream(tokenizer, ids, skip_special_tokens)
            assert "".join(pieces) == tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)
            assert not any("\ufffd" in piece for piece in pieces)


@pytest.mark.parametrize("directory", ["sp_dir", "llama_dir"])
def test_stream_keeps_the_space_of_a_token_after_a_skipped_special_token(request, directory):
    tokenizer = Tokenizer(request.getfixturevalue(directory))
    ids = [*tokenizer.encode("hello"), tokenizer.eos_id, *tokenizer.encode("world", bos=False)]
    assert tokenizer.decode(ids, skip_special_tokens=True) == "hello world"
    assert "".join(stream(tokenizer, ids, skip_special_tokens=True)) == "hello world"


def test_stream_decoder_decodes_a_short_window(bpe_dir, monkeypatch):
    tokenizer = Tokenizer(bpe_dir)
    ids = tokenizer.encode(corpus())
    lengths = []
    decode = tokenizer.decode
    monkeypatch.setattr(tokenizer, "decode", lambda ids, **kw: (lengths.append(len(ids)), decode(ids, **kw))[1])
    pieces = stream(tokenizer, ids)
    assert len(ids) > 1000
    assert max(lengths) < 50  # however long the text
    assert "".join(pieces) == decode(ids)


# SentencePiece (tokenizer.model only)


def test_sentencepiece_model_takes_bos_and_eos_from_the_model(sp_dir):
    tokenizer = Tokenizer(sp_dir)
    assert tokenizer.backend == "sentencepiece"
    assert (tokenizer.id_to_token(tokenizer.bos_id), tokenizer.id_to_token(tokenizer.eos_id)) == ("<s>", "</s>")
    assert tokenizer.use_bos is True
    assert tokenizer.vocab_size == 400
    assert tokenizer.token_to_id("<s>") == tokenizer.bos_id and tokenizer.token_to_id("no such piece") is None


@pytest.mark.parametrize("text", SAMPLES)
def test_sentencepiece_round_trips_text_with_leading_spaces(sp_dir, text):
    tokenizer = Tokenizer(sp_dir)
    ids = tokenizer.encode(text)
    assert ids[0] == tokenizer.bos_id
    assert tokenizer.decode(ids) == text


@pytest.mark.parametrize("text", SAMPLES)
def test_sentencepiece_stream_decode_equals_full_decode(sp_dir, text):
    tokenizer = Tokenizer(sp_dir)
    ids = tokenizer.encode(text, eos=True)
    pieces = stream(tokenizer, ids)
    assert "".join(pieces) == tokenizer.decode(ids) == text
    assert not any("\ufffd" in piece for piece in pieces)


def test_sentencepiece_settings_in_tokenizer_config_win(sp_dir, tmp_path):
    directory = tmp_path / "ckpt"
    shutil.copytree(sp_dir, directory)
    (directory / "tokenizer_config.json").write_text(json.dumps({"add_bos_token": False, "eos_token": "<unk>"}))
    tokenizer = Tokenizer(directory)
    assert tokenizer.use_bos is False and tokenizer.encode("hi")[0] != tokenizer.bos_id
    assert tokenizer.eos_id == 0


# Llama-style tokenizer.json written by transformers


def test_llama_tokenizer_json_adds_one_bos_and_matches_sentencepiece(llama_dir, sp_dir):
    llama, sp = Tokenizer(llama_dir), Tokenizer(sp_dir)
    assert llama.backend == "huggingface"
    assert llama.use_bos is True  # transformers records add_bos_token in the post-processor only
    assert (llama.bos_id, llama.eos_id) == (sp.bos_id, sp.eos_id)
    for text in SAMPLES[:3]:
        ids = llama.encode(text)
        assert ids.count(llama.bos_id) == 1
        assert ids == sp.encode(text)
        assert llama.decode(ids, skip_special_tokens=True) == text


@pytest.mark.parametrize("text", SAMPLES)
def test_llama_tokenizer_json_streams_metaspace_spaces(llama_dir, text):
    tokenizer = Tokenizer(llama_dir)
    ids = tokenizer.encode(text, eos=True)
    assert tokenizer.token_to_id("▁") in ids
    pieces = stream(tokenizer, ids)
    assert "".join(pieces) == tokenizer.decode(ids)
    assert not any("\ufffd" in piece for piece in pieces)


# Files: missing, corrupt, saved


def test_missing_tokenizer_files_raise_file_not_found_naming_the_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match=rf"{tmp_path}.*tokenizer\.json.*tokenizer\.model"):
        Tokenizer(tmp_path)
    with pytest.raises(FileNotFoundError, match="missing.*does not exist"):
        Tokenizer(tmp_path / "missing")


def test_corrupt_tokenizer_json_raises_value_error_naming_the_file(tmp_path):
    (tmp_path / "tokenizer.json").write_text('{"model": ')
    with pytest.raises(ValueError, match="tokenizer.json"):
        Tokenizer(tmp_path)


def test_corrupt_tokenizer_model_raises_value_error_naming_the_file(tmp_path):
    (tmp_path / "tokenizer.model").write_bytes(b"not a sentencepiece model")
    with pytest.raises(ValueError, match="tokenizer.model"):
        Tokenizer(tmp_path)


def test_corrupt_tokenizer_config_raises_value_error_naming_the_file(tmp_path, bpe_dir):
    directory = checkpoint(tmp_path / "ckpt", bpe_dir)
    (directory / "tokenizer_config.json").write_text("{oops")
    with pytest.raises(ValueError, match="tokenizer_config.json"):
        Tokenizer(directory)


def test_save_copies_the_tokenizer_files_and_reloads_the_same(tmp_path, llama_dir):
    tokenizer = Tokenizer(llama_dir)
    tokenizer.save(tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["tokenizer.json", "tokenizer_config.json"]
    reloaded = Tokenizer(tmp_path / "out")
    assert reloaded.encode(SAMPLES[1]) == tokenizer.encode(SAMPLES[1])
    assert (reloaded.bos_id, reloaded.stop_ids, reloaded.use_bos) == (tokenizer.bos_id, tokenizer.stop_ids, True)


def test_save_keeps_bos_and_eos_ids_that_came_from_config_json(tmp_path, bpe_dir):
    source = checkpoint(tmp_path / "ckpt", bpe_dir, config={"bos_token_id": 1, "eos_token_id": [2, 0]})
    Tokenizer(source).save(tmp_path / "out")
    reloaded = Tokenizer(tmp_path / "out")
    assert not (tmp_path / "out" / "config.json").exists()
    assert (reloaded.bos_id, reloaded.eos_id, reloaded.stop_ids) == (1, 2, (2, 0))
