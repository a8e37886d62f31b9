#!/usr/bin/env python3
"""Grades lessons from the per-test results of a build, for a learner or an instructor.

Every lesson test binary writes build*/test-results/lessonNN.TIER.tsv
("test<TAB>PASS|FAIL|CRASH|TIMEOUT<TAB>ms<TAB>output"). This turns them into one line per lesson -
basic passed/total, advanced passed/total - and, with --csv, a file to merge across students, or,
with --json, Gradescope's autograder results (results.json: every test with its name, score,
max_score and output; per-lesson totals).

    ctest --preset default                  # grade everything (or -R lesson03 for one lesson)
    scripts/grade.py                        # report from build/test-results
    scripts/grade.py --results DIR --csv grades.csv --student alice

    scripts/grade.py --build build --json results.json      # what an autograder runs

--build DIR builds and runs each lesson on its own (cmake --build DIR --target lessonNN_basic
lessonNN_advanced, then both binaries, each test in its own process with --test-timeout), so a
lesson that does not compile, crashes or hangs costs its own points, not the other lessons': its
tests score 0 and their output is the compiler's or the runner's message. (Each lesson is built
against the reference of the lessons whose solutions are present; in a hand-out, a handed-out
lesson builds on the learner's own earlier handed-out lessons, so it cannot pass without them.)
Test names come from the lesson's sources, so a lesson that never built still lists every test.
"""
import argparse
import collections
import csv
import json
import os
import pathlib
import re
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
TIERS = ("basic", "advanced")
TEST_RE = re.compile(r"^\s*TEST(?:_F|_P)?\(\s*(\w+)\s*,\s*(\w+)\s*\)", re.M)


def lesson_folders():
    """lessonNN -> its curriculum folder, for every lesson with tests."""
    out = {}
    for d in sorted((ROOT / "curriculum").glob("lesson[0-9][0-9]_*")):
        if (d / "tests" / "basic.cpp").exists():
            out[d.name[:8]] = d
    return out


def declared_tests(folder, tier):
    """The tests a tier's source declares, as Suite.Name (what the runner reports)."""
    path = folder / "tests" / f"{tier}.cpp"
    return [f"{s}.{n}" for s, n in TEST_RE.findall(path.read_text())] if path.exists() else []


def unescape(field):
    out, i = [], 0
    while i < len(field):
        c = field[i]
        if c == "\\" and i + 1 < len(field):
            out.append({"t": "\t", "n": "\n", "r": "\r", "\\": "\\"}.get(field[i + 1], field[i + 1]))
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def read_results(path):
    """{test: (status, output)} from one .tsv."""
    results = {}
    for line in path.read_text(errors="replace").splitlines():
        parts = line.split("\t", 3)
        if len(parts) >= 3:
            results[parts[0]] = (parts[1], unescape(parts[3]) if len(parts) == 4 else "")
    return results


def tail(text, lines=40):
    return "\n".join(text.strip().splitlines()[-lines:])


def build_and_run(build, lessons, timeout, test_timeout):
    """Builds and runs each lesson alone. Returns {lesson: {tier: {test: (status, output)}}}."""
    results_dir = pathlib.Path(build) / "test-results"
    results_dir.mkdir(parents=True, exist_ok=True)
    graded = {}
    for lesson, folder in lessons.items():
        graded[lesson] = {}
        targets = [f"{lesson}_{tier}" for tier in TIERS]
        print(f"grade: building {lesson} ...", file=sys.stderr)
        b = subprocess.run(["cmake", "--build", build, "--target", *targets], capture_output=True, text=True)
        if b.returncode != 0:
            message = "the lesson did not compile; the compiler said:\n" + tail(b.stdout + b.stderr)
            for tier in TIERS:
                graded[lesson][tier] = {t: ("BUILD", message) for t in declared_tests(folder, tier)}
            continue
        for tier in TIERS:
            tsv = results_dir / f"{lesson}.{tier}.tsv"
            tsv.unlink(missing_ok=True)
            binary = pathlib.Path(build) / f"{lesson}_{tier}"
            message = ""
            # Its own process group, so a runner stopped for taking too long takes its forked tests along.
            p = subprocess.Popen([str(binary), f"--llm-results={tsv}", f"--llm-timeout={test_timeout}"],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
                                 start_new_session=True)
            try:
                out, _ = p.communicate(timeout=timeout)
                if not tsv.exists():
                    message = f"the test runner stopped (exit status {p.returncode}) before writing results:\n" + tail(out)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, 9)
                p.communicate()
                message = f"the test runner was still running after {timeout} s and was stopped"
            found = read_results(tsv) if tsv.exists() else {}
            tests = declared_tests(folder, tier)
            graded[lesson][tier] = {t: found.get(t, ("CRASH", message or "no result recorded for this test"))
                                    for t in tests}
            for t, v in found.items():  # tests the regex missed (e.g. in a fixture header)
                graded[lesson][tier].setdefault(t, v)
    return graded


def from_results(results):
    """Reads an existing test-results directory. Returns the same layout as build_and_run."""
    graded = collections.defaultdict(dict)
    for path in sorted(results.glob("lesson*.tsv")):
        lesson, tier = path.stem.split(".")
        graded[lesson][tier] = read_results(path)
    return dict(graded)


def gradescope(graded, seconds):
    """Gradescope's results.json: one entry per test (1 point each), the per-lesson totals."""
    tests, lessons, lines = [], {}, []
    for lesson in sorted(graded):
        total = passed = 0
        for tier in TIERS:
            for name, (status, output) in sorted(graded[lesson].get(tier, {}).items()):
                ok = status == "PASS"
                total += 1
                passed += ok
                tests.append({
                    "name": f"{lesson}.{tier}: {name}",
                    "score": 1.0 if ok else 0.0,
                    "max_score": 1.0,
                    "status": "passed" if ok else "failed",
                    "output": ("" if ok else f"{status}\n") + output.strip(),
                    "tags": [lesson, tier],
                    "visibility": "visible",
                })
        lessons[lesson] = {"score": passed, "max_score": total}
        lines.append(f"{lesson}: {passed}/{total}")
    score = float(sum(v["score"] for v in lessons.values()))
    return {
        "score": score,
        "execution_time": round(seconds, 1),
        "output": "Per lesson (tests passed / tests): " + ", ".join(lines),
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": tests,
        "extra_data": {"lessons": lessons},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", default=str(ROOT / "build" / "test-results"), help="a test-results directory")
    parser.add_argument("--build", help="build and run each lesson on its own in this build directory first")
    parser.add_argument("--lessons", default="", help="with --build: only these lessons, e.g. 03,04")
    parser.add_argument("--test-timeout", type=int, default=120, help="with --build: seconds one test may run")
    parser.add_argument("--timeout", type=int, default=3600,
                        help="with --build: seconds one lesson tier's binary may run in all (every test timing out "
                             "takes tests x test-timeout / cores)")
    parser.add_argument("--csv", help="also write the report as CSV to this file (refuses to overwrite)")
    parser.add_argument("--json", help="also write Gradescope's results.json to this file (refuses to overwrite)")
    parser.add_argument("--student", default="", help="a name for the CSV's student column")
    args = parser.parse_args()
    for out in (args.csv, args.json):
        if out and pathlib.Path(out).exists():
            print(f"grade: '{out}' already exists; refusing to overwrite it", file=sys.stderr)
            return 1

    start = time.time()
    if args.build:
        lessons = lesson_folders()
        if args.lessons:
            wanted = {f"lesson{int(x):02d}" for x in args.lessons.split(",") if x.strip()}
            unknown = wanted - set(lessons)
            if unknown:
                print(f"grade: no such lesson {', '.join(sorted(unknown))}; valid: {', '.join(lessons)}", file=sys.stderr)
                return 2
            lessons = {k: v for k, v in lessons.items() if k in wanted}
        if not (pathlib.Path(args.build) / "CMakeCache.txt").exists():
            print(f"grade: {args.build} is not a configured build; run `cmake --preset default` first", file=sys.stderr)
            return 1
        graded = build_and_run(args.build, lessons, args.timeout, args.test_timeout)
    else:
        results = pathlib.Path(args.results)
        graded = from_results(results)
        if not graded:
            print(f"grade: no results in {results}; run `ctest --preset default` first", file=sys.stderr)
            return 1

    print(f"{'lesson':<10}{'basic':>10}{'advanced':>12}")
    rows, failing = [], collections.defaultdict(list)
    for lesson in sorted(graded):
        counts = []
        for tier in TIERS:
            tier_results = graded[lesson].get(tier, {})
            counts += [sum(s == "PASS" for s, _ in tier_results.values()), len(tier_results)]
            failing[lesson] += [f"{tier}: {t} ({s})" for t, (s, _) in sorted(tier_results.items()) if s != "PASS"]
        bp, bt, ap, at = counts
        print(f"{lesson:<10}{f'{bp}/{bt}':>10}{f'{ap}/{at}':>12}")
        rows.append([args.student, lesson, bp, bt, ap, at])
    for lesson in sorted(failing):
        if failing[lesson]:
            print(f"\n{lesson} not yet passing:")
            for item in failing[lesson]:
                print(f"  {item}")

    if args.csv:
        with pathlib.Path(args.csv).open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["student", "lesson", "basic_passed", "basic_total", "advanced_passed", "advanced_total"])
            writer.writerows(rows)
        print(f"\nwrote {args.csv}")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(gradescope(graded, time.time() - start), indent=2) + "\n")
        print(f"\nwrote {args.json} (Gradescope's results format)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
