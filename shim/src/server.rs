//! Serving one pod: the ttrpc server, the reaper, and orderly exit.

use std::collections::HashMap;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use berth_proto::sandbox_async::create_sandbox;
use berth_proto::shim_async::create_task;
use berth_proto::ttrpc::r#async::transport::Listener;
use berth_proto::ttrpc::r#async::{Server, Service as TtrpcService};
use berth_sandbox::helper::Helper;
use berth_sandbox::pod::Retired;
use berth_sandbox::state::{PodDir, Probe};
use containerd_shim::Flags;
use tokio::sync::Notify;

use crate::bootstrap::{LISTEN_FD, LISTEN_FD_ENV};
use crate::error::{Error, Result};
use crate::events::Outbox;
use crate::layout::Layout;
use crate::pod::PodBackend;
use crate::reaper::Reaper;
use crate::service::Service;
use crate::shimlog;

/// The task API under every name containerd calls it by: v3 for 2.x, v2
/// for 1.7. The messages are the same on the wire.
pub const TASK_SERVICES: [&str; 2] = ["containerd.task.v3.Task", "containerd.task.v2.Task"];

/// How long a shim containerd never asks for a task or a sandbox waits
/// before it exits and removes its pod directory.
const UNUSED_TIMEOUT: Duration = Duration::from_secs(120);

/// How long events still queued at exit may take to reach containerd.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the reply to the call that ended the pod has to leave before
/// the connections close.
const REPLY_GRACE: Duration = Duration::from_millis(100);

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
    // Started as /proc/self/exe, the shim would be "exe" to ps and top;
    // the name Go shims show is the kernel's 15-byte cut of theirs.
    let _ = nix::sys::prctl::set_name(c"containerd-shim");
    let bundle = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    // `start` hands over the layout its options gave, in the environment.
    let layout = Layout::from_env();
    let (grouping, dir) = layout.pod_dir_of(flags, &bundle);
    let option = std::env::var(shimlog::LEVEL_ENV)
        .ok()
        .and_then(|l| shimlog::parse_level(&l));
    let level = shimlog::level(flags.debug, option);
    if let Err(e) = shimlog::init(&bundle, level, &flags.namespace, &grouping) {
        eprintln!("containerd-shim-berth-v2: pod {grouping}: no log FIFO, no log: {e}");
    }
    nix::sys::prctl::set_child_subreaper(true)
        .map_err(|e| Error::Internal(format!("become a child subreaper: {e}")))?;
    let reaper = Reaper::new();
    reaper
        .start()
        .map_err(|e| Error::Internal(format!("handle SIGCHLD: {e}")))?;

    let Some(listener) = listener(&dir)? else {
        // Another shim of this pod serves it.
        signal_started()?;
        return Ok(());
    };
    let ttrpc_address = std::env::var("TTRPC_ADDRESS")
        .map_err(|_| Error::InvalidArgument("TTRPC_ADDRESS is not set".into()))?;
    let helper = open_helper(&layout.helper)?;
    let outbox = Arc::new(Outbox::start(&ttrpc_address, &flags.namespace));
    let backend = Arc::new(PodBackend::new(
        helper.clone(),
        layout.pause.clone(),
        dir.clone(),
        &flags.namespace,
    ));
    let shutdown = Arc::new(Notify::new());
    let service = Service::new(backend, Arc::clone(&outbox), reaper, Arc::clone(&shutdown));
    let unused = service.clone();
    let listener = Listener::try_from(listener)
        .map_err(|e| Error::Internal(format!("ttrpc listener: {e}")))?;
    let mut server = Server::new()
        .add_listener(listener)
        .register_service(task_services(Arc::new(service.clone())))
        .register_service(create_sandbox(Arc::new(service)));
    server
        .start()
        .await
        .map_err(|e| Error::Internal(format!("start the ttrpc server: {e}")))?;
    signal_started()?;
    log::info!("serving pod {grouping} on {}", dir.socket().display());

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| Error::Internal(format!("handle SIGTERM: {e}")))?;
    let done_with_pod = tokio::select! {
        _ = shutdown.notified() => true,
        _ = term.recv() => false,
        _ = unused.unused_for(UNUSED_TIMEOUT) => {
            log::warn!(
                "pod {grouping}: containerd asked for no task or sandbox in {UNUSED_TIMEOUT:?}; exiting"
            );
            true
        }
    };
    if done_with_pod {
        // The call that ended the pod (ShutdownSandbox, Shutdown, the
        // Delete a deferred shutdown waited for) notified before returning:
        // closing the connections at once can drop its reply, and
        // containerd then fails a RemovePodSandbox that did its work
        // ("ttrpc: closed"). containerd closes its side itself and waits
        // for nothing of ours, so the reply gets a moment to go out.
        server.stop_listen().await;
        tokio::time::sleep(REPLY_GRACE).await;
    }
    let _ = server.shutdown().await;
    crate::logger::wait_stopped().await;
    if !outbox.flush(FLUSH_TIMEOUT).await {
        log::warn!("events still undelivered after {FLUSH_TIMEOUT:?}");
    }
    let leftovers = dir.clone();
    let retired = tokio::task::spawn_blocking(move || {
        berth_sandbox::pod::retire(&helper, &leftovers, done_with_pod)
    })
    .await
    .map_err(|e| Error::Internal(format!("retire the pod directory: {e}")))?;
    match retired {
        Ok(Retired::TakenOver) => {
            log::info!("pod {grouping}: a new shim serves it; leaving its directory")
        }
        Ok(Retired::Removed | Retired::Kept) => {}
        Err(e) => log::error!("pod {grouping}: keeping its directory for `delete`: {e}"),
    }
    log::info!("shim for pod {grouping} exits");
    Ok(())
}

/// The helper this shim runs, opened now: every helper it runs is the
/// binary it started with, even after an upgrade replaces the file, and a
/// missing helper fails the shim's start rather than its first pod.
fn open_helper(path: &Path) -> Result<Helper> {
    Helper::open(path, false).map_err(|e| {
        Error::Internal(format!(
            "the helper binary (install it beside the shim, set HelperPath in the runtime options or BERTH_HELPER): {}",
            berth_sandbox::error_chain(&e)
        ))
    })
}

/// The socket to serve: the one `start` bound and handed over, else (run by
/// hand) bound here under the pod's lock. `None` when a live shim holds it.
fn listener(dir: &PodDir) -> Result<Option<UnixListener>> {
    if std::env::var_os(LISTEN_FD_ENV).is_some() {
        // `start` put the bound socket there before exec, by contract.
        return crate::sys::take_listener(LISTEN_FD).map(Some).map_err(|e| {
            Error::Internal(format!("the socket handed over on fd {LISTEN_FD}: {e}"))
        });
    }
    dir.create()?;
    let _lock = dir.lock()?;
    let socket = dir.socket();
    if dir.probe() == Probe::Serving {
        return Ok(None);
    }
    dir.claim()?;
    let _ = std::fs::remove_file(&socket);
    UnixListener::bind(&socket)
        .map(Some)
        .map_err(Error::io("bind", &socket))
}

/// Tells `start` we are ready: our stdout is its pipe, which it reads to EOF.
fn signal_started() -> Result<()> {
    let devnull = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .map_err(|e| Error::Internal(format!("open /dev/null: {e}")))?;
    nix::unistd::dup2_stdout(&devnull)
        .map_err(|e| Error::Internal(format!("close the start pipe: {e}")))
}
