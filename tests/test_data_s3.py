"""Data in an S3-compatible object store: LitData streams it, TextFiles writes its cache to it, a run resumes from it.

A local S3 server (moto) stands in for the store; boto3 finds it through AWS_ENDPOINT_URL, as it finds MinIO or R2.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
import torch
from test_data_text import T, text_files, write_corpus

from litllm.cli import main
from litllm.data import LitData, PythonStdlib, TextFiles
from litllm.data.litdata import allow_plain_http
from litllm.paths import data_dir
from litllm.tokenizer import Tokenizer

BUCKET = "litllm-test"
EPOCH_BATCH = 32  # windows per batch where whole epochs are compared: fewer batches, the same windows


def aws_env(monkeypatch: pytest.MonkeyPatch, tmp: Path, **values: str) -> None:
    """These AWS variables and no others, no ~/.aws files, no instance metadata: all that boto3 will find."""
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    files = {"AWS_CONFIG_FILE": str(tmp / "no-config"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp / "no-credentials")}
    for name, value in {**files, "AWS_EC2_METADATA_DISABLED": "true", **values}.items():
        monkeypatch.setenv(name, value)


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A moto S3 server on a free local port, the AWS variables pointing at it, and an empty bucket: its URL."""
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # else a log line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        with pytest.MonkeyPatch.context() as monkeypatch:
            aws_env(
                monkeypatch,
                tmp_path_factory.mktemp("aws"),
                AWS_ENDPOINT_URL=f"http://{host}:{port}",
                AWS_ACCESS_KEY_ID="testing",
                AWS_SECRET_ACCESS_KEY="testing",
                AWS_DEFAULT_REGION="us-east-1",
            )
            boto3.client("s3").create_bucket(Bucket=BUCKET)
            yield f"s3://{BUCKET}"
    finally:
        server.stop()


@pytest.fixture(scope="module")
def local_cache(tmp_path_factory: pytest.TempPathFactory, tokenizer_dir: Path) -> Path:
    """150 kB of the standard library tokenized into a local cache: train/ (several chunks) and val/."""
    cache = tmp_path_factory.mktemp("stdlib-cache")
    data = PythonStdlib(max_bytes=150_000, cache_dir=str(cache), num_workers=2)
    data.connect(Tokenizer(tokenizer_dir), T)
    data.prepare_data()
    return cache


@pytest.fixture(scope="module")
def uploaded(s3: str, local_cache: Path) -> str:
    """The local cache's train/ and val/ copied into the bucket with boto3: their URL."""
    import boto3

    client = boto3.client("s3")
    for path in local_cache.glob("*/*"):
        client.upload_file(str(path), BUCKET, f"stdlib/{path.relative_to(local_cache).as_posix()}")
    return f"{s3}/stdlib"


def lit_data(path: str, tokenizer_dir: Path, batch_size: int = EPOCH_BATCH) -> LitData:
    """LitData on `path` with two loader workers, set up for windows of T + 1 tokens."""
    data = LitData(path, batch_size=batch_size, num_workers=2)
    data.connect(Tokenizer(tokenizer_dir), T)
    data.setup()
    return data


def epoch(loader: Iterable[dict[str, torch.Tensor]]) -> list[torch.Tensor]:
    """The input_ids of every batch the loader gives, in order."""
    return [batch["input_ids"] for batch in loader]


def test_litdata_streams_from_s3_the_windows_it_reads_locally(
    uploaded: str, local_cache: Path, tokenizer_dir: Path
) -> None:
    remote, local = lit_data(uploaded, tokenizer_dir), lit_data(str(local_cache), tokenizer_dir)
    assert len(json.loads((local_cache / "train" / "index.json").read_text())["chunks"]) > 2
    for loader in ("train_dataloader", "val_dataloader"):
        want, got = epoch(getattr(local, loader)()), epoch(getattr(remote, loader)())
        assert len(got) == len(want) > 0
        assert all(torch.equal(a, b) for a, b in zip(want, got, strict=True))


def test_loader_resumes_mid_epoch_from_s3_with_the_next_batch(uploaded: str, tokenizer_dir: Path) -> None:
    uninterrupted = epoch(lit_data(uploaded, tokenizer_dir).train_dataloader())
    first = lit_data(uploaded, tokenizer_dir).train_dataloader()
    batches = iter(first)
    for _ in range(5):
        next(batches)
    state = first.state_dict()
    del batches
    resumed = lit_data(uploaded, tokenizer_dir).train_dataloader()  # a fresh dataset and loader, as in a new run
    resumed.load_state_dict(state)
    rest = epoch(resumed)
    assert len(rest) == len(uninterrupted) - 5
    assert all(torch.equal(a, b) for a, b in zip(uninterrupted[5:], rest, strict=True))


def test_text_files_cache_on_s3_is_built_once_and_reused(
    s3: str, tmp_path: Path, tokenizer_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    import boto3

    corpus, cache = write_corpus(tmp_path / "corpus"), f"{s3}/text-cache"
    text_files(corpus, tokenizer_dir, cache_dir=cache).prepare_data()
    assert "uploading" in capsys.readouterr().out
    index = boto3.client("s3").head_object(Bucket=BUCKET, Key="text-cache/train/index.json")["LastModified"]
    again = text_files(corpus, tokenizer_dir, cache_dir=cache, num_workers=2)
    again.prepare_data()
    assert "reusing the tokenized corpus in s3://" in capsys.readouterr().out
    assert boto3.client("s3").head_object(Bucket=BUCKET, Key="text-cache/train/index.json")["LastModified"] == index
    again.setup()
    batch = next(iter(again.train_dataloader()))
    assert torch.equal(batch["labels"][:, :-1], batch["input_ids"][:, 1:])
    assert not list(data_dir().glob(".upload-*"))  # the local build folder is gone


def test_interrupted_upload_to_s3_is_rebuilt(s3: str, tmp_path: Path, tokenizer_dir: Path, capsys) -> None:
    import boto3

    corpus, cache = write_corpus(tmp_path / "corpus"), f"{s3}/interrupted"
    data = text_files(corpus, tokenizer_dir, cache_dir=cache)
    data.prepare_data()
    boto3.client("s3").delete_object(Bucket=BUCKET, Key="interrupted/complete.json")  # as if killed uploading
    with pytest.raises(RuntimeError, match="no finished tokenized corpus in 's3://"):
        data.setup()
    capsys.readouterr()
    data.prepare_data()
    assert "tokenizing 3 train files" in capsys.readouterr().out
    data.setup()


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({}, "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"),
        ({"AWS_ACCESS_KEY_ID": "key"}, "missing: AWS_SECRET_ACCESS_KEY"),
        (
            {"AWS_ACCESS_KEY_ID": "key", "AWS_SECRET_ACCESS_KEY": "secret"},
            "set AWS_ENDPOINT_URL .* or AWS_DEFAULT_REGION",
        ),
    ],
    ids=["no keys", "no secret", "no endpoint nor region"],
)
def test_s3_path_without_a_variable_it_needs_names_it(
    env: dict[str, str], named: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    aws_env(monkeypatch, tmp_path, **env)
    with pytest.raises(ValueError, match=f"^[^\n]*'s3://bucket/data'[^\n]*{named}[^\n]*$"):
        LitData("s3://bucket/data")
    with pytest.raises(ValueError, match=named):
        TextFiles("corpus", cache_dir="s3://bucket/cache")


def test_keys_and_a_region_are_enough_for_aws_s3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    aws_env(monkeypatch, tmp_path, AWS_ACCESS_KEY_ID="key", AWS_SECRET_ACCESS_KEY="s", AWS_DEFAULT_REGION="eu-west-1")
    assert not LitData("s3://bucket/data").plain_http  # nothing is asked of the store before setup


def test_s3_endpoint_that_does_not_answer_is_named(
    tmp_path: Path, tokenizer_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as probe:  # a port nothing listens on once the socket is closed
        probe.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{probe.getsockname()[1]}"
    aws_env(monkeypatch, tmp_path, AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="key", AWS_SECRET_ACCESS_KEY="secret")
    data = LitData("s3://bucket/data")
    data.connect(Tokenizer(tokenizer_dir), T)
    with pytest.raises(OSError, match=f"cannot reach the S3 endpoint {endpoint} for 's3://bucket/data'"):
        data.setup()


def test_pretrain_from_s3_without_credentials_is_one_line_and_exit_2(
    tmp_path: Path, tokenizer_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    aws_env(monkeypatch, tmp_path)
    argv = ["pretrain", "--config", "config_hub/pretrain/debug-s3.yaml", "--model.tokenizer_dir", str(tokenizer_dir)]
    with pytest.raises(SystemExit) as done:
        main([*argv, "--out_dir", str(tmp_path / "run")])
    assert done.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" in err, err
    assert not (tmp_path / "run").exists()


@pytest.mark.slow  # about a minute: three runs of `litllm pretrain`
def test_pretrain_from_s3_killed_mid_epoch_resumes_bit_exactly(
    uploaded: str, tmp_path: Path, tokenizer_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import test_kill_resume as runs

    monkeypatch.setattr(runs, "ENV", {**runs.ENV, **{k: v for k, v in os.environ.items() if k.startswith("AWS_")}})
    data = {"class_path": "litllm.data.litdata.LitData", "init_args": {"path": uploaded, "batch_size": 4}}
    model = {"model_config": runs.TINY_MODEL, "tokenizer_dir": str(tokenizer_dir)}
    config = runs.write_recipe(tmp_path / "recipe.yaml", data, **model)
    runs.chain(tmp_path, config, [runs.TRAINING_POINTS[0]], tmp_path / "home_killed")
    assert any((tmp_path / "home_killed" / "data" / "chunks").rglob("chunk-*.bin"))  # it read the bucket


@pytest.mark.slow  # a fresh interpreter and a spawned worker import torch and lightning: 10 to 30 s
def test_spawned_loader_workers_stream_from_an_http_store(uploaded: str, tokenizer_dir: Path) -> None:
    """Workers started by spawn (macOS) or forkserver (Python 3.14) import litdata afresh, without the allowance."""
    script = f"""
import multiprocessing
from litllm.data import LitData
from litllm.tokenizer import Tokenizer

multiprocessing.set_start_method("spawn", force=True)
data = LitData("{uploaded}", batch_size=4, num_workers=1)
data.connect(Tokenizer("{tokenizer_dir}"), {T})
data.setup()
print("streamed", tuple(next(iter(data.train_dataloader()))["input_ids"].shape))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"streamed (4, {T})" in result.stdout


def test_chunk_downloads_from_an_http_store_need_allow_plain_http(
    uploaded: str, local_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """litdata as installed refuses the http:// endpoint for chunks (when this fails, litdata allows it itself and
    `allow_plain_http` can go). Last in this file: it starts obstore in this process, whose forked loader workers
    then download with boto3 instead, which would hide the refusal from the tests above."""
    from litdata.streaming import downloader

    litdata_own = {k: v for k, v in downloader._OBSTORE_CLIENT_OPTIONS.items() if k != "allow_http"}
    monkeypatch.setattr(downloader, "_OBSTORE_CLIENT_OPTIONS", litdata_own)  # as before any LitData ran here
    name = json.loads((local_cache / "train" / "index.json").read_text())["chunks"][0]["filename"]
    url = f"{uploaded}/train/{name}"
    with pytest.raises(Exception, match="builder error"):
        downloader.S3Downloader(f"{uploaded}/train", str(tmp_path), []).download_file(url, str(tmp_path / "refused"))
    allow_plain_http()
    downloader.S3Downloader(f"{uploaded}/train", str(tmp_path), []).download_file(url, str(tmp_path / "chunk"))
    assert (tmp_path / "chunk").read_bytes() == (local_cache / "train" / name).read_bytes()
