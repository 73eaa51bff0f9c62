//! `health` and `diagnostics` on Redis, against a real redis-server (issue
//! 14): the persistence check and the CONFIG SET it names, latency figures
//! from `--pings` PINGs, memory against `maxmemory` (alert over 80 %),
//! evictions and the eviction policy, replication role, and a server that
//! refuses CONFIG (a managed service): unverified, never a failure.

use serde_json::{Value, json};

use crate::harness::{Env, Run, assert_schema};

const SM: &str = "state-manager";

fn health(env: &Env) -> Run {
    env.run(SM, &["health", "--json"])
}

fn diagnostics(env: &Env) -> Value {
    let d = env.run(SM, &["diagnostics", "--json"]).ok().json();
    assert_schema("state-manager-diagnostics.schema.json", &d);
    d
}

/// INFO's `name` field of the test server, as a number.
fn info_num(env: &Env, section: &str, name: &str) -> u64 {
    let text = env.server().cli(&["INFO", section]);
    text.lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{name}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in INFO {section}: {text}"))
}

/// Writes key `key` holding `bytes` bytes, through the server itself.
fn fill(env: &Env, key: &str, bytes: usize) {
    let n = bytes.to_string();
    let out = env.server().cli(&[
        "EVAL",
        "redis.call('SET', KEYS[1], string.rep('x', tonumber(ARGV[1]))) return 1",
        "1",
        key,
        &n,
    ]);
    assert!(out == "1" || out.contains("OOM"), "{out}");
}

#[test]
fn health_warns_about_persistence_that_can_lose_acknowledged_writes_naming_the_config_set() {
    let env = Env::redis();
    env.init();
    let h = health(&env).ok().json();
    assert_schema("state-manager-health.schema.json", &h);
    assert_eq!(
        h["checks"]["persistence"]["status"],
        json!("healthy"),
        "{h}"
    );

    // Each setting that loses acknowledged writes: a warning (exit 0), its
    // hint the CONFIG SET that fixes it, shown in the text report too.
    for (name, value, fix) in [
        ("appendfsync", "everysec", "CONFIG SET appendfsync always"),
        ("appendfsync", "no", "CONFIG SET appendfsync always"),
        ("appendonly", "no", "CONFIG SET appendonly yes"),
    ] {
        env.server().cli(&["CONFIG", "SET", name, value]);
        let h = health(&env).ok().json();
        assert_schema("state-manager-health.schema.json", &h);
        assert_eq!(h["status"], json!("degraded"), "{name} {value}: {h}");
        let p = &h["checks"]["persistence"];
        assert_eq!(p["status"], json!("degraded"), "{name} {value}: {h}");
        assert!(
            p["hint"].as_str().unwrap().contains(fix),
            "{name} {value}: {h}"
        );
        env.run(SM, &["health"]).ok().stdout_has(fix);
        // Back to the setting the harness starts with.
        env.server().cli(&["CONFIG", "SET", "appendonly", "yes"]);
        env.server()
            .cli(&["CONFIG", "SET", "appendfsync", "always"]);
    }
    assert_eq!(health(&env).ok().json()["status"], json!("healthy"));
}

#[test]
fn a_server_that_refuses_config_leaves_persistence_unverified_not_failed() {
    let env = Env::redis();
    env.init();
    // A managed service's user: everything but CONFIG.
    env.server().cli(&[
        "ACL", "SETUSER", "app", "on", ">pw", "~*", "&*", "+@all", "-config",
    ]);
    let url = format!("{}?user=app&pass=pw", env.server().url());
    let out = env
        .cmd(SM)
        .env("WFSTATE_BACKEND", &url)
        .args(["health", "--json"])
        .output()
        .unwrap();
    let h = Run::of(out).ok().json();
    assert_schema("state-manager-health.schema.json", &h);
    let p = &h["checks"]["persistence"];
    assert_eq!(p["status"], json!("unknown"), "{h}");
    assert!(
        p["message"]
            .as_str()
            .unwrap()
            .contains("could not be verified"),
        "{h}"
    );
    // What INFO says is still known: the append-only file is on, the policy.
    assert!(p["message"].as_str().unwrap().contains("on"), "{h}");
    assert_eq!(h["checks"]["eviction"]["status"], json!("healthy"), "{h}");
    let out = env
        .cmd(SM)
        .env("WFSTATE_BACKEND", &url)
        .args(["diagnostics", "--json"])
        .output()
        .unwrap();
    let d = Run::of(out).ok().json();
    assert_schema("state-manager-diagnostics.schema.json", &d);
    assert_eq!(
        d["server"]["persistence"]["appendfsync"],
        Value::Null,
        "{d}"
    );
    assert_eq!(d["server"]["persistence"]["appendonly"], json!(true), "{d}");
}

#[test]
fn memory_over_80_percent_of_maxmemory_is_an_alert() {
    let env = Env::redis();
    env.init();
    let h = health(&env).ok().json();
    assert_eq!(h["checks"]["memory"]["status"], json!("healthy"), "{h}");
    let d = diagnostics(&env);
    assert_eq!(d["server"]["memory"]["maxmemory_bytes"], json!(0), "{d}");
    assert_eq!(d["server"]["memory"]["used_percent"], Value::Null, "{d}");

    // Keys fill it: maxmemory set so that what is used is about 90 % of it.
    fill(&env, "filler", 2 << 20);
    let used = info_num(&env, "memory", "used_memory");
    let max = used * 10 / 9;
    env.server()
        .cli(&["CONFIG", "SET", "maxmemory", &max.to_string()]);
    let h = health(&env).ok().json();
    assert_schema("state-manager-health.schema.json", &h);
    let m = &h["checks"]["memory"];
    assert_eq!(m["status"], json!("degraded"), "{h}");
    assert_eq!(h["status"], json!("degraded"), "{h}");
    assert!(m["message"].as_str().unwrap().contains("maxmemory"), "{h}");
    let d = diagnostics(&env);
    let mem = &d["server"]["memory"];
    assert_eq!(mem["maxmemory_bytes"], json!(max), "{d}");
    let percent = mem["used_percent"].as_f64().unwrap();
    assert!(percent > 80.0, "{d}");
    assert!(mem["used_bytes"].as_u64().unwrap() > 2 << 20, "{d}");

    // Room again: the alert goes.
    env.server()
        .cli(&["CONFIG", "SET", "maxmemory", &(used * 4).to_string()]);
    let h = health(&env).ok().json();
    assert_eq!(h["checks"]["memory"]["status"], json!("healthy"), "{h}");
}

#[test]
fn evictions_under_allkeys_lru_show_in_the_figures_and_the_policy_is_flagged() {
    let env = Env::redis();
    env.init();
    let d = diagnostics(&env);
    assert_eq!(d["server"]["evictions"]["evicted_keys"], json!(0), "{d}");
    assert_eq!(
        d["server"]["memory"]["maxmemory_policy"],
        json!("noeviction"),
        "{d}"
    );

    let used = info_num(&env, "memory", "used_memory");
    env.server()
        .cli(&["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"]);
    env.server().cli(&[
        "CONFIG",
        "SET",
        "maxmemory",
        &(used + (1 << 20)).to_string(),
    ]);
    for i in 0..12 {
        fill(&env, &format!("filler:{i}"), 256 << 10);
    }
    let evicted = info_num(&env, "stats", "evicted_keys");
    assert!(evicted > 0, "the server evicted nothing");

    let d = diagnostics(&env);
    let ev = &d["server"]["evictions"];
    assert!(ev["evicted_keys"].as_u64().unwrap() >= evicted, "{d}");
    assert!(ev["per_minute"].as_f64().unwrap() > 0.0, "{d}");
    assert_eq!(
        d["server"]["memory"]["maxmemory_policy"],
        json!("allkeys-lru"),
        "{d}"
    );
    env.run(SM, &["diagnostics"])
        .ok()
        .stdout_has("maxmemory-policy: allkeys-lru")
        .stdout_has("evicted keys:");

    // The policy can evict the state: flagged (exit 10, as before). The
    // rate since start (a server up seconds, many evictions) is an alert.
    let h = health(&env).code(10).json();
    assert_schema("state-manager-health.schema.json", &h);
    assert_eq!(h["checks"]["eviction"]["status"], json!("unhealthy"), "{h}");
    let e = &h["checks"]["evictions"];
    assert_eq!(e["status"], json!("degraded"), "{h}");
    assert!(e["message"].as_str().unwrap().contains("/min"), "{h}");
    assert!(e["message"].as_str().unwrap().contains("since"), "{h}");
}

#[test]
fn latency_figures_are_numbers_from_the_pings_asked_and_the_role_is_master() {
    let env = Env::redis();
    env.init();
    let out = env
        .run(SM, &["diagnostics", "--json", "--pings", "7"])
        .ok()
        .json();
    assert_schema("state-manager-diagnostics.schema.json", &out);
    let s = &out["server"];
    let lat = &s["latency"];
    assert_eq!(lat["count"], json!(7), "{out}");
    let (p50, p95, max) = (
        lat["p50_ms"].as_f64().unwrap(),
        lat["p95_ms"].as_f64().unwrap(),
        lat["max_ms"].as_f64().unwrap(),
    );
    assert!(0.0 <= p50 && p50 <= p95 && p95 <= max, "{out}");
    assert_eq!(s["replication"]["role"], json!("master"), "{out}");
    assert_eq!(s["replication"]["connected_slaves"], json!(0), "{out}");
    assert_eq!(s["replication"]["replicas"], json!([]), "{out}");
    assert!(s["connected_clients"].as_u64().unwrap() >= 1, "{out}");
    assert_eq!(s["persistence"]["appendonly"], json!(true), "{out}");
    assert_eq!(s["persistence"]["appendfsync"], json!("always"), "{out}");
    assert_eq!(
        s["persistence"]["aof_last_write_status"],
        json!("ok"),
        "{out}"
    );
    assert!(s["version"].is_string(), "{out}");

    let h = env
        .run(SM, &["health", "--json", "--pings", "3"])
        .ok()
        .json();
    let l = &h["checks"]["latency"];
    assert_eq!(l["status"], json!("healthy"), "{h}");
    assert!(
        l["message"].as_str().unwrap().contains("over 3 PINGs"),
        "{h}"
    );
    env.run(SM, &["diagnostics"])
        .ok()
        .stdout_has("latency ms:")
        .stdout_has("role:             master");
    env.run(SM, &["health", "--pings", "0"])
        .code(1)
        .stderr_has("--pings");
}

#[test]
fn on_files_diagnostics_has_no_server_figures() {
    let env = Env::new();
    env.init();
    let d = diagnostics(&env);
    assert_eq!(d["server"], Value::Null, "{d}");
    let h = health(&env).ok().json();
    assert!(h["checks"].get("latency").is_none(), "{h}");
}
