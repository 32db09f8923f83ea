#!/usr/bin/env bash
# Runs one libFuzzer target: fuzz-run.sh BINARY SECONDS WORKDIR SEED_DIR...
# New inputs go to WORKDIR/corpus (the seeds stay as committed); a crash is written to
# WORKDIR/crash-* and fails the run. Prints one summary line: target, executions, exec/s,
# corpus size, new coverage, findings.
set -euo pipefail
bin=$1 seconds=$2 work=$3
shift 3
mkdir -p "$work/corpus"
log="$work/fuzz.log"
set +e
"$bin" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=4096 -max_len=262144 -print_final_stats=1 \
  -artifact_prefix="$work/" "$work/corpus" "$@" >"$log" 2>&1
rc=$?
set -e
name=$(basename "$bin")
execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo 0)
corpus=$(find "$work/corpus" -type f | wc -l)
findings=$(find "$work" -maxdepth 1 -name 'crash-*' -o -maxdepth 1 -name 'leak-*' -o -maxdepth 1 -name 'timeout-*' -o -maxdepth 1 -name 'oom-*' | wc -l)
echo "fuzz: $name seconds=$seconds executions=$execs exec_per_s=$rate coverage=$cov new_corpus=$corpus findings=$findings rc=$rc"
if [ "$rc" -ne 0 ]; then
  tail -60 "$log"
  exit 1
fi
