//! The dev-mode event bus: what the routes' reloads and builds say happened (a generation
//! serves, a build failed or succeeded, a swap was refused), for the browsers that follow the code
//! (`--events-path`, `--live-reload`).
//!
//! Strategy: one tokio broadcast channel of bounded capacity, and beside it each route's last
//! known state (the generation that serves, and a build failure or refusal since), so that a
//! subscriber that connects late starts from a snapshot rather than from nothing. A publisher
//! updates the state and sends under one lock, and a subscriber takes its snapshot and its
//! receiver under the same lock: no event falls between the two. A subscriber that falls more
//! than the channel's capacity behind is not buffered for: it gets a new snapshot instead of
//! the events it missed. Subscribers are capped ([`Events::subscribe`] says no beyond the cap),
//! and [`Events::close`] ends every subscription (shutdown must not wait on streams that never
//! end). A leaf: it imports nothing of the crate.

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast, watch};

/// Most subscribers at once (a browser tab each).
pub const MAX_SUBSCRIBERS: usize = 32;
/// Events a subscriber may fall behind before it is resynchronised with a snapshot.
pub const CHANNEL_CAPACITY: usize = 64;
/// Most bytes of a failed build's output carried by its event.
pub const MAX_OUTPUT_BYTES: usize = 64 << 10;
/// Most lines of a failed build's output carried by its event.
pub const MAX_OUTPUT_LINES: usize = 400;

/// Something that happened to a route, as its subscribers are told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A generation is current in the route's slot (a new build, an upload, a rollback; not a
    /// tier-up, which serves the same code). Sent only once requests get it.
    Serving {
        /// The route's name.
        route: String,
        /// The generation's number.
        generation: u64,
        /// Its component's short sha256, as the logs show it.
        sha256: String,
        /// What brought it (`build`, `file`, `upload`, `rollback`, …).
        trigger: String,
    },
    /// The route's build command failed or ran out of time; the serving generation stays.
    BuildFailed {
        /// The route's name.
        route: String,
        /// The command's exit code (`None`: killed, timed out, or never started).
        exit_code: Option<i32>,
        /// It was stopped at the build timeout.
        timed_out: bool,
        /// The compiler's output (stderr, then stdout), bounded by [`bounded`].
        output: String,
        /// The output was cut to the bounds.
        truncated: bool,
    },
    /// The route's build command succeeded: a failure before it is no longer outstanding (its
    /// component may still be the one that serves: then no `serving` follows).
    Built {
        /// The route's name.
        route: String,
    },
    /// A new component was refused (it does not read, compile or validate); the serving
    /// generation stays.
    Refused {
        /// The route's name.
        route: String,
        /// Why.
        reason: String,
        /// The refused component's short sha256, when it was read.
        sha256: Option<String>,
    },
}

impl Event {
    /// A build failure of `route`, its output cut to the bounds.
    pub fn build_failed(
        route: &str,
        exit_code: Option<i32>,
        timed_out: bool,
        output: &str,
    ) -> Event {
        let (output, truncated) = bounded(output);
        Event::BuildFailed {
            route: route.to_string(),
            exit_code,
            timed_out,
            output,
            truncated,
        }
    }

    /// The name of the event on the stream (`event:`).
    pub fn name(&self) -> &'static str {
        match self {
            Event::Serving { .. } => "serving",
            Event::BuildFailed { .. } => "build-failed",
            Event::Built { .. } => "built",
            Event::Refused { .. } => "refused",
        }
    }

    /// The route it is about.
    pub fn route(&self) -> &str {
        match self {
            Event::Serving { route, .. }
            | Event::BuildFailed { route, .. }
            | Event::Built { route }
            | Event::Refused { route, .. } => route,
        }
    }

    /// Its data, as JSON.
    pub fn data(&self) -> Value {
        match self {
            Event::Serving {
                route,
                generation,
                sha256,
                trigger,
            } => json!({
                "route": route, "generation": generation, "sha256": sha256, "trigger": trigger,
            }),
            Event::BuildFailed {
                route,
                exit_code,
                timed_out,
                output,
                truncated,
            } => json!({
                "route": route, "exit_code": exit_code, "timed_out": timed_out,
                "output": output, "truncated": truncated,
            }),
            Event::Built { route } => json!({ "route": route }),
            Event::Refused {
                route,
                reason,
                sha256,
            } => json!({ "route": route, "reason": reason, "sha256": sha256 }),
        }
    }
}

/// `text` cut to [`MAX_OUTPUT_LINES`] lines and [`MAX_OUTPUT_BYTES`] bytes (on a character
/// boundary), and whether it was cut.
pub fn bounded(text: &str) -> (String, bool) {
    let mut end = text.len();
    if let Some((at, _)) = text.match_indices('\n').nth(MAX_OUTPUT_LINES - 1) {
        end = at + 1;
    }
    if end > MAX_OUTPUT_BYTES {
        end = MAX_OUTPUT_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
    }
    (text[..end].to_string(), end < text.len())
}

/// What a subscriber is sent.
#[derive(Debug, Clone)]
pub enum Message {
    /// Every route's state (the filtered route's alone), first on connect and again after the
    /// subscriber fell behind.
    Hello(Value),
    /// One event.
    Event(Arc<Event>),
}

impl Message {
    /// The message in the `text/event-stream` format: `event: NAME`, `data: JSON`, a blank
    /// line. (The JSON is on one line: it escapes every newline of its strings.)
    pub fn sse(&self) -> String {
        let (name, data) = match self {
            Message::Hello(state) => ("hello", state.to_string()),
            Message::Event(event) => (event.name(), event.data().to_string()),
        };
        format!("event: {name}\ndata: {data}\n\n")
    }
}

/// A route's last known state.
#[derive(Default)]
struct RouteState {
    generation: Option<u64>,
    sha256: Option<String>,
    /// A build failure since the serving generation (its event).
    build_failed: Option<Arc<Event>>,
    /// A refusal since the serving generation (its event).
    refused: Option<Arc<Event>>,
}

/// The bus: publishers send, subscribers (at most [`MAX_SUBSCRIBERS`]) receive.
pub struct Events {
    sender: broadcast::Sender<Arc<Event>>,
    routes: Mutex<BTreeMap<String, RouteState>>,
    permits: Arc<Semaphore>,
    closed: watch::Sender<bool>,
}

impl Events {
    /// A bus with room for `max_subscribers`, each of which may fall `capacity` events behind.
    pub fn new(max_subscribers: usize, capacity: usize) -> Arc<Events> {
        Arc::new(Events {
            sender: broadcast::channel(capacity.max(1)).0,
            routes: Mutex::default(),
            permits: Arc::new(Semaphore::new(max_subscribers)),
            closed: watch::channel(false).0,
        })
    }

    fn routes(&self) -> MutexGuard<'_, BTreeMap<String, RouteState>> {
        self.routes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records `event` in its route's state and sends it to every subscriber.
    pub fn publish(&self, event: Event) {
        let event = Arc::new(event);
        let mut routes = self.routes();
        let state = routes.entry(event.route().to_string()).or_default();
        match &*event {
            Event::Serving {
                generation, sha256, ..
            } => {
                state.generation = Some(*generation);
                state.sha256 = Some(sha256.clone());
                state.build_failed = None;
                state.refused = None;
            }
            Event::BuildFailed { .. } => state.build_failed = Some(event.clone()),
            Event::Built { .. } => state.build_failed = None,
            Event::Refused { .. } => state.refused = Some(event.clone()),
        }
        // No subscriber is not an error.
        let _ = self.sender.send(event);
    }

    /// Every route's state (`route`'s alone, if given).
    pub fn snapshot(&self, route: Option<&str>) -> Value {
        snapshot(&self.routes(), route)
    }

    /// A subscription to the events of every route (`route`'s alone, if given), starting with a
    /// snapshot; `None` when [`MAX_SUBSCRIBERS`] are subscribed already, or the bus is closed.
    pub fn subscribe(self: &Arc<Self>, route: Option<String>) -> Option<Subscription> {
        if *self.closed.borrow() {
            return None;
        }
        let permit = self.permits.clone().try_acquire_owned().ok()?;
        let routes = self.routes();
        let receiver = self.sender.subscribe();
        let first = snapshot(&routes, route.as_deref());
        drop(routes);
        Some(Subscription {
            events: self.clone(),
            receiver,
            first: Some(first),
            route,
            closed: self.closed.subscribe(),
            _permit: permit,
        })
    }

    /// Ends every subscription, and refuses new ones (shutdown).
    pub fn close(&self) {
        self.closed.send_replace(true);
    }
}

fn snapshot(routes: &BTreeMap<String, RouteState>, only: Option<&str>) -> Value {
    let list: Vec<Value> = routes
        .iter()
        .filter(|(name, _)| only.is_none_or(|only| only == name.as_str()))
        .map(|(name, state)| {
            json!({
                "route": name,
                "generation": state.generation,
                "sha256": state.sha256,
                "build_failed": state.build_failed.as_ref().map(|e| e.data()),
                "refused": state.refused.as_ref().map(|e| e.data()),
            })
        })
        .collect();
    json!({ "routes": list })
}

/// One subscriber's view of the bus; dropping it frees its place.
pub struct Subscription {
    events: Arc<Events>,
    receiver: broadcast::Receiver<Arc<Event>>,
    first: Option<Value>,
    route: Option<String>,
    closed: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
}

impl Subscription {
    /// The next message: the snapshot first, then each event (of the route asked for), or a
    /// new snapshot after falling behind; `None` once the bus is closed.
    pub async fn next(&mut self) -> Option<Message> {
        if let Some(first) = self.first.take() {
            return Some(Message::Hello(first));
        }
        loop {
            if *self.closed.borrow_and_update() {
                return None;
            }
            let received = tokio::select! {
                received = self.receiver.recv() => received,
                _ = self.closed.changed() => return None,
            };
            match received {
                Ok(event) => {
                    if self.route.as_deref().is_none_or(|r| r == event.route()) {
                        return Some(Message::Event(event));
                    }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::debug!(
                        missed,
                        "an event subscriber fell behind; sending it a new snapshot"
                    );
                    let routes = self.events.routes();
                    self.receiver = self.events.sender.subscribe();
                    let state = snapshot(&routes, self.route.as_deref());
                    drop(routes);
                    let mut state = state;
                    state["resync"] = json!(true);
                    return Some(Message::Hello(state));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// Resolves once the bus is closed.
    pub async fn closed(&mut self) {
        let _ = self.closed.wait_for(|closed| *closed).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serving(route: &str, generation: u64) -> Event {
        Event::Serving {
            route: route.into(),
            generation,
            sha256: format!("{generation:08x}"),
            trigger: "build".into(),
        }
    }

    #[tokio::test]
    async fn a_late_subscriber_starts_from_the_state_and_a_failure_lasts_until_a_new_generation() {
        let events = Events::new(4, 8);
        events.publish(serving("index", 1));
        events.publish(Event::build_failed("index", Some(101), false, "error: x\n"));
        events.publish(serving("api", 3));
        let mut sub = events.subscribe(Some("index".into())).unwrap();
        let Some(Message::Hello(hello)) = sub.next().await else {
            panic!("no snapshot first")
        };
        let routes = hello["routes"].as_array().unwrap();
        assert_eq!(routes.len(), 1, "{hello}");
        assert_eq!(routes[0]["generation"], 1);
        assert_eq!(routes[0]["build_failed"]["exit_code"], 101);
        assert_eq!(routes[0]["build_failed"]["output"], "error: x\n");
        // Another route's event is filtered out; this route's next one arrives.
        events.publish(serving("api", 4));
        events.publish(serving("index", 2));
        let Some(Message::Event(event)) = sub.next().await else {
            panic!("no event")
        };
        assert_eq!(*event, serving("index", 2));
        assert!(events.snapshot(Some("index"))["routes"][0]["build_failed"].is_null());
    }

    #[tokio::test]
    async fn subscribers_are_capped_and_a_lagging_one_is_resynchronised() {
        let events = Events::new(2, 2);
        let mut slow = events.subscribe(None).unwrap();
        let _other = events.subscribe(None).unwrap();
        assert!(events.subscribe(None).is_none(), "a third subscriber");
        drop(_other);
        assert!(events.subscribe(None).is_some(), "a place was freed");
        let _ = slow.next().await; // the snapshot
        for generation in 1..=10 {
            events.publish(serving("index", generation));
        }
        let Some(Message::Hello(state)) = slow.next().await else {
            panic!("a lagging subscriber must get a new snapshot")
        };
        assert_eq!(state["resync"], true);
        assert_eq!(state["routes"][0]["generation"], 10);
        events.publish(serving("index", 11));
        assert!(matches!(slow.next().await, Some(Message::Event(_))));
        events.close();
        assert!(slow.next().await.is_none());
        assert!(events.subscribe(None).is_none());
    }

    #[test]
    fn output_is_bounded_in_lines_and_bytes_and_the_wire_format_is_one_data_line() {
        let many: String = (0..1000).map(|i| format!("line {i}\n")).collect();
        let (cut, truncated) = bounded(&many);
        assert!(truncated);
        assert_eq!(cut.lines().count(), MAX_OUTPUT_LINES);
        let wide = "é".repeat(MAX_OUTPUT_BYTES);
        let (cut, truncated) = bounded(&wide);
        assert!(truncated && cut.len() <= MAX_OUTPUT_BYTES);
        assert_eq!(bounded("short\n"), ("short\n".to_string(), false));
        let sse = Message::Event(Arc::new(Event::build_failed("a", None, true, "x\ny\n"))).sse();
        assert!(sse.starts_with("event: build-failed\ndata: {"), "{sse}");
        assert_eq!(sse.matches('\n').count(), 3, "{sse}");
    }
}
