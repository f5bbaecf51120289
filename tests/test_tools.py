"""A test that cannot find a system tool fails, naming the command that installs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from _tools import TOOLS, need

ROOT = Path(__file__).resolve().parents[1]


def test_a_missing_tool_fails_with_its_install_command(monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no soffice, no pdftoppm
    with pytest.raises(pytest.fail.Exception) as failed:
        need("soffice", "pdftoppm")
    said = str(failed.value)
    assert "apt-get install -y --no-install-recommends libreoffice-calc poppler-utils" in said
    assert "make system-deps" in said


def test_make_system_deps_names_what_is_missing(tmp_path: Path) -> None:
    # The Makefile reads the same table: run as `make system-deps` does, with nothing on PATH
    # but the Python interpreter.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(sys.executable)
    out = subprocess.run([str(bin_dir / "python3"), str(ROOT / "tests" / "_tools.py")],
                         capture_output=True, text=True, check=True,
                         env={"PATH": str(bin_dir)}).stdout.split()
    for tool in ("soffice", "pdftoppm", "carlito"):
        assert set(TOOLS[tool][1]) <= set(out)
