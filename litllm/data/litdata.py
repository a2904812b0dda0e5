"""Streaming token windows from litdata-optimized directories, local or remote (s3://, gs://, ...).

A directory written by `litdata.optimize(..., item_loader=TokensLoader())` holds one flat stream of token ids.
Training reads it in windows of `max_seq_length + 1` tokens: `input_ids` is a window less its last token,
`labels` the same window less its first. `StreamingDataLoader` keeps its position in its `state_dict`, which
Lightning saves in the `.ckpt`, so a run resumed from a mid-epoch checkpoint continues with the next batch.

An s3:// directory is reached the way boto3 reaches it: credentials from AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY (or AWS_PROFILE, the shared credentials file, an instance role), and an S3-compatible store
from AWS_ENDPOINT_URL, or AWS S3 itself in AWS_DEFAULT_REGION; `storage_options` (boto3 client arguments such as
`endpoint_url`, `region_name`) override them. The constructor names a missing one (ValueError) and `setup` an endpoint
that does not answer (OSError), before training starts. Chunks are downloaded into $LITLLM_DATA_DIR/chunks.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from litdata import StreamingDataLoader, StreamingDataset, TokensLoader, train_test_split

from litllm.data.base import DataModule
from litllm.paths import data_dir

INDEX = "index.json"


class StreamingTokens(DataModule):
    """A data module whose `setup` fills `train_dataset` and `val_dataset` with windows of max_seq_length + 1 read
    from `path`, `val_split_fraction` of them held out for validation when there is no validation set of its own."""

    def __init__(
        self,
        path: str,
        val_split_fraction: float,
        batch_size: int = 8,
        num_workers: int = 2,
        seed: int = 42,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed)
        if not 0 <= val_split_fraction < 1:
            raise ValueError(f"val_split_fraction must be in [0, 1), got {val_split_fraction}")
        self.path = path
        self.val_split_fraction = val_split_fraction
        self.storage_options = storage_options
        self.plain_http = False  # whether the object store is an http:// endpoint (see allow_plain_http)
        self.train_dataset: StreamingDataset | None = None
        self.val_dataset: StreamingDataset | None = None

    def check_store(self, url: str) -> None:
        """Fail now, naming the variable to set, if `url` is on S3 and boto3 would find no credentials or endpoint."""
        endpoint = s3_endpoint(url, self.storage_options)
        self.plain_http |= endpoint is not None and endpoint.startswith("http://")

    def windows(self, input_dir: str, shuffle: bool) -> StreamingDataset:
        """The windows of max_seq_length + 1 tokens in an optimized directory."""
        _, max_seq_length = self.require_connected()
        return token_dataset(input_dir, max_seq_length + 1, shuffle, self.seed, storage_options=self.storage_options)

    def train_dataloader(self) -> StreamingDataLoader:
        if self.train_dataset is None:
            raise RuntimeError(f"{type(self).__name__}.setup() was not called")
        return token_loader(self.train_dataset, self.batch_size, self.num_workers, self.plain_http)

    def val_dataloader(self) -> StreamingDataLoader | list:
        """The validation batches; an empty list (Lightning then skips validation) when there is no val split."""
        if self.val_dataset is None:
            return []
        return token_loader(self.val_dataset, self.batch_size, self.num_workers, self.plain_http)


class LitData(StreamingTokens):
    """Token windows streamed from a directory that `litdata.optimize` wrote with a `TokensLoader`.

    The validation split is, first found: `val_path`; the `split_names[1]` subfolder when the data sits in
    `split_names[0]`/`split_names[1]` subfolders; else a `val_split_fraction` of the windows, held out with
    litdata's `train_test_split` (deterministic in `seed`).

    Args:
        path: The optimized directory: a local folder or a URL that litdata streams (s3://, gs://, r2://, ...). An
            s3:// URL needs credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE) and, for an
            S3-compatible store, its AWS_ENDPOINT_URL (for AWS S3 itself, AWS_DEFAULT_REGION).
        val_path: A separate optimized directory to validate on.
        split_names: The train and validation subfolders to look for under `path`.
        val_split_fraction: Share of the windows held out for validation when there is no validation directory;
            0 turns validation off.
        batch_size: Windows per batch.
        num_workers: DataLoader worker processes.
        seed: Seed of the shuffle and of the held-out split.
        storage_options: Arguments of the object store's client (boto3's for s3://: `endpoint_url`,
            `region_name`, ...), over those the environment gives. Saved with the run's hyperparameters: keep keys
            in the environment.
    """

    def __init__(
        self,
        path: str,
        val_path: str | None = None,
        split_names: tuple[str, str] = ("train", "val"),
        val_split_fraction: float = 0.05,
        batch_size: int = 8,
        num_workers: int = 2,
        seed: int = 42,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(
            path,
            val_split_fraction,
            batch_size=batch_size,
            num_workers=num_workers,
            seed=seed,
            storage_options=storage_options,
        )
        self.val_path = val_path
        self.split_names = split_names
        for url in (path, val_path):
            if url is not None:
                self.check_store(url)

    def setup(self, stage: str | None = None) -> None:
        self.require_connected()
        require_reachable(self.path, self.storage_options)
        train_dir, val_dir = self.split_dirs()
        if val_dir is not None:
            self.train_dataset = self.windows(train_dir, shuffle=True)
            self.val_dataset = self.windows(val_dir, shuffle=False)
        elif self.val_split_fraction > 0:
            full = self.windows(train_dir, shuffle=True)
            fraction = float(self.val_split_fraction)
            self.train_dataset, self.val_dataset = train_test_split(full, [1 - fraction, fraction], seed=self.seed)
            self.val_dataset.shuffle = False
        else:
            self.train_dataset = self.windows(train_dir, shuffle=True)

    def split_dirs(self) -> tuple[str, str | None]:
        """The train directory and the validation directory (None: hold out a fraction of train)."""
        train_name, val_name = self.split_names
        options = self.storage_options
        root = require_optimized(self.path, split=train_name, storage_options=options)
        val_dir = require_optimized(self.val_path, storage_options=options) if self.val_path is not None else None
        if not has_index(root, options):
            root, split_root = join(root, train_name), root
            if val_dir is None and has_index(join(split_root, val_name), options):
                val_dir = join(split_root, val_name)
        return root, val_dir


def token_dataset(
    input_dir: str, window: int, shuffle: bool, seed: int, storage_options: dict[str, Any] | None = None
) -> StreamingDataset:
    """Windows of `window` tokens from an optimized directory (each rank and worker gets its own share)."""
    return TokenWindows(
        input_dir,
        cache_dir=str(data_dir() / "chunks") if is_remote(input_dir) else None,
        item_loader=TokensLoader(block_size=window),
        shuffle=shuffle,
        drop_last=True,
        seed=seed,
        storage_options=storage_options,
    )


class TokenWindows(StreamingDataset):
    """A StreamingDataset whose saved position resumes on every node of a run, though each node reads its own copy.

    Rank 0 saves the loader's state with its own path to the data; on another node the same data may sit in another
    folder (each node tokenizes a corpus into its own $LITLLM_HOME, or keeps a local copy), which LitData refuses as
    other data. The saved path is taken as this copy when it names the same folder (its last two parts: a text
    cache's `text-<key>/<split>`, whose key hashes the files and the tokenizer) or the same remote URL.
    """

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        saved = (state_dict or {}).get("input_dir_path")
        url = state_dict.get("input_dir_url") if state_dict else None
        here = self.input_dir.path
        same = url == self.input_dir.url if url else saved and Path(saved).parts[-2:] == Path(here or "").parts[-2:]
        if saved and here and saved != here and same:
            state_dict = {**state_dict, "input_dir_path": here, "cache_dir_path": self.cache_dir.path}
        super().load_state_dict(state_dict)


def token_loader(
    dataset: StreamingDataset, batch_size: int, num_workers: int, plain_http: bool = False
) -> StreamingDataLoader:
    if plain_http:
        allow_plain_http()  # for chunks this process downloads (num_workers 0)
    return StreamingDataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=collate_windows,
        # workers started by spawn or forkserver import a litdata of their own, without the allowance
        worker_init_fn=allow_plain_http if plain_http else None,
    )


def collate_windows(windows: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """A batch of next-token examples from windows of T + 1 tokens."""
    x = torch.stack(windows).long()  # (B, T + 1)
    return {"input_ids": x[:, :-1].contiguous(), "labels": x[:, 1:].contiguous()}  # (B, T) each


def is_remote(path: str | Path) -> bool:
    return "://" in str(path)


def join(root: str | Path, name: str) -> str:
    return f"{str(root).rstrip('/')}/{name}" if is_remote(root) else str(Path(root) / name)


def object_store(url: str, storage_options: dict[str, Any] | None = None) -> Any:
    """litdata's client of the object store `url` is on (its `exists`, `upload_file`, `download_file`, ...)."""
    # litdata exposes no public one; this is the one its own `optimize` uses for remote outputs
    from litdata.streaming.fs_provider import _get_fs_provider

    return _get_fs_provider(url, storage_options)


def has_index(path: str, storage_options: dict[str, Any] | None = None) -> bool:
    """Whether `path` holds a litdata index (for a URL, asked of its object store)."""
    if not is_remote(path):
        return Path(path, INDEX).is_file()
    return object_store(path, storage_options).exists(join(path, INDEX))


def read_remote_text(url: str, storage_options: dict[str, Any] | None = None) -> str | None:
    """The text of the object at `url`, or None when there is none."""
    store = object_store(url, storage_options)
    if not store.exists(url):
        return None
    with tempfile.TemporaryDirectory() as tmp:
        store.download_file(url, os.path.join(tmp, "object"))
        return Path(tmp, "object").read_text()


def require_optimized(path: str, split: str | None = None, storage_options: dict[str, Any] | None = None) -> str:
    """`path` with `~` expanded, checked to be a litdata-optimized directory (or to hold one in `split`)."""
    if not is_remote(path):
        path = os.path.expanduser(path)
        if not Path(path).exists():
            raise FileNotFoundError(f"litdata directory {path!r} does not exist")
    if has_index(path, storage_options) or (split is not None and has_index(join(path, split), storage_options)):
        return path
    where = f"no {INDEX}" + (f", nor {split}/{INDEX}" if split is not None else "")
    raise ValueError(
        f"{path!r} is not a litdata-optimized directory ({where}); write one with litdata.optimize(..., "
        "item_loader=TokensLoader()), or use TextFiles for a folder of text"
    )


def s3_endpoint(url: str, storage_options: dict[str, Any] | None = None) -> str | None:
    """The endpoint boto3 sends an s3:// `url`'s requests to (None for any other path), once sure that it finds
    credentials and an endpoint or a region; else a ValueError that names the variables to set."""
    if urlparse(url).scheme != "s3":
        return None
    import boto3
    from botocore.exceptions import BotoCoreError

    options = s3_client_options(storage_options)
    try:
        session = boto3.Session()
        given = {"aws_access_key_id", "aws_secret_access_key"} <= options.keys()
        found = given or session.get_credentials() is not None
    except BotoCoreError as e:  # one key of the pair, a profile that is not there, ...
        raise ValueError(f"no credentials for {url!r}: {e}") from None
    if not found:
        raise ValueError(
            f"no credentials for {url!r}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)"
        )
    endpoint = session.client("s3", **options).meta.endpoint_url
    on_aws = (urlparse(endpoint).hostname or "").endswith((".amazonaws.com", ".amazonaws.com.cn"))
    # without a region boto3 still finds a bucket on AWS by redirects, but litdata's chunk downloads do not
    if on_aws and not (options.get("region_name") or session.region_name):
        raise ValueError(
            f"no endpoint for {url!r}: set AWS_ENDPOINT_URL to an S3-compatible store's URL, or AWS_DEFAULT_REGION "
            "to the bucket's region on AWS S3"
        )
    return endpoint


def require_reachable(url: str, storage_options: dict[str, Any] | None = None) -> None:
    """Fail within seconds, naming the endpoint, if the store of an s3:// `url` does not answer."""
    if urlparse(url).scheme != "s3":
        return
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    # litdata's own client retries a refused connection a thousand times, which looks like a hang
    once = Config(connect_timeout=10, retries={"total_max_attempts": 1})
    options = s3_client_options(storage_options)
    client = boto3.Session().client("s3", **{**options, "config": options.get("config", Config()).merge(once)})
    try:
        client.head_bucket(Bucket=urlparse(url).netloc)
    except ClientError:  # it answered: what a refusal means, litdata says when it reads
        return
    except BotoCoreError as e:
        raise OSError(f"cannot reach the S3 endpoint {client.meta.endpoint_url} for {url!r}: {e}") from None


def s3_client_options(storage_options: dict[str, Any] | None) -> dict[str, Any]:
    """boto3 client arguments from `storage_options`, as litdata passes them (less its own key)."""
    return {k: v for k, v in (storage_options or {}).items() if k != "data_connection_id"}


def allow_plain_http(worker_id: int | None = None) -> None:
    """Let litdata download chunks from an http:// (not https) S3 endpoint, as it already reads indexes from one.

    litdata fetches `index.json` with boto3 but chunks with obstore, which refuses plain-http URLs unless its client
    option `allow_http` is set; litdata builds obstore's client options from a fixed table (storage_options do not
    reach it, and obstore ignores AWS_ALLOW_HTTP once it is given client options), so a local MinIO or moto at
    http://... streams nothing. This adds `allow_http` to that table. It only permits http URLs: https endpoints
    are unaffected. Takes the `worker_id` of a DataLoader `worker_init_fn`, which runs it in every worker.
    """
    from litdata.streaming import downloader

    options = getattr(downloader, "_OBSTORE_CLIENT_OPTIONS", None)
    if isinstance(options, dict) and not options.get("allow_http"):
        downloader._OBSTORE_CLIENT_OPTIONS = {**options, "allow_http": True}


def token_stats(input_dir: str | Path, window: int) -> tuple[int, int, int]:
    """Of a local optimized directory: how many items (documents) and tokens it holds, and how many windows of
    `window` tokens its chunks give; all 0 when it has no index."""
    try:
        chunks: list[dict[str, Any]] = json.loads(Path(input_dir, INDEX).read_text())["chunks"]
    except FileNotFoundError:
        return 0, 0, 0
    dims = [chunk["dim"] or 0 for chunk in chunks]
    windows = sum(dim // window for dim in dims)  # a window never straddles two chunks
    return sum(chunk["chunk_size"] for chunk in chunks), sum(dims), windows
