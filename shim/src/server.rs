//! Serving one pod: the ttrpc server, the reaper, and orderly exit.

use std::collections::HashMap;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::Arc;

use berth_proto::shim_async::create_task;
use berth_proto::ttrpc::r#async::transport::Listener;
use berth_proto::ttrpc::r#async::{Server, Service as TtrpcService};
use berth_sandbox::helper::Helper;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::Flags;
use tokio::sync::Notify;

use crate::engine::Sandbox;
use crate::error::{Error, Result};
use crate::events::Remote;
use crate::reaper::Reaper;
use crate::service::Service;

/// The task API under every name containerd calls it by: v3 for 2.x, v2
/// for 1.7. The messages are the same on the wire.
pub const TASK_SERVICES: [&str; 2] = ["containerd.task.v3.Task", "containerd.task.v2.Task"];

/// Whether a shim accepts connections on `socket`.
pub async fn is_serving(socket: &Path) -> bool {
    tokio::net::UnixStream::connect(socket).await.is_ok()
}

/// Registers one task implementation under every task service name.
pub fn task_services(
    task: Arc<dyn berth_proto::shim_async::Task + Send + Sync>,
) -> HashMap<String, TtrpcService> {
    let mut services = HashMap::new();
    for name in TASK_SERVICES {
        let mut generated = create_task(Arc::clone(&task));
        let service = generated
            .remove(TASK_SERVICES[0])
            .expect("the generated task service is v3");
        services.insert(name.to_owned(), service);
    }
    services
}

pub async fn serve(flags: &Flags) -> Result<()> {
    if flags.socket.is_empty() {
        return Err(Error::InvalidArgument(
            "-socket: must be given to serve".into(),
        ));
    }
    if let Err(e) = containerd_shim::logger::init(flags.debug, "info", &flags.namespace, &flags.id)
    {
        eprintln!("containerd-shim-berth-v2: no log fifo, logging to stderr: {e}");
    }
    nix::sys::prctl::set_child_subreaper(true)
        .map_err(|e| Error::Internal(format!("become a child subreaper: {e}")))?;
    let reaper = Reaper::new();
    reaper
        .start()
        .map_err(|e| Error::Internal(format!("handle SIGCHLD: {e}")))?;

    let socket_path = flags.socket.trim_start_matches("unix://").to_owned();
    let socket = Path::new(&socket_path);
    let dir = berth_sandbox::state::PodDir::new(
        socket
            .parent()
            .and_then(Path::parent)
            .unwrap_or(Path::new("/")),
        &socket
            .parent()
            .and_then(Path::file_name)
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    );
    let listener = bind(socket).await?;
    if listener.is_none() {
        // Another shim of this pod won the race and serves it.
        signal_started();
        return Ok(());
    }

    let ttrpc_address = std::env::var("TTRPC_ADDRESS")
        .map_err(|_| Error::InvalidArgument("TTRPC_ADDRESS is not set".into()))?;
    let publisher = RemotePublisher::new(&ttrpc_address).await.map_err(|e| {
        Error::Unavailable(format!("connect to containerd at {ttrpc_address}: {e}"))
    })?;
    let exe = std::env::current_exe().map_err(|e| Error::Internal(format!("current_exe: {e}")))?;
    let engine = Arc::new(Sandbox::new(
        Helper::new(exe, false),
        crate::bootstrap::pause_binary(),
        dir.clone(),
        &flags.namespace,
    ));
    let shutdown = Arc::new(Notify::new());
    let service = Service::new(
        engine,
        Remote::new(publisher, &flags.namespace),
        reaper,
        Arc::clone(&shutdown),
    );
    let listener = Listener::try_from(listener.expect("checked"))
        .map_err(|e| Error::Internal(format!("ttrpc listener: {e}")))?;
    let mut server = Server::new()
        .add_listener(listener)
        .register_service(task_services(Arc::new(service)));
    server
        .start()
        .await
        .map_err(|e| Error::Internal(format!("start the ttrpc server: {e}")))?;
    signal_started();
    log::info!("serving pod {} on {}", flags.id, socket.display());

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| Error::Internal(format!("handle SIGTERM: {e}")))?;
    let done_with_pod = tokio::select! {
        _ = shutdown.notified() => true,
        _ = term.recv() => false,
    };
    let _ = server.shutdown().await;
    let _ = std::fs::remove_file(socket);
    if done_with_pod {
        dir.remove()?;
    }
    log::info!("shim for pod {} exits", flags.id);
    Ok(())
}

/// Binds the pod's socket. `None` when a live shim already holds it; a stale
/// socket file left by a dead shim is replaced.
async fn bind(socket: &Path) -> Result<Option<UnixListener>> {
    match UnixListener::bind(socket) {
        Ok(l) => Ok(Some(l)),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            if is_serving(socket).await {
                return Ok(None);
            }
            std::fs::remove_file(socket)
                .map_err(|e| Error::Internal(format!("remove stale {}: {e}", socket.display())))?;
            UnixListener::bind(socket)
                .map(Some)
                .map_err(|e| Error::Internal(format!("bind {}: {e}", socket.display())))
        }
        Err(e) => Err(Error::Internal(format!("bind {}: {e}", socket.display()))),
    }
}

/// Tells `start` we are ready: our stdout is its pipe, and it reads to EOF.
fn signal_started() {
    // SAFETY: dup2 of two valid descriptors of this process; stderr is
    // /dev/null for a daemonized shim, so stdout no longer holds the pipe.
    unsafe {
        libc::dup2(libc::STDERR_FILENO, libc::STDOUT_FILENO);
    }
}
