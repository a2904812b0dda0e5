"""The one resolver: from what a user names to a checkpoint folder.

A source is tried as each of these in turn; the first that matches wins:

1. an existing path: it must be a checkpoint folder (a CheckpointError says what it lacks), or a nanoGPT
   ckpt.pt, which (like a folder holding one, here or in the registry) stands for the litllm folder it is
   converted into once (`litllm.checkpoint.nanogpt.converted_checkpoint`; torch is imported to convert);
2. a name or alias of the local model registry (`litllm models`: registered folders and downloads);
3. a training phase, `base`, `mid`, `sft` or `rl` (nanochat's model sources): the `final/` checkpoint of the
   newest run of that phase (`base` = `litllm pretrain`, `sft` = `litllm finetune`; `run_folders` says where
   runs live); a FileNotFoundError names the folders looked in when there is none;
4. a Hub repo id (`org/name`), or a catalog name (`litllm download list`) whose config names a published
   `hf_repo`; any other name is a FileNotFoundError that lists the closest catalog names;
5. that repo's converted download in the model cache, `$LITLLM_MODEL_DIR/<org>/<name>`, when it is complete;
6. a download of that repo from the Hub (a HubError says why it failed, offline included), unless the source
   is written as a path (`/...`, `./...`): then a FileNotFoundError.

Standard library only until step 6 downloads: the CLI resolves names without importing torch.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

from litllm.checkpoint.hub import cached_checkpoint_dir, download
from litllm.checkpoint.layout import checkpoint_kind, detect_format
from litllm.checkpoint.run_folders import PHASES, phase_checkpoint
from litllm.config import Config
from litllm.errors import CheckpointError, UnknownModelError
from litllm.local_models import resolve as resolve_local_name

REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def resolve_checkpoint(source: str | Path) -> Path:
    """The checkpoint folder of a path, a local model name or alias, a catalog name or a Hub repo id."""
    found = locate(str(source))
    return found if isinstance(found, Path) else download(found)


def locate(source: str, paths: bool = True) -> Path | str:
    """The local checkpoint folder `source` stands for (steps 1-5), else the Hub repo id to download (step 6).

    paths=False reads `source` as a name only, never as a path on this machine."""
    path = Path(source).expanduser()
    if paths and path.exists():
        return loadable(path, detect_format(path))
    with contextlib.suppress(UnknownModelError):
        found = resolve_local_name(source)
        return loadable(found, checkpoint_kind(found))
    if source in PHASES:
        return phase_checkpoint(source)
    repo_id = hub_repo(source)
    cached = cached_checkpoint_dir(repo_id)
    if checkpoint_kind(cached) is not None:  # else absent, or an unfinished earlier download: fetch again
        return cached
    if paths and (path.is_absolute() or source.startswith(".")):
        raise FileNotFoundError(f"checkpoint directory {source!r} does not exist")
    return repo_id


def resolve_tokenizer_dir(source: str | Path, access_token: str | None = None) -> Path:
    """The folder with the tokenizer `source` names: an existing folder, or any source `resolve_checkpoint` takes,
    found the same way but, when nothing of it is here yet, downloading the tokenizer's files alone."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    found = locate(str(source))
    if isinstance(found, Path):
        return found
    cached = cached_checkpoint_dir(found)
    if any((cached / name).is_file() for name in ("tokenizer.json", "tokenizer.model")):
        return cached  # an earlier tokenizer-only download
    return download(found, access_token, tokenizer_only=True)


def loadable(path: Path, kind: str | None) -> Path:
    """`path`, or for a nanoGPT checkpoint the litllm folder it is converted into (once)."""
    if kind != "nanogpt":
        return path
    from litllm.checkpoint.nanogpt import converted_checkpoint

    return converted_checkpoint(path)


def hub_repo(source: str) -> str:
    """The Hub repo id `source` names: itself when written `org/name`, else the `hf_repo` of a catalog name."""
    if REPO_ID.match(source):
        return source
    try:
        repo_id = Config.from_name(source).hf_repo
    except UnknownModelError as e:
        raise FileNotFoundError(
            f"{source!r} is neither an existing directory, a Hub repo id (org/name) nor a known model name ({e})"
        ) from None
    if not repo_id:
        raise CheckpointError(f"model {source!r} has no published weights; use init='random' to train it")
    return repo_id


__all__ = ["REPO_ID", "hub_repo", "locate", "resolve_checkpoint", "resolve_tokenizer_dir"]
