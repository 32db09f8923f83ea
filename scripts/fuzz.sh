#!/usr/bin/env bash
# Long fuzzing: every libFuzzer target of tests/fuzz for SECONDS each (default 3600), JOBS at a
# time (default: the cores), from the committed seed corpus. Builds $BUILD-fuzz as `make fuzz`.
# What a run finds stays in $BUILD-fuzz/fuzz/TARGET/ (corpus/ and crash-*); a crash becomes a
# regression by copying it into tests/fuzz/regressions/TARGET/ (replayed by every `make test`).
#
#   scripts/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-3600}
build=${BUILD:-build}
make --no-print-directory fuzz FUZZ_SECONDS="$seconds" BUILD="$build" JOBS="${JOBS:-$(nproc)}" || status=$?
echo "per-target logs: $build-fuzz/fuzz/*/fuzz.log"
exit "${status:-0}"
