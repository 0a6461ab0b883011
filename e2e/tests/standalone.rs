#![cfg(feature = "e2e")]
//! A container without a pod: `ctr run --runtime io.containerd.berth.v2`
//! runs it as a pod of one, with its stdout and exit status, and leaves
//! nothing behind. With `-t` it runs on a terminal, and so does
//! `ctr task exec -t`; with `--log-uri binary://` its output goes to a
//! logging binary.

use std::ffi::OsStr;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use berth_e2e::images::BUSYBOX;
use berth_e2e::{e2e_test, scenario, Containerd};

const BERTH: &str = "io.containerd.berth.v2";
const CTR_TIMEOUT: Duration = Duration::from_secs(60);

fn os_args<'a>(args: &[&'a str]) -> Vec<&'a OsStr> {
    args.iter().map(|a| OsStr::new(*a)).collect()
}

/// A container id for this instance: ctr's cgroup is /k8s.io/<id>, so ids
/// must differ between instances running at once.
fn solo_id(cd: &Containerd, name: &str) -> String {
    format!("{name}-{}", cd.instance().slot())
}

async fn ctr_run_is_a_pod_of_one(cd: &Containerd) -> Result<()> {
    cd.require_berth()?;
    let id = solo_id(cd, "solo");
    let args: Vec<&OsStr> = [
        "run",
        "--rm",
        "--runtime",
        BERTH,
        BUSYBOX,
        &id,
        "sh",
        "-c",
        "echo hello from pid $$; exit 4",
    ]
    .into_iter()
    .map(OsStr::new)
    .collect();
    let out = cd.ctr(&args)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.code() == Some(4),
        "ctr run ended {} (stdout {stdout:?}, stderr {:?})",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(
        stdout.trim() == "hello from pid 1",
        "the container's stdout, from PID 1 of its own namespace, is {stdout:?}"
    );
    // `--rm` deleted the task and container.
    scenario::expect_solo_gone(cd, &id).await
}

e2e_test!(ctr_run, ctr_run_is_a_pod_of_one);

async fn ctr_run_and_exec_on_a_terminal(cd: &Containerd) -> Result<()> {
    cd.require_berth()?;
    let id = solo_id(cd, "tty");
    let (status, screen) = cd.ctr_on_terminal(
        &os_args(&[
            "run",
            "--rm",
            "-t",
            "--runtime",
            BERTH,
            BUSYBOX,
            &id,
            "sh",
            "-c",
            "tty; stty size; exit 3",
        ]),
        CTR_TIMEOUT,
    )?;
    ensure!(
        status.code() == Some(3),
        "ctr run -t ended {status}; the terminal showed {screen:?}"
    );
    ensure!(
        screen.contains("/dev/pts/"),
        "the container's stdin is a terminal: {screen:?}"
    );
    scenario::expect_solo_gone(cd, &id).await?;

    // An exec with a terminal, in a running container.
    scenario::run_solo(cd, &id)?;
    let exec = cd.ctr_on_terminal(
        &os_args(&[
            "task",
            "exec",
            "-t",
            "--exec-id",
            "shell",
            &id,
            "sh",
            "-c",
            "tty; exit 5",
        ]),
        CTR_TIMEOUT,
    );
    let removed = [
        os_args(&["task", "rm", "-f", &id]),
        os_args(&["container", "rm", &id]),
    ]
    .iter()
    .map(|args| cd.ctr(args))
    .collect::<Result<Vec<_>>>()?;
    let (status, screen) = exec?;
    ensure!(
        status.code() == Some(5),
        "ctr task exec -t ended {status}; the terminal showed {screen:?}"
    );
    ensure!(
        screen.contains("/dev/pts/"),
        "the exec's stdin is a terminal: {screen:?}"
    );
    for out in removed {
        ensure!(
            out.status.success(),
            "clean-up: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    scenario::expect_solo_gone(cd, &id).await
}

e2e_test!(ctr_terminal, ctr_run_and_exec_on_a_terminal);

async fn ctr_run_logs_to_a_binary(cd: &Containerd) -> Result<()> {
    cd.require_berth()?;
    let id = solo_id(cd, "logged");
    let dir = cd.instance().dir().join("logger");
    std::fs::create_dir_all(&dir)?;
    let logger = dir.join("logger.sh");
    // The logging binary's contract: stdout on fd 3, stderr on fd 4, fd 5
    // closed once ready, the container named in its environment.
    std::fs::write(
        &logger,
        "#!/bin/sh\nexec 5>&-\necho \"$CONTAINER_NAMESPACE/$CONTAINER_ID\" > \"$1.id\"\n\
         cat <&3 > \"$1.out\" &\ncat <&4 > \"$1.err\"\nwait\nmv \"$1.out\" \"$1.stdout\"\n",
    )?;
    std::fs::set_permissions(&logger, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let base = dir.join("c");
    let uri = format!("binary://{}?{}", logger.display(), base.display());
    let out = cd.ctr(&os_args(&[
        "run",
        "--rm",
        "--log-uri",
        &uri,
        "--runtime",
        BERTH,
        BUSYBOX,
        &id,
        "sh",
        "-c",
        "echo to stdout; echo to stderr >&2; exit 0",
    ]))?;
    ensure!(
        out.status.success(),
        "ctr run --log-uri ended {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = base.with_extension("stdout");
    for _ in 0..500 {
        if stdout.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let read = |ext: &str| {
        std::fs::read_to_string(base.with_extension(ext))
            .with_context(|| format!("the logging binary's {ext} file"))
    };
    ensure!(
        read("id")?.trim() == format!("k8s.io/{id}"),
        "the logging binary is told whose output it gets: {:?}",
        read("id")?
    );
    ensure!(
        read("stdout")? == "to stdout\n",
        "stdout: {:?}",
        read("stdout")?
    );
    ensure!(read("err")? == "to stderr\n", "stderr: {:?}", read("err")?);
    scenario::expect_solo_gone(cd, &id).await
}

e2e_test!(ctr_binary_log, ctr_run_logs_to_a_binary);
