#!/usr/bin/env bash
# Claude Code UserPromptSubmit hook: prints the [ACTIVATE:CODE] block of the
# skill a prompt calls for (rules: WFSTATE_SKILL_RULES, else, in the project,
# config/skill-rules.json, .claude/skill-rules.json or
# .claude/config/skill-rules.json), records
# lastActivation, and prints the pipeline status when the prompt asks for it.
# All the work is done by `state-manager hook user-prompt-submit`; this
# wrapper only finds the binary: WFSTATE_BIN (a folder), else PATH, else
# ../target/release from here. It never fails the session: without the
# binary it warns once and exits 0. Register it in .claude/settings.json
# (see settings.example.json and README.md, 'Claude Code hooks').

case ${BASH_SOURCE[0]} in
  */*) here=${BASH_SOURCE[0]%/*} ;;
  *) here=. ;;
esac

if [[ -n ${WFSTATE_BIN:-} && -x $WFSTATE_BIN/state-manager ]]; then
  exec "$WFSTATE_BIN/state-manager" hook user-prompt-submit
elif command -v state-manager >/dev/null 2>&1; then
  exec state-manager hook user-prompt-submit
elif [[ -x $here/../target/release/state-manager ]]; then
  exec "$here/../target/release/state-manager" hook user-prompt-submit
fi
echo "skill-activation-prompt: warning: state-manager not found (set WFSTATE_BIN, or install it: cargo build --release); no skill activated" >&2
exit 0
