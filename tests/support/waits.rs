//! How long a test waits for what the host does on its own time, and waiting for a swap.

use crate::{Reply, Server, eventually, get};
use std::time::Duration;

/// Slack on top of a configured deadline or timeout before a test calls an answer late (a busy
/// 2-core machine, the 10 ms epoch tick, process scheduling).
pub const MARGIN: Duration = Duration::from_secs(3);

/// How long a swap, a new app or a rebuild may take to show up (debounce + compile on a busy
/// 2-core machine).
pub const SWAP_WAIT: Duration = Duration::from_secs(30);

/// How long a log line may take to reach the test after the event it reports.
pub const LOG_WAIT: Duration = Duration::from_secs(10);

/// Waits until `GET /` is served by generation `n`, and returns that reply.
pub async fn wait_for_generation(server: &Server, n: u64) -> Reply {
    eventually(SWAP_WAIT, || async {
        get(server.addr, "/")
            .await
            .ok()
            .filter(|r| r.generation() == Some(n))
    })
    .await
    .unwrap_or_else(|| panic!("generation {n} never served; log:\n{}", server.log()))
}
