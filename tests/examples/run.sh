#!/usr/bin/env bash
# Runs one example program as a learner would and checks it: the exit status it must end with, and
# what its output (stdout and stderr) must contain, one extended regular expression per argument.
#
#   run.sh [--fresh DIR] STATUS PATTERN... -- PROGRAM ARGS...
#
# --fresh removes DIR first: the folder the program writes (an example never overwrites a folder).
# The output is printed either way, so ctest's log shows what the example said.
set -uo pipefail
if [ "$1" = "--fresh" ]; then
  rm -rf "$2"
  shift 2
fi
want=$1
shift
patterns=()
while [ "$1" != "--" ]; do
  patterns+=("$1")
  shift
done
shift
out=$("$@" 2>&1)
status=$?
printf '%s\n' "$out"
[ "$status" -eq "$want" ] || {
  echo "FAIL: exit status $status, expected $want: $*"
  exit 1
}
for pattern in "${patterns[@]}"; do
  grep -qE -- "$pattern" <<<"$out" || {
    echo "FAIL: nothing in the output matches '$pattern': $*"
    exit 1
  }
done
