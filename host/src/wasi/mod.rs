//! What guests import beyond `wasi:http`, and what the host gives them: `wasi:keyvalue`
//! ([`keyvalue`]), `wasi:config/store` ([`config_store`]), outbound HTTP under the operator's
//! rules ([`outbound`]), and their stdout and stderr as log lines ([`stdio`]).

pub mod config_store;
pub mod keyvalue;
pub mod outbound;
pub mod stdio;
