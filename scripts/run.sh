#!/usr/bin/env bash
# The main job (README): set up the machine, build the full system, and run the pipeline on the
# built-in corpus (data/austen): a tokenizer, pretraining of the lesson 03-05 Llama with the quick
# preset (configs/quick.yaml), samples from it, its validation bits per byte on the held-out novel
# before and after, and its export as a Hugging Face model folder.
#
#   bash scripts/run.sh                       the reference implementation (solutions/)
#   bash scripts/run.sh --tree curriculum     your own code (curriculum/)
#   bash scripts/run.sh --out runs/mine       where to write (default: runs/<date-time>; never overwritten)
#   bash scripts/run.sh --set train.max_steps=50    pass overrides to the pretraining (repeatable)
set -euo pipefail
cd "$(dirname "$0")/.."

tree=solutions
out="runs/$(date +%Y%m%d-%H%M%S)"
sets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --tree) tree=${2:?--tree needs solutions or curriculum}; shift 2 ;;
    --out) out=${2:?--out needs a directory}; shift 2 ;;
    --set) sets+=(--set "${2:?--set needs section.key=value}"); shift 2 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown option '$1'; valid: --tree solutions|curriculum, --out DIR, --set KEY=VALUE" >&2; exit 2 ;;
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
cmake --build --preset "$preset" --target llm
llm="$build/programs/llm"
start=$SECONDS

echo
echo "== 1. tokenizer: byte-level BPE, 4,096 tokens with the chat special tokens, trained on data/austen/train.txt =="
"$llm" tokenizer train --input data/austen/train.txt --vocab-size 4096 --chat --out "$out/tokenizer"
sample="It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife."
echo "encoding of: $sample"
"$llm" tokenizer encode --tokenizer "$out/tokenizer" --text "$sample" --format tokens
echo "compression on the held-out novel (data/austen/val.txt), ours, then GPT-2's 50,257 tokens:"
"$llm" tokenizer encode --tokenizer "$out/tokenizer" --input data/austen/val.txt --format stats | grep bytes/token
"$llm" tokenizer encode --gpt2 .cache/gpt2 --input data/austen/val.txt --format stats | grep bytes/token

echo
echo "== 2. pretraining: the quick preset (configs/quick.yaml) =="
"$llm" pretrain --config configs/quick.yaml --run "$out" "${sets[@]}"

echo
echo "== 3. the trained model writes =="
"$llm" generate --model "$out/pretrain/final" --prompt "It was a fine morning, and Elizabeth" --max-new-tokens 80 \
  --temperature 0.8 --top-k 50 --seed 1

echo
echo "== 4. export: final/ is a Hugging Face folder; the same weights in bf16 =="
"$llm" export --model "$out/pretrain/final" --out "$out/export-bf16" --dtype bfloat16

summary="$out/pretrain/summary.json"
bpb() { python3 -c "import json,sys; print('%.3f' % json.load(open(sys.argv[1]))[sys.argv[2]])" "$summary" "$1"; }
echo
echo "run.sh: done in $((SECONDS - start)) s (after the build). Validation bits per byte on the held-out novel:" \
  "$(bpb val_bpb_before) before training, $(bpb val_bpb_after) after."
echo "  tokenizer      $out/tokenizer"
echo "  pretraining    $out/pretrain  (config.yaml, metrics.jsonl, loss.png, samples.txt, summary.json)"
echo "  model folder   $out/pretrain/final  (Hugging Face: AutoModelForCausalLM.from_pretrained works on it)"
echo "  bf16 copy      $out/export-bf16"
echo "  try:           $llm generate --model $out/pretrain/final --prompt \"Mr. Darcy\""
