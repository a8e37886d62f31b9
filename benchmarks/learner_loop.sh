#!/usr/bin/env bash
# A learner's loop, timed: for every lesson, touch one of its headers (as an edit would) and run the
# README's command, `ctest --preset default -R lessonNN` from the source folder, which rebuilds that
# lesson's two suites and then runs them side by side (the preset runs 2 tests at a time; a plain
# `ctest -R lessonNN` inside build/ runs them one after the other, 0.5-1 s slower). Target: <= 10 s.
#
#   bash benchmarks/learner_loop.sh              # your tree (build/, the curriculum) as it is
#   bash benchmarks/learner_loop.sh as-learner   # your tree with each lesson's reference put in place
#                                                # of the stubs while it is timed, as a learner who has
#                                                # written every lesson: every test runs to the end
#   bash benchmarks/learner_loop.sh solutions    # the reference tree (build-solutions/)
#
# Stubs throw on the first call, so their tests end early: the curriculum as shipped under-states a
# learner's loop. as-learner copies solutions/lessonNN_*/include over curriculum/lessonNN_*/include
# (the reference compiles as ordinary code: its fences are comments), times the loop, and puts the
# curriculum's own files back, also on Ctrl-C; it refuses to run on a tree with uncommitted changes
# in curriculum/*/include, so it can never overwrite a learner's work.
#
# Build the tree once first (cmake --preset default && cmake --build build); the figures are wall
# clock on whatever else the machine is doing, so run it on a quiet machine and more than once.
set -euo pipefail
cd "$(dirname "$0")/.."
tree=${1:-curriculum}
as_learner=0
case "$tree" in
  curriculum) build=build preset=default ;;
  as-learner) build=build preset=default tree=curriculum as_learner=1 ;;
  solutions) build=build-solutions preset=solutions ;;
  *) echo "learner_loop.sh: unknown tree '$tree'; valid: curriculum, as-learner, solutions" >&2; exit 2 ;;
esac
if ((as_learner)); then
  if ! git diff --quiet -- 'curriculum/*/include' || [[ -n $(git ls-files --others --exclude-standard -- 'curriculum/*/include') ]]; then
    echo "learner_loop.sh: curriculum/*/include has changes of yours; as-learner would overwrite them (commit or stash them first)" >&2
    exit 2
  fi
  trap 'git checkout -- curriculum/*/include' EXIT
fi
[[ -f $build/CTestTestfile.cmake ]] || { echo "learner_loop.sh: $build/ is not configured; run: cmake --preset $preset && cmake --build $build" >&2; exit 2; }

printf "%-10s %8s %8s %8s  %s\n" lesson build tests total "header touched"
for dir in "$tree"/lesson*/; do
  name=$(basename "$dir")
  num=${name:6:2}
  [[ -f curriculum/$name/tests/basic.cpp ]] || continue
  header=$(find "$dir/include" -name '*.h' | sort | head -1)
  if ((as_learner)); then
    cp -r "solutions/$name/include/." "$dir/include/"
    ctest --preset "$preset" -R "^lesson$num\.build" >/dev/null 2>&1 || true  # compiled once, untimed
  fi
  touch "$header"
  start=$(date +%s.%N)
  log=$(ctest --preset "$preset" -R "^lesson$num\." 2>&1 || true)
  end=$(date +%s.%N)
  b=$(grep -o "lesson$num.build [.*]* *\(Passed\|\*\*\*Failed\) *[0-9.]* sec" <<<"$log" | grep -o "[0-9.]* sec" | cut -d' ' -f1)
  total=$(echo "$end - $start" | bc)
  printf "%-10s %7.1fs %7.1fs %7.1fs  %s\n" "lesson$num" "${b:-0}" "$(echo "$total - ${b:-0}" | bc)" "$total" "${header#"$dir"}"
  if ((as_learner)); then
    git checkout -- "$dir/include"
  fi
done
