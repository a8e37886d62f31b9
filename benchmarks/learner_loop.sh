#!/usr/bin/env bash
# A learner's loop, timed: for every lesson, touch one of its headers (as an edit would) and run the
# README's command, `ctest --preset default -R lessonNN` from the source folder, which rebuilds that
# lesson's two suites and then runs them side by side (the preset runs 2 tests at a time; a plain
# `ctest -R lessonNN` inside build/ runs them one after the other, 0.5-1 s slower). Target: <= 10 s.
#
#   bash benchmarks/learner_loop.sh            # your tree (build/, the curriculum)
#   bash benchmarks/learner_loop.sh solutions  # the reference tree (build-solutions/), every test passing
#
# Build the tree once first (cmake --preset default && cmake --build build); the figures are wall
# clock on whatever else the machine is doing, so run it on a quiet machine and more than once.
set -euo pipefail
cd "$(dirname "$0")/.."
tree=${1:-curriculum}
case "$tree" in
  curriculum) build=build preset=default ;;
  solutions) build=build-solutions preset=solutions ;;
  *) echo "learner_loop.sh: unknown tree '$tree'; valid: curriculum, solutions" >&2; exit 2 ;;
esac
[[ -f $build/CTestTestfile.cmake ]] || { echo "learner_loop.sh: $build/ is not configured; run: cmake --preset $preset && cmake --build $build" >&2; exit 2; }

printf "%-10s %8s %8s %8s  %s\n" lesson build tests total "header touched"
for dir in "$tree"/lesson*/; do
  name=$(basename "$dir")
  num=${name:6:2}
  [[ -f curriculum/$name/tests/basic.cpp ]] || continue
  header=$(find "$dir/include" -name '*.h' | sort | head -1)
  touch "$header"
  start=$(date +%s.%N)
  log=$(ctest --preset "$preset" -R "^lesson$num\." 2>&1 || true)
  end=$(date +%s.%N)
  b=$(grep -o "lesson$num.build [.*]* *\(Passed\|\*\*\*Failed\) *[0-9.]* sec" <<<"$log" | grep -o "[0-9.]* sec" | cut -d' ' -f1)
  total=$(echo "$end - $start" | bc)
  printf "%-10s %7.1fs %7.1fs %7.1fs  %s\n" "lesson$num" "${b:-0}" "$(echo "$total - ${b:-0}" | bc)" "$total" "${header#"$dir"}"
done
