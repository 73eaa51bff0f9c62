#!/usr/bin/env bash
# wfstate shell library: shared definitions for lib/state-manager.sh,
# lib/lock-manager.sh and lib/error-recovery.sh.
#
# Sourcing is clean: it sets no shell options (no set -e/-u/pipefail), replaces
# no traps, starts nothing in the background, prints nothing, and may be done
# any number of times. Needs bash 4+.
#
# Defines the exit-code table (EXIT_* and ERROR_CODES, equal to the binaries'
# table) and _wfstate_run, which finds a binary and runs it. The state file is
# STATE_FILE when set, else the binaries' own rule (the nearest
# .workflow-state.json up from the current folder, else a new one at the
# project root; see docs/architecture.md, 'Where the state is'): the shims,
# the CLI and the Claude Code hooks always agree on it.

if [[ -z "${_WFSTATE_COMMON_LOADED:-}" ]]; then
  _WFSTATE_COMMON_LOADED=1

  # The EXIT_* names are API for the scripts that source this file.
  # shellcheck disable=SC2034
  readonly \
    EXIT_SUCCESS=0 \
    EXIT_GENERAL_ERROR=1 \
    EXIT_LOCK_TIMEOUT=2 \
    EXIT_STATE_CORRUPTION=3 \
    EXIT_VALIDATION_FAILED=4 \
    EXIT_DEPENDENCY_MISSING=5 \
    EXIT_PERMISSION_DENIED=6 \
    EXIT_DISK_FULL=7 \
    EXIT_NETWORK_ERROR=8 \
    EXIT_TIMEOUT=9 \
    EXIT_RESOURCE_EXHAUSTED=10

  declare -gA ERROR_CODES=(
    [SUCCESS]=0 [GENERAL_ERROR]=1 [LOCK_TIMEOUT]=2 [STATE_CORRUPTION]=3
    [VALIDATION_FAILED]=4 [DEPENDENCY_MISSING]=5 [PERMISSION_DENIED]=6
    [DISK_FULL]=7 [NETWORK_ERROR]=8 [TIMEOUT]=9 [RESOURCE_EXHAUSTED]=10
  )

  # The folder holding lib/: its target/release is the last place binaries
  # are looked for (never where the state lives).
  _WFSTATE_LIB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
  _WFSTATE_HOME="$(dirname "$_WFSTATE_LIB_DIR")"
fi

# _wfstate_bin NAME: prints the path of binary NAME: $WFSTATE_BIN/NAME, else
# NAME on PATH, else <lib>/../target/release/NAME. Missing: one line on
# stderr naming the install command, status 5.
_wfstate_bin() {
  local name="$1" path
  if [[ -n "${WFSTATE_BIN:-}" && -x "$WFSTATE_BIN/$name" ]]; then
    printf '%s\n' "$WFSTATE_BIN/$name"
    return 0
  fi
  if path="$(command -v -- "$name" 2>/dev/null)" && [[ -n "$path" ]]; then
    printf '%s\n' "$path"
    return 0
  fi
  if [[ -x "$_WFSTATE_HOME/target/release/$name" ]]; then
    printf '%s\n' "$_WFSTATE_HOME/target/release/$name"
    return 0
  fi
  printf '%s: not found in WFSTATE_BIN, PATH or %s — build it with: cargo build --release (in %s), or set WFSTATE_BIN\n' \
    "$name" "$_WFSTATE_HOME/target/release" "$_WFSTATE_HOME" >&2
  return "$EXIT_DEPENDENCY_MISSING"
}

# _wfstate_run NAME ARGS...: runs binary NAME with ARGS.
_wfstate_run() {
  local name="$1" bin
  shift
  bin="$(_wfstate_bin "$name")" || return
  "$bin" "$@"
}

# _wfstate_exec NAME ARGS...: replaces the current process with binary NAME,
# so its parent is whoever ran the shim (a lock it takes belongs to them).
_wfstate_exec() {
  local name="$1" bin
  shift
  bin="$(_wfstate_bin "$name")" || exit
  exec "$bin" "$@"
}

# error_code_name CODE: prints the name of an exit code (e.g. LOCK_TIMEOUT).
error_code_name() {
  local name
  for name in "${!ERROR_CODES[@]}"; do
    if [[ "${ERROR_CODES[$name]}" == "$1" ]]; then
      printf '%s\n' "$name"
      return 0
    fi
  done
  printf 'UNKNOWN\n'
  return 1
}
