//! `berth-bench`: berth against the runc shim through CRI (see `berth_e2e::bench`).

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match berth_e2e::bench::main(&args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
