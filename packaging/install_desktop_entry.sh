#!/usr/bin/env bash
# Put GeoCAM into the application menu of the current user (GNOME, KDE, Xfce, ...: any
# freedesktop.org desktop), for a pip/venv install or a PyInstaller bundle.
#
#   packaging/install_desktop_entry.sh                      # Exec = geocam-gui found on PATH
#   packaging/install_desktop_entry.sh --exec /opt/geocam-gui/geocam-gui
#   packaging/install_desktop_entry.sh --uninstall
#
# Writes under ${XDG_DATA_HOME:-~/.local/share}: applications/geocam.desktop (Exec rewritten to
# an absolute path, so an install inside a virtual environment starts from the menu),
# icons/hicolor/<N>x<N>/apps/geocam.png, icons/hicolor/scalable/apps/geocam.svg and
# metainfo/io.github.geocam.GeoCAM.metainfo.xml. System-wide packages install the same files
# under /usr/share instead (DATA_HOME=/usr/share, as root).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DATA_HOME="${DATA_HOME:-${XDG_DATA_HOME:-$HOME/.local/share}}"
SIZES=(16 32 48 64 128 256 512)
exec_path=""
uninstall=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --exec) exec_path="${2:?--exec needs a path}"; shift 2 ;;
        --uninstall) uninstall=1; shift ;;
        -h|--help) sed -n '2,13p' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) echo "error: unknown argument $1 (try --help)" >&2; exit 2 ;;
    esac
done

targets=("$DATA_HOME/applications/geocam.desktop" "$DATA_HOME/icons/hicolor/scalable/apps/geocam.svg"
         "$DATA_HOME/metainfo/io.github.geocam.GeoCAM.metainfo.xml")
for n in "${SIZES[@]}"; do targets+=("$DATA_HOME/icons/hicolor/${n}x${n}/apps/geocam.png"); done

refresh() {
    command -v update-desktop-database >/dev/null && update-desktop-database -q "$DATA_HOME/applications" || true
    command -v gtk-update-icon-cache >/dev/null && gtk-update-icon-cache -q -t "$DATA_HOME/icons/hicolor" || true
}

if [[ $uninstall == 1 ]]; then
    rm -f "${targets[@]}"
    refresh
    echo "removed GeoCAM's menu entry and icons from $DATA_HOME"
    exit 0
fi

if [[ -z "$exec_path" ]]; then
    exec_path="$(command -v geocam-gui || true)"
    [[ -n "$exec_path" ]] || { echo "error: geocam-gui is not on PATH; activate its environment or pass --exec PATH" >&2; exit 1; }
fi
exec_path="$(cd "$(dirname "$exec_path")" && pwd)/$(basename "$exec_path")"
[[ -x "$exec_path" ]] || { echo "error: $exec_path is not an executable" >&2; exit 1; }
if [[ "$exec_path" =~ [\"\`\$\\%] ]]; then
    echo "error: the path $exec_path holds a character a desktop entry cannot quote simply; move it" >&2
    exit 1
fi

# icons: from the checkout if this script runs from one, else from the installed package
icons="$HERE/../resources/icons"
if [[ ! -f "$icons/geocam.svg" ]]; then
    python="$(head -n1 "$exec_path" | sed -n 's/^#!//p')"
    icons="$("${python:-python3}" -c 'import importlib.resources as r; print(r.files("geocam_gui.resources") / "icons")')"
fi
[[ -f "$icons/geocam.svg" ]] || { echo "error: no icons found (looked in $icons)" >&2; exit 1; }

mkdir -p "$DATA_HOME/applications" "$DATA_HOME/metainfo" "$DATA_HOME/icons/hicolor/scalable/apps"
sed -e "s|^Exec=.*|Exec=\"$exec_path\"|" -e "s|^TryExec=.*|TryExec=$exec_path|" \
    "$HERE/geocam.desktop" > "$DATA_HOME/applications/geocam.desktop"
install -m 644 "$HERE/io.github.geocam.GeoCAM.metainfo.xml" "$DATA_HOME/metainfo/"
install -m 644 "$icons/geocam.svg" "$DATA_HOME/icons/hicolor/scalable/apps/geocam.svg"
for n in "${SIZES[@]}"; do
    mkdir -p "$DATA_HOME/icons/hicolor/${n}x${n}/apps"
    install -m 644 "$icons/geocam-$n.png" "$DATA_HOME/icons/hicolor/${n}x${n}/apps/geocam.png"
done
refresh
echo "installed GeoCAM into the menu: $DATA_HOME/applications/geocam.desktop -> $exec_path"
