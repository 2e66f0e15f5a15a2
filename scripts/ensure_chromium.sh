#!/usr/bin/env bash
# Make sure Debian's Chromium is at /usr/bin/chromium (the browser tests drive it through Playwright).
# Fast no-op when it is there; otherwise installs it with apt-get (as root, or through `sudo -n`);
# otherwise prints one line saying what to install and exits 1.
set -euo pipefail
CHROMIUM="${KDLAB_CHROMIUM:-/usr/bin/chromium}"
[ -x "$CHROMIUM" ] && exit 0
if [ "$CHROMIUM" != /usr/bin/chromium ]; then
  echo "KDLAB_CHROMIUM=$CHROMIUM is not an executable; install Chromium there or unset KDLAB_CHROMIUM" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; fi
fi
if ! command -v apt-get >/dev/null 2>&1 || { [ "$(id -u)" != 0 ] && [ -z "$SUDO" ]; }; then
  echo "make test needs Chromium at /usr/bin/chromium: install Debian's 'chromium' package (apt-get install -y chromium) as root, then rerun" >&2
  exit 1
fi
echo "Chromium missing: installing Debian's 'chromium' package (once, a few minutes)..."
if ! { $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }; then
  echo "installing chromium with apt-get failed; install Debian's 'chromium' package by hand, then rerun make test" >&2
  exit 1
fi
[ -x "$CHROMIUM" ] || { echo "apt-get installed chromium but $CHROMIUM is missing; install Debian's 'chromium' package" >&2; exit 1; }
