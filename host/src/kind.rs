//! The two kinds every layer names a generation by: which `wasi:http` it speaks ([`World`])
//! and which compiler made its code ([`Tier`]). Plain values, so that logs, metrics and
//! `/status` can name them without knowing the engine.

/// Which `wasi:http` a component speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum World {
    /// WASI 0.2: exports `wasi:http/incoming-handler` (the `wasi:http/proxy` world).
    P2,
    /// WASI 0.3: exports `wasi:http/handler` (the `wasi:http/service` world).
    P3,
}

impl World {
    /// Both worlds.
    pub const ALL: [World; 2] = [World::P2, World::P3];

    /// How `/status`, metrics and logs name the world: `wasi:http@0.2` or `wasi:http@0.3`.
    pub fn as_str(self) -> &'static str {
        match self {
            World::P2 => "wasi:http@0.2",
            World::P3 => "wasi:http@0.3",
        }
    }
}

/// Which compiler made a generation's machine code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// Winch, a baseline compiler: compiles several times faster than Cranelift, and its code
    /// runs slower. Used first for large components under `--tier auto`, or always with
    /// `--tier fast`.
    Fast,
    /// Cranelift, an optimising compiler.
    Optimized,
}

impl Tier {
    /// Both tiers.
    pub const ALL: [Tier; 2] = [Tier::Fast, Tier::Optimized];

    /// How `/status`, metrics and logs name the tier: `fast` or `optimized`.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Fast => "fast",
            Tier::Optimized => "optimized",
        }
    }

    /// The compiler of the tier: `Winch` or `Cranelift`.
    pub fn compiler(self) -> &'static str {
        match self {
            Tier::Fast => "Winch",
            Tier::Optimized => "Cranelift",
        }
    }
}
