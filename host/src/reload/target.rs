//! What the reload pipeline of one route works with: the route's parts it feeds ([`Target`]:
//! its slot, store settings, compiler tier and metrics, not the route itself), and the host's
//! parts it compiles with ([`Pipeline`]).

use crate::cli::TierMode;
use crate::component::cache::CompileCache;
use crate::engine::{Runtime, StoreSettings};
use crate::events::Events;
use crate::guest::slot::Slot;
use crate::metrics::{RouteMetrics, RouteName};
use std::sync::Arc;

/// The parts of a route its pipeline feeds.
pub struct Target {
    /// The route's name, for log lines.
    pub name: RouteName,
    /// Where its component comes from (a path or `oci://` reference), for log lines and the
    /// generations it makes.
    pub source: String,
    /// The generations it serves.
    pub slot: Arc<Slot>,
    /// What shapes the stores of its requests (and of a trial instance).
    pub store: StoreSettings,
    /// Which compiler makes its new generations' code.
    pub tier: TierMode,
    /// Its series of the metrics.
    pub metrics: RouteMetrics,
}

/// A route's pipeline: its target, and the engines and compile cache of the host.
pub struct Pipeline {
    /// The engines and linkers.
    pub runtime: Arc<Runtime>,
    /// The on-disk compile cache, if on.
    pub cache: Option<Arc<CompileCache>>,
    /// What it feeds.
    pub target: Target,
    /// The dev-mode event bus: a generation that starts serving, or a component refused, is
    /// published into it.
    pub events: Option<Arc<Events>>,
}
