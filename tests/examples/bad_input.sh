#!/usr/bin/env bash
# Bad arguments to one example: each is refused with a message that names the value and exit status
# 2 (usage); a questions file with a bad line fails with status 1, naming the file and the line.
#
#   bad_input.sh NAME PROGRAM WORK_DIR        NAME: train_tiny, compare_sampling or score_choices
set -euo pipefail
name=$1 program=$2 work=$3
run="bash $(dirname "$0")/run.sh"
rm -rf "$work" && mkdir -p "$work"

case $name in
  train_tiny)
    $run 2 "usage: example_train_tiny TEXT_FILE OUT_DIR \[STEPS\]" -- "$program"
    $run 2 "no text file '$work/missing.txt'" -- "$program" "$work/missing.txt" "$work/model"
    $run 2 "STEPS 'ten' is not a whole number" -- "$program" "$0" "$work/model" ten
    $run 2 "'$work' already exists" -- "$program" "$0" "$work"
    [ ! -e "$work/model" ] || { echo "FAIL: a refused run wrote $work/model"; exit 1; } ;;
  compare_sampling)
    $run 2 "usage: example_compare_sampling MODEL_DIR PROMPT \[NEW_TOKENS\]" -- "$program" "$work"
    $run 2 "no model folder '$work/none'" -- "$program" "$work/none" "Hello"
    $run 2 "NEW_TOKENS '0' is not a whole number" -- "$program" "$work" "Hello" 0
    $run 1 "$work: no config.json" -- "$program" "$work" "Hello" ;;
  score_choices)
    $run 2 "usage: example_score_choices MODEL_DIR QUESTIONS.jsonl" -- "$program" "$work"
    $run 2 "no questions file '$work/none.jsonl'" -- "$program" "$work" "$work/none.jsonl"
    printf '%s\n' '{"question": "Q", "choices": ["a", "b"], "answer": 1}' '{"question": "Q", "choices": ["a"' >"$work/bad.jsonl"
    $run 1 "$work/bad.jsonl:2: .*parse error" -- "$program" "$work" "$work/bad.jsonl"
    printf '%s\n' '{"question": "Q", "choices": ["a", "b"], "answer": 2}' >"$work/range.jsonl"
    $run 1 "range.jsonl:1: \"answer\" 2 is not an index into the 2 choices" -- "$program" "$work" "$work/range.jsonl" ;;
  *)
    echo "bad_input.sh: no example called '$name'"
    exit 2 ;;
esac
echo "bad_input: example_$name refused every bad argument with a message naming it"
