"""Chat formats: how a conversation becomes text, token ids and the loss mask for finetuning.

A format is data. A `PromptStyle` holds one template per role, with `{content}` where the message goes and `{bos}` /
`{eos}` for the tokenizer's own BOS/EOS tokens (as a Hugging Face template writes `bos_token` / `eos_token`); a
checkpoint that ships a Jinja `chat_template` and no `prompt_style.yaml` is rendered with that template (`JinjaStyle`).

Both only render text. `render_conversation` tokenizes the whole text at once (the ids `transformers`'
`apply_chat_template` and inference servers give the model) and finds each assistant reply by rendering prefixes of
the conversation: reply i spans from the end of `messages[:i]` + generation prompt to the end of `messages[:i+1]`.
Where a reply boundary falls inside a token, that token counts as part of the text it ends in at the reply's start
(the model must produce it) and outside the reply at its end.

Messages are dicts {"role": "system" | "user" | "assistant", "content": str}; a system message may only come first.
"""

from __future__ import annotations

import copy
import json
import os
import re
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
from jinja2.ext import Extension, loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

from litllm.paths import read_yaml_mapping, write_yaml

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from litllm.tokenizer import Tokenizer

ROLES = ("system", "user", "assistant")
_REPLY_MARK = "\x00litllm-reply\x00"  # stands in for a reply's text to find where a template puts it


class ChatFormat(ABC):
    """What `PromptStyle` and `JinjaStyle` share: a name, stop tokens and strings, and rendering to text."""

    name: str
    stop_tokens: list[str]
    stop_strings: list[str]

    def render(
        self, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = False, bos: str = "", eos: str = ""
    ) -> str:
        """The text of a conversation, followed by the generation prompt when `add_generation_prompt`."""
        validate_messages(messages)
        return self._render(messages, add_generation_prompt, bos, eos)

    @abstractmethod
    def _render(self, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool, bos: str, eos: str) -> str:
        """`render` without checking the messages: renders prefixes of a checked conversation, the empty one too."""

    @property
    def description(self) -> str:
        """What this format is, for error messages."""
        return f"prompt style {self.name!r}"


@dataclass
class PromptStyle(ChatFormat):
    """A chat format as data: what each role's turn looks like, what opens the assistant's turn, where it stops.

    Templates hold `{content}` once (the message text) and may hold `{bos}` / `{eos}` (the tokenizer's BOS/EOS).
    A conversation renders as `begin`, then each message through its role's template; an assistant reply is
    `generation_prompt` + `assistant`. Without a system role (`system_role: false`) the rendered `system` template
    is put in front of the first user message's content instead of being a turn of its own.
    """

    name: str
    system: str = "{content}"
    user: str = "{content}"
    generation_prompt: str = ""
    """Opens an assistant turn; a prompt for the model ends with it."""
    assistant: str = "{content}"
    """A reply after the generation prompt, through the end-of-turn text that closes it."""
    system_role: bool = True
    begin: str = ""
    """Written once, before the first message."""
    stop_tokens: list[str] = field(default_factory=list)
    """End-of-turn tokens (token strings); the tokenizer's EOS tokens always stop generation too."""
    stop_strings: list[str] = field(default_factory=list)
    """Text that ends generation, for formats without an end-of-turn token."""

    def __post_init__(self) -> None:
        for name in ("name", "system", "user", "generation_prompt", "assistant", "begin"):
            value = getattr(self, name)
            if not isinstance(value, str):
                raise ValueError(f"prompt style field {name!r} must be a string, got {value!r}")
        for name in ("system", "user", "assistant"):
            if getattr(self, name).count("{content}") != 1:
                raise ValueError(
                    f"prompt style {self.name!r}: the {name} template must hold '{{content}}' exactly once, "
                    f"got {getattr(self, name)!r}"
                )
        if not isinstance(self.system_role, bool):
            raise ValueError(f"prompt style field 'system_role' must be true or false, got {self.system_role!r}")
        for name in ("stop_tokens", "stop_strings"):
            value = getattr(self, name)
            if not isinstance(value, (list, tuple)) or not all(isinstance(s, str) and s for s in value):
                raise ValueError(f"prompt style field {name!r} must be a list of non-empty strings, got {value!r}")
            setattr(self, name, list(value))

    @classmethod
    def from_name(cls, name: str) -> PromptStyle:
        """A built-in style by name."""
        if name not in STYLES:
            raise ValueError(f"unknown prompt style {name!r}; known styles: {', '.join(STYLES)}")
        return copy.deepcopy(STYLES[name])

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> PromptStyle:
        """A style from a prompt_style.yaml; one that names a built-in style only needs the fields it changes."""
        path = Path(path)
        try:
            data = read_yaml_mapping(path, "mapping of prompt style fields")
        except OSError as e:
            raise ValueError(f"cannot read prompt style {str(path)!r}: {e}") from e
        if not isinstance(data.get("name"), str):
            raise ValueError(f"{str(path)!r} should hold a mapping of prompt style fields, with a 'name'")
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"{str(path)!r}: unknown prompt style fields {unknown}; known fields: {', '.join(known)}")
        base = asdict(STYLES[data["name"]]) if data["name"] in STYLES else {}
        return cls(**(base | data))

    def save(self, path: str | os.PathLike) -> None:
        """Writes this style as a prompt_style.yaml, atomically."""
        write_yaml(path, asdict(self))

    def _render(self, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool, bos: str, eos: str) -> str:
        def fill(template: str, content: str = "") -> str:
            # content last, so that a message holding "{eos}" stays as written
            return template.replace("{bos}", bos).replace("{eos}", eos).replace("{content}", content)

        parts = [fill(self.begin)]
        folded = ""  # a system message waiting for the user message it is folded into
        for i, message in enumerate(messages):
            role, content = message["role"], message["content"]
            if role == "system" and not self.system_role:
                if i + 1 >= len(messages) or messages[i + 1]["role"] != "user":
                    raise ValueError(
                        f"message {i}: prompt style {self.name!r} has no system role, so a system message is put "
                        "in front of the user message that follows it, and none follows"
                    )
                folded = fill(self.system, content)
            elif role == "user":
                parts.append(fill(self.user, folded + content))
                folded = ""
            elif role == "assistant":
                parts += [fill(self.generation_prompt), fill(self.assistant, content)]
            else:
                parts.append(fill(self.system, content))
        if add_generation_prompt:
            parts.append(fill(self.generation_prompt))
        return "".join(parts)


@dataclass
class JinjaStyle(ChatFormat):
    """A checkpoint's own Jinja chat template (Hugging Face `chat_template`), rendered in a sandbox.

    The template sees what `transformers` gives it: `messages`, `add_generation_prompt`, `bos_token`, `eos_token`,
    `raise_exception` and `strftime_now`; `{% generation %}` blocks render their content.
    """

    template: str
    source: str = "chat_template"
    """Where the template came from, for error messages."""
    name: str = "jinja"
    stop_tokens: list[str] = field(default_factory=list)
    stop_strings: list[str] = field(default_factory=list)
    _compiled: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # transformers' settings, so that templates written for it render the same text here
        env = ImmutableSandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols, _GenerationBlock]
        )
        env.filters["tojson"] = _tojson
        env.globals["raise_exception"] = _raise_exception
        env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
        try:
            self._compiled = env.from_string(self.template)
        except jinja2.TemplateError as e:
            raise ValueError(f"the chat template in {self.source} is not valid Jinja: {e}") from e

    def _render(self, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool, bos: str, eos: str) -> str:
        try:
            return self._compiled.render(
                messages=[dict(m) for m in messages],
                add_generation_prompt=add_generation_prompt,
                bos_token=bos,
                eos_token=eos,
            )
        except jinja2.TemplateError as e:
            raise ValueError(f"the chat template in {self.source} cannot render this conversation: {e}") from e

    @property
    def description(self) -> str:
        return f"the chat template in {self.source}"


class _GenerationBlock(Extension):
    """`{% generation %}...{% endgeneration %}`: transformers' marker of assistant text; renders its body."""

    tags = {"generation"}

    def parse(self, parser: Any) -> Any:
        next(parser.stream)
        return parser.parse_statements(("name:endgeneration",), drop_needle=True)


def _tojson(value: Any, indent: int | None = None, separators: Any = None, sort_keys: bool = False) -> str:
    # transformers' tojson: no HTML escaping, unlike Jinja's own
    return json.dumps(value, ensure_ascii=False, indent=indent, separators=separators, sort_keys=sort_keys)


def _raise_exception(message: str) -> None:
    raise jinja2.TemplateError(message)


STYLES: dict[str, PromptStyle] = {
    style.name: style
    for style in [
        # Qwen2.5, Qwen3, SmolLM2 (their own templates add a default system message when none is given)
        PromptStyle(
            name="chatml",
            system="<|im_start|>system\n{content}<|im_end|>\n",
            user="<|im_start|>user\n{content}<|im_end|>\n",
            generation_prompt="<|im_start|>assistant\n",
            assistant="{content}<|im_end|>\n",
            stop_tokens=["<|im_end|>"],
        ),
        PromptStyle(
            name="llama3",
            begin="{bos}",
            system="<|start_header_id|>system<|end_header_id|>\n\n{content}<|eot_id|>",
            user="<|start_header_id|>user<|end_header_id|>\n\n{content}<|eot_id|>",
            generation_prompt="<|start_header_id|>assistant<|end_header_id|>\n\n",
            assistant="{content}<|eot_id|>",
            stop_tokens=["<|eot_id|>"],
        ),
        PromptStyle(
            name="llama2",
            system="<<SYS>>\n{content}\n<</SYS>>\n\n",
            system_role=False,
            user="{bos}[INST] {content} [/INST]",
            assistant=" {content} {eos}",
        ),
        # Mistral-7B-Instruct v0.1/v0.2
        PromptStyle(
            name="mistral",
            begin="{bos}",
            system="{content}\n\n",
            system_role=False,
            user="[INST] {content} [/INST]",
            assistant="{content}{eos}",
        ),
        # Gemma 2 and 3: the assistant's role is called "model"
        PromptStyle(
            name="gemma",
            begin="{bos}",
            system="{content}\n\n",
            system_role=False,
            user="<start_of_turn>user\n{content}<end_of_turn>\n",
            generation_prompt="<start_of_turn>model\n",
            assistant="{content}<end_of_turn>\n",
            stop_tokens=["<end_of_turn>"],
        ),
        PromptStyle(
            name="phi3",
            system="<|system|>\n{content}<|end|>\n",
            user="<|user|>\n{content}<|end|>\n",
            generation_prompt="<|assistant|>\n",
            assistant="{content}<|end|>\n",
            stop_tokens=["<|end|>"],
        ),
        # TinyLlama-1.1B-Chat, Zephyr
        PromptStyle(
            name="zephyr",
            system="<|system|>\n{content}{eos}\n",
            user="<|user|>\n{content}{eos}\n",
            generation_prompt="<|assistant|>\n",
            assistant="{content}{eos}\n",
        ),
        # OLMo 2 Instruct, Tulu 3
        PromptStyle(
            name="olmo2",
            begin="{bos}",
            system="<|system|>\n{content}\n",
            user="<|user|>\n{content}\n",
            generation_prompt="<|assistant|>\n",
            assistant="{content}{eos}\n",
        ),
        PromptStyle(
            name="nanochat",
            begin="{bos}",
            system="{content}\n\n",
            system_role=False,
            user="<|user_start|>{content}<|user_end|>",
            generation_prompt="<|assistant_start|>",
            assistant="{content}<|assistant_end|>",
            stop_tokens=["<|assistant_end|>"],
        ),
        # no chat tokens: for base models, and small models trained here (which learn to end a reply with EOS)
        PromptStyle(
            name="plain",
            system="System: {content}\n",
            user="User: {content}\n",
            generation_prompt="Assistant:",
            assistant=" {content}{eos}\n",
            stop_strings=["\nUser:"],
        ),
    ]
}


def load_prompt_style(checkpoint_dir: str | os.PathLike) -> ChatFormat:
    """The chat format of a checkpoint: its prompt_style.yaml, else its Jinja chat template, else `plain`."""
    directory = Path(checkpoint_dir)
    if (directory / "prompt_style.yaml").is_file():
        return PromptStyle.from_file(directory / "prompt_style.yaml")
    jinja_file = directory / "chat_template.jinja"
    if jinja_file.is_file():
        return JinjaStyle(jinja_file.read_text(encoding="utf-8"), source=repr(str(jinja_file)))
    config_file = directory / "tokenizer_config.json"
    template = _config_chat_template(config_file)
    if template is not None:
        return JinjaStyle(template, source=repr(str(config_file)))
    return PromptStyle.from_name("plain")


def _config_chat_template(path: Path) -> str | None:
    """The `chat_template` of a tokenizer_config.json: a string, or the "default" of a list of named templates."""
    if not path.is_file():
        return None
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read {str(path)!r}: {e}") from e
    template = config.get("chat_template") if isinstance(config, dict) else None
    if isinstance(template, list):
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default", next(iter(named.values()), None))
    return template if isinstance(template, str) and template else None


def validate_messages(messages: Any) -> None:
    """Raises ValueError, naming the message and the problem, unless `messages` is a well-formed conversation."""
    if not isinstance(messages, (list, tuple)) or not messages:
        raise ValueError(f"messages must be a non-empty list of {{'role', 'content'}} dicts, got {messages!r:.100}")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise ValueError(f"message {i}: expected a dict with 'role' and 'content', got {type(message).__name__}")
        role = message.get("role")
        if role not in ROLES:
            raise ValueError(f"message {i}: role {role!r} is not one of {', '.join(ROLES)}")
        if "content" not in message:
            raise ValueError(f"message {i} ({role}) has no 'content'")
        if not isinstance(message["content"], str):
            raise ValueError(f"message {i} ({role}): content must be a string, got {type(message['content']).__name__}")
        if role == "system" and i > 0:
            raise ValueError(f"message {i}: a system message may only come first")


def render_conversation(
    messages: Sequence[Mapping[str, Any]], tokenizer: Tokenizer, style: ChatFormat, max_length: int | None = None
) -> tuple[list[int], list[int]]:
    """Token ids of a conversation and a loss mask: 1 on the assistant's replies and their end-of-turn token.

    The mask is 0 on everything else (BOS, system and user turns, role headers, text between turns). BOS is added
    as the tokenizer's `use_bos` says, never twice. `max_length` keeps only the first `max_length` tokens.
    """
    validate_messages(messages)
    if max_length is not None and max_length < 1:
        raise ValueError(f"max_length must be >= 1 or None, got {max_length}")
    bos, eos = _bos_eos_text(tokenizer)
    specials = _special_ids(style, tokenizer)
    text = style._render(messages, False, bos, eos)
    ids = _encode(tokenizer, text, specials)
    end_of_turn = set(stop_sequences(style, tokenizer)[0])
    mask = [0] * len(ids)
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        start, end = _reply_span(style, messages, i, text, bos, eos)
        first = _token_boundary(tokenizer, ids, _encode(tokenizer, text[:start], specials))
        last = _token_boundary(tokenizer, ids, _encode(tokenizer, text[:end], specials))
        # the reply ends with its first end-of-turn token; separators after it belong to no one
        last = next((j + 1 for j in range(first, last) if ids[j] in end_of_turn), last)
        mask[first:last] = [1] * (last - first)
    if max_length is not None:
        ids, mask = ids[:max_length], mask[:max_length]
    return ids, mask


def render_for_completion(messages: Sequence[Mapping[str, Any]], tokenizer: Tokenizer, style: ChatFormat) -> list[int]:
    """Token ids of a conversation followed by the generation prompt, for the model to write the assistant's reply.

    When the last message is the assistant's, its content is the start of the reply (written as given, without
    the text that would close the turn) and the model continues it.
    """
    validate_messages(messages)
    bos, eos = _bos_eos_text(tokenizer)
    if messages[-1]["role"] != "assistant":
        text = style._render(messages, True, bos, eos)
    else:
        opened = [*messages[:-1], {"role": "assistant", "content": _REPLY_MARK}]
        rendered = style._render(opened, False, bos, eos)
        if _REPLY_MARK not in rendered:
            raise ValueError(f"{style.description} does not write an assistant's content, so no reply can be continued")
        text = rendered[: rendered.index(_REPLY_MARK)] + messages[-1]["content"]
    return _encode(tokenizer, text, _special_ids(style, tokenizer))


def stop_sequences(style: ChatFormat, tokenizer: Tokenizer) -> tuple[list[int], list[str]]:
    """The token ids and the strings that end the assistant's turn: the style's end-of-turn tokens and the EOS.

    A stop token the tokenizer does not have is returned as a stop string.
    """
    ids, strings = [], list(style.stop_strings)
    for token in style.stop_tokens:
        token_id = tokenizer.token_to_id(token)
        if token_id is None:
            strings.append(token)
        else:
            ids.append(token_id)
    ids += [*tokenizer.stop_ids, *([tokenizer.eos_id] if tokenizer.eos_id is not None else [])]
    return list(dict.fromkeys(ids)), list(dict.fromkeys(strings))


def _reply_span(
    style: ChatFormat, messages: Sequence[Mapping[str, Any]], i: int, text: str, bos: str, eos: str
) -> tuple[int, int]:
    """Character span of reply `messages[i]` in `text`, the rendering of the whole conversation."""
    before = style._render(messages[:i], True, bos, eos)
    through = style._render(messages[: i + 1], False, bos, eos)
    end = len(before) + _common_prefix_length(text[len(before) :], through[len(before) :])
    # A template may close the last message differently (an EOS after the conversation): the reply ends where
    # the two renderings part. One that renders a reply differently once more messages follow (Qwen3 drops
    # earlier thinking) cannot be split this way.
    if (
        not (text.startswith(before) and through.startswith(before))
        or messages[i]["content"].strip() not in text[len(before) : end]
    ):
        raise ValueError(
            f"message {i}: {style.description} renders this reply differently once later messages follow, so its "
            "tokens cannot be found by rendering the conversation's prefixes; give the checkpoint a prompt_style.yaml"
        )
    return len(before), end


def _token_boundary(tokenizer: Tokenizer, ids: list[int], prefix_ids: list[int]) -> int:
    """How many leading tokens of `ids` spell the text `prefix_ids` spells (a tokenization of a prefix of it).

    A text cut short may end in different tokens (a run of newlines merged into one); when tokens of `ids` spell
    the same tail they count, and a token that straddles the cut does not.
    """
    k = _common_prefix_length(ids, prefix_ids)
    if k == len(prefix_ids):
        return k
    tail = tokenizer.decode(prefix_ids[k:])
    for b in range(k + 1, len(ids) + 1):
        piece = tokenizer.decode(ids[k:b])
        if piece == tail:
            return b
        if len(piece) >= len(tail):
            break
    return k


def _common_prefix_length(a: Sequence[Any], b: Sequence[Any]) -> int:
    return len(os.path.commonprefix([a, b]))


def _bos_eos_text(tokenizer: Tokenizer) -> tuple[str, str]:
    """The BOS and EOS token strings a template writes ("" when the tokenizer has none)."""
    bos = tokenizer.id_to_token(tokenizer.bos_id) if tokenizer.bos_id is not None else ""
    eos = tokenizer.id_to_token(tokenizer.eos_id) if tokenizer.eos_id is not None else ""
    return bos, eos


def _special_ids(style: ChatFormat, tokenizer: Tokenizer) -> dict[str, int]:
    """Special tokens a rendered text may hold, by their string: BOS, EOS and the style's end-of-turn tokens."""
    specials = {token: tokenizer.token_to_id(token) for token in style.stop_tokens}
    for token_id in (tokenizer.bos_id, tokenizer.eos_id):
        if token_id is not None:
            specials[tokenizer.id_to_token(token_id)] = token_id
    return {token: token_id for token, token_id in specials.items() if token and token_id is not None}


def _encode(tokenizer: Tokenizer, text: str, specials: dict[str, int]) -> list[int]:
    """Token ids of rendered chat text, with BOS added as the tokenizer says (never twice).

    A tokenizer.json finds special tokens in text itself; a SentencePiece model reads "<s>" as three characters,
    so for it the text is split on the special tokens first.
    """
    if tokenizer.backend != "sentencepiece" or not specials:
        return tokenizer.encode(text)
    pattern = "(" + "|".join(re.escape(s) for s in sorted(specials, key=len, reverse=True)) + ")"
    ids: list[int] = []
    for i, piece in enumerate(re.split(pattern, text)):
        if i % 2:
            ids.append(specials[piece])
        elif piece:
            ids += tokenizer.encode(piece, bos=False)
    if tokenizer.use_bos and (not ids or ids[0] != tokenizer.bos_id):
        ids.insert(0, tokenizer.bos_id)
    return ids
