#!/usr/bin/env bash
# Measures every hot subcommand against floors and hand-written equivalents,
# in one run on this machine, and prints medians and ratios (also written to
# bench/RESULTS.md). Absolute times are noisy on a shared VM; the ratios,
# measured side by side, are what to compare.
# Usage: bench/run.sh [RUNS] [BASE_REV]
#   BASE_REV: measure that revision's release build too (built once by
#   bench/base.sh into target/bench-base/<sha>/), and print every figure
#   before (BASE_REV) and after (this checkout) with their ratio.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
runs="${1:-200}"
base_rev="${2:-}"
cd "$repo"

for tool in hyperfine jq flock valgrind; do
  if ! command -v "$tool" >/dev/null; then
    echo "bench: installing $tool" >&2
    pkg=$tool; [[ $tool == flock ]] && pkg=util-linux
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null
  fi
done

cargo build --release --quiet
builds=(after)
declare -A bins=([after]="$repo/target/release")
if [[ -n $base_rev ]]; then
  base_sha=$(git rev-parse --verify "${base_rev}^{commit}")
  base_src=""
  # shellcheck source=bench/base.sh
  source "$repo/bench/base.sh"
  base_build "$base_sha" bench
  builds=(before after)
  bins[before]=$base_bin
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"; [[ -z ${base_src:-} ]] || git -C "$repo" worktree remove --force "$base_src"' EXIT
gcc -O2 -o "$work/durable_write" bench/durable_write.c
out="$work/results"
mkdir -p "$out"

# bench NAME COMMAND: median wall time (ms) of COMMAND into $out/NAME.json.
bench() {
  local name="$1" cmd="$2"
  hyperfine -N --warmup 10 --runs "$runs" --export-json "$out/$name.json" "$cmd" >/dev/null 2>&1 ||
    echo "bench: $name failed: $cmd" >&2
}
# Instruction counts: noise-free figures to compare commits.
count() { valgrind --tool=callgrind --callgrind-out-file=/dev/null "$@" 2>&1 >/dev/null | awk '/Collected/ {print $4}'; }

# The floors and the hand-written equivalents, once for every build.
# A state of about 1 KB, like a real workflow's (made by this checkout's build).
make_state() {
  "$1/state-manager" --state-file "$2" init >/dev/null
  "$1/state-manager" --state-file "$2" merge '{"completedTasks":["1.1","1.2","1.3","2.1"],"context":{"activeSkills":["tdd","review"],"notes":"'"$(head -c 400 /dev/zero | tr '\0' 'n')"'"}}' >/dev/null
}
mkdir -p "$work/plain"
make_state "${bins[after]}" "$work/plain/state.json"
plain="$work/plain.json"
cp "$work/plain/state.json" "$plain"
bench true "/bin/true"
bench flock "flock -x $work/f.lock true"
bench flock2 "sh -c 'flock -x $work/f.lock true; flock -x $work/f.lock true'"
bench jq "jq . $plain"
cat >"$work/jq_update.sh" <<SH
#!/bin/sh
jq '.phase = "x"' "$plain" >"$plain.tmp" && mv "$plain.tmp" "$plain"
SH
chmod +x "$work/jq_update.sh"
bench jq_update "flock -x $plain.lock $work/jq_update.sh"
bench durable "$work/durable_write $work/floor.json"
count /bin/true >"$out/ir_true"

# measure BUILD: every figure of one build's binaries, into $out/BUILD_*,
# against its own state files under $work/BUILD.
measure() {
  local b=$1 bin=${bins[$1]}
  local root="$work/$b/root"
  mkdir -p "$root"
  export STATE_FILE="$root/.workflow-state.json" AUDIT_LOG="$root/.workflow-audit.jsonl"
  make_state "$bin" "$STATE_FILE"
  local payload="$work/$b/payload.json"
  printf '%s' '{"session_id":"bench","transcript_path":"/tmp/t.jsonl","cwd":"'"$root"'","hook_event_name":"PostToolUse","tool_name":"Edit","tool_input":{"file_path":"'"$root"'/src/main.rs","old_string":"a","new_string":"b"},"tool_response":{"success":true}}' >"$payload"

  bench "${b}_read" "$bin/state-manager read"
  bench "${b}_read_path" "$bin/state-manager read .phase --raw"
  bench "${b}_set" "$bin/state-manager set .phase --string bench"
  bench "${b}_acq_rel" "sh -c '$bin/lock-manager acquire b 5 --owner \$\$ && $bin/lock-manager release b --owner \$\$'"
  if [[ -x hooks/post-tool-use-tracker.sh ]]; then
    bench "${b}_tracker" "sh -c 'WFSTATE_BIN=$bin $repo/hooks/post-tool-use-tracker.sh < $payload'"
  fi

  # Scaling: state size (read, set, peak memory) and lock-record count.
  local scale="$work/$b/scale" size n f
  for size in 1000 100000 10000000; do
    mkdir -p "$scale/$size"
    f="$scale/$size/.workflow-state.json"
    STATE_FILE="$f" "$bin/state-manager" init >/dev/null
    python3 - "$f" "$size" <<'PY'
import json, sys
path, size = sys.argv[1], int(sys.argv[2])
doc = json.load(open(path))
doc["completedTasks"] = [f"task-{i:06d}" for i in range(max(1, size // 16))]
json.dump(doc, open(path, "w"), indent=2)
PY
    STATE_FILE="$f" bench "${b}_read_$size" "$bin/state-manager read"
    STATE_FILE="$f" bench "${b}_set_$size" "$bin/state-manager set .phase --string s"
    STATE_FILE="$f" /usr/bin/time -f '%M' -o "$out/${b}_mem_read_$size" "$bin/state-manager" read >/dev/null
    STATE_FILE="$f" /usr/bin/time -f '%M' -o "$out/${b}_mem_set_$size" "$bin/state-manager" set .phase --string m
  done
  for n in 10 10000; do
    mkdir -p "$scale/locks$n"
    export STATE_FILE="$scale/locks$n/.workflow-state.json"
    "$bin/state-manager" init >/dev/null
    python3 - "$scale/locks$n/.locks" "$n" <<'PY'
import json, os, sys
d, n = sys.argv[1], int(sys.argv[2])
os.makedirs(d, exist_ok=True)
boot = open("/proc/sys/kernel/random/boot_id").read().strip()
host = os.uname().nodename
start = int(open("/proc/1/stat").read().rsplit(")", 1)[1].split()[19])
for i in range(n):
    rec = {"name": f"l{i}", "type": "exclusive", "timestamp": "2026-01-01T00:00:00Z",
           "holders": [{"pid": 1, "start_time": start, "boot_id": boot, "host": host,
                        "acquired": "2026-01-01T00:00:00Z"}]}
    json.dump(rec, open(os.path.join(d, f"l{i}.lock"), "w"))
PY
    bench "${b}_acq_rel_locks$n" "sh -c '$bin/lock-manager acquire b 5 --owner \$\$ && $bin/lock-manager release b --owner \$\$'"
    bench "${b}_list_locks$n" "$bin/lock-manager list json"
  done
  export STATE_FILE="$root/.workflow-state.json"

  # Lock handoff: a waiter blocks on a lock held by another owner; the holder
  # releases; how long from the start of the release until the waiter holds it
  # (from the audit events' end times minus the release's own duration).
  local handoff="$work/$b/handoff"
  mkdir -p "$handoff"
  (
    export STATE_FILE="$handoff/.workflow-state.json" AUDIT_LOG="$handoff/audit.jsonl"
    for _ in $(seq 1 30); do
      sleep 30 & holder=$!
      sleep 30 & waiter=$!
      "$bin/lock-manager" acquire h 5 --owner "$holder"
      "$bin/lock-manager" acquire h 10 --owner "$waiter" &
      pending=$!
      sleep 0.05
      "$bin/lock-manager" release h --owner "$holder"
      wait "$pending"
      "$bin/lock-manager" release h --owner "$waiter"
      kill "$holder" "$waiter"
      wait "$holder" "$waiter" 2>/dev/null || true
    done
  )
  python3 - "$handoff/audit.jsonl" >"$out/${b}_handoff" <<'PY'
import datetime, json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
t = lambda e: datetime.datetime.fromisoformat(e["ts"].replace("Z", "+00:00")).timestamp()
waited = [e for e in ev if e["op"] == "acquire" and e["exit_code"] == 0 and e["detail"].get("wait_ms", 0) > 20]
starts = [t(e) - e["duration_ms"] / 1000 for e in ev if e["op"] == "release" and e["exit_code"] == 0]
lat = sorted((t(f) - max(s for s in starts if s <= t(f))) * 1000 for f in waited)
print(f"{lat[len(lat) // 2]:.2f} ms median, {lat[-1]:.2f} ms max over {len(lat)} handoffs")
PY

  count "$bin/state-manager" read >"$out/${b}_ir_read"
  count "$bin/state-manager" set .phase --string ir >"$out/${b}_ir_set"
  count "$bin/state-manager" --version >"$out/${b}_ir_version"
  unset STATE_FILE AUDIT_LOG
}
for b in "${builds[@]}"; do
  measure "$b"
done
bench_version() {
  local args=(-N --warmup 50 --runs "$((runs * 5))" --export-json "$out/version.json" /bin/true) b
  for b in "${builds[@]}"; do args+=("${bins[$b]}/state-manager --version"); done
  hyperfine "${args[@]}" >/dev/null 2>&1 || echo "bench: --version failed" >&2
}
bench_version

python3 - "$out" "$repo/bench/RESULTS.md" "$runs" "${builds[@]}" <<'PY'
import json, os, sys, platform, datetime
out, results, runs, builds = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
def med(name, i=0):
    p = os.path.join(out, name + ".json")
    try:
        return json.load(open(p))["results"][i]["median"] * 1000
    except (OSError, ValueError, KeyError, IndexError):
        return None  # that command failed; its row shows "-"
def read(name):
    p = os.path.join(out, name)
    return open(p).read().strip() if os.path.exists(p) else "-"
def ms(v): return f"{v:.2f}" if v else "-"
def num(v):
    try: return int(v)
    except ValueError: return None
def ratio(a, b): return f"{a/b:.2f}" if a and b else "-"
two = len(builds) == 2
# Per build: a figure's cells, then (with two builds) after/before.
def cells(values, fmt):
    row = [fmt(v) for v in values]
    if two:
        row.append(ratio(values[1], values[0]))
    return row
head = [f"{b} {u}" for b in builds for u in ["ms"]] if two else ["median ms"]
floors = [("/bin/true (process start)", "true"), ("flock -x FILE true", "flock"),
          ("two flock -x FILE true (in sh)", "flock2"), ("jq . FILE", "jq"),
          ("flock + jq + mv update (no fsync)", "jq_update"), ("durable-write floor (C)", "durable")]
ours = [("state-manager read", "read"), ("state-manager read .phase --raw", "read_path"),
        ("state-manager set (durable, backup, audit)", "set"),
        ("lock-manager acquire + release (in sh)", "acq_rel"), ("post-tool-use tracker hook", "tracker")]
lines = ["# Benchmark results", "",
         f"Measured {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC on {platform.node()} "
         f"({os.cpu_count()} cores), hyperfine median of {runs} runs each, all in one run of bench/run.sh"
         + (" (before: the base revision's build; after: this checkout's)." if two else "."), ""]
cols = (["command"] + [f"{b} ms" for b in builds] + ["after/before"]) if two else ["command", "median ms"]
lines += ["| " + " | ".join(cols) + " |", "| --- |" + " ---: |" * (len(cols) - 1)]
for n, k in floors:
    v = med(k)
    lines.append(f"| {n} | " + " | ".join([ms(v)] * len(builds) + (["1.00"] if two else [])) + " |")
for n, k in ours:
    lines.append(f"| {n} | " + " | ".join(cells([med(f"{b}_{k}") for b in builds], ms)) + " |")
v = [med("version", i + 1) for i in range(len(builds))]
lines.append("| state-manager --version | " + " | ".join(cells(v, ms)) + " |")

goals = [("read <= 0.25 x jq . FILE", "read", "jq", 0.25, 1),
         ("set <= 0.5 x flock+jq+mv update", "set", "jq_update", 0.5, 1),
         ("set <= 1.3 x durable-write floor", "set", "durable", 1.3, 1),
         ("acquire+release <= 1.5 x two flock", "acq_rel", "flock2", 1.5, 1),
         ("tracker hook <= 10 ms", "tracker", None, 10, 1),
         ("--version <= 1.4 x /bin/true", None, None, 1.4, 1)]
gcols = ["goal"] + [f"{b} ratio" for b in builds] + ["target"] + [f"{b} met" for b in builds]
lines += ["", "| " + " | ".join(gcols) + " |", "| --- |" + " ---: |" * (len(builds) + 1) + " --- |" * len(builds)]
for n, k, floor, t, _ in goals:
    rs = []
    for i, b in enumerate(builds):
        if k is None:
            a, f = med("version", i + 1), med("version", 0)
        else:
            a, f = med(f"{b}_{k}"), (med(floor) if floor else 1.0)
        rs.append(a / f if a and f else None)
    unit = " ms" if k is not None and floor is None else ""
    lines.append(f"| {n} | " + " | ".join(f"{r:.2f}{unit}" if r else "-" for r in rs) + f" | {t}{unit} | "
                 + " | ".join(("yes" if r <= t else "no") if r else "-" for r in rs) + " |")

for b in builds:
    lines += ["", f"Lock handoff (holder's release starts -> waiter holds the lock){' (' + b + ')' if two else ''}: {read(b + '_handoff')}"]

lines += ["", "Scaling with state size (median ms, peak RSS KiB):", ""]
sc = ["state size"] + [f"{w}{' ' + b if two else ''}" for w in ["read ms", "set ms", "read RSS", "set RSS"] for b in builds]
lines += ["| " + " | ".join(sc) + " |", "|" + " ---: |" * len(sc)]
for s in ["1000", "100000", "10000000"]:
    row = [f"{int(s):,} B"]
    row += [ms(med(f"{b}_read_{s}")) for b in builds] + [ms(med(f"{b}_set_{s}")) for b in builds]
    row += [read(f"{b}_mem_read_{s}") for b in builds] + [read(f"{b}_mem_set_{s}") for b in builds]
    lines.append("| " + " | ".join(row) + " |")

lines += ["", "Scaling with lock records (median ms):", ""]
lc = ["records"] + [f"{w}{' ' + b if two else ''}" for w in ["acquire+release", "list json"] for b in builds]
lines += ["| " + " | ".join(lc) + " |", "|" + " ---: |" * len(lc)]
for n in ["10", "10000"]:
    row = [f"{int(n):,}"] + [ms(med(f"{b}_acq_rel_locks{n}")) for b in builds] + [ms(med(f"{b}_list_locks{n}")) for b in builds]
    lines.append("| " + " | ".join(row) + " |")

lines += ["", "Instructions (valgrind callgrind, noise-free):", ""]
ic = ["call"] + builds + (["after/before"] if two else [])
lines += ["| " + " | ".join(ic) + " |", "| --- |" + " ---: |" * (len(ic) - 1)]
for n, k in [("state-manager read", "ir_read"), ("state-manager set", "ir_set"), ("state-manager --version", "ir_version")]:
    vals = [read(f"{b}_{k}") for b in builds]
    row = vals + ([ratio(num(vals[1]), num(vals[0]))] if two else [])
    lines.append(f"| {n} | " + " | ".join(row) + " |")
lines.append(f"| /bin/true | " + " | ".join([read("ir_true")] * len(builds) + (["1.00"] if two else [])) + " |")
text = "\n".join(lines) + "\n"
print(text, end="")
open(results, "w").write(text)
PY
