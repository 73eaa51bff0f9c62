#!/usr/bin/env bash
# Audit review as the log grows (issue 16): `audit recent`, `history`,
# `races` and `stats` over generated logs of 100k and 1M events, the build
# of this tree ("after") beside another build ("before", optional), in one
# run. Prints medians (hyperfine), peak RSS (/usr/bin/time), instruction
# counts of `recent` and its floor `tail -n 3` (callgrind), the ratios the
# issue asks for, and whether each output is byte for byte the before one's.
#
# usage: bench/audit-scale.sh [SIZES...]          (default: 100000 1000000)
# env:   BEFORE_REF=<commit>   also build that commit (bench/base.sh: once,
#                              into target/bench-base/) and measure it as "before"
#        BEFORE_BIN=<path>     or use this state-manager as "before"
#        RUNS=N                hyperfine runs of the long reviews (3)
#        FAST_RUNS=N           hyperfine runs of recent and tail (100)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
sizes=("$@")
[[ ${#sizes[@]} -gt 0 ]] || sizes=(100000 1000000)
runs="${RUNS:-3}"
fast="${FAST_RUNS:-100}"

for tool in hyperfine valgrind jq python3; do
  if ! command -v "$tool" >/dev/null; then
    echo "bench: installing $tool" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$tool" >/dev/null
  fi
done
if [[ ! -x /usr/bin/time ]]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null
fi

work="$(mktemp -d)"
cleanup() {
  if [[ -n "${base_src:-}" ]]; then git -C "$repo" worktree remove --force "$base_src" || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

cargo build --release --quiet --bin state-manager
after="$repo/target/release/state-manager"
before="${BEFORE_BIN:-}"
if [[ -z "$before" && -n "${BEFORE_REF:-}" ]]; then
  # shellcheck source=bench/base.sh
  source "$repo/bench/base.sh"
  base_build "$(git -C "$repo" rev-parse --verify "${BEFORE_REF}^{commit}")" bench
  before="$base_bin/state-manager"
fi

# Reviews append their own event to the log (left out of every review):
# keep the log from rotating under the benchmark.
export AUDIT_MAX_BYTES=0 NO_COLOR=1

median_ms() { jq '.results[0].median * 1000 * 10 | round / 10' "$1"; }
# time_it OUT BIN ARGS...: hyperfine median (ms) of BIN ARGS.
time_it() {
  local out="$1" n="$2"
  shift 2
  hyperfine -N --warmup 1 --runs "$n" --export-json "$out" "$*" >/dev/null 2>&1
  median_ms "$out"
}
# rss_mib BIN ARGS...: peak resident memory in MiB.
rss_mib() {
  /usr/bin/time -f '%M' -o "$work/rss" "$@" >/dev/null 2>&1
  awk '{printf "%.1f", $1 / 1024}' "$work/rss"
}
# instructions BIN ARGS...: the "Collected" total of callgrind.
instructions() {
  # (A usage error exits 1: the count is still printed.)
  { valgrind --tool=callgrind --callgrind-out-file=/dev/null "$@" 2>&1 >/dev/null || true; } |
    awk '/Collected/ {print $NF}'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }

for n in "${sizes[@]}"; do
  log="$work/audit-$n.jsonl"
  python3 bench/gen-audit-log.py "$n" "$log"
  export AUDIT_LOG="$log" STATE_FILE="$work/state-$n.json"
  cat "$log" >/dev/null # page cache: the figure is the tool's, not the disk's
  echo
  echo "== $n events, $(($(stat -c %s "$log") / 1024 / 1024)) MiB =="

  # Instructions first, on the log as generated: every review appends its
  # own event (left out of every review, but `recent` reads back past them).
  i_recent=$(instructions "$after" audit recent -n 3)
  # What any call of the binary costs before it reads a byte of the log.
  i_start=$(instructions "$after" audit recent --bad-flag)
  t_tail=$(time_it "$work/t.json" "$fast" tail -n 3 "$log")
  i_tail=$(instructions tail -n 3 "$log")
  printf '%-62s %10s ms %14s instr\n' "tail -n 3 (floor)" "$t_tail" "$i_tail"

  printf '%-62s %10s %10s %7s %9s %9s %6s\n' review "before ms" "after ms" ratio "before MiB" "after MiB" output
  while IFS='|' read -r label reps args; do
    read -r -a argv <<<"$args"
    a_ms=$(time_it "$work/a.json" "$reps" "$after" "${argv[@]}")
    a_rss=$(rss_mib "$after" "${argv[@]}")
    "$after" "${argv[@]}" >"$work/after.out" 2>/dev/null || true
    b_ms=- b_rss=- same=-
    if [[ -n "$before" ]]; then
      b_ms=$(time_it "$work/b.json" "$reps" "$before" "${argv[@]}")
      b_rss=$(rss_mib "$before" "${argv[@]}")
      "$before" "${argv[@]}" >"$work/before.out" 2>/dev/null || true
      if cmp -s "$work/before.out" "$work/after.out"; then same=same; else same=DIFFERS; fi
    fi
    printf '%-62s %10s %10s %7s %9s %9s %6s\n' "$label" "$b_ms" "$a_ms" "$(ratio "$b_ms" "$a_ms")" "$b_rss" "$a_rss" "$same"
    if [[ "$label" == "recent -n 3" ]]; then recent_ms=$a_ms; fi
  done <<EOF
recent -n 3|$fast|audit recent -n 3
recent -n 3 --json|$fast|audit recent -n 3 --json
recent -n 50 --tool error-recovery --failed (no match: reads all)|$fast|audit recent -n 50 --tool error-recovery --failed
history deploy|$runs|audit history deploy
history deploy --json|$runs|audit history deploy --json
history STATE_FILE (30% of events)|$runs|audit history /srv/pipeline/.workflow-state.json
races|$runs|audit races
races --json|$runs|audit races --json
stats|$runs|audit stats
EOF
  echo "recent -n 3 / tail -n 3: wall $(ratio "$recent_ms" "$t_tail")×, instructions $(ratio "$i_recent" "$i_tail")× ($i_recent vs $i_tail) — goal ≤ 10×"
  echo "  of which start-up (a usage error: parse, no log read): $i_start instructions; reading: $((i_recent - i_start))"
done
