#!/usr/bin/env python3
"""Checks that every lesson test FAILS against the curriculum's stubs.

A test that passes against a stub proves nothing about the learner's code: it asserts too little,
or tests something the stub already provides. Reads the per-test results the test runner writes
(build*/test-results/lessonNN.TIER.tsv: "test<TAB>PASS|FAIL|CRASH|TIMEOUT<TAB>ms") for the
curriculum build and the solutions build, and requires:

  - the same tests in both builds, suite by suite (nothing skipped or missing);
  - every test PASS in the solutions build;
  - no test PASS in the curriculum build.

    scripts/check_stub_results.py build/test-results build-solutions/test-results
"""
import pathlib
import sys


def read_results(directory: pathlib.Path):
    results = {}
    for path in sorted(directory.glob("lesson*.tsv")):
        suite = path.stem
        for line in path.read_text().splitlines():
            test, status, _ms = line.split("\t")[:3]
            results[(suite, test)] = status
    return results


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    stubs, reference = (read_results(pathlib.Path(arg)) for arg in sys.argv[1:])
    errors = []
    if not reference:
        errors.append(f"no results in {sys.argv[2]}: did the solutions tests run?")
    for key in sorted(reference.keys() - stubs.keys()):
        errors.append(f"{key[0]} {key[1]}: ran against the solutions but not against the stubs")
    for key in sorted(stubs.keys() - reference.keys()):
        errors.append(f"{key[0]} {key[1]}: ran against the stubs but not against the solutions")
    for key, status in sorted(reference.items()):
        if status != "PASS":
            errors.append(f"{key[0]} {key[1]}: {status} against the solutions")
    for key, status in sorted(stubs.items()):
        if status == "PASS":
            errors.append(f"{key[0]} {key[1]}: PASSES against the stubs; it must fail until the lesson is written")
    for error in errors:
        print(f"stub check: error: {error}")
    suites = sorted({suite for suite, _ in reference})
    if errors:
        print(f"stub check: {len(errors)} problem(s)")
        return 1
    print(f"stub check: all {len(stubs)} tests in {len(suites)} suites fail against the stubs "
          f"and pass against the solutions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
