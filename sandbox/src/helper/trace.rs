//! What libcontainer says when it fails, kept for the error that reaches
//! containerd. Compiled only with the `helper` feature.
//!
//! libcontainer reports a failure inside the container's processes (a
//! mount, a path, an errno) only through `tracing`, and hands its caller a
//! generic "failed to prepare rootfs". The helper records libcontainer's
//! errors, from the helper and from every process it forks,
//! in an anonymous file, and adds them to the error it answers with.

use std::fmt::Write as _;
use std::fs::File;
use std::io::Write as _;
use std::os::unix::fs::FileExt;
use std::sync::OnceLock;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// At most this much of what was recorded is added to an error.
const MAX_DETAIL: usize = 2048;

/// The record, written by every process the helper forks (they share its
/// offset) and read back by the helper.
static RECORD: OnceLock<File> = OnceLock::new();

/// Starts recording. Call once, before anything forks.
pub(crate) fn install() {
    let Ok(fd) = nix::sys::memfd::memfd_create(
        c"berth-helper-trace",
        nix::sys::memfd::MFdFlags::MFD_CLOEXEC,
    ) else {
        return;
    };
    let file = File::from(fd);
    let Ok(writer) = file.try_clone() else {
        return;
    };
    if RECORD.set(file).is_ok() {
        let _ = tracing::subscriber::set_global_default(Recorder { file: writer });
    }
}

/// What libcontainer failed at since the helper started, one
/// line each, repeated lines once; empty if nothing.
pub(crate) fn recorded() -> String {
    let Some(file) = RECORD.get() else {
        return String::new();
    };
    let mut data = vec![0u8; 64 << 10];
    // Read at an offset: the shared file offset stays where writers are.
    let n = file.read_at(&mut data, 0).unwrap_or(0);
    data.truncate(n);
    let text = String::from_utf8_lossy(&data);
    let mut lines: Vec<&str> = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if !lines.contains(&line) {
            lines.push(line);
        }
    }
    let mut detail = lines.join("; ");
    if detail.len() > MAX_DETAIL {
        let mut cut = detail.len() - MAX_DETAIL;
        while !detail.is_char_boundary(cut) {
            cut += 1;
        }
        detail = format!("...{}", &detail[cut..]);
    }
    detail
}

/// A `tracing` subscriber that writes errors, one line each.
struct Recorder {
    file: File,
}

impl Subscriber for Recorder {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        // Warnings are of what a host lacks (a v1 controller, say), not of
        // why a request failed.
        *metadata.level() == Level::ERROR
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut line = Line::default();
        event.record(&mut line);
        let mut text = line.message;
        if !line.fields.is_empty() {
            let _ = write!(text, " ({})", line.fields.trim_start());
        }
        text.retain(|c| c != '\n');
        text.push('\n');
        let _ = (&self.file).write_all(text.as_bytes());
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

/// One event's message and fields, as text.
#[derive(Default)]
struct Line {
    message: String,
    fields: String,
}

impl Visit for Line {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_recorded_once_each_and_warnings_are_not() {
        install();
        tracing::debug!("chatter");
        tracing::error!(path = "/x", "failed to mount");
        tracing::error!(path = "/x", "failed to mount");
        tracing::warn!("a controller this host lacks");
        tracing::error!(errno = ?nix::errno::Errno::ENOENT, "no such thing");
        assert_eq!(
            recorded(),
            "failed to mount (path=/x); no such thing (errno=ENOENT)"
        );
    }
}
