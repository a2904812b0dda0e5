"""Specification of litllm.prompts: chat formats, loss masks, completion prompts, stop sequences, loading."""

import json
import shutil
from pathlib import Path

import pytest

from litllm.prompts import (
    STYLES,
    JinjaStyle,
    PromptStyle,
    load_prompt_style,
    render_conversation,
    render_for_completion,
    stop_sequences,
)
from litllm.tokenizer import Tokenizer, train_bpe

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|begin_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<s>",
    "</s>",
    "<bos>",
    "<eos>",
    "<start_of_turn>",
    "<end_of_turn>",
    "<|system|>",
    "<|user|>",
    "<|assistant|>",
    "<|end|>",
    "<|bos|>",
    "<|user_start|>",
    "<|user_end|>",
    "<|assistant_start|>",
    "<|assistant_end|>",
]
CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi there"},
    {"role": "assistant", "content": "Hello! How can I help?"},
    {"role": "user", "content": "Name a color."},
    {"role": "assistant", "content": "Blue."},
]
# style: (BOS token, EOS token, add_bos_token) of the family's tokenizer, the text of CONVERSATION, and the text of
# each run of tokens the mask selects
CASES = {
    "chatml": (
        None,
        "<|im_end|>",
        False,
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n"
        "<|im_start|>assistant\nHello! How can I help?<|im_end|>\n<|im_start|>user\nName a color.<|im_end|>\n"
        "<|im_start|>assistant\nBlue.<|im_end|>\n",
        ["Hello! How can I help?<|im_end|>", "Blue.<|im_end|>"],
    ),
    # the template writes BOS and the tokenizer adds one too: it appears once
    "llama3": (
        "<|begin_of_text|>",
        "<|eot_id|>",
        True,
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nHello! How can I help?<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nName a color.<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nBlue.<|eot_id|>",
        ["Hello! How can I help?<|eot_id|>", "Blue.<|eot_id|>"],
    ),
    "llama2": (
        "<s>",
        "</s>",
        True,
        "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi there [/INST] Hello! How can I help? </s>"
        "<s>[INST] Name a color. [/INST] Blue. </s>",
        [" Hello! How can I help? </s>", " Blue. </s>"],
    ),
    "mistral": (
        "<s>",
        "</s>",
        True,
        "<s>[INST] Be brief.\n\nHi there [/INST]Hello! How can I help?</s>[INST] Name a color. [/INST]Blue.</s>",
        ["Hello! How can I help?</s>", "Blue.</s>"],
    ),
    "gemma": (
        "<bos>",
        "<eos>",
        True,
        "<bos><start_of_turn>user\nBe brief.\n\nHi there<end_of_turn>\n"
        "<start_of_turn>model\nHello! How can I help?<end_of_turn>\n<start_of_turn>user\nName a color.<end_of_turn>\n"
        "<start_of_turn>model\nBlue.<end_of_turn>\n",
        ["Hello! How can I help?<end_of_turn>", "Blue.<end_of_turn>"],
    ),
    "phi3": (
        "<s>",
        "<|endoftext|>",
        False,
        "<|system|>\nBe brief.<|end|>\n<|user|>\nHi there<|end|>\n<|assistant|>\nHello! How can I help?<|end|>\n"
        "<|user|>\nName a color.<|end|>\n<|assistant|>\nBlue.<|end|>\n",
        ["Hello! How can I help?<|end|>", "Blue.<|end|>"],
    ),
    # the template writes no BOS; the tokenizer adds it
    "zephyr": (
        "<s>",
        "</s>",
        True,
        "<s><|system|>\nBe brief.</s>\n<|user|>\nHi there</s>\n<|assistant|>\nHello! How can I help?</s>\n"
        "<|user|>\nName a color.</s>\n<|assistant|>\nBlue.</s>\n",
        ["Hello! How can I help?</s>", "Blue.</s>"],
    ),
    "olmo2": (
        "<|endoftext|>",
        "<|endoftext|>",
        False,
        "<|endoftext|><|system|>\nBe brief.\n<|user|>\nHi there\n<|assistant|>\nHello! How can I help?<|endoftext|>\n"
        "<|user|>\nName a color.\n<|assistant|>\nBlue.<|endoftext|>\n",
        ["Hello! How can I help?<|endoftext|>", "Blue.<|endoftext|>"],
    ),
    "nanochat": (
        "<|bos|>",
        None,
        False,
        "<|bos|><|user_start|>Be brief.\n\nHi there<|user_end|><|assistant_start|>Hello! How can I help?"
        "<|assistant_end|><|user_start|>Name a color.<|user_end|><|assistant_start|>Blue.<|assistant_end|>",
        ["Hello! How can I help?<|assistant_end|>", "Blue.<|assistant_end|>"],
    ),
    "plain": (
        "<|endoftext|>",
        "<|endoftext|>",
        False,
        "System: Be brief.\nUser: Hi there\nAssistant: Hello! How can I help?<|endoftext|>\n"
        "User: Name a color.\nAssistant: Blue.<|endoftext|>\n",
        [" Hello! How can I help?<|endoftext|>", " Blue.<|endoftext|>"],
    ),
}
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@pytest.fixture(scope="module")
def bpe_dir(tmp_path_factory) -> Path:
    """A byte-level BPE holding every built-in style's special tokens."""
    texts = (
        f"{m['role']}: {m['content']} [INST] <<SYS>> User: Assistant: {i}\n" for i in range(40) for m in CONVERSATION
    )
    return train_bpe(texts, 400, tmp_path_factory.mktemp("bpe"), SPECIAL_TOKENS, show_progress=False).checkpoint_dir


def checkpoint(directory: Path, bpe_dir: Path, bos: str | None, eos: str | None, add_bos: bool, **config) -> Tokenizer:
    """A tokenizer directory with the BPE's tokenizer.json and a tokenizer_config.json naming BOS and EOS."""
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(bpe_dir / "tokenizer.json", directory / "tokenizer.json")
    config |= {"add_bos_token": add_bos} | ({"bos_token": bos} if bos else {}) | ({"eos_token": eos} if eos else {})
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    return Tokenizer(directory)


def masked_runs(tokenizer: Tokenizer, ids: list[int], mask: list[int]) -> list[str]:
    """The text of each run of consecutive tokens the mask selects."""
    runs, run = [], []
    for token_id, selected in zip(ids, mask, strict=True):
        if selected:
            run.append(token_id)
        elif run:
            runs, run = [*runs, tokenizer.decode(run)], []
    return runs + ([tokenizer.decode(run)] if run else [])


@pytest.fixture
def chatml(tmp_path, bpe_dir) -> Tokenizer:
    return checkpoint(tmp_path / "chatml", bpe_dir, None, "<|im_end|>", False)


# Built-in styles


def test_every_builtin_style_is_specified():
    assert set(CASES) == set(STYLES)


@pytest.mark.parametrize("name", list(CASES))
def test_builtin_style_renders_its_format_and_masks_exactly_the_replies(tmp_path, bpe_dir, name):
    bos, eos, add_bos, expected_text, expected_replies = CASES[name]
    tokenizer = checkpoint(tmp_path, bpe_dir, bos, eos, add_bos)
    ids, mask = render_conversation(CONVERSATION, tokenizer, PromptStyle.from_name(name))
    assert tokenizer.decode(ids) == expected_text
    assert len(mask) == len(ids)
    assert masked_runs(tokenizer, ids, mask) == expected_replies


def test_gemma_folds_the_system_message_into_the_first_user_turn(tmp_path, bpe_dir):
    tokenizer = checkpoint(tmp_path, bpe_dir, "<bos>", "<eos>", True)
    gemma = PromptStyle.from_name("gemma")
    folded = [{"role": "user", "content": "Be brief.\n\nHi there"}, *CONVERSATION[2:]]
    assert render_conversation(CONVERSATION, tokenizer, gemma) == render_conversation(folded, tokenizer, gemma)


def test_style_without_system_role_refuses_a_system_message_not_followed_by_a_user_message(chatml):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "assistant", "content": "Hi"}]
    with pytest.raises(ValueError, match="message 0: prompt style 'gemma' has no system role"):
        render_conversation(messages, chatml, PromptStyle.from_name("gemma"))


def test_conversation_may_start_with_the_assistant(chatml):
    messages = [{"role": "assistant", "content": "Hi!"}, {"role": "user", "content": "Hello"}]
    ids, mask = render_conversation(messages, chatml, PromptStyle.from_name("chatml"))
    assert masked_runs(chatml, ids, mask) == ["Hi!<|im_end|>"]


def test_max_length_keeps_the_start(chatml):
    style = PromptStyle.from_name("chatml")
    ids, mask = render_conversation(CONVERSATION, chatml, style)
    assert render_conversation(CONVERSATION, chatml, style, max_length=20) == (ids[:20], mask[:20])


# Bad messages


@pytest.mark.parametrize(
    ("messages", "error"),
    [
        ([], "non-empty list"),
        ("Hi", "non-empty list"),
        ([{"role": "user", "content": "Hi"}, "Hello"], "message 1: expected a dict"),
        ([{"role": "user", "content": "Hi"}, {"role": "bot", "content": "Hello"}], "message 1: role 'bot' is not one"),
        ([{"role": "user", "content": "Hi"}, {"role": "assistant"}], r"message 1 \(assistant\) has no 'content'"),
        ([{"role": "user", "content": ["Hi"]}], r"message 0 \(user\): content must be a string, got list"),
        (
            [{"role": "user", "content": "Hi"}, {"role": "system", "content": "Be brief."}],
            "message 1: a system message",
        ),
    ],
)
def test_bad_messages_are_refused_naming_the_message(chatml, messages, error):
    with pytest.raises(ValueError, match=error):
        render_conversation(messages, chatml, PromptStyle.from_name("chatml"))
    with pytest.raises(ValueError, match=error):
        render_for_completion(messages, chatml, PromptStyle.from_name("chatml"))


# Completion prompts and stop sequences


def test_completion_prompt_ends_with_the_generation_prompt(chatml):
    ids = render_for_completion(CONVERSATION[:4], chatml, PromptStyle.from_name("chatml"))
    assert chatml.decode(ids) == CASES["chatml"][3].removesuffix("Blue.<|im_end|>\n")


def test_completion_prompt_continues_a_started_assistant_reply(tmp_path, bpe_dir):
    tokenizer = checkpoint(tmp_path, bpe_dir, "<s>", "</s>", True)
    started = [*CONVERSATION[:4], {"role": "assistant", "content": "Bl"}]
    ids = render_for_completion(started, tokenizer, PromptStyle.from_name("llama2"))
    assert tokenizer.decode(ids) == CASES["llama2"][3].removesuffix("ue. </s>")


def test_stop_sequences_are_the_end_of_turn_tokens_and_eos(tmp_path, bpe_dir):
    tokenizer = checkpoint(tmp_path, bpe_dir, "<bos>", "<eos>", True)
    ids, strings = stop_sequences(PromptStyle.from_name("gemma"), tokenizer)
    assert ids == [tokenizer.token_to_id("<end_of_turn>"), tokenizer.token_to_id("<eos>")]
    assert strings == []


def test_stop_token_missing_from_the_vocabulary_becomes_a_stop_string(chatml):
    style = PromptStyle(name="custom", stop_tokens=["<|im_end|>", "<|not_a_token|>"], stop_strings=["\nUser:"])
    assert stop_sequences(style, chatml) == ([chatml.eos_id], ["\nUser:", "<|not_a_token|>"])


# Jinja chat templates


def test_jinja_chat_template_gives_the_ids_and_mask_of_the_builtin_chatml(tmp_path, bpe_dir):
    tokenizer = checkpoint(tmp_path, bpe_dir, None, "<|im_end|>", False, chat_template=CHATML_TEMPLATE)
    style = load_prompt_style(tmp_path)
    assert isinstance(style, JinjaStyle)
    builtin = PromptStyle.from_name("chatml")
    assert render_conversation(CONVERSATION, tokenizer, style) == render_conversation(CONVERSATION, tokenizer, builtin)
    assert render_for_completion(CONVERSATION[:4], tokenizer, style) == render_for_completion(
        CONVERSATION[:4], tokenizer, builtin
    )


def test_jinja_template_that_closes_the_conversation_with_eos_still_masks_each_reply(tmp_path, bpe_dir):
    # Phi-3's template ends a conversation without a generation prompt with EOS
    template = (
        "{% for message in messages %}{{ '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' }}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}"
    )
    checkpoint(tmp_path, bpe_dir, "<s>", "<|endoftext|>", False, chat_template=template)
    # a template does not say which token ends a turn: generation_config.json does, as for Hugging Face generation
    end_ids = [SPECIAL_TOKENS.index("<|endoftext|>"), SPECIAL_TOKENS.index("<|end|>")]
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": end_ids}))
    tokenizer = Tokenizer(tmp_path)
    ids, mask = render_conversation(CONVERSATION, tokenizer, load_prompt_style(tmp_path))
    assert tokenizer.decode(ids) == CASES["phi3"][3] + "<|endoftext|>"
    assert masked_runs(tokenizer, ids, mask) == ["Hello! How can I help?<|end|>", "Blue.<|end|>"]


def test_jinja_template_that_rewrites_earlier_replies_is_refused(tmp_path, bpe_dir):
    # like Qwen3: only the last reply keeps its (empty) thinking block
    template = (
        "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' }}"
        "{% if message['role'] == 'assistant' and loop.last %}{{ '<think>\n\n</think>\n\n' }}{% endif %}"
        "{{ message['content'] + '<|im_end|>\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    )
    tokenizer = checkpoint(tmp_path, bpe_dir, None, "<|im_end|>", False, chat_template=template)
    with pytest.raises(ValueError, match="message 2: the chat template in .* renders this reply differently"):
        render_conversation(CONVERSATION, tokenizer, load_prompt_style(tmp_path))


def test_jinja_raise_exception_becomes_a_value_error(chatml):
    style = JinjaStyle("{{ raise_exception('Conversation roles must alternate') }}")
    with pytest.raises(ValueError, match="cannot render this conversation: Conversation roles must alternate"):
        render_conversation(CONVERSATION, chatml, style)


def test_jinja_generation_blocks_render_their_content(chatml):
    marked = CHATML_TEMPLATE.replace(
        "{{ '<|im_start|>' + message['role']",
        "{% generation %}{{ '<|im_start|>' + message['role']",
    ).replace("{% endfor %}", "{% endgeneration %}{% endfor %}")
    style = JinjaStyle(marked)
    assert render_conversation(CONVERSATION, chatml, style) == render_conversation(
        CONVERSATION, chatml, JinjaStyle(CHATML_TEMPLATE)
    )


def test_jinja_template_runs_sandboxed(chatml):
    style = JinjaStyle("{{ messages.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(ValueError, match="cannot render"):
        style.render(CONVERSATION)


def test_invalid_jinja_is_refused_naming_its_source(tmp_path, bpe_dir):
    checkpoint(tmp_path, bpe_dir, None, "<|im_end|>", False, chat_template="{% for m in messages %}")
    with pytest.raises(ValueError, match="tokenizer_config.json.* is not valid Jinja"):
        load_prompt_style(tmp_path)


# Loading and saving


def test_load_prompt_style_prefers_yaml_then_chat_template_then_plain(tmp_path, bpe_dir):
    checkpoint(tmp_path, bpe_dir, None, "<|im_end|>", False)
    assert load_prompt_style(tmp_path) == PromptStyle.from_name("plain")
    (tmp_path / "chat_template.jinja").write_text(CHATML_TEMPLATE)
    assert load_prompt_style(tmp_path) == JinjaStyle(
        CHATML_TEMPLATE, source=repr(str(tmp_path / "chat_template.jinja"))
    )
    PromptStyle.from_name("gemma").save(tmp_path / "prompt_style.yaml")
    assert load_prompt_style(tmp_path) == PromptStyle.from_name("gemma")


@pytest.mark.parametrize("name", list(STYLES))
def test_prompt_style_yaml_round_trips(tmp_path, name):
    PromptStyle.from_name(name).save(tmp_path / "prompt_style.yaml")
    assert PromptStyle.from_file(tmp_path / "prompt_style.yaml") == PromptStyle.from_name(name)


def test_prompt_style_yaml_naming_a_builtin_style_changes_only_the_fields_it_gives(tmp_path):
    (tmp_path / "prompt_style.yaml").write_text('name: chatml\nstop_strings: ["\\nUser:"]\n')
    style = PromptStyle.from_file(tmp_path / "prompt_style.yaml")
    assert style.user == STYLES["chatml"].user
    assert style.stop_strings == ["\nUser:"]


def test_prompt_style_yaml_with_an_unknown_field_is_refused(tmp_path):
    (tmp_path / "prompt_style.yaml").write_text("name: chatml\nassistant_prefix: 'x'\n")
    with pytest.raises(ValueError, match=r"unknown prompt style fields \['assistant_prefix'\]"):
        PromptStyle.from_file(tmp_path / "prompt_style.yaml")


def test_template_without_content_is_refused():
    with pytest.raises(ValueError, match="the user template must hold '{content}' exactly once"):
        PromptStyle(name="broken", user="User: ")


def test_unknown_style_name_is_refused_listing_the_known_ones():
    with pytest.raises(ValueError, match="unknown prompt style 'chatgpt'; known styles: chatml, llama3, .*plain"):
        PromptStyle.from_name("chatgpt")


def test_from_name_returns_a_copy():
    PromptStyle.from_name("chatml").stop_tokens.append("<|endoftext|>")
    assert STYLES["chatml"].stop_tokens == ["<|im_end|>"]


# SentencePiece tokenizers


def test_sentencepiece_tokenizer_gets_bos_and_eos_as_tokens_not_text(tmp_path):
    import sentencepiece

    text = tmp_path / "corpus.txt"
    text.write_text("\n".join(f"{m['content']} [INST] <<SYS>> {i}" for i in range(40) for m in CONVERSATION))
    sentencepiece.SentencePieceTrainer.train(
        input=str(text), model_prefix=str(tmp_path / "tokenizer"), vocab_size=120, model_type="bpe", minloglevel=2
    )
    tokenizer = Tokenizer(tmp_path)
    ids, mask = render_conversation(CONVERSATION, tokenizer, PromptStyle.from_name("llama2"))
    bos, eos = tokenizer.bos_id, tokenizer.eos_id
    assert ids[0] == bos and ids.count(bos) == 2 and ids.count(eos) == 2  # <s> per user turn, </s> per reply
    assert [token_id for token_id, selected in zip(ids, mask, strict=True) if selected].count(eos) == 2
    assert masked_runs(tokenizer, ids, mask) == ["Hello! How can I help?", "Blue."]  # SentencePiece hides </s>


def test_jinja_style_renders_the_text_transformers_renders(tmp_path, bpe_dir):
    transformers = pytest.importorskip("transformers")
    # Zephyr's template: its line breaks between blocks vanish only under transformers' trim_blocks/lstrip_blocks
    template = (
        "{% for message in messages %}\n{% if message['role'] == 'user' %}\n"
        "{{ '<|user|>\\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n"
        "{{ '<|system|>\\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'assistant' %}\n"
        "{{ '<|assistant|>\\n'  + message['content'] + eos_token }}\n{% endif %}\n"
        "{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}"
    )
    hf = transformers.PreTrainedTokenizerFast(tokenizer_file=str(bpe_dir / "tokenizer.json"), eos_token="</s>")
    for messages, generation_prompt in [(CONVERSATION, False), (CONVERSATION[:4], True)]:
        expected = hf.apply_chat_template(
            messages, chat_template=template, tokenize=False, add_generation_prompt=generation_prompt
        )
        assert JinjaStyle(template).render(messages, generation_prompt, eos="</s>") == expected
    # and the built-in zephyr style is that template
    tokenizer = checkpoint(tmp_path, bpe_dir, "<s>", "</s>", True, chat_template=template)
    zephyr = PromptStyle.from_name("zephyr")
    jinja = load_prompt_style(tmp_path)
    assert render_conversation(CONVERSATION, tokenizer, jinja) == render_conversation(CONVERSATION, tokenizer, zephyr)
    assert render_for_completion(CONVERSATION[:4], tokenizer, jinja) == render_for_completion(
        CONVERSATION[:4], tokenizer, zephyr
    )
