//! wfstate keeps a workflow's JSON state safe for the shell scripts that drive
//! it: atomic durable writes, schema validation, backups, named locks that
//! outlive a command, checkpoints, retry and an audit log.
//!
//! Everything real lives in this library; the binaries in `src/bin/` parse
//! arguments, call one function per subcommand and map errors to exit codes.

pub mod audit;
pub mod backend;
pub mod child;
pub mod cmd;
pub mod config;
pub mod debug;
pub mod durable;
pub mod error;
pub mod exit;
pub mod hooks;
pub mod lock;
pub mod recovery;
pub mod state;

pub use config::Config;
pub use error::{Error, Kind, Result};
pub use exit::Code;
