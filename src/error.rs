//! The library's error: a kind that decides the exit code, what failed, the
//! path involved, the underlying cause and what the user should do next.
//!
//! Binaries print an error once, as `binary: what failed: path: why — what to
//! do`. Operating-system errors are classified by errno so that a full disk is
//! always exit 7 and a refused permission always exit 6, wherever it happens.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::exit::Code;

/// What went wrong, as far as the exit code is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    General,
    LockTimeout,
    Corruption,
    Validation,
    DependencyMissing,
    PermissionDenied,
    DiskFull,
    Network,
    Timeout,
    ResourceExhausted,
}

impl Kind {
    /// The exit code for this kind: the one mapping in the toolkit.
    pub fn code(self) -> Code {
        match self {
            Kind::General => Code::GeneralError,
            Kind::LockTimeout => Code::LockTimeout,
            Kind::Corruption => Code::StateCorruption,
            Kind::Validation => Code::ValidationFailed,
            Kind::DependencyMissing => Code::DependencyMissing,
            Kind::PermissionDenied => Code::PermissionDenied,
            Kind::DiskFull => Code::DiskFull,
            Kind::Network => Code::NetworkError,
            Kind::Timeout => Code::Timeout,
            Kind::ResourceExhausted => Code::ResourceExhausted,
        }
    }

    /// The kind an operating-system error belongs to.
    pub fn of_io(err: &io::Error) -> Kind {
        use rustix::io::Errno;
        if let Some(errno) = err.raw_os_error().map(Errno::from_raw_os_error) {
            if errno == Errno::NOSPC || errno == Errno::DQUOT {
                return Kind::DiskFull;
            }
            if errno == Errno::ACCESS || errno == Errno::PERM || errno == Errno::ROFS {
                return Kind::PermissionDenied;
            }
            if errno == Errno::MFILE || errno == Errno::NFILE || errno == Errno::NOMEM {
                return Kind::ResourceExhausted;
            }
            if errno == Errno::LOOP {
                return Kind::PermissionDenied;
            }
        }
        match err.kind() {
            io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => {
                Kind::PermissionDenied
            }
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => Kind::DiskFull,
            io::ErrorKind::OutOfMemory => Kind::ResourceExhausted,
            _ => Kind::General,
        }
    }
}

/// An error of the toolkit.
#[derive(Debug)]
pub struct Error {
    kind: Kind,
    what: String,
    path: Option<PathBuf>,
    cause: Option<String>,
    hint: Option<String>,
    source: Option<io::Error>,
}

impl Clone for Error {
    /// A copy for a computation that runs again (an optimistic transaction's
    /// retry); an OS error is copied as its kind and text.
    fn clone(&self) -> Error {
        Error {
            kind: self.kind,
            what: self.what.clone(),
            path: self.path.clone(),
            cause: self.cause.clone(),
            hint: self.hint.clone(),
            source: self.source.as_ref().map(|e| match e.raw_os_error() {
                Some(n) => io::Error::from_raw_os_error(n),
                None => io::Error::new(e.kind(), e.to_string()),
            }),
        }
    }
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error of `kind` saying what failed.
    pub fn new(kind: Kind, what: impl Into<String>) -> Error {
        Error {
            kind,
            what: what.into(),
            path: None,
            cause: None,
            hint: None,
            source: None,
        }
    }

    /// An operating-system error while doing `what` to `path`, classified by errno.
    pub fn io(err: io::Error, what: impl Into<String>, path: impl AsRef<Path>) -> Error {
        Error {
            kind: Kind::of_io(&err),
            what: what.into(),
            path: Some(path.as_ref().to_path_buf()),
            cause: None,
            hint: None,
            source: Some(err),
        }
    }

    /// Shorthands for the common kinds.
    pub fn general(what: impl Into<String>) -> Error {
        Error::new(Kind::General, what)
    }
    pub fn validation(what: impl Into<String>) -> Error {
        Error::new(Kind::Validation, what)
    }
    pub fn corruption(what: impl Into<String>) -> Error {
        Error::new(Kind::Corruption, what)
    }

    /// Names the file involved.
    pub fn with_path(mut self, path: impl AsRef<Path>) -> Error {
        self.path = Some(path.as_ref().to_path_buf());
        self
    }

    /// Says why, when the cause is not an OS error.
    pub fn because(mut self, cause: impl fmt::Display) -> Error {
        self.cause = Some(cause.to_string());
        self
    }

    /// Says what the user should do next.
    pub fn hint(mut self, hint: impl Into<String>) -> Error {
        self.hint = Some(hint.into());
        self
    }

    /// Adds a hint only where none was given closer to the cause.
    pub fn or_hint(self, hint: impl Into<String>) -> Error {
        if self.hint.is_some() {
            self
        } else {
            self.hint(hint)
        }
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn code(&self) -> Code {
        self.kind.code()
    }

    /// The kind of the underlying OS error, if there is one.
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        self.source.as_ref().map(io::Error::kind)
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The error without its hint, for audit details.
    pub fn summary(&self) -> String {
        let mut s = self.what.clone();
        if let Some(p) = &self.path {
            s.push_str(&format!(": {}", p.display()));
        }
        if let Some(c) = &self.cause {
            s.push_str(&format!(": {c}"));
        }
        if let Some(e) = &self.source {
            s.push_str(&format!(": {e}"));
        }
        s
    }

    /// The hint given, if any.
    pub fn hint_text(&self) -> Option<&str> {
        self.hint.as_deref()
    }

    /// The default next step for a kind with no hint of its own.
    fn default_hint(&self) -> Option<&'static str> {
        match self.kind {
            Kind::DiskFull => Some("free space on that filesystem, then run the command again"),
            Kind::PermissionDenied if self.source.is_some() => {
                Some("check the owner and mode of that file and its folder")
            }
            Kind::ResourceExhausted if self.source.is_some() => {
                Some("raise the limit (ulimit -n) or close other programs, then retry")
            }
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.summary())?;
        if let Some(h) = self.hint.as_deref().or(self.default_hint()) {
            write!(f, " — {h}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_ref().map(|e| e as _)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_decides_the_code() {
        let full = io::Error::from_raw_os_error(rustix::io::Errno::NOSPC.raw_os_error());
        assert_eq!(Kind::of_io(&full).code(), Code::DiskFull);
        let acc = io::Error::from_raw_os_error(rustix::io::Errno::ACCESS.raw_os_error());
        assert_eq!(Kind::of_io(&acc).code(), Code::PermissionDenied);
        let mfile = io::Error::from_raw_os_error(rustix::io::Errno::MFILE.raw_os_error());
        assert_eq!(Kind::of_io(&mfile).code(), Code::ResourceExhausted);
        let other = io::Error::from_raw_os_error(rustix::io::Errno::NOENT.raw_os_error());
        assert_eq!(Kind::of_io(&other).code(), Code::GeneralError);
    }

    #[test]
    fn display_reads_what_path_why_and_what_to_do() {
        let e = Error::validation("bad lock name")
            .with_path("/x/.locks")
            .because("contains '/'")
            .hint("use letters, digits, '.', '_' or '-'");
        assert_eq!(
            e.to_string(),
            "bad lock name: /x/.locks: contains '/' — use letters, digits, '.', '_' or '-'"
        );
        assert_eq!(e.code(), Code::ValidationFailed);
    }
}
