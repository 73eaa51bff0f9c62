#!/usr/bin/env bash
# wfstate: drop-in replacement for the shell library's lib/lock-manager.sh.
#
# Executed (./lib/lock-manager.sh acquire build 30): execs the lock-manager
# binary, whose parent is then the calling script — so the lock belongs to
# that script and outlives this command (the replaced library released it on
# exit). Sourced: defines acquire_lock, release_lock and check_lock, owned by
# the sourcing shell ($$).

# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  _wfstate_exec lock-manager "$@"
fi

# acquire_lock NAME [TIMEOUT] [shared|exclusive] [METADATA_JSON]
acquire_lock() {
  if [[ -z "${1:-}" ]]; then
    printf 'acquire_lock: no lock name — usage: acquire_lock NAME [TIMEOUT] [TYPE] [METADATA]\n' >&2
    return "$EXIT_VALIDATION_FAILED"
  fi
  local args=(acquire "$1" "${2:-${LOCK_TIMEOUT:-30}}" "${3:-exclusive}")
  [[ -n "${4:-}" ]] && args+=("$4")
  _wfstate_run lock-manager "${args[@]}" --owner "$$"
}

# release_lock NAME
release_lock() {
  _wfstate_run lock-manager release "${1:-}" --owner "$$"
}

# check_lock NAME: prints locked:TYPE:PID (0), unlocked (1) or stale (2).
check_lock() {
  _wfstate_run lock-manager check "${1:-}"
}
