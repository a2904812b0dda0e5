"""Every tutorial runs as written: its code blocks execute in document order in a fresh folder.

```python blocks share one interpreter; ```bash blocks run in bash (with the venv's `litllm` on PATH);
a block opened as ```yaml file=NAME (or any language with file=NAME) is written to NAME first.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
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


@pytest.mark.parametrize("tutorial", TUTORIALS, ids=[t.stem for t in TUTORIALS])
def test_tutorial_runs(tutorial: Path, tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.pop("LITLLM_RUN_DIR", None)
    (tmp_path / "steps.json").write_text(json.dumps(steps(tutorial)))
    result = subprocess.run(
        [sys.executable, "-c", DRIVER, str(tmp_path / "steps.json")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, f"{tutorial.name} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
