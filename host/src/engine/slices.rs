//! How guests share a worker thread: the epoch ticker and the slices a running guest gets
//! before it yields to the other requests on its worker.
//!
//! A guest runs on the tokio task of its request; a guest that runs long is made to yield
//! (wasmtime's epoch callback) so that the tasks queued behind it on its worker get their
//! turn. How long it runs between yields is a trade:
//! - While requests of **several routes** arrive, routes are kept apart: a guest yields at
//!   every [`EPOCH_TICK`] (100 µs) once it has run [`FIRST_SLICE`] (2 ms), so a route spinning
//!   at its cap costs another route's requests a few hundred microseconds.
//! - While **one route** has all the traffic, its requests are alike, and fine slices only
//!   interleave them: 32 Python requests of 4–5 ms each, switched every 100 µs, took 5.2–6.7 ms
//!   of CPU a request (each turn runs in a different 20 MB memory) against 3.3–3.6 ms run to
//!   the end (BENCHMARKS.md). So a guest runs up to [`SOLO_SLICE`] (10 ms) per poll of its
//!   task, most requests end in their first, and requests are served first come, first
//!   served, as a host without yields serves them. A guest that has run [`LONG_RUN`] (50 ms)
//!   in all is taken for a spinner and yields at every tick from then on, so that it delays
//!   the requests arriving behind it no more than it would another route's.
//!
//! Run time is counted per request while its guest's task is polled ([`timed`]): a guest that
//! waited (for its request body, for room to write its response, or behind other guests after
//! a yield) is not charged for the wait.

use std::cell::Cell;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How often the epoch ticks while a guest yields at every tick: a spinning guest yields at
/// this interval and is stopped at most this late after its deadline. A worker thread
/// round-robins its running guests, and a newly arrived request waits for the guests queued
/// ahead of it on its worker to use up their slices, so this bounds what a route spinning at
/// its cap costs another route's requests
/// (`routes::a_spinning_route_leaves_the_other_routes_latency_alone`: with 10 ms ticks and a
/// yield per tick from the start, that p99 was 17–44 ms against 0.6 ms alone; with these
/// settings 1.3–1.9 ms against 0.6–1.5 ms).
pub const EPOCH_TICK: Duration = Duration::from_micros(100);
/// How often the epoch ticks while guests yield only at the end of a [`SOLO_SLICE`].
pub const SOLO_EPOCH_TICK: Duration = Duration::from_millis(1);
/// How often the epoch ticks when no guest has yielded for `BUSY_WINDOW` (20 ms): short
/// requests never need a yield, so the ticker need not wake often for them.
pub const IDLE_EPOCH_TICK: Duration = Duration::from_millis(5);
/// How long a request's guest runs before its first yield while several routes have traffic:
/// enough for a short request to finish in one go (a yield puts it behind every other running
/// guest on its worker), while a guest that runs on gets one tick per slice after it.
pub const FIRST_SLICE: Duration = Duration::from_millis(2);
/// How long a guest runs per poll of its task while one route has all the traffic.
pub const SOLO_SLICE: Duration = Duration::from_millis(10);
/// How long a request's guest runs, in all, before it yields at every tick whatever the
/// traffic.
pub const LONG_RUN: Duration = Duration::from_millis(50);
/// How long after a guest last yielded the ticker keeps its faster pace.
const BUSY_WINDOW: Duration = Duration::from_millis(20);
/// How long after requests of two routes last arrived in turn the fine slices stay on.
const MIXED_WINDOW: Duration = Duration::from_secs(1);

/// What the ticker and the guests' epoch callbacks share: when guests last yielded, and
/// whether more than one route has traffic.
pub struct Slicer {
    start: Instant,
    /// When a guest last yielded, in microseconds since `start` (0: never).
    last_yield_us: AtomicU64,
    /// When a guest last yielded at a tick (not at the end of a `SOLO_SLICE`).
    last_fine_us: AtomicU64,
    /// The route that received the latest request (its address, as a key; 0 before any).
    last_route: AtomicUsize,
    /// Until when (microseconds since `start`) several routes count as having traffic.
    mixed_until_us: AtomicU64,
}

/// What the epoch callback of one store tells the guest to do.
#[derive(Debug, PartialEq, Eq)]
pub enum Turn {
    /// Run on.
    Run,
    /// Yield to the other tasks of the worker, then run on.
    Yield,
}

/// When one store's request began.
#[derive(Debug)]
pub struct SliceState {
    /// When the store was made, or its reused instance's current request began.
    started: Instant,
}

impl SliceState {
    /// A store whose request begins now.
    pub fn new() -> Self {
        SliceState {
            started: Instant::now(),
        }
    }

    /// Begins a new request now: a reused instance does as each of its requests begins, so
    /// that a short request on a long-lived store runs without yields too.
    pub fn restart(&mut self) {
        *self = SliceState::new();
    }
}

impl Default for SliceState {
    fn default() -> Self {
        SliceState::new()
    }
}

/// The poll of a [`timed`] future under way on this thread.
#[derive(Clone, Copy, Debug)]
struct Polled {
    /// When it began.
    began: Instant,
    /// How long the future's earlier polls took, together.
    earlier: Duration,
}

thread_local! {
    /// The poll of the [`timed`] future running on this thread, if any.
    static POLL: Cell<Option<Polled>> = const { Cell::new(None) };
}

/// `future`, counting the time its polls take, so that a guest running inside it is charged
/// only for the time it ran: its slices are counted per poll and its run time over all of
/// them. Guest code runs on the polling thread (wasmtime's fibers switch stacks, not
/// threads), so a thread-local carries the count to the epoch callback. A store run outside
/// one (a validation, a reused instance's task) counts wall time since its request began.
pub async fn timed<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut earlier = Duration::ZERO;
    std::future::poll_fn(move |cx| {
        let began = Instant::now();
        let outer = POLL.replace(Some(Polled { began, earlier }));
        let polled = future.as_mut().poll(cx);
        POLL.set(outer);
        earlier += began.elapsed();
        polled
    })
    .await
}

impl Slicer {
    /// A slicer with no route's traffic seen yet.
    pub fn new() -> Self {
        Slicer {
            start: Instant::now(),
            last_yield_us: AtomicU64::new(0),
            last_fine_us: AtomicU64::new(0),
            last_route: AtomicUsize::new(0),
            mixed_until_us: AtomicU64::new(0),
        }
    }

    /// `at` in microseconds since `start`.
    fn us_at(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.start).as_micros()).unwrap_or(u64::MAX)
    }

    fn now_us(&self) -> u64 {
        self.us_at(Instant::now())
    }

    /// Whether `mark` (0: never) is within the last `BUSY_WINDOW`.
    fn recent(&self, mark: &AtomicU64) -> bool {
        let mark = mark.load(Ordering::Relaxed);
        mark != 0 && self.now_us().saturating_sub(mark) <= BUSY_WINDOW.as_micros() as u64
    }

    /// A request for the route keyed `route` (any nonzero number unique to the route) arrived.
    pub fn route_request(&self, route: usize) {
        // A load first: while one route has the traffic, requests only read the line.
        let last = self.last_route.load(Ordering::Relaxed);
        if last != route {
            self.last_route.store(route, Ordering::Relaxed);
            if last == 0 {
                // The host's first request: no other route had traffic before it.
                return;
            }
            let until = self.now_us() + MIXED_WINDOW.as_micros() as u64;
            self.mixed_until_us.store(until, Ordering::Relaxed);
        }
    }

    /// Whether requests of more than one route arrived within the last `MIXED_WINDOW`.
    pub fn mixed(&self) -> bool {
        self.mixed_at(self.now_us())
    }

    /// [`Slicer::mixed`] at `us` microseconds since `start`.
    fn mixed_at(&self, us: u64) -> bool {
        us < self.mixed_until_us.load(Ordering::Relaxed)
    }

    /// The interval until the ticker's next tick.
    pub fn next_tick(&self) -> Duration {
        if self.recent(&self.last_fine_us) {
            EPOCH_TICK
        } else if self.recent(&self.last_yield_us) {
            SOLO_EPOCH_TICK
        } else {
            IDLE_EPOCH_TICK
        }
    }

    /// At an epoch tick seen at `now` by a guest in `state`: whether it runs on or yields.
    pub fn turn(&self, state: &SliceState, now: Instant) -> Turn {
        self.turn_polled(state, now, POLL.get())
    }

    /// [`Slicer::turn`] for a guest inside the poll `polled` of a [`timed`] future, if any.
    fn turn_polled(&self, state: &SliceState, now: Instant, polled: Option<Polled>) -> Turn {
        // The store is made inside a poll, so this poll counts from the later of the two.
        let (this_poll, run) = match polled {
            Some(p) => {
                let this_poll = now.saturating_duration_since(p.began.max(state.started));
                (this_poll, p.earlier + this_poll)
            }
            None => {
                let since = now.saturating_duration_since(state.started);
                (since, since)
            }
        };
        // One clock reading serves the whole decision (0 is "never" to the marks).
        let now_us = self.us_at(now).max(1);
        let fine = self.mixed_at(now_us) || run >= LONG_RUN;
        let ends = if fine {
            run >= FIRST_SLICE
        } else {
            this_poll >= SOLO_SLICE
        };
        if !ends {
            return Turn::Run;
        }
        self.last_yield_us.store(now_us, Ordering::Relaxed);
        if fine {
            self.last_fine_us.store(now_us, Ordering::Relaxed);
        }
        Turn::Yield
    }
}

impl Default for Slicer {
    fn default() -> Self {
        Slicer::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A slicer that has seen only one route's traffic.
    fn solo() -> Slicer {
        let slicer = Slicer::new();
        slicer.route_request(7);
        slicer.route_request(7);
        slicer
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A poll that began at `began`, after earlier polls of `earlier` in all.
    fn poll(began: Instant, earlier: Duration) -> Option<Polled> {
        Some(Polled { began, earlier })
    }

    #[test]
    fn one_route_runs_in_long_slices_counted_per_poll() {
        let slicer = solo();
        assert!(!slicer.mixed());
        let s = SliceState::new();
        let t0 = s.started;
        // Not timed (a validation): the slice runs from the store's start.
        assert_eq!(slicer.turn_polled(&s, t0 + ms(3), None), Turn::Run);
        assert_eq!(slicer.turn_polled(&s, t0 + ms(9), None), Turn::Run);
        assert_eq!(slicer.turn_polled(&s, t0 + ms(11), None), Turn::Yield);
        assert_eq!(slicer.next_tick(), SOLO_EPOCH_TICK);
        // Polled again after a wait, having run 11 ms: a new 10 ms slice from this poll.
        let again = poll(t0 + ms(30), ms(11));
        assert_eq!(slicer.turn_polled(&s, t0 + ms(39), again), Turn::Run);
        assert_eq!(slicer.turn_polled(&s, t0 + ms(41), again), Turn::Yield);
        // A poll that began before the store (it made the store) counts from the store.
        let making = poll(t0 - ms(1000), ms(0));
        assert_eq!(slicer.turn_polled(&s, t0 + ms(9), making), Turn::Run);
        assert_eq!(slicer.turn_polled(&s, t0 + ms(11), making), Turn::Yield);
    }

    #[test]
    fn a_guest_that_has_run_long_yields_at_every_tick_even_alone() {
        let slicer = solo();
        let s = SliceState::new();
        let t0 = s.started;
        // 45 ms run before this poll: after 5 ms more it is a spinner, whatever its slice.
        let spinning = poll(t0 + ms(200), ms(45));
        assert_eq!(slicer.turn_polled(&s, t0 + ms(204), spinning), Turn::Run);
        assert_eq!(slicer.turn_polled(&s, t0 + ms(206), spinning), Turn::Yield);
        assert_eq!(slicer.next_tick(), EPOCH_TICK);
        let next = poll(t0 + ms(300), ms(51));
        assert_eq!(slicer.turn_polled(&s, t0 + ms(300), next), Turn::Yield);
    }

    #[test]
    fn two_routes_in_turn_get_a_yield_at_every_tick_after_the_first_slice() {
        let slicer = solo();
        slicer.route_request(8);
        assert!(slicer.mixed());
        let mut s = SliceState::new();
        let t0 = s.started;
        let first = poll(t0, ms(0));
        assert_eq!(slicer.turn_polled(&s, t0 + ms(1), first), Turn::Run);
        assert_eq!(slicer.turn_polled(&s, t0 + ms(3), first), Turn::Yield);
        assert_eq!(slicer.next_tick(), EPOCH_TICK);
        // A new poll gives no new slice; the time it waited is not charged either.
        let later = poll(t0 + ms(50), ms(3));
        assert_eq!(slicer.turn_polled(&s, t0 + ms(50), later), Turn::Yield);
        let waited = poll(t0 + ms(50), ms(1));
        assert_eq!(slicer.turn_polled(&s, t0 + ms(50), waited), Turn::Run);
        // A reused instance's next request starts afresh.
        s.restart();
        assert_eq!(slicer.turn(&s, Instant::now()), Turn::Run);
    }

    #[test]
    fn the_ticker_idles_when_no_guest_yielded_lately() {
        let slicer = solo();
        std::thread::sleep(BUSY_WINDOW + ms(5));
        assert_eq!(slicer.next_tick(), IDLE_EPOCH_TICK);
    }

    #[tokio::test]
    async fn a_timed_future_counts_its_polls_and_restores_the_outer_one() {
        assert!(POLL.get().is_none());
        let seen = timed(async {
            let first = POLL.get().expect("inside a poll");
            std::thread::sleep(ms(3));
            tokio::task::yield_now().await;
            let second = POLL.get().expect("inside a poll");
            (first, second)
        })
        .await;
        assert_eq!(seen.0.earlier, Duration::ZERO);
        assert!(seen.1.began > seen.0.began, "{seen:?}");
        assert!(seen.1.earlier >= ms(3), "{seen:?}");
        assert!(POLL.get().is_none());
    }
}
