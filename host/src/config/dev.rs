//! The dev-mode tools of the public listener: the event stream (`--events-path`) and the
//! live-reload script in guests' HTML pages (`--live-reload`). Both are off in prod mode, where
//! asking for either is an error rather than a setting quietly ignored.

use super::DEFAULT_EVENTS_PATH;
use crate::cli::{Mode, ServeArgs};
use crate::config::file::FileConfig;
use anyhow::{Result, bail, ensure};

/// The prefix every path the host answers itself on the public listener is under.
pub const RESERVED_PREFIX: &str = "/_hotswap/";

/// The event stream and what uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevEvents {
    /// The path it is served at (under [`RESERVED_PREFIX`]).
    pub path: String,
    /// Guests' HTML pages get the live-reload script.
    pub live_reload: bool,
}

/// The event stream's settings in `mode`: `None` when it is off.
pub(super) fn dev_events(
    args: &ServeArgs,
    f: &FileConfig,
    mode: Mode,
) -> Result<Option<DevEvents>> {
    let (path, path_from) = match (&args.events_path, &f.server.events_path) {
        (Some(p), _) => (Some(p.clone()), "`--events-path` (or HOTSWAP_EVENTS_PATH)"),
        (None, Some(p)) => (Some(p.clone()), "`server.events_path`"),
        (None, None) => (None, ""),
    };
    let (live_reload, reload_from) = if args.live_reload {
        (true, "`--live-reload` (or HOTSWAP_LIVE_RELOAD)")
    } else {
        (
            f.server.live_reload.unwrap_or(false),
            "`server.live_reload`",
        )
    };
    let off = path.as_deref() == Some("off");
    if mode == Mode::Prod {
        ensure!(
            !live_reload,
            "{reload_from} is a dev-mode tool: it changes guests' pages; it cannot be used with \
             `--mode prod`"
        );
        ensure!(
            path.is_none() || off,
            "{path_from}: the event stream is a dev-mode tool and is off in prod mode; remove it \
             (or set it to `off`) for `--mode prod`"
        );
        return Ok(None);
    }
    if off {
        ensure!(
            !live_reload,
            "{reload_from} needs the event stream, which {path_from} turns off"
        );
        return Ok(None);
    }
    let path = path.unwrap_or_else(|| DEFAULT_EVENTS_PATH.to_string());
    check_path(&path).map_err(|e| anyhow::anyhow!("{path_from}: {e}"))?;
    Ok(Some(DevEvents { path, live_reload }))
}

/// A path under [`RESERVED_PREFIX`], of plain characters, with no query.
fn check_path(path: &str) -> Result<()> {
    let Some(rest) = path.strip_prefix(RESERVED_PREFIX) else {
        bail!("`{path}` is not under `{RESERVED_PREFIX}` (e.g. `/_hotswap/events`), or `off`");
    };
    ensure!(
        !rest.is_empty()
            && rest
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '_' | '.'))
            && !rest
                .split('/')
                .any(|s| s.is_empty() || s == "." || s == ".."),
        "`{path}` must name a path under `{RESERVED_PREFIX}` of letters, digits, `-`, `_`, `.` \
         and `/`"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(extra: &[&str]) -> ServeArgs {
        let mut argv = vec!["hotswap", "serve", "app.wasm"];
        argv.extend_from_slice(extra);
        match crate::cli::Cli::try_parse_from(argv).unwrap().command {
            Some(crate::cli::Command::Serve(args)) => *args,
            _ => unreachable!(),
        }
    }

    #[test]
    fn on_by_default_in_dev_off_in_prod_and_an_error_when_asked_for_in_prod() {
        let f = FileConfig::default();
        let dev = dev_events(&args(&[]), &f, Mode::Dev).unwrap().unwrap();
        assert_eq!(dev.path, DEFAULT_EVENTS_PATH);
        assert!(!dev.live_reload);
        assert_eq!(dev_events(&args(&[]), &f, Mode::Prod).unwrap(), None);
        let err = dev_events(&args(&["--live-reload"]), &f, Mode::Prod).unwrap_err();
        assert!(err.to_string().contains("--live-reload"), "{err}");
        let err = dev_events(&args(&["--events-path", "/_hotswap/e"]), &f, Mode::Prod).unwrap_err();
        assert!(err.to_string().contains("prod"), "{err}");
        assert_eq!(
            dev_events(&args(&["--events-path", "off"]), &f, Mode::Prod).unwrap(),
            None
        );
    }

    #[test]
    fn live_reload_needs_the_stream_and_the_path_is_reserved() {
        let f = FileConfig::default();
        let err = dev_events(
            &args(&["--live-reload", "--events-path", "off"]),
            &f,
            Mode::Dev,
        )
        .unwrap_err();
        assert!(err.to_string().contains("needs the event stream"), "{err}");
        for bad in [
            "/events",
            "/_hotswap/",
            "/_hotswap/../x",
            "/_hotswap/a?b",
            "/_hotswap//a",
        ] {
            assert!(
                dev_events(&args(&["--events-path", bad]), &f, Mode::Dev).is_err(),
                "{bad}"
            );
        }
        let file = crate::config::file::parse(
            "[server]\nevents_path = \"/_hotswap/stream\"\nlive_reload = true\n",
        )
        .unwrap();
        let dev = dev_events(&args(&[]), &file, Mode::Dev).unwrap().unwrap();
        assert_eq!(dev.path, "/_hotswap/stream");
        assert!(dev.live_reload);
    }
}
