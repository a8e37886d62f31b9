#!/usr/bin/env bash
# A Hugging Face model folder run by ours, by the PyTorch-eager peer and by llama.cpp, side by side:
# load time, resident memory against the weights' bytes, prefill and decode speed with the KV cache.
#
#   ours       build-solutions/programs/llm-bench-hf-model (the folder through lessons 01-05's code)
#   peer       benchmarks/hf_model_peer.py (the same model in plain PyTorch, Debian's python3-torch 1.13
#              on the same ATen; tests/interop/hf_reference.py's math plus a KV cache, the weights
#              mmapped as the safetensors library maps them)
#   llama.cpp  benchmarks/hf_model_llama_cpp.mjs (the same weights as a BF16 GGUF, made once by
#              llm export --format gguf, run by node-llama-cpp's prebuilt llama.cpp; skipped, saying
#              so, if scripts/setup.sh could not install it)
#
# Each run is its own process (peak resident memory is a per-process high-water mark); ours and the
# peer alternate, --rounds times each, so that the shared machine's drift hits both. Prints the
# medians (min-max) and the ratios of ours to each of the others, then the machine.
#
#   bash benchmarks/hf_model.sh [--rounds 3] [--threads 2] [--model DIR] [--prompt-tokens 512] [--new-tokens 128]
#
# Without --model: a random bf16 folder of Llama-3.2-1B's shape, made once (about 2.5 GB, 40 s) in
# build-solutions/bench/llama-3.2-1b-shape and reused afterwards; --model DIR runs any Llama, Qwen2
# or Qwen3 folder (a downloaded model, say). Writes every run's JSON line to
# build-solutions/bench/hf_model-<date>.jsonl.
# Needs: cmake --preset solutions && cmake --build --preset solutions --target llm-bench-hf-model
set -euo pipefail

rounds=3 threads=2 model="" prompt_tokens=512 new_tokens=128
usage="usage: bash benchmarks/hf_model.sh [--rounds N] [--threads N] [--model DIR] [--prompt-tokens N] [--new-tokens N]"
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds | --threads | --model | --prompt-tokens | --new-tokens)
      [ $# -ge 2 ] || { echo "hf_model.sh: $1 needs a value; $usage" >&2; exit 2; }
      case "$1" in
        --rounds) rounds=$2 ;; --threads) threads=$2 ;; --model) model=$2 ;;
        --prompt-tokens) prompt_tokens=$2 ;; --new-tokens) new_tokens=$2 ;;
      esac
      shift 2 ;;
    -h | --help) echo "$usage"; exit 0 ;;
    *) echo "hf_model.sh: unknown argument '$1'; $usage" >&2; exit 2 ;;
  esac
done
for n in "$rounds" "$threads" "$prompt_tokens" "$new_tokens"; do
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "hf_model.sh: '$n' is not a positive integer; $usage" >&2; exit 2; }
done
if [ -n "$model" ]; then  # relative to where the script was called from
  [ -d "$model" ] || { echo "hf_model.sh: --model $model: no such folder" >&2; exit 1; }
  model=$(cd "$model" && pwd)
fi
cd "$(dirname "$0")/.."

ours=build-solutions/programs/llm-bench-hf-model
[ -x "$ours" ] || {
  echo "hf_model.sh: $ours not found; build it: cmake --preset solutions && cmake --build --preset solutions --target llm-bench-hf-model" >&2
  exit 1
}
/usr/bin/python3 -c "import torch" 2>/dev/null || {
  echo "hf_model.sh: the peer needs Debian's python3-torch, importable by /usr/bin/python3 (apt-get install python3-torch)" >&2
  exit 1
}

mkdir -p build-solutions/bench
if [ -z "$model" ]; then
  model=build-solutions/bench/llama-3.2-1b-shape
  if [ ! -f "$model/config.json" ]; then
    tokenizers=.cache/hf/llama3_2/models
    [ -f "$tokenizers/tokenizer.json" ] || {
      echo "hf_model.sh: $tokenizers/tokenizer.json not found (Llama 3.2's tokenizer, copied into the bench folder); or pass --model DIR" >&2
      exit 1
    }
    echo "hf_model.sh: making $model, random bf16 weights of Llama-3.2-1B's shape (about 2.5 GB, 40 s; once, reused afterwards)" >&2
    rm -rf "$model.tmp"  # a folder appears only complete: written aside, then renamed
    /usr/bin/python3 tests/interop/hf_reference.py bench-model --out "$model.tmp" --tokenizer-dir "$tokenizers" >&2
    mv "$model.tmp" "$model"
  fi
elif [ ! -f "$model/config.json" ]; then
  echo "hf_model.sh: --model $model: no config.json there (a Hugging Face model folder: config.json, model.safetensors or its shards, tokenizer.json)" >&2
  exit 1
fi

# llama.cpp reads the same weights as a BF16 GGUF, exported once next to the bench folders.
gguf=build-solutions/bench/$(basename "$model")-bf16.gguf
llama_cpp=yes
if ! node tests/llama_cpp/check.mjs --probe >/dev/null 2>"$gguf.probe"; then
  echo "hf_model.sh: llama.cpp is left out: $(cat "$gguf.probe")" >&2
  llama_cpp=no
elif [ ! -f "$gguf" ]; then
  echo "hf_model.sh: exporting $model as $gguf (BF16, once) for llama.cpp" >&2
  build-solutions/programs/llm export --model "$model" --format gguf --dtype bfloat16 --out "$gguf" >&2
fi
rm -f "$gguf.probe"

out=build-solutions/bench/hf_model-$(date +%Y%m%d-%H%M%S).jsonl
: >"$out"
args=(--model "$model" --threads "$threads" --prompt-tokens "$prompt_tokens" --new-tokens "$new_tokens")
log=$(mktemp)
trap 'rm -f "$log" "$log.err"' EXIT

# run NAME COMMAND...: one process; its JSON line (the last line of stdout starting with '{') goes to $out
run() {
  local name=$1
  shift
  if ! "$@" >"$log" 2>"$log.err"; then
    echo "hf_model.sh: $name failed: $*" >&2
    cat "$log" "$log.err" >&2
    exit 1
  fi
  local line
  line=$(grep '^{' "$log" | tail -n 1) || { echo "hf_model.sh: $name printed no JSON line: $*" >&2; cat "$log" "$log.err" >&2; exit 1; }
  echo "$line" >>"$out"
  python3 - "$name" "$line" <<'PY'
import json, sys
r = json.loads(sys.argv[2])
print(f"  {sys.argv[1]:<5} load {r['load_seconds']:6.2f} s  prefill {r['prefill_tokens_per_second']:8.1f} tokens/s"
      f"  decode {r['decode_tokens_per_second']:7.2f} tokens/s  peak RSS {r['peak_rss_bytes'] / 1e9:5.2f} GB", file=sys.stderr)
PY
}

echo "hf_model.sh: $model, $threads threads, prompt $prompt_tokens + $new_tokens new tokens, $rounds rounds -> $out" >&2
for r in $(seq "$rounds"); do
  echo "round $r/$rounds" >&2
  run ours "$ours" "${args[@]}"
  run peer /usr/bin/python3 benchmarks/hf_model_peer.py "${args[@]}"
  if [ "$llama_cpp" = yes ]; then
    run llama node benchmarks/hf_model_llama_cpp.mjs --gguf "$gguf" --threads "$threads" \
      --prompt-tokens "$prompt_tokens" --new-tokens "$new_tokens"
  fi
done

cpu=$(grep -m1 '^model name' /proc/cpuinfo | sed 's/^model name[[:space:]]*:[[:space:]]*//' || true)
python3 - "$out" "$(nproc)" "${cpu:-unknown}" "${OPENBLAS_CORETYPE:-}" "$(date '+%Y-%m-%d %H:%M %Z')" <<'PY'
import json, statistics, sys

path, nproc, cpu, coretype, date = sys.argv[1:]
rows = [json.loads(line) for line in open(path)]
programs = list(dict.fromkeys(r["program"] for r in rows))  # ours first, in run order
runs = {p: [r for r in rows if r["program"] == p] for p in programs}
first = rows[0]
GB = 1e9
print(f"\n{first['model']}: {first['architecture']}, {first['parameters'] / 1e9:.3f} B parameters, {first['dtype']}, "
      f"weights {first['weight_bytes'] / GB:.3f} GB; {first['threads']} threads, prompt {first['prefill_tokens']} tokens, "
      f"{first['decode_tokens']} decoded; medians (min-max) of {len(runs[programs[0]])} rounds")
metrics = [  # (label, value of a run, format)
    ("load (s)", lambda r: r["load_seconds"], "{:.3f}"),
    ("RSS before load (GB)", lambda r: r["rss_before_load_bytes"] / GB, "{:.2f}"),
    ("RSS after load (GB)", lambda r: r["rss_after_load_bytes"] / GB, "{:.2f}"),
    ("RSS after load / weights", lambda r: r["rss_after_load_bytes"] / r["weight_bytes"], "{:.2f}"),
    ("peak RSS (GB)", lambda r: r["peak_rss_bytes"] / GB, "{:.2f}"),
    ("prefill (tokens/s)", lambda r: r["prefill_tokens_per_second"], "{:.1f}"),
    ("decode (tokens/s)", lambda r: r["decode_tokens_per_second"], "{:.2f}"),
]
names = [p.split(" (")[0] for p in programs]
width = 28
short = [n.split(" ")[0] for n in names]  # "llama.cpp v0.4.0" -> "llama.cpp" in the ratio headers
rw = max([14] + [len("ours/" + n) + 3 for n in short[1:]])
print(f"{'':<26}" + "".join(f"{n:>{width}}" for n in names) + "".join(f"{'ours/' + n:>{rw}}" for n in short[1:]))
for label, value, fmt in metrics:
    cells, medians = [], []
    for p in programs:
        values = [value(r) for r in runs[p]]
        m = statistics.median(values)
        medians.append(m)
        cells.append(f"{fmt.format(m)} ({fmt.format(min(values))}-{fmt.format(max(values))})")
    ratios = "".join(f"{medians[0] / m:{rw}.2f}" if m else f"{'':>{rw}}" for m in medians[1:])
    print(f"{label:<26}" + "".join(f"{c:>{width}}" for c in cells) + ratios)
for p, n in zip(programs, names):
    print(f"  {n}: {p}")
print(f"machine: {nproc} cores (nproc), {cpu}" + (f", OPENBLAS_CORETYPE={coretype}" if coretype else "") + f"; {date}")
print(f"runs: {path}")
PY
