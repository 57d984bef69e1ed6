//! The crate's layering, checked: every top-level module has a layer, and a module imports
//! only from its own layer and the layers under it, never from above; the leaves import nothing
//! of the crate; and no two top-level modules import each other, directly or through others.
//! A new module fails this test until it is given its place in [`LAYERS`].
//!
//! Imports are read from the sources as `crate::NAME` paths (including `use crate::{a, b}`
//! groups), outside comments and outside `#[cfg(test)]` items, as `../shared/tools/
//! module-cycles.py` reads them. `super::` paths stay inside a module and are not imports
//! between modules.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every top-level module and its layer, from the top (1) to the leaves (10).
const LAYERS: &[(&str, u8)] = &[
    ("app", 1),
    ("http", 2),
    ("admin", 2),
    ("route", 3),
    ("reload", 4),
    ("guest", 5),
    ("component", 6),
    ("engine", 7),
    ("config", 8),
    ("wasi", 9),
    ("cli", 10),
    ("metrics", 10),
    ("telemetry", 10),
    ("signals", 10),
    ("process", 10),
    ("watcher", 10),
    ("atomic_write", 10),
    ("private_dir", 10),
    ("digest", 10),
    ("names", 10),
    ("kind", 10),
    ("events", 10),
];

/// The layer of the leaves, which import nothing of the crate.
const LEAF: u8 = 10;

/// Modules compiled for tests only, which may use anything.
const TEST_ONLY: &[&str] = &["vendored_tests", "layering_tests"];

/// `text` without comments, string literals' contents and `#[cfg(test)]` items.
fn strip(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        if text[i..].starts_with("//") {
            i = text[i..].find('\n').map_or(bytes.len(), |n| i + n);
        } else if text[i..].starts_with("/*") {
            i = text[i + 2..]
                .find("*/")
                .map_or(bytes.len(), |n| i + 2 + n + 2);
        } else if bytes[i] == b'"' {
            // Skip a string literal (escapes included); raw strings hold no `crate::` that
            // matters here.
            i += 1;
            while i < bytes.len() && bytes[i] != b'"' {
                i += if bytes[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if text[i..].starts_with("#[cfg(test)]") {
            i += "#[cfg(test)]".len();
            // The item: up to its `;`, or its braced body.
            let rest = &text[i..];
            match (rest.find('{'), rest.find(';')) {
                (Some(open), Some(semi)) if semi < open => i += semi + 1,
                (Some(open), _) => {
                    let mut depth = 0usize;
                    let mut k = i + open;
                    while k < bytes.len() {
                        match bytes[k] {
                            b'{' => depth += 1,
                            b'}' => {
                                depth -= 1;
                                if depth == 0 {
                                    break;
                                }
                            }
                            _ => {}
                        }
                        k += 1;
                    }
                    i = k + 1;
                }
                (None, Some(semi)) => i += semi + 1,
                (None, None) => i = bytes.len(),
            }
        } else {
            let c = text[i..].chars().next().expect("inside the text");
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// The top-level modules `text` imports (`crate::NAME…`, and the names of `use crate::{…}`).
fn imports(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            // `use crate::{a, b::C, c::{D, E}}`: the first name of each top-level item.
            let mut depth = 0usize;
            let mut item = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        found.insert(first_name(&item));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
            found.insert(first_name(&item));
        } else {
            found.insert(first_name(rest));
        }
    }
    found.remove("");
    found
}

fn first_name(path: &str) -> String {
    path.trim_start()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// Every `.rs` file under `dir`.
fn files(dir: &Path, into: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read the source directory") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            files(&path, into);
        } else if path.extension().is_some_and(|e| e == "rs") {
            into.push(path);
        }
    }
}

/// The imports between the crate's top-level modules: importer → imported → the files.
fn edges(src: &Path) -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let mut all = Vec::new();
    files(src, &mut all);
    let modules: BTreeSet<String> = all
        .iter()
        .map(|f| top_module(src, f))
        .filter(|m| m != "(root)")
        .collect();
    let mut edges: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for file in &all {
        let from = top_module(src, file);
        if from == "(root)" || TEST_ONLY.contains(&from.as_str()) {
            continue;
        }
        let text = strip(&std::fs::read_to_string(file).expect("read a source file"));
        for to in imports(&text) {
            if to != from && modules.contains(&to) {
                let shown = file.strip_prefix(src).unwrap_or(file).display().to_string();
                edges
                    .entry(from.clone())
                    .or_default()
                    .entry(to)
                    .or_default()
                    .insert(shown);
            }
        }
    }
    edges
}

fn top_module(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("under the source directory");
    let first = rel
        .components()
        .next()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .unwrap_or_default();
    match first.strip_suffix(".rs") {
        Some("lib" | "main") => "(root)".to_string(),
        Some(name) => name.to_string(),
        None => first,
    }
}

/// The sets of two or more modules that import each other (Tarjan's strongly connected
/// components).
fn cycles(edges: &BTreeMap<String, BTreeMap<String, BTreeSet<String>>>) -> Vec<Vec<String>> {
    struct Tarjan<'a> {
        edges: &'a BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        found: Vec<Vec<String>>,
    }
    impl<'a> Tarjan<'a> {
        fn visit(&mut self, v: &'a str) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            for w in self.edges.get(v).into_iter().flat_map(|m| m.keys()) {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v, low);
                } else if self.stack.contains(&w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    component.push(w.to_string());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut tarjan = Tarjan {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        found: Vec::new(),
    };
    for v in edges.keys() {
        if !tarjan.index.contains_key(v.as_str()) {
            tarjan.visit(v);
        }
    }
    tarjan.found
}

#[test]
fn no_module_imports_from_above_its_layer_and_none_import_each_other() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let edges = edges(&src);
    let layer = |m: &str| LAYERS.iter().find(|(n, _)| *n == m).map(|(_, l)| *l);
    let mut problems = Vec::new();

    let mut all = Vec::new();
    files(&src, &mut all);
    let modules: BTreeSet<String> = all.iter().map(|f| top_module(&src, f)).collect();
    for module in &modules {
        if module != "(root)" && !TEST_ONLY.contains(&module.as_str()) && layer(module).is_none() {
            problems.push(format!(
                "module `{module}` has no layer: give it one in `LAYERS` (host/src/layering_tests.rs)"
            ));
        }
    }
    for (from, tos) in &edges {
        for (to, where_) in tos {
            let (Some(a), Some(b)) = (layer(from), layer(to)) else {
                continue;
            };
            if a == LEAF {
                problems.push(format!(
                    "`{from}` is a leaf but imports `{to}` (in {})",
                    where_.iter().cloned().collect::<Vec<_>>().join(", ")
                ));
            } else if b < a {
                problems.push(format!(
                    "`{from}` (layer {a}) imports `{to}` (layer {b}, above it) in {}",
                    where_.iter().cloned().collect::<Vec<_>>().join(", ")
                ));
            }
        }
    }
    for cycle in cycles(&edges) {
        problems.push(format!(
            "these modules import each other: {}",
            cycle.join(", ")
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_reader_finds_imports_and_cycles() {
    let text = strip(
        "use crate::{a, b::C, c::{D, E}};\n// crate::commented\nfn f() { crate::d::g(); \
         let s = \"crate::in_a_string\"; }\n#[cfg(test)]\nmod tests { use crate::tested; }\n\
         use super::crate_like; mycrate::x();",
    );
    assert_eq!(
        imports(&text),
        ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect()
    );
    let mut edges: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for (from, to) in [("x", "y"), ("y", "z"), ("z", "x"), ("z", "w")] {
        edges
            .entry(from.into())
            .or_default()
            .insert(to.into(), BTreeSet::new());
    }
    assert_eq!(cycles(&edges), [["x", "y", "z"]]);
}
