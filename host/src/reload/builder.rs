//! Rebuild on save (dev mode): source changes run the build command; its output lands at the
//! component path and flows through the normal watch → validate → swap path.
//!
//! Strategy: a debounced, recursive watch on the configured source paths sends "sources
//! changed" into a channel of capacity one; one task runs builds from it, one at a time, so
//! changes made during a build queue exactly one more. A failing build leaves the serving
//! generation alone and puts the compiler's output in the log (and, bounded, in a `build-failed`
//! event of the dev-mode stream); a build that runs past its timeout is killed with its whole
//! process group.

use crate::config::BuildConfig;
use crate::events::{Event, Events};
use crate::metrics::RouteMetrics;
use crate::reload::{Trigger, TriggerSender};
use crate::telemetry::traces::{Steps, attr};
use anyhow::{Context, Result};
use notify::{EventKind, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Instant;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

/// Most lines of build output copied into the log for one failed build.
const MAX_LOGGED_LINES: usize = 200;

/// A running source watch; dropping it stops watching.
pub struct SourceWatcher {
    _debouncer: Debouncer<notify::RecommendedWatcher, RecommendedCache>,
}

/// How a build ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildResult {
    /// Exit status 0.
    Ok,
    /// Non-zero exit or failure to start.
    Failed,
    /// Killed after the timeout.
    TimedOut,
}

impl BuildResult {
    fn label(self) -> &'static str {
        match self {
            BuildResult::Ok => "ok",
            BuildResult::Failed => "failed",
            BuildResult::TimedOut => "timeout",
        }
    }
}

/// Runs builds for one configuration, one at a time (clones share the turn).
#[derive(Clone)]
pub struct Builder {
    config: BuildConfig,
    metrics: RouteMetrics,
    /// Where a failed build is published (dev mode).
    events: Option<Arc<Events>>,
    /// Held while a build runs: the startup build and a rebuild on save never overlap.
    turn: Arc<tokio::sync::Mutex<()>>,
}

impl Builder {
    /// A builder for `config`; a failed build is published into `events`.
    pub fn new(config: BuildConfig, metrics: RouteMetrics, events: Option<Arc<Events>>) -> Self {
        Builder {
            config,
            metrics,
            events,
            turn: Arc::default(),
        }
    }

    /// The build command, for logs and the reason a route is not serving yet.
    pub fn cmd(&self) -> &str {
        &self.config.cmd
    }

    /// Starts watching the sources; each debounced change runs a build, and each successful
    /// build asks for a reload.
    pub fn start(self, reloads: TriggerSender) -> Result<SourceWatcher> {
        let (tx, mut rx) = mpsc::channel::<()>(1);
        let config = self.config.clone();
        let mut debouncer = new_debouncer(
            config.delay,
            None,
            move |result: DebounceEventResult| match result {
                Ok(events) => {
                    let relevant = events.iter().any(|e| {
                        !matches!(e.kind, EventKind::Access(_))
                            && e.paths.iter().any(|p| is_source(&config, p))
                    });
                    if relevant {
                        let _ = tx.try_send(());
                    }
                }
                Err(errors) => {
                    for error in errors {
                        tracing::warn!(error = %error, "source watcher error");
                    }
                }
            },
        )
        .context("cannot start the source watcher")?;
        for path in &self.config.watch {
            debouncer
                .watch(path, RecursiveMode::Recursive)
                .with_context(|| format!("cannot watch the build source `{}`", path.display()))?;
        }
        tokio::spawn(async move {
            while rx.recv().await.is_some() {
                if self.run().await == BuildResult::Ok {
                    reloads.send(Trigger::Built);
                }
            }
        });
        Ok(SourceWatcher {
            _debouncer: debouncer,
        })
    }

    /// Runs the build command once and logs how it went.
    pub async fn run(&self) -> BuildResult {
        let _turn = self.turn.lock().await;
        let started = Instant::now();
        let mut steps = Steps::begin();
        tracing::info!(route = %self.metrics.route(), cmd = %self.config.cmd, dir = %self.config.dir.display(), "building");
        let mut child = match tokio::process::Command::new("sh")
            .arg("-c")
            .arg(&self.config.cmd)
            .current_dir(&self.config.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
        {
            Ok(child) => child,
            Err(err) => {
                tracing::warn!(route = %self.metrics.route(), error = %err, cmd = %self.config.cmd, "cannot start the build");
                self.publish_failure(None, false, &format!("cannot start the build: {err}\n"));
                self.metrics.build("failed");
                return BuildResult::Failed;
            }
        };
        let mut stdout = child.stdout.take();
        let mut stderr = child.stderr.take();
        let collect = async {
            let mut out = Vec::new();
            let mut err = Vec::new();
            let read_out = async {
                if let Some(s) = stdout.as_mut() {
                    let _ = s.read_to_end(&mut out).await;
                }
            };
            let read_err = async {
                if let Some(s) = stderr.as_mut() {
                    let _ = s.read_to_end(&mut err).await;
                }
            };
            tokio::join!(read_out, read_err);
            let status = child.wait().await;
            (status, out, err)
        };
        let result = match tokio::time::timeout(self.config.timeout, collect).await {
            Err(_) => {
                kill_group(&child);
                tracing::warn!(
                    route = %self.metrics.route(),
                    timeout = ?self.config.timeout,
                    "build did not finish within {:?}; stopped it; still serving the current generation",
                    self.config.timeout
                );
                let said = format!(
                    "the build did not finish within {:?}; it was stopped\n",
                    self.config.timeout
                );
                self.publish_failure(None, true, &said);
                BuildResult::TimedOut
            }
            Ok((Ok(status), _out, _err)) if status.success() => {
                tracing::info!(
                    route = %self.metrics.route(),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "build succeeded"
                );
                if let Some(events) = &self.events {
                    events.publish(Event::Built {
                        route: self.metrics.route().to_string(),
                    });
                }
                BuildResult::Ok
            }
            Ok((status, out, err)) => {
                let code = status.ok().and_then(|s| s.code());
                tracing::warn!(
                    route = %self.metrics.route(),
                    exit_code = ?code,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "build failed; still serving the current generation; compiler output follows"
                );
                let output = output_text(&out, &err);
                log_output(self.metrics.route(), &output);
                self.publish_failure(code, false, &output);
                BuildResult::Failed
            }
        };
        self.metrics.build(result.label());
        steps.step("run", started.elapsed(), Vec::new());
        steps.finish(
            "hotswap.build",
            vec![
                attr("hotswap.route", self.metrics.route().to_string()),
                attr("hotswap.build.cmd", self.config.cmd.clone()),
                attr("hotswap.outcome", result.label()),
            ],
            (!matches!(result, BuildResult::Ok)).then_some(result.label()),
        );
        result
    }
}

impl Builder {
    /// A `build-failed` event for the route, if the event stream is on.
    fn publish_failure(&self, exit_code: Option<i32>, timed_out: bool, output: &str) {
        if let Some(events) = &self.events {
            events.publish(Event::build_failed(
                self.metrics.route(),
                exit_code,
                timed_out,
                output,
            ));
        }
    }
}

fn kill_group(child: &tokio::process::Child) {
    if let Some(pid) = child.id() {
        // SAFETY: kill(2) on the process group this builder created for the build.
        unsafe {
            libc::kill(-(pid as i32), libc::SIGKILL);
        }
    }
}

/// A build's output as text: stderr (where compilers write), then stdout.
fn output_text(stdout: &[u8], stderr: &[u8]) -> String {
    [
        String::from_utf8_lossy(stderr),
        String::from_utf8_lossy(stdout),
    ]
    .concat()
}

fn log_output(route: &str, text: &str) {
    for line in text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(MAX_LOGGED_LINES)
    {
        tracing::warn!(target: "hotswap::build", route = %route, "build: {line}");
    }
}

/// Whether a changed path is a source file this build cares about.
fn is_source(config: &BuildConfig, path: &Path) -> bool {
    let excluded = path.components().any(|c| {
        let c = c.as_os_str().to_string_lossy();
        config.exclude_dir.iter().any(|d| *d == c)
    });
    if excluded {
        return false;
    }
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().into_owned())
        .unwrap_or_default();
    config.include_ext.contains(&ext)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::time::Duration;

    fn config() -> BuildConfig {
        BuildConfig {
            cmd: "true".into(),
            dir: PathBuf::from("/src"),
            watch: vec![PathBuf::from("/src")],
            include_ext: vec!["rs".into(), "toml".into(), "lock".into(), "wit".into()],
            exclude_dir: vec!["target".into()],
            delay: Duration::from_millis(10),
            timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn sources_are_filtered_by_extension_and_directory() {
        let c = config();
        assert!(is_source(&c, Path::new("/src/src/lib.rs")));
        assert!(is_source(&c, Path::new("/src/Cargo.toml")));
        assert!(is_source(&c, Path::new("/src/Cargo.lock")));
        assert!(is_source(&c, Path::new("/src/wit/world.wit")));
        assert!(!is_source(&c, Path::new("/src/target/debug/x.rs")));
        assert!(!is_source(&c, Path::new("/src/README.md")));
    }
}
