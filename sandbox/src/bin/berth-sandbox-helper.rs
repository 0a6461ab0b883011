//! The helper entry point on its own, for the crate's root tests; the shim
//! dispatches the same `berth_sandbox::helper::main` from its own binary.

fn main() {
    if std::env::args().nth(1).as_deref() == Some(berth_sandbox::helper::HELPER_ARG) {
        berth_sandbox::helper::main();
    }
    eprintln!(
        "usage: berth-sandbox-helper {}",
        berth_sandbox::helper::HELPER_ARG
    );
    std::process::exit(2);
}
