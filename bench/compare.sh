#!/usr/bin/env bash
# Before/after comparison of the hot subcommands, in one run on this machine:
# wall time (hyperfine median) and instructions (valgrind callgrind) of
# `state-manager --version`, `read`, `set` and `lock-manager acquire` for a
# base revision and for this checkout, with the ratios after/before. Prints a
# markdown table and writes it to bench/COMPARE.md.
#
# Usage: bench/compare.sh [BASE_REV] [RUNS]
#   BASE_REV  the "before" side [default: the sha in bench/BASELINE]
#   RUNS      hyperfine runs per command [default: 100]
#
# The "after" side is the checkout this script lives in, built with
# `cargo build --release --bins` into its target/. The base is built in a
# temporary detached worktree (removed at exit) into
# target/bench-base/<sha>/, and a second run reuses that build.
# Only flags both sides accept are used: the global options (--state-file)
# go before the subcommand, except in the one after-only row.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
base_rev=${1:-$(<"$repo/bench/BASELINE")}
runs=${2:-100}
warmup=10
[[ $runs =~ ^[1-9][0-9]*$ ]] || { echo "compare: RUNS must be a positive integer, not '$runs'" >&2; exit 1; }
base_sha=$(git rev-parse --verify "${base_rev}^{commit}")
after_sha=$(git rev-parse HEAD)
# Changes outside bench/ are in the "after" build but not in its sha.
if ! git diff --quiet HEAD -- . ':(exclude)bench'; then after_sha+="+dirty"; fi

# Nothing from the caller's environment may steer either build.
unset STATE_FILE AUDIT_LOG LOCK_TIMEOUT LOCK_OWNER_PID WFSTATE_BACKEND DEBUG BACKUP_KEEP BACKUP_MAX_AGE

# --- tools -----------------------------------------------------------------
# apt_install PKG: apt-get install -y PKG, as root or through sudo.
apt_install() {
  local sudo=()
  if ((EUID != 0)); then
    command -v sudo >/dev/null || return 1
    sudo=(sudo -n)
  fi
  command -v apt-get >/dev/null || return 1
  local apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get)
  echo "compare: installing $1: ${sudo[*]}${sudo:+ }apt-get install -y $1" >&2
  "${apt[@]}" install -y -qq "$1" >/dev/null ||
    { "${apt[@]}" update -qq >/dev/null && "${apt[@]}" install -y -qq "$1" >/dev/null; }
}
if ! command -v hyperfine >/dev/null; then
  if ! apt_install hyperfine; then
    echo "compare: apt-get failed; installing hyperfine with: cargo install hyperfine --locked" >&2
    cargo install hyperfine --locked
    PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
  fi
fi
command -v hyperfine >/dev/null || { echo "compare: hyperfine is required and could not be installed" >&2; exit 5; }
have_valgrind=1
if ! command -v valgrind >/dev/null && ! apt_install valgrind; then
  echo "compare: valgrind unavailable: skipping instruction counts" >&2
  have_valgrind=0
fi
command -v valgrind >/dev/null || have_valgrind=0
command -v python3 >/dev/null || apt_install python3 ||
  { echo "compare: python3 is required for the table" >&2; exit 5; }

# --- temp dirs and cleanup -------------------------------------------------
# The state files live under target/, on the same filesystem as the repo,
# so `set`'s fsyncs cost what they cost for a real workflow.
mkdir -p "$repo/target"
work=$(mktemp -d "$repo/target/bench-compare.XXXXXX")
base_src=""
sleeper=""
cleanup() {
  if [[ -n $sleeper ]]; then kill "$sleeper" 2>/dev/null || true; fi
  if [[ -n $base_src ]]; then
    git -C "$repo" worktree remove --force "$base_src" 2>/dev/null || true
    git -C "$repo" worktree prune 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# --- builds ----------------------------------------------------------------
# shellcheck source=bench/base.sh
source "$repo/bench/base.sh"
base_build "$base_sha" compare
bb=$base_bin
echo "compare: building after (this checkout, $after_sha)" >&2
CARGO_TARGET_DIR="$repo/target" cargo build --release --bins --quiet
ab="$repo/target/release"

# --- fresh states, one per side --------------------------------------------
out="$work/out"
mkdir -p "$out" "$work/before" "$work/after"
bs="$work/before/.workflow-state.json"
as="$work/after/.workflow-state.json"
"$bb/state-manager" --state-file "$bs" init >/dev/null
"$ab/state-manager" --state-file "$as" init >/dev/null

# hf NAME COMMAND...: one hyperfine run of all COMMANDs (run one after the
# other, each RUNS times), into $out/NAME.json.
hf() {
  local name=$1
  shift
  echo "compare: timing $name" >&2
  hyperfine -N --warmup "$warmup" --runs "$runs" --style basic --export-json "$out/$name.json" "$@" >"$out/$name.txt" 2>&1 ||
    { echo "compare: hyperfine failed for $name:" >&2; cat "$out/$name.txt" >&2; }
}
hf version "$bb/state-manager --version" "$ab/state-manager --version" /bin/true
hf read "$bb/state-manager --state-file $bs read" "$ab/state-manager --state-file $as read" \
  "$ab/state-manager read --state-file $as"
hf set "$bb/state-manager --state-file $bs set .phase --string bench" \
  "$ab/state-manager --state-file $as set .phase --string bench"
# The owner is the sh running the pair: alive for both commands.
pair() { printf "sh -c '%s --state-file %s acquire bench 0 --owner \$\$ && %s --state-file %s release bench --owner \$\$'" "$1" "$2" "$1" "$2"; }
hf acquire "$(pair "$bb/lock-manager" "$bs")" "$(pair "$ab/lock-manager" "$as")"

# --- instructions ------------------------------------------------------------
# ir NAME COMMAND...: callgrind's total instruction count into $out/ir_NAME.
ir() {
  local name=$1
  shift
  ((have_valgrind)) || return 0
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$@" 2>&1 >/dev/null |
    awk '/== Collected :/ {print $NF}' >"$out/ir_$name"
}
if ((have_valgrind)); then
  echo "compare: counting instructions (callgrind)" >&2
  sleep 600 &
  sleeper=$!
  for side in before after; do
    if [[ $side == before ]]; then b=$bb s=$bs; else b=$ab s=$as; fi
    ir "version_$side" "$b/state-manager" --version
    ir "read_$side" "$b/state-manager" --state-file "$s" read
    ir "set_$side" "$b/state-manager" --state-file "$s" set .phase --string ir
    ir "acquire_$side" "$b/lock-manager" --state-file "$s" acquire bench-ir 0 --owner "$sleeper"
    "$b/lock-manager" --state-file "$s" release bench-ir --owner "$sleeper"
  done
  ir true /bin/true
fi

# --- table -------------------------------------------------------------------
fstype=$(df --output=fstype "$work" | tail -n 1)
python3 - "$out" "$repo/bench/COMPARE.md" "$runs" "$warmup" "$base_sha" "$after_sha" "$have_valgrind" "$fstype" "$(hyperfine --version)" <<'PY'
import datetime, json, os, platform, sys
out, dest, runs, warmup, base, after, have_vg, fstype, hfv = sys.argv[1:]

def med(name, i):
    try:
        return json.load(open(os.path.join(out, name + ".json")))["results"][i]["median"] * 1000
    except (OSError, ValueError, KeyError, IndexError):
        return None

def ir(name):
    try:
        return int(open(os.path.join(out, "ir_" + name)).read().strip().replace(",", ""))
    except (OSError, ValueError):
        return None

ms = lambda v: f"{v:.2f}" if v is not None else "-"
num = lambda v: f"{v:,}" if v is not None else "-"
ratio = lambda a, b: f"{b / a:.2f}" if a and b else "-"
rows = [
    ("`state-manager --version`", med("version", 0), med("version", 1), ir("version_before"), ir("version_after")),
    ("`state-manager --state-file F read`", med("read", 0), med("read", 1), ir("read_before"), ir("read_after")),
    ("`state-manager read --state-file F` (after only)", None, med("read", 2), None, None),
    ("`state-manager --state-file F set .phase --string bench`", med("set", 0), med("set", 1), ir("set_before"), ir("set_after")),
    ("`lock-manager acquire NAME 0` + `release NAME` (in sh; Ir: acquire only)", med("acquire", 0), med("acquire", 1), ir("acquire_before"), ir("acquire_after")),
    ("`/bin/true` (floor)", med("version", 2), med("version", 2), ir("true"), ir("true")),
]
now = datetime.datetime.now(datetime.timezone.utc)
lines = [
    "# Before/after comparison", "",
    f"Measured {now:%Y-%m-%d %H:%M} UTC on {platform.node()} by `bench/compare.sh`.", "",
    f"- before: `{base}`",
    f"- after: `{after}`",
    f"- machine: {os.cpu_count()} cores, noisy; ratios from one run.",
    f"- time: {hfv}, median of {runs} runs after {warmup} warmup runs; one hyperfine run per op,"
    " holding both builds' commands (hyperfine runs them one after the other, not alternating).",
    f"- state files: fresh (`init`), one per build, in a temp dir under the repo's target/ ({fstype}, the same filesystem as /tmp here).",
    "- instructions: valgrind callgrind, total Ir (\"Collected\"), one run each; unlike the times, not disturbed by the load of the machine." if have_vg == "1"
    else "- instructions: skipped (valgrind unavailable).",
    "",
    "| op | before ms | after ms | after/before | before Ir | after Ir | after/before |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
]
for name, tb, ta, ib, ia in rows:
    lines.append(f"| {name} | {ms(tb)} | {ms(ta)} | {ratio(tb, ta)} | {num(ib)} | {num(ia)} | {ratio(ib, ia)} |")
text = "\n".join(lines) + "\n"
print(text, end="")
open(dest, "w").write(text)
PY
