#!/usr/bin/env bash
# Bad input gets a clear message, exit status 2 for usage errors, and nothing is overwritten or
# half-written. A corrupted checkpoint is skipped with its reason; a loss that stops being finite
# ends the run with status 1 and the last good checkpoint kept.
llm=$1 work=$2
source "$(dirname "$0")/common.sh"
rm -rf "$work" && mkdir -p "$work"
make_tokenizer "$work/tok"

expect() {  # expect STATUS NEEDLE -- command...
  local want=$1 needle=$2
  shift 3
  local out status=0
  out=$("$@" 2>&1) || status=$?
  [ "$status" -eq "$want" ] || fail "'$*' exited $status, expected $want: $out"
  grep -qF -- "$needle" <<<"$out" || fail "'$*' did not say '$needle': $out"
}
expect 2 "unknown command 'pretrian'" -- "$llm" pretrian
expect 2 "valid commands" -- "$llm" pretrian
expect 2 "--bogus" -- "$llm" pretrain --run "$work/x" --bogus
expect 2 "did you mean 'learning_rate'" -- "$llm" pretrain --run "$work/x" --tokenizer "$work/tok" --set train.lerning_rate=1
expect 2 "train.max_steps must be" -- "$llm" pretrain --run "$work/x" --tokenizer "$work/tok" --set train.max_steps=0
expect 2 "no tokenizer in" -- "$llm" pretrain --run "$work/nothing-here"
expect 2 "--resume: there is no" -- "$llm" pretrain --run "$work/x" --tokenizer "$work/tok" --resume
expect 2 "not in range" -- "$llm" generate --model "$work/tok" --prompt hi --temperature=-1
[ ! -e "$work/x" ] || [ -z "$(ls -A "$work/x")" ] || fail "a failed start left files in $work/x"

# A finished run is never overwritten.
"$llm" pretrain --run "$work/r" --tokenizer "$work/tok" "${TINY[@]}" --set train.max_steps=8 \
  --set train.checkpoint_interval=4 >"$work/r.log" 2>&1 || fail "the run failed: $(tail -3 "$work/r.log")"
before=$(find "$work/r" -type f -exec sha256sum {} + | sort)
expect 2 "already exists" -- "$llm" pretrain --run "$work/r" --tokenizer "$work/tok" "${TINY[@]}"
[ "$before" = "$(find "$work/r" -type f -exec sha256sum {} + | sort)" ] || fail "the refused run changed files"
expect 2 "already exists" -- "$llm" export --model "$work/r/pretrain/final" --out "$work/r/pretrain/final"
# GGUF: a dtype it has not, a dtype only GGUF has, a model llama.cpp cannot run; no file is left behind.
expect 2 "int4" -- "$llm" export --model "$work/r/pretrain/final" --format gguf --out "$work/m.gguf" --dtype int4
expect 2 "for --format gguf" -- "$llm" export --model "$work/r/pretrain/final" --out "$work/q8" --dtype q8_0
"$llm" pretrain --run "$work/geglu" --tokenizer "$work/tok" "${TINY[@]}" --set model.mlp_type=geglu \
  --set train.max_steps=2 >"$work/geglu.log" 2>&1 || fail "the geglu run failed: $(tail -3 "$work/geglu.log")"
expect 1 "SwiGLU" -- "$llm" export --model "$work/geglu/pretrain/final" --format gguf --out "$work/geglu.gguf"
[ ! -e "$work/geglu.gguf" ] && [ ! -e "$work/geglu.gguf.tmp" ] || fail "a refused GGUF export left a file"

# A flipped byte in the newest checkpoint: resume says why it skips it and uses the previous one.
ck="$work/r/pretrain/checkpoints/step_00000008/model.safetensors"
printf '\x42' | dd of="$ck" bs=1 seek=200 conv=notrunc status=none
out=$("$llm" pretrain --run "$work/r" --tokenizer "$work/tok" "${TINY[@]}" --set train.max_steps=10 \
  --set train.checkpoint_interval=4 --resume 2>&1) || fail "resume after corruption failed: $out"
grep -q "skipped .*step_00000008.*checksum mismatch" <<<"$out" || fail "no skip message: $out"
grep -q "resumed from .*step_00000004" <<<"$out" || fail "did not fall back to step 4: $out"

# A learning rate that blows the weights up: status 1, "not finite", the good checkpoint kept.
status=0
out=$("$llm" pretrain --run "$work/nan" --tokenizer "$work/tok" "${TINY[@]}" --set train.max_steps=20 \
  --set train.learning_rate=1e30 --set train.min_lr=0 --set train.warmup_steps=0 --set train.grad_clip=0 \
  --set train.checkpoint_interval=1 2>&1) || status=$?
[ "$status" -eq 1 ] || fail "a diverging run exited $status: $out"
grep -q "not finite" <<<"$out" || fail "no 'not finite' message: $out"
grep -q "last good checkpoint" <<<"$out" || fail "the message does not name the last good checkpoint: $out"
[ ! -d "$work/nan/pretrain/final" ] || fail "a diverged run wrote final/"
echo "bad_input: every bad input was refused clearly and nothing was lost"
