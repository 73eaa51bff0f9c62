#!/usr/bin/env bash
# How lock operations scale with the number of lock records in .locks/
# (issue 16): acquire+release of an ordinary name and of `state`, `list
# json` (time and peak memory) and creating records, at 10, 1,000 and
# 10,000 existing records. Prints medians (hyperfine) beside instruction
# counts (callgrind, noise-free) and the ratios the issue's goals name.
#
# Usage: bench/locks-scale.sh [RUNS] [BEFORE_BIN_DIR]
#   RUNS            hyperfine runs per command (default 100)
#   BEFORE_BIN_DIR  a folder holding another build's lock-manager (e.g. main
#                   built in a temp worktree): measured in the same run,
#                   side by side, as "before"; this checkout is "after".
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
runs="${1:-100}"
before="${2:-}"
cd "$repo"

for tool in hyperfine valgrind python3; do
  if ! command -v "$tool" >/dev/null; then
    echo "bench: installing $tool" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$tool" >/dev/null
  fi
done
[[ -x /usr/bin/time ]] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null

cargo build --release --quiet --bin lock-manager
work="$(mktemp -d)"
sleep 100000 &
holder=$!
trap 'kill "$holder" 2>/dev/null; rm -rf "$work"' EXIT
out="$work/results"
mkdir -p "$out"

sides=(after)
declare -A bins=([after]="$repo/target/release")
if [[ -n "$before" ]]; then
  sides=(before after)
  bins[before]="$(cd "$before" && pwd)"
fi

# fixture DIR N: a state root whose .locks/ holds N records, each held by
# pid 1 (live, so nothing is stale), as bench/run.sh makes them.
fixture() {
  mkdir -p "$1/.locks"
  python3 - "$1/.locks" "$2" <<'PY'
import json, os, sys
d, n = sys.argv[1], int(sys.argv[2])
boot = open("/proc/sys/kernel/random/boot_id").read().strip()
host = os.uname().nodename
start = int(open("/proc/1/stat").read().rsplit(")", 1)[1].split()[19])
for i in range(n):
    rec = {"name": f"l{i}", "type": "exclusive", "timestamp": "2026-01-01T00:00:00Z",
           "holders": [{"pid": 1, "start_time": start, "boot_id": boot, "host": host,
                        "acquired": "2026-01-01T00:00:00Z"}]}
    with open(os.path.join(d, f"l{i}.lock"), "w") as f:
        json.dump(rec, f)
PY
}

# time NAME COMMAND: hyperfine median (ms) into $out/NAME.
time_it() {
  hyperfine -N --warmup 5 --runs "$runs" --export-json "$out/$1.json" "$2" >/dev/null 2>&1 ||
    echo "bench: $1 failed: $2" >&2
}

# ir COMMAND...: callgrind's instruction total of one run.
ir() { valgrind --tool=callgrind --callgrind-out-file=/dev/null "$@" 2>&1 >/dev/null | awk '/Collected/ {print $4}'; }

for side in "${sides[@]}"; do
  lm="${bins[$side]}/lock-manager"
  for n in 10 1000 10000; do
    root="$work/$side-$n"
    fixture "$root" "$n"
    export STATE_FILE="$root/.workflow-state.json" AUDIT_LOG="$root/audit.jsonl"
    for lock in b state; do
      time_it "$side-acq_rel_$lock-$n" "sh -c '$lm acquire $lock 5 --owner \$\$ && $lm release $lock --owner \$\$'"
      a=$(ir "$lm" acquire "$lock" 5 --owner "$holder")
      r=$(ir "$lm" release "$lock" --owner "$holder")
      echo $((a + r)) >"$out/$side-ir_acq_rel_$lock-$n"
    done
    time_it "$side-list-$n" "$lm list json"
    ir "$lm" list json >"$out/$side-ir_list-$n"
    /usr/bin/time -f '%M' -o "$out/$side-rss_list-$n" "$lm" list json >/dev/null
    "$lm" list json | sha256sum | cut -c1-16 >"$out/$side-sum_list-$n"
    # Creating 1,000 more records (distinct names, one held by `holder` each).
    start=$(date +%s%N)
    for i in $(seq 1 1000); do "$lm" acquire "new$i" 0 --owner "$holder"; done
    echo $((($(date +%s%N) - start) / 1000)) >"$out/$side-create-$n"
  done
done

python3 - "$out" "$runs" "${sides[@]}" <<'PY'
import json, os, sys
out, runs, sides = sys.argv[1], sys.argv[2], sys.argv[3:]
def med(name):
    try:
        return json.load(open(os.path.join(out, name + ".json")))["results"][0]["median"] * 1000
    except (OSError, ValueError, KeyError, IndexError):
        return None
def num(name):
    try:
        return int(open(os.path.join(out, name)).read().strip())
    except (OSError, ValueError):
        return None
def txt(name):
    try:
        return open(os.path.join(out, name)).read().strip()
    except OSError:
        return "-"
f = lambda v, p=2: "-" if v is None else f"{v:.{p}f}"
g = lambda v: "-" if v is None else f"{v:,}"
ratio = lambda a, b: "-" if not a or not b else f"{a / b:.2f}"
print(f"hyperfine median of {runs} runs; Ir = callgrind instructions of one call")
for s in sides:
    print(f"\n## {s}\n")
    print("| records | acq+rel b ms | Ir | acq+rel state ms | Ir | list json ms | Ir | list RSS KiB | create 1,000 ms | list sha |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for n in ["10", "1000", "10000"]:
        c = num(f"{s}-create-{n}")
        print(f"| {int(n):,} | {f(med(f'{s}-acq_rel_b-{n}'))} | {g(num(f'{s}-ir_acq_rel_b-{n}'))} "
              f"| {f(med(f'{s}-acq_rel_state-{n}'))} | {g(num(f'{s}-ir_acq_rel_state-{n}'))} "
              f"| {f(med(f'{s}-list-{n}'))} | {g(num(f'{s}-ir_list-{n}'))} | {txt(f'{s}-rss_list-{n}')} "
              f"| {f(c / 1000 if c else None, 0)} | {txt(f'{s}-sum_list-{n}')} |")
    print("\nGoals (10,000 records against 10):\n")
    print("| goal | wall ratio | Ir ratio | target |")
    print("| --- | ---: | ---: | ---: |")
    for lock in ["b", "state"]:
        print(f"| acquire+release '{lock}' | {ratio(med(f'{s}-acq_rel_{lock}-10000'), med(f'{s}-acq_rel_{lock}-10'))} "
              f"| {ratio(num(f'{s}-ir_acq_rel_{lock}-10000'), num(f'{s}-ir_acq_rel_{lock}-10'))} | <= 1.1 |")
    l10k = med(f"{s}-list-10000")
    print(f"| list json ms per 1,000 records (at 10,000) | {f(l10k / 10 if l10k else None)} ms | - | <= 15 ms |")
    c10, c10k = num(f"{s}-create-10"), num(f"{s}-create-10000")
    print(f"| creating 1,000 records on 10,000 vs on 10 | {ratio(c10k, c10)} | - | ~1 (linear) |")
PY
