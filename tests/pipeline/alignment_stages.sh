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
  --set ppo.epochs=2 --set ppo.prompts_per_rollout=4 --set ppo.train_tasks=capital --set ppo.value_warmup_rollouts=1 \
  >"$work/ppo.log" 2>&1 ||
  fail "ppo failed: $(tail -3 "$work/ppo.log")"
grep -q "^ppo: trained task capital: held-out accuracy" "$work/ppo.log" ||
  fail "ppo does not report its trained task: $(tail -3 "$work/ppo.log")"

python3 - "$work/run" <<'PY' || fail "a stage folder is incomplete"
import json, os, sys
run = sys.argv[1]
need = {
    "sft": ["loss", "grad_norm", "lr"],
    "dpo": ["loss", "rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins"],
    "grpo": ["loss", "reward_mean", "reward_std", "frac_reward_zero_std", "completion_length", "clipped_completions", "kl", "clip_ratio"],
    "ppo": ["loss", "score_mean", "kl", "pg_loss", "vf_loss", "clipfrac", "approx_kl", "explained_variance",
            "policy_lr_scale"],
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
    # Paired counts per task partition the overall ones: every held-out problem in exactly one task.
    per = s["paired_per_task"]
    assert sorted(per) == ["add", "capital", "sub"], per
    for k in ["fixed", "broken", "problems"]:
        assert sum(c[k] for c in per.values()) == s["paired"][k], (stage, k, per, s["paired"])
# The RL stages' prompts: every task by default (grpo), only the ones named by train_tasks (ppo).
for stage, tasks in [("grpo", ["add", "sub", "capital"]), ("ppo", ["capital"])]:
    s = json.load(open(os.path.join(run, stage, "summary.json")))
    assert s["train_tasks"] == tasks, (stage, s["train_tasks"])
# PPO's value warm-up: the first rollout (2 steps) trains the value head alone, the policy's lr at 0.
lines = [json.loads(l) for l in open(os.path.join(run, "ppo", "metrics.jsonl"))]
assert [l["policy_lr_scale"] for l in lines] == [0, 0, 1, 1], [(l["step"], l["policy_lr_scale"]) for l in lines]
s = json.load(open(os.path.join(run, "dpo", "summary.json")))
assert 0 <= s["preference_accuracy_before"] <= 1 and s["preference_pairs"] > 0, s
print("every stage folder complete, with its metrics")
PY

# The stages chain: the GRPO model answers in the chat template.
"$llm" generate --model "$work/run/grpo/final" --chat --prompt "What is 12 + 34?" --max-new-tokens 4 \
  --temperature 0 >"$work/gen.log" 2>&1 || fail "generate from grpo/final failed: $(tail -3 "$work/gen.log")"

# LoRA and QLoRA (lesson 11): only the adapters train; the adapter folder is PEFT's layout; final/
# is the merged model. Then llm evaluate (lesson 12) on the SFT model: every section of the report.
"$llm" sft --model "$work/run/pretrain/final" --run "$work/run" "${small[@]}" --set train.max_steps=3 \
  --set train.batch_size=4 --lora 4 >"$work/lora.log" 2>&1 || fail "sft --lora failed: $(tail -3 "$work/lora.log")"
"$llm" sft --model "$work/run/pretrain/final" --run "$work/run" "${small[@]}" --set train.max_steps=3 \
  --set train.batch_size=4 --qlora --set lora.r=4 >"$work/qlora.log" 2>&1 ||
  fail "sft --qlora failed: $(tail -3 "$work/qlora.log")"
"$llm" evaluate --model "$work/run/sft/final" --set eval.mc_items=8 --set eval.pass_problems=4 \
  --set eval.pass_samples=2 --set tasks.test_size=6 --set tasks.max_new_tokens=4 --set eval.val_tokens=3000 \
  >"$work/eval.log" 2>&1 || fail "evaluate failed: $(tail -3 "$work/eval.log")"
python3 - "$work/run" <<'PY' || fail "the LoRA folders or the evaluation report are incomplete"
import json, os, struct, sys
run = sys.argv[1]
for stage, quant in [("sft-lora", "none"), ("sft-qlora", "nf4")]:
    d = os.path.join(run, stage)
    for f in ["config.yaml", "summary.json", "final/model.safetensors", "adapter/adapter_model.safetensors",
              "adapter/adapter_config.json"]:
        assert os.path.exists(os.path.join(d, f)), f"{stage}: no {f}"
    cfg = json.load(open(os.path.join(d, "adapter/adapter_config.json")))
    assert cfg["peft_type"] == "LORA" and cfg["r"] == 4 and "q_proj" in cfg["target_modules"], cfg
    with open(os.path.join(d, "adapter/adapter_model.safetensors"), "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        names = [k for k in json.loads(f.read(n)) if k != "__metadata__"]
    assert "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight" in names, names[:4]
    assert all(".lora_A.weight" in k or ".lora_B.weight" in k for k in names), names
    s = json.load(open(os.path.join(d, "summary.json")))["lora"]
    assert s["quantize"] == quant and 0 < s["trainable_parameters"] < s["parameters_in_memory"], s
    if quant == "nf4":
        assert 0.5 < s["nf4_bytes_per_parameter"] < 0.6, s
r = json.load(open(os.path.join(run, "sft", "evaluation", "report.json")))
assert r["validation"]["bpb"] > 0 and 0 < r["validation"]["tokens"] <= 3000, r["validation"]
for name in ["cloze", "capitals"]:
    m = r["multiple_choice"][name]
    assert m["n"] == 8 and 0 <= m["acc"] <= 1 and 0 <= m["acc_norm"] <= 1, m
assert r["tasks"]["problems"] == 6 and r["pass_at_k"]["n"] == 2 and r["pass_at_k"]["problems"] == 4, r["pass_at_k"]
assert r["pass_at_k"]["pass@1"] <= r["pass_at_k"]["pass@2"], r["pass_at_k"]
assert r["cost"]["training_flops_per_token"] > 6 * r["cost"]["matmul_parameters"], r["cost"]
assert os.path.exists(os.path.join(run, "sft", "evaluation", "report.md"))
print("LoRA and QLoRA folders complete; the evaluation report has every section")
PY
if "$llm" evaluate --model "$work/run/sft/final" --set eval.val_tokens=3000 >"$work/again-eval.log" 2>&1; then
  fail "a second evaluate overwrote the report without --overwrite"
fi
grep -q -- "--overwrite" "$work/again-eval.log" || fail "the refusal does not name --overwrite: $(cat "$work/again-eval.log")"

# Chat (streamed answers, /reset, unknown commands, a conversation too long for the context) and
# the report card of the whole run folder.
printf 'What is 12 + 34?\n/reset\n/help\nWhat is 5 + 5?\n/quit\nnever read\n' |
  "$llm" chat --model "$work/run/grpo/final" --temperature 0 --max-new-tokens 4 >"$work/chat.log" 2>&1 ||
  fail "chat failed: $(tail -3 "$work/chat.log")"
grep -q "a new conversation" "$work/chat.log" || fail "chat: /reset did not start over: $(cat "$work/chat.log")"
grep -q "unknown command '/help'" "$work/chat.log" || fail "chat: /help was not refused: $(cat "$work/chat.log")"
python3 -c "print('word ' * 80)" | "$llm" chat --model "$work/run/grpo/final" >"$work/chat-long.log" 2>&1 ||
  fail "chat with a long message failed: $(tail -3 "$work/chat-long.log")"
grep -q "the model's context is 64. /reset" "$work/chat-long.log" || fail "chat: no context message: $(cat "$work/chat-long.log")"
"$llm" report "$work/run" >"$work/report.log" 2>&1 || fail "report failed: $(tail -3 "$work/report.log")"
for stage in pretrain sft sft-lora sft-qlora dpo grpo ppo; do
  grep -q "^| $stage |" "$work/run/report.md" || fail "report.md has no row for $stage"
done
grep -q "pretrain/loss.png" "$work/run/report.md" || fail "report.md does not show the plots"
grep -qE "^\| sft \|.*\| [0-9.]+ / pass@2 " "$work/run/report.md" || fail "report.md lacks sft's pass@k: $(grep '^| sft' "$work/run/report.md")"

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
EXPECT=("ppo.train_tasks" "multiply" "capital")
expect_error "an unknown task to train on" ppo --model "$work/run/sft/final" --run "$work/bad8" --set ppo.train_tasks=multiply
[ ! -e "$work/bad8" ] || fail "a refused ppo run left a folder"
EXPECT=("ppo.value_warmup_rollouts 2" "train.max_steps 4")
expect_error "a value warm-up as long as the run" ppo --model "$work/run/sft/final" --run "$work/bad9" \
  --set train.max_steps=4 --set ppo.epochs=2 --set ppo.value_warmup_rollouts=2
[ ! -e "$work/bad9" ] || fail "a refused ppo run left a folder"
EXPECT=("--model")
expect_error "a missing model folder" sft --model "$work/nowhere" --run "$work/bad4"
EXPECT=("lora.quantize" "nf4" "int3")
expect_error "an unknown quantisation" sft --model "$work/run/pretrain/final" --run "$work/bad5" --lora 4 --set lora.quantize=int3
EXPECT=("lora.targets" "qkv_proj" "down_proj")
expect_error "an unknown LoRA target" sft --model "$work/run/pretrain/final" --run "$work/bad6" --lora 4 --set lora.targets=qkv_proj
[ ! -e "$work/bad6" ] || fail "a refused sft --lora left a folder"
EXPECT=("eval.pass_samples" "1")
expect_error "pass@k from one sample" evaluate --model "$work/run/sft/final" --out "$work/bad7" --set eval.pass_samples=1
[ ! -e "$work/bad7" ] || fail "a refused evaluate left a folder"
echo "alignment_stages: sft, dpo, grpo and ppo ran, logged, resumed and refused bad input"
