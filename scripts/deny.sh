#!/usr/bin/env bash
# cargo-deny over Cargo.lock with deny.toml (scripts/install-deps.sh installs it): licences,
# bans (wildcard versions; duplicates are warnings) and sources (crates.io only) always, offline;
# then RustSec's advisories when its database can be fetched. On a machine that cannot reach
# it (no access to GitHub), the advisories are checked against a copy fetched before, if there is
# one, and otherwise skipped with a line saying so; RAGWAY_REQUIRE_ADVISORIES=1 makes that an
# error instead. Last, the policy itself: a scratch workspace breaking each rule must be refused.
set -euo pipefail
cd "$(dirname "$0")/.."
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# Duplicates are many and are warnings: their inclusion graphs (8,000 lines) are left out here;
# `cargo deny check bans` shows them.
cargo deny --locked check --hide-inclusion-graph licenses bans sources

if cargo deny fetch db 2>"$scratch/fetch.log"; then
  cargo deny --frozen check advisories
else
  reason=$(grep -m1 '^fatal:' "$scratch/fetch.log" || grep -m1 -i error "$scratch/fetch.log" || true)
  db=$(find "${CARGO_HOME:-$HOME/.cargo}/advisory-dbs" -maxdepth 2 -name .git -printf '%h\n' 2>/dev/null | head -n1)
  if [ -n "$db" ]; then
    echo "deny: the advisory database could not be fetched ($reason);" \
      "checking against the copy of $(git -C "$db" log -1 --format=%cs)" >&2
    cargo deny --frozen check advisories
  elif [ -n "${RAGWAY_REQUIRE_ADVISORIES:-}" ]; then
    echo "deny: advisories: the advisory database could not be fetched: $reason" >&2
    exit 1
  else
    echo "deny: advisories NOT checked: the RustSec advisory database could not be fetched" \
      "($reason) and there is no earlier copy; licences, bans and sources were checked" >&2
  fi
fi

# The policy refuses what it is meant to: a GPL crate, a `*` version and a git source, each
# reported under its own code. The crates are local (a path crate, a git repository in a
# scratch folder), so this needs no network beyond crates.io's index for `itoa`.
mkdir -p "$scratch/gpl/src" "$scratch/fromgit/src" "$scratch/app/src"
printf '[package]\nname = "gpl"\nversion = "0.1.0"\nedition = "2021"\nlicense = "GPL-3.0-only"\n' \
  >"$scratch/gpl/Cargo.toml"
printf '[package]\nname = "fromgit"\nversion = "0.1.0"\nedition = "2021"\nlicense = "MIT"\n' \
  >"$scratch/fromgit/Cargo.toml"
touch "$scratch/gpl/src/lib.rs" "$scratch/fromgit/src/lib.rs" "$scratch/app/src/lib.rs"
git -C "$scratch/fromgit" init --quiet
git -C "$scratch/fromgit" add .
git -C "$scratch/fromgit" -c user.name=deny -c user.email=deny@localhost commit --quiet -m fixture
cat >"$scratch/app/Cargo.toml" <<EOF
[package]
name = "app"
version = "0.1.0"
edition = "2021"
license = "Apache-2.0"
publish = false

[dependencies]
gpl = { path = "../gpl" }
itoa = "*"
fromgit = { git = "file://$scratch/fromgit" }
EOF
set +e
cargo deny --manifest-path "$scratch/app/Cargo.toml" --config "$PWD/deny.toml" \
  check licenses bans sources >"$scratch/out.log" 2>&1
refused=$?
set -e
for code in rejected wildcard source-not-allowed; do
  if [ $refused -eq 0 ] || ! grep -q "^error\[$code\]" "$scratch/out.log"; then
    cat "$scratch/out.log" >&2
    echo "deny: the policy in deny.toml let through what it must refuse (expected error[$code])" >&2
    exit 1
  fi
done
echo "deny: deny.toml refuses a GPL crate, a wildcard version and a git source"
