"""The report card of a run: run_info.json, run_stats.json, loss.png and report.md, and `litllm report`."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from lightning.pytorch.loggers import CSVLogger

from litllm import cli
from litllm.training.report import ReportCard, read_metrics, record_start, run_chain, write_report

PNG = b"\x89PNG\r\n\x1a\n"


def log_versions(run: Path, versions: list[list[dict]]) -> None:
    """metrics.csv files written by Lightning's own CSVLogger, one version per start (as after a resume)."""
    for rows in versions:
        logger = CSVLogger(save_dir=run, name="logs")
        for row in rows:
            step = row.pop("step")
            logger.log_metrics(row, step=step)
        logger.save()


def make_run(run: Path, command: str = "pretrain", init_from: str | None = None, *, logs: bool = True) -> Path:
    """A run folder as `litllm pretrain | finetune` leaves it: recipe, final/, metrics, run_info, run_stats, eval."""
    run.mkdir(parents=True)
    recipe = {"model": {"model_config": {"name": "pythia-14m"}, "init_from": init_from}, "trainer": {"max_steps": 20}}
    (run / "hyperparameters.yaml").write_text(yaml.safe_dump(recipe))
    (run / "final").mkdir()
    (run / "final" / "hyperparameters.yaml").write_text(yaml.safe_dump(recipe))  # as the export copies it
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "step-0000020.ckpt").write_bytes(b"")
    if logs:
        first = [{"step": s, "train_loss": 6.0 - 0.2 * s, "train/device/mfu": 0.125} for s in range(10)]
        first.append({"step": 9, "val_loss": 4.5, "val_ppl": 90.0})
        second = [{"step": s, "train_loss": 4.0 - 0.1 * (s - 10)} for s in range(10, 20)]
        second.append({"step": 19, "val_loss": 3.2109, "val_ppl": 24.8})
        log_versions(run, [first, second])
    record_start(run, command, ["litllm", command, "--out_dir", str(run)])
    stats = {
        "stage": "fit",
        "parameters": 14_067_712,
        "tokens": 163_840,
        "seconds": 81.92,
        "tokens_per_second": 2000.0,
        "peak_memory_bytes": 3 * 2**30,
        "samples": [{"prompt": "def main():\n", "completion": "    return 42"}],
    }
    (run / "run_stats.json").write_text(json.dumps(stats))
    return run


def write_tasks(run: Path, accuracy: float, core: float) -> None:
    task = {"accuracy": accuracy, "count": 8, "correct": int(accuracy * 8), "centered": 2 * accuracy - 1}
    task.update({"eval_type": "categorical", "num_choices": 2, "seconds": 1.0, "examples_per_second": 8.0})
    report = {"tasks": {"boolq": {**task, "samples": []}}, "core": core, "settings": {}, "source": str(run)}
    (run / "eval").mkdir(exist_ok=True)
    (run / "eval" / "results.json").write_text(json.dumps(report))


def test_report_holds_the_runs_numbers(tmp_path: Path) -> None:
    run = make_run(tmp_path / "pretrain" / "tiny-20260101-120000")
    write_tasks(run, accuracy=0.625, core=0.3125)
    text = write_report(run).read_text()
    assert "## base: pretrain/tiny-20260101-120000" in text
    assert "| tokens/s | 2,000 |" in text and "| tokens trained | 163,840 |" in text
    assert "| MFU | 12.50% |" in text and "| peak memory | 3.00 GiB |" in text
    assert "| val_loss | 3.2109 |" in text  # the resumed version's validation, not the first one's
    assert "| boolq | 0.6250 | 0.2500 | 8 |" in text and "CORE: 0.3125" in text
    assert "litllm pretrain --out_dir" in text and "<details>" in text and "max_steps: 20" in text
    assert "def main():\n    return 42" in text
    assert "| base | tiny-20260101-120000 | 3.1000 | 3.2109 | 0.3125 | 0.6250 |" in text  # the summary row


def test_loss_plot_is_a_png_over_both_log_versions(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    write_report(run)
    assert (run / "loss.png").read_bytes()[:8] == PNG
    assert "![loss](loss.png)" in (run / "report.md").read_text()
    steps = [int(r["step"]) for r in read_metrics(run) if "train_loss" in r]
    assert steps == list(range(20))


def test_run_info_appends_each_start_with_git_and_environment(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    record_start(run, "pretrain", ["litllm", "pretrain", "--resume", "auto"])
    starts = json.loads((run / "run_info.json").read_text())["starts"]
    assert [s["argv"][-1] for s in starts] == [str(run), "auto"]
    env = starts[-1]["environment"]
    assert env["python"] and env["torch"] and env["lightning"] and env["cpu"] and env["threads"] >= 1
    assert set(starts[-1]["git"]) == {"cwd", "litllm"}
    git = starts[-1]["git"]["litllm"]  # this checkout, when the tests run from one
    assert git is None or (set(git) == {"repo", "commit", "branch", "dirty"} and isinstance(git["dirty"], bool))


def test_a_chain_of_runs_gives_one_report_with_each_phase_in_order(tmp_path: Path) -> None:
    base = make_run(tmp_path / "pretrain" / "tiny-20260101-120000")
    write_tasks(base, accuracy=0.5, core=0.0)
    sft = make_run(tmp_path / "finetune" / "tiny-20260102-120000", "finetune", init_from=str(base / "final"))
    write_tasks(sft, accuracy=0.75, core=0.5)
    assert run_chain(sft) == [base.resolve(), sft.resolve()]
    text = write_report(sft).read_text()
    assert text.index("## base: pretrain/") < text.index("## sft: finetune/") < text.index("## Summary")
    summary = text[text.index("## Summary") :]
    assert summary.index("| base | tiny-20260101-120000 |") < summary.index("| sft | tiny-20260102-120000 |")
    assert "| 0.5000 |" in summary and "| 0.7500 |" in summary
    assert "../../pretrain/tiny-20260101-120000/loss.png" in text  # the earlier run's plot, in its own folder


def test_missing_metrics_and_results_are_left_out(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", logs=False)
    (run / "run_stats.json").unlink()
    text = write_report(run).read_text()
    assert "### Loss" not in text and "### Evaluation" not in text and "### Run" not in text
    assert not (run / "loss.png").exists()
    assert "| base | run | - | - | - |" in text


def test_report_command_prints_the_path(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = make_run(tmp_path / "run")
    cli.main(["report", str(run)])
    assert capsys.readouterr().out.strip() == str(run.resolve() / "report.md")
    assert (run / "report.md").is_file()


def test_report_command_finds_the_newest_run_of_a_phase(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("LITLLM_RUNS_DIR", str(tmp_path))
    make_run(tmp_path / "pretrain" / "tiny-20260101-120000")
    newest = make_run(tmp_path / "pretrain" / "tiny-20260103-120000")
    cli.main(["report", "base"])
    assert capsys.readouterr().out.strip() == str(newest.resolve() / "report.md")


@pytest.mark.parametrize("source", ["no/such/run", "."])
def test_report_of_no_run_exits_2_with_one_line(
    source: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["report", source])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("litllm: error:") and repr(source) in err and len(err.splitlines()) == 1


def test_a_failing_report_warns_once_and_never_raises() -> None:
    card, trainer = ReportCard(), SimpleNamespace(is_global_zero=True)

    def broken(trainer: object, module: object) -> None:
        raise OSError("No space left on device")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        card.guarded(broken, trainer, None)
        card.guarded(broken, trainer, None)
    assert [str(w.message) for w in caught] == [
        "litllm: could not write the run's report card: OSError: No space left on device"
    ]


def test_a_real_run_and_its_resume_write_run_info_stats_and_report(
    tmp_path: Path, tokenizer_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    recipe = {
        "model": {
            "model_config": {"name": "pythia-14m", "n_layer": 1, "vocab_size": 320},
            "tokenizer_dir": str(tokenizer_dir),
            "max_seq_length": 16,
            "warmup_steps": 1,
        },
        "data": {"class_path": "toy_data.ToyTokens", "init_args": {"n": 16, "vocab": 256, "batch_size": 4}},
        "trainer": {"precision": "32-true", "accelerator": "cpu", "log_every_n_steps": 1, "val_check_interval": 2},
        "checkpoint_every": 2,
    }
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    run = tmp_path / "run"
    monkeypatch.setenv("LITLLM_RUN_DIR", str(run))  # the run sets it: restored after the test
    args = ["pretrain", "--config", str(tmp_path / "recipe.yaml"), "--out_dir", str(run)]
    args += ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
    for extra in (["--trainer.max_steps", "2"], ["--trainer.max_steps", "4", "--resume", "auto"]):
        monkeypatch.setattr(sys, "argv", ["litllm", *args, *extra])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            cli.main()
        assert not [w for w in caught if "report" in str(w.message)]  # no warning from a failed report card
    first, second = json.loads((run / "run_info.json").read_text())["starts"]
    assert first["command"] == "pretrain" and first["argv"] == ["litllm", *args, "--trainer.max_steps", "2"]
    assert second["command_line"].startswith("litllm pretrain --config") and second["argv"][-1] == "auto"
    stats = json.loads((run / "run_stats.json").read_text())
    assert stats["tokens"] == 4 * 4 * 16 and stats["global_step"] == 4 and stats["parameters"] > 0  # both sessions
    assert len(stats["samples"]) == 3 and all(isinstance(s["completion"], str) for s in stats["samples"])
    text = (run / "report.md").read_text()
    assert "## base: " in text and "| tokens trained | 256 |" in text and "### Samples (greedy)" in text
    assert (run / "loss.png").read_bytes()[:8] == PNG
