//! The helper refuses a caller of another protocol version, and answers a
//! request it cannot read with a structured error. No root needed.

#![cfg(feature = "helper")]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use berth_sandbox::helper::protocol::{ContainerRef, Request, Response, HELPER_ARG, PROTOCOL};
use berth_sandbox::helper::Helper;
use berth_sandbox::ErrorKind;

const HELPER: &str = env!("CARGO_BIN_EXE_berth-sandbox-helper");

/// Runs the helper binary with `args`, feeds it `input`, parses its answer.
fn answer(args: &[&str], input: &[u8]) -> Response {
    let mut child = Command::new(HELPER)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the helper answers, then exits 0");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A request to start container `c` of an engine root with nothing in it.
fn start(engine_root: &Path) -> Request {
    Request::StartContainer(ContainerRef {
        id: "c".into(),
        engine_root: engine_root.to_owned(),
    })
}

fn a_request() -> Vec<u8> {
    serde_json::to_vec(&start(Path::new("/nonexistent/berth-engine-root"))).unwrap()
}

#[test]
fn a_caller_of_another_protocol_is_refused() {
    let Response::Error(e) = answer(&[HELPER_ARG, "0"], &a_request()) else {
        panic!("an answer other than an error");
    };
    assert_eq!(e.kind, ErrorKind::FailedPrecondition);
    assert!(e.message.contains("protocol"), "{}", e.message);
}

#[test]
fn an_unreadable_request_is_an_invalid_argument() {
    let Response::Error(e) = answer(&[HELPER_ARG, PROTOCOL], b"{not json") else {
        panic!("an answer other than an error");
    };
    assert_eq!(e.kind, ErrorKind::InvalidArgument);
}

#[test]
fn an_opened_helper_is_run_through_its_descriptor_and_named_by_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("berth-sandbox-helper");
    std::fs::copy(HELPER, &copy).unwrap();
    let helper = Helper::open(&copy, true).unwrap();
    // The file goes; the opened helper still runs.
    std::fs::remove_file(&copy).unwrap();
    let err = helper.call(&start(&dir.path().join("engine"))).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");

    let missing = Helper::open(dir.path().join("absent"), true).unwrap_err();
    assert!(missing.to_string().contains("absent"), "{missing}");
}

#[test]
fn a_helper_that_cannot_run_is_an_internal_error_naming_its_path() {
    let helper = Helper::new("/nonexistent/berth-sandbox-helper", true);
    let err = helper.call(&start(Path::new("/nonexistent"))).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Internal);
    assert!(
        err.to_string()
            .contains("/nonexistent/berth-sandbox-helper"),
        "{err}"
    );
}
