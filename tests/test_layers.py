"""The package's layers (pyproject.toml, [tool.importlinter]): nothing imports upward, no import circle."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_layers_contract_holds():
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    if exe is None:  # the dev extra installs import-linter; without it the contract cannot be checked
        pytest.fail("lint-imports not found: install hierpool's dev extra (import-linter)")
    res = subprocess.run([exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "0 broken" in res.stdout


def test_no_module_of_the_package_outside_a_layer():
    """Every module lives in a layer's folder, except the package's entry points."""
    loose = sorted(p.name for p in (ROOT / "hierpool").glob("*.py"))
    assert loose == ["__init__.py", "__main__.py", "plots.py"], loose
