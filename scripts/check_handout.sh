#!/usr/bin/env bash
# CI's check of the instructor's workflow (docs/instructor-guide.md): a hand-out from a lesson, built
# as a learner gets it, graded by scripts/grade.py --build --json.
#
#   0. a hand-out from every lesson (01 .. 12) configures, with all 24 lesson test suites
#   1. scripts/make_handout.sh --from 11: the solutions of lessons 01-10 are in it, 11 and 12 are not
#   2. the learner finishes lesson 12 (the reference headers copied in) and breaks lesson 11 (a
#      syntax error): lesson 12 gets every point, lesson 11 none, its tests' output the compiler's
#   3. the untouched hand-out: lesson 11 and 12's tests fail cleanly ("not implemented")
#   4. results.json has Gradescope's format (score, tests with name, score, max_score, output)
#
#   bash scripts/check_handout.sh [work-dir]      (about two minutes on two cores)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
work=${1:-$(mktemp -d)}
rm -rf "$work" && mkdir -p "$work"
work=$(cd "$work" && pwd)  # absolute: grading runs inside the hand-out trees
fail() { echo "check_handout: FAILED: $*" >&2; exit 1; }

bash scripts/make_handout.sh --from 11 --out "$work/handout.tar.gz" >/dev/null
tar -xzf "$work/handout.tar.gz" -C "$work"
h=$work/llm-from-scratch
for n in 01 02 03 04 05 06 07 08 09 10; do
  ls -d "$h"/solutions/lesson${n}_*/include >/dev/null 2>&1 || fail "the hand-out lacks the solution of lesson $n"
done
for n in 11 12; do
  ! ls -d "$h"/solutions/lesson${n}_* >/dev/null 2>&1 || fail "the hand-out contains the solution of lesson $n"
done
grep -rq "LLM_TODO" "$h"/curriculum/lesson11_*/include || fail "lesson 11 in the hand-out is not the stub"

# A hand-out from every lesson configures (CMake finds each remaining solution, skips the removed
# ones, and every lesson's tests are declared); --from 11 is then built and graded below.
for n in 01 02 03 04 05 06 07 08 09 10 11 12; do
  bash scripts/make_handout.sh --from $n --out "$work/from$n.tar.gz" >/dev/null
  mkdir -p "$work/from$n" && tar -xzf "$work/from$n.tar.gz" -C "$work/from$n"
  (cd "$work/from$n/llm-from-scratch" && cmake --preset default -B build -DLLM_BUILD_PROGRAMS=OFF \
    -DLLM_BUILD_BENCHMARKS=OFF >"$work/from$n.log" 2>&1) || fail "a hand-out from lesson $n does not configure: $(tail -5 "$work/from$n.log")"
  tests=$(cd "$work/from$n/llm-from-scratch/build" && ctest -N | grep -cE "Test +#[0-9]+: lesson[0-9]+\.(basic|advanced)$" || true)
  [ "$tests" = 24 ] || fail "a hand-out from lesson $n declares $tests lesson test suites, not 24"
  rm -rf "$work/from$n" "$work/from$n.tar.gz"
done

grade() {  # tree  json-out  log
  (cd "$1" && cmake --preset default -B build -DLLM_BUILD_PROGRAMS=OFF -DLLM_BUILD_BENCHMARKS=OFF >/dev/null &&
    python3 scripts/grade.py --build build --lessons 11,12 --json "$2" >"$3" 2>&1) || fail "grade.py failed: $(tail -5 "$3")"
}

# The untouched hand-out: every handed-out test must fail cleanly.
grade "$h" "$work/stubs.json" "$work/stubs.log"

# A learner who finished lesson 12 and broke lesson 11.
cp -r "$h" "$work/learner"
rm -rf "$work/learner/build"
cp -r "$repo"/solutions/lesson12_evaluation/include/. "$work/learner/curriculum/lesson12_evaluation/include/"
echo "this is not C++ ;" >>"$work/learner/curriculum/lesson11_lora_flash/include/llm/peft/lora.h"
grade "$work/learner" "$work/learner.json" "$work/learner.log"

python3 - "$work/stubs.json" "$work/learner.json" <<'PY' || fail "the grades are wrong (see above)"
import json, sys
TOP = {"score", "execution_time", "output", "output_format", "test_output_format", "test_name_format", "visibility",
       "stdout_visibility", "extra_data", "tests", "leaderboard"}
TEST = {"score", "max_score", "status", "name", "name_format", "number", "output", "output_format", "tags",
        "visibility", "extra_data"}
def check_format(r, where):
    assert isinstance(r, dict) and set(r) <= TOP, f"{where}: unknown top-level keys {set(r) - TOP}"
    assert isinstance(r["score"], (int, float)) and isinstance(r["tests"], list) and r["tests"], where
    for t in r["tests"]:
        assert set(t) <= TEST, f"{where}: unknown test keys {set(t) - TEST}"
        assert isinstance(t["name"], str) and isinstance(t["output"], str), t
        assert isinstance(t["score"], (int, float)) and isinstance(t["max_score"], (int, float)), t
        assert 0 <= t["score"] <= t["max_score"] and t["status"] in ("passed", "failed"), t
        assert t["visibility"] in ("hidden", "after_due_date", "after_published", "visible"), t
    assert abs(r["score"] - sum(t["score"] for t in r["tests"])) < 1e-9, where
stubs, learner = (json.load(open(p)) for p in sys.argv[1:3])
check_format(stubs, "stubs"); check_format(learner, "learner")
lessons = {t["tags"][0] for t in stubs["tests"]}
assert lessons == {"lesson11", "lesson12"}, lessons
assert stubs["score"] == 0, stubs["score"]
assert all("not implemented" in t["output"] for t in stubs["tests"]), \
    [t["name"] for t in stubs["tests"] if "not implemented" not in t["output"]][:3]
per = learner["extra_data"]["lessons"]
assert per["lesson12"]["score"] == per["lesson12"]["max_score"] > 0, per
assert per["lesson11"]["score"] == 0 and per["lesson11"]["max_score"] > 0, per
broken = [t for t in learner["tests"] if t["tags"][0] == "lesson11"]
assert all("did not compile" in t["output"] and "error" in t["output"] for t in broken), broken[0]["output"][:300]
print(f"check_handout: a hand-out from lesson 11 has the solutions of 01-10; its stubs score 0 with 'not "
      f"implemented'; a finished lesson 12 scores {per['lesson12']['score']}/{per['lesson12']['max_score']} next to "
      f"a lesson 11 that does not compile (0/{per['lesson11']['max_score']}, the compiler's message in its output); "
      "results.json has Gradescope's format")
PY
