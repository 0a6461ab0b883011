#![cfg(feature = "e2e")]
//! A container without a pod: `ctr run --runtime io.containerd.berth.v2`
//! runs it as a pod of one, with its stdout and exit status, and leaves
//! nothing behind.

use std::ffi::OsStr;

use anyhow::{ensure, Result};
use berth_e2e::images::BUSYBOX;
use berth_e2e::leaks;
use berth_e2e::pod_trace::PodTrace;
use berth_e2e::{e2e_test, Containerd};

async fn ctr_run_is_a_pod_of_one(cd: &Containerd) -> Result<()> {
    cd.require_berth()?;
    // ctr's cgroup is /k8s.io/<id>: the id must differ between instances.
    let id = format!("solo-{}", cd.instance().slot());
    let args: Vec<&OsStr> = [
        "run",
        "--rm",
        "--runtime",
        "io.containerd.berth.v2",
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
    // `--rm` deleted the task and container: no process, mount, cgroup or
    // state of it is left.
    let trace = PodTrace {
        id: id.clone(),
        ..Default::default()
    };
    leaks::check_pod_removed(cd, &trace).await?;
    leaks::wait_state_root_empty(&cd.berth_state_root()).await
}

e2e_test!(ctr_run, ctr_run_is_a_pod_of_one);
