#!/usr/bin/env bash
# Runs one libFuzzer target for a bounded time (60 s under CI=true, else ORC_FUZZ_SECONDS or
# 10 s), seeded with the committed corpus of malformed and valid inputs. Any crash, leak,
# timeout (> 10 s for one input) or out-of-memory fails the run and leaves the input in the
# artifacts folder.
set -euo pipefail
target=$1; corpus=$2; work=$3
secs=${ORC_FUZZ_SECONDS:-10}
[ "${CI:-}" = "true" ] && secs=$(( secs > 60 ? secs : 60 ))
mkdir -p "$work/corpus" "$work/artifacts"
cp -n "$corpus"/* "$work/corpus/" 2>/dev/null || true
"$target" "$work/corpus" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
  -max_len=65536 -print_final_stats=1 -artifact_prefix="$work/artifacts/" 2>&1 | tail -25
