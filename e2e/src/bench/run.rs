//! One bench run: start the private containerd, measure every figure in table order,
//! remove every pod, check that nothing leaked, stop containerd, then print the table
//! and write `results.json`, `table.md` and `results.png`. A failed CRI call fails
//! the run before anything is written: no partial table, no made-up number.

use std::path::Path;
use std::time::{Instant, SystemTime};

use anyhow::{ensure, Context, Result};

use super::figure::Row;
use super::machine::Machine;
use super::memory::Observation;
use super::options::{Driver, Options};
use super::pods::Pods;
use super::results::Results;
use super::{chart, containers, latency, leftovers, memory, table};
use crate::containerd::Containerd;
use crate::leaks::Census;

/// What the figures produced.
struct Measured {
    rows: Vec<Row>,
    observations: Vec<Observation>,
}

/// Runs the bench described by `opts`; containerd is stopped whatever happens.
pub async fn run(opts: &Options) -> Result<()> {
    let started = Instant::now();
    let started_at = SystemTime::now();
    ensure!(
        opts.driver == Driver::Cgroupfs || (crate::systemd::runs() && crate::cgroups::is_v2()),
        "--systemd needs a host that runs systemd on the unified cgroup v2 hierarchy"
    );
    eprintln!(
        "berth-bench: {} run, {} cgroup driver: {} latency runs, {} memory rounds at {:?} pods",
        opts.mode(),
        opts.driver.name(),
        opts.runs,
        opts.memory_rounds,
        opts.pod_counts
    );
    let cd = Containerd::start(opts.version).await?;
    let result = async {
        cd.require_berth()?;
        let machine = Machine::describe(&cd, started_at).await?;
        let measured = measure(&cd, opts).await?;
        Ok::<_, anyhow::Error>((machine, measured))
    }
    .await;
    if let Err(e) = &result {
        cd.mark_failed();
        eprintln!("berth-bench: failed: {e:#}");
        eprintln!("berth-bench: containerd log tail:\n{}", cd.log_tail(40));
    }
    let left = cd.stop();
    let (machine, measured) = result?;
    ensure!(
        left.is_empty(),
        "containerd's instance had leftovers once it stopped:\n  {}",
        left.join("\n  ")
    );
    let wall = started.elapsed().as_secs_f64();
    print!("{}", table::text(&measured.rows));
    write_outputs(opts, &machine, wall, &measured)?;
    eprintln!("berth-bench: done in {wall:.0} s");
    Ok(())
}

/// Every figure, then the removal of every pod and the leak check.
async fn measure(cd: &Containerd, opts: &Options) -> Result<Measured> {
    let before = Census::take(cd);
    let pods = Pods::new(cd, opts.driver);
    let measured = figures(&pods, opts).await;
    if measured.is_err() {
        for failure in pods.remove_all_best_effort().await {
            eprintln!("berth-bench: clean-up: {failure}");
        }
        if let Err(e) = pods.release_slices().await {
            eprintln!("berth-bench: clean-up: {e:#}");
        }
    }
    let measured = measured?;
    // The slices are released whatever the leak check found, then both are
    // reported.
    let left = leftovers::check(cd, &before, &pods.created()).await;
    let released = pods.release_slices().await;
    left?;
    released?;
    eprintln!(
        "berth-bench: leak check: the {} pods left no process, mount, cgroup or state",
        pods.created().len()
    );
    Ok(measured)
}

/// The figures in table order. Figures 2, 3 and 5 need app containers
/// (`containers.rs`).
async fn figures(pods: &Pods<'_>, opts: &Options) -> Result<Measured> {
    let lifecycle = latency::pod_lifecycle(pods, opts.runs).await?;
    let mut rows = lifecycle.run_pod;
    rows.extend(containers::create_start(pods, opts.runs).await?);
    if opts.pods_only {
        rows.extend(lifecycle.stop_remove);
        return Ok(Measured {
            rows,
            observations: Vec::new(),
        });
    }
    rows.extend(containers::fifty_pods(pods, opts.batch_pods, opts.runs).await?);
    rows.extend(lifecycle.stop_remove);
    rows.extend(containers::exit_detection(pods, opts.runs).await?);
    let (memory_rows, observations) =
        memory::memory(pods, &opts.pod_counts, opts.memory_rounds).await?;
    rows.extend(memory_rows);
    Ok(Measured { rows, observations })
}

fn write_outputs(opts: &Options, machine: &Machine, wall: f64, m: &Measured) -> Result<()> {
    let dir = &opts.out_dir;
    std::fs::create_dir_all(dir).with_context(|| format!("mkdir {}", dir.display()))?;
    let json = Results::new(opts, machine, wall, &m.rows, &m.observations).to_json()?;
    write(&dir.join("results.json"), &json)?;
    write(
        &dir.join("table.md"),
        &table::markdown(&m.rows, &caption(opts, machine)),
    )?;
    let title = format!(
        "berth vs runc: pod sandboxes through CRI ({} run, {} cgroup driver)",
        opts.mode(),
        opts.driver.name()
    );
    let subtitle = format!(
        "{}; {}; berth {}; {} runs, {} memory rounds",
        machine.one_line(),
        machine.date,
        machine.berth_commit.as_deref().unwrap_or("?"),
        opts.runs,
        opts.memory_rounds
    );
    chart::write_png(&dir.join("results.png"), &m.rows, &title, &subtitle)?;
    eprintln!(
        "berth-bench: wrote results.json, table.md and results.png in {}",
        dir.display()
    );
    Ok(())
}

/// The line above the Markdown table: when, on what, how many samples.
fn caption(opts: &Options, machine: &Machine) -> String {
    format!(
        "Measured {} on {} (berth {}): {} run, {} cgroup driver, {} samples per latency \
         figure and {} memory rounds per handler, berth and runc alternating; median and p99 \
         by nearest rank. Targets are goals, not assertions.",
        machine.date,
        machine.one_line(),
        machine.berth_commit.as_deref().unwrap_or("?"),
        opts.mode(),
        opts.driver.name(),
        opts.runs,
        opts.memory_rounds
    )
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("write {}", path.display()))
}
