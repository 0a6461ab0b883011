//! A terminal's console socket and the pty master that arrives on it.
//!
//! For a process on a terminal, libcontainer makes the pty and sends its
//! master over a unix socket the shim listens on (the console socket). The
//! shim then copies between the master and containerd's FIFOs, and sets
//! the terminal's size for ResizePty.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::UnixListener;

use crate::error::{Error, Result};

/// A bound console socket; its file is removed when it is dropped, whether
/// the master arrived or the create failed.
pub struct ConsoleSocket {
    listener: UnixListener,
    path: PathBuf,
}

static CONSOLE_SEQ: AtomicU64 = AtomicU64::new(0);

impl ConsoleSocket {
    /// Binds a console socket of a name of its own in `dir`.
    pub fn bind(dir: &Path) -> Result<ConsoleSocket> {
        let path = dir.join(format!(
            "tty-{}-{}.sock",
            std::process::id(),
            CONSOLE_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).map_err(Error::io("bind", &path))?;
        Ok(ConsoleSocket { listener, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits up to `limit` for the master, then removes the socket.
    pub async fn receive(self, limit: Duration) -> std::result::Result<Master, String> {
        match tokio::time::timeout(limit, self.accept_master()).await {
            Ok(Ok(master)) => Ok(master),
            Ok(Err(e)) => Err(format!("no pty master: {e}")),
            Err(_) => Err(format!("no pty master within {limit:?}")),
        }
    }

    /// Accepts libcontainer's connection and takes the pty master it sends.
    async fn accept_master(&self) -> std::io::Result<Master> {
        let (stream, _) = self.listener.accept().await?;
        let master = loop {
            stream.readable().await?;
            match stream.try_io(Interest::READABLE, || {
                crate::sys::recv_fd(stream.as_raw_fd())
            }) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                result => break result?,
            }
        };
        let registered = crate::sys::register(master, Interest::READABLE | Interest::WRITABLE)?;
        Ok(Master(Arc::new(registered)))
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A terminal's pty master, on the runtime.
#[derive(Debug, Clone)]
pub struct Master(Arc<AsyncFd<OwnedFd>>);

impl Master {
    /// A pty master of the caller's (tests').
    #[cfg(test)]
    pub fn of(fd: OwnedFd) -> Master {
        let registered = crate::sys::register(fd, Interest::READABLE | Interest::WRITABLE).unwrap();
        Master(Arc::new(registered))
    }

    /// The master as a byte stream, both ways.
    pub fn stream(&self) -> Pty {
        Pty(Arc::clone(&self.0))
    }

    /// ResizePty: the terminal's new size.
    pub fn resize(&self, width: u32, height: u32) -> Result<()> {
        crate::sys::set_window_size(self.0.get_ref().as_fd(), width, height)
            .map_err(|e| Error::Internal(format!("resize the terminal: {e}")))
    }
}

/// One side of a pty master, as a byte stream. The end of the terminal
/// (EIO once no process holds the slave) reads as end of file.
pub struct Pty(Arc<AsyncFd<OwnedFd>>);

impl AsyncRead for Pty {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        loop {
            let mut guard = ready!(self.0.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            match guard.try_io(|fd| {
                nix::unistd::read(fd.get_ref(), unfilled).map_err(std::io::Error::from)
            }) {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => return Poll::Ready(Ok(())),
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for Pty {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        loop {
            let mut guard = ready!(self.0.poll_write_ready(cx))?;
            match guard
                .try_io(|fd| nix::unistd::write(fd.get_ref(), data).map_err(std::io::Error::from))
            {
                Ok(result) => return Poll::Ready(result),
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
