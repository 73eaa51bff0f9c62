#!/usr/bin/env bash
# wfstate: drop-in replacement for the shell library's lib/state-manager.sh.
#
# Executed (./lib/state-manager.sh read .phase): execs the state-manager binary
# with the same arguments. Sourced: defines lock_state, unlock_state,
# read_state, write_state, backup_state, validate_state, recover_state,
# delete_state, move_state and init_state_manager. Locks taken through these functions belong to the
# sourcing shell ($$), and every function acts for it (--owner $$), so
# `lock_state; read_state; write_state; unlock_state` works without deadlock,
# also inside $( ), pipelines and subshells. Each function behaves the same
# with and without set -e / pipefail: it returns the binary's exit code.

# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  _wfstate_exec state-manager "$@"
fi

# init_state_manager: creates the state file and folders (idempotent).
init_state_manager() {
  _wfstate_run state-manager --owner "$$" init >/dev/null
}

# lock_state [TIMEOUT]: takes the exclusive `state` lock for this shell.
lock_state() {
  _wfstate_run lock-manager acquire state "${1:-${LOCK_TIMEOUT:-30}}" exclusive --owner "$$"
}

# unlock_state: releases this shell's `state` lock.
unlock_state() {
  _wfstate_run lock-manager release state --owner "$$"
}

# read_state [OUTFILE]: prints the state, or writes it to OUTFILE: a regular
# file is replaced atomically (no temp file is ever left behind), a device or
# FIFO such as /dev/stdout is written through and never replaced, and a FIFO
# with no reader is an error rather than a hang (`state-manager export`).
read_state() {
  if [[ -z "${1:-}" ]]; then
    _wfstate_run state-manager --owner "$$" read
    return
  fi
  # The summary line is not wanted; when OUTFILE is our stdout the binary
  # writes through it and prints no summary, so stdout stays ours.
  if [[ "$1" -ef /dev/stdout ]]; then
    _wfstate_run state-manager --owner "$$" export --format json --output /dev/stdout
  else
    _wfstate_run state-manager --owner "$$" export --format json --output "$1" >/dev/null
  fi
}

# write_state JSON [REASON]: replaces the state (validated, backed up, atomic).
write_state() {
  if [[ -z "${1:-}" ]]; then
    printf 'write_state: no JSON given — usage: write_state JSON [REASON]\n' >&2
    return "$EXIT_VALIDATION_FAILED"
  fi
  _wfstate_run state-manager --owner "$$" write "$1" ${2:+"$2"}
}

# backup_state [REASON]: backs up the current state; prints the backup's path.
backup_state() {
  _wfstate_run state-manager --owner "$$" backup ${1:+"$1"}
}

# validate_state: 0 valid, 3 unparseable, 4 schema violations (listed).
validate_state() {
  _wfstate_run state-manager --owner "$$" validate
}

# recover_state [PATTERN]: restores the newest valid (matching) backup.
recover_state() {
  _wfstate_run state-manager --owner "$$" recover ${1:+"$1"}
}

# delete_state PATH [--missing-ok]: deletes a key or array element (jq's del);
# 1 when there is nothing at PATH (0 with --missing-ok), 4 when refused.
delete_state() {
  if [[ -z "${1:-}" ]]; then
    printf 'delete_state: no path given — usage: delete_state PATH [--missing-ok]\n' >&2
    return "$EXIT_GENERAL_ERROR"
  fi
  _wfstate_run state-manager --owner "$$" del "$@"
}

# move_state FROM TO [--force]: moves a value (terraform state mv); 1 when
# there is nothing at FROM, 4 when TO holds a value (unless --force).
move_state() {
  if [[ -z "${1:-}" || -z "${2:-}" ]]; then
    printf 'move_state: two paths needed — usage: move_state FROM TO [--force]\n' >&2
    return "$EXIT_GENERAL_ERROR"
  fi
  _wfstate_run state-manager --owner "$$" mv "$@"
}
