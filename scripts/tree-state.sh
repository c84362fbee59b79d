#!/usr/bin/env bash
# Print the state of the working tree that a run must not change: every changed, deleted or
# untracked-but-not-ignored path with a hash of its content (a file already dirty before the run
# and rewritten by it changes its hash). `make test` compares this before and after the tiers.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  echo "not a git checkout"
  exit 0
fi
git status --porcelain=v1 -z --untracked-files=all | tr '\0' '\n' | while IFS= read -r line; do
  [ -n "$line" ] || continue
  path="${line:3}"
  if [ -f "$path" ]; then
    echo "$line $(git hash-object --no-filters -- "$path")"
  else
    echo "$line"
  fi
done
