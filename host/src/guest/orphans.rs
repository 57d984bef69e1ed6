//! Guests whose client went away: how a route gives their capacity back.
//!
//! A guest whose client leaves (a connection closed or an HTTP/2 stream reset before its
//! response is done, or a guest still running after it answered) is not stopped at once: it may
//! have side effects half done (a write upstream, a key-value update), and it runs to its own end
//! within its deadline. But it holds a concurrency slot, and a client that can reset streams for
//! free must not be able to keep a route's every slot busy. So a route keeps its abandoned
//! guests in a list, oldest first, and:
//! - a request that finds no free slot stops the oldest abandoned guest and takes its slot
//!   (clients that are there go before guests nobody waits for), and a guest abandoned while
//!   requests wait for a slot is stopped at once (its client may only be seen leaving after
//!   the next request has started waiting);
//! - abandoned guests hold at most half the route's slots: one more stops the oldest.
//!
//! A stopped guest is logged once at WARN with its request and counted in
//! `hotswap_guest_traps_total{kind="abandoned"}`.

use crate::metrics::RouteMetrics;
use crate::wasi::stdio::RequestTag;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::task::AbortHandle;

/// A route's guests whose client went away, oldest first.
pub struct Orphans {
    list: Mutex<VecDeque<Orphan>>,
    /// Most abandoned guests kept running at once.
    cap: usize,
    /// Requests of the route waiting for a slot right now.
    waiting: AtomicUsize,
    metrics: RouteMetrics,
}

/// A request counted as waiting for a slot while this lives.
pub struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One abandoned guest: its task, and what to log if it is stopped.
pub struct Orphan {
    task: AbortHandle,
    tag: RequestTag,
    generation: u64,
}

impl Orphan {
    /// The guest running as `task`, for request `tag` on `generation`.
    pub fn new(task: AbortHandle, tag: RequestTag, generation: u64) -> Self {
        Orphan {
            task,
            tag,
            generation,
        }
    }
}

impl Orphans {
    /// The list of a route with `max_concurrency` slots: abandoned guests keep at most half.
    pub fn new(max_concurrency: usize, metrics: RouteMetrics) -> Self {
        Orphans {
            list: Mutex::new(VecDeque::new()),
            cap: (max_concurrency / 2).max(1),
            waiting: AtomicUsize::new(0),
            metrics,
        }
    }

    /// Keeps `orphan` running, unless abandoned guests already hold their share of the slots
    /// or a request is waiting for a slot: then the oldest is stopped.
    pub fn adopt(&self, orphan: Orphan) {
        let stopped = {
            let mut list = self.lock();
            list.retain(|o| !o.task.is_finished());
            list.push_back(orphan);
            if list.len() > self.cap {
                list.pop_front()
                    .map(|o| (o, "abandoned guests already hold half the route's slots"))
            } else if self.waiting.load(Ordering::SeqCst) > 0 {
                list.pop_front()
                    .map(|o| (o, "a request is waiting for its slot"))
            } else {
                None
            }
        };
        if let Some((oldest, why)) = stopped {
            self.stop(oldest, why);
        }
    }

    /// Counts a request as waiting for a slot until the guard is dropped, and stops the oldest
    /// abandoned guest still running so that it gets one.
    pub fn wait(&self) -> Waiting<'_> {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        self.give_way();
        Waiting(&self.waiting)
    }

    /// Stops the oldest abandoned guest still running, so that a request that is waiting gets
    /// its slot.
    fn give_way(&self) {
        let oldest = {
            let mut list = self.lock();
            list.retain(|o| !o.task.is_finished());
            list.pop_front()
        };
        if let Some(oldest) = oldest {
            self.stop(oldest, "a request is waiting for its slot");
        }
    }

    fn stop(&self, orphan: Orphan, why: &str) {
        orphan.task.abort();
        self.metrics.trap("abandoned");
        tracing::warn!(
            route = %orphan.tag.route,
            request_id = orphan.tag.id,
            method = %orphan.tag.method,
            path = %orphan.tag.uri.path(),
            generation = orphan.generation,
            "guest stopped: its client went away and {why}"
        );
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Orphan>> {
        self.list.lock().unwrap_or_else(|p| p.into_inner())
    }
}
