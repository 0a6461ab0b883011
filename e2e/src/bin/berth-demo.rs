//! `berth-demo`: one berth pod through a private containerd (see `berth_e2e::demo`).

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match berth_e2e::demo::main(&args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth-demo: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
