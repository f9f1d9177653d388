"""``geocam doctor`` and the GUI's check before Qt starts (core/doctor.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from geocam_gui.core import doctor

LDD_SAMPLE = """\
\tlinux-vdso.so.1 (0x00007ffd)
\tlibQt6XcbQpa.so.6 => /venv/PySide6/Qt/lib/libQt6XcbQpa.so.6 (0x00007f)
\tlibxcb-cursor.so.0 => not found
\tlibxcb-icccm.so.4 => not found
\tlibxcb-cursor.so.0 => not found
\tlibmystery.so.9 => not found
"""


def test_ldd_output_gives_missing_libraries_and_packages():
    missing = doctor.missing_libraries(LDD_SAMPLE)
    assert missing == ["libxcb-cursor.so.0", "libxcb-icccm.so.4", "libmystery.so.9"]
    cmds = doctor.install_commands(missing)
    assert cmds[0] == "sudo apt install libxcb-cursor0 libxcb-icccm4"
    assert cmds[1] == "sudo dnf install xcb-util-cursor xcb-util-wm"
    assert cmds[2] == "sudo pacman -S xcb-util-cursor xcb-util-wm"
    assert "libmystery.so.9" in cmds[3]
    assert doctor.install_commands(missing[:1], "dnf") == ["sudo dnf install xcb-util-cursor"]


@pytest.fixture
def no_bundled_plugins(monkeypatch, tmp_path):
    """Qt pointed at empty plugin folders, and PySide6's own folder hidden, as on a broken install."""
    empty = tmp_path / "empty"
    empty.mkdir()
    fake_pyside = tmp_path / "PySide6"
    fake_pyside.mkdir()
    monkeypatch.setattr(doctor, "pyside_dir", lambda: fake_pyside)
    monkeypatch.setattr(doctor, "package_manager", lambda: None)
    monkeypatch.setenv("QT_PLUGIN_PATH", str(empty))
    monkeypatch.setenv("QT_QPA_PLATFORM_PLUGIN_PATH", str(empty))
    return empty


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the xcb check is Linux's")
def test_doctor_prints_install_command_when_qt_finds_no_platform_plugin(no_bundled_plugins, capsys):
    from geocam_gui.cli import main

    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  Qt xcb platform plugin" in out and str(no_bundled_plugins) in out
    assert "sudo apt install libxcb-cursor0 libxcb-icccm4" in out
    assert "sudo dnf install xcb-util-cursor" in out
    assert main(["doctor", "--json"]) == 1
    checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)}
    assert checks["Qt xcb platform plugin"]["status"] == "fail"
    assert checks["cache folder"]["status"] in ("ok", "warn") and checks["cache folder"]["details"]["writable"]


@pytest.mark.skipif(not (sys.platform.startswith("linux") and shutil.which("gcc") and shutil.which("ldd")),
                    reason="needs gcc and ldd to build a plugin with a missing library")
def test_a_plugin_linking_a_missing_library_is_named(tmp_path, monkeypatch):
    # a stand-in libqxcb.so that needs a library which then disappears: what ldd sees on a fresh
    # desktop for libxcb-cursor.so.0 (a name of our own, so that the real one cannot be found)
    stub = tmp_path / "stub"
    stub.mkdir()
    (tmp_path / "a.c").write_text("int xcb_cursor_stub(void) { return 1; }\n")
    (tmp_path / "b.c").write_text("int xcb_cursor_stub(void); int plugin(void) { return xcb_cursor_stub(); }\n")
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(stub / "libgeocam-xcb-test.so.0"), str(tmp_path / "a.c"),
                    "-Wl,-soname,libgeocam-xcb-test.so.0"], check=True)
    plugins = tmp_path / "platforms"
    plugins.mkdir()
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(plugins / "libqxcb.so"), str(tmp_path / "b.c"),
                    str(stub / "libgeocam-xcb-test.so.0")], check=True)
    shutil.rmtree(stub)
    monkeypatch.setattr(doctor, "package_manager", lambda: "apt")
    monkeypatch.setitem(doctor.LIB_PACKAGES, "libgeocam-xcb-test.so.0", ("libxcb-cursor0", "x", "y"))
    check = doctor.check_qt_platform("xcb", {}, plugin_dirs=[plugins])
    assert check.status == "fail" and check.details["missing"] == ["libgeocam-xcb-test.so.0"]
    assert check.fix == ["sudo apt install libxcb-cursor0"]
    # the GUI prints that one command instead of letting Qt abort
    monkeypatch.setattr(doctor, "platform_plugin_dirs", lambda env=None: [plugins])
    msg = doctor.qt_start_problem({"DISPLAY": ":0"})
    assert "sudo apt install libxcb-cursor0" in msg
    assert doctor.qt_start_problem({"DISPLAY": ":0", "QT_QPA_PLATFORM": "offscreen"}) is None
    assert doctor.qt_start_problem({}) is None  # no display: nothing to start


def test_gui_stops_before_qt_with_the_install_command(no_bundled_plugins, monkeypatch, capsys):
    if not sys.platform.startswith("linux"):
        pytest.skip("the xcb check is Linux's")
    monkeypatch.setenv("DISPLAY", ":99")
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    from geocam_gui.app import main

    assert main([]) == 3
    err = capsys.readouterr().err
    assert "sudo apt install libxcb-cursor0" in err and "geocam doctor" in err


def test_unwritable_location_fails(tmp_path):
    if sys.platform.startswith("win") or (hasattr(__import__("os"), "geteuid") and __import__("os").geteuid() == 0):
        pytest.skip("root writes anywhere")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    assert doctor.check_location("x", locked / "sub").status == "fail"


def test_location_reports_space_and_writability(tmp_path):
    check = doctor.check_location("data", tmp_path / "not" / "yet")
    assert check.details["writable"] and check.details["free_bytes"] > 0
    assert not (tmp_path / "not").exists()  # checking creates nothing
