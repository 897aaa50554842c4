#!/usr/bin/env bash
# Runs ragway's fuzz targets (fuzz/) for a bounded time each: the request bodies of /generate
# and /v1/chat/completions as the routes read them, and the configuration loader with its
# validation. A panic, a failed assertion, a hang (-timeout) or runaway memory fails the script;
# the input that did it is left under fuzz/artifacts/<target>/ (replay it with
# `RUSTC_BOOTSTRAP=1 cargo fuzz run -s none <target> <file>`).
#
# Stable Rust: cargo-fuzz passes a few unstable flags, which RUSTC_BOOTSTRAP=1 allows. No
# sanitizer: the code under test is safe Rust (the workspace denies unsafe code), so
# AddressSanitizer would find nothing Rust's own checks miss; coverage-guided fuzzing with
# debug assertions is what finds panics, and the run stays fast.
#
# Time: FUZZ_SECONDS (60) per target, about 3 minutes for the three, plus the build. The build
# goes to $CARGO_TARGET_DIR/fuzz (or FUZZ_TARGET_DIR) and the corpora to
# ~/.cache/ragway/fuzz-corpus (or FUZZ_CORPUS_DIR), so that a cached machine rebuilds only
# what changed and each run starts from the inputs earlier runs found. The targets link only
# ragway-core and ragway-requests (the routes' request reading without the server), so the
# first build takes a few minutes.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${FUZZ_SECONDS:-60}
# FUZZ_TARGETS="config" runs one.
read -r -a targets <<< "${FUZZ_TARGETS:-config generate_request chat_request}"
corpora=${FUZZ_CORPUS_DIR:-$HOME/.cache/ragway/fuzz-corpus}
fuzz_target_dir=${FUZZ_TARGET_DIR:-${CARGO_TARGET_DIR:-$PWD/target}/fuzz}

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz from crates.io"
  # Its own build directory, not the workspace's.
  env -u CARGO_TARGET_DIR cargo install cargo-fuzz --locked
fi

export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR=$fuzz_target_dir
cargo fuzz build --sanitizer none

for target in "${targets[@]}"; do
  corpus=$corpora/$target
  mkdir -p "$corpus"
  seeds=(fuzz/seeds/"$target"/*)
  # Every example configuration is a seed of the config target.
  [ "$target" = config ] && seeds=(examples/*.toml)
  cp -n "${seeds[@]}" "$corpus"/ 2>/dev/null || true
  log=$fuzz_target_dir/$target.log
  echo "fuzzing $target for ${seconds}s (corpus: $corpus; libFuzzer's progress: $log)"
  if ! cargo fuzz run --sanitizer none "$target" "$corpus" -- \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      > "$log" 2>&1; then
    grep -A 4 'panicked at' "$log" | head -n 20 || true
    tail -n 30 "$log"
    echo "fuzz target $target failed; the input is under fuzz/artifacts/$target/" >&2
    exit 1
  fi
  grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb)' "$log" | sed 's/^/  /'
done
echo "fuzzing found nothing in ${#targets[@]} targets"
