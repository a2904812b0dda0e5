"""The local model registry: names, aliases and the default model, kept as JSON under $LITLLM_HOME."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from litllm import local_models as registry
from litllm.cli import main
from litllm.config import UnknownModelError
from litllm.local_models import (
    add,
    get_default_model,
    list_models,
    litllm_home,
    remove,
    remove_alias,
    resolve,
    set_alias,
    set_default_model,
)


def checkpoint(path: Path, files: tuple[str, ...] = ("model_config.yaml", "model.safetensors")) -> Path:
    """A folder laid out like a checkpoint; the registry looks at file names only, never at weights."""
    path.mkdir(parents=True)
    for name in files:
        (path / name).write_text("")
    return path


def downloaded(repo_id: str) -> Path:
    return checkpoint(litllm_home() / "checkpoints" / repo_id)


def test_litllm_home_follows_the_environment_and_checkpoint_module_shares_it(tmp_path: Path, monkeypatch) -> None:
    from litllm.checkpoint.hub import litllm_home as checkpoint_home

    monkeypatch.setenv("LITLLM_HOME", str(tmp_path))
    assert litllm_home() == checkpoint_home() == tmp_path


def test_add_registers_a_directory_under_a_name(tmp_path: Path) -> None:
    run = checkpoint(tmp_path / "run" / "final")
    add("my-run", run)
    assert resolve("my-run") == run
    assert [(e.name, e.path, e.source) for e in list_models()] == [("my-run", run, "registered")]


@pytest.mark.parametrize(
    "files", [("config.json", "model-00001-of-00002.safetensors"), ("model_config.yaml", "lit_model.pth")]
)
def test_add_accepts_hugging_face_and_litgpt_layouts(tmp_path: Path, files: tuple[str, ...]) -> None:
    add("other", checkpoint(tmp_path / "ckpt", files))
    assert resolve("other") == tmp_path / "ckpt"


def test_add_refuses_a_folder_that_is_not_a_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a checkpoint directory.*model.safetensors"):
        add("empty", tmp_path)


def test_add_refuses_a_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        add("gone", tmp_path / "nowhere")


@pytest.mark.parametrize("name", ["", "../x", "/abs", "a/../b", "a/b/c", "x y", ".hidden", "a\\b", "a/"])
def test_names_that_could_escape_or_confuse_are_refused(tmp_path: Path, name: str) -> None:
    run = checkpoint(tmp_path / "run")
    with pytest.raises(ValueError, match="invalid model name"):
        add(name, run)
    add("run", run)
    with pytest.raises(ValueError, match="invalid alias"):
        set_alias(name, "run")


def test_registrations_persist_across_processes(tmp_path: Path) -> None:
    add("kept", checkpoint(tmp_path / "run"))
    code = "from litllm.local_models import resolve; print(resolve('kept'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ, check=True)
    assert out.stdout.strip() == str(tmp_path / "run")
    assert json.loads((litllm_home() / "models.json").read_text()) == {"kept": str(tmp_path / "run")}


def test_downloaded_checkpoints_are_known_by_repo_id_and_short_name() -> None:
    path = downloaded("org/tiny")
    entry = list_models()[0]
    assert (entry.name, entry.path, entry.source) == ("org/tiny", path, "downloaded")
    assert resolve("org/tiny") == resolve("tiny") == path


def test_a_short_name_shared_by_two_downloads_is_ambiguous() -> None:
    downloaded("a/tiny")
    downloaded("b/tiny")
    assert resolve("a/tiny") != resolve("b/tiny")
    with pytest.raises(UnknownModelError, match="a/tiny, b/tiny"):
        resolve("tiny")


def test_a_tokenizer_only_download_is_not_a_model() -> None:
    checkpoint(litllm_home() / "checkpoints" / "org" / "tok", ("tokenizer.json",))
    assert list_models() == []


def test_unknown_name_is_an_error_listing_the_known_names(tmp_path: Path) -> None:
    add("known", checkpoint(tmp_path / "run"))
    with pytest.raises(UnknownModelError, match="unknown model 'nope'; known: known"):
        resolve("nope")


def test_a_registered_folder_deleted_later_is_reported(tmp_path: Path) -> None:
    run = checkpoint(tmp_path / "run")
    add("run", run)
    for f in run.iterdir():
        f.unlink()
    run.rmdir()
    with pytest.raises(FileNotFoundError, match="no longer exists.*litllm models remove run"):
        resolve("run")


def test_remove_forgets_the_model_and_its_aliases(tmp_path: Path) -> None:
    add("run", checkpoint(tmp_path / "run"))
    set_alias("r", "run")
    remove("run")
    assert list_models() == []
    with pytest.raises(UnknownModelError):
        resolve("r")
    assert (tmp_path / "run" / "model.safetensors").exists()  # the files stay


def test_remove_refuses_a_downloaded_model() -> None:
    path = downloaded("org/tiny")
    with pytest.raises(ValueError, match="delete that folder"):
        remove("org/tiny")
    assert path.exists()


def test_remove_of_an_unknown_name_raises() -> None:
    with pytest.raises(UnknownModelError, match="no registered model 'nope'"):
        remove("nope")


def test_an_alias_resolves_to_its_model_and_is_listed_with_it(tmp_path: Path) -> None:
    add("run", checkpoint(tmp_path / "run"))
    set_alias("fav", "run")
    assert resolve("fav") == tmp_path / "run"
    assert list_models()[0].aliases == ("fav",)


def test_an_alias_to_an_unknown_model_is_refused() -> None:
    with pytest.raises(UnknownModelError, match="unknown model 'nope'"):
        set_alias("fav", "nope")


def test_remove_alias_of_an_absent_alias_is_a_key_error() -> None:
    with pytest.raises(KeyError, match="no alias 'fav'"):
        remove_alias("fav")


def test_default_model_is_stored_and_unset(tmp_path: Path) -> None:
    add("run", checkpoint(tmp_path / "run"))
    assert get_default_model() is None
    assert get_default_model(default="fallback") == "fallback"
    set_default_model("run")
    assert get_default_model() == "run"
    set_default_model(None)
    assert get_default_model() is None


def test_default_model_must_be_known() -> None:
    with pytest.raises(UnknownModelError):
        set_default_model("nope")


def test_an_invalid_json_file_is_set_aside_with_a_warning_and_recreated(tmp_path: Path) -> None:
    home = litllm_home()
    home.mkdir(parents=True, exist_ok=True)
    (home / "models.json").write_text("{not json")
    with pytest.warns(UserWarning, match="not valid JSON"):
        assert list_models() == []
    assert (home / "models.json.invalid").read_text() == "{not json"
    add("run", checkpoint(tmp_path / "run"))
    assert json.loads((home / "models.json").read_text()) == {"run": str(tmp_path / "run")}


def test_writes_leave_no_temporary_files(tmp_path: Path) -> None:
    add("run", checkpoint(tmp_path / "run"))
    set_alias("r", "run")
    set_default_model("r")
    assert sorted(p.name for p in litllm_home().iterdir()) == ["aliases.json", "default_model.txt", "models.json"]


def test_importing_the_registry_does_not_import_torch() -> None:
    code = "import sys, litllm.local_models; assert 'torch' not in sys.modules, 'torch imported'"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_cli_models_add_list_alias_default_remove(tmp_path: Path, capsys) -> None:
    run = checkpoint(tmp_path / "run")
    main(["models", "add", "run", str(run)])
    main(["models", "alias", "set", "r", "run"])
    main(["models", "default", "r"])
    main(["models", "list"])
    out = capsys.readouterr().out
    assert f"run  registered  {run}  (aliases: r)" in out and "default: r" in out
    main(["models", "remove", "run"])
    assert registry.list_models() == []


def test_cli_models_errors_are_one_line_with_exit_code_2(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["models", "add", "x", str(tmp_path)])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.startswith("litllm: error: ")
    with pytest.raises(SystemExit) as exit_info:
        main(["models", "alias", "remove", "nope"])
    assert exit_info.value.code == 2
