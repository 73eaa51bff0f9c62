#!/usr/bin/env bash
# The durable write path (issue 16): `state-manager set`, the PostToolUse
# hook registered directly and `read PATH`, against the C floor of the same
# durable work (bench/durable_set.c: read, backup link, temp write,
# fdatasync, folder fsyncs, rename, audit append), bench/durable_write.c,
# sqlite3 with synchronous=FULL doing the same update, and a flock+jq+mv
# pipeline; on a state of about 1 KB and one of 10 MiB. Prints hyperfine
# medians and callgrind instruction counts side by side and the ratios of
# the issue's goals, all measured in one run.
# Usage: bench/write.sh [RUNS] [BEFORE_BIN_DIR]
#   BEFORE_BIN_DIR: the target/release of another build (e.g. main's), measured beside this one.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
runs="${1:-100}"
before="${2:-}"
cd "$repo"

for tool in hyperfine jq flock valgrind sqlite3 gcc python3; do
  if ! command -v "$tool" >/dev/null; then
    echo "bench: installing $tool" >&2
    pkg=$tool; [[ $tool == flock ]] && pkg=util-linux
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null
  fi
done

cargo build --release --quiet --bins
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
gcc -O2 -o "$work/durable_set" bench/durable_set.c
gcc -O2 -o "$work/durable_write" bench/durable_write.c
out="$work/results"
mkdir -p "$out"

builds=(after)
declare -A bin=([after]="$repo/target/release")
if [[ -n $before ]]; then
  builds=(before after)
  bin[before]="$(cd "$before" && pwd)"
fi

# bench NAME RUNS COMMAND: hyperfine's median (ms) of COMMAND into $out/NAME.json.
bench() {
  hyperfine -N --warmup 5 --runs "$2" --export-json "$out/$1.json" "$3" >/dev/null 2>&1 ||
    echo "bench: $1 failed: $3" >&2
}
med() { jq -r '.results[0].median * 100000 | round / 100' "$out/$1.json" 2>/dev/null || echo nan; }
# count COMMAND...: instructions (callgrind's "Collected" total).
count() { valgrind --tool=callgrind --callgrind-out-file=/dev/null "$@" 2>&1 >/dev/null | awk '/Collected/ {print $4}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "nan" }'; }

payload="$work/payload.json"
printf '%s' '{"session_id":"bench","transcript_path":"/tmp/t.jsonl","cwd":"'"$work"'","hook_event_name":"PostToolUse","tool_name":"Edit","tool_input":{"file_path":"'"$work"'/src/main.rs","old_string":"a","new_string":"b"},"tool_response":{"success":true}}' >"$payload"

# A state of about 1 KB (as bench/run.sh makes it) and one of 10 MiB, per build.
make_state() { # DIR SIZE BIN
  mkdir -p "$1"
  STATE_FILE="$1/.workflow-state.json" AUDIT_LOG="$1/audit.jsonl" "$3/state-manager" init >/dev/null
  if [[ $2 == small ]]; then
    STATE_FILE="$1/.workflow-state.json" AUDIT_LOG="$1/audit.jsonl" "$3/state-manager" merge \
      '{"completedTasks":["1.1","1.2","1.3","2.1"],"context":{"activeSkills":["tdd","review"],"notes":"'"$(head -c 400 /dev/zero | tr '\0' 'n')"'"}}'
  else
    python3 - "$1/.workflow-state.json" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
doc["completedTasks"] = [f"task-{i:06d}" for i in range(10 * 2**20 // 16)]
json.dump(doc, open(sys.argv[1], "w"), indent=2)
PY
    # One set so the file is the toolkit's own (sealed, pretty) from the start.
    STATE_FILE="$1/.workflow-state.json" AUDIT_LOG="$1/audit.jsonl" "$3/state-manager" set .phase --string s
  fi
}

for size in small big; do
  # The floors work on a copy of the same document.
  mkdir -p "$work/floor-$size/backups"
  make_state "$work/tmp-$size" "$size" "${bin[after]}"
  cp "$work/tmp-$size/.workflow-state.json" "$work/floor-$size/state.json"
  n=$runs; [[ $size == big ]] && n=$(( runs / 5 > 5 ? runs / 5 : 5 ))
  bench "floor_$size" "$n" "$work/durable_set $work/floor-$size/state.json $work/floor-$size/backups $work/floor-$size/audit.jsonl"
  [[ $size == small ]] && bench floor_sh "$n" "sh -c '$work/durable_set $work/floor-$size/state.json $work/floor-$size/backups $work/floor-$size/audit.jsonl'"
  for b in "${builds[@]}"; do
    make_state "$work/$b-$size" "$size" "${bin[$b]}"
    sm="${bin[$b]}/state-manager"
    export STATE_FILE="$work/$b-$size/.workflow-state.json" AUDIT_LOG="$work/$b-$size/audit.jsonl"
    bench "set_${size}_$b" "$n" "$sm set .phase --string bench"
    if [[ $size == small ]]; then
      # hyperfine -N cannot feed stdin: the hook and its floor both run under sh.
      bench "hook_$b" "$n" "sh -c '$sm hook post-tool-use < $payload'"
      count "$sm" set .phase --string bench </dev/null >"$out/ir_set_small_$b"
      count "$sm" hook post-tool-use <"$payload" >"$out/ir_hook_$b"
    else
      bench "read_big_$b" "$n" "$sm read"
      bench "readpath_big_$b" "$n" "$sm read .phase"
      /usr/bin/time -f '%M' -o "$out/rss_set_big_$b" "$sm" set .phase --string m
      /usr/bin/time -f '%M' -o "$out/rss_readpath_big_$b" "$sm" read .phase >/dev/null
      count "$sm" set .phase --string bench >"$out/ir_set_big_$b"
      count "$sm" read .phase >"$out/ir_readpath_big_$b"
      count "$sm" read >"$out/ir_read_big_$b"
      stat -c %s "$STATE_FILE" >"$out/size_big"
    fi
    unset STATE_FILE AUDIT_LOG
  done
done
count "$work/durable_set" "$work/floor-small/state.json" "$work/floor-small/backups" "$work/floor-small/audit.jsonl" >"$out/ir_floor_small"
count "$work/durable_set" "$work/floor-big/state.json" "$work/floor-big/backups" "$work/floor-big/audit.jsonl" >"$out/ir_floor_big"
bench durable_write "$runs" "$work/durable_write $work/floor.json"

# sqlite3, synchronous=FULL: the same document in a row, the same update.
db="$work/state.db"
sqlite3 "$db" "CREATE TABLE s(id INTEGER PRIMARY KEY, doc TEXT); INSERT INTO s VALUES (1, readfile('$work/floor-small/state.json'));"
bench sqlite "$runs" "sqlite3 $db \"PRAGMA synchronous=FULL; UPDATE s SET doc = json_set(doc, '\$.phase', 'bench') WHERE id = 1;\""
plain="$work/plain.json"
cp "$work/floor-small/state.json" "$plain"
cat >"$work/jq_update.sh" <<SH
#!/bin/sh
jq '.phase = "x"' "$plain" >"$plain.tmp" && mv "$plain.tmp" "$plain"
SH
chmod +x "$work/jq_update.sh"
bench jq_update "$runs" "flock -x $plain.lock $work/jq_update.sh"

echo "Measured $(date -u '+%Y-%m-%d %H:%M UTC') on $(hostname) ($(nproc) cores); hyperfine medians, $runs runs (10 MiB: fewer); instructions from callgrind."
echo
echo "| command | build | median ms | instructions |"
echo "| --- | --- | ---: | ---: |"
echo "| C floor of a durable set, 1 KB (durable_set.c) | - | $(med floor_small) | $(cat "$out/ir_floor_small") |"
echo "| C floor of a durable set, 10 MiB | - | $(med floor_big) | $(cat "$out/ir_floor_big") |"
echo "| C floor of a durable set, 1 KB, under sh -c | - | $(med floor_sh) | - |"
echo "| durable_write.c (4 KiB, two fsyncs) | - | $(med durable_write) | - |"
echo "| sqlite3 UPDATE, synchronous=FULL | - | $(med sqlite) | - |"
echo "| flock + jq + mv | - | $(med jq_update) | - |"
for b in "${builds[@]}"; do
  echo "| set, 1 KB | $b | $(med "set_small_$b") | $(cat "$out/ir_set_small_$b") |"
  echo "| hook post-tool-use (direct, under sh -c) | $b | $(med "hook_$b") | $(cat "$out/ir_hook_$b") |"
  echo "| set, 10 MiB | $b | $(med "set_big_$b") | $(cat "$out/ir_set_big_$b") |"
  echo "| read (whole), 10 MiB | $b | $(med "read_big_$b") | $(cat "$out/ir_read_big_$b") |"
  echo "| read .phase, 10 MiB | $b | $(med "readpath_big_$b") | $(cat "$out/ir_readpath_big_$b") |"
done
echo
size=$(cat "$out/size_big")
echo "| goal | target | $(printf '%s | ' "${builds[@]}")"
echo "| --- | ---: |$(printf ' ---: |%.0s' "${builds[@]}")"
row() { # TITLE TARGET CMD-PRODUCING-VALUE-FOR-BUILD
  local line="| $1 | $2 |"
  for b in "${builds[@]}"; do line+=" $($3 "$b") |"; done
  echo "$line"
}
g1() { ratio "$(med "set_small_$1")" "$(med floor_small)"; }
g1b() { ratio "$(med "set_small_$1")" "$(med durable_write)"; }
g2() { ratio "$(med "set_small_$1")" "$(med sqlite)"; }
g3() { ratio "$(med "set_small_$1")" "$(med jq_update)"; }
g4() { ratio "$(med "set_big_$1")" "$(med floor_big)"; }
g5() { ratio "$(cat "$out/rss_set_big_$1")" "$(( size / 1024 ))"; }
g6() { ratio "$(med "readpath_big_$1")" "$(med "read_big_$1")"; }
g7() { ratio "$(med "hook_$1")" "$(med floor_sh)"; }
g8() { ratio "$(cat "$out/rss_readpath_big_$1")" "$(( size / 1024 ))"; }
row "set / C floor (1 KB)" "<= 1.5" g1
row "set / durable_write.c" "-" g1b
row "set / sqlite3 synchronous=FULL" "<= 0.7" g2
row "set / flock+jq+mv" "-" g3
row "set 10 MiB / C floor 10 MiB" "<= 2.5" g4
row "set 10 MiB peak RSS / document" "<= 4" g5
row "read .phase / read (10 MiB)" "<= 2" g6
row "read .phase 10 MiB peak RSS / document" "-" g8
row "hook (direct) / C floor (1 KB), both under sh" "<= 1.5" g7
