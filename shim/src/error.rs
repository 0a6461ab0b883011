//! The shim's error type and its one mapping to ttrpc status codes.

use std::path::PathBuf;

use berth_proto::ttrpc::{self, Code};
use berth_sandbox::ErrorKind;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    Unimplemented(String),
    #[error("{0}")]
    Unavailable(String),
    /// A file the shim opens, binds or reads for a task (a FIFO, a log
    /// file, a console socket) failed; its code follows the errno.
    #[error("{op} {}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Sandbox(#[from] berth_sandbox::Error),
    #[error("{0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An I/O failure of `op` on `path`.
    pub fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Error::Io { op, path, source }
    }

    pub(crate) fn code(&self) -> Code {
        match self {
            Error::NotFound(_) => Code::NOT_FOUND,
            Error::AlreadyExists(_) => Code::ALREADY_EXISTS,
            Error::FailedPrecondition(_) => Code::FAILED_PRECONDITION,
            Error::InvalidArgument(_) => Code::INVALID_ARGUMENT,
            Error::Unimplemented(_) => Code::UNIMPLEMENTED,
            Error::Unavailable(_) => Code::UNAVAILABLE,
            Error::Io { source, .. } => match source.kind() {
                std::io::ErrorKind::NotFound => Code::NOT_FOUND,
                std::io::ErrorKind::PermissionDenied => Code::PERMISSION_DENIED,
                _ => Code::INTERNAL,
            },
            Error::Sandbox(e) => match e.kind() {
                ErrorKind::InvalidArgument => Code::INVALID_ARGUMENT,
                ErrorKind::NotFound => Code::NOT_FOUND,
                ErrorKind::PermissionDenied => Code::PERMISSION_DENIED,
                ErrorKind::FailedPrecondition => Code::FAILED_PRECONDITION,
                ErrorKind::Unimplemented => Code::UNIMPLEMENTED,
                ErrorKind::DeadlineExceeded => Code::DEADLINE_EXCEEDED,
                ErrorKind::Internal => Code::INTERNAL,
            },
            Error::Internal(_) => Code::INTERNAL,
        }
    }
}

impl From<Error> for ttrpc::Error {
    fn from(e: Error) -> Self {
        let message = berth_sandbox::error_chain(&e);
        ttrpc::Error::RpcStatus(ttrpc::get_status(e.code(), message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(e: Error) -> (Code, String) {
        match ttrpc::Error::from(e) {
            ttrpc::Error::RpcStatus(s) => (s.code(), s.message().to_owned()),
            other => panic!("not a status: {other:?}"),
        }
    }

    #[test]
    fn maps_each_class_to_its_code() {
        assert_eq!(status(Error::NotFound("task x".into())).0, Code::NOT_FOUND);
        assert_eq!(
            status(Error::AlreadyExists("task x".into())).0,
            Code::ALREADY_EXISTS
        );
        assert_eq!(
            status(Error::FailedPrecondition("x".into())).0,
            Code::FAILED_PRECONDITION
        );
        assert_eq!(
            status(Error::InvalidArgument("x".into())).0,
            Code::INVALID_ARGUMENT
        );
        assert_eq!(status(Error::Unavailable("x".into())).0, Code::UNAVAILABLE);
        assert_eq!(
            status(Error::Unimplemented("x".into())).0,
            Code::UNIMPLEMENTED
        );
        assert_eq!(status(Error::Internal("x".into())).0, Code::INTERNAL);
    }

    fn io(errno: i32) -> Error {
        Error::io("open", "/run/fifo/stdout")(std::io::Error::from_raw_os_error(errno))
    }

    #[test]
    fn io_errors_take_their_code_from_the_errno() {
        let (code, message) = status(io(libc::ENOENT));
        assert_eq!(code, Code::NOT_FOUND);
        assert!(
            message.starts_with("open /run/fifo/stdout: "),
            "names the operation and the path: {message}"
        );
        assert_eq!(status(io(libc::EACCES)).0, Code::PERMISSION_DENIED);
        assert_eq!(status(io(libc::EPERM)).0, Code::PERMISSION_DENIED);
        assert_eq!(status(io(libc::EIO)).0, Code::INTERNAL);
        assert_eq!(status(io(libc::ENOSPC)).0, Code::INTERNAL);
    }

    #[test]
    fn sandbox_errors_keep_their_class_and_field() {
        let spec = berth_sandbox::spec::parse(br#"{"ociVersion": 1}"#).unwrap_err();
        let (code, message) = status(spec.into());
        assert_eq!(code, Code::INVALID_ARGUMENT);
        assert!(message.contains("spec.ociVersion"), "{message}");
        let sandbox_io = |errno| berth_sandbox::Error::Io {
            op: "read",
            path: "/x".into(),
            source: std::io::Error::from_raw_os_error(errno),
        };
        let (code, message) = status(sandbox_io(libc::ENOENT).into());
        assert_eq!(code, Code::NOT_FOUND);
        assert!(message.starts_with("read /x: "), "{message}");
        assert_eq!(
            status(sandbox_io(libc::EACCES).into()).0,
            Code::PERMISSION_DENIED
        );
        let helper = berth_sandbox::error::HelperError {
            kind: ErrorKind::FailedPrecondition,
            message: "container c1 is not created".into(),
        };
        let (code, message) = status(berth_sandbox::Error::from(helper).into());
        assert_eq!(code, Code::FAILED_PRECONDITION);
        assert_eq!(message, "container c1 is not created");
        let unsupported = berth_sandbox::spec::SandboxConfig::from_spec(
            &berth_sandbox::spec::parse(
                br#"{"ociVersion": "1.0.2", "linux": {"namespaces": [{"type": "user"}]}}"#,
            )
            .unwrap(),
        )
        .unwrap_err();
        assert_eq!(status(unsupported.into()).0, Code::UNIMPLEMENTED);
    }

    #[test]
    fn not_found_names_the_thing() {
        assert_eq!(
            status(Error::NotFound("task abc".into())).1,
            "task abc not found"
        );
    }
}
