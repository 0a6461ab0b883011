//! The crate's error type: one enum per concern, joined here.
//!
//! Leaf variants carry the path, pid or id they are about; the message never
//! repeats its source, because callers print the whole chain.

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

    /// A cgroup could not be created, joined or removed.
    #[error("cgroup {path}: {op}")]
    Cgroup {
        op: &'static str,
        path: String,
        #[source]
        source: cgroups_rs::fs::error::Error,
    },

    /// The helper process failed; its structured error is carried over.
    #[error(transparent)]
    Helper(#[from] crate::helper::HelperError),

    /// The OCI engine (libcontainer) failed.
    #[cfg(feature = "helper")]
    #[error("{op} container {id}")]
    Engine {
        op: &'static str,
        id: String,
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
            source: Box::new(source),
        }
    }

    pub(crate) fn not_found(what: impl Into<String>) -> Self {
        Error::NotFound(what.into())
    }

    pub(crate) fn sys(op: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let op = op.into();
        move |source| Error::Sys { op, source }
    }

    /// The class of failure, as the shim reports it to containerd.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidArgument { .. } => ErrorKind::InvalidArgument,
            Error::Unsupported { .. } => ErrorKind::Unimplemented,
            Error::Helper(e) => e.kind,
            #[cfg(feature = "helper")]
            Error::Engine { source, .. } => crate::engine::engine_kind(source),
            Error::NotFound(_) => ErrorKind::NotFound,
            Error::Io { source, .. } | Error::Sys { source, .. }
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                ErrorKind::NotFound
            }
            _ => ErrorKind::Internal,
        }
    }
}

/// The classes of failure that cross process and API boundaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ErrorKind {
    InvalidArgument,
    NotFound,
    FailedPrecondition,
    Unimplemented,
    Internal,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
