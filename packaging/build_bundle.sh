#!/usr/bin/env bash
# Build the one-folder PyInstaller bundle of the GeoCAM GUI (Linux and macOS; see README.md for Windows).
#
#   packaging/build_bundle.sh [DISTDIR]        # default: dist/bundle in the checkout
#
# Steps: build the sdist and the wheel (from the sdist, so both must carry the resources),
# install the wheel without dependencies into a staging folder, freeze it with
# packaging/geocam-gui.spec against the dependencies of the current Python, then start the
# result once with --version. The build environment decides CPU-only versus CUDA: the bundle
# carries whatever torch is installed there.
#
# Environment: PYTHON (default .venv/bin/python, else python3), GEOCAM_BUNDLE_WORK (scratch
# folder, default a new temp dir, removed afterwards), NICE (default 10).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$ROOT/.venv/bin/python" ]]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi
DIST="$(mkdir -p "${1:-$ROOT/dist/bundle}" && cd "${1:-$ROOT/dist/bundle}" && pwd)"
if [[ -n "${GEOCAM_BUNDLE_WORK:-}" ]]; then
    WORK="$GEOCAM_BUNDLE_WORK"; mkdir -p "$WORK"
else
    WORK="$(mktemp -d "${TMPDIR:-/tmp}/geocam-bundle.XXXXXX")"
    trap 'rm -rf "$WORK"' EXIT
fi
NICE="${NICE:-10}"

for module in PyInstaller build; do
    if ! "$PYTHON" -c "import $module" 2>/dev/null; then
        echo "error: $PYTHON lacks $module; install it with: $PYTHON -m pip install pyinstaller build" >&2
        exit 1
    fi
done
"$PYTHON" - <<'PY'
import importlib.metadata as md
v = md.version("torch")
cuda = "+cpu" not in v and any((d.metadata["Name"] or "").lower().startswith("nvidia-") for d in md.distributions())
print(f"torch {v}: {'CUDA build, expect a bundle of several GB' if cuda else 'CPU build'}")
PY

echo "== sdist and wheel"
"$PYTHON" -m build --no-isolation --outdir "$WORK/wheel" "$ROOT"
wheel=("$WORK"/wheel/geocam-*.whl)

echo "== staging ${wheel[0]##*/}"
"$PYTHON" -m pip install --quiet --no-deps --no-index --target "$WORK/site" "${wheel[0]}"

echo "== PyInstaller"
start=$SECONDS
GEOCAM_BUNDLE_SITE="$WORK/site" nice -n "$NICE" "$PYTHON" -m PyInstaller --noconfirm --clean \
    --distpath "$DIST" --workpath "$WORK/pyinstaller" "$ROOT/packaging/geocam-gui.spec"
echo "PyInstaller took $((SECONDS - start)) s"

exe="$DIST/geocam-gui/geocam-gui"
[[ -x "$exe" ]] || exe="$DIST/GeoCAM.app/Contents/MacOS/geocam-gui"
echo "== smoke test: $exe --version"
QT_QPA_PLATFORM="${QT_QPA_PLATFORM:-offscreen}" "$exe" --version
echo "== size"
du -sh "$DIST/geocam-gui"
