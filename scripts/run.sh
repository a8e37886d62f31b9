#!/usr/bin/env bash
# The main job (README): set up the machine, build the full system, and run the pipeline on the
# built-in corpus (data/austen). Until the training pipeline lands, it runs what exists: train a
# 4,096-token BPE tokenizer, save it, show an encoding and the compression it reaches on the
# held-out novel; then build the Llama-style model of lessons 03-05 and measure it training and
# generating (with and without the KV cache).
#
#   bash scripts/run.sh                       the reference implementation (solutions/)
#   bash scripts/run.sh --tree curriculum     your own code (curriculum/)
#   bash scripts/run.sh --out runs/mine       where to write (default: runs/<date-time>; never overwritten)
set -euo pipefail
cd "$(dirname "$0")/.."

tree=solutions
out="runs/$(date +%Y%m%d-%H%M%S)"
while [ $# -gt 0 ]; do
  case "$1" in
    --tree) tree=${2:?--tree needs solutions or curriculum}; shift 2 ;;
    --out) out=${2:?--out needs a directory}; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown option '$1'; valid: --tree solutions|curriculum, --out DIR" >&2; exit 2 ;;
  esac
done
case "$tree" in
  solutions) preset=solutions; build=build-solutions ;;
  curriculum) preset=default; build=build ;;
  *) echo "run.sh: --tree '$tree' is not one of: solutions, curriculum" >&2; exit 2 ;;
esac
if [ -e "$out" ]; then
  echo "run.sh: '$out' already exists; choose another --out (nothing is overwritten)" >&2
  exit 2
fi

bash scripts/setup.sh
cmake --preset "$preset" >/dev/null
cmake --build --preset "$preset"
bin="$build/programs"

echo
echo "== 1. tokenizer: byte-level BPE, 4096 tokens, trained on data/austen/train.txt =="
"$bin/llm-tokenizer" train --input data/austen/train.txt --vocab-size 4096 --special "<|endoftext|>" \
  --out "$out/tokenizer"
sample="It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife."
echo
echo "encoding of: $sample"
"$bin/llm-tokenizer" encode --tokenizer "$out/tokenizer" --text "$sample" --format tokens
"$bin/llm-tokenizer" encode --tokenizer "$out/tokenizer" --text "$sample" --format ids
echo
echo "compression on the held-out novel (data/austen/val.txt), ours:"
"$bin/llm-tokenizer" encode --tokenizer "$out/tokenizer" --input data/austen/val.txt --format stats
echo
echo "the same text with GPT-2's 50,257-token vocabulary:"
"$bin/llm-tokenizer" encode --gpt2 .cache/gpt2 --input data/austen/val.txt --format stats
echo
echo "== 2. model: the tiny Llama of lessons 03-05 (1.8M parameters), training and generation speed =="
"$bin/llm-bench-model" --preset tiny --steps 5 | tee "$out/model-benchmark.txt"
echo
echo "run.sh: done; outputs in $out"
