//! containerd-shim-berth-v2: a containerd shim v2 with a built-in pod
//! sandbox manager.

mod api_version;
mod bootstrap;
mod engine;
mod error;
mod events;
mod io;
mod logger;
mod metrics;
mod oom;
mod process;
mod reaper;
mod server;
mod service;
mod task;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("start the tokio runtime");
    std::process::exit(runtime.block_on(bootstrap::run()));
}
