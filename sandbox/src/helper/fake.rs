//! A stand-in for `berth-sandbox-helper` in tests: a small program that
//! records every request it is sent and answers each kind of request as the
//! test told it to, so that the callers' rollback paths run without root.
//!
//! Compiled for this crate's tests and, with the `testing` feature, for
//! other crates' tests.

use std::path::{Path, PathBuf};

use crate::error::{ErrorKind, HelperError};
use crate::helper::protocol::{Request, Response};
use crate::helper::Helper;

/// A fake helper living in a directory of the test's.
#[derive(Debug)]
pub struct FakeHelper {
    dir: PathBuf,
}

impl FakeHelper {
    /// Installs the fake in `dir`, which must exist and be empty of its
    /// files. Every request is answered `done` until told otherwise.
    pub fn new(dir: &Path) -> FakeHelper {
        let fake = FakeHelper {
            dir: dir.to_owned(),
        };
        std::fs::create_dir_all(fake.dir.join("requests")).expect("fake helper: requests dir");
        std::fs::create_dir_all(fake.dir.join("answers")).expect("fake helper: answers dir");
        std::fs::create_dir_all(fake.dir.join("hooks")).expect("fake helper: hooks dir");
        // The request's first key is its kind: {"create_container":{...}}.
        let script = format!(
            "#!/bin/sh\n\
             d='{}'\n\
             n=$(ls \"$d/requests\" | wc -l)\n\
             req=\"$d/requests/$(printf %04d $((n + 1))).json\"\n\
             cat > \"$req\"\n\
             kind=$(sed -n 's/^{{\"\\([a-z_]*\\)\".*/\\1/p' \"$req\")\n\
             if [ -f \"$d/hooks/$kind.sh\" ]; then sh \"$d/hooks/$kind.sh\" >&2; fi\n\
             if [ -f \"$d/answers/$kind.json\" ]; then cat \"$d/answers/$kind.json\"; \
             else printf '\"done\"'; fi\n",
            fake.dir.display()
        );
        let program = fake.program();
        std::fs::write(&program, script).expect("fake helper: write the script");
        std::fs::set_permissions(
            &program,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("fake helper: make it executable");
        fake
    }

    fn program(&self) -> PathBuf {
        self.dir.join("fake-helper")
    }

    /// A helper client that runs the fake and reaps it.
    pub fn helper(&self) -> Helper {
        Helper::new(self.program(), true)
    }

    /// From now on, requests of `kind` (`create_container`, `spawn_pause`,
    /// ...: the request's name in the protocol) get `answer`.
    pub fn answer(&self, kind: &str, answer: &Response) {
        let json = serde_json::to_vec(answer).expect("answers serialize");
        std::fs::write(self.dir.join("answers").join(format!("{kind}.json")), json)
            .expect("fake helper: write an answer");
    }

    /// From now on, requests of `kind` fail with `class` and `message`, as
    /// the real helper reports an error.
    pub fn refuse(&self, kind: &str, class: ErrorKind, message: &str) {
        let error = HelperError {
            kind: class,
            message: message.into(),
        };
        self.answer(kind, &Response::Error(error));
    }

    /// From now on, requests of `kind` answer that they made process `pid`.
    pub fn create(&self, kind: &str, pid: i32, start_time: u64) {
        let made = if kind == "spawn_pause" {
            Response::Pause { pid, start_time }
        } else {
            Response::Created { pid, start_time }
        };
        self.answer(kind, &made);
    }

    /// From now on, before it answers a request of `kind`, the fake runs
    /// `script` with `sh`: what the real helper would also do to the world.
    pub fn on(&self, kind: &str, script: &str) {
        std::fs::write(self.dir.join("hooks").join(format!("{kind}.sh")), script)
            .expect("fake helper: write a hook");
    }

    /// Every request the fake was sent, in order.
    pub fn requests(&self) -> Vec<Request> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.join("requests"))
            .expect("fake helper: read its requests")
            .map(|e| e.expect("fake helper: a request").path())
            .collect();
        files.sort();
        files
            .iter()
            .map(|f| {
                let data = std::fs::read(f).expect("fake helper: read a request");
                serde_json::from_slice(&data).expect("fake helper: a request it was sent")
            })
            .collect()
    }

    /// The kind of every request the fake was sent, in order.
    pub fn kinds(&self) -> Vec<String> {
        self.requests()
            .iter()
            .map(|r| {
                let json = serde_json::to_value(r).expect("requests serialize");
                json.as_object()
                    .and_then(|o| o.keys().next().cloned())
                    .expect("a request is an object of one key")
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::helper::protocol::ContainerRef;

    #[test]
    fn the_fake_records_requests_and_answers_as_told() {
        let dir = tempfile::tempdir().unwrap();
        let fake = FakeHelper::new(dir.path());
        let c = ContainerRef {
            id: "c1".into(),
            engine_root: "/e".into(),
        };
        fake.helper().start_container(&c).unwrap();
        fake.refuse(
            "delete_container",
            ErrorKind::FailedPrecondition,
            "still running",
        );
        let err = fake.helper().delete_container(&c).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::FailedPrecondition);
        assert_eq!(err.to_string(), "still running");
        assert_eq!(fake.kinds(), ["start_container", "delete_container"]);
        assert!(matches!(&fake.requests()[1], Request::DeleteContainer(r) if *r == c));
    }
}
