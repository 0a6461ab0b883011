//! berth-pause: PID 1 of a berth pod.
//!
//! It holds the pod's namespaces simply by staying alive, reaps every zombie
//! handed to it, and exits 0 on SIGTERM or SIGINT. Once start-up is done,
//! nothing else makes it exit: errors become warnings on stderr.
//!
//! The code uses only `core` and `libc`. The `pause` profile (panic = "abort")
//! builds it without std, which keeps the static musl binary under 20 KB
//! (std alone would add some 350 KB); dev and test builds unwind on panic,
//! which needs std, so they link it without calling it.

#![cfg_attr(all(panic = "abort", not(test)), no_std)]
#![cfg_attr(not(test), no_main)]
// The unit-test harness brings its own `main`, so the entry point below is
// left out of test builds and what only it reaches goes unused there.
#![cfg_attr(test, allow(dead_code))]

mod args;
mod fds;
mod init;
mod process;
mod reaper;
mod signals;
mod sys;

use core::ffi::c_int;

/// Exit status for a command line pause does not understand.
const EXIT_USAGE: c_int = 2;

/// The C entry point: pause needs nothing from a Rust runtime, only argv.
#[cfg(not(test))]
#[no_mangle]
extern "C" fn main(argc: c_int, argv: *const *const core::ffi::c_char) -> c_int {
    use args::Command;

    // SAFETY: the C runtime passes main the process's own argc and argv,
    // which stay valid for as long as the process lives.
    let args = unsafe { args::Argv::new(argc, argv) };
    match args::parse(args) {
        Command::Run => init::run(),
        Command::Version => print(args::VERSION),
        Command::Help => print(args::USAGE),
        Command::Invalid => {
            sys::warn(args::USAGE);
            EXIT_USAGE
        }
    }
}

/// Writes `text` to stdout; exits 1 if it cannot (a closed pipe, a full disk).
fn print(text: &[u8]) -> c_int {
    match sys::write_all(libc::STDOUT_FILENO, text) {
        Ok(()) => 0,
        Err(_) => 1,
    }
}

#[cfg(all(panic = "abort", not(test)))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    sys::abort()
}

// On musl the libc crate leaves linking the C library to std. Without std we
// name it ourselves (on glibc this repeats what the libc crate already asks).
#[cfg(all(panic = "abort", not(test)))]
#[link(name = "c")]
extern "C" {}
