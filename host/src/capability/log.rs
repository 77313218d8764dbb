//! What guests say reaches the host log, tagged with the service: the
//! `weft:protocol/log` interface, and WASI stdout/stderr line by line.
//! Lines are capped in length and, per service, in rate; an instance's
//! routine lines that every instance repeats are logged at DEBUG.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime::component::{HasSelf, Linker};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use crate::capability::rate::Rate;
use crate::metrics::ServiceMetrics;
use crate::wit::v1::weft::protocol::log as v1;
use crate::wit::weft::protocol::log::{self as wit, Host, Level};

/// Longest guest log line kept; the rest of the line is cut off.
pub const MAX_LINE: usize = 4096;

/// How often, at most, the host reports lines it dropped.
const DROP_REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// A service's allowance of log lines, shared by its instances and their
/// streams: a token bucket refilled at `rate` lines a second.
#[derive(Clone)]
pub struct LogBudget(Arc<Mutex<Bucket>>);

struct Bucket {
    service: Arc<str>,
    /// Lines a second; two seconds' worth may pass at once.
    lines: Rate,
    dropped: u64,
    /// Whether a task will report `dropped` when the interval closes.
    report_due: bool,
    metrics: Arc<ServiceMetrics>,
}

impl LogBudget {
    pub fn new(service: Arc<str>, rate: u32, metrics: Arc<ServiceMetrics>) -> Self {
        Self(Arc::new(Mutex::new(Bucket {
            service,
            lines: Rate::new(rate),
            dropped: 0,
            report_due: false,
            metrics,
        })))
    }

    /// Whether one more line may be logged now. Lines over the rate are
    /// counted, and the count reported once the second after the first of
    /// them has passed, whether or not the guest logs again.
    fn allow(&self) -> bool {
        let mut bucket = self.lock();
        if bucket.lines.take() {
            return true;
        }
        bucket.dropped += 1;
        bucket.metrics.log_lines_dropped.inc();
        if !bucket.report_due {
            // Guest output is written from a worker's reactor thread.
            if let Ok(reactor) = tokio::runtime::Handle::try_current() {
                bucket.report_due = true;
                let budget = self.clone();
                reactor.spawn(async move {
                    tokio::time::sleep(DROP_REPORT_INTERVAL).await;
                    budget.report_dropped();
                });
            }
        }
        false
    }

    /// Log how many lines were dropped since the last report.
    fn report_dropped(&self) {
        let mut bucket = self.lock();
        bucket.report_due = false;
        if bucket.dropped == 0 {
            return;
        }
        tracing::warn!(
            target: "guest",
            service = &*bucket.service,
            "dropped {} guest log lines over the limit of {} a second",
            bucket.dropped,
            bucket.lines.per_second()
        );
        bucket.dropped = 0;
    }

    fn lock(&self) -> MutexGuard<'_, Bucket> {
        // The lock only guards arithmetic, which cannot panic.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// What an instance logs through: its service's name and log allowance.
pub struct LogState {
    service: Arc<str>,
    budget: LogBudget,
    repeated: Repeated,
}

impl LogState {
    pub fn new(service: Arc<str>, budget: LogBudget) -> Self {
        Self {
            service,
            budget,
            repeated: Repeated::default(),
        }
    }

    /// The instance's stdout or stderr, logging as this state does.
    pub fn output(&self, stream: &'static str) -> GuestOutput {
        GuestOutput {
            service: self.service.clone(),
            stream,
            partial: Arc::default(),
            budget: self.budget.clone(),
            repeated: self.repeated.clone(),
        }
    }

    /// From now on, whether the instance's INFO lines are ones every
    /// instance of its service logs alike (an instance per connection
    /// running its start or stop hook): those are logged at DEBUG, outside
    /// the log allowance, so that a thousand connections do not log a
    /// thousand "Starting factory" lines and crowd out the rest.
    pub fn set_repeated(&self, repeated: bool) {
        self.repeated.0.store(repeated, Ordering::Relaxed);
    }
}

/// Whether an instance's INFO lines are repeats, shared by its log
/// interface and its stdout.
#[derive(Clone, Default)]
struct Repeated(Arc<AtomicBool>);

impl Repeated {
    fn now(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Add `weft:protocol/log`, current and 0.1.0, to `linker`: each instance
/// logs through the state `log` projects from its store.
pub fn add_to_linker<T: 'static>(
    linker: &mut Linker<T>,
    log: fn(&mut T) -> &mut LogState,
) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, HasSelf<LogState>>(linker, log)?;
    v1::add_to_linker::<T, HasSelf<LogState>>(linker, log)
}

impl Host for LogState {
    fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        let repeated = level == Level::Info && self.repeated.now();
        if !repeated && !self.budget.allow() {
            return Ok(());
        }
        let message = truncate(&message);
        let service = &*self.service;
        match level {
            _ if repeated => tracing::debug!(target: "guest", service, "{message}"),
            Level::Trace => tracing::trace!(target: "guest", service, "{message}"),
            Level::Debug => tracing::debug!(target: "guest", service, "{message}"),
            Level::Info => tracing::info!(target: "guest", service, "{message}"),
            Level::Warn => tracing::warn!(target: "guest", service, "{message}"),
            Level::Error => tracing::error!(target: "guest", service, "{message}"),
        }
        Ok(())
    }
}

fn truncate(text: &str) -> &str {
    if text.len() <= MAX_LINE {
        return text;
    }
    let mut end = MAX_LINE;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A guest's stdout or stderr: complete lines become log records.
#[derive(Clone)]
pub struct GuestOutput {
    service: Arc<str>,
    stream: &'static str,
    partial: Arc<Mutex<Vec<u8>>>,
    budget: LogBudget,
    repeated: Repeated,
}

impl GuestOutput {
    fn write_bytes(&self, mut bytes: &[u8]) {
        // A poisoned lock only means another writer panicked mid-line.
        let mut partial = self.partial.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(newline) = bytes.iter().position(|&b| b == b'\n') {
            let room = MAX_LINE.saturating_sub(partial.len());
            partial.extend_from_slice(&bytes[..newline.min(room)]);
            self.emit(&partial);
            partial.clear();
            bytes = &bytes[newline + 1..];
        }
        let room = MAX_LINE.saturating_sub(partial.len());
        partial.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    fn emit(&self, mut line: &[u8]) {
        while let Some(rest) = line.strip_suffix(b"\r") {
            line = rest;
        }
        // Panics and tracebacks go to stderr: they are what an operator
        // must not miss, repeated or not.
        let stderr = self.stream == "stderr";
        let repeated = !stderr && self.repeated.now();
        // The budget first: a guest printing past it (a line per datagram)
        // pays nothing more for the lines dropped.
        if line.is_empty() || (!repeated && !self.budget.allow()) {
            return;
        }
        let line = String::from_utf8_lossy(line);
        let service = &*self.service;
        let stream = self.stream;
        if repeated {
            tracing::debug!(target: "guest", service, stream, "{line}");
        } else if stderr {
            tracing::warn!(target: "guest", service, stream, "{line}");
        } else {
            tracing::info!(target: "guest", service, stream, "{line}");
        }
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.write_bytes(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(MAX_LINE)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl AsyncWrite for GuestOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.write_bytes(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// `weft:protocol/log@0.1.0`, for components built against it.
impl v1::Host for LogState {
    fn log(&mut self, level: v1::Level, message: String) -> wasmtime::Result<()> {
        use v1::Level as V1;
        let level = match level {
            V1::Trace => Level::Trace,
            V1::Debug => Level::Debug,
            V1::Info => Level::Info,
            V1::Warn => Level::Warn,
            V1::Error => Level::Error,
        };
        Host::log(self, level, message)
    }
}
