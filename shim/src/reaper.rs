//! The shim's one SIGCHLD reaper.
//!
//! The shim is a child subreaper: pause and, later, containers' init
//! processes reparent to it when the helper that started them exits. This
//! module alone calls `waitpid`. Everyone interested in exits subscribes
//! *before* starting a process and filters its subscription for the pid, so
//! an exit that happens before the pid is known is still delivered, and no
//! exit is ever stolen by another waiter.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use berth_sandbox::state::ProcessRecord;

use crate::process::Tracked;

/// One exited process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    pub pid: i32,
    /// The exit code, or 128 + the signal that killed it (the shell's and
    /// containerd's convention).
    pub status: u32,
    pub at: SystemTime,
}

/// Held by each reap, and by [`unreaped`] around a spawn.
static REAPING: Mutex<()> = Mutex::new(());

/// Runs `spawn` while no reap happens. std's spawn waits for a child that
/// fails to exec (whenever it forks: with `pre_exec`), and panics if the
/// child was reaped before it could: by this reaper, `waitpid(-1)`.
pub fn unreaped<T>(spawn: impl FnOnce() -> T) -> T {
    let _no_reaping = REAPING.lock().unwrap_or_else(|p| p.into_inner());
    spawn()
}

#[derive(Default)]
pub struct Reaper {
    subscribers: Mutex<Vec<(u64, UnboundedSender<Exit>)>>,
    next_id: AtomicU64,
}

/// Exits seen since the subscription was made, until it is dropped. A
/// subscription serves the one process it is taken for.
pub struct Subscription {
    id: u64,
    rx: UnboundedReceiver<Exit>,
    reaper: Arc<Reaper>,
    /// The process's exit, if it was already reaped when it was tracked.
    found: Option<Exit>,
}

impl Subscription {
    /// Takes hold of the process the backend started for this subscription.
    ///
    /// Under the reaper's lock a reap and its notification are one step, so
    /// the process is either not reaped yet, and every exit of its pid seen
    /// so far was an earlier holder's of the pid (dropped), or reaped with
    /// its exit queued here: the last one of its pid (kept).
    pub fn track(&mut self, record: ProcessRecord) -> Tracked {
        let _no_reaping = self
            .reaper
            .subscribers
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let process = Tracked::track(record);
        let reaped = !berth_sandbox::process::is_same(record.pid, record.start_time);
        let mut last = None;
        while let Ok(exit) = self.rx.try_recv() {
            if exit.pid == record.pid {
                last = Some(exit);
            }
        }
        if reaped {
            self.found = last;
        }
        process
    }

    /// Waits for the exit of `process`, skipping every other exit, and an
    /// exit of its pid seen while it provably still runs.
    pub async fn wait_for(mut self, process: &Tracked) -> Option<Exit> {
        if let Some(exit) = self.found.take() {
            return Some(exit);
        }
        while let Some(exit) = self.rx.recv().await {
            if exit.pid != process.pid {
                continue;
            }
            if process.may_have_exited() {
                return Some(exit);
            }
            log::debug!("pid {}: an exit of the pid's earlier holder", exit.pid);
        }
        None
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut subs = self
            .reaper
            .subscribers
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        subs.retain(|(id, _)| *id != self.id);
    }
}

impl Reaper {
    pub fn new() -> Arc<Self> {
        Arc::new(Reaper::default())
    }

    /// Starts reaping on SIGCHLD, for the life of the runtime.
    pub fn start(self: &Arc<Self>) -> std::io::Result<()> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut sigchld = signal(SignalKind::child())?;
        let reaper = Arc::clone(self);
        tokio::spawn(async move {
            // Children that exited before the handler existed are reaped too.
            reaper.reap_all();
            while sigchld.recv().await.is_some() {
                reaper.reap_all();
            }
        });
        Ok(())
    }

    pub fn subscribe(self: &Arc<Self>) -> Subscription {
        let (tx, rx) = unbounded_channel();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.subscribers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((id, tx));
        Subscription {
            id,
            rx,
            reaper: Arc::clone(self),
            found: None,
        }
    }

    /// Hands an exit to every subscriber, as a reap does.
    #[cfg(any(test, feature = "fuzz"))]
    pub fn notify(&self, exit: Exit) {
        send(
            &self.subscribers.lock().unwrap_or_else(|p| p.into_inner()),
            exit,
        );
    }

    /// Collects every exited child: SIGCHLDs coalesce, so one signal may
    /// stand for many exits. Each reap is notified under the same hold of
    /// the lock (see [`Subscription::track`]).
    pub(crate) fn reap_all(&self) {
        loop {
            let _no_spawn = REAPING.lock().unwrap_or_else(|p| p.into_inner());
            let subs = self.subscribers.lock().unwrap_or_else(|p| p.into_inner());
            let exit = |pid: Pid, status| Exit {
                pid: pid.as_raw(),
                status,
                at: SystemTime::now(),
            };
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => send(&subs, exit(pid, code as u32)),
                Ok(WaitStatus::Signaled(pid, signal, _)) => {
                    send(&subs, exit(pid, 128 + signal as u32))
                }
                Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::ECHILD) => return,
                Ok(_) => continue,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    log::warn!("waitpid: {e}");
                    return;
                }
            }
        }
    }
}

fn send(subscribers: &[(u64, UnboundedSender<Exit>)], exit: Exit) {
    for (_, tx) in subscribers {
        let _ = tx.send(exit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_exit_reaped_before_the_process_was_tracked_is_its_exit() {
        let (mut child, record) = crate::process::testing::sleeper();
        let pid = record.pid;
        let reaper = Reaper::new();
        let mut sub = reaper.subscribe();
        // An earlier holder's exit, then the process's own: a short exec
        // that was reaped before the backend's answer was read.
        reaper.notify(Exit {
            pid,
            status: 1,
            at: SystemTime::UNIX_EPOCH,
        });
        child.kill().unwrap();
        child.wait().unwrap();
        reaper.notify(Exit {
            pid,
            status: 137,
            at: SystemTime::now(),
        });
        let process = sub.track(record);
        assert!(!process.is_held(), "reaped: no pidfd to hold");
        let exit = tokio::time::timeout(std::time::Duration::from_secs(5), sub.wait_for(&process))
            .await
            .expect("the queued exit is the process's");
        assert_eq!(exit.unwrap().status, 137);
    }

    #[tokio::test]
    async fn a_subscription_sees_exits_made_before_it_asked_for_the_pid() {
        let reaper = Reaper::new();
        let sub = reaper.subscribe();
        reaper.notify(Exit {
            pid: 5,
            status: 1,
            at: SystemTime::UNIX_EPOCH,
        });
        reaper.notify(Exit {
            pid: 7,
            status: 137,
            at: SystemTime::UNIX_EPOCH,
        });
        let exit = sub.wait_for(&Tracked::gone(7)).await.unwrap();
        assert_eq!(exit.status, 137);
        assert!(
            reaper.subscribers.lock().unwrap().is_empty(),
            "dropped subscriptions leave"
        );
    }

    #[tokio::test]
    async fn exits_of_an_earlier_holder_of_the_pid_are_not_the_process_s() {
        let (mut child, record) = crate::process::testing::sleeper();
        let pid = record.pid;
        let reaper = Reaper::new();
        let mut sub = reaper.subscribe();
        // An earlier process with this pid, reaped before the backend
        // handed the new one over.
        let stale = Exit {
            pid,
            status: 1,
            at: SystemTime::UNIX_EPOCH,
        };
        reaper.notify(stale);
        let process = sub.track(record);
        assert!(process.is_held());
        // And one that shows up while the process provably runs.
        reaper.notify(stale);
        let process = Arc::new(process);
        let wait = tokio::spawn({
            let process = Arc::clone(&process);
            async move { sub.wait_for(&process).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!wait.is_finished(), "the stale exits were skipped");
        process.signal(nix::sys::signal::Signal::SIGKILL).unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.code(), None, "killed");
        reaper.notify(Exit {
            pid,
            status: 128 + 9,
            at: SystemTime::now(),
        });
        let exit = wait.await.unwrap().unwrap();
        assert_eq!(exit.status, 137);
    }

    #[tokio::test]
    async fn an_earlier_holder_s_exit_is_dropped_even_when_the_wait_comes_late() {
        let (mut child, record) = crate::process::testing::sleeper();
        let pid = record.pid;
        let reaper = Reaper::new();
        let mut sub = reaper.subscribe();
        reaper.notify(Exit {
            pid,
            status: 1,
            at: SystemTime::UNIX_EPOCH,
        });
        let process = sub.track(record);
        // The process exits before anyone waits for it.
        process.signal(nix::sys::signal::Signal::SIGKILL).unwrap();
        child.wait().unwrap();
        reaper.notify(Exit {
            pid,
            status: 137,
            at: SystemTime::now(),
        });
        assert_eq!(sub.wait_for(&process).await.unwrap().status, 137);
    }

    #[tokio::test]
    async fn every_subscriber_gets_every_exit() {
        let reaper = Reaper::new();
        let a = reaper.subscribe();
        let b = reaper.subscribe();
        reaper.notify(Exit {
            pid: 3,
            status: 0,
            at: SystemTime::UNIX_EPOCH,
        });
        assert_eq!(a.wait_for(&Tracked::gone(3)).await.unwrap().pid, 3);
        assert_eq!(b.wait_for(&Tracked::gone(3)).await.unwrap().pid, 3);
    }
}
