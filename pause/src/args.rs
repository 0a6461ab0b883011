//! The command line: `berth-pause`, `berth-pause -v|--version` or
//! `berth-pause -h|--help`. Anything else is a usage error.

use core::ffi::{c_char, c_int, CStr};

/// What the command line asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// No arguments: be the pod's PID 1.
    Run,
    Version,
    Help,
    Invalid,
}

pub const VERSION: &[u8] = concat!("berth-pause ", env!("CARGO_PKG_VERSION"), "\n").as_bytes();

pub const USAGE: &[u8] = b"usage: berth-pause [-v | --version | -h | --help]\n";

/// Reads the arguments after the program name.
pub fn parse<'a>(mut args: impl Iterator<Item = &'a [u8]>) -> Command {
    let Some(first) = args.next() else {
        return Command::Run;
    };
    if args.next().is_some() {
        return Command::Invalid;
    }
    match first {
        b"-v" | b"--version" => Command::Version,
        b"-h" | b"--help" => Command::Help,
        _ => Command::Invalid,
    }
}

/// The C argv without its first entry (the program name), as byte strings.
pub struct Argv {
    argv: *const *const c_char,
    next: usize,
    len: usize,
}

impl Argv {
    /// # Safety
    ///
    /// `argv` must point to `argc` pointers to NUL-terminated strings, all of
    /// which stay valid and unchanged for the rest of the process.
    pub unsafe fn new(argc: c_int, argv: *const *const c_char) -> Self {
        // A negative argc cannot come from the kernel; read it as no arguments.
        let len = usize::try_from(argc).unwrap_or(0);
        Argv { argv, next: 1, len }
    }
}

impl Iterator for Argv {
    type Item = &'static [u8];

    fn next(&mut self) -> Option<&'static [u8]> {
        if self.next >= self.len {
            return None;
        }
        // SAFETY: next < argc, and the caller of `new` promised that argv
        // holds argc valid strings that live for the rest of the process.
        let arg = unsafe { CStr::from_ptr(*self.argv.add(self.next)) };
        self.next += 1;
        Some(arg.to_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_strs(args: &[&str]) -> Command {
        parse(args.iter().map(|a| a.as_bytes()))
    }

    #[test]
    fn no_arguments_runs() {
        assert_eq!(parse_strs(&[]), Command::Run);
    }

    #[test]
    fn version_flags() {
        assert_eq!(parse_strs(&["-v"]), Command::Version);
        assert_eq!(parse_strs(&["--version"]), Command::Version);
    }

    #[test]
    fn help_flags() {
        assert_eq!(parse_strs(&["-h"]), Command::Help);
        assert_eq!(parse_strs(&["--help"]), Command::Help);
    }

    #[test]
    fn anything_else_is_invalid() {
        for args in [
            &["-V"][..],
            &["--versions"],
            &["version"],
            &[""],
            &["-v", "-v"],
            &["--version", "extra"],
            &["-P"],
        ] {
            assert_eq!(parse_strs(args), Command::Invalid, "{args:?}");
        }
    }

    #[test]
    fn version_line_names_the_package_version() {
        assert_eq!(
            VERSION,
            format!("berth-pause {}\n", env!("CARGO_PKG_VERSION")).as_bytes()
        );
    }

    #[test]
    fn argv_skips_the_program_name() {
        let strings = [c"berth-pause", c"--version", c"x"];
        let argv = strings.map(CStr::as_ptr);
        // SAFETY: argv holds 3 pointers to the C string literals above, which
        // are 'static.
        let args = unsafe { Argv::new(3, argv.as_ptr()) };
        assert_eq!(args.collect::<Vec<_>>(), [&b"--version"[..], b"x"]);
    }

    #[test]
    fn argv_without_program_name_is_empty() {
        // SAFETY: with argc 0 the pointer is never read.
        let args = unsafe { Argv::new(0, core::ptr::null()) };
        assert_eq!(args.count(), 0);
    }
}
