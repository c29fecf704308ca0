"""The law is pure: nothing in law/ (or the schemas it uses) imports I/O libraries, clocks or randomness."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {
    "confluent_kafka",
    "psycopg",
    "psycopg_pool",
    "httpx",
    "streamlit",
    "faust",
    "aiokafka",
    "requests",
    "random",
    "time",
    "datetime",
    "uuid",
    "os",
    "socket",
    "secrets",
    "google",
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize(
    "path",
    sorted((ROOT / "law").glob("*.py")) + sorted((ROOT / "schemas").glob("*.py")),
    ids=lambda p: f"{p.parent.name}/{p.name}",
)
def test_pure_modules_import_no_io(path: Path) -> None:
    assert not imported_modules(path) & FORBIDDEN


def test_the_layers_point_one_way() -> None:
    """The import contracts in pyproject.toml, as ``make lint`` checks them. In a child process: the
    checker reconfigures logging, which would leak into the tests that read log records."""
    lint_imports = Path(sys.executable).parent / "lint-imports"
    done = subprocess.run(
        [str(lint_imports), "--no-cache", "--no-logo"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout[-3000:]


def test_unit_tests_mirror_the_source_tree() -> None:
    """``tests/unit/<package>/test_<module>[_<aspect>].py`` tests ``<package>/<module>.py``."""
    strays = []
    for test in sorted((ROOT / "tests" / "unit").glob("*/test_*.py")):
        package = ROOT / test.parent.name
        modules = {m.stem for m in package.glob("*.py")} | {d.name for d in package.iterdir() if d.is_dir()}
        name = test.stem.removeprefix("test_")
        if not any(name == m or name.startswith(f"{m}_") for m in modules):
            strays.append(str(test.relative_to(ROOT)))
    assert strays == []
