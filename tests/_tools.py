"""The system tools the tests drive for real, and the Debian packages that provide them.

One table for two readers: ``make system-deps`` runs this file (stdlib only, before the
virtual environment exists) to learn which packages are missing, and the tests call
:func:`need`, which fails (never skips) with the command that installs the tool.

- LibreOffice Calc edits and renders the workbook; Carlito is the metric twin of Calibri, the
  workbook's font, so pages lay out as Calc on a desktop does; pdftoppm (poppler-utils) turns
  a rendered PDF into a PNG;
- the report's browser test: Playwright drives the Debian chromium (its own download cannot
  work offline); chromium-driver comes with it for WebDriver clients. Playwright's own driver
  is a bundled Node that needs libatomic.so.1 (libatomic1), absent from a minimal Debian.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable


def _on_path(*names: str) -> Callable[[], bool]:
    return lambda: any(shutil.which(n) for n in names)


def _carlito() -> bool:
    if shutil.which("fc-list") is None:
        return False
    fonts = subprocess.run(["fc-list"], capture_output=True, text=True, check=False).stdout
    return "carlito" in fonts.lower()


def _chromium() -> bool:
    import ctypes.util

    # Playwright's bundled Node will not start without libatomic.so.1.
    return shutil.which("/usr/bin/chromium") is not None and ctypes.util.find_library("atomic") is not None


def _venv() -> bool:
    # Debian splits ensurepip (what `python3 -m venv` needs) into python3-venv.
    try:
        import ensurepip  # noqa: F401
    except ImportError:
        return False
    return True


# tool -> (what the tests use it for, Debian packages, is it there?)
TOOLS: dict[str, tuple[str, tuple[str, ...], Callable[[], bool]]] = {
    "venv": ("python3 -m venv (the .venv make builds)", ("python3-venv",), _venv),
    "soffice": ("LibreOffice Calc (edits and renders the workbook)", ("libreoffice-calc",),
                _on_path("soffice", "libreoffice")),
    "carlito": ("the Carlito font (Calibri's metrics, for rendered pages)",
                ("fonts-crosextra-carlito",), _carlito),
    "pdftoppm": ("pdftoppm (rendered PDF to PNG)", ("poppler-utils",), _on_path("pdftoppm")),
    "chromium": ("Chromium at /usr/bin/chromium and libatomic1 (the report's browser test)",
                 ("chromium", "chromium-driver", "libatomic1"), _chromium),
}


def install_command(packages: list[str] | tuple[str, ...]) -> str:
    return "apt-get install -y --no-install-recommends " + " ".join(packages)


def missing_packages() -> list[str]:
    return [p for _, packages, present in TOOLS.values() if not present() for p in packages]


def need(*tools: str) -> None:
    """Fail the calling test, naming the command that installs whichever of ``tools`` is missing."""
    missing = [t for t in tools if not TOOLS[t][2]()]
    if missing:
        import pytest

        packages = [p for t in missing for p in TOOLS[t][1]]
        pytest.fail(f"needs {', '.join(TOOLS[t][0] for t in missing)}; install with "
                    f"`sudo {install_command(packages)}` (as root: `make system-deps`)",
                    pytrace=False)


if __name__ == "__main__":  # `make system-deps`: the missing packages, one line, space-separated
    print(" ".join(missing_packages()))
    sys.exit(0)
