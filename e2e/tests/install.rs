#![cfg(feature = "e2e")]
//! `make install` and `make uninstall` into a `DESTDIR`: the three binaries
//! `make build` staged and containerd's drop-in, exactly those, and nothing
//! else touched; and the drop-in, imported by containerd 2.1's own version 3
//! config, registers the `berth` runtime in podsandbox mode beside the
//! config's own CRI settings. Under a version 2 config an import costs the
//! config some of its own settings (2.1 and 1.7 alike), which is why the
//! README says to import it only from a version 3 config: a test here shows
//! it, so that a change in containerd is noticed.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{ensure, Context, Result};
use berth_e2e::{paths, Version};

const BINARIES: [&str; 3] = [
    "containerd-shim-berth-v2",
    "berth-sandbox-helper",
    "berth-pause",
];
const DROPIN: &str = "etc/containerd/conf.d/berth.toml";

/// `make -s <target> DESTDIR=<dest> <vars>` in the workspace; its stderr on
/// failure.
fn make(target: &str, dest: &Path, vars: &[&str]) -> Result<std::result::Result<(), String>> {
    let out = Command::new("make")
        .arg("-s")
        .arg("-C")
        .arg(paths::workspace())
        .arg(target)
        .arg(format!("DESTDIR={}", dest.display()))
        .args(vars)
        .output()
        .context("run make")?;
    Ok(if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    })
}

/// Every file under `dir`, relative to it, sorted.
fn files_under(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).expect("under the root");
                out.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn staged(binary: &str) -> PathBuf {
    paths::workspace().join("target/berth/bin").join(binary)
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn install_puts_exactly_its_files_and_uninstall_takes_exactly_those() -> Result<()> {
    for binary in BINARIES {
        ensure!(
            staged(binary).is_file(),
            "{} is missing: run `make build` first",
            staged(binary).display()
        );
    }
    let dest = tempfile::tempdir()?;
    // What the node had already: left alone by both.
    let own = ["etc/containerd/conf.d/other.toml", "usr/bin/containerd"];
    for file in own {
        let path = dest.path().join(file);
        std::fs::create_dir_all(path.parent().unwrap())?;
        std::fs::write(&path, "the node's own")?;
    }

    make("install", dest.path(), &["PREFIX=/usr"])?.map_err(anyhow::Error::msg)?;
    let mut expected: Vec<String> = BINARIES.iter().map(|b| format!("usr/bin/{b}")).collect();
    expected.push(DROPIN.to_owned());
    expected.extend(own.iter().map(|f| f.to_string()));
    expected.sort();
    assert_eq!(files_under(dest.path()), expected);
    for binary in BINARIES {
        let installed = dest.path().join("usr/bin").join(binary);
        assert_eq!(mode(&installed), 0o755, "{binary}");
        assert!(
            std::fs::read(&installed)? == std::fs::read(staged(binary))?,
            "{binary} is not the staged build"
        );
    }
    let dropin = dest.path().join(DROPIN);
    assert_eq!(mode(&dropin), 0o644);
    assert_eq!(
        std::fs::read_to_string(&dropin)?,
        std::fs::read_to_string(paths::workspace().join("shim/dist/berth.toml"))?
    );
    for file in own {
        assert_eq!(
            std::fs::read_to_string(dest.path().join(file))?,
            "the node's own"
        );
    }

    // Installing again over the same files replaces them in place.
    make("install", dest.path(), &["PREFIX=/usr"])?.map_err(anyhow::Error::msg)?;
    assert_eq!(files_under(dest.path()), expected);

    make("uninstall", dest.path(), &["PREFIX=/usr"])?.map_err(anyhow::Error::msg)?;
    let mut left: Vec<String> = own.iter().map(|f| f.to_string()).collect();
    left.sort();
    assert_eq!(files_under(dest.path()), left);
    Ok(())
}

#[test]
fn the_default_prefix_is_usr_local_and_the_drop_in_stays_in_etc() -> Result<()> {
    let dest = tempfile::tempdir()?;
    make("install", dest.path(), &[])?.map_err(anyhow::Error::msg)?;
    let mut expected: Vec<String> = BINARIES
        .iter()
        .map(|b| format!("usr/local/bin/{b}"))
        .collect();
    expected.push(DROPIN.to_owned());
    expected.sort();
    assert_eq!(files_under(dest.path()), expected);
    make("uninstall", dest.path(), &[])?.map_err(anyhow::Error::msg)?;
    assert_eq!(files_under(dest.path()), Vec::<String>::new());
    Ok(())
}

#[test]
fn install_without_a_build_says_so_and_installs_nothing() -> Result<()> {
    let dest = tempfile::tempdir()?;
    let empty = tempfile::tempdir()?;
    let bin_dir = format!("BIN_DIR={}", empty.path().display());
    let err = make("install", dest.path(), &[&bin_dir])?
        .err()
        .context("make install ran without binaries")?;
    assert!(
        err.contains("containerd-shim-berth-v2 is missing: run make build first"),
        "{err}"
    );
    assert_eq!(files_under(dest.path()), Vec::<String>::new());
    Ok(())
}

/// `containerd config dump` of containerd `version` with a config of
/// dialect `config_version` whose root keys are `keys` and whose tables
/// follow in `tables` (its root and state are put in `dir`).
fn config_dump(
    version: Version,
    dir: &Path,
    config_version: u32,
    keys: &str,
    tables: &str,
) -> Result<String> {
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "version = {config_version}\nroot = '{}'\nstate = '{}'\n{keys}\n{tables}",
            dir.join("root").display(),
            dir.join("state").display()
        ),
    )?;
    let out = Command::new(version.bin_dir().join("containerd"))
        .arg("--config")
        .arg(&config)
        .args(["config", "dump"])
        .output()
        .with_context(|| format!("run containerd {}", version.as_str()))?;
    ensure!(
        out.status.success(),
        "containerd {} config dump: {}",
        version.as_str(),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The lines of `dump` from the table header that ends in `header` to the
/// next header of a runtime.
fn table(dump: &str, header: &str) -> Option<String> {
    let mut lines = dump.lines().skip_while(|l| !l.trim().ends_with(header));
    let first = lines.next()?;
    let rest = lines.take_while(|l| {
        let l = l.trim();
        !(l.starts_with('[') && l.contains(".containerd.runtimes.") && !l.contains(".options]"))
    });
    Some(
        std::iter::once(first)
            .chain(rest)
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

#[test]
fn the_drop_in_adds_berth_to_a_containerd_2_config() -> Result<()> {
    let dest = tempfile::tempdir()?;
    make("install", dest.path(), &["PREFIX=/usr"])?.map_err(anyhow::Error::msg)?;
    let conf_d = dest.path().join("etc/containerd/conf.d");
    let dir = tempfile::tempdir()?;
    // The node's own CRI settings: a runtime and a setting off its default.
    let dump = config_dump(
        Version::V2_1,
        dir.path(),
        3,
        &format!("imports = ['{}/*.toml']", conf_d.display()),
        "[plugins.'io.containerd.cri.v1.runtime']\n  enable_cdi = false\n\n\
         [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]\n  \
         runtime_type = 'io.containerd.runc.v2'\n",
    )?;
    let berth = table(&dump, ".containerd.runtimes.berth]")
        .with_context(|| format!("no berth runtime in\n{dump}"))?;
    ensure!(
        berth.contains("runtime_type = 'io.containerd.berth.v2'")
            && berth.contains("sandboxer = 'podsandbox'"),
        "the berth runtime is not berth's in podsandbox mode:\n{berth}"
    );
    let shim_mode = table(&dump, ".containerd.runtimes.berth-shim]")
        .with_context(|| format!("no berth-shim runtime in\n{dump}"))?;
    ensure!(
        shim_mode.contains("runtime_type = 'io.containerd.berth.v2'")
            && shim_mode.contains("sandboxer = 'shim'")
            && !dump.contains(".runtimes.berth-shim.options]"),
        "the berth-shim runtime is not berth's in shim mode without options:\n{shim_mode}"
    );
    ensure!(
        table(&dump, ".containerd.runtimes.runc]").is_some(),
        "the node's own runc runtime went:\n{dump}"
    );
    ensure!(
        dump.lines().any(|l| l.trim() == "enable_cdi = false"),
        "the node's own CRI setting went:\n{dump}"
    );
    make("uninstall", dest.path(), &["PREFIX=/usr"])?.map_err(anyhow::Error::msg)?;
    Ok(())
}

/// Why only a version 3 config should import the drop-in: under a version
/// 2 config, containerd 1.7 replaces the config's whole CRI table (its
/// pause image and runtimes here) with an imported one, and 2.1 keeps the
/// runtimes but drops the config's pause image. Expected, so that a change
/// in containerd is noticed.
#[test]
fn a_version_2_config_loses_its_own_cri_settings_to_an_import() -> Result<()> {
    let dest = tempfile::tempdir()?;
    make("install", dest.path(), &["PREFIX=/usr"])?.map_err(anyhow::Error::msg)?;
    let installed = dest.path().join(DROPIN);
    let dir = tempfile::tempdir()?;
    let cri = r#"plugins."io.containerd.grpc.v1.cri""#;
    // 1.7 reads no version 3 file: the same runtime in its dialect.
    let dropin_v2 = dir.path().join("berth.toml");
    std::fs::write(
        &dropin_v2,
        format!(
            "version = 2\n[{cri}.containerd.runtimes.berth]\n  \
             runtime_type = 'io.containerd.berth.v2'\n"
        ),
    )?;
    let tables = format!(
        "[{cri}]\n  sandbox_image = 'node.example/pause:1'\n\n\
         [{cri}.containerd.runtimes.runc]\n  runtime_type = 'io.containerd.runc.v2'\n"
    );
    for (version, dropin, runc_kept) in [
        (Version::V1_7, &dropin_v2, false),
        (Version::V2_1, &installed, true),
    ] {
        let what = format!("containerd {}", version.as_str());
        let alone = config_dump(version, dir.path(), 2, "", &tables)?;
        ensure!(
            alone.contains("node.example/pause:1") && table(&alone, ".runtimes.runc]").is_some(),
            "{what} does not read the node's CRI table:\n{alone}"
        );
        let imports = format!("imports = ['{}']", dropin.display());
        let merged = config_dump(version, dir.path(), 2, &imports, &tables)?;
        ensure!(
            table(&merged, ".runtimes.berth]").is_some()
                && !merged.contains("node.example/pause:1")
                && table(&merged, ".runtimes.runc]").is_some() == runc_kept,
            "{what} now keeps a version 2 config's CRI settings under an import: \
             the README's advice can change\n{merged}"
        );
    }
    Ok(())
}
