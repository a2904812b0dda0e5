"""Every tutorial runs as written: its code blocks execute in document order in a fresh folder.

```python blocks share one interpreter; ```bash blocks run in bash (with the venv's `litllm` on PATH);
a block opened as ```yaml file=NAME (or any language with file=NAME) is written to NAME first.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

TUTORIALS = sorted((Path(__file__).parent.parent / "tutorials").glob("*.md"))
BLOCK = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```", re.S | re.M)

DRIVER = """
import json, subprocess, sys
namespace = {"__name__": "__main__"}
for kind, arg, code in json.load(open(sys.argv[1])):
    if kind == "file":
        open(arg, "w").write(code)
    elif kind == "python":
        exec(compile(code, "<tutorial block>", "exec"), namespace)
    else:
        subprocess.run(["bash", "-e", "-o", "pipefail", "-c", code], check=True)
"""


def steps(path: Path) -> list[tuple[str, str, str]]:
    out = []
    for lang, info, code in BLOCK.findall(path.read_text()):
        target = re.search(r"file=(\S+)", info)
        if target:
            out.append(("file", target.group(1), code))
        elif lang in ("python", "bash"):
            out.append((lang, "", code))
    return out


# the longest ones (20 s to a minute or so each of training and serving) run with the slow tests (`make test-slow`,
# CI), which keeps the default run under its 10 minutes
SLOW = {
    "02-pretrain-on-your-text",
    "04-python-api",
    "05-llm-style-api-and-plugin",
    "06-serve",
    "07-coming-from",
    "08-evaluate-and-chat-pipeline",
    "09-lora-and-qlora",
}


@pytest.mark.parametrize(
    "tutorial", [pytest.param(t, id=t.stem, marks=[pytest.mark.slow] if t.stem in SLOW else []) for t in TUTORIALS]
)
def test_tutorial_runs(tutorial: Path, tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.pop("LITLLM_RUN_DIR", None)
    (tmp_path / "steps.json").write_text(json.dumps(steps(tutorial)))
    # its own session, so that a server a failing tutorial leaves running is stopped with it (and frees its port)
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(tmp_path / "steps.json")],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = driver.communicate(timeout=900)
    finally:
        stop_session(driver.pid)
    assert driver.returncode == 0, f"{tutorial.name} failed:\n{stdout[-2000:]}\n{stderr[-4000:]}"


def stop_session(pid: int) -> None:
    """Ctrl-C to every process left in the driver's process group (LitServe shuts down cleanly on SIGINT), then kill."""
    for sig, wait in ((signal.SIGINT, 10.0), (signal.SIGKILL, 0.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.killpg(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)
