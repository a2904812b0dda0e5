"""nanochat's tokenizer API on litllm's Tokenizer, the environment variables of litllm.paths, and
`litllm tokenizer train --train_ratio/--val_ratio` and `litllm tokenizer evaluate`."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from litllm.cli import main
from litllm.errors import HubError
from litllm.paths import data_dir, model_dir, runs_dir, tokenizer_path
from litllm.prompts import PromptStyle, render_conversation, render_for_completion
from litllm.tokenizer import HuggingFaceTokenizer, Tokenizer, train_bpe
from litllm.training.tokenizer_training import check_ratios, count_bytes_and_tokens, split_documents

NANOCHAT_SPECIALS = ("<|bos|>", "<|user_start|>", "<|user_end|>", "<|assistant_start|>", "<|assistant_end|>")
CONVERSATION = {
    "messages": [
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi there!"},
    ]
}
TEXT = "Hello, world! Hi there, how are you? def add(a, b):\n    return a + b\n" * 60


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("corpus")
    for i in range(10):
        (folder / f"doc{i}.txt").write_text(f"document {i}: {TEXT}")
    return folder


@pytest.fixture(scope="module")
def nanochat_dir(tmp_path_factory: pytest.TempPathFactory, corpus: Path) -> Path:
    """A tokenizer with nanochat's special tokens and its chat format."""
    out = tmp_path_factory.mktemp("nanochat_tokenizer")
    train_bpe(sorted(corpus.glob("*.txt")), 400, out, special_tokens=NANOCHAT_SPECIALS, show_progress=False)
    PromptStyle.from_name("nanochat").save(out / "prompt_style.yaml")
    return out


# -- loading --


def test_huggingface_tokenizer_is_litllms_tokenizer() -> None:
    assert HuggingFaceTokenizer is Tokenizer


def test_from_pretrained_loads_a_folder_as_the_doc_shows(nanochat_dir: Path) -> None:
    path = str(nanochat_dir)
    tokenizer = HuggingFaceTokenizer.from_pretrained(path)
    tokens = tokenizer.encode("Hello, world!")
    assert tokens and all(isinstance(t, int) for t in tokens)
    assert tokenizer.decode(tokens) == "Hello, world!"


def test_from_pretrained_takes_the_tokenizer_file_itself(nanochat_dir: Path) -> None:
    tokenizer = Tokenizer.from_pretrained(nanochat_dir / "tokenizer.json")
    assert tokenizer.checkpoint_dir == nanochat_dir


def test_from_pretrained_loads_a_checkpoint_folder(litllm_dir: Path) -> None:
    assert Tokenizer.from_pretrained(litllm_dir).encode("def add") == Tokenizer(litllm_dir).encode("def add")


def test_from_pretrained_finds_a_hub_tokenizer_in_the_model_cache_without_the_network(
    nanochat_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LITLLM_MODEL_DIR", str(tmp_path / "models"))
    shutil.copytree(nanochat_dir, tmp_path / "models" / "someone" / "chat-tok")  # a tokenizer-only download
    tokenizer = Tokenizer.from_pretrained("someone/chat-tok")
    assert tokenizer.checkpoint_dir == tmp_path / "models" / "someone" / "chat-tok"


def test_from_pretrained_offline_fails_fast_with_the_hub_message() -> None:
    start = time.perf_counter()
    with pytest.raises(HubError, match="offline"):
        Tokenizer.from_pretrained("Qwen/Qwen2.5-0.5B")
    assert time.perf_counter() - start < 10


def test_from_pretrained_unknown_name_is_a_file_not_found_error() -> None:
    with pytest.raises(FileNotFoundError, match="path/to/tokenizer"):
        Tokenizer.from_pretrained("path/to/tokenizer")


# -- special tokens --


def test_validate_tokenizer_as_the_doc_does(nanochat_dir: Path, tokenizer_dir: Path) -> None:
    for folder in (nanochat_dir, tokenizer_dir):
        tokenizer = Tokenizer.from_pretrained(folder)
        tokens = tokenizer.encode("test")
        decoded = tokenizer.decode(tokens)
        assert decoded == "test"


def test_bos_token_id_is_nanochats_bos(nanochat_dir: Path) -> None:
    tokenizer = Tokenizer(nanochat_dir)
    assert tokenizer.get_bos_token_id() == tokenizer.token_to_id("<|bos|>")


def test_without_a_bos_the_endoftext_token_stands_in(tokenizer_dir: Path, tmp_path: Path) -> None:
    shutil.copy(tokenizer_dir / "tokenizer.json", tmp_path / "tokenizer.json")  # no config naming BOS or EOS
    tokenizer = Tokenizer(tmp_path)
    assert tokenizer.bos_id is None and tokenizer.eos_id is None
    assert tokenizer.get_bos_token_id() == tokenizer.token_to_id("<|endoftext|>")


def test_a_tokenizer_without_special_tokens_has_no_bos(corpus: Path, tmp_path: Path) -> None:
    tokenizer = train_bpe(sorted(corpus.glob("*.txt")), 300, tmp_path, special_tokens=(), show_progress=False)
    with pytest.raises(ValueError, match="no BOS token"):
        tokenizer.get_bos_token_id()


def test_encode_special_gives_a_special_tokens_id(nanochat_dir: Path) -> None:
    tokenizer = Tokenizer(nanochat_dir)
    ids = [tokenizer.encode_special(token) for token in NANOCHAT_SPECIALS]
    assert ids == [tokenizer.token_to_id(token) for token in NANOCHAT_SPECIALS]
    assert tokenizer.special_tokens() == list(NANOCHAT_SPECIALS)


def test_encode_special_names_an_unknown_token_and_lists_the_specials(nanochat_dir: Path) -> None:
    with pytest.raises(ValueError, match=r"'<\|python_start\|>' is not a special token.*<\|assistant_end\|>"):
        Tokenizer(nanochat_dir).encode_special("<|python_start|>")
    with pytest.raises(ValueError, match="'Hello' is not a special token"):
        Tokenizer(nanochat_dir).encode_special("Hello")  # a plain piece of text is not special


# -- conversations --


def test_render_conversation_as_the_doc_shows(nanochat_dir: Path) -> None:
    tokenizer = HuggingFaceTokenizer.from_pretrained(str(nanochat_dir))
    tokens, mask = tokenizer.render_conversation(
        {"messages": [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi there!"}]}
    )
    assert len(tokens) == len(mask)
    text = "<|bos|><|user_start|>Hello<|user_end|><|assistant_start|>Hi there!<|assistant_end|>"
    assert tokenizer.decode(tokens) == text
    assert tokenizer.decode([t for t, m in zip(tokens, mask, strict=True) if m]) == "Hi there!<|assistant_end|>"


def test_render_conversation_keeps_the_list_form_and_prompts_result(nanochat_dir: Path) -> None:
    tokenizer = Tokenizer(nanochat_dir)
    messages = CONVERSATION["messages"]
    expected = render_conversation(messages, tokenizer, PromptStyle.from_name("nanochat"))
    assert tokenizer.render_conversation(CONVERSATION) == expected
    assert tokenizer.render_conversation(messages) == expected
    assert tokenizer.render_conversation(CONVERSATION, max_tokens=4) == (expected[0][:4], expected[1][:4])


def test_render_conversation_uses_the_folders_chat_format(tokenizer_dir: Path) -> None:
    tokenizer = Tokenizer(tokenizer_dir)  # no prompt_style.yaml, no chat template: plain
    tokens, mask = tokenizer.render_conversation(CONVERSATION)
    assert tokenizer.decode(tokens) == "User: Hello\nAssistant: Hi there!<|endoftext|>\n"
    assert tokenizer.decode([t for t, m in zip(tokens, mask, strict=True) if m]) == " Hi there!<|endoftext|>"


def test_render_for_completion_drops_the_final_assistant_message(nanochat_dir: Path) -> None:
    tokenizer = Tokenizer(nanochat_dir)
    ids = tokenizer.render_for_completion(CONVERSATION)
    assert tokenizer.decode(ids) == "<|bos|><|user_start|>Hello<|user_end|><|assistant_start|>"
    assert ids == tokenizer.render_for_completion({"messages": CONVERSATION["messages"][:1]})
    tokens, _ = tokenizer.render_conversation(CONVERSATION)
    assert tokens[: len(ids)] == ids  # the prefix the model continues with the reply


def test_render_for_completion_leaves_prompts_own_function_unchanged(nanochat_dir: Path) -> None:
    tokenizer = Tokenizer(nanochat_dir)
    started = render_for_completion(CONVERSATION["messages"], tokenizer, PromptStyle.from_name("nanochat"))
    assert tokenizer.decode(started).endswith("<|assistant_start|>Hi there!")  # continues the reply given


@pytest.mark.parametrize(
    ("conversation", "message"),
    [
        ({"turns": []}, "needs a 'messages' list"),
        ("Hello", "a conversation is"),
        ({"messages": [{"role": "assistant", "content": "Hi"}]}, "only an assistant message"),
    ],
)
def test_a_malformed_conversation_is_refused_by_name(nanochat_dir: Path, conversation, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Tokenizer(nanochat_dir).render_for_completion(conversation)


# -- environment variables --


@pytest.mark.parametrize(
    ("function", "ours", "nanochats", "default"),
    [
        (data_dir, "LITLLM_DATA_DIR", "NANOCHAT_DATA_DIR", "data"),
        (model_dir, "LITLLM_MODEL_DIR", "NANOCHAT_MODEL_DIR", "checkpoints"),
    ],
)
def test_directories_follow_litllm_then_nanochat_variables(
    function, ours: str, nanochats: str, default: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LITLLM_HOME", str(tmp_path / "home"))
    monkeypatch.delenv(ours, raising=False)
    monkeypatch.delenv(nanochats, raising=False)
    assert function() == tmp_path / "home" / default
    monkeypatch.setenv(nanochats, str(tmp_path / "nano"))
    assert function() == tmp_path / "nano"
    monkeypatch.setenv(ours, str(tmp_path / "ours"))
    assert function() == tmp_path / "ours"


def test_tokenizer_path_follows_litllm_then_nanochat(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LITLLM_TOKENIZER_PATH", raising=False)
    monkeypatch.delenv("NANOCHAT_TOKENIZER_PATH", raising=False)
    assert tokenizer_path() is None
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.setenv("NANOCHAT_TOKENIZER_PATH", str(tmp_path / "a"))
    assert tokenizer_path() == tmp_path / "a"
    monkeypatch.setenv("LITLLM_TOKENIZER_PATH", str(tmp_path / "b"))
    assert tokenizer_path() == tmp_path / "b"


def test_tokenizer_path_to_nowhere_names_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LITLLM_TOKENIZER_PATH", raising=False)
    monkeypatch.setenv("NANOCHAT_TOKENIZER_PATH", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match=r"\$NANOCHAT_TOKENIZER_PATH=.*missing"):
        tokenizer_path()


def test_runs_dir_is_out_unless_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LITLLM_RUNS_DIR", raising=False)
    assert runs_dir() == Path("out")
    monkeypatch.setenv("LITLLM_RUNS_DIR", str(tmp_path))
    assert runs_dir() == tmp_path


def test_downloads_and_data_caches_go_where_the_variables_say(
    tokenizer_dir: Path, litllm_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from litllm.checkpoint.hub import cached_checkpoint_dir
    from litllm.data.text_files import TextFiles
    from litllm.local_models import downloaded_dirs

    monkeypatch.setenv("NANOCHAT_MODEL_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("NANOCHAT_DATA_DIR", str(tmp_path / "data"))
    assert cached_checkpoint_dir("org/name") == tmp_path / "models" / "org" / "name"
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "a.txt").write_text(TEXT)
    data = TextFiles(str(tmp_path / "text"), val_split_fraction=0)
    data.connect(Tokenizer(tokenizer_dir), 16)
    cache, _ = data.cache_location()
    assert cache.parent == tmp_path / "data"
    shutil.copytree(litllm_dir, tmp_path / "models" / "org" / "tiny")
    assert downloaded_dirs() == [tmp_path / "models" / "org" / "tiny"]


# -- litllm tokenizer train / evaluate --


def run_cli(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of `litllm ARGV`, run in this process."""
    code = 0
    try:
        main(argv)
    except SystemExit as e:
        code = e.code or 0
    out, err = capsys.readouterr()
    return code, out, err


def test_split_documents_trains_on_the_head_and_validates_on_the_tail() -> None:
    files = [Path(f"{i}.txt") for i in range(10)]
    assert split_documents(files, 0.8, 0.2) == (files[:8], files[8:])
    assert split_documents(files, 0.5, 0.1) == (files[:5], files[9:])
    assert split_documents(files, 1.0, 0.0) == (files, [])
    assert split_documents(files[:2], 0.1, 0.1) == (files[:1], files[1:2])  # at least one file each
    with pytest.raises(ValueError, match="1 file"):
        split_documents(files[:1], 0.5, 0.5)


@pytest.mark.parametrize(
    ("train_ratio", "val_ratio", "message"),
    [
        (0, 0.1, "train_ratio must be in"),
        (1.5, 0, "train_ratio must be in"),
        (0.9, 1, "val_ratio must be in"),
        (0.9, -0.1, "val_ratio must be in"),
        (0.8, 0.3, "at most 1"),
    ],
)
def test_bad_ratios_are_named(train_ratio: float, val_ratio: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_ratios(train_ratio, val_ratio)


def test_tokenizer_train_holds_out_files_and_reports_their_compression(
    corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "tok"
    argv = ["tokenizer", "train", str(out), "--corpus", str(corpus), "--vocab_size", "300"]
    code, stdout, _ = run_cli([*argv, "--train_ratio", "0.7", "--val_ratio", "0.3"], capsys)
    assert code == 0
    assert "on 7 files" in stdout and "validation: 3 held-out files" in stdout
    held_out = [p.read_text() for p in sorted(corpus.glob("*.txt"))[7:]]
    n_bytes, n_tokens = count_bytes_and_tokens(Tokenizer(out), held_out)
    assert f"{n_bytes / n_tokens:.3f} bytes per token" in stdout


def test_tokenizer_train_refuses_overlapping_parts_in_one_line(
    corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    argv = ["tokenizer", "train", str(tmp_path / "tok"), "--corpus", str(corpus), "--train_ratio", "0.8"]
    code, _, stderr = run_cli([*argv, "--val_ratio", "0.5"], capsys)
    assert code == 2 and stderr.count("\n") == 1
    assert "train_ratio + val_ratio must be at most 1" in stderr and "0.8 + 0.5" in stderr
    assert not (tmp_path / "tok").exists()


def table(stdout: str) -> dict[str, list[str]]:
    """The rows of the evaluate table by their label (the header row under "text")."""
    return {
        line.split()[0]: line.split()[1:] for line in stdout.splitlines() if line and not line.startswith("GPT-2's")
    }


def test_tokenizer_evaluate_prints_bytes_per_token_per_file(
    nanochat_dir: Path, corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    files = [str(corpus / "doc0.txt"), str(corpus / "doc1.txt")]
    code, stdout, _ = run_cli(
        ["tokenizer", "evaluate", "--tokenizer_dir", str(nanochat_dir), "--files", str(files)], capsys
    )
    assert code == 0
    assert stdout.startswith("GPT-2's tokenizer is not on this machine")
    rows = table(stdout)
    assert rows["text"] == ["bytes", "ours", "tokens", "ours", "bytes/token"]
    for file in files:
        n_bytes, n_tokens = count_bytes_and_tokens(Tokenizer(nanochat_dir), [Path(file).read_text()])
        assert rows[file] == [str(n_bytes), str(n_tokens), f"{n_bytes / n_tokens:.3f}"]


def test_tokenizer_evaluate_compares_with_gpt2_when_it_is_here(
    nanochat_dir: Path,
    tokenizer_dir: Path,
    corpus: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a stand-in for GPT-2's tokenizer, where `litllm download openai-community/gpt2 --tokenizer_only` puts it
    monkeypatch.setenv("LITLLM_MODEL_DIR", str(tmp_path / "models"))
    shutil.copytree(tokenizer_dir, tmp_path / "models" / "openai-community" / "gpt2")
    argv = ["tokenizer", "evaluate", "--tokenizer_dir", str(nanochat_dir), "--corpus", str(corpus)]
    code, stdout, _ = run_cli([*argv, "--max_bytes", "500"], capsys)
    assert code == 0
    rows = table(stdout)
    assert "GPT-2" in rows["text"] and "fewer" in rows["text"]
    text = (corpus / "doc0.txt").read_text()[:500]
    gpt2 = count_bytes_and_tokens(Tokenizer(tokenizer_dir), [text])
    ours = count_bytes_and_tokens(Tokenizer(nanochat_dir), [text])
    assert rows[f"{corpus}/**/*.txt"][:5] == [
        str(gpt2[0]),
        str(gpt2[1]),
        f"{gpt2[0] / gpt2[1]:.3f}",
        str(ours[1]),
        f"{ours[0] / ours[1]:.3f}",
    ]
    assert rows[f"{corpus}/**/*.txt"][5] == f"{100 * (gpt2[1] - ours[1]) / gpt2[1]:+.1f}%"


def test_tokenizer_evaluate_defaults_to_the_tokenizer_path_variable(
    nanochat_dir: Path, corpus: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LITLLM_TOKENIZER_PATH", raising=False)
    argv = ["tokenizer", "evaluate", "--files", str(corpus / "doc0.txt")]
    code, _, stderr = run_cli(argv, capsys)
    assert code == 2 and "LITLLM_TOKENIZER_PATH" in stderr and stderr.count("\n") == 1
    monkeypatch.setenv("NANOCHAT_TOKENIZER_PATH", str(nanochat_dir))
    code, stdout, _ = run_cli(argv, capsys)
    assert code == 0
    n_bytes, n_tokens = count_bytes_and_tokens(Tokenizer(nanochat_dir), [(corpus / "doc0.txt").read_text()])
    assert table(stdout)[str(corpus / "doc0.txt")] == [str(n_bytes), str(n_tokens), f"{n_bytes / n_tokens:.3f}"]
