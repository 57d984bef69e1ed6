//! Guardrails: a guest that spins, sleeps, hoards memory, traps, floods headers or asks for
//! too much, and clients that come too many at once — each is answered with the documented
//! status, and the host keeps serving everyone else. A guardrail that holds for guests of both
//! worlds (WASI 0.2 and 0.3) is one test run over both. Oversized or slow client input is in
//! `client_limits`.

mod outbound_and_env;
mod time_and_memory;
mod traps_and_capacity;

use hotswap_tests::guests::{self, MISBEHAVE};
use hotswap_tests::health::assert_healthy;
use hotswap_tests::start::{example, misbehave};
use hotswap_tests::upstream::Upstream;
use hotswap_tests::waits::MARGIN;
use hotswap_tests::worlds::{World, both_worlds};
use hotswap_tests::{Client, Server, get, push_leb128, push_section, raw};
use std::path::Path;
use std::time::{Duration, Instant};
