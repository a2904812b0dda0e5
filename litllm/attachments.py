"""Files given with a prompt, as `llm.Attachment`: a path, a URL or the bytes themselves.

litllm's models read text: an attachment of a text type (`TEXT_TYPES`, or any `text/*`) is placed in the user's
message, before the prompt; any other type is refused with a message naming the types a model takes.
"""

from __future__ import annotations

import hashlib
import mimetypes
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TEXT_TYPES = frozenset(
    {"text/plain", "text/markdown", "text/csv", "text/html", "text/x-python", "application/json", "application/xml"}
)
FETCH_TIMEOUT_S = 10
# leading bytes of the binary types people attach most (what `llm` detects with puremagic)
MAGIC = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"%PDF-", "application/pdf"),
    (b"ID3", "audio/mpeg"),
    (b"fLaC", "audio/flac"),
    (b"OggS", "audio/ogg"),
)


@dataclass
class Attachment:
    """A file to send with a prompt: exactly one of `path`, `url` or `content`; `type` is guessed when not given."""

    type: str | None = None
    path: str | None = None
    url: str | None = None
    content: bytes | None = None
    _fetched: bytes | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        given = [name for name in ("path", "url", "content") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"an Attachment takes exactly one of path=, url= or content=, got {given or 'none'}")
        if self.content is not None and not isinstance(self.content, (bytes, bytearray)):
            raise TypeError(f"Attachment content should be bytes, got {type(self.content).__name__}")

    def id(self) -> str:
        """A stable id: the SHA-256 of the content (of the URL for a URL attachment)."""
        data = self.url.encode() if self.url is not None else self.content_bytes()
        return hashlib.sha256(data).hexdigest()

    def resolve_type(self) -> str:
        """The content type: as given, else guessed from the file name, else from the bytes."""
        if self.type:
            return self.type
        name = self.path or self.url
        guessed = mimetypes.guess_type(name)[0] if name else None
        if guessed:
            return guessed
        data = self.content_bytes()
        for magic, kind in MAGIC:
            if data.startswith(magic):
                return kind
        if data[:4] == b"RIFF" and data[8:12] in (b"WEBP", b"WAVE"):
            return "image/webp" if data[8:12] == b"WEBP" else "audio/wav"
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return "application/octet-stream"
        return "text/plain"

    def content_bytes(self) -> bytes:
        """The bytes of the attachment, read from its path or fetched from its URL on first use."""
        if self.content is not None:
            return bytes(self.content)
        if self._fetched is None:
            self._fetched = Path(self.path).read_bytes() if self.path is not None else fetch(self.url)
        return self._fetched

    def text(self) -> str:
        """The content as text (UTF-8)."""
        try:
            return self.content_bytes().decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"attachment {self.describe()} is not UTF-8 text: {e}") from None

    def describe(self) -> str:
        return self.path or self.url or f"<{len(self.content)} bytes>"


def fetch(url: str) -> bytes:
    """The body at `url`; one clear error when it cannot be fetched (no network, a bad address)."""
    try:
        with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT_S) as answer:  # noqa: S310 - the user's own URL
            return answer.read()
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise ValueError(f"cannot fetch attachment {url}: {getattr(e, 'reason', e)}") from None


def is_text(content_type: str) -> bool:
    return content_type in TEXT_TYPES or content_type.startswith("text/")


def check_attachments(attachments: Sequence[Any] | None, model_id: str) -> list[Any]:
    """The attachments of a prompt, each checked to be of a type a text model takes."""
    attachments = list(attachments or [])
    for attachment in attachments:
        if not callable(getattr(attachment, "resolve_type", None)):
            raise TypeError(f"attachments should be litllm.Attachment objects, got {type(attachment).__name__}")
        kind = attachment.resolve_type()
        if not is_text(kind or ""):
            raise ValueError(
                f"{model_id} takes text attachments only ({', '.join(sorted(TEXT_TYPES))} or any text/*), "
                f"not {kind!r}: their text goes into the prompt"
            )
    return attachments


def user_content(text: str, attachments: Sequence[Any] = ()) -> str:
    """The user's message for a prompt and its text attachments: each attachment's text, then the prompt."""
    parts = [a.content_bytes().decode("utf-8", errors="replace") for a in attachments]
    return "\n\n".join([*parts, text])
