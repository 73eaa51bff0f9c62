#!/usr/bin/env bash
# Claude Code PostToolUse hook: records workflow signals and the phase from
# tool events, by the rules in tracker-rules.json beside this script
# (WFSTATE_TRACKER_RULES overrides; with neither, the rules built into the
# binary, a copy of hooks/tracker-rules.json). All the work is done by
# `state-manager hook post-tool-use`; this wrapper only finds the binary:
# WFSTATE_BIN (a folder), else PATH, else ../target/release from here.
# It never fails the session: without the binary it warns once and exits 0.
# Register it in .claude/settings.json as "$CLAUDE_PROJECT_DIR"/.claude/hooks/
# post-tool-use-tracker.sh, or skip the bash start and register the binary
# itself, as settings.example.json does: state-manager hook post-tool-use
# (docs/hooks.md, 'Two ways to register a hook').

case ${BASH_SOURCE[0]} in
  */*) here=${BASH_SOURCE[0]%/*} ;;
  *) here=. ;;
esac
if [[ -z ${WFSTATE_TRACKER_RULES:-} && -f $here/tracker-rules.json ]]; then
  export WFSTATE_TRACKER_RULES=$here/tracker-rules.json
fi

if [[ -n ${WFSTATE_BIN:-} && -x $WFSTATE_BIN/state-manager ]]; then
  exec "$WFSTATE_BIN/state-manager" hook post-tool-use
elif command -v state-manager >/dev/null 2>&1; then
  exec state-manager hook post-tool-use
elif [[ -x $here/../target/release/state-manager ]]; then
  exec "$here/../target/release/state-manager" hook post-tool-use
fi
echo "post-tool-use-tracker: warning: state-manager not found (set WFSTATE_BIN, or install it: cargo build --release); no signals recorded" >&2
exit 0
