//! Reading `hotswap.toml`: finding the file, parsing it into its sections with errors that name
//! the key, the value and the file, and the `[config]` values guests read.

use super::{DEFAULT_FILE, FileConfig};
use crate::wasi::config_store::ConfigValues;
use anyhow::{Context, Result};
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A configuration file and where it was read from.
pub struct Loaded {
    /// The parsed settings.
    pub file: FileConfig,
    /// The file's path, for error messages.
    pub path: PathBuf,
    /// Its directory: relative paths in the file are relative to it.
    pub dir: PathBuf,
}

impl Loaded {
    /// Resolves a path written in the file against the file's directory.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.dir.join(p)
        }
    }
}

/// Reads `explicit`, or `hotswap.toml` in the working directory if it exists.
pub fn load(explicit: Option<&Path>) -> Result<Option<Loaded>> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None => {
            let p = PathBuf::from(DEFAULT_FILE);
            if !p.is_file() {
                return Ok(None);
            }
            p
        }
    };
    let path = std::path::absolute(&path)
        .with_context(|| format!("cannot resolve `{}`", path.display()))?;
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("failed to read the configuration file `{}`", path.display()))?;
    let file = parse(&text).map_err(|e| in_file(&path, &e))?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    Ok(Some(Loaded { file, path, dir }))
}

/// Why a file does not parse: the key of a bad value (when one is to blame) and what is wrong.
#[derive(Debug)]
pub struct ParseError {
    key: Option<String>,
    message: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.key {
            Some(key) => write!(f, "`{key}`: {}", self.message),
            None => write!(f, "{}", self.message),
        }
    }
}

/// `error` as said of the file at `path`.
fn in_file(path: &Path, error: &ParseError) -> anyhow::Error {
    match &error.key {
        Some(key) => anyhow::anyhow!("`{key}` in `{}`: {}", path.display(), error.message),
        None => anyhow::anyhow!(
            "invalid configuration file `{}`: {}",
            path.display(),
            error.message
        ),
    }
}

/// Parses a configuration file's text, every value typed.
pub fn parse(text: &str) -> Result<FileConfig, ParseError> {
    let deserializer = toml::Deserializer::parse(text).map_err(|e| ParseError {
        key: None,
        message: e.to_string(),
    })?;
    let mut file: FileConfig =
        serde_path_to_error::deserialize(deserializer).map_err(|e| ParseError {
            key: Some(e.path().to_string()).filter(|p| p != "." && !p.is_empty()),
            message: e.inner().to_string(),
        })?;
    file.limits.guest = typed("limits", std::mem::take(&mut file.limits.rest))?;
    for (i, route) in file.route.iter_mut().enumerate() {
        route.limits = typed(&format!("route[{i}]"), std::mem::take(&mut route.rest))?;
    }
    Ok(file)
}

/// The keys of `table` (the section named `section`) as a `T`, each bad value named by its key.
fn typed<T: DeserializeOwned>(section: &str, table: toml::Table) -> Result<T, ParseError> {
    serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
        let path = e.path().to_string();
        let key = if path == "." || path.is_empty() {
            section.to_string()
        } else {
            format!("{section}.{path}")
        };
        ParseError {
            key: Some(key),
            message: e.inner().to_string(),
        }
    })
}

/// The `[component.config]` values of the file at `path`, read again (on save in dev mode, on
/// SIGHUP or `POST /reload`).
pub fn values_of(path: &Path) -> Result<ConfigValues> {
    let loaded = load(Some(path))?.ok_or_else(|| anyhow::anyhow!("the file is gone"))?;
    config_values(&loaded)
}

/// The `[component.config]` values of a loaded file, as strings.
pub fn config_values(loaded: &Loaded) -> Result<ConfigValues> {
    let Some(table) = &loaded.file.component.config else {
        return Ok(ConfigValues::default());
    };
    let mut values = BTreeMap::new();
    for (key, value) in table {
        let text = match value {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            _ => anyhow::bail!(
                "`component.config.{key}` in `{}` must be a string, a number or a boolean",
                loaded.path.display()
            ),
        };
        values.insert(key.clone(), text);
    }
    Ok(ConfigValues(values))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_starter_file_parses() {
        let file = parse(&super::super::super::defaults::starter()).unwrap();
        assert_eq!(file.component.path.as_deref(), Some(Path::new("app.wasm")));
    }

    #[test]
    fn unknown_keys_are_named() {
        for (text, named) in [
            ("[limits]\nmax_memroy = \"1MiB\"\n", "max_memroy"),
            ("[servr]\n", "servr"),
            (
                "[[route]]\nprefix = \"/\"\npath = \"a.wasm\"\nmax_memroy = 1\n",
                "max_memroy",
            ),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(named), "{text}: {err}");
        }
    }

    #[test]
    fn bad_values_are_named_by_their_key_and_typed_at_parse_time() {
        for (text, key, says) in [
            (
                "[limits]\nmax_memory = \"lots\"\n",
                "limits.max_memory",
                "invalid size `lots`",
            ),
            (
                "[watch]\ndebounce = \"soon\"\n",
                "watch.debounce",
                "invalid duration `soon`",
            ),
            (
                "[[route]]\nprefix = \"/\"\npath = \"a.wasm\"\n[[route]]\nprefix = \"/b\"\npath = \"b.wasm\"\nrequest_timeout = \"never\"\n",
                "route[1].request_timeout",
                "invalid duration `never`",
            ),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(key) && err.contains(says), "{text}: {err}");
        }
        let file = parse(
            "[limits]\nmax_memory = \"64MiB\"\nmax_body_size = 4096\nrequest_timeout = \"5s\"\n\
             header_read_timeout = \"3s\"\n",
        )
        .unwrap();
        assert_eq!(file.limits.guest.max_memory, Some(64 << 20));
        assert_eq!(file.limits.guest.max_body_size, Some(4096));
        assert_eq!(
            file.limits.guest.request_timeout,
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            file.limits.header_read_timeout,
            Some(Duration::from_secs(3))
        );
    }

    #[test]
    fn config_values_are_strings_numbers_or_booleans() {
        let loaded = |text: &str| Loaded {
            file: parse(text).unwrap(),
            path: PathBuf::from("/x/hotswap.toml"),
            dir: PathBuf::from("/x"),
        };
        let values = config_values(&loaded(
            "[component.config]\nname = \"a\"\nport = 8080\nratio = 0.5\non = true\n",
        ))
        .unwrap();
        let pairs: Vec<(&str, &str)> = values
            .0
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("name", "a"),
                ("on", "true"),
                ("port", "8080"),
                ("ratio", "0.5")
            ]
        );
        let err = config_values(&loaded("[component.config]\nlist = [1]\n")).unwrap_err();
        assert!(err.to_string().contains("component.config.list"), "{err}");
    }
}
