//! `berth-cri`: a small crictl for pods and containers (see `berth_e2e::cli`).

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match berth_e2e::cli::main(&args).await {
        Ok(code) => std::process::ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("berth-cri: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
