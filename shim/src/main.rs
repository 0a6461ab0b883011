//! containerd-shim-berth-v2: a containerd shim v2 with a built-in pod
//! sandbox manager. This file only starts the runtime; [`berth_shim::run`]
//! dispatches containerd's actions.

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("start the tokio runtime");
    std::process::exit(runtime.block_on(berth_shim::run()));
}
