"""Specification of litllm.data.sft: reading instruction/chat records, tokenizing them, batching and splitting."""

import json
from pathlib import Path

import pytest
import torch

from litllm.data.base import IGNORE_INDEX
from litllm.data.sft import SFTData, record_messages
from litllm.prompts import PromptStyle, render_conversation
from litllm.tokenizer import Tokenizer, train_bpe

RECORDS = [
    {"instruction": "Name a color.", "output": "Blue."},
    {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5", "system": "Be brief."},
    {
        "messages": [
            {"role": "user", "content": "Hi there"},
            {"role": "assistant", "content": "Hello! How can I help?"},
            {"role": "user", "content": "Say bye."},
            {"role": "assistant", "content": "Bye."},
        ]
    },
    {"instruction": "Repeat after me.", "input": "", "output": "after me"},
    {"messages": [{"role": "user", "content": "Count to three."}, {"role": "assistant", "content": "1 2 3"}]},
]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory) -> Tokenizer:
    """A small byte-level BPE with the ChatML tokens; its EOS is <|im_end|>."""
    texts = (json.dumps(record) + "\n" for _ in range(20) for record in RECORDS)
    out = tmp_path_factory.mktemp("bpe")
    train_bpe(texts, 320, out, special_tokens=("<|endoftext|>", "<|im_start|>", "<|im_end|>"), show_progress=False)
    (out / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|im_end|>", "add_bos_token": False}))
    return Tokenizer(out)


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def sft(path: Path, tokenizer: Tokenizer, max_seq_length: int = 256, **kwargs) -> SFTData:
    """An SFTData on `path` in the ChatML format, connected and set up."""
    data = SFTData(str(path), **({"prompt_style": "chatml", "val_split_fraction": 0.0} | kwargs))
    data.connect(tokenizer, max_seq_length)
    data.setup()
    return data


def expected_labels(messages: list[dict], tokenizer: Tokenizer) -> tuple[list[int], list[int]]:
    """input_ids and labels of one conversation, from its ids and mask."""
    ids, mask = render_conversation(messages, tokenizer, PromptStyle.from_name("chatml"))
    return ids[:-1], [token if selected else IGNORE_INDEX for token, selected in zip(ids[1:], mask[1:], strict=True)]


# Records


def test_instruction_record_is_one_exchange_with_the_input_after_a_blank_line():
    assert record_messages(RECORDS[1]) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Add the numbers.\n\n2 and 3"},
        {"role": "assistant", "content": "5"},
    ]
    assert record_messages(RECORDS[3])[0] == {"role": "user", "content": "Repeat after me."}


def test_chat_record_is_its_messages():
    assert record_messages(RECORDS[2]) == RECORDS[2]["messages"]


# Batches


def test_batches_are_padded_to_the_longest_with_labels_only_on_the_replies(tmp_path, tokenizer):
    write_jsonl(tmp_path / "train.jsonl", RECORDS)
    write_jsonl(tmp_path / "val.jsonl", RECORDS)
    batch = next(iter(sft(tmp_path, tokenizer, batch_size=len(RECORDS)).val_dataloader()))
    expected = [expected_labels(record_messages(record), tokenizer) for record in RECORDS]
    T = max(len(ids) for ids, _ in expected)
    assert batch["input_ids"].shape == batch["labels"].shape == (len(RECORDS), T)
    assert batch["input_ids"].dtype == batch["labels"].dtype == torch.int64
    for b, (ids, labels) in enumerate(expected):
        n = len(ids)
        assert batch["input_ids"][b, :n].tolist() == ids
        assert batch["labels"][b, :n].tolist() == labels
        assert batch["input_ids"][b, n:].eq(tokenizer.eos_id).all()  # padding
        assert batch["labels"][b, n:].eq(IGNORE_INDEX).all()


def test_labels_are_the_next_input_token_or_ignored(tmp_path, tokenizer):
    data = sft(write_jsonl(tmp_path / "data.jsonl", RECORDS), tokenizer, batch_size=2)
    for batch in data.train_dataloader():
        learned = batch["labels"][:, :-1] != IGNORE_INDEX
        assert learned.any()
        assert torch.equal(batch["labels"][:, :-1][learned], batch["input_ids"][:, 1:][learned])


def test_prompt_tokens_are_ignored_and_reply_tokens_learned(tmp_path, tokenizer):
    data = sft(write_jsonl(tmp_path / "data.jsonl", RECORDS[:1]), tokenizer)
    sample = data.train_dataset[0]
    learned = sample["labels"][sample["labels"] != IGNORE_INDEX]
    assert tokenizer.decode(learned) == "Blue.<|im_end|>"


def test_without_mask_prompt_every_token_is_learned(tmp_path, tokenizer):
    data = sft(write_jsonl(tmp_path / "data.jsonl", RECORDS[:1]), tokenizer, mask_prompt=False)
    sample = data.train_dataset[0]
    assert sample["labels"].ne(IGNORE_INDEX).all()
    assert torch.equal(sample["labels"][:-1], sample["input_ids"][1:])


def test_json_list_and_jsonl_give_the_same_samples(tmp_path, tokenizer):
    (tmp_path / "data.json").write_text(json.dumps(RECORDS))
    from_json = sft(tmp_path / "data.json", tokenizer).train_dataset
    from_jsonl = sft(write_jsonl(tmp_path / "data.jsonl", RECORDS), tokenizer).train_dataset
    assert len(from_json) == len(from_jsonl) == len(RECORDS)
    for a, b in zip(from_json, from_jsonl, strict=True):
        assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["labels"], b["labels"])


def test_long_conversations_are_cut_and_counted(tmp_path, tokenizer):
    with pytest.warns(UserWarning, match=r"of 5 conversations .* longer than max_seq_length \+ 1 = 17 tokens"):
        data = sft(write_jsonl(tmp_path / "data.jsonl", RECORDS), tokenizer, max_seq_length=16)
    lengths = [
        len(render_conversation(record_messages(r), tokenizer, PromptStyle.from_name("chatml"))[0]) for r in RECORDS
    ]
    assert data.num_truncated == sum(n > 17 for n in lengths) > 0
    assert len(data.train_dataset) == len(RECORDS) - data.num_dropped
    assert all(len(sample["input_ids"]) <= 16 for sample in data.train_dataset)


def test_max_seq_length_cannot_exceed_the_models(tmp_path, tokenizer):
    data = SFTData(str(write_jsonl(tmp_path / "data.jsonl", RECORDS)), max_seq_length=4096)
    data.connect(tokenizer, 64)
    assert data.max_seq_length == 64


# Chat format


def test_named_prompt_style_wins_over_the_models(tmp_path, tokenizer):
    data = SFTData(str(write_jsonl(tmp_path / "data.jsonl", RECORDS)), prompt_style="chatml")
    data.connect(tokenizer, 64, prompt_style="plain")
    assert data.resolved_prompt_style().name == "chatml"


def test_without_a_named_style_the_models_own_is_used(tmp_path, tokenizer):
    data = SFTData(str(write_jsonl(tmp_path / "data.jsonl", RECORDS)))
    data.connect(tokenizer, 64)
    assert data.resolved_prompt_style().name == "plain"  # the checkpoint has no chat format
    data.connect(tokenizer, 64, prompt_style="phi3")
    assert data.resolved_prompt_style().name == "phi3"


def test_unknown_prompt_style_is_refused_at_construction(tmp_path):
    with pytest.raises(ValueError, match="unknown prompt style 'chatgpt'"):
        SFTData(str(tmp_path / "data.jsonl"), prompt_style="chatgpt")


# Malformed data


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ('{"instruction": "Name a color.", "output": "Blue."', "not valid JSON"),
        ('{"instruction": "Name a color."}', "has no 'output'"),
        ('{"output": "Blue."}', "has no 'instruction'"),
        ('{"instruction": 3, "output": "Blue."}', "'instruction' should be a string, got int"),
        ('{"messages": "Hi"}', "'messages' should be a list"),
        ('{"messages": [{"role": "user", "content": "Hi"}, {"role": "bot", "content": "Hello"}]}', "message 1: role"),
        ('{"messages": [{"role": "user", "content": "Hi"}]}', "no assistant message"),
        ('["Name a color.", "Blue."]', "a record should be a JSON object, got list"),
    ],
)
def test_malformed_jsonl_line_is_refused_naming_the_file_and_line(tmp_path, tokenizer, line, error):
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps(RECORDS[0]) + "\n\n" + line + "\n")
    with pytest.raises(ValueError, match=rf"data\.jsonl', line 3: .*{error}"):
        sft(path, tokenizer)


def test_malformed_json_record_is_refused_naming_the_file_and_record(tmp_path, tokenizer):
    (tmp_path / "data.json").write_text(json.dumps([RECORDS[0], {"instruction": "Name a color."}]))
    with pytest.raises(ValueError, match=r"data\.json', record 1: .*has no 'output'"):
        sft(tmp_path / "data.json", tokenizer)


def test_json_file_that_is_not_a_list_is_refused(tmp_path, tokenizer):
    (tmp_path / "data.json").write_text(json.dumps(RECORDS[0]))
    with pytest.raises(ValueError, match="should hold a JSON list of records, got dict"):
        sft(tmp_path / "data.json", tokenizer)


def test_missing_data_is_refused(tmp_path, tokenizer):
    with pytest.raises(FileNotFoundError, match="missing.jsonl' does not exist"):
        sft(tmp_path / "missing.jsonl", tokenizer)


# Splits and order


def test_split_is_disjoint_and_fixed_by_the_seed(tmp_path, tokenizer):
    path = write_jsonl(tmp_path / "data.jsonl", RECORDS * 4)  # 20 records

    def split(seed: int) -> tuple[list, list]:
        data = sft(path, tokenizer, val_split_fraction=0.25, seed=seed)
        return [s["input_ids"].tolist() for s in data.train_dataset], [
            s["input_ids"].tolist() for s in data.val_dataset
        ]

    train, val = split(seed=1)
    assert (len(train), len(val)) == (15, 5)
    assert split(seed=1) == (train, val)
    assert split(seed=2) != (train, val)


def test_folder_with_train_and_val_files_is_used_as_split(tmp_path, tokenizer):
    write_jsonl(tmp_path / "train.jsonl", RECORDS[:3])
    (tmp_path / "val.json").write_text(json.dumps(RECORDS[3:]))
    data = sft(tmp_path, tokenizer, val_split_fraction=0.5)
    assert (len(data.train_dataset), len(data.val_dataset)) == (3, 2)


def test_training_order_is_shuffled_reproducibly_per_epoch(tmp_path, tokenizer):
    data = sft(write_jsonl(tmp_path / "data.jsonl", RECORDS * 4), tokenizer, batch_size=1)

    def order(epoch: int) -> list[list[int]]:
        loader = data.train_dataloader()
        loader.sampler.set_epoch(epoch)
        return [batch["input_ids"][0].tolist() for batch in loader]

    in_file_order = [data.train_dataset[i]["input_ids"].tolist() for i in range(len(data.train_dataset))]
    assert order(0) == order(0) != in_file_order
    assert order(1) != order(0)
    assert sorted(order(1)) == sorted(in_file_order)


def test_validation_order_is_the_files(tmp_path, tokenizer):
    write_jsonl(tmp_path / "train.jsonl", RECORDS)
    write_jsonl(tmp_path / "val.jsonl", RECORDS)
    data = sft(tmp_path, tokenizer, batch_size=1)
    val = [batch["input_ids"][0].tolist() for batch in data.val_dataloader()]
    assert val == [s["input_ids"].tolist() for s in data.val_dataset]
