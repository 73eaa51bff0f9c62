#!/usr/bin/env bash
# The Redis backend against what a user would script by hand, in one run:
# `state-manager read` against one `redis-cli GET` of a key holding the same
# document, and `state-manager set` (an optimistic transaction: read, compute,
# one script that checks the revision, backs up, writes and audits) against a
# `redis-cli GET` + `redis-cli SET` pair — over the unix socket and over TCP
# loopback. Starts its own redis-server (AOF, appendfsync always) in a temp
# dir and kills it at exit. Prints a markdown table with the ratios.
#
# Usage: bench/redis.sh [RUNS]   (hyperfine runs per command, default 100)
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
runs=${1:-100}
[[ $runs =~ ^[1-9][0-9]*$ ]] || { echo "redis.sh: RUNS must be a positive integer" >&2; exit 1; }
for tool in redis-server redis-cli hyperfine python3; do
  command -v "$tool" >/dev/null || { echo "redis.sh: $tool is required (apt-get install redis-server hyperfine)" >&2; exit 5; }
done
unset STATE_FILE AUDIT_LOG WFSTATE_BACKEND WFSTATE_NAMESPACE DEBUG
cargo build --release --bins --quiet --manifest-path "$repo/Cargo.toml"
sm="$repo/target/release/state-manager"

work=$(mktemp -d)
# shellcheck source=bench/redis-server.sh
source "$repo/bench/redis-server.sh"
cleanup() {
  stop_redis_server
  rm -rf "$work"
}
trap cleanup EXIT
# A free TCP port on loopback, picked by the kernel.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
start_redis_server "$work" --port "$port" --bind 127.0.0.1
cd "$work"
export WFSTATE_NAMESPACE=bench AUDIT_LOG=/dev/null
unix="redis+unix://$sock"
tcp="redis://127.0.0.1:$port/0"
WFSTATE_BACKEND=$unix "$sm" init >/dev/null
# The hand-scripted side keeps the same document in a plain string key.
doc=$(WFSTATE_BACKEND=$unix "$sm" read)
redis-cli -s "$sock" SET bench:doc "$doc" >/dev/null

out="$work/out"
mkdir -p "$out"
hf() {
  local name=$1
  shift
  echo "redis.sh: timing $name" >&2
  hyperfine -N --warmup 10 --runs "$runs" --style basic --export-json "$out/$name.json" "$@" >"$out/$name.txt" 2>&1 ||
    { cat "$out/$name.txt" >&2; exit 1; }
}
pair() { # pair CLI-ARGS: the GET + SET a user would script, in sh
  printf "sh -c 'redis-cli %s GET bench:doc >/dev/null && redis-cli %s SET bench:doc x >/dev/null'" "$1" "$1"
}
for t in unix tcp; do
  if [[ $t == unix ]]; then url=$unix cli="-s $sock"; else url=$tcp cli="-h 127.0.0.1 -p $port"; fi
  hf "read_$t" "env WFSTATE_BACKEND=$url $sm read" "redis-cli $cli GET bench:doc"
  hf "set_$t" "env WFSTATE_BACKEND=$url $sm set .phase --string bench" "$(pair "$cli")" \
    "sh -c 'WFSTATE_BACKEND=$url $sm set .phase --string bench'"
done

python3 - "$out" <<'PY'
import json, os, sys
out = sys.argv[1]
def med(name, i):
    return json.load(open(os.path.join(out, name + ".json")))["results"][i]["median"] * 1000
print("| transport | op | wfstate ms | by hand ms | ratio | goal |")
print("| --- | --- | ---: | ---: | ---: | --- |")
for t in ("unix", "tcp"):
    r, g = med(f"read_{t}", 0), med(f"read_{t}", 1)
    print(f"| {t} | `read` vs one `redis-cli GET` | {r:.2f} | {g:.2f} | {r/g:.2f} | ≤ 1.2 |")
    s, p, ssh = med(f"set_{t}", 0), med(f"set_{t}", 1), med(f"set_{t}", 2)
    print(f"| {t} | `set` vs `redis-cli GET` + `SET` (in sh) | {s:.2f} | {p:.2f} | {s/p:.2f} | ≤ 0.8 |")
    print(f"| {t} | `set` in sh vs the same pair in sh | {ssh:.2f} | {p:.2f} | {ssh/p:.2f} | |")
PY
