#!/usr/bin/env python3
"""Prints a grade report from the per-test results of a build.

Every lesson test binary writes build*/test-results/lessonNN.TIER.tsv ("test<TAB>status<TAB>ms").
This turns them into one line per lesson - basic passed/total, advanced passed/total - and, with
--csv, a file an instructor can merge across students.

    ctest --preset default                  # grade everything (or -R lesson03 for one lesson)
    scripts/grade.py                        # report from build/test-results
    scripts/grade.py --results DIR --csv grades.csv --student alice
"""
import argparse
import collections
import csv
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", default=str(ROOT / "build" / "test-results"), help="a test-results directory")
    parser.add_argument("--csv", help="also write the report as CSV to this file (refuses to overwrite)")
    parser.add_argument("--student", default="", help="a name for the CSV's student column")
    args = parser.parse_args()

    results = pathlib.Path(args.results)
    files = sorted(results.glob("lesson*.tsv"))
    if not files:
        print(f"grade: no results in {results}; run `ctest --preset default` first", file=sys.stderr)
        return 1
    score = collections.defaultdict(lambda: {"basic": [0, 0], "advanced": [0, 0]})
    failing = collections.defaultdict(list)
    for path in files:
        lesson, tier = path.stem.split(".")
        for line in path.read_text().splitlines():
            test, status, _ms = line.split("\t")
            score[lesson][tier][1] += 1
            if status == "PASS":
                score[lesson][tier][0] += 1
            else:
                failing[lesson].append(f"{tier}: {test} ({status})")

    print(f"{'lesson':<10}{'basic':>10}{'advanced':>12}")
    rows = []
    for lesson in sorted(score):
        (bp, bt), (ap, at) = score[lesson]["basic"], score[lesson]["advanced"]
        print(f"{lesson:<10}{f'{bp}/{bt}':>10}{f'{ap}/{at}':>12}")
        rows.append([args.student, lesson, bp, bt, ap, at])
    for lesson in sorted(failing):
        print(f"\n{lesson} not yet passing:")
        for item in failing[lesson]:
            print(f"  {item}")

    if args.csv:
        path = pathlib.Path(args.csv)
        if path.exists():
            print(f"grade: '{path}' already exists; refusing to overwrite it", file=sys.stderr)
            return 1
        with path.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["student", "lesson", "basic_passed", "basic_total", "advanced_passed", "advanced_total"])
            writer.writerows(rows)
        print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
