#!/usr/bin/env bash
# wfstate: drop-in replacement for the shell library's lib/error-recovery.sh.
#
# Executed: execs the error-recovery binary. Sourced: defines
# create_checkpoint (sets CHECKPOINT_ID), restore_checkpoint,
# retry_with_backoff, enable_degraded_mode, disable_degraded_mode,
# is_degraded_mode and handle_error. Every function acts for the sourcing
# shell (--owner $$), so it passes that shell's own lock_state also from
# inside $( ), a pipeline or a subshell, and behaves the same with and
# without set -e / pipefail.

# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  # The shell library's `cleanup DAYS` counted days; the binary reads a bare
  # number as seconds, as every duration does.
  if [[ "${1:-}" == cleanup && "${2:-}" =~ ^[0-9]+([.][0-9]+)?$ ]]; then
    set -- cleanup "${2}d" "${@:3}"
  fi
  _wfstate_exec error-recovery "$@"
fi

# create_checkpoint OPERATION [PHASE] [METADATA_JSON]: sets CHECKPOINT_ID.
create_checkpoint() {
  local id
  id="$(_wfstate_run error-recovery --owner "$$" checkpoint "$@")" || return
  CHECKPOINT_ID="$id"
  printf '%s\n' "$id"
}

# restore_checkpoint [ID]: restores ID, else $CHECKPOINT_ID, else the latest.
restore_checkpoint() {
  _wfstate_run error-recovery --owner "$$" restore "${1:-${CHECKPOINT_ID:-latest}}"
}

# retry_with_backoff FN [MAX=3] [BASE_DELAY=1] [ARGS...]: runs FN (a shell
# function or a command) until it succeeds, at most MAX times, waiting a
# random time in [0, min(60, BASE_DELAY * 2^(n-1))] after failure n (full
# jitter, as `error-recovery retry`). When FN speaks wfstate's exit codes —
# a shell function of the calling script (as in the library this replaces),
# a builtin, or one of wfstate's binaries (state-manager, lock-manager,
# error-recovery, after PATH lookup with symlinks resolved) — exit codes 4, 6
# and 7 are not retried: retrying cannot help. Any other command's codes are
# its own (curl's 6 and 7 are transient), so every failure is retried.
# Returns the last attempt's own code. FN runs as the condition of an `if`
# (so under set -e a failing attempt is retried, not fatal; as for any
# condition, bash does not apply set -e inside FN).
retry_with_backoff() {
  local fn="${1:-}" max="${2:-3}" base="${3:-1}"
  if [[ -z "$fn" ]]; then
    printf 'retry_with_backoff: no function — usage: retry_with_backoff FN [MAX] [BASE_DELAY] [ARGS...]\n' >&2
    return "$EXIT_VALIDATION_FAILED"
  fi
  shift $(($# < 3 ? $# : 3))
  if ! [[ "$max" =~ ^[0-9]+$ ]] || ((max < 1)); then
    printf 'retry_with_backoff: bad MAX %q — give a whole number of attempts from 1\n' "$max" >&2
    return "$EXIT_VALIDATION_FAILED"
  fi
  if ! [[ "$base" =~ ^[0-9]+([.][0-9]+)?$ ]]; then
    printf 'retry_with_backoff: bad BASE_DELAY %q — give seconds, such as 1 or 0.5\n' "$base" >&2
    return "$EXIT_VALIDATION_FAILED"
  fi
  local attempt=1 rc cap_ms delay_ms ours=1 exe
  if [[ "$(type -t "$fn")" == file ]]; then
    exe="$(type -P "$fn")"
    exe="$(readlink -f -- "$exe" 2>/dev/null)" || exe="$(type -P "$fn")"
    case "${exe##*/}" in
      state-manager | lock-manager | error-recovery) ;;
      *) ours=0 ;;
    esac
  fi
  while :; do
    if WFSTATE_ATTEMPT=$attempt "$fn" "$@"; then
      return 0
    else
      rc=$?
    fi
    if ((ours)); then
      case "$rc" in
        4 | 6 | 7) return "$rc" ;;
      esac
    fi
    if ((attempt >= max)); then
      return "$rc"
    fi
    # min(60 s, base * 2^(attempt-1)) in milliseconds, then full jitter.
    cap_ms=$(awk -v b="$base" -v n="$attempt" 'BEGIN { d = b * 1000 * 2 ^ (n - 1); if (d > 60000) d = 60000; printf "%d", d }')
    delay_ms=$(((RANDOM * 32768 + RANDOM) % (cap_ms + 1)))
    sleep "$((delay_ms / 1000)).$(printf '%03d' $((delay_ms % 1000)))"
    attempt=$((attempt + 1))
  done
}

# enable_degraded_mode REASON [FEATURES_JSON]
enable_degraded_mode() {
  _wfstate_run error-recovery --owner "$$" degrade "${1:-unspecified}" ${2:+"$2"}
}

# disable_degraded_mode
disable_degraded_mode() {
  _wfstate_run error-recovery --owner "$$" recover-mode
}

# is_degraded_mode: 0 when degraded, 1 when not.
is_degraded_mode() {
  _wfstate_run error-recovery --owner "$$" is-degraded
}

# handle_error CODE MESSAGE [OPERATION]: reports the error with its name and
# the recovery suggestion; with WFSTATE_AUTO_RECOVER=1 runs the automatic
# strategy (`error-recovery handle CODE --apply`). Returns 0 when recovered,
# else CODE.
handle_error() {
  local code="${1:-1}" msg="${2:-}" op="${3:-}" name
  name="$(error_code_name "$code")" || true
  printf 'ERROR [%s/%s]%s: %s\n' "$code" "$name" "${op:+ in $op}" "$msg" >&2
  if [[ "${WFSTATE_AUTO_RECOVER:-0}" == 1 ]]; then
    if _wfstate_run error-recovery --owner "$$" handle "$code" --apply >&2; then
      return 0
    fi
  else
    _wfstate_run error-recovery suggest "$code" >&2 || true
  fi
  return "$code"
}
