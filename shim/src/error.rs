//! The shim's error type and its one mapping to ttrpc status codes.

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
    #[error(transparent)]
    Sandbox(#[from] berth_sandbox::Error),
    #[error("{0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    fn code(&self) -> Code {
        match self {
            Error::NotFound(_) => Code::NOT_FOUND,
            Error::AlreadyExists(_) => Code::ALREADY_EXISTS,
            Error::FailedPrecondition(_) => Code::FAILED_PRECONDITION,
            Error::InvalidArgument(_) => Code::INVALID_ARGUMENT,
            Error::Unimplemented(_) => Code::UNIMPLEMENTED,
            Error::Unavailable(_) => Code::UNAVAILABLE,
            Error::Sandbox(e) => match e.kind() {
                ErrorKind::InvalidArgument => Code::INVALID_ARGUMENT,
                ErrorKind::NotFound => Code::NOT_FOUND,
                ErrorKind::FailedPrecondition => Code::FAILED_PRECONDITION,
                ErrorKind::Unimplemented => Code::UNIMPLEMENTED,
                ErrorKind::Internal => Code::INTERNAL,
            },
            Error::Internal(_) => Code::INTERNAL,
        }
    }
}

impl From<Error> for ttrpc::Error {
    fn from(e: Error) -> Self {
        let message = berth_sandbox::helper::error_chain(&e);
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

    #[test]
    fn sandbox_errors_keep_their_class_and_field() {
        let spec = berth_sandbox::spec::parse(br#"{"ociVersion": 1}"#).unwrap_err();
        let (code, message) = status(spec.into());
        assert_eq!(code, Code::INVALID_ARGUMENT);
        assert!(message.contains("spec.ociVersion"), "{message}");
        let io = berth_sandbox::Error::Io {
            op: "read",
            path: "/x".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        let (code, message) = status(io.into());
        assert_eq!(code, Code::NOT_FOUND);
        assert!(message.starts_with("read /x: "), "{message}");
    }

    #[test]
    fn not_found_names_the_thing() {
        assert_eq!(
            status(Error::NotFound("task abc".into())).1,
            "task abc not found"
        );
    }
}
