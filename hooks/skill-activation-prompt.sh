#!/usr/bin/env bash
# Claude Code UserPromptSubmit hook: prints the [ACTIVATE:CODE] block of the
# skill a prompt calls for (rules: WFSTATE_SKILL_RULES, else, in the project,
# config/skill-rules.json, .claude/skill-rules.json or
# .claude/config/skill-rules.json), records
# lastActivation, and prints the pipeline status when the prompt asks for it.
# All the work is done by `state-manager hook user-prompt-submit`; this
# wrapper only finds the binary: WFSTATE_BIN (a folder), else PATH, else
# ../target/release from here. It never fails the session: without the
# binary it warns on stderr, exits 0, and tells the session on stdout (which
# Claude Code adds to its context) once, remembered by a marker in
# ${XDG_STATE_HOME:-~/.local/state}/wfstate/notices/, removed when the binary
# is found again. Register it in .claude/settings.json (see
# settings.example.json and docs/hooks.md), or register the binary itself:
# state-manager hook user-prompt-submit.

case ${BASH_SOURCE[0]} in
  */*) here=${BASH_SOURCE[0]%/*} ;;
  *) here=. ;;
esac
notices=
if [[ -n ${XDG_STATE_HOME:-} ]]; then
  notices=$XDG_STATE_HOME/wfstate/notices
elif [[ -n ${HOME:-} ]]; then
  notices=$HOME/.local/state/wfstate/notices
fi
marker=${notices:+$notices/state-manager-missing.notice}

bin=
if [[ -n ${WFSTATE_BIN:-} && -x $WFSTATE_BIN/state-manager ]]; then
  bin=$WFSTATE_BIN/state-manager
elif command -v state-manager >/dev/null 2>&1; then
  bin=state-manager
elif [[ -x $here/../target/release/state-manager ]]; then
  bin=$here/../target/release/state-manager
fi
if [[ -n $bin ]]; then
  # Found again: a missing binary is told again should it go missing again.
  if [[ -n $marker && -e $marker ]]; then
    rm -f -- "$marker"
  fi
  exec "$bin" hook user-prompt-submit
fi

echo "skill-activation-prompt: warning: state-manager not found (set WFSTATE_BIN, or install it: cargo build --release); no skill activated" >&2
if [[ -z $marker || ! -e $marker ]]; then
  echo "[wfstate] The workflow state is NOT being recorded by the hooks: state-manager is not found (not in WFSTATE_BIN, not on PATH, not in $here/../target/release) — install it (cargo build --release; put target/release on PATH) or set WFSTATE_BIN. Run 'state-manager hook doctor' in the project to check the installation. (Told once; tell the user.)"
  if [[ -n $marker ]]; then
    (umask 077 && mkdir -p -- "$notices" && : >"$marker") 2>/dev/null
  fi
fi
exit 0
