#!/usr/bin/env bash
# Runs the demo (the main job) and checks its output: it finishes, prints the metrics, and
# every Prometheus "# HELP" line it prints has a help text (an empty one says nothing).
set -euo pipefail
demo=$1
out=$("$demo")
fail() { echo "check_demo: $*" >&2; echo "$out" >&2; exit 1; }
grep -q '^demo: all steps done$' <<<"$out" || fail "the demo did not finish"
grep -q '^# TYPE demo_runs_total counter$' <<<"$out" || fail "no demo_runs_total in the metrics"
grep -q '^# HELP demo_runs_total [^ ]' <<<"$out" || fail "demo_runs_total has no help text"
if grep -nE '^# HELP [^ ]+ ?$' <<<"$out" >&2; then fail "a # HELP line without help text (above)"; fi
echo "check_demo: ok"
