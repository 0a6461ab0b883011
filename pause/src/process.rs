//! Attributes of the pause process itself, set once at start-up.

use crate::sys::{self, Errno};

/// Moves to `/`, so that pause does not keep the directory it was started
/// from (and the mount under it) busy.
pub fn chdir_root() -> Result<(), Errno> {
    sys::chdir(c"/")
}

/// Makes pause undumpable. exec made it dumpable again; undumpable, its
/// /proc/<pid> entries belong to root, so another user cannot open
/// /proc/<pid>/root, cwd or fd and look into the pod through them.
pub fn make_undumpable() -> Result<(), Errno> {
    sys::set_undumpable()
}

/// Makes pause adopt the orphans among its descendants. PID 1 of a PID
/// namespace does that already; pause started in its parent's PID namespace
/// must ask to be a child subreaper, or the orphans would go to a reaper
/// outside the pod.
pub fn adopt_orphans() -> Result<(), Errno> {
    if sys::getpid() == 1 {
        return Ok(());
    }
    sys::set_child_subreaper()
}
