//! The lock registry: named shared/exclusive locks, their holders and
//! waiters — what `lock-manager` keeps, and what `state-manager` takes
//! around a transaction.
//!
//! The file backend's implementation is [`crate::lock::manager`] over the
//! records in `.locks/` ([`crate::lock::record`]). [`LockRegistry::list`] is
//! the one way to list lock records, and [`Record::standing`] the one rule
//! for what a record means (held, stale, ...): `check`, `list`, `status` and
//! `clean` all follow it.
//!
//! [`Record::standing`]: crate::lock::Record::standing

use super::FileBackend;
use crate::error::Result;
use crate::lock::Identity;
use crate::lock::Record;
use crate::lock::manager::{
    self, Acquired, Check, Cleaned, Entry, Released, Request, Swept, WaitLog,
};
use crate::lock::process;
use crate::lock::report::Status;

/// Where lock records live.
pub trait LockRegistry {
    /// Every lock record, sorted by name: the one way to list them.
    fn list(&self) -> Result<Vec<Entry>>;
    /// [`LockRegistry::list`] one record at a time, each handed to `f` and
    /// dropped, so a listing of many records never holds them all (`list
    /// json`); how many there were. The whole list by default.
    fn each(&self, f: &mut dyn FnMut(Entry)) -> Result<usize> {
        let entries = self.list()?;
        let n = entries.len();
        entries.into_iter().for_each(f);
        Ok(n)
    }
    /// The record of lock `name`, `None` when there is none (exit 3 when it
    /// does not parse).
    fn read(&self, name: &str) -> Result<Option<Record>>;
    /// Takes `req.name` for `req.owner`, waiting up to `req.timeout`
    /// (exit 2 after, 4 for a bad name or a hierarchy violation).
    fn acquire(&self, req: &Request, log: &mut WaitLog) -> Result<Acquired>;
    /// Gives `name` back for `owner`; with `force`, whoever holds it (exit 6
    /// when another live owner holds it and `force` is not given).
    fn release(&self, name: &str, owner: &Identity, force: bool) -> Result<Released>;
    /// [`LockRegistry::release`], forced, of the one holder `holder` (a
    /// holder id as the Redis backend names it): Terraform's force-unlock.
    /// Without `holder`, the same as `release`. The file backend has no
    /// holder ids: exit 4 when one is given.
    fn release_holder(
        &self,
        name: &str,
        owner: &Identity,
        force: bool,
        holder: Option<&str>,
    ) -> Result<Released> {
        match holder {
            None => self.release(name, owner, force),
            Some(_) => Err(crate::error::Error::validation(
                "--holder names a holder of the Redis backend's locks",
            )
            .hint("on files, 'lock-manager release NAME --force' removes every holder")),
        }
    }
    /// Whether holds are leases (Redis): a holder on another host is then
    /// alive while its lease runs and is taken over after, rather than
    /// "unverifiable" and kept until `release --force` (files).
    fn leased(&self) -> bool {
        false
    }
    /// Locked, unlocked or stale.
    fn check(&self, name: &str) -> Result<Check>;
    /// Removes the records nobody live is in (with `force`, also those that
    /// do not parse) and prunes the dead from the others.
    fn clean(&self, force: bool) -> Result<Cleaned>;
    /// Removes the record of `name` if nobody live is in it (judged under
    /// its mutex); whether it did. `state-manager cleanup --stale`'s removal.
    fn remove_stale(&self, name: &str) -> Result<bool>;
    /// The counts and records `status` shows (run it inside
    /// [`process::snapshot`] with the rendering, so each holder is judged once).
    fn status(&self) -> Result<Status>;
}

impl LockRegistry for FileBackend {
    fn list(&self) -> Result<Vec<Entry>> {
        manager::scan(&self.cfg)
    }
    fn each(&self, f: &mut dyn FnMut(Entry)) -> Result<usize> {
        manager::scan_each(&self.cfg, f)
    }
    fn read(&self, name: &str) -> Result<Option<Record>> {
        manager::read(&self.cfg, name)
    }
    fn acquire(&self, req: &Request, log: &mut WaitLog) -> Result<Acquired> {
        manager::acquire(&self.cfg, req, log)
    }
    fn release(&self, name: &str, owner: &Identity, force: bool) -> Result<Released> {
        manager::release(&self.cfg, name, owner, force)
    }
    fn check(&self, name: &str) -> Result<Check> {
        manager::check(&self.cfg, name)
    }
    fn clean(&self, force: bool) -> Result<Cleaned> {
        // Each pid's start time read once for all the records.
        process::snapshot(|| manager::clean(&self.cfg, force))
    }
    fn remove_stale(&self, name: &str) -> Result<bool> {
        Ok(manager::sweep(&self.cfg, name, false, false)? == Swept::Removed)
    }
    fn status(&self) -> Result<Status> {
        manager::scan(&self.cfg).map(Status::of)
    }
}
