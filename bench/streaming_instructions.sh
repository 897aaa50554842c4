#!/usr/bin/env bash
# Streaming, in instructions: what ragway executes per streamed answer, against the bare proxy
# (`bare_proxy`: axum in, reqwest out, bytes forwarded untouched), counted by valgrind's
# callgrind. Instruction counts repeat from run to run whatever else the machine is doing (unlike
# time at 500 streams on 2 cores, which moves by half a millisecond at p99), so a change to the
# stream path shows here first; the top functions of each path are listed to say where it goes,
# and the functions ragway executes more of than the bare proxy (its own share), per answer.
# User space only: the kernel's share (sockets, ~60 µs a request) is not counted.
#
# Each path serves STREAMS concurrent streams of WORDS-word answers (one chunk every 20 ms) for
# SECONDS after a warm-up; valgrind runs a program some 50 times slower, so keep STREAMS small.
#
#   bench/streaming_instructions.sh [STREAMS] [SECONDS] [WORDS] [TOP]   (defaults: 5 20 50 12)
#   BIN_DIR=path bench/streaming_instructions.sh …   (prebuilt ragway, ragway-fakes, stream_load, bare_proxy)
set -euo pipefail
cd "$(dirname "$0")/.."
streams=${1:-5}; seconds=${2:-20}; words=${3:-50}; top=${4:-12}
command -v valgrind > /dev/null || { echo "valgrind is needed: apt-get install valgrind" >&2; exit 1; }
pids=(); source bench/lib.sh
release_bins stream_load bare_proxy
out=bench/out/streaming_instructions; rm -rf "$out"; mkdir -p "$out"

TOKIO_WORKER_THREADS=1 start_fakes "$out" --chunk-delay-ms 20 --answer-words "$words"
fast_config "$out/streaming.toml"
callgrind=(valgrind --tool=callgrind --compress-strings=no --compress-pos=no)
RUST_LOG=warn "${callgrind[@]}" --callgrind-out-file="$out/ragway.%p" "$bin/ragway" serve \
  --config "$out/streaming.toml" --bind 127.0.0.1:0 > "$out/ragway.out" 2> "$out/ragway.valgrind" &
ragway_pid=$!; pids+=($!)
"${callgrind[@]}" --callgrind-out-file="$out/bare.%p" "$bin/examples/bare_proxy" \
  --upstream "$upstream/v1/chat/completions" > "$out/bare.out" 2> "$out/bare.valgrind" &
bare_pid=$!; pids+=($!)
for _ in $(seq 600); do
  grep -q listening "$out/ragway.out" 2>/dev/null && grep -q listening "$out/bare.out" 2>/dev/null && break
  sleep 0.1
done
gateway=$(sed -n 's/^ragway listening on //p' "$out/ragway.out")
bare=$(sed -n 's/^bare proxy listening on //p' "$out/bare.out")
[ -n "$gateway" ] && [ -n "$bare" ] || { echo "ragway or bare_proxy did not start under valgrind" >&2; exit 1; }

chat='{"model":"MODEL","stream":true,"messages":[{"role":"user","content":"Explain quantum computing"}]}'
generate='{"prompt":"Explain quantum computing","llm_name":"fast","stream":true}'
load() { TOKIO_WORKER_THREADS=1 "$bin/examples/stream_load" --url "$1" --body "$2" --streams "$streams" --seconds "$3" --ramp-ms 500; }
echo "streaming instructions — $streams streams of $words-word answers for ${seconds}s per path, user space, callgrind"
printf '%-30s %9s %16s %14s\n' path answers instructions "per answer"
# measure NAME PID URL BODY (NAME: v1, generate or bare): zero the counters after a warm-up, stream, dump; one line of figures.
measure() {
  local name=$1 pid=$2
  load "$3" "$4" 5 > /dev/null
  sleep 1; callgrind_control -z "$pid" > /dev/null 2>&1
  load "$3" "$4" "$seconds" > "$out/$name.json"
  sleep 2; callgrind_control -d "$name" "$pid" > /dev/null 2>&1
  sleep 1
  python3 bench/callgrind_top.py "$name" "$out/$name.json" "$streams" "$out"/*."$pid".* "$top" "$out/top.txt" >> "$out/table.txt"
}
measure v1 "$ragway_pid" "$gateway/v1/chat/completions" "${chat/MODEL/fast}"
mv "$out"/ragway."$ragway_pid".1 "$out/v1.callgrind"
measure generate "$ragway_pid" "$gateway/generate" "$generate"
mv "$out"/ragway."$ragway_pid".2 "$out/generate.callgrind"
measure bare "$bare_pid" "$bare/v1/chat/completions" "${chat/MODEL/gpt-4o}"
mv "$out"/bare."$bare_pid".1 "$out/bare.callgrind"
cat "$out/table.txt"; echo; cat "$out/top.txt"; echo
python3 bench/callgrind_top.py --over "ragway /v1" "$out/v1.json" "$out/v1.callgrind" \
  "the bare proxy" "$out/bare.json" "$out/bare.callgrind" "$streams" "$top"
