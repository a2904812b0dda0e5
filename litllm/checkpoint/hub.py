"""Downloads from the Hugging Face Hub: a repo's safetensors and tokenizer files, converted once into the model
cache, `$LITLLM_MODEL_DIR/<org>/<name>` (default `$LITLLM_HOME/checkpoints/<org>/<name>`)."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

from litllm.checkpoint.layout import CONFIG, TOKENIZER_FILES, copy_tokenizer_files
from litllm.errors import HubError
from litllm.paths import litllm_home, model_dir

# transformers names its weights model.safetensors or model-0000i-of-0000n.safetensors; other safetensors files
# in a repo (Mistral's consolidated.safetensors) are the same weights again in another layout
HUB_PATTERNS = ["model*.safetensors", "model.safetensors.index.json", "config.json", "generation_config.json"]
# the tokenizer's files (prompt_style.yaml is litllm's own; generation_config.json comes with the weights)
TOKENIZER_PATTERNS = [name for name in TOKENIZER_FILES if name not in ("prompt_style.yaml", "generation_config.json")]


def cached_checkpoint_dir(repo_id: str) -> Path:
    """Where the converted download of a Hub repo lives."""
    return model_dir() / repo_id


def download(
    repo_id: str,
    access_token: str | None = None,
    tokenizer_only: bool = False,
    out_dir: str | Path | None = None,
    progress: Callable[[str], None] | None = print,
) -> Path:
    """Download a Hub repo's safetensors and tokenizer files, convert them, and return the litllm directory."""
    from huggingface_hub import snapshot_download

    out = Path(out_dir) if out_dir else cached_checkpoint_dir(repo_id)
    token = access_token or os.environ.get("HF_TOKEN")
    raw = litllm_home() / "hf" / repo_id
    patterns = TOKENIZER_PATTERNS + ([] if tokenizer_only else HUB_PATTERNS)
    try:
        snapshot_download(repo_id, allow_patterns=patterns, local_dir=raw, token=token, etag_timeout=5)
    except Exception as e:  # noqa: BLE001 - huggingface_hub wraps network failures in several classes
        error = hub_error(e, repo_id)
        if error is None:
            raise
        raise error from e
    if tokenizer_only:
        out.mkdir(parents=True, exist_ok=True)
        copy_tokenizer_files(raw, out)
        return out
    if progress:
        progress(f"converting {repo_id} to litllm format in {out}")
    converted = convert_into(raw, out)
    # the converted folder holds everything; the raw copy is kept only while a download is unfinished
    shutil.rmtree(raw, ignore_errors=True)
    return converted


def convert_into(raw: Path, out: Path) -> Path:
    """Convert the download `raw` in a temporary folder beside `out`, then move it into place, its config last: a
    process killed while converting leaves no folder that a later run takes for a finished checkpoint."""
    from litllm.checkpoint.loading import convert_to_litllm  # torch loads only once there is something to convert

    tmp = out.parent / f".{out.name}.{uuid.uuid4().hex[:12]}.tmp"
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        convert_to_litllm(raw, tmp)
        if not out.exists():
            os.rename(tmp, out)
            return out
        (out / CONFIG).unlink(missing_ok=True)  # an existing folder (out_dir, a tokenizer-only download) is unfinished
        for path in sorted(tmp.iterdir(), key=lambda p: p.name == CONFIG):  # until its config is back
            os.replace(path, out / path.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def hub_error(e: Exception, repo_id: str) -> HubError | None:
    """The HubError that says what went wrong downloading `repo_id` and what to do, or None for a bug of ours."""
    from huggingface_hub import constants
    from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError

    hint = (
        f"to use files you already have, pass their folder instead (e.g. LLM.load('/path/to/{repo_id.split('/')[-1]}'))"
    )
    if isinstance(e, GatedRepoError):
        return HubError(
            f"{repo_id} is gated: accept its license on the Hub and pass --access_token or set HF_TOKEN; {hint}"
        )
    if isinstance(e, RepositoryNotFoundError):
        return HubError(f"no Hub repository {repo_id!r} (or it is private and no valid token was given); {hint}")
    if isinstance(e, LocalEntryNotFoundError):  # no network, or offline mode, and nothing downloaded before
        # HF_HUB_OFFLINE as huggingface_hub read it at import
        why = (
            "offline mode is on (HF_HUB_OFFLINE is set)"
            if constants.HF_HUB_OFFLINE
            else "offline: no network connection"
        )
        return HubError(f"cannot download {repo_id} from the Hugging Face Hub: {why}; {hint}")
    if isinstance(e, (OSError, ConnectionError)):
        return HubError(f"cannot reach the Hugging Face Hub to download {repo_id}: {type(e).__name__}; {hint}")
    if type(e).__module__.startswith(("requests", "httpx", "urllib3", "huggingface_hub")):
        return HubError(f"cannot download {repo_id} from the Hugging Face Hub: {e}; {hint}")
    return None


__all__ = ["cached_checkpoint_dir", "download"]
