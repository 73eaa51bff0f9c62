//! The workflow state: its document, schema, paths, backups and store, and
//! the `state-manager` subcommands built on them.

pub mod backup;
pub mod cleanup;
pub mod commands;
pub mod diagnostics;
pub mod document;
pub mod exchange;
pub mod health;
pub mod integrity;
pub mod members;
pub mod merge;
pub mod metrics;
pub mod path;
pub mod repair;
pub mod schema;
pub mod selfbench;
pub mod splice;
pub mod store;

pub use store::{Commit, Store, Txn};
