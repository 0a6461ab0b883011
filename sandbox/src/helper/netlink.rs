//! Netlink work inside a pod's network namespace.
//!
//! Runs in the helper, after it entered the namespace: setns is per thread,
//! and the netlink socket must be opened inside the namespace. The tokio
//! runtime here is current-thread, so the helper stays single-threaded.

use futures::TryStreamExt;
use rtnetlink::LinkUnspec;

use crate::error::{Error, Result};

/// Brings the loopback interface of the current network namespace up.
pub fn loopback_up() -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(Error::sys("start netlink runtime"))?;
    runtime.block_on(async {
        let (connection, handle, _) =
            rtnetlink::new_connection().map_err(Error::sys("open netlink socket"))?;
        let connection = tokio::spawn(connection);
        let result = async {
            let lo = handle
                .link()
                .get()
                .match_name("lo".to_owned())
                .execute()
                .try_next()
                .await
                .map_err(netlink_error("find lo"))?
                .ok_or_else(|| Error::Sys {
                    op: "find lo".into(),
                    source: std::io::Error::from(std::io::ErrorKind::NotFound),
                })?;
            handle
                .link()
                .set(LinkUnspec::new_with_index(lo.header.index).up().build())
                .execute()
                .await
                .map_err(netlink_error("set lo up"))
        }
        .await;
        connection.abort();
        result
    })
}

fn netlink_error(op: &'static str) -> impl FnOnce(rtnetlink::Error) -> Error {
    move |e| Error::Sys {
        op: op.into(),
        source: std::io::Error::other(e.to_string()),
    }
}
