#!/usr/bin/env bash
# Builds a hand-out for learners: the repository without the reference solutions of the lessons
# they are about to write.
#
#   scripts/make_handout.sh --from 03 --out handout.tar.gz
#
# Solutions of lessons before --from stay in, so each handed-out lesson is still graded in
# isolation against the reference of the earlier ones; lessons from --from on are graded against
# the learner's own code (their stubs, until written). Without --from, every solution is removed.
set -euo pipefail
cd "$(dirname "$0")/.."

from=01
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --from) from=${2:?--from needs a lesson number}; shift 2 ;;
    --out) out=${2:?--out needs a file name}; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "make_handout: unknown option '$1'; valid: --from NN, --out FILE" >&2; exit 2 ;;
  esac
done
[[ "$from" =~ ^[0-9]{1,2}$ ]] && [ "$((10#$from))" -ge 1 ] && [ "$((10#$from))" -le 12 ] ||
  { echo "make_handout: --from '$from' is not a lesson number 1..12" >&2; exit 2; }
[ -n "$out" ] || { echo "make_handout: --out FILE is required" >&2; exit 2; }
[ ! -e "$out" ] || { echo "make_handout: '$out' already exists; refusing to overwrite it" >&2; exit 2; }

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
git archive --format=tar --prefix=llm-from-scratch/ HEAD | tar -x -C "$stage"
removed=()
for dir in "$stage"/llm-from-scratch/solutions/lesson[0-9][0-9]_*; do
  num=$(basename "$dir" | sed -E 's/^lesson([0-9]{2})_.*/\1/')
  if [ "$((10#$num))" -ge "$((10#$from))" ]; then
    rm -rf "$dir"
    removed+=("$num")
  fi
done
tar -czf "$out" -C "$stage" llm-from-scratch
echo "make_handout: wrote $out without the solutions of lessons ${removed[*]:-none}"
