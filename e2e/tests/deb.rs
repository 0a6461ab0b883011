#![cfg(feature = "e2e")]
//! `make deb`'s package (`shim/dist/make-deb.sh`): exactly the three
//! binaries in /usr/bin, the drop-in as a conffile naming those paths, the
//! README and the copyright; a Depends of what the helper links against
//! (libseccomp among it) and nothing more. dpkg installs it into a tree of
//! its own (`--instdir`, dependencies not checked: the tree has no other
//! packages) and purges it again, leaving nothing of it there. In the VM
//! lane the package is installed into the guest's root and runs a pod
//! through containerd importing its drop-in.

use std::path::Path;
use std::process::Command;

use anyhow::{ensure, Context, Result};
use berth_e2e::container_config::ContainerSpec;
use berth_e2e::containerd_config::{BERTH_HANDLER, BERTH_SHIM_MODE_HANDLER};
use berth_e2e::daemon::Installation;
use berth_e2e::pod_trace::PodTrace;
use berth_e2e::{paths, scenario, Version};

const FILES: [&str; 6] = [
    "etc/containerd/conf.d/berth.toml",
    "usr/bin/berth-pause",
    "usr/bin/berth-sandbox-helper",
    "usr/bin/containerd-shim-berth-v2",
    "usr/share/doc/berth/README.md",
    "usr/share/doc/berth/copyright",
];

fn run(command: &mut Command) -> Result<String> {
    let out = command
        .output()
        .with_context(|| format!("run {command:?}"))?;
    ensure!(
        out.status.success(),
        "{command:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Builds the package into `target` (a cargo target directory of its own)
/// and returns its path.
fn build_package(target: &Path) -> Result<std::path::PathBuf> {
    run(Command::new("bash")
        .arg(paths::workspace().join("shim/dist/make-deb.sh"))
        .env("CARGO_TARGET_DIR", target)
        .env("BIN_DIR", paths::bin_dir()))?;
    let deb = std::fs::read_dir(target.join("deb"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .context("make-deb.sh made no .deb")?;
    Ok(deb)
}

/// The regular files under `dir`, relative to it, sorted.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = walk(dir)
        .into_iter()
        .map(|p| p.strip_prefix(dir).unwrap().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn the_package_holds_exactly_berth_and_installs_and_purges_cleanly() -> Result<()> {
    let work = tempfile::tempdir()?;
    let deb = build_package(&work.path().join("target"))?;
    let field = |name: &str| run(Command::new("dpkg-deb").arg("-f").arg(&deb).arg(name));
    ensure!(field("Package")?.trim() == "berth", "Package");
    let version = env!("CARGO_PKG_VERSION");
    ensure!(
        field("Version")?.trim() == version,
        "Version is not {version}"
    );
    let depends = field("Depends")?;
    let names: Vec<&str> = depends
        .split(',')
        .map(|d| d.split_whitespace().next().unwrap_or_default())
        .collect();
    ensure!(
        names.contains(&"libseccomp2"),
        "Depends lacks libseccomp2: {depends}"
    );
    for name in &names {
        ensure!(
            ["libc6", "libgcc-s1", "libseccomp2"].contains(name),
            "Depends names {name}, which no binary links against: {depends}"
        );
    }

    let unpacked = work.path().join("unpacked");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked))?;
    ensure!(
        files_under(&unpacked) == FILES,
        "the package holds {:?}",
        files_under(&unpacked)
    );
    for binary in paths::BINARIES {
        let packed = std::fs::read(unpacked.join("usr/bin").join(binary))?;
        ensure!(
            packed == std::fs::read(paths::bin_dir().join(binary))?,
            "{binary} is not the staged build"
        );
    }
    let dropin = std::fs::read_to_string(unpacked.join(FILES[0]))?;
    ensure!(
        dropin.contains("/usr/bin/berth-pause") && !dropin.contains("/usr/local"),
        "the drop-in does not name the package's paths:\n{dropin}"
    );
    let control = work.path().join("control");
    run(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&control))?;
    let conffiles = std::fs::read_to_string(control.join("conffiles"))?;
    ensure!(
        conffiles == format!("/{}\n", FILES[0]),
        "conffiles: {conffiles:?}"
    );

    // dpkg into a tree of its own, then purged.
    let tree = work.path().join("tree");
    let admin = tree.join("var/lib/dpkg");
    for dir in ["updates", "info", "triggers"] {
        std::fs::create_dir_all(admin.join(dir))?;
    }
    std::fs::write(admin.join("status"), "")?;
    let dpkg = |args: &[&str]| {
        run(Command::new("dpkg")
            .arg(format!("--instdir={}", tree.display()))
            .arg(format!("--admindir={}", admin.display()))
            .args([
                "--force-depends",
                "--force-not-root",
                "--no-triggers",
                "--log=/dev/null",
            ])
            .args(args))
    };
    dpkg(&["-i", &deb.to_string_lossy()])?;
    for file in FILES {
        ensure!(tree.join(file).is_file(), "dpkg did not install {file}");
    }
    dpkg(&["--purge", "berth"])?;
    let left: Vec<String> = files_under(&tree)
        .into_iter()
        .filter(|f| !f.starts_with("var/lib/dpkg/"))
        .collect();
    ensure!(left.is_empty(), "the purged package left {left:?}");
    Ok(())
}

/// Where the lane finds the package `make deb` built on the host.
const DEB_ENV: &str = "BERTH_DEB";
/// Set only where the root file system is thrown away after the run.
const THROWAWAY_ENV: &str = "BERTH_THROWAWAY_ROOT";

/// The package on a node: `dpkg -i` into the guest's own root, containerd
/// 2.1 with a `version = 3` config that imports the drop-in (and registers
/// no `berth` runtime of its own), a pod and a container with berth and
/// another pair with its shim-mode runtime `berth-shim`, then
/// `dpkg --purge`, after which none of the package's files is left. It
/// installs into `/`, so it runs only in the VM lane, whose root disk is a
/// throwaway snapshot (`make test` leaves it out of the host run).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn package_in_a_throwaway_root() -> Result<()> {
    ensure!(
        std::env::var_os(THROWAWAY_ENV).is_some(),
        "this test installs berth's package into / and purges it: it runs in the VM \
         lane (make vm-lane), whose root disk is thrown away; {THROWAWAY_ENV}=1 says \
         a machine is such a one"
    );
    let deb = std::env::var_os(DEB_ENV)
        .map(std::path::PathBuf::from)
        .with_context(|| format!("{DEB_ENV} names no package: the lane sets it"))?;
    let root = Path::new("/");
    for file in FILES {
        ensure!(
            !root.join(file).exists(),
            "/{file} is there before the install"
        );
    }
    run(Command::new("dpkg").arg("-i").arg(&deb))?;
    let ran =
        async {
            for file in FILES {
                ensure!(root.join(file).is_file(), "dpkg did not install /{file}");
            }
            scenario::run_with(Version::V2_1, Installation::packaged(), async |cd| {
                let parent = cd.cgroup_parent("packaged");
                let config = scenario::pod_config(cd, "packaged")?.cgroup_parent(&parent);
                let pod = scenario::run_pod(cd, &config, BERTH_HANDLER).await?;
                scenario::expect_ready(cd, &pod).await?;
                let trace = PodTrace::capture(cd, &pod, &parent).await?;
                let exes: Vec<_> = trace
                    .shims
                    .iter()
                    .map(|s| std::fs::read_link(format!("/proc/{}/exe", s.pid)).ok())
                    .collect();
                ensure!(
                    !exes.is_empty()
                        && exes.iter().all(|e| e.as_deref()
                            == Some(Path::new("/usr/bin/containerd-shim-berth-v2"))),
                    "pod {pod} is served by {exes:?}, not the packaged shim"
                );
                let spec = ContainerSpec::shell("app", "echo ready; exec sleep 600");
                let id = scenario::run_container(cd, &pod, &config, &spec).await?;
                scenario::wait_ready(&config, &spec).await?;
                scenario::remove_containers(cd, &[id]).await?;
                scenario::remove_and_check(cd, &trace).await?;
                // The drop-in's shim-mode runtime: a pod and a container.
                let config = scenario::pod_config(cd, "packaged-shim")?;
                let pod = scenario::run_pod(cd, &config, BERTH_SHIM_MODE_HANDLER).await?;
                scenario::expect_ready(cd, &pod).await?;
                let trace = PodTrace::capture(cd, &pod, "").await?;
                let spec = ContainerSpec::shell("shim-app", "echo ready; exec sleep 600");
                let id = scenario::run_container(cd, &pod, &config, &spec).await?;
                scenario::wait_ready(&config, &spec).await?;
                scenario::remove_containers(cd, &[id]).await?;
                scenario::remove_and_check(cd, &trace).await
            })
            .await
        }
        .await;
    let purged = run(Command::new("dpkg").args(["--purge", "berth"]));
    ran?;
    purged?;
    let left: Vec<&str> = FILES
        .into_iter()
        .filter(|f| root.join(f).exists())
        .collect();
    ensure!(left.is_empty(), "the purged package left {left:?}");
    Ok(())
}
