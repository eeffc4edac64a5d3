#!/usr/bin/env bash
# Runs a command against the PostgreSQL server of ORC_TEST_PG_URL ({url} in the arguments is
# replaced by it). Without a server: skipped (exit 77, ctest's SKIP_RETURN_CODE), except with
# CI=true, where that is a failure.
set -uo pipefail
if [ -z "${ORC_TEST_PG_URL:-}" ]; then
  if [ "${CI:-}" = true ]; then
    echo "FAILED: CI=true but ORC_TEST_PG_URL is not set (scripts/test starts PostgreSQL with scripts/pg)"
    exit 1
  fi
  echo "skipped: ORC_TEST_PG_URL is not set (no PostgreSQL; scripts/test starts one with scripts/pg)"
  exit 77
fi
args=()
for a in "$@"; do args+=("${a//\{url\}/$ORC_TEST_PG_URL}"); done
exec "${args[@]}"
