"""The one resolver from what a user names to a checkpoint folder: its order of precedence and its errors.

Checkpoint folders here are empty files laid out like checkpoints: the resolver looks at file names, never at
weights. $LITLLM_HOME is a fresh folder per test and the Hub is offline (tests/conftest.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from litllm.checkpoint.hub import cached_checkpoint_dir
from litllm.checkpoint.sources import locate, resolve_checkpoint
from litllm.errors import CheckpointError, HubError
from litllm.local_models import add, set_alias

PYTHIA_REPO = "EleutherAI/pythia-14m"  # the catalog's hf_repo of pythia-14m


def checkpoint(path: Path) -> Path:
    """A folder with the two files of a litllm checkpoint."""
    path.mkdir(parents=True)
    for name in ("model_config.yaml", "model.safetensors"):
        (path / name).write_text("")
    return path


def test_an_existing_folder_wins_over_a_local_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    add("tiny", checkpoint(tmp_path / "registered"))
    monkeypatch.chdir(checkpoint(tmp_path / "cwd" / "tiny").parent)
    assert resolve_checkpoint("tiny") == Path("tiny")


def test_an_existing_folder_that_is_no_checkpoint_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes").mkdir()
    with pytest.raises(CheckpointError, match="is not a checkpoint"):
        resolve_checkpoint(tmp_path / "notes")


def test_a_local_name_wins_over_a_catalog_name(tmp_path: Path) -> None:
    add("pythia-14m", checkpoint(tmp_path / "my-pythia"))
    assert resolve_checkpoint("pythia-14m") == (tmp_path / "my-pythia").resolve()


def test_an_alias_resolves_to_its_model(tmp_path: Path) -> None:
    add("run", checkpoint(tmp_path / "run"))
    set_alias("best", "run")
    assert resolve_checkpoint("best") == (tmp_path / "run").resolve()


def test_a_catalog_name_uses_the_download_of_its_hub_repo() -> None:
    cached = checkpoint(cached_checkpoint_dir(PYTHIA_REPO))
    checkpoint(cached_checkpoint_dir("someone-else/pythia-14m"))  # the short name alone no longer says which
    assert resolve_checkpoint("pythia-14m") == cached


def test_a_cached_download_wins_over_a_new_one() -> None:
    cached = checkpoint(cached_checkpoint_dir(PYTHIA_REPO))
    assert resolve_checkpoint(PYTHIA_REPO) == cached  # the Hub is offline: a download would fail


def test_an_unfinished_download_is_fetched_again() -> None:
    cached_checkpoint_dir(PYTHIA_REPO).mkdir(parents=True)  # no weights yet
    assert locate(PYTHIA_REPO) == PYTHIA_REPO


def test_a_hub_repo_not_downloaded_is_located_without_downloading() -> None:
    assert locate("pythia-14m") == PYTHIA_REPO


def test_the_hub_offline_is_a_clear_hub_error() -> None:
    with pytest.raises(HubError, match=r"cannot download nobody/not-cached.*offline.*pass their folder instead"):
        resolve_checkpoint("nobody/not-cached")


def test_an_unknown_name_lists_the_closest_catalog_names() -> None:
    with pytest.raises(FileNotFoundError, match=r"'pythia-16m' is neither an existing directory.*pythia-160m"):
        resolve_checkpoint("pythia-16m")


def test_a_catalog_name_without_published_weights_says_to_train_it() -> None:
    with pytest.raises(CheckpointError, match="'nanochat-d20' has no published weights; use init='random'"):
        resolve_checkpoint("nanochat-d20")


@pytest.mark.parametrize("written", ["./missing/model", "/nowhere/at/all"])
def test_a_missing_path_is_named(written: str) -> None:
    with pytest.raises(FileNotFoundError, match=written):
        resolve_checkpoint(written)


def test_a_registered_folder_that_vanished_says_how_to_forget_it(tmp_path: Path) -> None:
    add("gone", checkpoint(tmp_path / "gone"))
    for name in ("model_config.yaml", "model.safetensors"):
        (tmp_path / "gone" / name).unlink()
    (tmp_path / "gone").rmdir()
    with pytest.raises(FileNotFoundError, match="no longer exists.*litllm models remove gone"):
        resolve_checkpoint("gone")


def test_names_only_never_reads_a_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(checkpoint(tmp_path / "tiny-org" / "tiny").parent.parent)
    assert locate("tiny-org/tiny") == Path("tiny-org/tiny")
    assert locate("tiny-org/tiny", paths=False) == "tiny-org/tiny"  # a Hub repo id to download


@pytest.mark.parametrize("module", ["litllm.checkpoint.layout", "litllm.checkpoint.sources"])
def test_layout_and_resolver_import_without_torch(module: str) -> None:
    code = f"import sys, {module}; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------------------------------------------
# the server's control API wraps the resolver: model_path stays under its root, model_name is a name only


def test_server_model_name_resolves_a_local_name_to_its_folder(tmp_path: Path) -> None:
    from litllm.serve.control import resolve_model

    add("tiny", checkpoint(tmp_path / "tiny"))
    found = resolve_model("tiny", "model_name", [tmp_path / "root"])
    assert found.target == (tmp_path / "tiny").resolve() and found.name == "tiny"


def test_server_model_name_of_a_hub_model_is_left_to_download(tmp_path: Path) -> None:
    from litllm.serve.control import resolve_model

    assert resolve_model("pythia-14m", "model_name", [tmp_path]).target == "EleutherAI/pythia-14m"


@pytest.mark.parametrize("name", ["/etc", "../outside", "pythia-16m"])
def test_server_model_name_that_is_a_path_outside_the_roots_or_unknown_is_a_400(tmp_path: Path, name: str) -> None:
    from litllm.serve.control import resolve_model
    from litllm.serve.routes import APIError

    with pytest.raises(APIError) as caught:
        resolve_model(name, "model_name", [tmp_path])
    assert caught.value.status == 400 and caught.value.param == "model_name"
