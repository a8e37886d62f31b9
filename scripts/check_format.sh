#!/usr/bin/env bash
# Checks (or with --fix, applies) .clang-format on the project's C++ sources. The curriculum's
# header stubs are left out: scripts/make_stubs.py generates them from the formatted solutions.
# Untracked files count too (not the ignored ones): a new file is checked before its first commit.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(git ls-files --cached --others --exclude-standard '*.h' '*.cpp' | grep -vE '^curriculum/lesson[0-9]+_[a-z0-9_]+/include/')
if [ "${1:-}" = "--fix" ]; then
  clang-format -i --style=file "${files[@]}"
  python3 scripts/make_stubs.py >/dev/null
  echo "check_format: formatted ${#files[@]} files and regenerated the stubs"
else
  clang-format --dry-run -Werror --style=file "${files[@]}"
  echo "check_format: ${#files[@]} files follow .clang-format"
fi
