"""The package's layout: imports point one way, each file stays readable, and what ships in the wheel is complete."""

from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "litllm"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def type_checking_blocks(tree: ast.Module) -> set[int]:
    """ids of the nodes under `if TYPE_CHECKING:`: imports for annotations only, never run."""
    blocks = [n for n in ast.walk(tree) if isinstance(n, ast.If) and ast.unparse(n.test).endswith("TYPE_CHECKING")]
    return {id(inner) for block in blocks for stmt in block.body for inner in ast.walk(stmt)}


def imported_modules(path: Path) -> set[str]:
    """The litllm modules a file imports when it runs (at the top or inside functions)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    typing_only = type_checking_blocks(tree)
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the file's package, up level - 1
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # `from litllm.cpu import gemm`
    return {m for m in found if m == "litllm" or m.startswith("litllm.")}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    """Module -> the litllm modules it imports (names that are not modules, like classes, dropped)."""
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {m for m in imported_modules(path) if m in files and m != name} for name, path in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_module_imports_itself_through_others(graph: dict[str, set[str]]) -> None:
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def reaches(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in graph[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def in_group(module: str, groups: tuple[str, ...]) -> bool:
    return any(module == g or module.startswith(g + ".") for g in groups)


# (modules, what none of them may import, directly or through others): the arrows point one way
LAYERS = [
    (("litllm.paths", "litllm.errors"), ("litllm",)),
    (("litllm.config", "litllm.catalog"), ("litllm.model", "litllm.checkpoint", "litllm.cpu", "litllm.inference")),
    (("litllm.cpu",), ("litllm.model", "litllm.config", "litllm.checkpoint", "litllm.inference", "litllm.training")),
    (("litllm.model",), ("litllm.checkpoint", "litllm.inference", "litllm.training", "litllm.api", "litllm.serve")),
    (("litllm.checkpoint",), ("litllm.inference", "litllm.training", "litllm.api", "litllm.serve", "litllm.cli")),
    (("litllm.inference", "litllm.training", "litllm.data"), ("litllm.api", "litllm.serve", "litllm.cli")),
    (("litllm.api",), ("litllm.serve", "litllm.cli", "litllm.llm_api")),
    (("litllm.tasks",), ("litllm.api", "litllm.serve", "litllm.cli", "litllm.training")),
]


@pytest.mark.parametrize(("modules", "forbidden"), LAYERS, ids=[m[0] for m, _ in LAYERS])
def test_imports_point_down_the_layers(graph: dict[str, set[str]], modules: tuple, forbidden: tuple) -> None:
    allowed_self = ("litllm.paths", "litllm.errors")
    for module in (m for m in graph if in_group(m, modules)):
        bad = sorted(
            m for m in reaches(graph, module) if in_group(m, forbidden) and not in_group(m, (*modules, *allowed_self))
        )
        assert not bad, f"{module} imports {bad}"


def test_every_module_stays_short_enough_to_read() -> None:
    long = {module_name(p): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > 650}
    assert long == {}


def test_the_wheel_ships_the_recipes_kernels_and_configs(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("litllm-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    recipes = {
        f"litllm/config_hub/{p.relative_to(PACKAGE / 'config_hub')}" for p in (PACKAGE / "config_hub").rglob("*.yaml")
    }
    assert recipes and recipes <= names
    assert {"litllm/cpu/gemm.c", "litllm/cpu/attention.c", "litllm/cpu/step.c", "litllm/model_configs/pythia.yaml"} <= (
        names
    )


def test_recipes_are_found_inside_the_installed_package() -> None:
    from litllm.paths import recipes_dir

    assert recipes_dir().resolve() == (PACKAGE / "config_hub").resolve()
    assert (recipes_dir() / "pretrain" / "debug.yaml").is_file()
    assert (ROOT / "config_hub" / "pretrain" / "debug.yaml").is_file()  # the top-level folder stays for a checkout
