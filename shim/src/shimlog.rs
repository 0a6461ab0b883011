//! The serving shim's own log. containerd opens a FIFO named `log` in the
//! bundle before it starts the shim and copies whatever comes out of it
//! into its own log, line by line. Each record here is one logfmt line in
//! one write (so records of several shims never interleave), shaped as
//! containerd's Go shims write theirs:
//!
//! `time="…" level=info msg="…" runtime=io.containerd.berth.v2 namespace=k8s.io pod=<id> container=<id>`
//!
//! Every record names the runtime, the namespace and the pod the shim
//! serves; a record about one container, or one exec, names it as well
//! (`log::info!(container = id; "…")`, `exec = exec_id`; an empty one is
//! left out).
//!
//! The level is the runtime options' `LogLevel` when they set one;
//! otherwise debug when containerd runs with `-debug`, else info.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::Path;
use std::sync::Mutex;
use std::time::SystemTime;

use log::kv::{self, VisitSource};
use log::{LevelFilter, Log, Metadata, Record};

use crate::info::RUNTIME_NAME;

/// Where `start` hands the options' `LogLevel` to the serving shim.
pub const LEVEL_ENV: &str = "BERTH_LOG_LEVEL";

/// The level records are kept from: `option` (the runtime options'
/// `LogLevel`) when set, else debug under containerd's `-debug`, else info.
pub fn level(debug: bool, option: Option<LevelFilter>) -> LevelFilter {
    match option {
        Some(level) => level,
        None if debug => LevelFilter::Debug,
        None => LevelFilter::Info,
    }
}

/// Reads a `LogLevel` value: one of `error`, `warn` (or containerd's
/// `warning`), `info`, `debug`, `trace` or `off`, in any case.
pub fn parse_level(text: &str) -> Option<LevelFilter> {
    if text.eq_ignore_ascii_case("warning") {
        return Some(LevelFilter::Warn);
    }
    text.parse().ok()
}

/// The log of a shim serving pod `pod` in containerd namespace `namespace`.
pub struct ShimLog {
    out: Mutex<File>,
    /// ` runtime=… namespace=… pod=…`, the same on every record.
    fields: String,
}

impl ShimLog {
    pub fn new(out: File, namespace: &str, pod: &str) -> Self {
        let mut fields = String::new();
        for (key, value) in [
            ("runtime", RUNTIME_NAME),
            ("namespace", namespace),
            ("pod", pod),
        ] {
            push_field(&mut fields, key, value);
        }
        ShimLog {
            out: Mutex::new(out),
            fields,
        }
    }

    /// The whole line `record` is written as, at `now`.
    fn line(&self, record: &Record, now: SystemTime) -> String {
        let mut line = format!(
            "time=\"{}\" level={} msg={}{}",
            rfc3339(now),
            level_name(record.level()),
            quoted(&record.args().to_string()),
            self.fields
        );
        let mut pairs = Pairs(&mut line);
        let _ = record.key_values().visit(&mut pairs);
        line.push('\n');
        line
    }
}

impl Log for ShimLog {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = self.line(record, SystemTime::now());
        // A thread that panicked while writing leaves nothing half done
        // that the next record could not follow.
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        // containerd gone (EPIPE, SIGPIPE is ignored) loses the record, no more.
        let _ = out.write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

/// Logs to the `log` FIFO in `bundle` from now on, at `level`.
pub fn init(bundle: &Path, level: LevelFilter, namespace: &str, pod: &str) -> std::io::Result<()> {
    let fifo = bundle.join("log");
    let out = OpenOptions::new().write(true).open(&fifo)?;
    log::set_boxed_logger(Box::new(ShimLog::new(out, namespace, pod)))
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    log::set_max_level(level);
    Ok(())
}

/// The level's name as logrus, and so containerd's own log, spells it.
fn level_name(level: log::Level) -> &'static str {
    match level {
        log::Level::Error => "error",
        log::Level::Warn => "warning",
        log::Level::Info => "info",
        log::Level::Debug => "debug",
        log::Level::Trace => "trace",
    }
}

struct Pairs<'a>(&'a mut String);

impl<'kvs> VisitSource<'kvs> for Pairs<'_> {
    fn visit_pair(&mut self, key: kv::Key<'kvs>, value: kv::Value<'kvs>) -> Result<(), kv::Error> {
        // An init's `exec` is empty: the record is about the container.
        let value = value.to_string();
        if !value.is_empty() {
            push_field(self.0, key.as_str(), &value);
        }
        Ok(())
    }
}

/// ` key=value`, the value quoted unless it is one plain word.
fn push_field(out: &mut String, key: &str, value: &str) {
    let plain = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-/:@+".contains(&b));
    if plain {
        let _ = write!(out, " {key}={value}");
    } else {
        let _ = write!(out, " {key}={}", quoted(value));
    }
}

/// `text` as a double-quoted string with JSON's escapes: a quote or a
/// newline in a message can neither end its field nor start a record.
fn quoted(text: &str) -> String {
    serde_json::to_string(text).expect("a string always serializes")
}

/// `at` in UTC as RFC 3339 with nanoseconds, `2026-12-03T20:30:00.000000001Z`.
fn rfc3339(at: SystemTime) -> String {
    let since = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60,
        since.subsec_nanos()
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01, counted in
/// 400-year eras of 146 097 days that start on a 1 March.
fn civil(days: i64) -> (i64, u32, u32) {
    let shifted = days + 719_468; // days from 0000-03-01
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    // Months from March: 0 is March, 11 is February.
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::time::Duration;

    use super::*;

    fn at(secs: u64, nanos: u32) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::new(secs, nanos)
    }

    #[test]
    fn times_are_utc_rfc3339_with_nanoseconds() {
        for (secs, nanos, text) in [
            (0, 0, "1970-01-01T00:00:00.000000000Z"),
            // A leap day, and the day after it.
            (951_782_400, 5, "2000-02-29T00:00:00.000000005Z"),
            (951_868_800, 0, "2000-03-01T00:00:00.000000000Z"),
            (1_796_329_800, 123_456_789, "2026-12-03T20:30:00.123456789Z"),
            (4_102_444_799, 0, "2099-12-31T23:59:59.000000000Z"),
        ] {
            assert_eq!(rfc3339(at(secs, nanos)), text);
        }
    }

    #[test]
    fn every_day_follows_the_one_before() {
        let mut last = civil(-1);
        assert_eq!(last, (1969, 12, 31));
        for days in 0..200_000 {
            let (y, m, d) = civil(days);
            let next_day = (y, m, d) == (last.0, last.1, last.2 + 1);
            let next_month = (y, m, d) == (last.0, last.1 + 1, 1);
            let next_year = (y, m, d) == (last.0 + 1, 1, 1) && last.1 == 12 && last.2 == 31;
            assert!(
                next_day || next_month || next_year,
                "{last:?} -> {:?}",
                (y, m, d)
            );
            let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            let feb = if leap { 29 } else { 28 };
            let len = [31, feb, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][m as usize - 1];
            assert!(d <= len, "{:?}", (y, m, d));
            last = (y, m, d);
        }
    }

    fn logged(log: &ShimLog, record: &Record) -> String {
        log.line(record, at(0, 0))
    }

    fn pipe_log(pod: &str) -> (ShimLog, File) {
        let (read, write) = std::io::pipe().unwrap();
        let read = File::from(std::os::fd::OwnedFd::from(read));
        let write = File::from(std::os::fd::OwnedFd::from(write));
        (ShimLog::new(write, "k8s.io", pod), read)
    }

    #[test]
    fn a_record_names_runtime_namespace_pod_and_its_container() {
        let (log, _read) = pipe_log("pod-1");
        let kvs: [(&str, kv::Value); 2] = [
            ("container", kv::Value::from("c1")),
            ("exec", kv::Value::from("probe 1")),
        ];
        let record = Record::builder()
            .level(log::Level::Warn)
            .args(format_args!("started"))
            .key_values(&kvs)
            .build();
        assert_eq!(
            logged(&log, &record),
            "time=\"1970-01-01T00:00:00.000000000Z\" level=warning msg=\"started\" \
             runtime=io.containerd.berth.v2 namespace=k8s.io pod=pod-1 container=c1 \
             exec=\"probe 1\"\n"
        );
    }

    #[test]
    fn a_message_cannot_end_its_field_or_start_a_record() {
        let (log, _read) = pipe_log("p");
        let record = Record::builder()
            .level(log::Level::Info)
            .args(format_args!("a \"b\"\ntime=\"x\" level=error msg=forged"))
            .build();
        let line = logged(&log, &record);
        assert_eq!(line.matches('\n').count(), 1, "{line}");
        assert!(line.ends_with('\n'));
        assert!(
            line.contains(r#"msg="a \"b\"\ntime=\"x\" level=error msg=forged""#),
            "{line}"
        );
    }

    #[test]
    fn each_record_is_one_write_of_one_line() {
        let (log, mut read) = pipe_log("p");
        log::set_max_level(LevelFilter::Trace);
        for n in 0..3 {
            log.log(
                &Record::builder()
                    .level(log::Level::Info)
                    .args(format_args!("record {n}"))
                    .build(),
            );
        }
        drop(log);
        let mut text = String::new();
        read.read_to_string(&mut text).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        for (n, line) in lines.iter().enumerate() {
            assert!(line.contains(&format!("msg=\"record {n}\"")), "{line}");
            assert!(line.ends_with(" pod=p"), "{line}");
        }
    }

    #[test]
    fn the_options_level_wins_over_debug() {
        assert_eq!(level(false, None), LevelFilter::Info);
        assert_eq!(level(true, None), LevelFilter::Debug);
        assert_eq!(level(true, Some(LevelFilter::Warn)), LevelFilter::Warn);
        assert_eq!(level(false, Some(LevelFilter::Trace)), LevelFilter::Trace);
        assert_eq!(parse_level("WARN"), Some(LevelFilter::Warn));
        assert_eq!(parse_level("Warning"), Some(LevelFilter::Warn));
        assert_eq!(parse_level("off"), Some(LevelFilter::Off));
        assert_eq!(parse_level("loud"), None);
    }
}
