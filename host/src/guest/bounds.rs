//! What one route's guests run with ([`Bounds`]), and the bounds of a shadow candidate's copies
//! of its requests ([`Bounds::shadow`]).

use super::orphans::Orphans;
use crate::config::GuestLimits;
use crate::engine::StoreSettings;
use crate::metrics::RouteMetrics;
use crate::wasi::outbound::OutboundPolicy;
use std::sync::Arc;

/// What one route's guests run with, shared by its requests.
pub struct Bounds {
    /// What shapes their stores.
    pub store: StoreSettings,
    /// Their limits.
    pub limits: GuestLimits,
    /// The route's series of the metrics.
    pub metrics: RouteMetrics,
    /// Its guests whose client went away.
    pub orphans: Orphans,
    /// A failure's 500 body carries the guest's error (dev mode).
    pub expose_errors: bool,
}

impl Bounds {
    /// The bounds of a shadow candidate of this route: the same limits, no outbound network,
    /// key-value writes to a scratch space of its own (dropped with the returned bounds), and a
    /// fresh instance per copy (a WASI 0.3 generation's reused instances are the current's);
    /// its failures are logged and counted as the route's.
    pub fn shadow(&self) -> Bounds {
        Bounds {
            store: StoreSettings {
                outbound: OutboundPolicy::shadow(),
                keyvalue: Arc::new(self.store.keyvalue.scratch()),
                ..self.store.clone()
            },
            // A reused instance would keep the shadow's store settings after a promotion.
            limits: GuestLimits {
                instance_reuse: 1,
                ..self.limits.clone()
            },
            metrics: self.metrics.clone(),
            orphans: Orphans::new(self.limits.max_concurrency, self.metrics.clone()),
            expose_errors: self.expose_errors,
        }
    }
}
