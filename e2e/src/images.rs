//! The two test images, built offline from the host's static busybox:
//!
//! - [`PAUSE`]: what CRI's podsandbox mode needs as a sandbox image (berth itself never
//!   runs it; the runc baseline does). Its command is a shell that waits, not
//!   `sleep infinity`, and exits 0 on SIGTERM.
//! - [`BUSYBOX`]: a busybox rootfs with every applet linked, for app containers.
//!
//! Both go into one OCI layout archive, cached as
//! `target/e2e-images/images-<key>.tar` (key: busybox's identity on disk and the
//! format version), with the manifest digests beside it in `images-<key>.json`.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::oci_layout::{self, ImageConfig, ImageDef};
use crate::paths;
use crate::tar_writer::TarWriter;

/// The pinned sandbox image (must match the containerd config exactly).
pub const PAUSE: &str = "localhost/berth/pause:e2e";
/// The app image.
pub const BUSYBOX: &str = "localhost/berth/busybox:e2e";
/// Debian's busybox-static.
pub const BUSYBOX_BIN: &str = "/bin/busybox";
/// Bumped whenever the image contents change, to invalidate the cache.
const FORMAT: &str = "v1";

const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// The pause stand-in: waits forever, exits 0 on SIGTERM/SIGINT.
const PAUSE_SCRIPT: &str = "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait; done";

/// The image archive on disk: both images in one OCI layout.
#[derive(Clone, Debug)]
pub struct ImageArchive {
    pub path: PathBuf,
    /// `(image name, manifest digest)` of [`PAUSE`] and [`BUSYBOX`].
    pub images: Vec<(String, String)>,
}

/// Finds in the cache, or builds, the archive holding the pause and busybox images.
/// The cache key is busybox's identity on disk (device, inode, size, mtime), so a hit
/// costs two small reads and no hashing.
pub fn build_archive() -> Result<ImageArchive> {
    let meta = fs::metadata(BUSYBOX_BIN)
        .with_context(|| format!("stat {BUSYBOX_BIN}: run `make deps` (busybox-static)"))?;
    let identity = format!(
        "{FORMAT}-{}-{}-{}-{}",
        meta.dev(),
        meta.ino(),
        meta.size(),
        meta.mtime()
    );
    let key = &oci_layout::digest(identity.as_bytes())["sha256:".len()..][..16];
    let dir = paths::image_cache_dir();
    let path = dir.join(format!("images-{key}.tar"));
    let index = dir.join(format!("images-{key}.json"));
    if let Ok(text) = fs::read_to_string(&index) {
        if let (Ok(images), true) = (serde_json::from_str(&text), path.exists()) {
            return Ok(ImageArchive { path, images });
        }
    }

    let busybox = fs::read(BUSYBOX_BIN).with_context(|| format!("read {BUSYBOX_BIN}"))?;
    let layer = rootfs_layer(&busybox, &applets()?);
    let pause_cmd = vec!["/bin/sh".into(), "-c".into(), PAUSE_SCRIPT.into()];
    let layout = oci_layout::build(&[
        ImageDef {
            name: PAUSE,
            layer: &layer,
            upper: &[],
            config: image_config(pause_cmd),
        },
        ImageDef {
            name: BUSYBOX,
            layer: &layer,
            upper: &[],
            config: image_config(vec!["sh".into()]),
        },
    ]);
    fs::create_dir_all(&dir).with_context(|| format!("mkdir {}", dir.display()))?;
    write_atomic(&path, &layout.tar)?;
    write_atomic(&index, &serde_json::to_vec(&layout.manifests)?)?;
    Ok(ImageArchive {
        path,
        images: layout.manifests,
    })
}

/// The config of a test image that runs `cmd` at `/` with a standard PATH.
fn image_config(cmd: Vec<String>) -> ImageConfig {
    ImageConfig {
        cmd,
        env: vec![PATH_ENV.into()],
        working_dir: "/".into(),
        ..Default::default()
    }
}

/// Concurrent test processes may build at once: write aside, then rename.
fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    fs::write(&tmp, data).with_context(|| format!("write {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("rename to {}", path.display()))
}

/// Applet paths relative to `/` (`bin/sh`, `usr/bin/wget`, ...), from busybox itself.
fn applets() -> Result<Vec<String>> {
    let out = Command::new(BUSYBOX_BIN)
        .arg("--list-full")
        .output()
        .with_context(|| format!("run {BUSYBOX_BIN} --list-full"))?;
    if !out.status.success() {
        bail!("{BUSYBOX_BIN} --list-full: {}", out.status);
    }
    let mut list: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().trim_start_matches('/').to_string())
        .filter(|l| !l.is_empty() && l != "bin/busybox")
        .collect();
    list.sort();
    list.dedup();
    for needed in [
        "bin/sh",
        "bin/sleep",
        "bin/ls",
        "bin/cat",
        "bin/echo",
        "bin/hostname",
    ] {
        anyhow::ensure!(
            list.iter().any(|a| a == needed),
            "busybox lacks applet {needed}"
        );
    }
    Ok(list)
}

/// A root filesystem layer: directories, passwd/group, `/bin/busybox` and a symlink per
/// applet.
fn rootfs_layer(busybox: &[u8], applets: &[String]) -> Vec<u8> {
    rootfs_layer_with_links(busybox, applets, &[])
}

/// [`rootfs_layer`] in which each `(path, target)` of `links` is a symlink to
/// `target` instead of what the rootfs would hold there; nothing is written
/// below a path that became a link.
fn rootfs_layer_with_links(busybox: &[u8], applets: &[String], links: &[(&str, &str)]) -> Vec<u8> {
    let linked = |path: &str| {
        links
            .iter()
            .any(|(l, _)| path == *l || path.starts_with(&format!("{l}/")))
    };
    let mut tar = TarWriter::new();
    let dirs = [
        "bin", "dev", "etc", "home", "proc", "root", "run", "sbin", "sys", "usr", "usr/bin",
        "usr/sbin", "var", "var/run",
    ];
    for dir in dirs.into_iter().filter(|d| !linked(d)) {
        tar.dir(dir, 0o755);
    }
    if !linked("tmp") {
        tar.dir("tmp", 0o1777);
    }
    let files: [(&str, &[u8]); 2] = [
        (
            "etc/passwd",
            b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        ),
        ("etc/group", b"root:x:0:\nnogroup:x:65534:\n"),
    ];
    for (path, data) in files.into_iter().filter(|(p, _)| !linked(p)) {
        tar.file(path, 0o644, data);
    }
    tar.file("bin/busybox", 0o755, busybox);
    for applet in applets.iter().filter(|a| !linked(a)) {
        tar.symlink(applet, "/bin/busybox");
    }
    for (path, target) in links {
        tar.symlink(path, target);
    }
    tar.finish()
}

/// An image layout of one busybox image per `(name, links)` of `images`, each
/// with its `(path, target)` symlinks planted in its rootfs (see
/// [`rootfs_layer_with_links`]). For tests of hostile images: the targets may
/// point anywhere, the host included.
pub fn linked_images(images: &[(String, Vec<(String, String)>)]) -> Result<oci_layout::Layout> {
    let busybox = fs::read(BUSYBOX_BIN).with_context(|| format!("read {BUSYBOX_BIN}"))?;
    let applets = applets()?;
    let layers: Vec<Vec<u8>> = images
        .iter()
        .map(|(_, links)| {
            let links: Vec<(&str, &str)> = links
                .iter()
                .map(|(p, t)| (p.as_str(), t.as_str()))
                .collect();
            rootfs_layer_with_links(&busybox, &applets, &links)
        })
        .collect();
    let defs: Vec<ImageDef<'_>> = images
        .iter()
        .zip(&layers)
        .map(|((name, _), layer)| ImageDef {
            name,
            layer,
            upper: &[],
            config: image_config(vec!["sh".into()]),
        })
        .collect();
    Ok(oci_layout::build(&defs))
}

/// The layers [`layered_image`] stacks on busybox: the `i`th (from 1)
/// holds `/layers/<i>` and `/layers/top`, both reading `i`, so `top`
/// shows which layer is uppermost.
pub fn numbered_layers(count: usize) -> Vec<Vec<u8>> {
    (1..=count)
        .map(|i| {
            let mut tar = TarWriter::new();
            tar.dir("layers", 0o755);
            tar.file(&format!("layers/{i}"), 0o644, format!("{i}\n").as_bytes());
            tar.file("layers/top", 0o644, format!("{i}\n").as_bytes());
            tar.finish()
        })
        .collect()
}

/// An image layout of busybox with `upper` [`numbered_layers`] on it:
/// `upper + 1` layers in all, named `name`.
pub fn layered_image(name: &str, upper: usize) -> Result<oci_layout::Layout> {
    let busybox = fs::read(BUSYBOX_BIN).with_context(|| format!("read {BUSYBOX_BIN}"))?;
    let base = rootfs_layer(&busybox, &applets()?);
    let upper = numbered_layers(upper);
    Ok(oci_layout::build(&[ImageDef {
        name,
        layer: &base,
        upper: &upper,
        config: image_config(vec!["sh".into()]),
    }]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(path, kind, link target)` of each entry of an uncompressed tar.
    fn entries(tar: &[u8]) -> Vec<(String, u8, String)> {
        let text = |b: &[u8]| {
            let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
            String::from_utf8_lossy(&b[..end]).into_owned()
        };
        let mut out = Vec::new();
        let mut at = 0;
        while at + 512 <= tar.len() && tar[at] != 0 {
            let h = &tar[at..at + 512];
            let size = u64::from_str_radix(text(&h[124..135]).trim(), 8).unwrap() as usize;
            out.push((text(&h[0..100]), h[156], text(&h[157..257])));
            at += 512 + size.div_ceil(512) * 512;
        }
        out
    }

    #[test]
    fn a_linked_path_replaces_what_the_rootfs_holds_there() {
        let applets = ["bin/sh".to_string(), "etc/oops".to_string()];
        let tar = rootfs_layer_with_links(b"bb", &applets, &[("etc", "/x"), ("dev", "../../y")]);
        let all = entries(&tar);
        let kinds_at = |p: &str| -> Vec<u8> {
            all.iter()
                .filter(|(n, _, _)| n.trim_end_matches('/') == p)
                .map(|e| e.1)
                .collect()
        };
        assert_eq!(kinds_at("etc"), [b'2'], "{all:?}");
        assert_eq!(kinds_at("dev"), [b'2'], "{all:?}");
        assert!(
            !all.iter().any(|(n, _, _)| n.starts_with("etc/")),
            "nothing below a link: {all:?}"
        );
        assert!(all.contains(&("dev".into(), b'2', "../../y".into())));
        assert_eq!(kinds_at("proc"), [b'5']);
        assert_eq!(kinds_at("bin/sh"), [b'2']);
        assert_eq!(kinds_at("bin/busybox"), [b'0']);
    }
}
