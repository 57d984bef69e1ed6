//! The content digest the host names a component by: the sha256 of its bytes.

use sha2::{Digest, Sha256};

/// The sha256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// The first 12 hex digits of a digest, as log lines show it.
pub fn short(sha256: &[u8; 32]) -> String {
    hex::encode(&sha256[..6])
}
