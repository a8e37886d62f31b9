#!/usr/bin/env python3
"""Check that the project stands on its own: nothing in it refers to a file outside it.

A learner has only this repository. A comment that sends them to its authors' working notes, or a
link to a file that is not here, sends them nowhere, so every reference must be a public source (a
paper, a repository + file + function) or a file in the repository. Two checks, over every tracked and
untracked-but-not-ignored text file (the built-in corpora under data/ are books, not ours, and are
skipped):

  1. No file names a document that only the project's authors had (the working notes' file names
     and the phrases that cite them: the pattern OUTSIDE below) or a path outside the checkout.
  2. Every relative link in a Markdown file, [text](path) or [text](path#anchor), names a file or
     folder that exists, resolved from the Markdown file's own folder and inside the repository.

    scripts/check_standalone.py     exit 1 and list every offending line
"""
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
SKIP_DIRS = ("data/",)
THIS = "scripts/check_standalone.py"  # names the patterns it looks for

OUTSIDE = re.compile(
    r"\.\./shared\b|(?<![\w.])/work/|\bFACTS\.md\b|\bSTYLE\.md\b|\bpipeline\.md\b|\binterop\.md\b"
    r"|\blessons06-12\.md\b|\bresearch (?:notes|sheet|numbers)\b|\bfact ?sheet\b|\bthe sheet\b",
    re.IGNORECASE,
)
# [text](target): a target without a scheme (http:, mailto:) and not a bare anchor (#section).
LINK = re.compile(r"\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def project_files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout
    return [f for f in out.splitlines() if f and not f.startswith(SKIP_DIRS) and f != THIS]


def read_text(path: pathlib.Path):
    try:
        data = path.read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        return None  # deleted in the work tree but still in the index
    if b"\0" in data[:8192]:
        return None  # binary: a fuzz input, an image
    return data.decode("utf-8", errors="replace")


def broken_link(md: pathlib.Path, target: str):
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target) or target.startswith("#"):
        return None
    path = target.split("#", 1)[0]
    resolved = (md.parent / path).resolve()
    if ROOT not in resolved.parents and resolved != ROOT:
        return "points outside the repository"
    if not resolved.exists():
        return "names a file that does not exist"
    return None


def main() -> int:
    problems = []
    for name in project_files():
        path = ROOT / name
        text = read_text(path)
        if text is None:
            continue
        in_fence = False
        for number, line in enumerate(text.splitlines(), start=1):
            hit = OUTSIDE.search(line)
            if hit:
                problems.append(f"{name}:{number}: refers outside the project ('{hit.group(0)}'): {line.strip()}")
            if not name.endswith(".md"):
                continue
            if line.lstrip().startswith("```"):
                in_fence = not in_fence
            if in_fence:
                continue
            for target in LINK.findall(line):
                why = broken_link(path, target)
                if why:
                    problems.append(f"{name}:{number}: the link ({target}) {why}")
    for p in problems:
        print(p)
    if problems:
        print(f"check_standalone: {len(problems)} reference(s) a learner cannot follow: cite the public "
              "source itself (paper, repository + file + function) or a file in this repository")
        return 1
    print("check_standalone: every reference resolves inside the repository or to a public source")
    return 0


if __name__ == "__main__":
    sys.exit(main())
