#!/usr/bin/env bash
# llm launch --nproc 2: two processes on 127.0.0.1 with half the batch each train the same model as
# one process with the whole batch (the same blocks, summed in another order: fp32 rounding).
llm=$1 work=$2
source "$(dirname "$0")/common.sh"
rm -rf "$work" && mkdir -p "$work"
make_tokenizer "$work/tok"
common=(--tokenizer "$work/tok" "${TINY[@]}" --set model.dropout=0 --set train.max_steps=6 --set train.checkpoint_interval=6)
"$llm" pretrain --run "$work/one" "${common[@]}" --set train.batch_size=4 >"$work/one.log" 2>&1 ||
  fail "one process: $(tail -3 "$work/one.log")"
port=$((20000 + RANDOM % 20000))
"$llm" launch --nproc 2 --master-port "$port" -- pretrain --run "$work/two" "${common[@]}" --set train.batch_size=2 \
  >"$work/two.log" 2>&1 || fail "two processes: $(tail -5 "$work/two.log")"
grep -q "processes 2" "$work/two.log" || fail "the launched run did not see 2 processes"
python3 - "$work/one/pretrain/metrics.jsonl" "$work/two/pretrain/metrics.jsonl" <<'PY' || fail "the runs differ"
import json, sys
def steps(path):
    return {r["step"]: r["loss"] for r in map(json.loads, open(path)) if "loss" in r}
one, two = steps(sys.argv[1]), steps(sys.argv[2])
assert sorted(one) == sorted(two) == list(range(1, 7)), (sorted(one), sorted(two))
worst = max(abs(one[s] - two[s]) / abs(one[s]) for s in one)
# The same global batch: only the order of the floating-point sums differs (~1e-7 relative per op).
assert worst < 1e-4, "relative loss difference %.3g" % worst
print("6 steps: largest relative loss difference %.2g" % worst)
PY
echo "data_parallel: 2 processes x batch 2 = 1 process x batch 4"
