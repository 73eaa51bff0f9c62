#!/usr/bin/env bash
# Locks on Redis (issue 14) against what a user would script by hand, in one
# run, with the release binaries:
#
#   1. acquire + release of one lock by a shell: `lock-manager acquire` +
#      `lock-manager release` (a lease, a keeper, a fencing token, the audit
#      event) against `redis-cli SET k v NX PX 30000` + `redis-cli DEL k`
#      (two processes, no owner, no token, no audit), and the same pair of
#      lock-manager calls on the file backend;
#   2. handoff latency: a waiter blocked on a held lock, the holder releases;
#      from the start of the release (the holder's shell, $EPOCHREALTIME) to
#      the waiter's grant (its `acquired` time, on the same clock), N runs,
#      p50/p95, on Redis and on files;
#   3. 8 shells x 50 fenced `state-manager set`, each under its own
#      `lock-manager acquire state` / `release`: throughput, on Redis and on
#      files.
#
# Starts its own redis-server (unix socket, AOF, appendfsync always) in a temp
# dir and kills it at exit. Timings 1 are hyperfine medians, taken in ROUNDS
# interleaved rounds (wfstate, by hand, files, wfstate, ...) and the median of
# the rounds kept, so that a slow minute on a shared machine hits all sides.
#
# Usage: bench/redis-locks.sh [RUNS] [ROUNDS] [HANDOFFS]
#   RUNS      hyperfine runs per command per round (default 40)
#   ROUNDS    interleaved rounds (default 5)
#   HANDOFFS  handoffs per backend (default 40)
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
runs=${1:-40}
rounds=${2:-5}
handoffs=${3:-40}
for n in "$runs" "$rounds" "$handoffs"; do
  [[ $n =~ ^[1-9][0-9]*$ ]] || { echo "redis-locks.sh: RUNS, ROUNDS and HANDOFFS must be positive integers" >&2; exit 1; }
done
for tool in redis-server redis-cli hyperfine python3; do
  command -v "$tool" >/dev/null || { echo "redis-locks.sh: $tool is required (apt-get install redis-server hyperfine python3)" >&2; exit 5; }
done
unset STATE_FILE AUDIT_LOG WFSTATE_BACKEND WFSTATE_NAMESPACE WFSTATE_LEASE LOCK_OWNER_PID LOCK_TIMEOUT DEBUG
cargo build --release --bins --quiet --manifest-path "$repo/Cargo.toml"
bin="$repo/target/release"
lm="$bin/lock-manager"
sm="$bin/state-manager"

work=$(mktemp -d)
# shellcheck source=bench/redis-server.sh
source "$repo/bench/redis-server.sh"
cleanup() {
  stop_redis_server
  rm -rf "$work"
}
trap cleanup EXIT
start_redis_server "$work"

url="redis+unix://$sock"
ns=bench
mkdir -p "$work/redis" "$work/file" "$work/out"
out="$work/out"
# Each side in its own root; the file side keeps its records in .locks/.
export WFSTATE_NAMESPACE=$ns
WFSTATE_BACKEND=$url STATE_FILE="$work/redis/.workflow-state.json" AUDIT_LOG="$work/redis/audit.jsonl" "$sm" init >/dev/null
STATE_FILE="$work/file/.workflow-state.json" AUDIT_LOG="$work/file/audit.jsonl" "$sm" init >/dev/null
on_redis="env WFSTATE_BACKEND=$url STATE_FILE=$work/redis/.workflow-state.json AUDIT_LOG=$work/redis/audit.jsonl"
on_file="env STATE_FILE=$work/file/.workflow-state.json AUDIT_LOG=$work/file/audit.jsonl"

# 1. acquire + release by one shell, interleaved rounds.
echo "redis-locks.sh: acquire + release, $rounds rounds of $runs runs" >&2
pair_lm="sh -c '$lm acquire b 5 --owner \$\$ >/dev/null && $lm release b --owner \$\$ >/dev/null'"
pair_cli="sh -c 'redis-cli -s $sock SET bench:b x NX PX 30000 >/dev/null && redis-cli -s $sock DEL bench:b >/dev/null'"
for r in $(seq 1 "$rounds"); do
  hyperfine -N --warmup 5 --runs "$runs" --style none --export-json "$out/acq.$r.json" \
    -n redis "$on_redis $pair_lm" \
    -n cli "$pair_cli" \
    -n file "$on_file $pair_lm" >/dev/null 2>"$out/acq.$r.err" ||
    { cat "$out/acq.$r.err" >&2; exit 1; }
done

# 2. Handoff: holder and waiter are sleeping processes named by --owner; the
# waiter is blocked (on Redis: queued in lock:h:w; on files: 50 ms after its
# start, as bench/run.sh does) when the release starts.
handoff() { # handoff SIDE ENV...
  local side=$1
  shift
  local holder waiter pending t0 root="$work/$side"
  : >"$out/handoff.$side"
  for _ in $(seq 1 "$handoffs"); do
    sleep 60 & holder=$!
    sleep 60 & waiter=$!
    "$@" "$lm" acquire h 5 --owner "$holder" >/dev/null
    "$@" "$lm" acquire h 10 --owner "$waiter" --json >"$root/waiter.json" &
    pending=$!
    if [[ $side == redis ]]; then
      for _ in $(seq 1 500); do
        [[ $(redis-cli -s "$sock" ZCARD "wfstate:{$ns}:lock:h:w") -ge 1 ]] && break
        sleep 0.01
      done
    else
      sleep 0.05
    fi
    t0=$EPOCHREALTIME
    "$@" "$lm" release h --owner "$holder" >/dev/null
    wait "$pending"
    printf '%s %s\n' "$t0" "$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print([h["acquired"] for h in d["holders"] if h["pid"]==int(sys.argv[2])][0])' "$root/waiter.json" "$waiter")" >>"$out/handoff.$side"
    "$@" "$lm" release h --owner "$waiter" >/dev/null
    kill "$holder" "$waiter"
    wait "$holder" "$waiter" 2>/dev/null || true
  done
}
echo "redis-locks.sh: $handoffs handoffs on each backend" >&2
# shellcheck disable=SC2086 # the env prefixes are meant to split into words
handoff redis $on_redis
# shellcheck disable=SC2086
handoff file $on_file

# 3. 8 shells x 50 fenced sets, each under its own hold of `state`.
shells() { # shells SIDE ENV...: prints the wall time in seconds
  local side=$1
  shift
  local s pids=() t0 t1
  t0=$EPOCHREALTIME
  for s in $(seq 1 8); do
    # shellcheck disable=SC2016 # expanded by the inner shell
    "$@" bash -c '
      for i in $(seq 1 50); do
        "$0" acquire state 120 >/dev/null || exit 1
        "$1" set .phase --string "s$2-$i" >/dev/null || exit 1
        "$0" release state >/dev/null || exit 1
      done' "$lm" "$sm" "$s" &
    pids+=($!)
  done
  for s in "${pids[@]}"; do
    wait "$s" || { echo "redis-locks.sh: a $side shell failed" >&2; exit 1; }
  done
  t1=$EPOCHREALTIME
  python3 -c 'import sys; print(float(sys.argv[2]) - float(sys.argv[1]))' "$t0" "$t1"
}
echo "redis-locks.sh: 8 shells x 50 fenced sets, $rounds rounds" >&2
: >"$out/shells"
for r in $(seq 1 "$rounds"); do
  # shellcheck disable=SC2086
  printf 'redis %s\n' "$(shells redis $on_redis)" >>"$out/shells"
  # shellcheck disable=SC2086
  printf 'file %s\n' "$(shells file $on_file)" >>"$out/shells"
done

python3 - "$out" "$rounds" <<'PY'
import datetime, json, os, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
def rnd(name):
    return {r["command"]: r["median"] * 1000 for r in json.load(open(os.path.join(out, name)))["results"]}
acq = [rnd(f"acq.{r}.json") for r in range(1, rounds + 1)]
m = {k: statistics.median(a[k] for a in acq) for k in ("redis", "cli", "file")}
print(f"### acquire + release by one shell (median of {rounds} interleaved hyperfine medians)\n")
print("| what | ms | ratio to `redis-cli` pair |")
print("| --- | ---: | ---: |")
print(f"| `lock-manager acquire` + `release` on Redis | {m['redis']:.2f} | {m['redis']/m['cli']:.2f} |")
print(f"| `redis-cli SET NX PX` + `redis-cli DEL` | {m['cli']:.2f} | 1.00 |")
print(f"| `lock-manager acquire` + `release` on files | {m['file']:.2f} | {m['file']/m['cli']:.2f} |")
def ts(s):
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, round(p / 100 * (len(v) - 1)))]
print("\n### handoff (release starts -> the blocked waiter holds the lock)\n")
print("| backend | n | p50 ms | p95 ms | max ms |")
print("| --- | ---: | ---: | ---: | ---: |")
for side in ("redis", "file"):
    lat = []
    for line in open(os.path.join(out, f"handoff.{side}")):
        t0, acquired = line.split()
        lat.append((ts(acquired) - float(t0)) * 1000)
    print(f"| {side} | {len(lat)} | {pct(lat, 50):.2f} | {pct(lat, 95):.2f} | {max(lat):.2f} |")
print(f"\n### 8 shells x 50 fenced `set`, each under `acquire state` / `release` ({rounds} rounds, median)\n")
walls = {"redis": [], "file": []}
for line in open(os.path.join(out, "shells")):
    side, t = line.split()
    walls[side].append(float(t))
print("| backend | wall s | sets/s | ratio to files |")
print("| --- | ---: | ---: | ---: |")
f = statistics.median(walls["file"])
for side in ("redis", "file"):
    w = statistics.median(walls[side])
    print(f"| {side} | {w:.2f} | {400 / w:.0f} | {w / f:.2f} |")
PY
