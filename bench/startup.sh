#!/usr/bin/env bash
# Start-up and validation cost (issue 16), before/after in one run: for each
# binary's `--version` and the hot calls (`read`, `set`, `signal`, the
# tracker hook's write, `lock-manager acquire`, `error-recovery status`),
# the instructions (valgrind callgrind, "Collected") and the median wall
# time (hyperfine -N), of a base revision and of this checkout, with the
# ratios after/before and against /bin/true; then the instructions spent in
# regex code (fancy_regex, regex_automata, regex_syntax) in `set` and in the
# hook's write, and the issue's goals met or not. Prints a markdown report.
#
# Usage: bench/startup.sh [BASE_REV] [RUNS]
#   BASE_REV  the "before" side [default: the merge-base with main, else HEAD~]
#   RUNS      hyperfine runs per command [default: 100]
#
# The "after" side is this checkout, built with `cargo build --release
# --bins`. The base is built in a temporary detached worktree into
# target/bench-base/<sha>/ (as bench/compare.sh does; a build there is reused).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
base_rev=${1:-$(git merge-base HEAD main 2>/dev/null || git rev-parse HEAD~)}
runs=${2:-100}
[[ $runs =~ ^[1-9][0-9]*$ ]] || { echo "startup: RUNS must be a positive integer, not '$runs'" >&2; exit 1; }
base_sha=$(git rev-parse --verify "${base_rev}^{commit}")
after_sha=$(git rev-parse HEAD)
if ! git diff --quiet HEAD -- . ':(exclude)bench'; then after_sha+="+dirty"; fi
unset STATE_FILE AUDIT_LOG LOCK_TIMEOUT LOCK_OWNER_PID WFSTATE_BACKEND DEBUG BACKUP_KEEP BACKUP_MAX_AGE CLAUDE_PROJECT_DIR

# --- tools -----------------------------------------------------------------
apt_install() {
  local sudo=()
  if ((EUID != 0)); then
    command -v sudo >/dev/null || return 1
    sudo=(sudo -n)
  fi
  command -v apt-get >/dev/null || return 1
  local apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get)
  echo "startup: installing $1: ${sudo[*]}${sudo:+ }apt-get install -y $1" >&2
  "${apt[@]}" install -y -qq "$1" >/dev/null ||
    { "${apt[@]}" update -qq >/dev/null && "${apt[@]}" install -y -qq "$1" >/dev/null; }
}
for tool in hyperfine valgrind python3; do
  command -v "$tool" >/dev/null || apt_install "$tool" ||
    { echo "startup: $tool is required and could not be installed" >&2; exit 5; }
done

# --- temp dirs, builds -----------------------------------------------------
mkdir -p "$repo/target"
work=$(mktemp -d "$repo/target/bench-startup.XXXXXX")
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

# shellcheck source=bench/base.sh
source "$repo/bench/base.sh"
base_build "$base_sha" startup
bb=$base_bin
echo "startup: building after (this checkout, $after_sha)" >&2
cargo build --release --bins --quiet
ab="$repo/target/release"

# --- fresh states: one per side, and one project per side for the hook -------
out="$work/out"
mkdir -p "$out" "$work/before/proj" "$work/after/proj"
payload="$repo/tests/fixtures/hooks/edit-src.json"
sleep 600 &
sleeper=$!
for side in before after; do
  if [[ $side == before ]]; then b=$bb; else b=$ab; fi
  "$b/state-manager" --state-file "$work/$side/s.json" init >/dev/null
  "$b/state-manager" --state-file "$work/$side/s.json" signal PHASE1_START >/dev/null
  CLAUDE_PROJECT_DIR="$work/$side/proj" "$b/state-manager" hook post-tool-use <"$payload" >/dev/null
done

# The calls measured: NAME|STDIN|ARGS, with B the binaries' folder, S the
# state file; the hook call runs with CLAUDE_PROJECT_DIR set to its side's
# project and the payload on stdin.
cases=(
  "version||B/state-manager --version"
  "lm_version||B/lock-manager --version"
  "er_version||B/error-recovery --version"
  "read||B/state-manager --state-file S read"
  "set||B/state-manager --state-file S set .phase --string bench"
  "signal||B/state-manager --state-file S signal BENCH"
  "hook|$payload|B/state-manager hook post-tool-use"
  "acquire||B/lock-manager --state-file S acquire bench 0 --owner $sleeper"
  "er_status||B/error-recovery --state-file S status"
)
# args SIDE ARGS: the command line of one side.
args() {
  local b t=$2
  if [[ $1 == before ]]; then b=$bb; else b=$ab; fi
  t=${t//B\//$b/}
  echo "${t// S / $work/$1/s.json }"
}
release_both() {
  "$bb/lock-manager" --state-file "$work/before/s.json" release bench --owner "$sleeper" >/dev/null 2>&1 || true
  "$ab/lock-manager" --state-file "$work/after/s.json" release bench --owner "$sleeper" >/dev/null 2>&1 || true
}

# --- instructions: one callgrind run per call and side ------------------------
echo "startup: counting instructions (callgrind)" >&2
valgrind --tool=callgrind --callgrind-out-file=/dev/null /bin/true 2>&1 |
  awk '/== Collected :/ {print $NF}' >"$out/ir_true"
for c in "${cases[@]}"; do
  IFS='|' read -r name input template <<<"$c"
  for side in before after; do
    read -ra argv <<<"$(args "$side" "$template")"
    CLAUDE_PROJECT_DIR="$work/$side/proj" valgrind --tool=callgrind --callgrind-out-file="$out/cg" \
      "${argv[@]}" <"${input:-/dev/null}" >/dev/null 2>"$out/vg" || true
    awk '/== Collected :/ {print $NF}' "$out/vg" >"$out/ir_${name}_$side"
    # Instructions inside regex code (inclusive: the largest entry point).
    callgrind_annotate --inclusive=yes "$out/cg" 2>/dev/null |
      awk '/(fancy_regex|regex_automata|regex_syntax)::/ {gsub(",", "", $1); if ($1 + 0 > m) m = $1 + 0} END {print m + 0}' >"$out/rx_${name}_$side"
  done
  release_both
done

# --- wall time: one hyperfine run per call, both sides and /bin/true ----------
for c in "${cases[@]}"; do
  IFS='|' read -r name input template <<<"$c"
  echo "startup: timing $name" >&2
  extra=()
  if [[ $name == acquire ]]; then
    # Each run acquires anew: release first (not timed; -N runs no shell, so sh here).
    extra=(--prepare "sh -c '$bb/lock-manager --state-file $work/before/s.json release bench --owner $sleeper; $ab/lock-manager --state-file $work/after/s.json release bench --owner $sleeper; true'")
  fi
  before=$(args before "$template") after=$(args after "$template") floor=/bin/true
  if [[ -n $input ]]; then
    # hyperfine -N takes no stdin file: through sh, on both sides and the floor.
    before="sh -c 'CLAUDE_PROJECT_DIR=$work/before/proj $before <$input'"
    after="sh -c 'CLAUDE_PROJECT_DIR=$work/after/proj $after <$input'"
    floor="sh -c true"
  fi
  hyperfine -N --warmup 10 --runs "$runs" --style basic --export-json "$out/$name.json" "${extra[@]}" \
    "$before" "$after" "$floor" >"$out/$name.txt" 2>&1 ||
    { echo "startup: hyperfine failed for $name:" >&2; cat "$out/$name.txt" >&2; }
  release_both
done

# --- report ------------------------------------------------------------------
python3 - "$out" "$runs" "$base_sha" "$after_sha" "$(hyperfine --version)" <<'PY'
import datetime, json, os, platform, sys
out, runs, base, after, hfv = sys.argv[1:]
def med(name, i):
    try:
        return json.load(open(f"{out}/{name}.json"))["results"][i]["median"] * 1000
    except (OSError, ValueError, KeyError, IndexError):
        return None
def num(name):
    try:
        return int(open(f"{out}/{name}").read().strip().replace(",", ""))
    except (OSError, ValueError):
        return None
f_ms = lambda v: f"{v:.2f}" if v is not None else "-"
f_n = lambda v: f"{v:,}" if v is not None else "-"
f_r = lambda a, b: f"{b / a:.2f}" if a and b else "-"
label = {
    "version": "`state-manager --version`", "lm_version": "`lock-manager --version`",
    "er_version": "`error-recovery --version`", "read": "`state-manager read`",
    "set": "`state-manager set .phase --string bench`", "signal": "`state-manager signal BENCH`",
    "hook": "`state-manager hook post-tool-use` (edit-src.json; ms through sh, and its floor is `sh -c true`)",
    "acquire": "`lock-manager acquire bench 0`", "er_status": "`error-recovery status`",
}
t = num("ir_true")
now = datetime.datetime.now(datetime.timezone.utc)
L = ["# Start-up and validation cost (issue 16)", "",
     f"Measured {now:%Y-%m-%d %H:%M} UTC on {platform.node()} by `bench/startup.sh`.", "",
     f"- before: `{base}`", f"- after: `{after}`",
     f"- machine: {os.cpu_count()} cores, shared and noisy: the instruction counts (valgrind callgrind, one run each) are the figures to trust; times are {hfv} medians of {runs} runs, both sides and /bin/true in one hyperfine run per call.", "",
     "| call | before Ir | after Ir | after/before | before ms | after ms | after/before | after ms / true ms |",
     "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
for name, lab in label.items():
    ib, ia = num(f"ir_{name}_before"), num(f"ir_{name}_after")
    tb, ta, tt = med(name, 0), med(name, 1), med(name, 2)
    L.append(f"| {lab} | {f_n(ib)} | {f_n(ia)} | {f_r(ib, ia)} | {f_ms(tb)} | {f_ms(ta)} | {f_r(tb, ta)} | {f_r(tt, ta)} |")
L.append(f"| `/bin/true` (floor) | {f_n(t)} | {f_n(t)} | 1.00 | - | {f_ms(med('version', 2))} | - | 1.00 |")
L += ["", "Instructions in regex code (fancy_regex, regex_automata, regex_syntax; inclusive):", "",
      "| call | before | after |", "| --- | ---: | ---: |"]
for name in ("set", "signal", "hook"):
    L.append(f"| {label[name]} | {f_n(num(f'rx_{name}_before'))} | {f_n(num(f'rx_{name}_after'))} |")
v_ir, v_ms, v_true = num("ir_version_after"), med("version", 1), med("version", 2)
ok = lambda b: "met" if b else "NOT met"
L += ["", "Goals:", "",
      f"- `--version` <= 300k instructions: {f_n(v_ir)}: {ok(v_ir is not None and v_ir <= 300_000)}",
      f"- `--version` <= 1.4x `/bin/true` wall time: {f_r(v_true, v_ms)}x: {ok(v_ms is not None and v_true and v_ms / v_true <= 1.4)}",
      f"- no regex at run time in `set` / the hook's write: {f_n(num('rx_set_after'))} / {f_n(num('rx_hook_after'))} instructions in regex code: "
      + ok(num('rx_set_after') == 0 and num('rx_hook_after') == 0)]
print("\n".join(L))
PY
