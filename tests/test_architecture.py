"""The core and the CLI know no screen: importing them must not need (or load) Qt."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import geocam_gui.core

ROOT = Path(__file__).resolve().parents[1]


def _core_modules() -> list[str]:
    names = ["geocam_gui.core." + m.name for m in pkgutil.iter_modules(geocam_gui.core.__path__)]
    names += ["geocam_gui.cli"]
    names += ["geocam_gui.commands." + m.name for m in pkgutil.iter_modules([str(ROOT / "geocam_gui" / "commands")])]
    return names


def test_core_and_cli_import_without_qt():
    modules = _core_modules()
    assert "geocam_gui.core.errors" in modules
    code = (
        "import sys\n"
        "for blocked in ('PySide6', 'PyQt5', 'PyQt6', 'pyqtgraph', 'shiboken6'):\n"
        "    sys.modules[blocked] = None\n"
        "import importlib\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] in ('PySide6', 'pyqtgraph') and sys.modules[m] is not None]\n"
        "assert not loaded, loaded\n"
        "print('ok', len(" + repr(modules) + "))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok")


def test_no_qt_import_statement_in_core_sources():
    offenders = []
    for path in list((ROOT / "geocam_gui" / "core").rglob("*.py")) + [ROOT / "geocam_gui" / "cli.py"]:
        for line in path.read_text(encoding="utf-8").splitlines():
            s = line.strip()
            if s.startswith(("import ", "from ")) and any(q in s for q in ("PySide6", "pyqtgraph", "PyQt")):
                offenders.append(f"{path.relative_to(ROOT)}: {s}")
    assert not offenders, offenders
