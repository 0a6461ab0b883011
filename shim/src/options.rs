//! The runtime options: the `options` table of berth's runtime in
//! containerd's config.
//!
//! For a runtime type other than runc's, containerd's CRI sends that table
//! as a `runtimeoptions.v1.Options` (`type_url = 1`, `config_path = 2`,
//! `config_body = 3`) with the table's TOML in `config_body`, or, when the
//! table sets `ConfigPath`, the path of a TOML file instead (as
//! `ctr run --runtime-config-path` does). It comes on `shim start`'s stdin,
//! in `CreateTaskRequest.options` and on `-info`'s stdin.
//!
//! Keys berth reads (the runc shim's names where it has one):
//!
//! | key | type | meaning |
//! |---|---|---|
//! | `SystemdCgroup` | bool | `slice:prefix:name` cgroup paths are systemd units |
//! | `ShimCgroup` | string | an existing cgroupfs path the shim is moved into at start |
//! | `IoUid`, `IoGid` | integer | owner of the stdio pipes a container gets |
//! | `NoNewKeyring` | bool | containers keep the shim's session keyring |
//! | `StateRoot` | path | berth's state root (else `$BERTH_STATE_ROOT`) |
//! | `PausePath` | path | the berth-pause binary (else `$BERTH_PAUSE`) |
//! | `HelperPath` | path | the helper binary (else `$BERTH_HELPER`) |
//! | `LogLevel` | string | the shim's log level: `error`, `warn` (or `warning`), `info`, `debug`, `trace` or `off` (else debug under containerd's `-debug`, info otherwise) |
//!
//! A key berth does not know is a warning, a known key of the wrong type an
//! invalid argument.

use std::path::{Path, PathBuf};

use berth_proto::protobuf::well_known_types::any::Any;
use berth_proto::protobuf::CodedInputStream;
use serde::{Deserialize, Serialize};

use berth_sandbox::spec::CgroupDriver;

use crate::error::{Error, Result};

/// The message type containerd wraps the options table in.
pub const TYPE_URL: &str = "runtimeoptions.v1.Options";
/// The Go runc shim's options, which containerd 2.x sends with the tasks of
/// a pod the Sandbox API made: the keys they share with berth's table.
pub const RUNC_TYPE_URL: &str = "containerd.runc.v1.Options";
/// A TOML file named by `ConfigPath` larger than this is not an options table.
const MAX_CONFIG_FILE: u64 = 1 << 20;

/// What the runtime options set. The default is what berth does without any.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RuntimeOptions {
    pub systemd_cgroup: bool,
    pub shim_cgroup: Option<String>,
    pub io_uid: u32,
    pub io_gid: u32,
    pub no_new_keyring: bool,
    pub state_root: Option<PathBuf>,
    pub pause_path: Option<PathBuf>,
    pub helper_path: Option<PathBuf>,
    /// Checked when read: a level [`crate::shimlog::parse_level`] reads.
    pub log_level: Option<String>,
}

impl RuntimeOptions {
    /// Fails unless the cgroup driver the options choose is one berth has
    /// on this host.
    pub fn check_cgroup_driver(&self) -> Result<()> {
        self.check_cgroup_driver_with(berth_sandbox::cgroup::systemd::unavailable())
    }

    fn check_cgroup_driver_with(&self, unavailable: Option<String>) -> Result<()> {
        match unavailable {
            Some(why) if self.systemd_cgroup => Err(Error::FailedPrecondition(format!(
                "runtime options: SystemdCgroup = true, but {why}; \
                 set SystemdCgroup = false for the cgroupfs driver"
            ))),
            _ => Ok(()),
        }
    }

    /// Who makes the cgroups of the pod's tasks.
    pub fn cgroup_driver(&self) -> CgroupDriver {
        if self.systemd_cgroup {
            CgroupDriver::Systemd
        } else {
            CgroupDriver::Cgroupfs
        }
    }
}

/// Options as read, with what was wrong but harmless in them.
#[derive(Debug, Default)]
pub struct Read {
    pub options: RuntimeOptions,
    /// One line per key berth ignored.
    pub warnings: Vec<String>,
}

impl Read {
    /// Logs the warnings, each naming `whose` options they were.
    pub fn log_warnings(&self, whose: &str) {
        for warning in &self.warnings {
            log::warn!("{whose}: runtime options: {warning}");
        }
    }
}

/// Reads `containerd.runc.v1.Options`: NoNewKeyring (2), ShimCgroup (3),
/// IoUid (4), IoGid (5) and SystemdCgroup (9); the keys only runc has
/// (its binary, root, CRIU paths) are ignored with a warning.
fn from_runc_options(bytes: &[u8]) -> Result<Read> {
    use crate::wire::Field;
    let mut read = Read::default();
    let options = &mut read.options;
    for field in crate::wire::fields("runtime options (containerd.runc.v1.Options)", bytes)? {
        match field {
            Field::Varint(2, v) => options.no_new_keyring = v != 0,
            Field::Bytes(3, b) => {
                let cgroup = crate::wire::string("runtime options: ShimCgroup", b)?;
                options.shim_cgroup = Some(cgroup).filter(|c| !c.is_empty());
            }
            Field::Varint(4, v) => options.io_uid = id("IoUid", v)?,
            Field::Varint(5, v) => options.io_gid = id("IoGid", v)?,
            Field::Varint(9, v) => options.systemd_cgroup = v != 0,
            Field::Bytes(n, b) if !b.is_empty() => read
                .warnings
                .push(format!("runc's option {n} is not berth's; ignored")),
            Field::Varint(n, v) if v != 0 => read
                .warnings
                .push(format!("runc's option {n} is not berth's; ignored")),
            _ => {}
        }
    }
    Ok(read)
}

fn id(key: &str, value: u64) -> Result<u32> {
    u32::try_from(value)
        .map_err(|_| Error::InvalidArgument(format!("runtime options: {key} {value} is not a uid")))
}

/// Reads the options in `any`. No options at all (an empty Any) are the
/// defaults.
pub fn from_any(any: &Any) -> Result<Read> {
    if any.type_url.is_empty() && any.value.is_empty() {
        return Ok(Read::default());
    }
    // Registered types have no host part, but an Any may carry one.
    let name = any.type_url.rsplit('/').next().unwrap_or_default();
    if name == RUNC_TYPE_URL {
        return from_runc_options(&any.value);
    }
    if name != TYPE_URL {
        return Err(Error::InvalidArgument(format!(
            "runtime options: type {:?} is neither {TYPE_URL} nor {RUNC_TYPE_URL}, the types berth reads",
            any.type_url
        )));
    }
    let (config_path, body) = decode(&any.value)?;
    if !config_path.is_empty() {
        let path = Path::new(&config_path);
        // A relative path would mean a different file to start, to the
        // serving shim and to `-info`, each in its own working directory.
        if !path.is_absolute() {
            return Err(Error::InvalidArgument(format!(
                "runtime options: ConfigPath {config_path:?} is not an absolute path"
            )));
        }
        let mut read = from_file(path)?;
        if !body.is_empty() {
            read.warnings.push(format!(
                "ConfigPath {config_path} is read; the inline table is not"
            ));
        }
        return Ok(read);
    }
    let text = std::str::from_utf8(&body).map_err(|e| {
        Error::InvalidArgument(format!("runtime options: the TOML table is not UTF-8: {e}"))
    })?;
    from_toml(text)
}

/// Reads the options from serialized bytes of an `Any` (as on stdin).
pub fn from_any_bytes(bytes: &[u8]) -> Result<Read> {
    use berth_proto::protobuf::Message;
    if bytes.is_empty() {
        return Ok(Read::default());
    }
    let any = Any::parse_from_bytes(bytes)
        .map_err(|e| Error::InvalidArgument(format!("runtime options: not a protobuf Any: {e}")))?;
    from_any(&any)
}

/// `config_path` and `config_body` of a serialized `runtimeoptions.v1.Options`.
fn decode(bytes: &[u8]) -> Result<(String, Vec<u8>)> {
    let invalid =
        |e: berth_proto::protobuf::Error| Error::InvalidArgument(format!("runtime options: {e}"));
    let mut input = CodedInputStream::from_bytes(bytes);
    let (mut path, mut body) = (String::new(), Vec::new());
    while let Some(tag) = input.read_raw_tag_or_eof().map_err(invalid)? {
        match tag {
            // type_url: what the table is meant for; berth has one meaning.
            10 => drop(input.read_string().map_err(invalid)?),
            18 => path = input.read_string().map_err(invalid)?,
            26 => body = input.read_bytes().map_err(invalid)?,
            other => {
                berth_proto::protobuf::rt::skip_field_for_tag(other, &mut input).map_err(invalid)?
            }
        }
    }
    Ok((path, body))
}

/// Reads the TOML file an options table names with `ConfigPath`.
fn from_file(path: &Path) -> Result<Read> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).map_err(Error::io("open the ConfigPath", path))?;
    let mut text = String::new();
    file.take(MAX_CONFIG_FILE + 1)
        .read_to_string(&mut text)
        .map_err(Error::io("read the ConfigPath", path))?;
    if text.len() as u64 > MAX_CONFIG_FILE {
        return Err(Error::InvalidArgument(format!(
            "runtime options: ConfigPath {}: over {MAX_CONFIG_FILE} bytes",
            path.display()
        )));
    }
    from_toml(&text).map_err(|e| match e {
        Error::InvalidArgument(why) => {
            Error::InvalidArgument(format!("{why} (in ConfigPath {})", path.display()))
        }
        other => other,
    })
}

/// Reads an options table written as TOML.
pub fn from_toml(text: &str) -> Result<Read> {
    let doc: toml_edit::Document<&str> = toml_edit::Document::parse(text).map_err(|e| {
        Error::InvalidArgument(format!("runtime options: not TOML: {}", e.message()))
    })?;
    let mut read = Read::default();
    let o = &mut read.options;
    for (key, item) in doc.as_table().iter() {
        let wrong = |want: &str| {
            Error::InvalidArgument(format!(
                "runtime options: {key} must be {want}, not {}",
                item.type_name()
            ))
        };
        let flag = || item.as_bool().ok_or_else(|| wrong("a boolean"));
        let id = || {
            item.as_integer()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| wrong("an integer from 0 to 4294967295"))
        };
        let text = || item.as_str().ok_or_else(|| wrong("a string"));
        let path = || {
            let p = text()?;
            if !p.starts_with('/') {
                return Err(Error::InvalidArgument(format!(
                    "runtime options: {key} must be an absolute path, not {p:?}"
                )));
            }
            Ok(Some(PathBuf::from(p)))
        };
        match key {
            "SystemdCgroup" => o.systemd_cgroup = flag()?,
            "ShimCgroup" => o.shim_cgroup = Some(text()?.to_owned()).filter(|s| !s.is_empty()),
            "IoUid" => o.io_uid = id()?,
            "IoGid" => o.io_gid = id()?,
            "NoNewKeyring" => o.no_new_keyring = flag()?,
            "StateRoot" => o.state_root = path()?,
            "PausePath" => o.pause_path = path()?,
            "HelperPath" => o.helper_path = path()?,
            "LogLevel" => {
                let level = text()?;
                if crate::shimlog::parse_level(level).is_none() {
                    return Err(Error::InvalidArgument(format!(
                        "runtime options: LogLevel {level:?} is none of error, warn, warning, \
                         info, debug, trace, off"
                    )));
                }
                o.log_level = Some(level.to_owned());
            }
            // containerd's own keys, consumed before the table reaches us.
            "TypeUrl" | "ConfigPath" => {}
            "BinaryName" | "Root" | "CriuPath" | "CriuImagePath" | "CriuWorkPath"
            | "NoPivotRoot" => read
                .warnings
                .push(format!("{key} is a runc setting; berth ignores it")),
            other => read
                .warnings
                .push(format!("unknown key {other:?} is ignored")),
        }
    }
    Ok(read)
}

#[cfg(test)]
mod tests {
    use berth_proto::protobuf::CodedOutputStream;

    use super::*;

    /// A serialized `runtimeoptions.v1.Options`, as containerd sends it.
    fn message(type_url: &str, path: &str, body: &str) -> Vec<u8> {
        let mut bytes = Vec::new();
        let mut out = CodedOutputStream::vec(&mut bytes);
        if !type_url.is_empty() {
            out.write_string(1, type_url).unwrap();
        }
        if !path.is_empty() {
            out.write_string(2, path).unwrap();
        }
        if !body.is_empty() {
            out.write_bytes(3, body.as_bytes()).unwrap();
        }
        out.flush().unwrap();
        drop(out);
        bytes
    }

    #[test]
    fn runc_options_give_the_keys_berth_shares_with_runc() {
        let mut bytes = Vec::new();
        let mut out = CodedOutputStream::vec(&mut bytes);
        out.write_bool(2, true).unwrap();
        out.write_string(3, "/shims").unwrap();
        out.write_uint32(4, 1000).unwrap();
        out.write_uint32(5, 1001).unwrap();
        out.write_string(6, "/usr/bin/runc").unwrap();
        out.write_bool(9, true).unwrap();
        out.flush().unwrap();
        drop(out);
        let read = from_any(&Any {
            type_url: format!("type.googleapis.com/{RUNC_TYPE_URL}"),
            value: bytes,
            ..Default::default()
        })
        .unwrap();
        let o = &read.options;
        assert!(o.no_new_keyring && o.systemd_cgroup);
        assert_eq!(o.shim_cgroup.as_deref(), Some("/shims"));
        assert_eq!((o.io_uid, o.io_gid), (1000, 1001));
        assert_eq!(read.warnings.len(), 1, "{:?}", read.warnings);
        // Empty, as containerd sends it for a handler without options.
        let read = from_any(&Any {
            type_url: RUNC_TYPE_URL.into(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(read.options, RuntimeOptions::default());
    }

    fn any(value: Vec<u8>) -> Any {
        Any {
            type_url: TYPE_URL.into(),
            value,
            ..Default::default()
        }
    }

    fn invalid(result: Result<Read>) -> String {
        match result {
            Err(Error::InvalidArgument(why)) => why,
            other => panic!("not an invalid argument: {other:?}"),
        }
    }

    #[test]
    fn reads_every_key_as_containerd_writes_the_table() {
        // containerd 2.x marshals the table with single-quoted strings.
        let body = "HelperPath = '/opt/berth/helper'\nIoGid = 2000\nIoUid = 1000\n\
                    LogLevel = 'warn'\nNoNewKeyring = true\nPausePath = \"/opt/berth/pause\"\n\
                    ShimCgroup = '/berth-shims'\nStateRoot = '/var/run/berth-x'\n\
                    SystemdCgroup = true\nTypeUrl = 'runtimeoptions.v1.Options'\n";
        let read = from_any(&any(message("", "", body))).unwrap();
        assert!(read.warnings.is_empty(), "{:?}", read.warnings);
        assert_eq!(
            read.options,
            RuntimeOptions {
                systemd_cgroup: true,
                shim_cgroup: Some("/berth-shims".into()),
                io_uid: 1000,
                io_gid: 2000,
                no_new_keyring: true,
                state_root: Some("/var/run/berth-x".into()),
                pause_path: Some("/opt/berth/pause".into()),
                helper_path: Some("/opt/berth/helper".into()),
                log_level: Some("warn".into()),
            }
        );
    }

    /// Every option the packaged drop-in documents, uncommented, is one
    /// berth reads (with the value it shows).
    #[test]
    fn the_drop_in_documents_only_keys_berth_reads() {
        let dropin = include_str!("../dist/berth.toml");
        let options = dropin
            .split_once(".options]")
            .expect("the drop-in has an options table")
            .1;
        let table: String = options
            .lines()
            .filter_map(|l| l.trim().strip_prefix("# "))
            .filter(|l| l.starts_with(|c: char| c.is_ascii_uppercase()) && l.contains(" = "))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(table.matches('\n').count() >= 10, "{table}");
        let read = from_toml(&table).unwrap();
        assert!(read.warnings.is_empty(), "{:?}", read.warnings);
        assert_eq!(read.options.log_level.as_deref(), Some("info"));
    }

    #[test]
    fn a_log_level_berth_does_not_know_is_refused_by_name() {
        let why = invalid(from_toml("LogLevel = 'loud'"));
        assert!(why.contains("LogLevel \"loud\""), "{why}");
        assert!(why.contains("debug"), "{why}");
        let why = invalid(from_toml("LogLevel = 3"));
        assert!(why.contains("LogLevel must be a string"), "{why}");
        for level in ["error", "WARN", "Info", "debug", "trace", "off"] {
            let read = from_toml(&format!("LogLevel = '{level}'")).unwrap();
            assert_eq!(read.options.log_level.as_deref(), Some(level));
        }
    }

    #[test]
    fn no_options_are_the_defaults() {
        let read = from_any(&Any::default()).unwrap();
        assert_eq!(read.options, RuntimeOptions::default());
        assert_eq!(
            from_any_bytes(b"").unwrap().options,
            RuntimeOptions::default()
        );
        assert_eq!(
            from_any(&any(message(TYPE_URL, "", ""))).unwrap().options,
            RuntimeOptions::default()
        );
    }

    #[test]
    fn unknown_and_runc_keys_are_warnings() {
        let read = from_toml(
            "SystemdCgroup = false\nBinaryName = 'crun'\nColour = 'blue'\n[extra]\nx = 1\n",
        )
        .unwrap();
        assert_eq!(read.options, RuntimeOptions::default());
        assert_eq!(read.warnings.len(), 3, "{:?}", read.warnings);
        assert!(read.warnings[0].contains("BinaryName is a runc setting"));
        assert!(read.warnings[1].contains("\"Colour\""));
        assert!(read.warnings[2].contains("\"extra\""));
    }

    #[test]
    fn a_key_of_the_wrong_type_is_named() {
        let why = invalid(from_toml("SystemdCgroup = 'yes'"));
        assert!(
            why.contains("SystemdCgroup must be a boolean, not string"),
            "{why}"
        );
        let why = invalid(from_toml("IoUid = -1"));
        assert!(why.contains("IoUid must be an integer"), "{why}");
        let why = invalid(from_toml("StateRoot = 'relative/dir'"));
        assert!(why.contains("StateRoot must be an absolute path"), "{why}");
        let why = invalid(from_toml("SystemdCgroup = "));
        assert!(why.contains("not TOML"), "{why}");
    }

    #[test]
    fn another_message_type_is_refused_by_name() {
        let mut other = any(message("", "", "SystemdCgroup = true"));
        other.type_url = "io.containerd.kata.v2.Options".into();
        let why = invalid(from_any(&other));
        assert!(why.contains("io.containerd.kata.v2.Options"), "{why}");
        // A host part in the type URL is fine.
        other.type_url = format!("type.googleapis.com/{TYPE_URL}");
        assert!(from_any(&other).unwrap().options.systemd_cgroup);
    }

    #[test]
    fn config_path_names_a_toml_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("berth.toml");
        std::fs::write(&file, "NoNewKeyring = true\n").unwrap();
        let path = file.to_str().unwrap();
        let read = from_any(&any(message("", path, ""))).unwrap();
        assert!(read.options.no_new_keyring);
        assert!(read.warnings.is_empty(), "{:?}", read.warnings);
        let both = from_any(&any(message("", path, "IoUid = 5"))).unwrap();
        assert_eq!(
            both.options.io_uid, 0,
            "the file wins over the inline table"
        );
        assert!(
            both.warnings[0].contains("the inline table is not"),
            "{:?}",
            both.warnings
        );
        let why = invalid(from_any(&any(message("", "berth.toml", ""))));
        assert!(
            why.contains("\"berth.toml\" is not an absolute path"),
            "{why}"
        );
        std::fs::write(&file, "NoNewKeyring = 1\n").unwrap();
        let why = invalid(from_any(&any(message("", path, ""))));
        assert!(why.contains(&format!("in ConfigPath {path}")), "{why}");
        let missing = dir.path().join("missing.toml");
        let err = from_any(&any(message("", missing.to_str().unwrap(), ""))).unwrap_err();
        assert_eq!(err.code(), berth_proto::ttrpc::Code::NOT_FOUND, "{err}");
    }

    #[test]
    fn the_systemd_driver_is_refused_by_what_the_host_lacks() {
        let systemd = RuntimeOptions {
            systemd_cgroup: true,
            ..Default::default()
        };
        let lacks = || Some("this host does not run systemd".to_owned());
        match systemd.check_cgroup_driver_with(lacks()) {
            Err(Error::FailedPrecondition(why)) => {
                assert!(why.contains("does not run systemd"), "{why}");
                assert!(why.contains("SystemdCgroup = false"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        assert!(systemd.check_cgroup_driver_with(None).is_ok());
        assert_eq!(systemd.cgroup_driver(), CgroupDriver::Systemd);
        let cgroupfs = RuntimeOptions::default();
        assert!(cgroupfs.check_cgroup_driver_with(lacks()).is_ok());
        assert_eq!(cgroupfs.cgroup_driver(), CgroupDriver::Cgroupfs);
    }

    #[test]
    fn bytes_that_are_no_any_or_no_options_are_invalid() {
        invalid(from_any_bytes(b"\xff\xff\xff"));
        invalid(from_any(&any(b"\x1a\x7f".to_vec())));
    }
}
