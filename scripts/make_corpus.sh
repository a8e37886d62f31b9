#!/usr/bin/env bash
# Rebuilds data/austen/ - the built-in corpus - from Debian's packages, and checks it against the
# committed copy. Jane Austen's six novels are public domain; Debian's r-cran-janeaustenr ships them
# (Project Gutenberg texts with the Gutenberg headers already removed) in R's data format.
#
#   train.txt  Pride and Prejudice, Sense and Sensibility, Emma, Mansfield Park, Northanger Abbey
#   val.txt    Persuasion (a whole held-out novel: no sentence of it is seen in training)
#
# Usage: scripts/make_corpus.sh [--write]   (without --write: rebuild into a temp dir and compare)
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v Rscript >/dev/null || ! Rscript -e 'library(janeaustenr)' >/dev/null 2>&1; then
  echo "make_corpus: installing r-base-core and r-cran-janeaustenr (Debian)" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get install -y --no-install-recommends r-base-core r-cran-janeaustenr >/dev/null
fi

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
Rscript -e '
  library(janeaustenr)
  args <- commandArgs(trailingOnly = TRUE)
  train <- c(prideprejudice, "", "", sensesensibility, "", "", emma, "", "", mansfieldpark, "", "", northangerabbey)
  writeLines(train, file.path(args[1], "train.txt"))
  writeLines(persuasion, file.path(args[1], "val.txt"))
' "$out"

if [ "${1:-}" = "--write" ]; then
  cp "$out/train.txt" "$out/val.txt" data/austen/
  echo "make_corpus: wrote data/austen/train.txt and val.txt"
else
  for f in train.txt val.txt; do
    cmp -s "$out/$f" "data/austen/$f" || { echo "make_corpus: data/austen/$f differs from Debian's janeaustenr" >&2; exit 1; }
  done
  echo "make_corpus: data/austen matches Debian's r-cran-janeaustenr"
fi
