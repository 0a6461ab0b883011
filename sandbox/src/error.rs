//! The crate's error type.
//!
//! One enum for the whole crate: its variants are the kinds of thing that
//! fail (a spec, a file, a system call, a cgroup, the helper, the OCI
//! engine), not the modules they fail in, because every module meets most
//! of them. Leaf variants carry the path, pid or id they are about; the
//! message never repeats its source, because callers print the whole chain
//! ([`error_chain`]). This module depends on nothing else in the crate.

use std::path::PathBuf;

/// What went wrong, in the terms the shim maps to ttrpc codes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The OCI spec, or a request built from it, is not acceptable.
    #[error("invalid {field}: {reason}")]
    InvalidArgument { field: String, reason: String },

    /// The spec asks for something berth does not support yet.
    #[error("{field}: {reason}")]
    Unsupported { field: String, reason: String },

    /// The request is sound but the state of the host or the container
    /// does not allow it now.
    #[error("{what}: {reason}")]
    FailedPrecondition { what: String, reason: String },

    /// Reading or writing a file failed.
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A system call failed.
    #[error("{op}")]
    Sys {
        op: String,
        #[source]
        source: std::io::Error,
    },

    /// A cgroup could not be created, joined, read, changed or removed.
    #[error("cgroup {path}: {op}")]
    Cgroup {
        op: &'static str,
        path: String,
        #[source]
        source: cgroups_rs::fs::error::Error,
    },

    /// The helper process failed; its structured error is carried over.
    #[error(transparent)]
    Helper(#[from] HelperError),

    /// The OCI engine (libcontainer) failed.
    #[cfg(feature = "helper")]
    #[error("{op} container {id}{}", if logged.is_empty() { String::new() } else { format!(" (libcontainer logged: {logged})") })]
    Engine {
        op: &'static str,
        id: String,
        /// What libcontainer's processes logged as they failed: the
        /// mount, path or errno its own error leaves out.
        logged: String,
        #[source]
        source: Box<libcontainer::error::LibcontainerError>,
    },

    /// A cgroup did not freeze in time; it was thawed again if `thawed`.
    #[error("freeze {}: not frozen within {timeout:?}; {}", path.display(), if *thawed { "thawed again" } else { "and thawing it failed" })]
    FreezeTimeout {
        path: PathBuf,
        timeout: std::time::Duration,
        thawed: bool,
    },

    /// What was asked for does not exist.
    #[error("{0} not found")]
    NotFound(String),

    /// State on disk is unreadable.
    #[error("state file {path}")]
    State {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

impl Error {
    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Error::Io { op, path, source }
    }

    #[cfg(feature = "helper")]
    pub(crate) fn engine(
        op: &'static str,
        id: &str,
    ) -> impl FnOnce(libcontainer::error::LibcontainerError) -> Self {
        let id = id.to_owned();
        move |source| Error::Engine {
            op,
            id,
            logged: String::new(),
            source: Box::new(source),
        }
    }

    /// Adds what libcontainer logged to an engine failure.
    #[cfg(feature = "helper")]
    pub(crate) fn with_logged(mut self, text: String) -> Self {
        if let Error::Engine { logged, .. } = &mut self {
            *logged = text;
        }
        self
    }

    pub(crate) fn not_found(what: impl Into<String>) -> Self {
        Error::NotFound(what.into())
    }

    pub(crate) fn sys(op: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let op = op.into();
        move |source| Error::Sys { op, source }
    }

    /// A system call's failure, from nix's errno.
    #[cfg(feature = "helper")]
    pub(crate) fn errno(op: impl Into<String>) -> impl FnOnce(nix::errno::Errno) -> Self {
        let op = op.into();
        move |errno| Error::Sys {
            op,
            source: errno.into(),
        }
    }

    /// The class of failure, as the shim reports it to containerd.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidArgument { .. } => ErrorKind::InvalidArgument,
            Error::Unsupported { .. } => ErrorKind::Unimplemented,
            Error::FailedPrecondition { .. } => ErrorKind::FailedPrecondition,
            Error::Helper(e) => e.kind,
            #[cfg(feature = "helper")]
            Error::Engine { source, .. } => engine_kind(source),
            Error::NotFound(_) => ErrorKind::NotFound,
            Error::Io { source, .. } | Error::Sys { source, .. } => match source.kind() {
                std::io::ErrorKind::NotFound => ErrorKind::NotFound,
                std::io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
                _ => ErrorKind::Internal,
            },
            _ => ErrorKind::Internal,
        }
    }
}

/// The error class of a libcontainer failure.
#[cfg(feature = "helper")]
fn engine_kind(e: &libcontainer::error::LibcontainerError) -> ErrorKind {
    use libcontainer::error::LibcontainerError;
    match e {
        LibcontainerError::InvalidID(_)
        | LibcontainerError::MissingSpec(_)
        | LibcontainerError::InvalidSpec(_)
        | LibcontainerError::InvalidInput(_)
        | LibcontainerError::Spec(_) => ErrorKind::InvalidArgument,
        LibcontainerError::IncorrectStatus(_) | LibcontainerError::Exist => {
            ErrorKind::FailedPrecondition
        }
        _ => ErrorKind::Internal,
    }
}

/// The classes of failure that cross process and API boundaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ErrorKind {
    InvalidArgument,
    NotFound,
    /// A file or call the caller may not use (EACCES, EPERM).
    PermissionDenied,
    FailedPrecondition,
    Unimplemented,
    /// A helper hung and was killed.
    DeadlineExceeded,
    Internal,
}

/// An error as it crosses the helper's pipe: its class and its whole chain
/// as text.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct HelperError {
    pub kind: ErrorKind,
    pub message: String,
}

impl HelperError {
    /// An internal failure of running the helper itself.
    pub(crate) fn internal(message: impl Into<String>) -> Self {
        HelperError {
            kind: ErrorKind::Internal,
            message: message.into(),
        }
    }
}

impl From<&Error> for HelperError {
    fn from(e: &Error) -> Self {
        HelperError {
            kind: e.kind(),
            message: error_chain(e),
        }
    }
}

/// Formats an error with all its sources, for a message that crosses a pipe
/// or reaches a log line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn io(kind: std::io::ErrorKind) -> Error {
        Error::Io {
            op: "open",
            path: "/x".into(),
            source: std::io::Error::from(kind),
        }
    }

    #[test]
    fn file_errors_keep_their_class() {
        assert_eq!(io(std::io::ErrorKind::NotFound).kind(), ErrorKind::NotFound);
        assert_eq!(
            Error::Sys {
                op: "mount".into(),
                source: std::io::Error::from_raw_os_error(libc::EPERM),
            }
            .kind(),
            ErrorKind::PermissionDenied
        );
        assert_eq!(
            Error::Io {
                op: "open",
                path: "/x".into(),
                source: std::io::Error::from_raw_os_error(libc::EACCES),
            }
            .kind(),
            ErrorKind::PermissionDenied
        );
        assert_eq!(io(std::io::ErrorKind::Other).kind(), ErrorKind::Internal);
    }

    #[test]
    fn the_chain_names_every_source_once() {
        let e = io(std::io::ErrorKind::NotFound);
        assert_eq!(error_chain(&e), "open /x: entity not found");
        let carried = HelperError::from(&e);
        assert_eq!(carried.kind, ErrorKind::NotFound);
        assert_eq!(
            Error::from(carried).to_string(),
            "open /x: entity not found"
        );
    }
}
