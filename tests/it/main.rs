//! The one integration-test binary: drives the real binaries in temp dirs.

mod harness;
mod lock;
mod state;
