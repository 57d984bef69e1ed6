//! The two `wasi:http` worlds a guest can target, each with its misbehaving test guest. A
//! guardrail that holds for both is shown by one test run over both ([`both_worlds`]).

use crate::Server;
use crate::guests::{MISBEHAVE, MISBEHAVE_P3};
use std::fmt;
use std::path::Path;

/// A `wasi:http` world, as a guest exports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum World {
    /// WASI 0.2: `wasi:http/proxy`, exporting `incoming-handler` (test guest `misbehave`).
    P2,
    /// WASI 0.3: `wasi:http/service`, exporting `handler@0.3` (test guest `misbehave-p3`).
    P3,
}

impl World {
    /// Both worlds, 0.2 first.
    pub const BOTH: [World; 2] = [World::P2, World::P3];

    /// The path of this world's misbehaving guest: `MISBEHAVE` or `MISBEHAVE_P3`.
    pub fn misbehave_guest(self) -> &'static str {
        match self {
            World::P2 => MISBEHAVE,
            World::P3 => MISBEHAVE_P3,
        }
    }

    /// A server on this world's misbehaving guest.
    pub fn misbehave(self, args: &[&str]) -> Server {
        Server::start(Path::new(self.misbehave_guest()), args)
    }
}

impl fmt::Display for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            World::P2 => "WASI 0.2",
            World::P3 => "WASI 0.3",
        })
    }
}

/// Runs `test` for each world in turn, 0.2 first. A failure says which world it happened in,
/// also when it is raised by a helper that does not know the world.
pub async fn both_worlds(mut test: impl AsyncFnMut(World)) {
    for world in World::BOTH {
        let _named = NamedOnFailure(world);
        test(world).await;
    }
}

/// Says which world failed when a panic unwinds through it.
struct NamedOnFailure(World);

impl Drop for NamedOnFailure {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "the failure above is on {} (guest {})",
                self.0,
                self.0.misbehave_guest()
            );
        }
    }
}
