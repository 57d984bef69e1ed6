//! Spans leave the request path through a bounded queue: ending a span only offers it to the
//! queue (a full queue drops it and counts it), and one task on the runtime takes batches off
//! the queue and posts them to the collector. An exporter that is down or slow therefore never
//! slows a request; what it costs is spans, counted in `hotswap_trace_spans_total`.
//!
//! The first failed export after a success logs one WARN, the first success after failures
//! another; the failures in between are logged at debug.

use super::encode::Encoder;
use super::span::Record;
use prometheus_client::metrics::counter::Counter;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Spans sent in one export at most (the OpenTelemetry batch processor's default).
const MAX_BATCH: usize = 512;

/// How long the first span of a batch waits for others before the batch leaves.
const LINGER: Duration = Duration::from_millis(500);

/// How often a lingering batch takes what was queued meanwhile. At 50,000 spans a second (two
/// per request of a small guest on one core) a tick queues 500: well within the default queue.
const TICK: Duration = Duration::from_millis(10);

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

/// Where ended spans go: the queue, or the drop counter when it is full.
#[derive(Debug)]
pub(super) struct Queue {
    queue: mpsc::Sender<Record>,
    dropped: Counter,
}

impl Queue {
    /// Offers `span` to the export queue without waiting.
    pub(super) fn offer(&self, span: Record) {
        if self.queue.try_send(span).is_err() {
            self.dropped.inc();
        }
    }
}

/// How the export task reaches the collector.
pub(super) struct Collector {
    /// The HTTP client (its timeouts are the export timeout).
    pub client: reqwest::Client,
    /// The OTLP/HTTP traces URL.
    pub url: String,
    /// Headers every export carries (`OTEL_EXPORTER_OTLP_HEADERS`).
    pub headers: reqwest::header::HeaderMap,
    /// The resource and scope of the spans.
    pub encoder: Encoder,
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

/// The queue spans end into, and the flush handle of the export task that drains it into
/// `collector`, which it spawns on the current runtime.
pub(super) fn start(
    collector: Collector,
    queue_size: usize,
    export_timeout: Duration,
    counters: SpanCounters,
) -> (Queue, Flush) {
    let (queue, spans) = mpsc::channel(queue_size.max(1));
    let (flush, flushes) = mpsc::unbounded_channel();
    let processor = Queue {
        queue,
        dropped: counters.dropped.clone(),
    };
    let task = ExportTask {
        collector,
        export_timeout,
        counters,
        failing: None,
    };
    tokio::spawn(task.run(spans, flushes));
    (processor, Flush(flush))
}

/// The export task's state.
struct ExportTask {
    collector: Collector,
    export_timeout: Duration,
    counters: SpanCounters,
    /// While exports fail: the batches and spans lost since the first failure.
    failing: Option<(u64, u64)>,
}

impl ExportTask {
    async fn run(
        mut self,
        mut spans: mpsc::Receiver<Record>,
        mut flushes: mpsc::UnboundedReceiver<oneshot::Sender<()>>,
    ) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        loop {
            tokio::select! {
                received = spans.recv_many(&mut batch, MAX_BATCH) => {
                    if received == 0 {
                        return;
                    }
                    // Let a batch fill: one post per span would cost the collector (and this
                    // host) far more than the spans. The queue is looked at every tick rather
                    // than waited on, so that a request ending a span wakes no task.
                    let deadline = Instant::now() + LINGER;
                    loop {
                        self.take(&mut spans, &mut batch).await;
                        let now = Instant::now();
                        if now >= deadline {
                            break;
                        }
                        tokio::select! {
                            () = tokio::time::sleep((deadline - now).min(TICK)) => {}
                            Some(done) = flushes.recv() => {
                                self.take(&mut spans, &mut batch).await;
                                self.export(&mut batch).await;
                                let _ = done.send(());
                            }
                        }
                    }
                    self.export(&mut batch).await;
                }
                Some(done) = flushes.recv() => {
                    self.take(&mut spans, &mut batch).await;
                    self.export(&mut batch).await;
                    let _ = done.send(());
                }
            }
        }
    }

    /// Moves what is queued into `batch`, exporting each batch that fills.
    async fn take(&mut self, spans: &mut mpsc::Receiver<Record>, batch: &mut Vec<Record>) {
        while let Ok(span) = spans.try_recv() {
            batch.push(span);
            if batch.len() == MAX_BATCH {
                self.export(batch).await;
            }
        }
    }

    /// Posts `batch` (emptying it), counts the outcome, and says when exports start failing
    /// or recover.
    async fn export(&mut self, batch: &mut Vec<Record>) {
        if batch.is_empty() {
            return;
        }
        let spans = batch.len() as u64;
        let body = self.collector.encoder.request(batch);
        batch.clear();
        // The client's own timeout bounds the post; this one guards against a transport that
        // ignores it.
        let result =
            match tokio::time::timeout(self.export_timeout * 2, self.collector.post(body)).await {
                Ok(result) => result,
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
                        endpoint = %self.collector.url,
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
                        tracing::debug!(endpoint = %self.collector.url, spans, "trace export failed again: {reason}");
                    }
                    None => {
                        self.failing = Some((1, spans));
                        tracing::warn!(
                            endpoint = %self.collector.url,
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

impl Collector {
    /// Posts one encoded export request; an error says why the collector did not take it.
    async fn post(&self, body: Vec<u8>) -> Result<(), String> {
        let response = self
            .client
            .post(&self.url)
            .headers(self.headers.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/x-protobuf")
            .body(body)
            .send()
            .await
            // With its causes, `a: b: c` (reqwest's own `Display` leaves them out).
            .map_err(|e| format!("{:#}", anyhow::Error::new(e)))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("the collector answered {status}"))
        }
    }
}
