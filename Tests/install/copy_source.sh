#!/usr/bin/env bash
# Copies the source tree as a clone of it holds it (tracked files and untracked ones that are
# not ignored, as they are on disk; no build trees): copy_source.sh SOURCE_DIR DEST_DIR
set -euo pipefail
src=$1; dest=$2
mkdir -p "$dest"
if git -C "$src" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  # (files deleted but not yet committed are left out)
  (cd "$src" && git ls-files -z --cached --others --exclude-standard \
     | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done \
     | tar --null -T - -cf -) | tar -C "$dest" -xf -
else
  tar -C "$src" --exclude=./build --exclude='./build-*' --exclude='./.build*' --exclude=./.git -cf - . \
    | tar -C "$dest" -xf -
fi
