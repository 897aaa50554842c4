#!/usr/bin/env bash
# Installs what ragway's build and tests need on a fresh Debian 12 machine: system packages
# from apt and the Python test tools from PyPI. Idempotent; skips what is already there.
set -euo pipefail

apt_packages=(python3 python3-pip pkg-config cmake g++ libopenblas-dev libclang-dev clang)
missing=()
for package in "${apt_packages[@]}"; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing apt packages: ${missing[*]}"
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

here=$(cd "$(dirname "$0")/.." && pwd)
# Debian's own python3 refuses pip installs (PEP 668) unless told; pyenv/venv pythons ignore this.
export PIP_BREAK_SYSTEM_PACKAGES=1
python3 -m pip install --quiet --disable-pip-version-check -r "$here/tests/requirements.txt"
