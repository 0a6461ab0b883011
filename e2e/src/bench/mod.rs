//! `berth-bench`: berth against containerd's Go runc shim, through CRI, on one private
//! containerd with both runtime handlers, alternating berth and runc.
//!
//! - [`run`]: the run itself, in table order; [`options`]: the command line;
//! - [`pods`]: running, timing and always removing the bench's pods;
//! - [`latency`] (figures 1, 4), [`containers`] (2, 3, 5: need app containers),
//!   [`memory`] and [`footprint`] (6): the figures;
//! - [`figure`], [`stats`], [`handler`]: a row, its statistics, berth and runc;
//! - [`table`], [`results`], [`chart`], [`machine`]: stdout and Markdown table,
//!   `results.json`, `results.png`, and what it all ran on;
//! - [`leftovers`]: the closing leak check.

pub mod chart;
pub mod containers;
pub mod figure;
pub mod footprint;
pub mod handler;
pub mod latency;
pub mod leftovers;
pub mod machine;
pub mod memory;
pub mod options;
pub mod pods;
pub mod results;
pub mod run;
pub mod stats;
pub mod table;

use anyhow::{bail, Result};

/// `berth-bench` with the arguments after the program name. ^C stops the bench and
/// still cleans up: dropping the run's future drops its containerd.
pub async fn main(args: &[String]) -> Result<()> {
    let Some(opts) = options::parse(args)? else {
        println!("{}", options::USAGE);
        return Ok(());
    };
    tokio::select! {
        result = run::run(&opts) => result,
        _ = tokio::signal::ctrl_c() => bail!("interrupted; containerd stopped and swept"),
    }
}

/// Reports progress on stderr: each time another tenth of `total` is done.
fn progress(what: &str, done: usize, total: usize) {
    let tenth = |n: usize| n * 10 / total.max(1);
    if done == total || tenth(done) != tenth(done.saturating_sub(1)) {
        eprintln!("berth-bench: {what} {done}/{total}");
    }
}
