#!/usr/bin/env bash
# Streaming: time to first byte and the gaps between events, through ragway's streaming
# routes vs the upstream fake directly, with STREAMS concurrent streams held open. A bare proxy
# on ragway's stack (`bare_proxy`: axum in, reqwest out, bytes forwarded untouched) is measured
# too, as the floor: what one more hop costs on this machine, so that ragway's own share shows.
# The fake paces its chunks (--chunk-delay-ms) like a model writing, so an event that ragway
# held back would show as a burst: gaps near zero followed by long ones.
#
# Each answer is WORDS words, one chunk each (50 at 20 ms: a one-second answer, still shorter
# than most real ones; 5 makes every stream ~0.1 s, which measures request set-up more than
# streaming: 500 streams are then ~4,500 new requests a second).
#
# A p99 of a few milliseconds moves by half a millisecond from one run to the next on a shared
# machine, so the four paths are measured in ROUNDS rounds, each in a different order (drift
# and order effects fall on every path alike), and the figures are the rounds' medians; the
# added time is taken within each round, against that round's direct run (and, for ragway's
# routes, against its bare proxy run).
#
#   bench/streaming.sh [STREAMS] [SECONDS] [CHUNK_DELAY_MS] [WORDS] [ROUNDS]
#                                                   (defaults: 500 10 20 50 3; SECONDS per run)
#   BIN_DIR=path bench/streaming.sh …     (prebuilt ragway, ragway-fakes, stream_load, bare_proxy)
set -euo pipefail
cd "$(dirname "$0")/.."
streams=${1:-500}; seconds=${2:-10}; delay=${3:-20}; words=${4:-50}; rounds=${5:-3}
pids=(); source bench/lib.sh
release_bins stream_load bare_proxy
load=$bin/examples/stream_load
out=bench/out/streaming; mkdir -p "$out"
ulimit -n 65536 2>/dev/null || true

# The fake and the load generator run on one thread each: on a small machine they share the
# cores with ragway, and their own threads waking each other only take CPU from what is measured
# (both paths are measured with the same tools).
export TOKIO_WORKER_THREADS=1
start_fakes "$out" --chunk-delay-ms "$delay" --answer-words "$words"; fake_pid=${pids[-1]}
unset TOKIO_WORKER_THREADS
fast_config "$out/streaming.toml"
start_ragway "$out/streaming.toml" "$out/ragway.out"; gateway=$url; ragway_pid=$pid
"$bin/examples/bare_proxy" --upstream "$upstream/v1/chat/completions" > "$out/bare.out" & pids+=($!)
bare_pid=$!
for _ in $(seq 50); do grep -q listening "$out/bare.out" 2>/dev/null && break; sleep 0.1; done
bare=$(sed -n 's/^bare proxy listening on //p' "$out/bare.out")
[ -n "$bare" ] || { echo "bare_proxy did not start" >&2; exit 1; }

direct='{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"Explain quantum computing"}]}'
v1='{"model":"fast","stream":true,"messages":[{"role":"user","content":"Explain quantum computing"}]}'
generate='{"prompt":"Explain quantum computing","llm_name":"fast","stream":true}'

# Warm every path at full width first: each opens its connections (client to ragway, ragway's
# pool to the upstream) outside the measured runs.
declare -A urls=([direct]="$upstream/v1/chat/completions" [bare]="$bare/v1/chat/completions"
                  [v1]="$gateway/v1/chat/completions" [generate]="$gateway/generate")
declare -A bodies=([direct]="$direct" [bare]="$direct" [v1]="$v1" [generate]="$generate")
# The process each path goes through (none for the direct path), whose CPU is measured.
declare -A via=([direct]="" [bare]="$bare_pid" [v1]="$ragway_pid" [generate]="$ragway_pid")
for path in direct bare v1 generate; do
  TOKIO_WORKER_THREADS=1 "$load" --url "${urls[$path]}" --body "${bodies[$path]}" --streams "$streams" --seconds 2 > /dev/null
done
echo "streaming — $(nproc) cores, $streams concurrent streams, answers of $words words, upstream chunk every ${delay} ms, $rounds rounds of ${seconds}s per path"
# CPU seconds a process has used so far (user and system).
cpu() { [ -z "$1" ] && { echo 0; return; }; awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"; }
order=(direct bare v1 generate)
for round in $(seq "$rounds"); do
  for path in "${order[@]}"; do
    p0=$(cpu "${via[$path]}"); f0=$(cpu "$fake_pid"); t0=$(date +%s.%N)
    TOKIO_WORKER_THREADS=1 "$load" --url "${urls[$path]}" --body "${bodies[$path]}" --streams "$streams" \
      --seconds "$seconds" > "$out/$path-$round.json"
    # Cores used over the run: the process the path goes through, and the fake.
    echo "$(cpu "${via[$path]}") $p0 $(cpu "$fake_pid") $f0 $(date +%s.%N) $t0" |
      awk '{printf "%.3f %.3f\n", ($1 - $2) / ($5 - $6), ($3 - $4) / ($5 - $6)}' > "$out/$path-$round.cpu"
  done
  order=("${order[@]:1}" "${order[0]}")
done
python3 - "$out" "$rounds" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
paths = [("direct", "upstream direct"), ("bare", "bare proxy (floor)"),
         ("v1", "ragway /v1/chat/completions"), ("generate", "ragway /generate")]
runs = {path: [json.load(open(f"{out}/{path}-{r}.json")) for r in range(1, rounds + 1)]
        for path, _ in paths}
med = lambda path, metric, q: statistics.median(r[metric][q] for r in runs[path])
# Cores used during each run by the proxy the path goes through, and by the fake.
cores = {path: [tuple(map(float, open(f"{out}/{path}-{r}.cpu").read().split()))
                for r in range(1, rounds + 1)] for path, _ in paths}
cores_med = lambda path, i: statistics.median(c[i] for c in cores[path])
print(f"{'path (median of rounds)':<30} {'streams':>8} {'errors':>7}  {'TTFB p50 / p99 (ms)':>21}  "
      f"{'TTFT p50 / p99 (ms)':>21}  {'gap p50 / p99 / max (ms)':>26}  {'cores: proxy / fake':>19}")
for path, name in paths:
    requests = sum(r["requests"] for r in runs[path])
    errors = sum(r["errors"] for r in runs[path])
    gap_max = max(r["gap_ms"]["max"] for r in runs[path])
    proxy_cores = f"{cores_med(path, 0):.2f}" if path != "direct" else "-"
    print(f"{name:<30} {requests:>8} {errors:>7}  {med(path, 'ttfb_ms', 'p50'):>9.2f} / "
          f"{med(path, 'ttfb_ms', 'p99'):>8.2f}  {med(path, 'ttft_ms', 'p50'):>9.2f} / "
          f"{med(path, 'ttft_ms', 'p99'):>8.2f}  {med(path, 'gap_ms', 'p50'):>7.2f} / "
          f"{med(path, 'gap_ms', 'p99'):>7.2f} / {gap_max:>7.2f}  {proxy_cores:>11} / {cores_med(path, 1):.2f}")
def added(path, base, metric, q):
    each = [r[metric][q] - b[metric][q] for r, b in zip(runs[path], runs[base])]
    return statistics.median(each), " ".join(f"{x:+.2f}" for x in each)
for path, name in paths[1:]:
    (t50, _), (t99, t99_rounds) = added(path, "direct", "ttfb_ms", "p50"), added(path, "direct", "ttfb_ms", "p99")
    (f50, _), (f99, _) = added(path, "direct", "ttft_ms", "p50"), added(path, "direct", "ttft_ms", "p99")
    print(f"through {name}: added TTFB p50 {t50:+.2f} ms, p99 {t99:+.2f} ms (rounds: {t99_rounds}); "
          f"added TTFT p50 {f50:+.2f} ms, p99 {f99:+.2f} ms")
for path, name in paths[2:]:
    (t50, _), (t99, t99_rounds) = added(path, "bare", "ttfb_ms", "p50"), added(path, "bare", "ttfb_ms", "p99")
    print(f"{name} over the bare proxy: TTFB p50 {t50:+.2f} ms, p99 {t99:+.2f} ms (rounds: {t99_rounds})")
PY
