//! The admin listener's `/status`, as the tests read it.

use crate::{Server, get};

/// The admin API's `/status` as JSON.
pub async fn status(server: &Server) -> serde_json::Value {
    let text = get(server.admin.unwrap(), "/status").await.unwrap().text();
    serde_json::from_str(&text).unwrap()
}
