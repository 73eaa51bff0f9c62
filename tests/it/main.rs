//! The one integration-test binary: drives the real binaries in temp dirs.

mod audit;
mod backends;
mod conventions;
mod harness;
mod haudit;
mod hlock;
mod hooks;
mod hrec;
mod hstate;
mod lock;
mod lock_habits;
mod ops;
mod outputs;
mod props;
mod recovery;
mod redis_faults;
mod reliability;
mod server;
mod shims;
mod state;
mod trust_files;
mod trust_locks;
mod trust_recovery;
mod trust_stores;
