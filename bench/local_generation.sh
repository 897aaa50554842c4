#!/usr/bin/env bash
# Local generation: tokens/s of ragway's local provider next to llama.cpp's own figure on the
# same GGUF and thread count, prompt processing (pp) and generation (tg).
#
# The anchor is bench/anchor/llama_anchor.cpp (llama-bench's method) built from the llama.cpp
# source vendored in the llama-cpp-sys-2 crate that ragway links, with the same SIMD settings
# (.cargo/config.toml), so the two differ only by what ragway adds: templating, tokenizing,
# sampling, detokenizing, the channel to the async stream.
#
#   bench/local_generation.sh [MODEL.gguf]
#   env: THREADS (2), PROMPT_TOKENS (512), GEN_TOKENS (128), REPS (5),
#        OMP_WAIT_POLICY (PASSIVE, as ragway should run; ACTIVE spins and collapses when other
#        processes compete for the cores)
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
threads=${THREADS:-2}
prompt_tokens=${PROMPT_TOKENS:-512}
gen_tokens=${GEN_TOKENS:-128}
reps=${REPS:-5}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
[ -f "$model" ] || { echo "$model not found: run scripts/fetch-models.sh" >&2; exit 1; }
target=${CARGO_TARGET_DIR:-target}
out=bench/out; mkdir -p "$out"

# The llama.cpp tree of the llama-cpp-sys-2 version in Cargo.lock.
llama_src=$(cargo metadata --format-version 1 --locked | python3 -c '
import json, os, sys
meta = json.load(sys.stdin)
sys_crate = next(p for p in meta["packages"] if p["name"] == "llama-cpp-sys-2")
print(os.path.join(os.path.dirname(sys_crate["manifest_path"]), "llama.cpp"))')
# The GGML_* switches ragway builds llama.cpp with, from .cargo/config.toml.
ggml_flags=$(python3 -c '
import tomllib
env = tomllib.load(open(".cargo/config.toml", "rb")).get("env", {})
print(" ".join(f"-D{k}={v}" for k, v in env.items() if k.startswith("GGML_")))')

echo "building the llama.cpp anchor from $llama_src" >&2
# shellcheck disable=SC2086
cmake -S bench/anchor -B "$out/anchor-build" -DLLAMA_SRC="$llama_src" \
  -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF -DGGML_OPENMP=ON $ggml_flags > "$out/anchor-cmake.log" 2>&1
cmake --build "$out/anchor-build" --target llama-anchor -j "$(nproc)" > "$out/anchor-build.log" 2>&1
anchor=$(find "$out/anchor-build" -type f -name llama-anchor -perm -u+x | head -n1)

echo "building ragway's local_tps example (release)" >&2
cargo build --release --quiet -p ragway-llm --example local_tps

echo "measuring: $model, $threads threads, pp$prompt_tokens, tg$gen_tokens, $reps repetitions," \
  "OMP_WAIT_POLICY=$OMP_WAIT_POLICY, load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
llama=$("$anchor" "$model" "$threads" "$prompt_tokens" "$gen_tokens" "$reps")
ragway=$(RUST_LOG=warn "$target/release/examples/local_tps" "$model" "$threads" "$prompt_tokens" "$gen_tokens" "$reps")

python3 - "$llama" "$ragway" "$model" "$threads" <<'PY'
import sys
llama, ragway, model, threads = sys.argv[1:]
def parse(text):
    rows = {}
    for line in text.strip().splitlines():
        name, mean, sd = line.split()
        rows[name[:2]] = (name, float(mean), float(sd))
    return rows
l, r = parse(llama), parse(ragway)
print(f"local generation: {model}, {threads} threads (tokens/s, mean ± sd)")
print(f"{'test':<6}{'llama.cpp':>22}{'ragway local':>26}{'ragway/llama.cpp':>18}")
for test in ("pp", "tg"):
    ln, lm, ls = l[test]
    rn, rm, rs = r[test]
    print(f"{test:<6}{ln:>8} {lm:8.1f} ± {ls:4.1f}{rn:>11} {rm:8.1f} ± {rs:4.1f}{rm / lm:17.0%}")
PY
