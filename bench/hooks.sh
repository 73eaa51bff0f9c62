#!/usr/bin/env bash
# Median wall time per Claude Code hook call, through the hook scripts as
# Claude Code runs them, on the recorded payloads of tests/fixtures/hooks.
# Cases run interleaved (each iteration runs every case once), so all of them
# see the same machine load; `bash -c true` and `flock -x f true` are the
# floors (a bash start, a process start plus one lock).
#
# Usage: bench/hooks.sh [ITERATIONS=300]   (needs target/release: cargo build --release)
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=$repo/target/release
fx=$repo/tests/fixtures/hooks
hooks=$repo/hooks
n=${1:-300}
[[ -x $bin/state-manager ]] || { echo "bench/hooks.sh: build first: cargo build --release" >&2; exit 5; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/proj"
cd "$work"
export CLAUDE_PROJECT_DIR=$work/proj WFSTATE_BIN=$bin
unset STATE_FILE AUDIT_LOG LOCK_TIMEOUT WFSTATE_TRACKER_RULES WFSTATE_SKILL_RULES
"$bin/state-manager" hook post-tool-use <"$fx/edit-src.json"   # creates the state

# Microseconds taken by "$@" (stdin passed through).
took() {
  local start=$EPOCHREALTIME end
  "$@"
  end=$EPOCHREALTIME
  echo $((${end/./} - ${start/./}))
}

declare -A times
cases=(tracker-no-match tracker-signals skill-no-activation state-manager-signal flock bash)
for ((i = 0; i < n; i++)); do
  times[tracker-no-match]+="$(took bash "$hooks/post-tool-use-tracker.sh" <"$fx/grep.json") "
  times[tracker-signals]+="$(took bash "$hooks/post-tool-use-tracker.sh" <"$fx/edit-src.json") "
  times[skill-no-activation]+="$(took bash "$hooks/skill-activation-prompt.sh" <"$fx/prompt-plain.json") "
  times[state-manager-signal]+="$(STATE_FILE=proj/.claude/.workflow-state.json took "$bin/state-manager" signal BENCH) "
  times[flock]+="$(took flock -x "$work/f" true) "
  times[bash]+="$(took bash -c true) "
done
printf '%-22s %s\n' case "median (ms), $n runs"
for c in "${cases[@]}"; do
  median=$(tr ' ' '\n' <<<"${times[$c]}" | grep . | sort -n |
    awk '{a[NR] = $1} END {printf "%.2f", a[int((NR + 1) / 2)] / 1000}')
  printf '%-22s %s\n' "$c" "$median"
done
