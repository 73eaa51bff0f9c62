#!/usr/bin/env python3
"""Writes a synthetic wfstate audit log (JSON Lines) for benchmarks.

usage: gen-audit-log.py N OUTFILE [SEED]

The mix follows the audit vocabulary: lock-manager acquire/release/takeover,
state-manager read/set/write (with lock waits, a few revision conflicts and
lock timeouts), error-recovery checkpoint/retry. One event per millisecond.
"""
import json
import random
import sys
from datetime import datetime, timedelta, timezone

n = int(sys.argv[1])
out = sys.argv[2]
rng = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 42)
start = datetime(2024, 5, 1, 10, 0, 0, tzinfo=timezone.utc)
hosts = ["build-01", "build-02", "ci-runner-7"]
locks = ["state", "config", "signals", "backup", "deploy", "user-data"]
state = "/srv/pipeline/.workflow-state.json"

with open(out, "w") as f:
    for i in range(n):
        ts = (start + timedelta(microseconds=i * 1000 + rng.randrange(1000))).isoformat(timespec="microseconds").replace("+00:00", "Z")
        pid = 20000 + rng.randrange(5000)
        ppid = 1000 + rng.randrange(64)
        dur = round(rng.lognormvariate(0.0, 1.0), 3)
        code = 0
        r = rng.random()
        if r < 0.35:
            tool, op, target = "lock-manager", "acquire", rng.choice(locks)
            wait = round(rng.lognormvariate(-1.0, 1.5), 3)
            detail = {"lock_type": rng.choice(["shared", "exclusive"]), "wait_ms": wait, "owner_pid": ppid, "holders_while_waiting": []}
            if rng.random() < 0.01:
                code = 2
                detail["error"] = "lock timed out"
        elif r < 0.65:
            tool, op, target = "lock-manager", "release", rng.choice(locks)
            detail = {"owner_pid": ppid, "forced": False}
        elif r < 0.66:
            tool, op, target = "lock-manager", "takeover", rng.choice(locks)
            detail = {"stale_pid": pid - 7, "owner_pid": ppid, "reason": "dead"}
        elif r < 0.80:
            tool, op, target = "state-manager", rng.choice(["set", "merge", "append", "signal"]), state
            detail = {"revision": i, "lock_wait_ms": round(rng.lognormvariate(-1.0, 1.5), 3)}
        elif r < 0.90:
            tool, op, target = "state-manager", "read", state
            detail = {}
        elif r < 0.93:
            tool, op, target = "state-manager", "write", state
            if rng.random() < 0.1:
                code = 4
                detail = {"conflict": "revision", "expected": i - 1, "actual": i, "error": "revision mismatch"}
            else:
                detail = {"revision": i}
        elif r < 0.97:
            tool, op = "error-recovery", "checkpoint"
            target = "checkpoint-20240501-100000-op%d" % rng.randrange(100)
            detail = {"phase": "build"}
        else:
            tool, op, target = "error-recovery", "retry", "make test"
            detail = {"attempt": 1 + rng.randrange(3), "child_exit": rng.choice([0, 0, 1]), "delay_ms": 1000}
        ev = {
            "ts": ts, "tool": tool, "op": op, "target": target, "pid": pid, "ppid": ppid,
            "host": rng.choice(hosts), "user": "ci", "duration_ms": dur, "exit_code": code,
            "outcome": "ok" if code == 0 else "error", "detail": detail,
            "run_id": "run-%04d" % (i // 5000),
        }
        f.write(json.dumps(ev, separators=(",", ":")) + "\n")
