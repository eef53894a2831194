"""The package's shape: layers importing only downwards, no cycles, small modules."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SRC = REPO / "src" / "jpki_sim"
MAX_MODULE_LINES = 700


def _lint_imports(cwd: Path, pythonpath: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("lint-imports")
    if exe is None:
        pytest.fail("lint-imports is not installed (pip install import-linter)")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(pythonpath), "HOME": str(cwd)}
    return subprocess.run([exe, "--no-cache"], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def test_the_import_contracts_hold() -> None:
    done = _lint_imports(REPO, REPO / "src")
    assert done.returncode == 0, done.stdout[-2000:]
    assert "2 kept, 0 broken" in done.stdout


@pytest.mark.parametrize(
    ("module", "bad_import"),
    [
        # the engine reaching up to a card profile
        ("card/engine.py", "from jpki_sim.profiles.jpki import ids"),
        # the bottom layer reaching up to a front end, inside a function
        ("iso7816/sw.py", "def _f():\n    from jpki_sim.cli import main"),
        # a cycle between two modules of one layer
        ("shell/registry.py", "def _g():\n    from jpki_sim.shell import session"),
    ],
)
def test_an_upward_import_or_a_cycle_breaks_a_contract(
    tmp_path: Path, module: str, bad_import: str
) -> None:
    shutil.copytree(SRC, tmp_path / "src" / "jpki_sim",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / "src" / "jpki_sim" / module
    target.write_text(target.read_text() + "\n\n" + bad_import + "\n")
    done = _lint_imports(tmp_path, tmp_path / "src")
    assert done.returncode != 0
    assert "BROKEN" in done.stdout


def test_the_engine_and_the_iso_layer_know_no_card() -> None:
    """No import of a profile, and no name of the JPKI card, in code below the profiles."""
    import ast

    for folder in ("card", "iso7816"):
        for path in (SRC / folder).glob("*.py"):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom):
                    assert not (node.module or "").startswith("jpki_sim.profiles"), path
                elif isinstance(node, ast.Name | ast.Attribute):
                    name = node.id if isinstance(node, ast.Name) else node.attr
                    bare = name.lower().replace("jpkisim", "").replace("jpki_sim", "")
                    assert "jpki" not in bare, (path, node.lineno, name)


def test_no_module_is_over_700_lines() -> None:
    long = {str(p.relative_to(SRC)): n for p in SRC.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert long == {}


def test_the_library_never_imports_the_benchmark_or_the_cli() -> None:
    code = ("import sys, jpki_sim.card.engine, jpki_sim.profiles.registry, "
            "jpki_sim.transport.vpcd, jpki_sim.issuer.counter, jpki_sim.vectors.runner; "
            "print(sorted(m for m in sys.modules if m.startswith(('jpki_sim.bench', "
            "'jpki_sim.cli'))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]"
