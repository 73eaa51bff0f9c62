//! The audit stream `wfstate:{NS}:audit`: one entry per event, `event` (the
//! JSON line a file log would hold) and `us` (the server's time when it was
//! appended, in µs). Reading it back gives every event the server's time as
//! its `ts`, so hosts whose clocks disagree still share one order.

use std::time::Duration;

use serde_json::Value;

use super::RedisBackend;
use crate::audit::event::Event;
use crate::audit::scan::{self, Events, Line, Totals};
use crate::backend::AuditSink;
use crate::error::Result;

/// The stream is trimmed to about this many events (`MAXLEN ~`).
pub(crate) const MAX_EVENTS: u64 = 1_000_000;

/// Appends ARGV[1] (an event's JSON) with the server's time; KEYS[1] the stream.
const APPEND: &str = r"
local t = redis.call('TIME')
local us = t[1] .. string.rep('0', 6 - #t[2]) .. t[2]
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'us', us, 'event', ARGV[1])
return us
";

pub(crate) fn append_script() -> redis::Script {
    redis::Script::new(APPEND)
}

/// The line of one stream entry: its event with `ts` set from `us`.
fn line_of(fields: &[(String, Vec<u8>)]) -> Option<Vec<u8>> {
    let get = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v);
    let event = get("event")?;
    let mut v: Value = serde_json::from_slice(event).ok()?;
    if let Some(us) = get("us").and_then(|u| std::str::from_utf8(u).ok()?.parse::<i64>().ok())
        && let Some(m) = v.as_object_mut()
    {
        m.insert("ts".into(), Value::String(scan::format_micros(us)));
    }
    serde_json::to_vec(&v).ok()
}

/// One page of `XRANGE`: (id, [(field, value)]).
type Page = Vec<(String, Vec<(String, Vec<u8>)>)>;

impl Events for RedisBackend {
    fn scan_events(&self, each: &mut dyn FnMut(&Line)) -> Result<Totals> {
        let key = self.keys.key("audit");
        let mut totals = Totals {
            files: vec![key.clone().into()],
            ..Totals::default()
        };
        let mut start = "-".to_string();
        loop {
            let page: Page = self.with("read the audit stream", |c| {
                redis::cmd("XRANGE")
                    .arg(&key)
                    .arg(&start)
                    .arg("+")
                    .arg("COUNT")
                    .arg(2000)
                    .query(c)
            })?;
            let Some((last, _)) = page.last() else {
                break;
            };
            start = format!("({last}");
            for (_, fields) in &page {
                match line_of(fields) {
                    Some(raw) => {
                        if let Some(line) = scan::parse_line(&raw, &mut totals) {
                            each(&line);
                        }
                    }
                    None => {
                        totals.lines += 1;
                        totals.malformed += 1;
                    }
                }
            }
        }
        Ok(totals)
    }
}

impl AuditSink for RedisBackend {
    fn append(&self, event: &Event) {
        // Through the process's sink, which falls back to the local file.
        crate::audit::event::append(&self.cfg, event)
    }
}

/// `audit monitor` on the stream: `XREAD BLOCK` from the newest entry on,
/// so new events arrive as they are appended, without polling.
pub struct StreamFeed<'a> {
    backend: &'a RedisBackend,
    key: String,
    /// The id of the last entry handed on.
    last: String,
}

/// One `XREAD` reply: [(stream, [(id, [(field, value)])])].
type ReadReply = Option<Vec<(String, Page)>>;

impl<'a> StreamFeed<'a> {
    /// A feed from the stream's current end.
    pub fn at_end(backend: &'a RedisBackend) -> Result<StreamFeed<'a>> {
        let key = backend.keys.key("audit");
        let newest: Page = backend.with("read the audit stream", |c| {
            redis::cmd("XREVRANGE")
                .arg(&key)
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(1)
                .query(c)
        })?;
        let last = newest
            .first()
            .map_or_else(|| "0-0".to_string(), |(id, _)| id.clone());
        Ok(StreamFeed { backend, key, last })
    }

    /// Where it reads, as the monitor names it.
    pub fn name(&self) -> std::path::PathBuf {
        self.key.clone().into()
    }

    fn read(&mut self, block: Option<Duration>, each: &mut dyn FnMut(&[u8])) {
        let reply: Result<ReadReply> = self.backend.with("follow the audit stream", |c| {
            let mut cmd = redis::cmd("XREAD");
            cmd.arg("COUNT").arg(1000);
            if let Some(b) = block {
                cmd.arg("BLOCK").arg(b.as_millis().max(1) as u64);
            }
            cmd.arg("STREAMS").arg(&self.key).arg(&self.last).query(c)
        });
        match reply {
            Ok(Some(streams)) => {
                for (_, page) in streams {
                    for (id, fields) in page {
                        if let Some(raw) = line_of(&fields) {
                            each(&raw);
                        }
                        self.last = id;
                    }
                }
            }
            Ok(None) => {}
            Err(e) => {
                eprintln!("state-manager: warning: {e}");
                std::thread::sleep(block.unwrap_or_default());
            }
        }
    }
}

impl crate::audit::monitor::Feed for StreamFeed<'_> {
    fn read_new(&mut self, each: &mut dyn FnMut(&[u8])) {
        self.read(None, each)
    }
    fn wait(&mut self, d: Duration, each: &mut dyn FnMut(&[u8])) {
        // Below the read timeout, so a block is never taken for a dead server.
        let d = d.min(self.backend.timeout / 2);
        if !d.is_zero() {
            self.read(Some(d), each)
        }
    }
}
