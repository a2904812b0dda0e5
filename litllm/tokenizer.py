"""Text <-> token ids for a checkpoint directory, streaming decoding, and training a byte-level BPE tokenizer.

The tokenizer is read from the checkpoint's own files: `tokenizer.json` (Hugging Face `tokenizers`) when present,
else `tokenizer.model` (SentencePiece). BOS/EOS come from those files too, never from a model's name.

BOS rule: `encode` never runs the tokenizer.json post-processor; it adds BOS (and EOS) itself, at most once:
a text whose own tokens already start with BOS (a chat template wrote it) gets no second one. Whether BOS is
added by default (`use_bos`) is, in order:
  1. `add_bos_token` in tokenizer_config.json, when it is there;
  2. else, for tokenizer.json, whether its post-processor puts the BOS token first (Llama-style
     TemplateProcessing: that is how transformers >= 5 records `add_bos_token`);
  3. else, for tokenizer.model, whether the model defines a BOS piece (SentencePiece checkpoints are Llama-era);
and never when there is no BOS token.

BOS/EOS ids, first found wins: the `bos_token`/`eos_token` of tokenizer_config.json, then of
special_tokens_map.json (a string or a dict with "content"), then `bos_token_id`/`eos_token_id` of
generation_config.json, then of config.json (an int or a list), then the post-processor's leading token (BOS)
or the SentencePiece model's own ids. An entry that names no token of the vocabulary is skipped. `stop_ids`
holds every EOS id found in these files.

nanochat's tokenizer API is here too (`HuggingFaceTokenizer` is another name for `Tokenizer`): `from_pretrained`,
`get_bos_token_id`, `encode_special`, and `render_conversation` / `render_for_completion`, which take a conversation
`{"messages": [...]}` (or the list of messages) and render it in the tokenizer's own chat format (`chat_format`:
the folder's prompt_style.yaml, else its Jinja chat template, else `plain`; see `litllm.prompts`).
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from litllm.paths import atomic_write_bytes, read_json_object

if TYPE_CHECKING:
    import torch

    from litllm.prompts import ChatFormat

# Copied by `Tokenizer.save`: everything that decides how text becomes ids and which ids are BOS/EOS.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer.model",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "generation_config.json",
)
# Byte-level BPE tokens can straddle characters, so valid text may end mid-character for several tokens in a
# row; a chunk this long still ending in U+FFFD is taken to be invalid bytes and let through, which bounds the
# stream decoder's window (and its cost per token).
_MAX_HELD_TOKENS = 64


class Tokenizer:
    """Encodes and decodes text with the tokenizer files of a checkpoint directory."""

    def __init__(self, checkpoint_dir: str | os.PathLike) -> None:
        self.checkpoint_dir = Path(checkpoint_dir)
        hf_file = self.checkpoint_dir / "tokenizer.json"
        sp_file = self.checkpoint_dir / "tokenizer.model"
        self._hf: HFTokenizer | None = None
        self._sp: Any = None  # sentencepiece.SentencePieceProcessor, imported only when needed
        self._chat_format: ChatFormat | None = None  # read from the folder on first use
        if not self.checkpoint_dir.is_dir():
            raise FileNotFoundError(f"checkpoint directory {str(self.checkpoint_dir)!r} does not exist")
        if hf_file.is_file():
            self.backend = "huggingface"
            self._hf = _load_hf(hf_file)
            vocab = self._hf.get_vocab(with_added_tokens=True)
            self.vocab_size = max(vocab.values(), default=-1) + 1
        elif sp_file.is_file():
            self.backend = "sentencepiece"
            self._sp = _load_sp(sp_file)
            self.vocab_size = self._sp.get_piece_size()
        else:
            raise FileNotFoundError(
                f"no tokenizer in {str(self.checkpoint_dir)!r}: looked for tokenizer.json and tokenizer.model"
            )

        named = [_read_json(self.checkpoint_dir / n) for n in ("tokenizer_config.json", "special_tokens_map.json")]
        numbered = [_read_json(self.checkpoint_dir / n) for n in ("generation_config.json", "config.json")]
        template_first = self._post_processor_first_id()
        bos_ids = self._special_ids("bos", named, numbered) or self._valid([template_first, self._sp_id("bos")])
        eos_ids = self._special_ids("eos", named, numbered) or self._valid([self._sp_id("eos")])
        self.bos_id: int | None = bos_ids[0] if bos_ids else None
        self.eos_id: int | None = eos_ids[0] if eos_ids else None
        self.stop_ids: tuple[int, ...] = tuple(dict.fromkeys(eos_ids))

        add_bos = named[0].get("add_bos_token")
        if isinstance(add_bos, bool):
            use_bos = add_bos
        elif self._hf is not None:
            use_bos = template_first is not None and template_first == self.bos_id
        else:
            use_bos = True
        self.use_bos = use_bos and self.bos_id is not None

    @classmethod
    def from_pretrained(cls, source: str | os.PathLike) -> Tokenizer:
        """The tokenizer of a folder, a local model name, a training phase (`sft`, ...) or a Hub repo id.

        Names go through the one checkpoint resolver (`litllm.checkpoint.sources.resolve_tokenizer_dir`): a Hub
        repo's tokenizer files are downloaded alone, without weights, into the model cache, once; offline, a
        HubError says so at once.
        """
        path = Path(source).expanduser()
        if path.is_file() and path.name in ("tokenizer.json", "tokenizer.model"):
            path = path.parent
        if path.is_dir():
            return cls(path)
        from litllm.checkpoint.sources import resolve_tokenizer_dir

        return cls(resolve_tokenizer_dir(str(source)))

    @property
    def chat_format(self) -> ChatFormat:
        """The format conversations are rendered in: prompt_style.yaml, else the Jinja chat template, else plain."""
        if self._chat_format is None:
            from litllm.prompts import load_prompt_style

            self._chat_format = load_prompt_style(self.checkpoint_dir)
        return self._chat_format

    @chat_format.setter
    def chat_format(self, style: ChatFormat | str) -> None:
        from litllm.prompts import PromptStyle

        self._chat_format = PromptStyle.from_name(style) if isinstance(style, str) else style

    def get_bos_token_id(self) -> int:
        """The id that starts a document: BOS, else `<|bos|>` (nanochat's), else EOS or `<|endoftext|>`.

        Tokenizers with one special token (GPT-2's, and those `train_bpe` writes) use it between documents, so
        without a BOS the EOS stands in for it.
        """
        for token_id in (self.bos_id, self.token_to_id("<|bos|>"), self.eos_id, self.token_to_id("<|endoftext|>")):
            if token_id is not None:
                return token_id
        raise ValueError(
            f"the tokenizer in {str(self.checkpoint_dir)!r} has no BOS token (nor EOS, <|bos|> or <|endoftext|>)"
        )

    def special_tokens(self) -> list[str]:
        """The special tokens' strings, by id: added tokens (tokenizer.json) or control pieces (SentencePiece)."""
        if self._hf is not None:
            added = self._hf.get_added_tokens_decoder()
            tokens = [added[i].content for i in sorted(added)]
        else:
            tokens = [
                self._sp.id_to_piece(i)
                for i in range(self.vocab_size)
                if self._sp.is_control(i) or self._sp.is_unknown(i)
            ]
        named = [self.id_to_token(i) for i in (self.bos_id, self.eos_id) if i is not None]
        return list(dict.fromkeys(tokens + named))

    def encode_special(self, token: str) -> int:
        """The id of a special token, by its string (`<|bos|>`, `<|im_end|>`, `<s>`)."""
        specials = self.special_tokens()
        if token not in specials:
            shown = ", ".join(specials[:20]) + (f" and {len(specials) - 20} more" if len(specials) > 20 else "")
            raise ValueError(
                f"{token!r} is not a special token of the tokenizer in {str(self.checkpoint_dir)!r}; "
                f"its special tokens: {shown or 'none'}"
            )
        return self.token_to_id(token)

    def render_conversation(
        self, conversation: Mapping[str, Any] | Sequence[Mapping[str, Any]], max_tokens: int | None = None
    ) -> tuple[list[int], list[int]]:
        """Token ids of a conversation and its loss mask (1 on the assistant's replies, the tokens to train on).

        `conversation` is `{"messages": [...]}` or the list of messages; `max_tokens` keeps only the first ones.
        """
        from litllm.prompts import render_conversation

        return render_conversation(_messages(conversation), self, self.chat_format, max_length=max_tokens)

    def render_for_completion(self, conversation: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> list[int]:
        """Token ids that prompt the model for the assistant's reply: the conversation without its final assistant
        message (the reply to write, as in a dataset's example), ending with the assistant's turn opened."""
        from litllm.prompts import render_for_completion

        messages = list(_messages(conversation))
        if messages and isinstance(messages[-1], Mapping) and messages[-1].get("role") == "assistant":
            messages.pop()
            if not messages:
                raise ValueError("the conversation holds only an assistant message: there is nothing to prompt with")
        return render_for_completion(messages, self, self.chat_format)

    def encode(self, text: str, bos: bool | None = None, eos: bool = False, max_length: int = -1) -> list[int]:
        """Token ids of `text`, with BOS and EOS each added at most once.

        `bos=None` follows the checkpoint (`use_bos`); a `max_length` >= 0 keeps only the first `max_length` ids.
        """
        if self._hf is not None:
            ids = self._hf.encode(text, add_special_tokens=False).ids
        else:
            ids = self._sp.encode(text)
        if self.use_bos if bos is None else bos:
            bos_id = self._require(self.bos_id, "BOS", "bos")
            if not ids or ids[0] != bos_id:
                ids.insert(0, bos_id)
        if eos:
            eos_id = self._require(self.eos_id, "EOS", "eos")
            if not ids or ids[-1] != eos_id:
                ids.append(eos_id)
        return ids if max_length < 0 else ids[:max_length]

    def decode(self, ids: Sequence[int] | torch.Tensor, skip_special_tokens: bool = False) -> str:
        """Text of a list or 1-D tensor of token ids."""
        if hasattr(ids, "tolist"):  # a tensor or an array; duck-typed so torch is never imported here
            if ids.ndim != 1:
                raise ValueError(f"decode takes a 1-D sequence of token ids, got shape {tuple(ids.shape)}")
            ids = ids.tolist()
        ids = [int(i) for i in ids]
        if self._hf is not None:
            return self._hf.decode(ids, skip_special_tokens=skip_special_tokens)
        # SentencePiece never renders control pieces (BOS, EOS, PAD), whatever skip_special_tokens says.
        return self._sp.decode(ids)

    def stream_decoder(self, skip_special_tokens: bool = False) -> StreamDecoder:
        """A decoder that turns ids pushed one at a time into text."""
        return StreamDecoder(self, skip_special_tokens=skip_special_tokens)

    def token_to_id(self, token: str) -> int | None:
        """Id of a token string, or None when it is not in the vocabulary."""
        if self._hf is not None:
            return self._hf.token_to_id(token)
        token_id = self._sp.piece_to_id(token)
        return None if token_id == self._sp.unk_id() and self._sp.id_to_piece(token_id) != token else token_id

    def id_to_token(self, token_id: int) -> str:
        """Token string of an id."""
        token = None
        if 0 <= token_id < self.vocab_size:
            token = self._hf.id_to_token(token_id) if self._hf is not None else self._sp.id_to_piece(token_id)
        if token is None:
            raise ValueError(f"token id {token_id} is not in the vocabulary (ids 0..{self.vocab_size - 1})")
        return token

    def token_byte_lengths(self, size: int | None = None) -> list[int]:
        """UTF-8 bytes each token id stands for (0 for special and added tokens), padded with 0 to `size` ids.

        Used for bits per byte.
        """
        lengths = [0 if b is None else len(b) for b in self.token_bytes()]
        return lengths + [0] * (max(size or 0, self.vocab_size) - len(lengths))

    def token_bytes(self) -> list[bytes | None]:
        """The bytes each token id stands for; None for special and added tokens, which no text contains."""
        cached = getattr(self, "_token_bytes", None)
        if cached is None:
            cached = self._token_bytes = self._read_token_bytes()
        return cached

    def _read_token_bytes(self) -> list[bytes | None]:
        if self._sp is not None:
            sp = self._sp
            return [
                None
                if sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i)
                else _piece_bytes(sp.id_to_piece(i), byte_level=False)
                for i in range(self.vocab_size)
            ]
        added = set(self._hf.get_added_tokens_decoder())
        decoder = json.loads(self._hf.to_str()).get("decoder") or {}
        byte_level = "ByteLevel" in json.dumps(decoder)
        pieces = [None if i in added else self._hf.id_to_token(i) for i in range(self.vocab_size)]
        return [None if p is None else _piece_bytes(p, byte_level) for p in pieces]

    def save(self, out_dir: str | os.PathLike) -> None:
        """Copies this tokenizer's files into `out_dir`, so that `Tokenizer(out_dir)` behaves the same."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        if out_dir.resolve() == self.checkpoint_dir.resolve():
            return
        for name in TOKENIZER_FILES:
            if (self.checkpoint_dir / name).is_file():
                atomic_write_bytes(out_dir / name, (self.checkpoint_dir / name).read_bytes())
        # config.json is the model's file, not ours: keep the BOS/EOS ids it gave in a generation_config.json.
        model_config = _read_json(self.checkpoint_dir / "config.json")
        ids = {k: model_config[k] for k in ("bos_token_id", "eos_token_id") if model_config.get(k) is not None}
        if ids and not (self.checkpoint_dir / "generation_config.json").is_file():
            atomic_write_bytes(out_dir / "generation_config.json", json.dumps(ids, indent=2).encode())

    def _special_ids(self, kind: str, named: list[dict], numbered: list[dict]) -> list[int]:
        """Ids of the `kind` ("bos" or "eos") token from the config files, in priority order."""
        ids = []
        for config in named:
            token = _token_content(config.get(f"{kind}_token"))
            ids.append(self.token_to_id(token) if token is not None else None)
        for config in numbered:
            value = config.get(f"{kind}_token_id")
            ids.extend(value if isinstance(value, list) else [value])
        return self._valid(ids)

    def _valid(self, ids: list[Any]) -> list[int]:
        return [i for i in ids if isinstance(i, int) and not isinstance(i, bool) and 0 <= i < self.vocab_size]

    def _post_processor_first_id(self) -> int | None:
        """The token tokenizer.json's post-processor puts before the text, if any."""
        if self._hf is None:
            return None
        first = self._hf.encode("", add_special_tokens=True).ids[:1]
        return first[0] if first and first != self._hf.encode("", add_special_tokens=False).ids[:1] else None

    def _sp_id(self, kind: str) -> int | None:
        if self._sp is None:
            return None
        return self._sp.bos_id() if kind == "bos" else self._sp.eos_id()

    def _require(self, token_id: int | None, name: str, argument: str) -> int:
        if token_id is None:
            raise ValueError(
                f"{argument}=True, but {str(self.checkpoint_dir)!r} defines no {name} token (looked in "
                f"tokenizer_config.json, special_tokens_map.json, generation_config.json and config.json)"
            )
        return token_id


class StreamDecoder:
    """Turns token ids pushed one at a time into text, never splitting a character.

    Each push decodes a short window: the tokens of the last finished chunk (context, so that a SentencePiece
    "▁" keeps its space) and the tokens since. Text is returned up to a trailing U+FFFD, a character whose bytes
    are still arriving; the window moves on once its text ends cleanly. For valid UTF-8 the pieces returned by
    `push` and `flush` join to exactly `tokenizer.decode(all_ids)`.
    """

    def __init__(self, tokenizer: Tokenizer, skip_special_tokens: bool = False) -> None:
        self.tokenizer = tokenizer
        self.skip_special_tokens = skip_special_tokens
        self._ids: list[int] = []  # context tokens, then the tokens of the unfinished chunk
        self._context = 0  # how many of self._ids are context
        self._context_text = ""  # decode of the context tokens alone
        self._sent = 0  # characters of the unfinished chunk's text already returned

    def push(self, token_id: int) -> str:
        """Adds one token id and returns the text it completes (maybe "")."""
        self._ids.append(int(token_id))
        text = self._decode()[len(self._context_text) :]
        if not text.endswith("\ufffd") or len(self._ids) - self._context >= _MAX_HELD_TOKENS:
            return self._finish_chunk(text)
        complete = len(text.rstrip("\ufffd"))
        if complete <= self._sent:
            return ""
        new_text, self._sent = text[self._sent : complete], complete
        return new_text

    def flush(self) -> str:
        """Returns the text still held back, at the end of the stream."""
        if len(self._ids) == self._context:
            return ""
        return self._finish_chunk(self._decode()[len(self._context_text) :])

    def _finish_chunk(self, text: str) -> str:
        new_text = text[self._sent :]
        # A chunk that adds no text (a skipped special token, a lone "▁" at the start) joins the context instead of
        # replacing it: a context that renders nothing would let the decoder strip the next token's leading space.
        if text or len(self._ids) > _MAX_HELD_TOKENS:
            self._ids = self._ids[self._context :]
        self._context, self._context_text, self._sent = len(self._ids), self._decode(), 0
        return new_text

    def _decode(self) -> str:
        return self.tokenizer.decode(self._ids, skip_special_tokens=self.skip_special_tokens)


def train_bpe(
    files_or_iterator: str | os.PathLike | Sequence[str | os.PathLike] | Iterable[str],
    vocab_size: int,
    out_dir: str | os.PathLike,
    special_tokens: Sequence[str] = ("<|endoftext|>",),
    min_frequency: int = 2,
    add_bos_token: bool = False,
    show_progress: bool = True,
) -> Tokenizer:
    """Trains a byte-level BPE tokenizer and writes it to `out_dir` as tokenizer.json + tokenizer_config.json.

    `files_or_iterator` is a path or a list/tuple of paths, or any other iterable of texts (e.g. a generator).
    The first special token is both BOS and EOS (the GPT-2 convention); `add_bos_token` sets `use_bos`.
    """
    special_tokens = list(dict.fromkeys(special_tokens))
    smallest = 256 + len(special_tokens)
    if vocab_size < smallest:
        raise ValueError(
            f"vocab_size={vocab_size} is too small: a byte-level BPE needs at least 256 byte tokens "
            f"+ {len(special_tokens)} special tokens = {smallest}"
        )
    tokenizer = HFTokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=show_progress,
    )
    if isinstance(files_or_iterator, (str, os.PathLike, list, tuple)):
        files = [files_or_iterator] if isinstance(files_or_iterator, (str, os.PathLike)) else files_or_iterator
        for file in files:
            if not Path(file).is_file():
                raise FileNotFoundError(f"training file {str(file)!r} does not exist")
        tokenizer.train([str(f) for f in files], trainer)
    else:
        tokenizer.train_from_iterator(files_or_iterator, trainer)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = {"tokenizer_class": "PreTrainedTokenizerFast", "add_bos_token": add_bos_token}
    if special_tokens:
        config |= {"bos_token": special_tokens[0], "eos_token": special_tokens[0]}
    atomic_write_bytes(out_dir / "tokenizer.json", tokenizer.to_str(pretty=True).encode())
    atomic_write_bytes(out_dir / "tokenizer_config.json", json.dumps(config, indent=2, ensure_ascii=False).encode())
    return Tokenizer(out_dir)


# nanochat's name for its tokenizer class; litllm has one Tokenizer for tokenizer.json and tokenizer.model alike
HuggingFaceTokenizer = Tokenizer


def _messages(conversation: Any) -> Any:
    """The messages of a conversation given as `{"messages": [...]}` or as the list itself."""
    if isinstance(conversation, Mapping):
        if "messages" not in conversation:
            raise ValueError(f"a conversation dict needs a 'messages' list, got keys {sorted(conversation)}")
        return conversation["messages"]
    if isinstance(conversation, (list, tuple)):
        return conversation
    raise ValueError(
        f"a conversation is {{'messages': [...]}} or a list of messages, got {type(conversation).__name__}"
    )


def _piece_bytes(piece: str, byte_level: bool) -> bytes | None:
    """The bytes a vocabulary piece decodes to: byte-level BPE spells each byte as one character (GPT-2's table);
    SentencePiece-style pieces spell a space as "▁" and a raw byte as "<0xNN>"."""
    if byte_level:
        table = _byte_level_table()
        return bytes(table[c] for c in piece) if all(c in table for c in piece) else None
    if len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
        try:
            return bytes((int(piece[3:5], 16),))
        except ValueError:
            pass
    return piece.replace("\u2581", " ").encode("utf-8")


@functools.cache
def _byte_level_table() -> dict[str, int]:
    """Character -> byte of GPT-2's byte-level alphabet: printable bytes stand for themselves, the other bytes
    for the characters from U+0100 on, in byte order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    others = [b for b in range(256) if b not in printable]
    return {chr(b): b for b in printable} | {chr(256 + n): b for n, b in enumerate(others)}


def _load_hf(path: Path) -> HFTokenizer:
    try:
        return HFTokenizer.from_file(str(path))
    except Exception as e:  # tokenizers raises a bare Exception for a malformed file
        raise ValueError(f"cannot read tokenizer file {str(path)!r}: {e}") from e


def _load_sp(path: Path) -> Any:
    import sentencepiece

    try:
        return sentencepiece.SentencePieceProcessor(model_file=str(path))
    except (OSError, RuntimeError) as e:
        raise ValueError(f"cannot read SentencePiece model {str(path)!r}: {e}") from e


def _read_json(path: Path) -> dict[str, Any]:
    """The JSON object in `path`, or {} when there is no such file."""
    return read_json_object(path) if path.is_file() else {}


def _token_content(value: Any) -> str | None:
    """A special token as tokenizer_config.json writes it: a string, or a dict with "content"."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None
