//! Packs images into one OCI image-layout tarball (`oci-layout`,
//! `index.json`, `blobs/sha256/...`) that `ctr images import` takes in one call.
//! Blobs shared between images (the layer) are stored once.

use std::collections::BTreeMap;

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::tar_writer::TarWriter;

pub const MEDIA_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

/// The runtime part of an image config.
#[derive(Clone, Debug, Default)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
}

/// One linux/amd64 image of uncompressed layers: `layer`, then `upper`
/// stacked on it in order.
pub struct ImageDef<'a> {
    /// Full reference, such as `localhost/berth/pause:e2e`.
    pub name: &'a str,
    pub layer: &'a [u8],
    pub upper: &'a [Vec<u8>],
    pub config: ImageConfig,
}

impl ImageDef<'_> {
    fn layers(&self) -> impl Iterator<Item = &[u8]> {
        std::iter::once(self.layer).chain(self.upper.iter().map(Vec::as_slice))
    }
}

/// An image layout ready to import.
pub struct Layout {
    /// The tarball.
    pub tar: Vec<u8>,
    /// `(name, sha256:<hex> of its manifest)`, in the order given.
    pub manifests: Vec<(String, String)>,
}

/// `sha256:<hex>` of `data`.
pub fn digest(data: &[u8]) -> String {
    let hash = Sha256::digest(data);
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// Builds one layout holding every image of `images`.
pub fn build(images: &[ImageDef<'_>]) -> Layout {
    let mut blobs: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut descriptors = Vec::new();
    let mut manifests = Vec::new();
    for image in images {
        let config_bytes = to_json(&config_json(image));
        let manifest_bytes = to_json(&json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": descriptor(MEDIA_CONFIG, &config_bytes),
            "layers": image.layers().map(|l| descriptor(MEDIA_LAYER, l)).collect::<Vec<_>>(),
        }));
        let tag = image
            .name
            .rsplit_once(':')
            .map(|(_, t)| t)
            .unwrap_or("latest");
        let mut desc = descriptor(MEDIA_MANIFEST, &manifest_bytes);
        desc["platform"] = json!({ "architecture": "amd64", "os": "linux" });
        desc["annotations"] = json!({
            "io.containerd.image.name": image.name,
            "org.opencontainers.image.ref.name": tag,
        });
        descriptors.push(desc);
        manifests.push((image.name.to_string(), digest(&manifest_bytes)));
        for blob in image.layers().map(<[u8]>::to_vec) {
            blobs.insert(digest(&blob), blob);
        }
        for blob in [config_bytes, manifest_bytes] {
            blobs.insert(digest(&blob), blob);
        }
    }
    let index = to_json(&json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_INDEX,
        "manifests": descriptors,
    }));

    let mut tar = TarWriter::new();
    tar.file("oci-layout", 0o644, br#"{"imageLayoutVersion":"1.0.0"}"#);
    tar.file("index.json", 0o644, &index);
    tar.dir("blobs", 0o755);
    tar.dir("blobs/sha256", 0o755);
    for (digest, blob) in &blobs {
        let hex = digest.trim_start_matches("sha256:");
        tar.file(&format!("blobs/sha256/{hex}"), 0o644, blob);
    }
    Layout {
        tar: tar.finish(),
        manifests,
    }
}

fn config_json(image: &ImageDef<'_>) -> serde_json::Value {
    let c = &image.config;
    json!({
        "created": "1970-01-01T00:00:00Z",
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Env": c.env,
            "Entrypoint": non_empty(&c.entrypoint),
            "Cmd": non_empty(&c.cmd),
            "WorkingDir": c.working_dir,
        },
        "rootfs": { "type": "layers", "diff_ids": image.layers().map(digest).collect::<Vec<_>>() },
        "history": image.layers()
            .map(|_| json!({ "created": "1970-01-01T00:00:00Z", "created_by": "berth-e2e" }))
            .collect::<Vec<_>>(),
    })
}

fn to_json(value: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(value).expect("a JSON value serializes")
}

fn descriptor(media_type: &str, data: &[u8]) -> serde_json::Value {
    json!({ "mediaType": media_type, "digest": digest(data), "size": data.len() })
}

fn non_empty(v: &[String]) -> serde_json::Value {
    if v.is_empty() {
        serde_json::Value::Null
    } else {
        json!(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defs() -> Vec<ImageDef<'static>> {
        let cfg = |cmd: &str| ImageConfig {
            cmd: vec![cmd.into()],
            ..Default::default()
        };
        vec![
            ImageDef {
                name: "localhost/a:1",
                layer: b"layer",
                upper: &[],
                config: cfg("a"),
            },
            ImageDef {
                name: "localhost/b:1",
                layer: b"layer",
                upper: &[],
                config: cfg("b"),
            },
        ]
    }

    #[test]
    fn same_input_same_bytes() {
        let (a, b) = (build(&defs()), build(&defs()));
        assert_eq!(a.manifests, b.manifests);
        assert_eq!(a.tar, b.tar);
        assert_ne!(a.manifests[0].1, a.manifests[1].1);
    }

    #[test]
    fn shared_layer_is_stored_once() {
        let layout = build(&defs());
        let hex = digest(b"layer").trim_start_matches("sha256:").to_string();
        let needle = format!("blobs/sha256/{hex}");
        let count = layout
            .tar
            .windows(needle.len())
            .filter(|w| *w == needle.as_bytes())
            .count();
        assert_eq!(count, 1);
    }

    #[test]
    fn digest_is_sha256_hex() {
        assert_eq!(
            digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
