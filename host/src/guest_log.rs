//! What guests say reaches the host log, tagged with the service: the
//! `weft:protocol/log` interface, and WASI stdout/stderr line by line.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use crate::bindings::weft::protocol::log::{Host, Level};
use crate::state::GuestState;

/// Longest guest log line kept; the rest of the line is cut off.
pub const MAX_LINE: usize = 4096;

impl Host for GuestState {
    fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        let message = truncate(&message);
        let service = &*self.service;
        match level {
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
}

impl GuestOutput {
    pub fn new(service: &str, stream: &'static str) -> Self {
        Self {
            service: service.into(),
            stream,
            partial: Arc::default(),
        }
    }

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

    fn emit(&self, line: &[u8]) {
        let line = String::from_utf8_lossy(line);
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            return;
        }
        tracing::info!(target: "guest", service = &*self.service, stream = self.stream, "{line}");
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
