# shellcheck shell=bash
# Sourced by the Redis benchmarks (bench/redis.sh, bench/redis-locks.sh):
#
#   start_redis_server DIR [ARGS...]
#     starts a redis-server with its data in DIR, on the unix socket
#     DIR/redis.sock, append-only with `appendfsync always` (what the
#     backend asks of a server), plus ARGS; sets $sock and $server (its pid)
#     and returns once it answers PING (exit 1 if it never does).
#   stop_redis_server
#     kills it, if it was started.

server=""
sock=""

start_redis_server() {
  local dir="$1"
  shift
  sock="$dir/redis.sock"
  redis-server --port 0 --unixsocket "$sock" --save '' \
    --appendonly yes --appendfsync always --dir "$dir" "$@" >/dev/null &
  server=$!
  for _ in $(seq 1 200); do
    [[ $(redis-cli -s "$sock" ping 2>/dev/null) == PONG ]] && return 0
    sleep 0.02
  done
  echo "$(basename "$0"): redis-server did not start" >&2
  exit 1
}

stop_redis_server() {
  if [[ -n $server ]]; then
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
  fi
}
