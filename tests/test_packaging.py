"""Packaging: the sdist and the wheel carry the resources and both entry points, an installed
wheel finds its icons through importlib.resources, and the desktop files validate.

The distributions are built once per module from a copy of the checkout (so the shared
working tree gets no build/ folder) by calling the setuptools PEP 517 hooks directly, which
is what ``python -m build --no-isolation`` does: no network, no reinstall of torch.
"""

from __future__ import annotations

import configparser
import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tarfile
import textwrap
import tomllib
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest

import geocam_gui

ROOT = Path(__file__).resolve().parent.parent
PACKAGING = ROOT / "packaging"
ICONS = ROOT / "resources" / "icons"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
PNG_SIZES = (16, 32, 48, 64, 128, 256, 512)
ACTION_ICONS = (
    "open-folder", "checkpoint", "export", "train", "pause", "stop", "camera", "settings", "zoom-fit",
)
ICON_GREY = "#5f6b7a"


def _quiet_env(home: Path) -> dict[str, str]:
    """Environment for child processes: no pip cache or config in ~, no version check."""
    env = dict(os.environ)
    env.update(
        HOME=str(home), PIP_NO_CACHE_DIR="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1",
        PIP_CONFIG_FILE=os.devnull, PYTHONDONTWRITEBYTECODE="1",
    )
    return env


def _run(args, *, cwd, env, timeout=300) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(
            f"{' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc


def _backend_ready() -> bool:
    """setuptools can build a wheel without network: >= 70.1 has bdist_wheel, older needs `wheel`."""
    try:
        major, minor = (int(x) for x in importlib.metadata.version("setuptools").split(".")[:2])
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return False
    return (major, minor) >= (70, 1) or importlib.util.find_spec("wheel") is not None


def _copy_source(dest: Path) -> Path:
    """What the build needs from the checkout, without caches or earlier build output."""
    dest.mkdir()
    junk = shutil.ignore_patterns("__pycache__", "*.pyc", "build", "dist", "*.egg-info")
    for name in ("pyproject.toml", "README.md", "LICENSE", "MANIFEST.in", "setup.cfg"):
        if (ROOT / name).is_file():
            shutil.copy2(ROOT / name, dest / name)
    for name in ("geocam_gui", "resources"):
        shutil.copytree(ROOT / name, dest / name, ignore=junk)
    return dest


_HOOK = "import sys, setuptools.build_meta as b; print(getattr(b, sys.argv[1])(sys.argv[2]))"


@pytest.fixture(scope="module")
def dists(tmp_path_factory) -> dict[str, Path]:
    """{'sdist': path or None, 'wheel': path}: the sdist, and the wheel built from it."""
    tmp = tmp_path_factory.mktemp("packaging")
    env = _quiet_env(tmp / "home")
    src = _copy_source(tmp / "src")
    out = tmp / "dist"
    out.mkdir()
    if _backend_ready():
        sdist = out / _run([sys.executable, "-c", _HOOK, "build_sdist", out], cwd=src, env=env).stdout.split()[-1]
        with tarfile.open(sdist) as tar:
            tar.extractall(tmp / "unpacked", filter="data")
        (unpacked,) = (tmp / "unpacked").iterdir()
        wheel = out / _run([sys.executable, "-c", _HOOK, "build_wheel", out], cwd=unpacked, env=env).stdout.split()[-1]
        return {"sdist": sdist, "wheel": wheel}
    # an old setuptools without `wheel`: let pip fetch a build backend (needs an index)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", out, src],
        env=env, capture_output=True, text=True, timeout=600,
    )
    if proc.returncode != 0:
        pytest.skip(f"no offline build backend (setuptools>=70.1) and pip could not fetch one:\n{proc.stderr[-1500:]}")
    return {"sdist": None, "wheel": next(out.glob("geocam-*.whl"))}


@pytest.fixture(scope="module")
def wheel_names(dists) -> set[str]:
    with zipfile.ZipFile(dists["wheel"]) as zf:
        return set(zf.namelist())


def _dist_info_file(wheel: Path, name: str) -> str:
    with zipfile.ZipFile(wheel) as zf:
        (path,) = [n for n in zf.namelist() if re.fullmatch(rf"geocam-[^/]+\.dist-info/{name}", n)]
        return zf.read(path).decode("utf-8")


def _shipped_resources() -> list[str]:
    """Every data file under resources/ in the checkout, relative to it (what must ship)."""
    return sorted(
        p.relative_to(ROOT / "resources").as_posix()
        for p in (ROOT / "resources").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix not in {".py", ".pyc"}
    )


# --- the wheel -------------------------------------------------------------------------------


def test_wheel_carries_every_resource_under_the_package(wheel_names):
    expected = {f"geocam_gui/resources/{name}" for name in _shipped_resources()}
    expected |= {"geocam_gui/resources/__init__.py", "geocam_gui/resources/icons/geocam.svg"}
    expected |= {f"geocam_gui/resources/icons/geocam-{n}.png" for n in PNG_SIZES}
    expected |= {f"geocam_gui/resources/icons/{name}.svg" for name in ACTION_ICONS}
    if (ROOT / "resources" / "style.qss").is_file():
        expected.add("geocam_gui/resources/style.qss")
    assert sorted(expected - wheel_names) == []
    # resources/ ships inside geocam_gui only, never as a top-level package of its own
    assert not [n for n in wheel_names if n.startswith(("resources/", "tests/", "packaging/"))]


def test_wheel_carries_every_declared_package(wheel_names):
    for package in PYPROJECT["tool"]["setuptools"]["packages"]:
        assert f"{package.replace('.', '/')}/__init__.py" in wheel_names, package


def test_wheel_declares_both_commands(dists):
    entry_points = configparser.ConfigParser(interpolation=None)
    entry_points.read_string(_dist_info_file(dists["wheel"], "entry_points.txt"))
    assert entry_points["console_scripts"]["geocam"].strip() == "geocam_gui.cli:main"
    assert entry_points["gui_scripts"]["geocam-gui"].strip() == "geocam_gui.app:main"


def test_wheel_metadata_names_version_and_requirements(dists):
    metadata = _dist_info_file(dists["wheel"], "METADATA")
    fields = [line.split(": ", 1) for line in metadata.split("\n\n", 1)[0].splitlines() if ": " in line]
    assert ["Name", "geocam"] in fields
    assert ["Version", geocam_gui.__version__] in fields
    required = {
        re.match(r"[A-Za-z0-9._-]+", value).group(0).lower().replace("_", "-")
        for key, value in fields
        if key == "Requires-Dist" and "extra ==" not in value
    }
    declared = {re.match(r"[A-Za-z0-9._-]+", d).group(0).lower() for d in PYPROJECT["project"]["dependencies"]}
    assert declared <= required
    assert {"pyside6-essentials", "torch", "torchvision", "pyqtgraph", "numpy", "pillow"} <= required


def test_sdist_carries_resources_and_build_files(dists):
    if dists["sdist"] is None:
        pytest.skip("built by pip without an sdist (old setuptools in this environment)")
    with tarfile.open(dists["sdist"]) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    assert {"pyproject.toml", "resources/__init__.py", "resources/icons/geocam.svg"} <= names
    readme = PYPROJECT["project"]["readme"]
    assert (readme in names) == (ROOT / readme).is_file()  # the project description ships when written
    assert {f"resources/{name}" for name in _shipped_resources()} <= names


@pytest.mark.slow
def test_installed_wheel_finds_its_icons_and_runs_both_commands(dists, wheel_names, tmp_path):
    """Install with --no-deps next to the current environment's torch/Qt, away from the checkout."""
    target = tmp_path / "site"
    env = _quiet_env(tmp_path / "home")
    _run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target", target, dists["wheel"]],
         cwd=tmp_path, env=env)
    env["PYTHONPATH"] = str(target)
    env["QT_QPA_PLATFORM"] = "offscreen"
    probe = textwrap.dedent(
        """
        import importlib.resources, pathlib, geocam_gui
        icon = importlib.resources.files("geocam_gui.resources") / "icons" / "geocam.svg"
        print(pathlib.Path(geocam_gui.__file__).resolve())
        print(pathlib.Path(str(icon)).resolve())
        print(icon.is_file(), b"<svg" in icon.read_bytes())
        """
    )
    lines = _run([sys.executable, "-c", probe], cwd=tmp_path, env=env).stdout.splitlines()
    assert Path(lines[0]).is_relative_to(target.resolve()), "imported the checkout, not the installed wheel"
    assert Path(lines[1]) == (target / "geocam_gui" / "resources" / "icons" / "geocam.svg").resolve()
    assert lines[2] == "True True"

    bindir = target / "bin"
    version = _run([bindir / "geocam", "--version"], cwd=tmp_path, env=env)
    assert geocam_gui.__version__ in version.stdout + version.stderr
    if "geocam_gui/app.py" not in wheel_names:
        pytest.skip("geocam_gui/app.py is not written yet; the geocam-gui command cannot start")
    version = _run([bindir / "geocam-gui", "--version"], cwd=tmp_path, env=env, timeout=120)
    assert geocam_gui.__version__ in version.stdout + version.stderr


# --- icons ---------------------------------------------------------------------------------


def _render_icons_module():
    spec = importlib.util.spec_from_file_location("render_icons", PACKAGING / "render_icons.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_app_icon_pngs_are_rendered_from_the_svg():
    render_icons = _render_icons_module()
    assert render_icons.SIZES == PNG_SIZES
    assert render_icons.stale() == []


@pytest.mark.parametrize("name", ACTION_ICONS)
def test_action_icons_are_grey_24px_svgs_qt_can_render(name):
    from PySide6.QtSvg import QSvgRenderer

    _render_icons_module()._app()
    path = ICONS / f"{name}.svg"
    text = path.read_text(encoding="utf-8")
    root = ET.fromstring(text)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert root.get("viewBox") == "0 0 24 24"
    assert "currentColor" not in text
    colours = set(re.findall(r'(?:stroke|fill)="(#[0-9a-fA-F]{6})"', text))
    assert colours == {ICON_GREY}
    renderer = QSvgRenderer(str(path))
    assert renderer.isValid() and renderer.defaultSize().width() == 24


def test_icons_are_found_through_importlib_resources():
    import importlib.resources

    icons = importlib.resources.files("geocam_gui.resources") / "icons"
    for name in ("geocam.svg", "geocam-256.png", *(f"{n}.svg" for n in ACTION_ICONS)):
        assert (icons / name).is_file(), name
    assert (icons / "geocam-16.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- desktop integration -----------------------------------------------------------------------


def _desktop_entry() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # keys are case-sensitive
    parser.read(PACKAGING / "geocam.desktop", encoding="utf-8")
    return parser["Desktop Entry"]


def test_desktop_entry_starts_the_gui_with_the_app_icon():
    entry = _desktop_entry()
    assert entry["Type"] == "Application"
    assert entry["Exec"] == "geocam-gui"
    assert entry["Exec"] in PYPROJECT["project"]["gui-scripts"]
    assert entry["Icon"] == "geocam" and (ICONS / "geocam.svg").is_file()
    assert entry["Categories"] == "Science;Education;Graphics;"
    assert entry["Terminal"] == "false"


def test_metainfo_describes_the_release_and_points_at_the_desktop_entry():
    root = ET.parse(PACKAGING / "io.github.geocam.GeoCAM.metainfo.xml").getroot()
    assert root.get("type") == "desktop-application"
    assert root.findtext("id") == "io.github.geocam.GeoCAM"
    launchable = root.find("launchable")
    assert launchable.get("type") == "desktop-id" and (PACKAGING / launchable.text).is_file()
    assert root.find("content_rating").get("type").startswith("oars-")
    assert [r.get("version") for r in root.iter("release")][0] == geocam_gui.__version__
    assert root.findtext("url[@type='homepage']").startswith("https://")
    image = root.findtext("screenshots/screenshot/image")
    assert image.startswith("https://") and image.endswith("docs/screenshot.png")
    assert {b.text for b in root.iter("binary")} == {"geocam", "geocam-gui"}


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed")
    return path


def test_desktop_entry_validates():
    proc = subprocess.run([_tool("desktop-file-validate"), PACKAGING / "geocam.desktop"],
                          capture_output=True, text=True, timeout=60)
    errors = [line for line in proc.stdout.splitlines() if ": error:" in line or ": warning:" in line]
    assert proc.returncode == 0 and errors == [], proc.stdout + proc.stderr


def test_metainfo_validates():
    proc = subprocess.run(
        [_tool("appstreamcli"), "validate", "--no-net", PACKAGING / "io.github.geocam.GeoCAM.metainfo.xml"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="a freedesktop.org shell script")
def test_menu_installer_adds_and_removes_the_entry(tmp_path):
    bash = _tool("bash")
    launcher = tmp_path / "venv bin" / "geocam-gui"
    launcher.parent.mkdir()
    launcher.write_text("#!/bin/sh\n")
    launcher.chmod(0o755)
    data = tmp_path / "share"
    env = dict(os.environ, DATA_HOME=str(data))
    script = PACKAGING / "install_desktop_entry.sh"
    _run([bash, script, "--exec", launcher], cwd=tmp_path, env=env, timeout=60)

    installed = (data / "applications" / "geocam.desktop").read_text(encoding="utf-8")
    assert f'Exec="{launcher}"' in installed.splitlines()
    assert (data / "metainfo" / "io.github.geocam.GeoCAM.metainfo.xml").is_file()
    assert (data / "icons" / "hicolor" / "scalable" / "apps" / "geocam.svg").is_file()
    for n in PNG_SIZES:
        png = data / "icons" / "hicolor" / f"{n}x{n}" / "apps" / "geocam.png"
        assert png.read_bytes() == (ICONS / f"geocam-{n}.png").read_bytes()
    if shutil.which("desktop-file-validate"):
        check = subprocess.run(["desktop-file-validate", data / "applications" / "geocam.desktop"],
                               capture_output=True, text=True, timeout=60)
        assert check.returncode == 0, check.stdout

    _run([bash, script, "--uninstall"], cwd=tmp_path, env=env, timeout=60)
    assert not (data / "applications" / "geocam.desktop").exists()
    assert not list((data / "icons").rglob("geocam.*"))


# --- the PyInstaller bundle -------------------------------------------------------------------


def test_bundle_spec_and_scripts_are_well_formed():
    spec = (PACKAGING / "geocam-gui.spec").read_text(encoding="utf-8")
    compile(spec, "geocam-gui.spec", "exec")
    assert "geocam_gui_launcher.py" in spec and "COLLECT(" in spec  # one-folder, not one-file
    launcher = (PACKAGING / "geocam_gui_launcher.py").read_text(encoding="utf-8")
    assert "from geocam_gui.app import main" in launcher and "freeze_support()" in launcher
    assert PYPROJECT["project"]["gui-scripts"]["geocam-gui"] == "geocam_gui.app:main"
    if shutil.which("bash"):
        for script in ("build_bundle.sh", "install_desktop_entry.sh"):
            _run(["bash", "-n", PACKAGING / script], cwd=ROOT, env=dict(os.environ), timeout=30)


def test_qt_void_calls_keep_none_alive(qtbot):
    """PySide6 6.12.0 takes a reference off None on each call of a Qt method that returns
    nothing; on Python 3.11 a long session then aborts ("deallocating None"). pyproject.toml
    excludes it; this fails if an installed Qt binding has the same leak."""
    import sys

    from PySide6.QtGui import QPainter, QPixmap

    pixmap = QPixmap(8, 8)
    painter = QPainter(pixmap)
    try:
        before = sys.getrefcount(None)
        for _ in range(200):
            painter.save()
            painter.restore()
        lost = before - sys.getrefcount(None)
    finally:
        painter.end()
    assert lost < 50, f"each void Qt call dropped a reference to None ({lost} lost in 400 calls)"
