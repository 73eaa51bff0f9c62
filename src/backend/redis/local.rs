//! What one host keeps about its holds on a Redis server, and the names the
//! server knows holders by.
//!
//! A holder is the same identity as on files (host, boot id, pid, start
//! time, pid namespace), written as one string, [`holder_id`]: later calls
//! of the same shell compute it again, so nothing has to be exported.
//!
//! Beside the server, each host keeps a private folder per server and
//! namespace ([`Local`]): `$XDG_RUNTIME_DIR/wfstate/` (else
//! `/tmp/wfstate-UID/`), mode 0700 and ours, or refused (exit 6):
//!
//! | path | holds |
//! | --- | --- |
//! | `SPACE/holds/OWNER/LOCK` | `{"epoch": "…", "token": N}`: the fencing token of OWNER's grant of LOCK, written by `acquire`, removed by `release` — what a later `state-manager` call of the same shell presents |
//! | `SPACE/keepers/OWNER.lock` | flocked by OWNER's keeper while it runs: one keeper per owner |
//!
//! SPACE is 16 hex digits of SHA-256 over the URL and the namespace.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::error::{Error, Kind, Result};
use crate::lock::Identity;

/// How long a hold lasts unless renewed, by default (`WFSTATE_LEASE`).
pub(crate) const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// The shortest lease accepted: renewals come every third of it.
pub(crate) const MIN_LEASE: Duration = Duration::from_millis(300);

/// The lease of this process's grants: `WFSTATE_LEASE` (a duration, at
/// least [`MIN_LEASE`]), else [`DEFAULT_LEASE`]. Exit 4 for a bad value.
pub(crate) fn lease() -> Result<Duration> {
    match std::env::var("WFSTATE_LEASE") {
        Ok(t) if !t.trim().is_empty() => {
            let d = crate::config::parse_duration(&t, "WFSTATE_LEASE")?;
            if d < MIN_LEASE {
                return Err(Error::validation(format!(
                    "WFSTATE_LEASE '{}' is shorter than {} ms",
                    t.escape_debug(),
                    MIN_LEASE.as_millis()
                ))
                .hint("give a lease of at least 300ms; 30s is the default"));
            }
            Ok(d)
        }
        _ => Ok(DEFAULT_LEASE),
    }
}

/// The name the server knows `id` by: `HOST:PID:START:BOOT:PIDNS` (PIDNS 0
/// when unknown). Host names hold neither `:` nor `/`.
pub(crate) fn holder_id(id: &Identity) -> String {
    format!(
        "{}:{}:{}:{}:{}",
        id.host,
        id.pid,
        id.start_time,
        id.boot_id,
        id.pid_ns.unwrap_or(0)
    )
}

/// The identity a [`holder_id`] names; `None` for a string that is not one.
pub(crate) fn parse_holder_id(s: &str) -> Option<Identity> {
    let mut parts = s.split(':');
    let host = parts.next()?.to_string();
    let pid = parts.next()?.parse().ok()?;
    let start_time = parts.next()?.parse().ok()?;
    let boot_id = parts.next()?.to_string();
    let ns: u64 = parts.next()?.parse().ok()?;
    if parts.next().is_some() || host.is_empty() {
        return None;
    }
    Some(Identity {
        pid,
        start_time,
        boot_id,
        host,
        pid_ns: (ns != 0).then_some(ns),
    })
}

/// This host's private folder for one server and namespace.
#[derive(Clone, Debug)]
pub(crate) struct Local {
    dir: PathBuf,
}

impl Local {
    /// The folder of `url` (as given, password included: it only feeds the
    /// hash) and `ns`, created if missing.
    pub(crate) fn open(url: &str, ns: &str) -> Result<Local> {
        let base = runtime_base();
        private_dir(&base)?;
        let mut h = Sha256::new();
        h.update(url.as_bytes());
        h.update([0]);
        h.update(ns.as_bytes());
        let hex: String = h.finalize()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let dir = base.join(hex);
        private_dir(&dir)?;
        Ok(Local { dir })
    }

    /// Where `owner`'s token for `lock` is kept.
    pub(crate) fn hold_path(&self, owner: &Identity, lock: &str) -> PathBuf {
        self.dir.join("holds").join(holder_id(owner)).join(lock)
    }

    /// The folder of `owner`'s tokens.
    pub(crate) fn holds_dir(&self, owner: &Identity) -> PathBuf {
        self.dir.join("holds").join(holder_id(owner))
    }

    /// The file `owner`'s keeper keeps flocked while it runs.
    pub(crate) fn keeper_lock_path(&self, owner: &Identity) -> PathBuf {
        self.dir
            .join("keepers")
            .join(format!("{}.lock", holder_id(owner)))
    }

    /// Creates `path`'s parent folders below this one, private.
    pub(crate) fn make_parents(&self, path: &Path) -> Result<()> {
        let Some(parent) = path.parent() else {
            return Ok(());
        };
        let mut at = self.dir.clone();
        for part in parent
            .strip_prefix(&self.dir)
            .unwrap_or(parent)
            .components()
        {
            at.push(part);
            private_dir(&at)?;
        }
        Ok(())
    }
}

/// `$XDG_RUNTIME_DIR/wfstate` when that variable names an absolute folder,
/// else `/tmp/wfstate-UID`.
fn runtime_base() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
        Some(d) if d.is_absolute() && d.is_dir() => d.join("wfstate"),
        _ => PathBuf::from(format!(
            "/tmp/wfstate-{}",
            rustix::process::getuid().as_raw()
        )),
    }
}

/// Creates `dir` mode 0700 if missing; refuses (exit 6) one that is a
/// symlink, not ours, or open to others — another user could plant tokens.
fn private_dir(dir: &Path) -> Result<()> {
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::io(e, "create", dir)),
    }
    let meta = fs::symlink_metadata(dir).map_err(|e| Error::io(e, "read", dir))?;
    let uid = rustix::process::getuid().as_raw();
    if !meta.is_dir() || meta.uid() != uid || meta.permissions().mode() & 0o077 != 0 {
        return Err(Error::new(
            Kind::PermissionDenied,
            format!(
                "{} is not a private folder of this user (uid {uid}, mode 0700)",
                dir.display()
            ),
        )
        .hint("remove it, or set XDG_RUNTIME_DIR to a folder of your own"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_holder_id_names_its_identity_back() {
        let me = Identity::current();
        let back = parse_holder_id(&holder_id(&me)).expect("parses");
        assert_eq!(back, me);
        assert!(parse_holder_id("h:1:2:b").is_none());
        assert!(parse_holder_id("h:x:2:b:0").is_none());
        assert!(parse_holder_id("h:1:2:b:0:extra").is_none());
    }
}
