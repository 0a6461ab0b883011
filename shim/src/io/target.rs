//! Where a process's stdio goes, as containerd's IO URIs name it: a FIFO
//! (a bare path or `fifo://`), a file (`file://`), a logging binary
//! (`binary://`) or nothing; and how the shim opens each.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use tokio::net::unix::pipe;

use crate::error::{Error, Result};
use crate::logger::Binary;

/// A path by which another process opens one of the shim's descriptors.
pub(super) fn fd_path(fd: &impl AsRawFd) -> PathBuf {
    PathBuf::from(format!(
        "/proc/{}/fd/{}",
        std::process::id(),
        fd.as_raw_fd()
    ))
}

/// Where one output stream goes.
pub(crate) enum Target {
    None,
    Fifo(PathBuf),
    File(PathBuf),
    Binary(Binary),
}

pub(crate) fn target(uri: &str, stream: &str) -> Result<Target> {
    if uri.is_empty() {
        return Ok(Target::None);
    }
    if let Some(path) = uri.strip_prefix("file://") {
        if !path.starts_with('/') {
            return Err(Error::InvalidArgument(format!(
                "{stream}: file log URI: the log's path must be absolute, not {path:?}"
            )));
        }
        return Ok(Target::File(PathBuf::from(path)));
    }
    if let Some(rest) = uri.strip_prefix("binary://") {
        return Ok(Target::Binary(Binary::parse(rest)?));
    }
    match uri.split_once("://") {
        Some((scheme, _)) if scheme != "fifo" => Err(Error::InvalidArgument(format!(
            "{stream}: unknown IO URI scheme {scheme:?}"
        ))),
        Some((_, path)) => Ok(Target::Fifo(PathBuf::from(path))),
        None => Ok(Target::Fifo(PathBuf::from(uri))),
    }
}

pub(super) fn open_output_fifo(path: &Path) -> Result<pipe::Sender> {
    pipe::OpenOptions::new()
        .read_write(true)
        .open_sender(path)
        .map_err(Error::io("open", path))
}

pub(super) async fn open_log(path: &Path) -> Result<OwnedFd> {
    if let Some(dir) = path.parent() {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(Error::io("create", dir))?;
    }
    let file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .await
        .map_err(Error::io("open", path))?;
    Ok(file.into_std().await.into())
}
