"""Training jobs survive a server restart: their records in the runs root, dead and surviving processes, resume."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from litllm.serve.client import Client
from litllm.serve.jobs import RECORD_FILE, JobConflict, TrainingJobs, process_start
from tests.serve_helpers import API_KEY, Server
from tests.test_serve_jobs import HUB, TESTS, tiny_config


def write_record(runs_root: Path, job_id: str, pid: int, pid_start: str | None, state: str = "running") -> Path:
    """A job record as an earlier server left it (and the config file its run directory holds)."""
    run_dir = runs_root / job_id
    run_dir.mkdir(parents=True)
    (run_dir / "job_config.yaml").write_text(f"out_dir: {run_dir}\n")
    (run_dir / "job.log").write_text("Epoch 0: step 3\n")
    record = {"id": job_id, "command": "pretrain", "pid": pid, "pid_start": pid_start, "run_dir": str(run_dir)}
    record |= {"started": 1.0, "state": state, "returncode": None, "ended": None, "resumed": 0}
    (run_dir / RECORD_FILE).write_text(json.dumps(record))
    return run_dir


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def sleeper() -> subprocess.Popen:
    """A process of its own session, as a training job is, that lives until it is signalled."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)


@pytest.mark.parametrize("pid_start", ["12345", None])  # None: a record that never learnt its start time
def test_a_job_whose_process_died_with_the_server_is_interrupted_and_resumable(
    tmp_path: Path, pid_start: str | None
) -> None:
    run_dir = write_record(tmp_path / "runs", "pretrain-1", dead_pid(), pid_start)
    status = TrainingJobs(tmp_path / "runs", HUB).status("pretrain-1")
    assert status["state"] == "interrupted" and status["resumable"] is True
    assert status["resume"]["route"] == "POST /api/train/pretrain-1/resume"
    assert status["resume"]["command"] == (
        f"litllm pretrain --config {run_dir / 'job_config.yaml'} --out_dir {run_dir} --resume auto"
    )
    assert status["last_lines"] == ["Epoch 0: step 3"]
    assert status["ended"] == (run_dir / "job.log").stat().st_mtime  # about when it died: its log's last write
    assert json.loads((run_dir / RECORD_FILE).read_text())["state"] == "interrupted"  # recorded once found


def test_a_reused_pid_is_not_the_job(tmp_path: Path) -> None:
    other = sleeper()
    try:
        write_record(tmp_path / "runs", "pretrain-1", other.pid, "1")  # the pid lives, but started at another time
        assert TrainingJobs(tmp_path / "runs", HUB).status("pretrain-1")["state"] == "interrupted"
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


def test_a_job_that_outlived_the_server_is_running_and_can_be_stopped(tmp_path: Path) -> None:
    survivor = sleeper()
    try:
        write_record(tmp_path / "runs", "pretrain-1", survivor.pid, process_start(survivor.pid))
        jobs = TrainingJobs(tmp_path / "runs", HUB, grace_s=5.0)
        assert jobs.status("pretrain-1")["state"] == "running"
        with pytest.raises(JobConflict, match="pretrain-1"):  # still one job at a time
            jobs.resume("pretrain-1")
        status = jobs.stop("pretrain-1")
        assert status["state"] == "stopped" and status["resumable"] is True
        assert survivor.wait(5) == -signal.SIGINT
    finally:
        survivor.kill()
        survivor.wait()


def test_a_surviving_job_that_ended_with_its_model_exported_succeeded(tmp_path: Path) -> None:
    run_dir = write_record(tmp_path / "runs", "pretrain-1", dead_pid(), "12345")
    (run_dir / "final").mkdir()
    (run_dir / "final" / "model.safetensors").write_bytes(b"")
    status = TrainingJobs(tmp_path / "runs", HUB).status("pretrain-1")
    assert status["state"] == "succeeded" and status["resumable"] is False and "resume" not in status


def test_ended_records_are_answered_as_written_and_bad_ones_skipped(tmp_path: Path) -> None:
    write_record(tmp_path / "runs", "pretrain-1", dead_pid(), None, state="failed")
    write_record(tmp_path / "runs" / "nested", "pretrain-2", dead_pid(), None, state="succeeded")
    (tmp_path / "runs" / "broken").mkdir()
    (tmp_path / "runs" / "broken" / RECORD_FILE).write_text("{not json")
    jobs = TrainingJobs(tmp_path / "runs", HUB)
    assert {s["id"]: s["state"] for s in jobs.list()} == {"pretrain-1": "failed", "pretrain-2": "succeeded"}
    with pytest.raises(JobConflict, match="succeeded"):
        jobs.resume("pretrain-2")


@pytest.mark.slow  # two servers and a training job started, killed and resumed: a minute or more
def test_a_job_interrupted_by_a_server_restart_is_found_and_resumed(
    tmp_path: Path, tokenizer_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(TESTS))  # the jobs import the toy data module
    monkeypatch.setenv("LITLLM_HOME", str(tmp_path / "home"))
    config = {**tiny_config(tokenizer_dir, max_steps=100_000), "checkpoint_every": 5}
    first = Server(None, tmp_path)
    try:
        first.wait_ready()
        status, job = first.request("POST", "/api/train", {"command": "pretrain", "config": config})
        assert status == 201, job
        # any step checkpoint: the run keeps its newest two, so a fast run has already replaced step 5's
        wait_until(lambda: any((Path(job["run_dir"]) / "checkpoints").glob("step-*.ckpt")))
    finally:
        first.stop(signal.SIGINT)  # the server stops its job as it shuts down
    record = json.loads((Path(job["run_dir"]) / RECORD_FILE).read_text())
    assert record["state"] == "interrupted" and record["pid"] == job["pid"]

    second = Server(None, tmp_path)
    try:
        second.wait_ready()
        status, found = second.request("GET", f"/api/train/{job['id']}")
        assert status == 200 and found["state"] == "interrupted" and found["resumable"] is True, found
        resumed = Client(second.url, API_KEY).resume(job["id"])
        assert resumed["state"] == "running" and resumed["resumed"] == 1 and resumed["pid"] != job["pid"]
        run_dir = Path(job["run_dir"])
        wait_until(lambda: (run_dir / "logs" / "version_1" / "metrics.csv").is_file())  # the resumed run's metrics
        log = (run_dir / "job.log").read_text()
        assert log.startswith("Seed set") and "resuming from" in log and "checkpoints/step-" in log
        stopped = second.request("DELETE", f"/api/train/{job['id']}")[1]
        assert stopped["state"] == "stopped" and stopped["step"] >= 5
    finally:
        second.stop(signal.SIGINT)


def wait_until(done, timeout_s: float = 240.0) -> None:  # a training job on a loaded 2-core machine
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)
