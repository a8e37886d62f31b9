#!/usr/bin/env bash
# The alignment chain for a few steps on a tiny model: pretrain -> sft -> dpo -> grpo, and ppo from
# the SFT model. Each stage writes its folder (config.yaml, metrics.jsonl with the stage's metrics,
# summary.json with before/after figures, a loadable final/), a killed-and-resumed SFT run continues
# from its checkpoint, and bad settings are refused with a message naming them.
llm=$1 work=$2
source "$(dirname "$0")/common.sh"
rm -rf "$work" && mkdir -p "$work"
make_tokenizer "$work/tok"
"$llm" pretrain --run "$work/run" --tokenizer "$work/tok" "${TINY[@]}" --set train.max_steps=4 >"$work/pretrain.log" 2>&1 ||
  fail "pretrain failed: $(tail -3 "$work/pretrain.log")"

small=(--set tasks.test_size=12 --set tasks.max_new_tokens=4 --set train.threads=1 --set train.log_interval=1
  --set train.warmup_steps=1)
"$llm" sft --model "$work/run/pretrain/final" --run "$work/run" "${small[@]}" --set train.max_steps=6 \
  --set train.batch_size=8 --set train.checkpoint_interval=3 >"$work/sft.log" 2>&1 || fail "sft failed: $(tail -3 "$work/sft.log")"
"$llm" dpo --model "$work/run/sft/final" --run "$work/run" "${small[@]}" --set train.max_steps=3 \
  --set train.batch_size=4 >"$work/dpo.log" 2>&1 || fail "dpo failed: $(tail -3 "$work/dpo.log")"
"$llm" grpo --model "$work/run/dpo/final" --run "$work/run" "${small[@]}" --set train.max_steps=2 \
  --set grpo.prompts_per_step=2 --set grpo.group_size=4 >"$work/grpo.log" 2>&1 || fail "grpo failed: $(tail -3 "$work/grpo.log")"
"$llm" ppo --model "$work/run/sft/final" --run "$work/run" "${small[@]}" --set train.max_steps=4 \
  --set ppo.epochs=2 --set ppo.prompts_per_rollout=4 >"$work/ppo.log" 2>&1 || fail "ppo failed: $(tail -3 "$work/ppo.log")"

python3 - "$work/run" <<'PY' || fail "a stage folder is incomplete"
import json, os, sys
run = sys.argv[1]
need = {
    "sft": ["loss", "grad_norm", "lr"],
    "dpo": ["loss", "rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins"],
    "grpo": ["loss", "reward_mean", "reward_std", "frac_reward_zero_std", "completion_length", "clipped_completions", "kl", "clip_ratio"],
    "ppo": ["loss", "score_mean", "kl", "pg_loss", "vf_loss", "clipfrac", "approx_kl"],
}
for stage, keys in need.items():
    d = os.path.join(run, stage)
    for f in ["config.yaml", "metrics.jsonl", "summary.json", "final/model.safetensors", "final/config.json"]:
        assert os.path.exists(os.path.join(d, f)), f"{stage}: no {f}"
    lines = [json.loads(l) for l in open(os.path.join(d, "metrics.jsonl"))]
    assert lines, f"{stage}: empty metrics.jsonl"
    for k in keys:
        assert all(k in l for l in lines), f"{stage}: metrics.jsonl lines lack '{k}'"
    s = json.load(open(os.path.join(d, "summary.json")))
    for k in ["accuracy_before", "accuracy_after", "test_problems", "steps", "seconds"]:
        assert k in s, f"{stage}: summary.json lacks '{k}'"
    assert s["test_problems"] == 12, s["test_problems"]
s = json.load(open(os.path.join(run, "dpo", "summary.json")))
assert 0 <= s["preference_accuracy_before"] <= 1 and s["preference_pairs"] > 0, s
print("every stage folder complete, with its metrics")
PY

# The stages chain: the GRPO model answers in the chat template.
"$llm" generate --model "$work/run/grpo/final" --chat --prompt "What is 12 + 34?" --max-new-tokens 4 \
  --temperature 0 >"$work/gen.log" 2>&1 || fail "generate from grpo/final failed: $(tail -3 "$work/gen.log")"

# Resume: a second SFT run into the same folder is refused without --resume, and with it continues
# from the newest checkpoint (step 6 of 6: nothing left but the final evaluation).
if "$llm" sft --model "$work/run/pretrain/final" --run "$work/run" "${small[@]}" >"$work/again.log" 2>&1; then
  fail "a second sft run overwrote the first"
fi
"$llm" sft --model "$work/run/pretrain/final" --run "$work/run" "${small[@]}" --set train.max_steps=6 \
  --set train.batch_size=8 --set train.checkpoint_interval=3 --resume >"$work/resume.log" 2>&1 ||
  fail "sft --resume failed: $(tail -3 "$work/resume.log")"
grep -q "resumed from .*step_00000006" "$work/resume.log" || fail "no 'resumed from' line: $(grep -i resum "$work/resume.log")"

# Bad input: named, non-zero exit, nothing written.
expect_error() {
  local what=$1; shift
  if "$llm" "$@" >"$work/bad.log" 2>&1; then fail "$what was accepted"; fi
  for text in "${EXPECT[@]}"; do
    grep -q -- "$text" "$work/bad.log" || fail "$what: the message lacks '$text': $(cat "$work/bad.log")"
  done
}
EXPECT=("lossy" "sigmoid")
expect_error "an unknown DPO loss" dpo --model "$work/run/sft/final" --run "$work/bad1" --set dpo.loss_type=lossy
[ ! -e "$work/bad1/dpo" ] || fail "a refused dpo run left a folder"
EXPECT=("multiply" "sub" "capital")
expect_error "an unknown task" sft --model "$work/run/pretrain/final" --run "$work/bad2" --set tasks.names=add,multiply
EXPECT=("group_size" "1")
expect_error "a group of one" grpo --model "$work/run/sft/final" --run "$work/bad3" --set grpo.group_size=1
EXPECT=("--model")
expect_error "a missing model folder" sft --model "$work/nowhere" --run "$work/bad4"
echo "alignment_stages: sft, dpo, grpo and ppo ran, logged, resumed and refused bad input"
