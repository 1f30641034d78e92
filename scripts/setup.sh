#!/usr/bin/env bash
# Installs everything bgm2pose needs on a fresh Debian machine (as root, or with sudo):
# system libraries (PortAudio, JACK, libsndfile, Xvfb and the Qt xcb/GL stack) and a
# virtual environment in .venv with the package, its training, test and camera extras.
# Safe to run again: it skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  libportaudio2 jackd2 libsndfile1
  xvfb xauth
  # What PyQt6's xcb platform plugin and pyqtgraph's OpenGL view load (ldd libqxcb.so).
  libgl1 libegl1 libglx-mesa0 libgl1-mesa-dri libopengl0
  libxkbcommon0 libxkbcommon-x11-0 libfontconfig1 libfreetype6 libdbus-1-3 libglib2.0-0
  libx11-xcb1 libxcb1 libxcb-cursor0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1
  libxcb-randr0 libxcb-render0 libxcb-render-util0 libxcb-shape0 libxcb-shm0 libxcb-sync1
  libxcb-xfixes0 libxcb-xinerama0 libxcb-xkb1 libxcb-util1 libxrender1 libxi6
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: installing system packages: ${missing[*]}"
  # jackd2 asks whether to enable real-time priority; the dummy driver does not need it.
  echo "jackd2 jackd/tweak_rt_limits boolean false" | $SUDO debconf-set-selections
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PY" -m venv .venv
fi
pip_install() {
  # This machine kind's pip config lists local wheel folders that do not exist for every
  # package; pip warns about each one. Drop that noise, keep real errors and the exit code.
  .venv/bin/python -m pip install -q --disable-pip-version-check "$@" 2>&1 \
    | { grep -v "is neither a file nor a directory" || true; }
}
# torch first and exactly pinned: the CPU wheel lies on this machine kind's disk.
pip_install torch==2.13.0
pip_install -e '.[train,test,camera]'
echo "setup: done (.venv/bin/bgm2pose is ready)"
