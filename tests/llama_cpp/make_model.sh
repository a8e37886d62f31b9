#!/usr/bin/env bash
# The model the llama.cpp tests export: the main job in miniature. Lesson 01's BPE (1,024 tokens with
# the chat tokens) trained on the first 1 MB of data/austen, then the quick preset's model
# (configs/quick.yaml: tiny, dtype auto, WSD) pretrained for 250 steps of 8 x 128 tokens - enough
# for next-token distributions that are far from flat, so a greedy continuation does not hinge on
# near-ties. About 30 s on two cores.
#
# And small random models in the layouts of today's models with their real tokenizers (Qwen3's,
# Llama 3.2's, SmolLM2's; tests/interop/hf_reference.py tiny-model), whose tokenizers llama.cpp must
# split exactly as ours.
#
#   bash tests/llama_cpp/make_model.sh <llm> <out>      writes <out>/run/pretrain/final and <out>/{qwen3,llama3,smollm2}
set -euo pipefail
llm=$1 out=$2
rm -rf "$out" && mkdir -p "$out"
head -c 1000000 data/austen/train.txt >"$out/corpus.txt"
"$llm" tokenizer train --input "$out/corpus.txt" --vocab-size 1024 --chat --out "$out/tokenizer" >"$out/tokenizer.log"
"$llm" pretrain --config configs/quick.yaml --run "$out/run" --tokenizer "$out/tokenizer" --samples 0 \
  --set train.max_steps=250 --set train.batch_size=8 --set train.seq_len=128 --set train.warmup_steps=20 \
  --set train.eval_interval=250 --set train.eval_batches=2 --set train.checkpoint_interval=250 \
  --set train.log_interval=50 >"$out/pretrain.log" 2>&1 || { tail -5 "$out/pretrain.log" >&2; exit 1; }
grep -E "validation" "$out/pretrain.log" | tail -1
for family in qwen3:.cache/hf/qwen3/models llama3:.cache/hf/llama3_2/models smollm2:data/hf/smollm2_style; do
  /usr/bin/python3 tests/interop/hf_reference.py tiny-model --family "${family%%:*}" --tokenizer-dir "${family#*:}" \
    --out "$out/${family%%:*}" >/dev/null
done
