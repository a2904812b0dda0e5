"""Where litllm keeps its files, and the one way it writes and reads them.

Standard library only, so that every module may import it. Every file litllm writes goes through `atomic_path`:
a temporary file beside the target, flushed to disk, given the mode a plain `open()` would give it, then renamed
over the target, so a reader (or a crash) never sees half a file and an earlier version stays intact until then.

Environment variables; the NANOCHAT_ name given with one is read too, and when both are set litllm's wins:
    LITLLM_HOME            where litllm keeps its files (default ~/.cache/litllm)
    LITLLM_DATA_DIR        prepared (tokenized) data of the data modules (NANOCHAT_DATA_DIR; default $LITLLM_HOME/data)
    LITLLM_MODEL_DIR       the model cache: downloads, converted (NANOCHAT_MODEL_DIR; default $LITLLM_HOME/checkpoints)
    LITLLM_TOKENIZER_PATH  the tokenizer folder a command uses when it needs one and none is given
                           (NANOCHAT_TOKENIZER_PATH; `litllm tokenizer evaluate`, a training run without one)
    LITLLM_RUNS_DIR        where training runs go: <runs>/pretrain/<name>-<time>/, ... (default ./out)
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def litllm_home() -> Path:
    """Where litllm keeps downloaded and converted checkpoints: $LITLLM_HOME, default ~/.cache/litllm."""
    return Path(os.environ.get("LITLLM_HOME") or Path.home() / ".cache" / "litllm")


def data_dir() -> Path:
    """Where data modules keep prepared data: $LITLLM_DATA_DIR or $NANOCHAT_DATA_DIR, default $LITLLM_HOME/data."""
    return _env_path("LITLLM_DATA_DIR", "NANOCHAT_DATA_DIR") or litllm_home() / "data"


def model_dir() -> Path:
    """The model cache, where downloads are converted to: $LITLLM_MODEL_DIR or $NANOCHAT_MODEL_DIR, default
    $LITLLM_HOME/checkpoints (a repo `org/name` lands in `<model_dir>/org/name`)."""
    return _env_path("LITLLM_MODEL_DIR", "NANOCHAT_MODEL_DIR") or litllm_home() / "checkpoints"


def tokenizer_path() -> Path | None:
    """The default tokenizer folder, $LITLLM_TOKENIZER_PATH or $NANOCHAT_TOKENIZER_PATH; None when neither is set.

    A FileNotFoundError names the variable when the folder it gives does not exist.
    """
    for name in ("LITLLM_TOKENIZER_PATH", "NANOCHAT_TOKENIZER_PATH"):
        if os.environ.get(name):
            path = Path(os.environ[name]).expanduser()
            if not path.is_dir():
                raise FileNotFoundError(
                    f"${name}={os.environ[name]!r} is not a folder: it should name a folder with tokenizer.json "
                    "or tokenizer.model"
                )
            return path
    return None


def runs_dir() -> Path:
    """Where training runs go (`<runs>/pretrain/<name>-<time>/`, ...): $LITLLM_RUNS_DIR, default ./out."""
    return _env_path("LITLLM_RUNS_DIR") or Path("out")


def _env_path(*names: str) -> Path | None:
    """The path the first of these environment variables that is set (and not empty) holds."""
    value = next((os.environ[n] for n in names if os.environ.get(n)), None)
    return None if value is None else Path(value).expanduser()


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; once the block has written it, it replaces `path` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}.tmp"
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)  # the data is on disk before the name points at it
        finally:
            os.close(fd)
        os.chmod(tmp, new_file_mode())  # safetensors and mkstemp write their files private (0600)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def new_file_mode() -> int:
    """The mode `open()` gives a new file: 0o666 less the process umask."""
    umask = os.umask(0o077)  # the umask can only be read by setting it; meanwhile new files are private
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_copy(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Copy the file `src` to `dst` atomically."""
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def write_yaml(path: str | os.PathLike, data: Any) -> None:
    """Write `data` as YAML (keys in their order) to `path` atomically."""
    import yaml  # noqa: PLC0415 - PyYAML is a dependency, but `litllm --help` never needs it

    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write `data` as indented JSON to `path` atomically."""
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def read_yaml_mapping(path: str | os.PathLike, what: str = "mapping", error: type[Exception] = ValueError) -> dict:
    """The mapping a YAML file holds; `error` (naming the file and `what` it should hold) when it holds none."""
    import yaml  # noqa: PLC0415

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise error(f"{str(path)!r} is not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise error(f"{str(path)!r} does not hold a {what}")
    return data


def read_json_object(path: str | os.PathLike, error: type[Exception] = ValueError) -> dict:
    """The object a JSON file holds; `error` naming the file when it is not valid JSON or not an object."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise error(f"{str(path)!r} is not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise error(f"{str(path)!r} does not hold a JSON object")
    return data


def recipes_dir() -> Path:
    """The recipes shipped with litllm (`config_hub/`: pretrain, finetune, eval, ...), wherever it is installed."""
    from importlib.resources import files  # noqa: PLC0415

    return Path(str(files("litllm") / "config_hub"))
