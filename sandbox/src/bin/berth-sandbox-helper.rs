//! `berth-sandbox-helper`: the single-threaded process in which the shim's
//! forks, unshares and setns happen (see `berth_sandbox::helper`). It is a
//! binary of its own, installed beside the shim, so the OCI engine it links
//! is never mapped into the long-lived shim.

fn main() {
    if std::env::args().nth(1).as_deref() == Some(berth_sandbox::helper::HELPER_ARG) {
        berth_sandbox::helper::server::main();
    }
    eprintln!(
        "usage: berth-sandbox-helper {} < request.json\n\
         berth's shim runs this with one JSON request on stdin; it is not meant to be run by hand.",
        berth_sandbox::helper::HELPER_ARG
    );
    std::process::exit(2);
}
