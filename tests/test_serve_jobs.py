"""Training jobs of the control API: real `litllm pretrain` processes started, watched and stopped."""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path

import psutil
import pytest
import yaml

from litllm.serve.jobs import RECORD_FILE, JobConflict, JobNotFound, TrainingJobs

TESTS = Path(__file__).parent
HUB = TESTS.parent / "config_hub"


def tiny_config(tokenizer_dir: Path, max_steps: int) -> dict:
    """A 33K-parameter model on the toy tokens: the job's time is mostly Python importing torch and Lightning."""
    return {
        "model": {
            "model_config": {"name": "pythia-14m", "n_layer": 1, "n_embd": 32, "n_head": 2, "vocab_size": 320},
            "tokenizer_dir": str(tokenizer_dir),
            "max_seq_length": 16,
        },
        "data": {"class_path": "toy_data.ToyTokens", "init_args": {"vocab": 256, "batch_size": 4, "n": 16}},
        "trainer": {
            "max_steps": max_steps,
            "precision": "32-true",
            "accelerator": "cpu",
            "log_every_n_steps": 1,
            "limit_val_batches": 0,
        },
    }


def start(jobs: TrainingJobs, config: dict, **overrides) -> dict:
    """Start a job that can import the toy data module (the child inherits the environment at start)."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PYTHONPATH", str(TESTS))
        env.setenv("OMP_NUM_THREADS", "1")
        return jobs.start("pretrain", config=config, overrides=overrides or None)


def wait_for(jobs: TrainingJobs, job_id: str, done, timeout_s: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while not done(status := jobs.status(job_id)):
        assert time.monotonic() < deadline, status
        time.sleep(0.2)
    return status


def group_members(pgid: int) -> list[psutil.Process]:
    members = []
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if os.getpgid(process.pid) == pgid and process.status() != psutil.STATUS_ZOMBIE:
                members.append(process)
    return members


@pytest.fixture
def jobs(tmp_path: Path) -> TrainingJobs:
    jobs = TrainingJobs(tmp_path / "runs", HUB, grace_s=20.0)
    yield jobs
    jobs.shutdown()


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory, tokenizer_dir: Path) -> tuple[TrainingJobs, dict]:
    """A 5-step job (the inline config says 100000 and another out_dir; the overrides and the job win)."""
    jobs = TrainingJobs(tmp_path_factory.mktemp("jobs") / "runs", HUB)
    config = {**tiny_config(tokenizer_dir, max_steps=100_000), "out_dir": "/elsewhere"}
    job = start(jobs, config, **{"trainer.max_steps": 5})
    return jobs, wait_for(jobs, job["id"], lambda s: s["state"] != "running")


def test_a_job_runs_to_success_in_its_own_run_directory(finished: tuple[TrainingJobs, dict]) -> None:
    jobs, status = finished
    assert status["state"] == "succeeded" and status["returncode"] == 0, status["last_lines"]
    run_dir = Path(status["run_dir"])
    assert run_dir.parent == jobs.runs_root and run_dir.name == status["id"]
    assert (run_dir / "final" / "model.safetensors").is_file()
    assert status["ended"] >= status["started"]


def test_the_resolved_config_is_written_with_overrides_and_the_run_directory(
    finished: tuple[TrainingJobs, dict],
) -> None:
    _, status = finished
    written = yaml.safe_load(Path(status["config_path"]).read_text())
    assert Path(status["config_path"]).parent == Path(status["run_dir"])
    assert written["out_dir"] == status["run_dir"]
    assert written["trainer"]["max_steps"] == 5 and written["trainer"]["accelerator"] == "cpu"


def test_status_reports_the_last_step_loss_and_log_lines(finished: tuple[TrainingJobs, dict]) -> None:
    jobs, status = finished
    assert status["step"] == 4  # Lightning numbers steps from 0
    assert 0 < status["loss"] < 10
    assert any("max_steps=5" in line for line in status["last_lines"])
    assert [s["id"] for s in jobs.list()] == [status["id"]]


def test_a_second_job_while_one_runs_is_refused(jobs: TrainingJobs, tokenizer_dir: Path) -> None:
    first = start(jobs, tiny_config(tokenizer_dir, max_steps=100_000))
    with pytest.raises(JobConflict, match=first["id"]):
        start(jobs, tiny_config(tokenizer_dir, max_steps=5))
    assert len(jobs.list()) == 1


def test_stop_interrupts_training_and_ends_the_process_group(jobs: TrainingJobs, tokenizer_dir: Path) -> None:
    job = start(jobs, tiny_config(tokenizer_dir, max_steps=100_000))
    wait_for(jobs, job["id"], lambda s: s["step"] is not None)  # training is under way
    status = jobs.stop(job["id"])
    assert status["state"] == "stopped" and status["returncode"] != 0
    assert any("KeyboardInterrupt" in line for line in status["last_lines"]), status["last_lines"]
    assert group_members(job["pid"]) == []


def test_shutdown_stops_running_jobs_and_records_them_interrupted(jobs: TrainingJobs, tokenizer_dir: Path) -> None:
    job = start(jobs, tiny_config(tokenizer_dir, max_steps=100_000))
    jobs.shutdown()
    status = jobs.status(job["id"])
    assert status["state"] == "interrupted" and status["resumable"] is True
    assert group_members(job["pid"]) == []
    assert json.loads((Path(job["run_dir"]) / RECORD_FILE).read_text())["state"] == "interrupted"


def test_the_job_record_outlives_the_jobs_object(finished: tuple[TrainingJobs, dict]) -> None:
    jobs, status = finished
    record = json.loads((Path(status["run_dir"]) / RECORD_FILE).read_text())
    assert record["state"] == "succeeded" and record["returncode"] == 0 and record["pid"] == status["pid"]
    assert record["ended"] == status["ended"] and record["command"] == "pretrain"
    again = TrainingJobs(jobs.runs_root, HUB).status(status["id"])  # as a restarted server reads it
    assert (again["state"], again["returncode"], again["ended"]) == ("succeeded", 0, status["ended"])
    assert again["step"] == 4 and again["resumable"] is False


def test_a_recipe_name_resolves_inside_the_recipes_folder_with_overrides(tmp_path: Path) -> None:
    jobs = TrainingJobs(tmp_path, HUB)
    config = jobs.resolve_config("pretrain/debug", None, {"trainer.max_steps": 5, "data.init_args.max_bytes": 10})
    assert config["trainer"]["max_steps"] == 5 and config["data"]["init_args"]["max_bytes"] == 10
    assert config["model"]["model_config"]["name"] == "debug"
    assert jobs.resolve_config("pretrain/debug.yaml", None, None)["trainer"]["max_steps"] == 150


@pytest.mark.parametrize("name", ["../pyproject.toml", "pretrain/../../pyproject.toml", "/etc/hostname"])
def test_a_recipe_outside_the_recipes_folder_is_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="outside"):
        TrainingJobs(tmp_path, HUB).start("pretrain", recipe=name)
    assert not any(tmp_path.iterdir())


def test_a_recipe_symlink_out_of_the_recipes_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "recipes").mkdir()
    (tmp_path / "secret.yaml").write_text("a: 1\n")
    (tmp_path / "recipes" / "link.yaml").symlink_to(tmp_path / "secret.yaml")
    with pytest.raises(ValueError, match="outside"):
        TrainingJobs(tmp_path / "runs", tmp_path / "recipes").start("pretrain", recipe="link")


def test_an_unknown_recipe_names_the_available_ones(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown recipe 'pretrain/nope'.*pretrain/debug"):
        TrainingJobs(tmp_path, HUB).start("pretrain", recipe="pretrain/nope")


def test_an_unknown_command_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'evaluate'.*pretrain, finetune"):
        TrainingJobs(tmp_path, HUB).start("evaluate", recipe="pretrain/debug")


@pytest.mark.parametrize("source", [{}, {"recipe": "pretrain/debug", "config": {"trainer": {}}}])
def test_exactly_one_of_recipe_and_config_is_needed(tmp_path: Path, source: dict) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        TrainingJobs(tmp_path, HUB).start("pretrain", **source)


def test_an_override_below_a_value_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'trainer.max_steps' is a value"):
        TrainingJobs(tmp_path, HUB).start("pretrain", recipe="pretrain/debug", overrides={"trainer.max_steps.x": 1})


def test_resume_from_outside_the_runs_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="outside the runs folder"):
        TrainingJobs(tmp_path, HUB).start("pretrain", recipe="pretrain/debug", overrides={"resume": "/tmp/x.ckpt"})


def test_an_unknown_job_id_is_not_found(tmp_path: Path) -> None:
    jobs = TrainingJobs(tmp_path, HUB)
    for call in (jobs.status, jobs.stop):
        with pytest.raises(JobNotFound, match="no training job 'nope'"):
            call("nope")


# ---- nanoGPT's training request -----------------------------------------------------------------------------


@pytest.fixture
def roots(tmp_path: Path) -> list[Path]:
    """Where datasets are looked for: a working directory with data/tinychar (char-level), and a runs root."""
    from litllm.data.nanogpt import prepare_char_dataset

    prepare_char_dataset("hello world, " * 200, tmp_path / "cwd" / "data" / "tinychar")
    (tmp_path / "runs").mkdir()
    return [tmp_path / "cwd", tmp_path / "runs"]


def test_a_dataset_name_finds_the_prepared_nanogpt_folder_and_its_char_tokenizer(roots: list[Path]) -> None:
    from litllm.serve.jobs import resolve_dataset
    from litllm.tokenizer import Tokenizer

    found = resolve_dataset("tinychar", roots, batch_size=3, finetune=False)
    assert found.data == {
        "class_path": "litllm.data.nanogpt.NanoGPTBins",
        "init_args": {"path": str(roots[0] / "data" / "tinychar"), "batch_size": 3},
    }
    assert Tokenizer(found.tokenizer_dir).vocab_size == len(set("hello world, "))
    assert resolve_dataset("data/tinychar", roots, None, finetune=True).data == {
        **found.data,
        "init_args": {**found.data["init_args"], "batch_size": 4},
    }


def test_other_datasets_are_text_files_litdata_or_the_builtin_corpus(roots: list[Path]) -> None:
    from litllm.serve.jobs import resolve_dataset

    (roots[1] / "texts").mkdir()
    (roots[1] / "texts" / "a.txt").write_text("some text")
    assert resolve_dataset("texts", roots, 2, False).data["class_path"] == "litllm.data.text_files.TextFiles"
    assert resolve_dataset("texts", roots, 2, False).data["init_args"]["path"] == str(roots[1] / "texts")
    assert resolve_dataset("stdlib", roots, 2, False).data["class_path"] == "litllm.data.text_files.PythonStdlib"
    assert resolve_dataset("s3://bucket/tokens", roots, 2, False).data["class_path"] == "litllm.data.litdata.LitData"
    assert resolve_dataset("stdlib", roots, 2, False).tokenizer_dir is None


def test_an_unknown_dataset_lists_what_exists(roots: list[Path]) -> None:
    from litllm.serve.jobs import resolve_dataset

    with pytest.raises(ValueError, match=r"unknown dataset 'shakesphere'.*tinychar.*stdlib"):
        resolve_dataset("shakesphere", roots, None, False)


def test_the_request_maps_onto_the_recipe(roots: list[Path]) -> None:
    from litllm.serve.jobs import resolve_dataset, train_recipe

    fields = {"dataset": "tinychar", "batch_size": 3, "learning_rate": 5e-4, "max_iters": 20, "eval_interval": 5}
    command, recipe = train_recipe(fields, resolve_dataset("tinychar", roots, 3, False), None)
    assert command == "pretrain" and recipe["data"]["init_args"]["batch_size"] == 3
    assert recipe["model"]["optimizer"]["init_args"]["lr"] == 5e-4
    assert recipe["trainer"]["max_steps"] == 20 and recipe["trainer"]["val_check_interval"] == 5
    config = recipe["model"]["model_config"]  # nanoGPT's CPU model, its vocabulary the dataset's characters
    assert (config["name"], config["n_layer"], config["n_embd"], config["block_size"]) == ("gpt2", 4, 128, 64)
    assert config["vocab_size"] == len(set("hello world, ")) and "init_from" not in recipe["model"]
    command, recipe = train_recipe({"max_iters": 3}, resolve_dataset("tinychar", roots, None, True), "/m/tiny")
    assert command == "finetune" and recipe["model"]["init_from"] == "/m/tiny"
    assert recipe["model"]["optimizer"]["init_args"]["lr"] == 3e-5 and recipe["trainer"]["val_check_interval"] == 3
    assert "model_config" not in recipe["model"]


@pytest.mark.parametrize("output_dir", ["/tmp/elsewhere", "../elsewhere", "a/../../b", "."])
def test_an_output_dir_outside_the_runs_folder_is_refused(tmp_path: Path, output_dir: str) -> None:
    jobs = TrainingJobs(tmp_path / "runs", HUB)
    with pytest.raises(ValueError, match="outside the runs folder"):
        jobs.start("pretrain", recipe="pretrain/debug", output_dir=output_dir)
    assert not (tmp_path / "elsewhere").exists() and not (tmp_path / "b").exists()


def test_an_output_dir_is_read_inside_the_runs_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    jobs = TrainingJobs(tmp_path / "out", HUB)
    assert jobs.output_dir("out/mine") == tmp_path / "out" / "mine"  # nanoGPT's out/NAME, from the working dir
    assert jobs.output_dir("mine") == tmp_path / "out" / "mine"
    assert jobs.output_dir(str(tmp_path / "out" / "a" / "b")) == tmp_path / "out" / "a" / "b"


def test_an_output_dir_that_holds_files_is_refused(tmp_path: Path) -> None:
    (tmp_path / "runs" / "taken").mkdir(parents=True)
    (tmp_path / "runs" / "taken" / "ckpt.pt").write_bytes(b"x")
    with pytest.raises(JobConflict, match="already holds files"):
        TrainingJobs(tmp_path / "runs", HUB).start("pretrain", recipe="pretrain/debug", output_dir="taken")
