#!/usr/bin/env bash
# Times `state-manager audit stats` over a generated 1,000,000-event audit
# log (a few hundred MB) with the release build, and prints its wall time and
# peak memory. Issue 7 asks for under 2 s, with memory that does not grow
# with the log (compare EVENTS=100000 with the default).
#
# usage: bench/audit-stats.sh [EVENTS]        (env: KEEP=1 keeps the log)
set -euo pipefail

cd "$(dirname "$0")/.."
events="${1:-${EVENTS:-1000000}}"
work="$(mktemp -d)"
if [[ "${KEEP:-0}" != 1 ]]; then trap 'rm -rf "$work"' EXIT; fi
log="$work/audit.jsonl"

cargo build --release --quiet --bin state-manager
bin="$PWD/target/release/state-manager"

echo "generating $events events…" >&2
python3 bench/gen-audit-log.py "$events" "$log"
size=$(stat -c %s "$log")
echo "log: $log, $((size / 1024 / 1024)) MiB, $events events"

export AUDIT_LOG="$log" STATE_FILE="$work/state.json" AUDIT_MAX_BYTES=0
# Warm the page cache: the figure is the tool's, not the disk's.
cat "$log" >/dev/null

if command -v hyperfine >/dev/null; then
    hyperfine --warmup 1 --runs 5 --export-json "$work/hf.json" \
        "$bin audit stats >/dev/null" >&2
    mean=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"][0]; print("%.3f" % r["mean"])' "$work/hf.json")
    echo "audit stats: mean ${mean} s over 5 runs (hyperfine)"
fi
/usr/bin/time -f '%e %M' -o "$work/time" "$bin" audit stats >/dev/null
read -r wall rss <"$work/time"
echo "audit stats: ${wall} s wall, peak RSS $((rss / 1024)) MiB (/usr/bin/time)"
