//! Kept for `crate::cmd::state_manager`, which names the audit subcommands
//! by this path: the arguments and the command functions are in
//! `crate::cmd::audit`. Name `crate::cmd::audit::AuditCommand` there and
//! this module can go.

pub use crate::cmd::audit::AuditCommand;
