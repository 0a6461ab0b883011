//! What the shim says of itself without serving anything: `-v` for an
//! operator, and `-info` for containerd, which runs
//! `containerd-shim-berth-v2 -info` (no other flag, containerd's own
//! environment) to learn the runtime's name, version and OCI features. It
//! writes the runtime options it holds, a `google.protobuf.Any`, to stdin
//! (nothing when it has none) and reads a bare `containerd.types.RuntimeInfo`
//! from stdout. Neither touches any state.

use std::collections::HashMap;
use std::io::{Read, Write};

use berth_proto::protobuf::well_known_types::any::Any;
use berth_proto::protobuf::{Message, MessageField};
use berth_proto::types::introspection::{RuntimeInfo, RuntimeVersion};
use berth_sandbox::state;

use crate::error::{Error, Result};

/// The runtime type containerd knows berth by.
pub const RUNTIME_NAME: &str = "io.containerd.berth.v2";
/// The shim's version, from the workspace.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The git revision it was built from, `-dirty` if the tree had changes.
pub const REVISION: &str = env!("BERTH_REVISION");
/// The compiler that built it.
const RUSTC_VERSION: &str = env!("BERTH_RUSTC_VERSION");
/// The type containerd registers for the OCI features document (JSON).
pub const FEATURES_TYPE_URL: &str =
    "types.containerd.io/opencontainers/runtime-spec/1/features/Features";
/// containerd sends little more than a TOML table; anything near this is not
/// runtime options.
const MAX_OPTIONS: u64 = 4 << 20;

/// What `-v` prints, in the shape containerd's own shims print it.
pub fn version_text(binary: &str) -> String {
    format!(
        "{binary}:\n  Version:  {VERSION}\n  Revision: {REVISION}\n  Rust version: {RUSTC_VERSION}\n  \
         Helper protocol: {}\n  State format: {} (reads {} to {})\n",
        berth_sandbox::helper::PROTOCOL,
        state::FORMAT,
        state::OLDEST_FORMAT,
        state::FORMAT,
    )
}

/// `-info`: reads the options from stdin and writes the runtime info to
/// stdout.
pub fn run() -> Result<()> {
    let mut input = Vec::new();
    std::io::stdin()
        .lock()
        .take(MAX_OPTIONS + 1)
        .read_to_end(&mut input)
        .map_err(Error::io("read", "stdin"))?;
    if input.len() as u64 > MAX_OPTIONS {
        return Err(Error::InvalidArgument(format!(
            "-info: the options on stdin are over {MAX_OPTIONS} bytes"
        )));
    }
    let answer = answer(&input)?;
    let mut out = std::io::stdout().lock();
    out.write_all(&answer)
        .and_then(|()| out.flush())
        .map_err(Error::io("write", "stdout"))
}

/// The serialized `RuntimeInfo` for the options `input` (a serialized
/// `Any`, or nothing). Options berth cannot read are an error, as a task
/// create with them would be; readable ones are given back as they came
/// (the Go runc shim gives back the runc options it decoded).
pub fn answer(input: &[u8]) -> Result<Vec<u8>> {
    let options = if input.is_empty() {
        None
    } else {
        let any = Any::parse_from_bytes(input).map_err(|e| {
            Error::InvalidArgument(format!("-info: stdin is not a protobuf Any: {e}"))
        })?;
        crate::options::from_any(&any)?;
        Some(any)
    };
    let features = serde_json::to_vec(&berth_sandbox::features::features())
        .map_err(|e| Error::Internal(format!("-info: encode the OCI features: {e}")))?;
    let info = RuntimeInfo {
        name: RUNTIME_NAME.into(),
        version: MessageField::some(RuntimeVersion {
            version: VERSION.into(),
            revision: REVISION.into(),
            ..Default::default()
        }),
        options: options.into(),
        features: MessageField::some(Any {
            type_url: FEATURES_TYPE_URL.into(),
            value: features,
            ..Default::default()
        }),
        annotations: HashMap::new(),
        ..Default::default()
    };
    info.write_to_bytes()
        .map_err(|e| Error::Internal(format!("-info: encode the runtime info: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_names_berth_and_carries_its_features() {
        let info = RuntimeInfo::parse_from_bytes(&answer(b"").unwrap()).unwrap();
        assert_eq!(info.name, RUNTIME_NAME);
        assert_eq!(info.version.version, VERSION);
        assert_eq!(info.version.revision, REVISION);
        assert!(!REVISION.is_empty());
        assert!(info.options.is_none());
        assert_eq!(info.features.type_url, FEATURES_TYPE_URL);
        let features: serde_json::Value = serde_json::from_slice(&info.features.value).unwrap();
        assert!(features["mountOptions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o == "rro"));
        // containerd dereferences `linux` without a check.
        assert!(features["linux"].is_object());
    }

    fn options(body: &[u8]) -> Any {
        let mut value = vec![0x1a, body.len() as u8];
        value.extend_from_slice(body);
        Any {
            type_url: "runtimeoptions.v1.Options".into(),
            value,
            ..Default::default()
        }
    }

    #[test]
    fn the_options_come_back_as_they_were_sent() {
        let options = options(b"SystemdCgroup = false\nOther = 1");
        let info =
            RuntimeInfo::parse_from_bytes(&answer(&options.write_to_bytes().unwrap()).unwrap())
                .unwrap();
        assert_eq!(info.options.as_ref(), Some(&options));
    }

    #[test]
    fn options_berth_cannot_read_are_an_invalid_argument() {
        let bad = options(b"SystemdCgroup = 'no'");
        match answer(&bad.write_to_bytes().unwrap()) {
            Err(Error::InvalidArgument(why)) => assert!(why.contains("SystemdCgroup"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn stdin_that_is_no_any_is_an_invalid_argument() {
        match answer(b"\xff\xff\xff") {
            Err(Error::InvalidArgument(why)) => assert!(why.contains("stdin"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_version_names_revision_compiler_helper_protocol_and_state_format() {
        let text = version_text("containerd-shim-berth-v2");
        assert!(text.starts_with("containerd-shim-berth-v2:\n  Version:  "));
        assert!(text.contains(&format!("Revision: {REVISION}\n")));
        assert!(text.contains("Rust version: rustc "), "{text}");
        assert!(text.contains(&format!(
            "Helper protocol: {}",
            berth_sandbox::helper::PROTOCOL
        )));
        let format = format!(
            "State format: {} (reads {} to {})\n",
            state::FORMAT,
            state::OLDEST_FORMAT,
            state::FORMAT
        );
        assert!(text.contains(&format), "{text}");
    }
}
