//! Records what the shim was built from, for `-v` and `-info`: the git
//! revision of the workspace (with `-dirty` when tracked files differ from
//! it) and the compiler's version. Outside a git checkout the revision is
//! `unknown`; `BERTH_REVISION` in the environment overrides it (a package
//! built from a source tarball sets it).

use std::path::Path;
use std::process::Command;

fn main() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the shim crate lives in the workspace");
    let revision = std::env::var("BERTH_REVISION")
        .ok()
        .filter(|r| !r.is_empty())
        .or_else(|| git_revision(workspace))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=BERTH_REVISION={revision}");
    println!("cargo:rerun-if-env-changed=BERTH_REVISION");

    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc_version =
        output(Command::new(rustc).arg("--version")).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=BERTH_RUSTC_VERSION={rustc_version}");

    // A new commit, a staged change or an edited source changes the
    // revision or its dirtiness.
    if let Some(git_dir) = output(
        Command::new("git")
            .arg("-C")
            .arg(workspace)
            .args(["rev-parse", "--absolute-git-dir"]),
    ) {
        for file in ["HEAD", "index", "packed-refs"] {
            println!("cargo:rerun-if-changed={git_dir}/{file}");
        }
        if let Some(branch) = output(Command::new("git").arg("-C").arg(workspace).args([
            "symbolic-ref",
            "-q",
            "HEAD",
        ])) {
            println!("cargo:rerun-if-changed={git_dir}/{branch}");
        }
    }
    for dir in ["shim", "sandbox", "proto", "pause"] {
        println!("cargo:rerun-if-changed={}", workspace.join(dir).display());
    }
}

/// `<commit>` or `<commit>-dirty`.
fn git_revision(workspace: &Path) -> Option<String> {
    let git = || {
        let mut command = Command::new("git");
        // status must not refresh the index: that would make the next
        // build run this script again, and collide with the user's git.
        command.arg("--no-optional-locks").arg("-C").arg(workspace);
        command
    };
    // Only the workspace's own repository, not one it was unpacked into.
    let top = output(git().args(["rev-parse", "--show-toplevel"]))?;
    if Path::new(&top).canonicalize().ok()? != workspace.canonicalize().ok()? {
        return None;
    }
    let commit = output(git().args(["rev-parse", "HEAD"]))?;
    let status = output(git().args(["status", "--porcelain", "--untracked-files=no"]))?;
    Some(if status.is_empty() {
        commit
    } else {
        format!("{commit}-dirty")
    })
}

/// The trimmed stdout of a command that succeeded.
fn output(command: &mut Command) -> Option<String> {
    let out = command.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}
