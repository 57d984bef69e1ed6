//! Spans leave the request path through a bounded queue: ending a span only offers it to the
//! queue (a full queue drops it and counts it), and one task on the runtime takes batches off
//! the queue and posts them to the collector. An exporter that is down or slow therefore never
//! slows a request; what it costs is spans, counted in `hotswap_trace_spans_total`.
//!
//! The first failed export after a success logs one WARN, the first success after failures
//! another; the failures in between are logged at debug.

use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter, SpanProcessor};
use prometheus_client::metrics::counter::Counter;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Spans sent in one export at most (the OpenTelemetry batch processor's default).
const MAX_BATCH: usize = 512;

/// How long the first span of a batch waits for others before the batch leaves.
const LINGER: Duration = Duration::from_millis(500);

/// What became of the spans that ended, as `hotswap_trace_spans_total{result}` counts them.
#[derive(Debug, Clone, Default)]
pub struct SpanCounters {
    /// Posted to the collector, which took them.
    pub exported: Counter,
    /// Dropped because the queue was full (the exporter could not keep up, or is down).
    pub dropped: Counter,
    /// In a batch the collector refused or could not be reached for.
    pub failed: Counter,
}

/// The span processor: offers each ended span to the queue.
#[derive(Debug)]
pub(super) struct QueueProcessor {
    queue: mpsc::Sender<SpanData>,
    dropped: Counter,
}

impl SpanProcessor for QueueProcessor {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &opentelemetry::Context) {}

    fn on_end(&self, span: SpanData) {
        if self.queue.try_send(span).is_err() {
            self.dropped.inc();
        }
    }

    /// Flushing is [`Flush::flush`]'s, which waits on the runtime rather than blocking it.
    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

/// Asks the export task to send everything queued now.
#[derive(Debug, Clone)]
pub(super) struct Flush(mpsc::UnboundedSender<oneshot::Sender<()>>);

impl Flush {
    /// Resolves once what was queued when it was called has been exported (or given up on),
    /// or after `timeout`.
    pub(super) async fn flush(&self, timeout: Duration) {
        let (done, finished) = oneshot::channel();
        if self.0.send(done).is_ok() {
            let _ = tokio::time::timeout(timeout, finished).await;
        }
    }
}

/// The processor for a new provider, and the flush handle of the export task it feeds, which
/// it spawns on the current runtime.
pub(super) fn start<E>(
    exporter: E,
    queue_size: usize,
    export_timeout: Duration,
    endpoint: String,
    counters: SpanCounters,
) -> (QueueProcessor, Flush)
where
    E: SpanExporter + 'static,
{
    let (queue, spans) = mpsc::channel(queue_size.max(1));
    let (flush, flushes) = mpsc::unbounded_channel();
    let processor = QueueProcessor {
        queue,
        dropped: counters.dropped.clone(),
    };
    let task = ExportTask {
        exporter,
        endpoint,
        export_timeout,
        counters,
        failing: None,
    };
    tokio::spawn(task.run(spans, flushes));
    (processor, Flush(flush))
}

/// The export task's state.
struct ExportTask<E> {
    exporter: E,
    endpoint: String,
    export_timeout: Duration,
    counters: SpanCounters,
    /// While exports fail: the batches and spans lost since the first failure.
    failing: Option<(u64, u64)>,
}

impl<E: SpanExporter> ExportTask<E> {
    async fn run(
        mut self,
        mut spans: mpsc::Receiver<SpanData>,
        mut flushes: mpsc::UnboundedReceiver<oneshot::Sender<()>>,
    ) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        loop {
            tokio::select! {
                received = spans.recv_many(&mut batch, MAX_BATCH) => {
                    if received == 0 {
                        return;
                    }
                    // Let a batch fill a little: one post per span would cost the collector
                    // (and this host) far more than the spans.
                    let linger = tokio::time::sleep(LINGER);
                    tokio::pin!(linger);
                    while batch.len() < MAX_BATCH {
                        let room = MAX_BATCH - batch.len();
                        tokio::select! {
                            () = &mut linger => break,
                            more = spans.recv_many(&mut batch, room) => {
                                if more == 0 {
                                    break;
                                }
                            }
                        }
                    }
                    self.export(&mut batch).await;
                }
                Some(done) = flushes.recv() => {
                    while let Ok(span) = spans.try_recv() {
                        batch.push(span);
                        if batch.len() == MAX_BATCH {
                            self.export(&mut batch).await;
                        }
                    }
                    self.export(&mut batch).await;
                    let _ = done.send(());
                }
            }
        }
    }

    /// Posts `batch` (emptying it), counts the outcome, and says when exports start failing
    /// or recover.
    async fn export(&mut self, batch: &mut Vec<SpanData>) {
        if batch.is_empty() {
            return;
        }
        let spans = batch.len() as u64;
        let sent = std::mem::replace(batch, Vec::with_capacity(MAX_BATCH));
        // The exporter retries within its own timeout; this one only guards against a
        // transport that ignores it.
        let result =
            match tokio::time::timeout(self.export_timeout * 2, self.exporter.export(sent)).await {
                Ok(result) => result.map_err(|e| e.to_string()),
                Err(_) => Err(format!(
                    "no answer within {}",
                    humantime::format_duration(self.export_timeout * 2)
                )),
            };
        match result {
            Ok(()) => {
                self.counters.exported.inc_by(spans);
                if let Some((batches, lost)) = self.failing.take() {
                    tracing::warn!(
                        endpoint = %self.endpoint,
                        failed_batches = batches,
                        lost_spans = lost,
                        "trace export recovered; {lost} spans were lost while it failed"
                    );
                }
            }
            Err(reason) => {
                self.counters.failed.inc_by(spans);
                match &mut self.failing {
                    Some((batches, lost)) => {
                        *batches += 1;
                        *lost += spans;
                        tracing::debug!(endpoint = %self.endpoint, spans, "trace export failed again: {reason}");
                    }
                    None => {
                        self.failing = Some((1, spans));
                        tracing::warn!(
                            endpoint = %self.endpoint,
                            spans,
                            "trace export failed: {reason}; spans are dropped (counted in \
                             hotswap_trace_spans_total) until the collector takes them again; \
                             requests are not affected"
                        );
                    }
                }
            }
        }
    }
}
