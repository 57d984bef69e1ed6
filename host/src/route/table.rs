//! The route table: which route serves a path. Read once per request, without a lock; routes
//! added later (an app dropped into `--apps`) go in by a swap of the whole table.

use super::Route;
use arc_swap::ArcSwap;
use std::sync::Arc;

/// The routes being served, longest prefix first.
#[derive(Default)]
pub struct RouteTable {
    routes: ArcSwap<Vec<Arc<Route>>>,
}

impl RouteTable {
    /// A table of `routes`.
    pub fn new(routes: Vec<Arc<Route>>) -> Self {
        let table = RouteTable::default();
        for route in routes {
            // The configuration has already refused duplicates.
            let _ = table.insert(route);
        }
        table
    }

    /// The route serving `path`: the longest prefix that matches on a segment boundary.
    pub fn find(&self, path: &str) -> Option<Arc<Route>> {
        self.routes
            .load()
            .iter()
            .find(|route| matches(&route.prefix, path))
            .cloned()
    }

    /// The route named `name`.
    pub fn get(&self, name: &str) -> Option<Arc<Route>> {
        self.routes
            .load()
            .iter()
            .find(|route| &*route.name == name)
            .cloned()
    }

    /// Every route, longest prefix first.
    pub fn all(&self) -> Arc<Vec<Arc<Route>>> {
        self.routes.load_full()
    }

    /// Adds `route`, unless one with its name or prefix is already served.
    pub fn insert(&self, route: Arc<Route>) -> Result<(), String> {
        let mut refused = None;
        self.routes.rcu(|routes| {
            if let Some(other) = routes
                .iter()
                .find(|r| r.name == route.name || r.prefix == route.prefix)
            {
                refused = Some(format!(
                    "route `{}` ({}) is already served",
                    other.name, other.prefix
                ));
                return routes.clone();
            }
            refused = None;
            let mut next: Vec<Arc<Route>> = routes.as_ref().clone();
            next.push(route.clone());
            // Longest first, so the first match is the longest; `/` last.
            next.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
            Arc::new(next)
        });
        refused.map_or(Ok(()), Err)
    }
}

/// Whether `prefix` (normalized: `/`, or no trailing `/`) matches `path` on a segment boundary:
/// `/api` matches `/api`, `/api/` and `/api/x`, not `/apix`.
pub fn matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn prefixes_match_on_segment_boundaries() {
        assert!(matches("/", "/"));
        assert!(matches("/", "/anything/at/all"));
        assert!(matches("/api", "/api"));
        assert!(matches("/api", "/api/"));
        assert!(matches("/api", "/api/x/y"));
        assert!(!matches("/api", "/apix"));
        assert!(!matches("/api", "/"));
        assert!(!matches("/api/v1", "/api/v2"));
        assert!(matches("/api/v1", "/api/v1/users"));
    }
}
