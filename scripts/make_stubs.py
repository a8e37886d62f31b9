#!/usr/bin/env python3
"""Write the curriculum's header stubs from the reference solutions.

The solutions are the one source of truth. In a solution header, the code a learner must write is
fenced:

        // BEGIN SOLUTION: RMSNorm::forward(): x * rsqrt(mean(x^2) + eps), times weight
        ... reference code ...
        // END SOLUTION

and the stub gets, at the same indentation, the single line

        LLM_TODO("lesson02: RMSNorm::forward(): x * rsqrt(mean(x^2) + eps), times weight");

A block fenced with `// BEGIN SOLUTION ONLY` ... `// END SOLUTION` is dropped from the stub (helpers
only the reference needs). Everything else - includes, signatures, the step-by-step comments - is
copied unchanged, so stub and solution cannot drift apart.

    scripts/make_stubs.py           rewrite curriculum/lessonNN_*/include from solutions/
    scripts/make_stubs.py --check   exit 1 and list the differences if the committed stubs are stale
"""
import argparse
import difflib
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
BEGIN = re.compile(r"^(\s*)// BEGIN SOLUTION: (.+?)\s*$")
BEGIN_ONLY = re.compile(r"^\s*// BEGIN SOLUTION ONLY\s*$")
END = re.compile(r"^\s*// END SOLUTION\s*$")


class FenceError(Exception):
    pass


def make_stub(text: str, lesson: str, where: str) -> str:
    out, inside, opened_at = [], False, 0
    for number, line in enumerate(text.splitlines(keepends=True), start=1):
        begin, begin_only, end = BEGIN.match(line), BEGIN_ONLY.match(line), END.match(line)
        if inside:
            if begin or begin_only:
                raise FenceError(f"{where}:{number}: BEGIN SOLUTION inside the fence opened at line {opened_at}")
            if end:
                inside = False
            continue
        if end:
            raise FenceError(f"{where}:{number}: END SOLUTION without a BEGIN SOLUTION")
        if begin:
            indent, hint = begin.group(1), begin.group(2)
            hint = hint.replace("\\", "\\\\").replace('"', '\\"')
            out.append(f'{indent}LLM_TODO("{lesson}: {hint}");\n')
            inside, opened_at = True, number
        elif begin_only:
            inside, opened_at = True, number
        elif "BEGIN SOLUTION" in line:
            raise FenceError(f"{where}:{number}: malformed fence; write '// BEGIN SOLUTION: <hint>' "
                             "or '// BEGIN SOLUTION ONLY'")
        else:
            out.append(line)
    if inside:
        raise FenceError(f"{where}:{opened_at}: BEGIN SOLUTION is never closed")
    return "".join(out)


def expected_stubs():
    """Maps every curriculum header path to the text it must have."""
    stubs = {}
    for lesson_dir in sorted((ROOT / "solutions").glob("lesson[0-9][0-9]_*")):
        lesson = lesson_dir.name[: len("lessonNN")]
        for header in sorted((lesson_dir / "include").rglob("*.h")):
            relative = header.relative_to(ROOT / "solutions")
            stubs[ROOT / "curriculum" / relative] = make_stub(header.read_text(), lesson, str(header.relative_to(ROOT)))
    return stubs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when a stub is stale")
    args = parser.parse_args()
    try:
        stubs = expected_stubs()
    except FenceError as error:
        print(f"make_stubs: {error}", file=sys.stderr)
        return 1

    existing = set()
    for lesson_dir in (ROOT / "curriculum").glob("lesson[0-9][0-9]_*"):
        existing.update((lesson_dir / "include").rglob("*.h"))
    extra = sorted(existing - set(stubs))

    if args.check:
        problems = 0
        for path, text in stubs.items():
            current = path.read_text() if path.exists() else None
            if current != text:
                problems += 1
                rel = path.relative_to(ROOT)
                print(f"stale stub: {rel}" if current is not None else f"missing stub: {rel}")
                if current is not None:
                    sys.stdout.writelines(difflib.unified_diff(current.splitlines(True), text.splitlines(True),
                                                               f"{rel} (committed)", f"{rel} (generated)", n=1))
        for path in extra:
            problems += 1
            print(f"stub without a solution: {path.relative_to(ROOT)}")
        if problems:
            print(f"make_stubs: {problems} stub(s) differ from solutions/; run scripts/make_stubs.py", file=sys.stderr)
            return 1
        print(f"make_stubs: all {len(stubs)} stubs match their solutions")
        return 0

    for path, text in stubs.items():
        if not path.exists() or path.read_text() != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)}")
    for path in extra:
        print(f"warning: {path.relative_to(ROOT)} has no solution counterpart", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
