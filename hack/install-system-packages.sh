#!/usr/bin/env bash
# Debian packages the tests and the demo need that no language registry ships: Chromium, for the dashboard's
# browser tests and the demo's screenshots (driven by Playwright from PyPI, pointed at /usr/bin/chromium), and a font
# for the text in those screenshots. Does nothing when they are installed; on a fresh machine (CI) it runs
# `apt-get update` first, then installs them. Needs root (CI runs as root) or sudo.
set -euo pipefail

PACKAGES=(chromium fonts-dejavu-core)

missing=()
for package in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "system packages installed (${PACKAGES[*]})"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "error: ${missing[*]} missing and this machine has no apt-get; install Chromium and set EDGEFLEET_CHROMIUM" >&2
  echo "       to its binary (the dashboard's browser tests and the demo's screenshots need it)" >&2
  exit 1
fi
sudo=()
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null 2>&1; then
    echo "error: installing ${missing[*]} needs root; run: apt-get update && apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  sudo=(sudo)
fi
echo "installing ${missing[*]} from Debian (apt-get update first)"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
command -v chromium >/dev/null 2>&1 || { echo "error: chromium was installed but is not on PATH" >&2; exit 1; }
echo "installed: $(chromium --version 2>/dev/null | head -1)"
