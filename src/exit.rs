//! The one exit-code table shared by all three binaries (docs/architecture.md, "Exit codes").
//!
//! Automation branches on these numbers, so they never change meaning. The
//! library never exits the process: it returns an [`crate::Error`] whose kind
//! maps to a [`Code`] here, and each binary turns that into its exit status.

/// An exit status of the toolkit, 0–10.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Code {
    Success = 0,
    GeneralError = 1,
    LockTimeout = 2,
    StateCorruption = 3,
    ValidationFailed = 4,
    DependencyMissing = 5,
    PermissionDenied = 6,
    DiskFull = 7,
    NetworkError = 8,
    Timeout = 9,
    ResourceExhausted = 10,
}

impl Code {
    /// Every code, in numeric order.
    pub const ALL: [Code; 11] = [
        Code::Success,
        Code::GeneralError,
        Code::LockTimeout,
        Code::StateCorruption,
        Code::ValidationFailed,
        Code::DependencyMissing,
        Code::PermissionDenied,
        Code::DiskFull,
        Code::NetworkError,
        Code::Timeout,
        Code::ResourceExhausted,
    ];

    /// The numeric value a process exits with.
    pub fn as_i32(self) -> i32 {
        self as i32
    }

    /// The code for a number, if it is one of ours.
    pub fn from_i32(n: i32) -> Option<Code> {
        Code::ALL.iter().copied().find(|c| c.as_i32() == n)
    }

    /// The shell-library name, as in `EXIT_<NAME>` of lib/common.sh.
    pub fn name(self) -> &'static str {
        match self {
            Code::Success => "SUCCESS",
            Code::GeneralError => "GENERAL_ERROR",
            Code::LockTimeout => "LOCK_TIMEOUT",
            Code::StateCorruption => "STATE_CORRUPTION",
            Code::ValidationFailed => "VALIDATION_FAILED",
            Code::DependencyMissing => "DEPENDENCY_MISSING",
            Code::PermissionDenied => "PERMISSION_DENIED",
            Code::DiskFull => "DISK_FULL",
            Code::NetworkError => "NETWORK_ERROR",
            Code::Timeout => "TIMEOUT",
            Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        }
    }

    /// One line on when the code is returned.
    pub fn meaning(self) -> &'static str {
        match self {
            Code::Success => "done",
            Code::GeneralError => "anything not below, and usage errors",
            Code::LockTimeout => "a lock was not acquired within its timeout",
            Code::StateCorruption => {
                "a state, backup or checkpoint does not parse or fails its checksum"
            }
            Code::ValidationFailed => "input or document breaks the schema or a rule",
            Code::DependencyMissing => "something the operation needs is absent",
            Code::PermissionDenied => "access refused, refused symlink, or not the lock owner",
            Code::DiskFull => "no space left on the device or quota exceeded",
            Code::NetworkError => "reserved for network backends",
            Code::Timeout => "an overall deadline passed",
            Code::ResourceExhausted => {
                "out of file descriptors or memory, or input over the size limit"
            }
        }
    }
}

/// The exit-code table as every binary's `--help` ends with it:
/// [`Code::help_table`] built at compile time would need const string
/// formatting, so the text is written out and a test keeps it equal to
/// what `Code::ALL` says.
pub const HELP_TABLE: &str = "\
Exit codes (the same in all three binaries):
   0  SUCCESS             done
   1  GENERAL_ERROR       anything not below, and usage errors
   2  LOCK_TIMEOUT        a lock was not acquired within its timeout
   3  STATE_CORRUPTION    a state, backup or checkpoint does not parse or fails its checksum
   4  VALIDATION_FAILED   input or document breaks the schema or a rule
   5  DEPENDENCY_MISSING  something the operation needs is absent
   6  PERMISSION_DENIED   access refused, refused symlink, or not the lock owner
   7  DISK_FULL           no space left on the device or quota exceeded
   8  NETWORK_ERROR       reserved for network backends
   9  TIMEOUT             an overall deadline passed
  10  RESOURCE_EXHAUSTED  out of file descriptors or memory, or input over the size limit";

impl Code {
    /// The exit-code table generated from [`Code::ALL`]: what
    /// [`HELP_TABLE`] must say.
    pub fn help_table() -> String {
        let mut out = String::from("Exit codes (the same in all three binaries):");
        for c in Code::ALL {
            out.push_str(&format!(
                "\n{:>4}  {:<18}  {}",
                c.as_i32(),
                c.name(),
                c.meaning()
            ));
        }
        out
    }
}

impl From<Code> for std::process::ExitCode {
    fn from(code: Code) -> Self {
        std::process::ExitCode::from(code as u8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_dense_and_round_trip() {
        for (i, code) in Code::ALL.iter().enumerate() {
            assert_eq!(code.as_i32(), i as i32);
            assert_eq!(Code::from_i32(i as i32), Some(*code));
        }
        assert_eq!(Code::from_i32(11), None);
        assert_eq!(Code::from_i32(-1), None);
    }

    #[test]
    fn the_help_table_is_the_one_code_all_describes() {
        assert_eq!(HELP_TABLE, Code::help_table());
    }

    #[test]
    fn names_are_unique() {
        let mut names: Vec<_> = Code::ALL.iter().map(|c| c.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Code::ALL.len());
    }
}
