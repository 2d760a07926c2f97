#!/usr/bin/env bash
# One command to set everything up on a fresh Debian/Ubuntu machine with Python 3.11, then act:
#   ./bootstrap.sh demo   install, then run the demo (console window if there is a display, else headless)
#   ./bootstrap.sh test   install, then run the whole test suite (what CI runs)
# Idempotent: a second run only checks. Needs root or sudo for the Debian packages.
set -euo pipefail
cd "$(dirname "$0")"
action="${1:-}"
case "$action" in demo|test) shift ;; *) echo "usage: $0 demo|test [args...]" >&2; exit 2 ;; esac

PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
"$PY" - <<'PYCHECK' || { echo "bootstrap: Python 3.11 or newer is required (found $("$PY" --version 2>&1))" >&2; exit 1; }
import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)
PYCHECK

# Debian libraries: libusb for pyrealsense2; EGL/fontconfig/xkbcommon/dbus/glib for Qt (offscreen too);
# the xcb set for a real window; iproute2 for the network-namespace tests; venv for the virtualenv;
# PortAudio for sound (voice, alarms), and a PulseAudio server with its ALSA plugin so that a machine without a
# sound card (CI) still plays and records through real devices: null sinks (voice/soundserver.py, runs as root).
DEB_PKGS=(libusb-1.0-0 libegl1 libgl1 libopengl0 libxkbcommon0 libxkbcommon-x11-0 libfontconfig1 libdbus-1-3
          libglib2.0-0 libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-shape0 libxcb-xinerama0
          libxcb-randr0 libxcb-render-util0 libxcb-image0 iproute2
          libportaudio2 pulseaudio pulseaudio-utils libasound2-plugins)
if command -v dpkg-query >/dev/null 2>&1; then
  pyver=$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
  "$PY" -c 'import ensurepip' >/dev/null 2>&1 || DEB_PKGS+=("python${pyver}-venv")
  missing=()
  for p in "${DEB_PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "bootstrap: installing Debian packages: ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.installed-$(sha1sum pyproject.toml | cut -c1-12)
if [ ! -f "$stamp" ]; then
  echo "bootstrap: installing Python packages (first run takes a minute)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[test]"
  rm -f .venv/.installed-*; touch "$stamp"
fi

case "$action" in
  demo) exec .venv/bin/teleop demo "$@" ;;
  test)
    .venv/bin/ruff check .
    .venv/bin/lint-imports --no-cache
    exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@" ;;
esac
