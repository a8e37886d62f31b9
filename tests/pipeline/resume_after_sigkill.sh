#!/usr/bin/env bash
# A pretraining run killed with SIGKILL mid-training and resumed (--resume) ends bit-identical to an
# uninterrupted one: every step's loss and gradient norm, and the final weights.
llm=$1 work=$2
source "$(dirname "$0")/common.sh"
rm -rf "$work" && mkdir -p "$work"
make_tokenizer "$work/tok"
# Batches of 8 x 64 make a step take long enough (~0.1 s) for the kill to land between checkpoints.
args=(--tokenizer "$work/tok" "${TINY[@]}" --set train.batch_size=8 --set train.seq_len=64 --set train.max_steps=40
  --set train.checkpoint_interval=10)
run() { "$llm" pretrain --run "$1" "${args[@]}" "${@:2}"; }

run "$work/a" >"$work/a.log" 2>&1 || fail "the uninterrupted run failed: $(tail -3 "$work/a.log")"

# Kill the second run once step 15 is logged: its step-10 checkpoint is complete, steps 11-15 are lost.
"$llm" pretrain --run "$work/b" "${args[@]}" >"$work/b.log" 2>&1 &  # no function: $! must be llm itself
pid=$!
for _ in $(seq 1200); do
  grep -q '"step":15,' "$work/b/pretrain/metrics.jsonl" 2>/dev/null && break
  sleep 0.01
done
kill -9 "$pid"
status=0
wait "$pid" || status=$?
[ "$status" -eq 137 ] || fail "the run was not killed by SIGKILL (status $status): it may have finished first"
[ ! -d "$work/b/pretrain/final" ] || fail "the killed run got to write final/"

run "$work/b" --resume >"$work/b2.log" 2>&1 || fail "the resumed run failed: $(tail -3 "$work/b2.log")"
grep -q "resumed from .*step_000000[12]0" "$work/b2.log" || fail "no 'resumed from' line: $(head -5 "$work/b2.log")"

python3 - "$work/a/pretrain/metrics.jsonl" "$work/b/pretrain/metrics.jsonl" <<'PY' || fail "the losses differ"
import json, sys
def steps(path):
    return {r["step"]: (r["loss"], r["grad_norm"]) for r in map(json.loads, open(path)) if "loss" in r}
a, b = steps(sys.argv[1]), steps(sys.argv[2])
assert sorted(a) == sorted(b) == list(range(1, 41)), (sorted(a), sorted(b))
bad = [s for s in a if a[s] != b[s]]
assert not bad, "steps with different loss or gradient norm: %s" % [(s, a[s], b[s]) for s in bad]
print("all 40 steps: loss and gradient norm bit-identical")
PY
cmp "$work/a/pretrain/final/model.safetensors" "$work/b/pretrain/final/model.safetensors" ||
  fail "the final weights differ"
echo "resume_after_sigkill: the resumed run equals the uninterrupted one, bit for bit"
