"""``geocam doctor``: can this machine run GeoCAM? Qt platform plugins, torch, disk, permissions.

Qt-free on purpose: the check must work exactly where Qt cannot start. The Qt check never
imports PySide6; it finds the platform plugin Qt would load (``libqxcb.so`` for X11,
``libqwayland.so`` for Wayland) in Qt's search order (``QT_QPA_PLATFORM_PLUGIN_PATH``, then each
``QT_PLUGIN_PATH`` entry's ``platforms/``, then PySide6's own ``Qt/plugins/platforms``) and asks
``ldd`` which of its system libraries are missing. Missing ones map to distribution packages
(apt, dnf, pacman) so the report ends with one install command. On a fresh Debian/Ubuntu desktop
Qt 6 typically lacks ``libxcb-cursor0`` and a few other xcb utility libraries.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from geocam_gui.core import paths

# soname -> (apt, dnf, pacman) package names
LIB_PACKAGES: dict[str, tuple[str, str, str]] = {
    "libxcb-cursor.so.0": ("libxcb-cursor0", "xcb-util-cursor", "xcb-util-cursor"),
    "libxcb-icccm.so.4": ("libxcb-icccm4", "xcb-util-wm", "xcb-util-wm"),
    "libxcb-image.so.0": ("libxcb-image0", "xcb-util-image", "xcb-util-image"),
    "libxcb-keysyms.so.1": ("libxcb-keysyms1", "xcb-util-keysyms", "xcb-util-keysyms"),
    "libxcb-render-util.so.0": ("libxcb-render-util0", "xcb-util-renderutil", "xcb-util-renderutil"),
    "libxcb-util.so.1": ("libxcb-util1", "xcb-util", "xcb-util"),
    "libxkbcommon-x11.so.0": ("libxkbcommon-x11-0", "libxkbcommon-x11", "libxkbcommon-x11"),
    "libxkbcommon.so.0": ("libxkbcommon0", "libxkbcommon", "libxkbcommon"),
    "libxcb-xinerama.so.0": ("libxcb-xinerama0", "libxcb", "libxcb"),
    "libxcb-randr.so.0": ("libxcb-randr0", "libxcb", "libxcb"),
    "libxcb-shape.so.0": ("libxcb-shape0", "libxcb", "libxcb"),
    "libxcb-xkb.so.1": ("libxcb-xkb1", "libxcb", "libxcb"),
    "libxcb-xfixes.so.0": ("libxcb-xfixes0", "libxcb", "libxcb"),
    "libxcb-sync.so.1": ("libxcb-sync1", "libxcb", "libxcb"),
    "libxcb-shm.so.0": ("libxcb-shm0", "libxcb", "libxcb"),
    "libxcb-render.so.0": ("libxcb-render0", "libxcb", "libxcb"),
    "libxcb-xinput.so.0": ("libxcb-xinput0", "libxcb", "libxcb"),
    "libxcb.so.1": ("libxcb1", "libxcb", "libxcb"),
    "libX11-xcb.so.1": ("libx11-xcb1", "libX11-xcb", "libx11"),
    "libX11.so.6": ("libx11-6", "libX11", "libx11"),
    "libSM.so.6": ("libsm6", "libSM", "libsm"),
    "libICE.so.6": ("libice6", "libICE", "libice"),
    "libEGL.so.1": ("libegl1", "libglvnd-egl", "libglvnd"),
    "libGL.so.1": ("libgl1", "libglvnd-glx", "libglvnd"),
    "libOpenGL.so.0": ("libopengl0", "libglvnd-opengl", "libglvnd"),
    "libfontconfig.so.1": ("libfontconfig1", "fontconfig", "fontconfig"),
    "libfreetype.so.6": ("libfreetype6", "freetype", "freetype2"),
    "libdbus-1.so.3": ("libdbus-1-3", "dbus-libs", "dbus"),
    "libglib-2.0.so.0": ("libglib2.0-0", "glib2", "glib2"),
    "libwayland-client.so.0": ("libwayland-client0", "libwayland-client", "wayland"),
    "libwayland-cursor.so.0": ("libwayland-cursor0", "libwayland-cursor", "wayland"),
    "libwayland-egl.so.1": ("libwayland-egl1", "libwayland-egl", "wayland"),
}
#: What Qt 6's xcb plugin needs beyond a base system (Qt's own list for X11), used when the
#: plugin itself is missing and ldd cannot say which libraries are.
XCB_NEEDS = ("libxcb-cursor.so.0", "libxcb-icccm.so.4", "libxcb-image.so.0", "libxcb-keysyms.so.1",
             "libxcb-render-util.so.0", "libxkbcommon-x11.so.0", "libxcb-xinerama.so.0",
             "libxcb-randr.so.0", "libxcb-shape.so.0", "libxcb-xkb.so.1", "libX11-xcb.so.1",
             "libEGL.so.1", "libfontconfig.so.1")
MIN_FREE_BYTES = 1 << 30  # below 1 GiB free: a warning (a decoded-image cache of the paper's set needs more)
MIN_FREE_FAIL = 100 << 20  # below 100 MiB: nothing useful can be written
_NOT_FOUND = re.compile(r"^\s*(\S+)\s+=>\s+not found", re.M)


@dataclass
class Check:
    """One line of the report: ``status`` is ``ok``, ``warn`` or ``fail`` (fail: exit non-zero)."""

    name: str
    status: str
    message: str
    fix: list[str] = field(default_factory=list)
    details: dict = field(default_factory=dict)


def missing_libraries(ldd_output: str) -> list[str]:
    """The sonames ``ldd`` printed as ``=> not found`` (each once, in order)."""
    return list(dict.fromkeys(_NOT_FOUND.findall(ldd_output)))


_MANAGERS = (("apt", "install"), ("dnf", "install"), ("pacman", "-S"))


def package_manager() -> str | None:
    """``apt``, ``dnf`` or ``pacman`` when exactly that one is on PATH, else None."""
    found = [tool for tool, _ in _MANAGERS if shutil.which(tool)]
    return found[0] if len(found) == 1 else None


def install_commands(sonames, manager: str | None = None) -> list[str]:
    """``sudo apt install ...`` for the packages of ``sonames`` with ``manager`` (apt, dnf or
    pacman); all three when it is None. Unknown sonames are named as they are."""
    names = list(dict.fromkeys(sonames))
    known = [LIB_PACKAGES[s] for s in names if s in LIB_PACKAGES]
    unknown = [s for s in names if s not in LIB_PACKAGES]
    out = []
    if known:
        for i, (tool, verb) in enumerate(_MANAGERS):
            if manager is not None and tool != manager:
                continue
            pkgs = " ".join(dict.fromkeys(k[i] for k in known))
            out.append(f"sudo {tool} {verb} {pkgs}")
    if unknown:
        out.append("also needed (no package name known here): " + ", ".join(unknown))
    return out


def pyside_dir() -> Path | None:
    """PySide6's package folder, found without importing it (None when not installed)."""
    spec = importlib.util.find_spec("PySide6")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def platform_plugin_dirs(env: dict | None = None) -> list[Path]:
    """Folders Qt searches for platform plugins, in its order."""
    env = os.environ if env is None else env
    out: list[Path] = []
    if env.get("QT_QPA_PLATFORM_PLUGIN_PATH"):
        out.append(Path(env["QT_QPA_PLATFORM_PLUGIN_PATH"]))
    for part in (env.get("QT_PLUGIN_PATH") or "").split(os.pathsep):
        if part:
            out.append(Path(part) / "platforms")
    base = pyside_dir()
    if base is not None:
        out.append(base / "Qt" / "plugins" / "platforms")
    return out


def _plugin_file(name: str) -> str:
    return {"xcb": "libqxcb.so", "wayland": "libqwayland.so"}[name]


def check_qt_platform(name: str = "xcb", env: dict | None = None, *, plugin_dirs: list[Path] | None = None) -> Check:
    """Whether Qt's ``name`` platform plugin (xcb or wayland) can load: found, and every system
    library it links present (``ldd``). Not checked (ok) off Linux."""
    title = f"Qt {name} platform plugin"
    if pyside_dir() is None:
        return Check(title, "fail", "PySide6 is not installed.", ["pip install PySide6"])
    if not sys.platform.startswith("linux"):
        return Check(title, "ok", f"not needed on {platform.system()}")
    dirs = platform_plugin_dirs(env) if plugin_dirs is None else list(plugin_dirs)
    plugin = next((d / _plugin_file(name) for d in dirs if (d / _plugin_file(name)).is_file()), None)
    if plugin is None:
        where = ", ".join(str(d) for d in dirs) or "nowhere"
        fix = install_commands(XCB_NEEDS, package_manager()) if name == "xcb" else []
        return Check(title, "fail", f"{_plugin_file(name)} was not found (looked in {where}); reinstall PySide6 "
                     "(pip install --force-reinstall PySide6) and make sure its system libraries are installed.",
                     fix, {"searched": [str(d) for d in dirs]})
    ldd = shutil.which("ldd")
    if ldd is None:
        return Check(title, "warn", f"found {plugin}, but ldd is missing so its libraries were not checked.")
    try:
        res = subprocess.run([ldd, str(plugin)], capture_output=True, text=True, timeout=30,
                             env={**os.environ, "LC_ALL": "C"})
    except (OSError, subprocess.SubprocessError) as exc:
        return Check(title, "warn", f"found {plugin}, but ldd failed: {exc}")
    missing = missing_libraries(res.stdout + res.stderr)
    if missing:
        return Check(title, "fail", f"{plugin.name} needs system libraries that are missing: {', '.join(missing)}.",
                     install_commands(missing, package_manager()), {"plugin": str(plugin), "missing": missing})
    return Check(title, "ok", f"{plugin} loads its libraries", details={"plugin": str(plugin)})


def check_display(env: dict | None = None) -> Check:
    env = os.environ if env is None else env
    qpa = env.get("QT_QPA_PLATFORM", "")
    if qpa:
        return Check("display", "ok", f"QT_QPA_PLATFORM={qpa}")
    if env.get("WAYLAND_DISPLAY"):
        return Check("display", "ok", f"Wayland ({env['WAYLAND_DISPLAY']})")
    if env.get("DISPLAY"):
        return Check("display", "ok", f"X11 ({env['DISPLAY']})")
    if sys.platform.startswith("linux"):
        return Check("display", "warn", "no DISPLAY or WAYLAND_DISPLAY: geocam-gui needs a desktop session "
                     "(or QT_QPA_PLATFORM=offscreen for screenshots); the geocam command works without one.")
    return Check("display", "ok", platform.system())


def check_torch() -> Check:
    try:
        import torch
        import torchvision
    except Exception as exc:  # noqa: BLE001 - a broken install can raise anything
        return Check("torch", "fail", f"torch/torchvision cannot be imported: {exc}",
                     ["pip install torch torchvision (see https://pytorch.org for the build for your GPU)"])
    parts = [f"torch {torch.__version__}, torchvision {torchvision.__version__}"]
    details: dict = {"torch": torch.__version__, "torchvision": torchvision.__version__,
                     "cuda_build": torch.version.cuda, "cuda_available": False}
    try:
        if torch.cuda.is_available():
            names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            details.update(cuda_available=True, gpus=names)
            parts.append(f"CUDA {torch.version.cuda}: {', '.join(names)}")
        elif torch.version.cuda:
            parts.append(f"built for CUDA {torch.version.cuda} but no GPU is usable: training runs on the CPU")
        else:
            parts.append("CPU build (no CUDA)")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            parts.append("Apple MPS available")
            details["mps"] = True
    except Exception as exc:  # noqa: BLE001 - a broken driver: report, do not crash the doctor
        return Check("torch", "warn", f"{parts[0]}; the GPU check failed: {exc}", details=details)
    return Check("torch", "ok", "; ".join(parts), details=details)


def _existing_parent(path: Path) -> Path:
    p = path
    while not p.exists() and p.parent != p:
        p = p.parent
    return p


def check_location(title: str, path: Path) -> Check:
    """Free space and writability of ``path`` (or, before it exists, of its nearest parent)."""
    base = _existing_parent(Path(path))
    try:
        free = shutil.disk_usage(base).free
    except OSError as exc:
        return Check(title, "fail", f"{path}: cannot read disk usage: {exc}")
    try:
        with tempfile.NamedTemporaryFile(dir=base, prefix=".geocam-doctor-"):
            pass
        writable = True
    except OSError:
        writable = False
    details = {"path": str(path), "free_bytes": free, "writable": writable}
    gib = free / (1 << 30)
    if not writable:
        return Check(title, "fail", f"{path} is not writable (checked {base}); set GEOCAM_HOME to a writable folder.",
                     details=details)
    if free < MIN_FREE_FAIL:
        return Check(title, "fail", f"{path}: only {free >> 20} MiB free.", details=details)
    if free < MIN_FREE_BYTES:
        return Check(title, "warn", f"{path}: {gib:.2f} GiB free (caches of large sets need several GiB).",
                     details=details)
    return Check(title, "ok", f"{path}: writable, {gib:.1f} GiB free", details=details)


def run_checks(env: dict | None = None, *, torch_check: bool = True) -> list[Check]:
    """Every check, in report order."""
    env = os.environ if env is None else env
    checks = [Check("python", "ok", f"Python {platform.python_version()} on {platform.platform(terse=True)}")]
    checks.append(check_display(env))
    checks.append(check_qt_platform("xcb", env))
    if env.get("WAYLAND_DISPLAY"):
        checks.append(check_qt_platform("wayland", env))
    if torch_check:
        checks.append(check_torch())
    checks += [check_location("cache folder", paths.cache_dir()),
               check_location("data folder", paths.data_dir()),
               check_location("checkpoint folder", paths.default_checkpoint_dir()),
               check_location("log folder", paths.log_dir())]
    return checks


def report_lines(checks: list[Check]) -> list[str]:
    """The human report: one line per check, then the commands that fix what failed."""
    tag = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}
    lines = [f"{tag[c.status]}  {c.name}: {c.message}" for c in checks]
    fixes = list(dict.fromkeys(f for c in checks if c.status != "ok" for f in c.fix))
    if fixes:
        lines.append("")
        lines.append("To fix:")
        lines += [f"  {f}" for f in fixes]
    return lines


def qt_start_problem(env: dict | None = None) -> str | None:
    """For ``geocam-gui`` before it creates the QApplication: a message naming the install
    command when the platform plugin Qt is about to load cannot load, else None.

    Only checked for a real desktop on Linux (QT_QPA_PLATFORM unset or xcb/wayland and a DISPLAY
    or WAYLAND_DISPLAY); offscreen and minimal need no system libraries.
    """
    env = os.environ if env is None else env
    if not sys.platform.startswith("linux"):
        return None
    qpa = (env.get("QT_QPA_PLATFORM") or "").split(":")[0].split(";")[0]
    if qpa and qpa not in ("xcb", "wayland"):
        return None
    if qpa == "wayland" or (not qpa and env.get("WAYLAND_DISPLAY") and not env.get("DISPLAY")):
        name = "wayland"
    elif env.get("DISPLAY"):
        name = "xcb"
    else:
        return None
    check = check_qt_platform(name, env)
    if check.status != "fail":
        return None
    fix = "\n".join(f"  {f}" for f in check.fix)
    return (f"geocam-gui: Qt cannot start its {name} platform plugin: {check.message}\n"
            + (f"Install the missing system libraries, then try again:\n{fix}\n" if fix else "")
            + "Run `geocam doctor` for a full check.")
