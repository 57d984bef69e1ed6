//! What the host says about itself beyond metrics: its log lines (`telemetry/logs.rs`) and, when an OTLP
//! endpoint is configured, OpenTelemetry traces ([`traces`]).
//!
//! A leaf: it imports nothing of the crate. Callers hand it plain values (names, numbers,
//! headers) and the counters it keeps.

mod logs;
pub mod traces;

pub use logs::{LOG_ENV, init};
