//! The generation being served, in an [`ArcSwapOption`] slot.
//!
//! Each request takes an owned `Arc<Generation>` out of the slot for its whole life, so a swap
//! never disturbs a request in flight, and an old generation (its compiled code included) is
//! freed when its last request ends.

use crate::loader::Compiled;
use arc_swap::{ArcSwap, ArcSwapOption};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use crate::engine::HostState;

/// One successfully loaded version of the component.
pub struct Generation {
    /// Counts up from 1 per successful load.
    pub number: u64,
    /// Pre-instantiated component; each request instantiates from it.
    pub pre: ProxyPre<HostState>,
    /// sha256 of the component bytes.
    pub sha256: [u8; 32],
    /// Size of the component bytes.
    pub size: usize,
    /// Where the bytes were read from.
    pub source: PathBuf,
    /// When this generation started serving.
    pub loaded_at: SystemTime,
    /// How long compilation took.
    pub compile_time: Duration,
    in_flight: AtomicUsize,
}

impl Generation {
    /// The first 12 hex digits of the sha256, for log lines.
    pub fn short_hash(&self) -> String {
        hex::encode(&self.sha256[..6])
    }

    /// Requests of this generation that have not finished yet.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Marks a request as running on this generation until the guard drops. The guard keeps the
    /// generation alive.
    pub fn enter(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight { generation: self.clone() }
    }
}

/// A request running on a generation; see [`Generation::enter`].
pub struct InFlight {
    generation: Arc<Generation>,
}

impl InFlight {
    /// The generation serving this request.
    pub fn generation(&self) -> &Arc<Generation> {
        &self.generation
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.generation.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The swap slot: the current generation, or why there is none.
pub struct Slot {
    current: ArcSwapOption<Generation>,
    next_number: AtomicU64,
    unavailable: ArcSwap<String>,
}

impl Default for Slot {
    fn default() -> Self {
        Slot {
            current: ArcSwapOption::empty(),
            next_number: AtomicU64::new(1),
            unavailable: ArcSwap::from_pointee("no component has been loaded yet".to_string()),
        }
    }
}

impl Slot {
    /// The generation new requests should use, if any.
    pub fn current(&self) -> Option<Arc<Generation>> {
        self.current.load_full()
    }

    /// Why no generation is being served (meaningful only while [`Slot::current`] is `None`).
    pub fn unavailable_reason(&self) -> Arc<String> {
        self.unavailable.load_full()
    }

    /// Records why there is no generation to serve.
    pub fn set_unavailable_reason(&self, reason: String) {
        self.unavailable.store(Arc::new(reason));
    }

    /// Makes `compiled` the current generation, numbered one past the last, and returns it.
    /// Requests already running keep the generation they started with.
    pub fn install(&self, compiled: Compiled, sha256: [u8; 32], size: usize, source: PathBuf) -> Arc<Generation> {
        let generation = Arc::new(Generation {
            number: self.next_number.fetch_add(1, Ordering::Relaxed),
            pre: compiled.pre,
            sha256,
            size,
            source,
            loaded_at: SystemTime::now(),
            compile_time: compiled.compile_time,
            in_flight: AtomicUsize::new(0),
        });
        self.current.store(Some(generation.clone()));
        generation
    }
}
