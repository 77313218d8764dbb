//! One worker of a service: a reactor thread of its own (a single-threaded
//! tokio runtime) with its own listener, guest instance and connections.
//! A service with `workers=N` runs N of them on SO_REUSEPORT listeners,
//! among which the kernel spreads new connections.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use crate::net::connection;
use crate::service::Service;

/// Longest pause between retries when `accept` keeps failing (out of file
/// descriptors, say); the listener never gives up.
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// A worker ready to run: its bound listener and its part of the service.
pub struct Worker {
    /// Numbered from 1 within its service, for the log and thread name.
    pub index: usize,
    pub service: Arc<Service>,
    /// Bound and listening, not yet registered with any reactor.
    pub listener: std::net::TcpListener,
}

impl Worker {
    /// Start the worker's thread: start its shared instance (its `start`
    /// hook runs before anything is accepted), serve until `stop` is
    /// cancelled, then stop its instances, close its connections and wait
    /// for them (at most `SHUTDOWN_GRACE`). The receiver resolves, or
    /// errs, when the thread is done.
    pub fn spawn(
        self,
        stop: CancellationToken,
        grace: Duration,
    ) -> anyhow::Result<oneshot::Receiver<()>> {
        let (done, finished) = oneshot::channel();
        let reactor = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot build a worker's reactor")?;
        std::thread::Builder::new()
            .name(format!("weft-{}-{}", self.service.name, self.index))
            .spawn(move || {
                let span = tracing::info_span!(
                    "service",
                    service = &*self.service.name,
                    worker = self.index
                );
                reactor.block_on(self.run(stop, grace).instrument(span));
                let _ = done.send(());
            })
            .context("cannot start a worker thread")?;
        Ok(finished)
    }

    async fn run(self, stop: CancellationToken, grace: Duration) {
        let Self {
            service, listener, ..
        } = self;
        let listener = match TcpListener::from_std(listener) {
            Ok(listener) => listener,
            Err(error) => {
                tracing::error!("cannot serve: {error}");
                return;
            }
        };
        service.start_shared().await;
        // The service's reactor holds this worker's shutdown alert and the
        // tasks of its connections.
        let (stopping, tasks) = (&service.reactor.stopping, &service.reactor.tasks);
        accept_loop(listener, service.clone(), stop, tasks.clone()).await;
        service.stop_instances().await;
        stopping.raise();
        tasks.close();
        if tokio::time::timeout(grace, tasks.wait()).await.is_err() {
            tracing::warn!("connections still open after {grace:?}; exiting anyway");
        }
    }
}

/// Take a connection slot, then accept; each connection runs as its own
/// task holding the slot. Ends only when `stop` is cancelled.
async fn accept_loop(
    listener: TcpListener,
    service: Arc<Service>,
    stop: CancellationToken,
    tasks: TaskTracker,
) {
    static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(1);
    let slots = Arc::new(Semaphore::new(service.limits.max_connections));
    loop {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return, // The semaphore is never closed.
            },
            _ = stop.cancelled() => return,
        };
        let (stream, peer) = tokio::select! {
            accepted = accept(&listener) => accepted,
            _ = stop.cancelled() => return,
        };
        if service.health.refusing() {
            // A failed service closes new connections at once rather
            // than leave them waiting on a guest that keeps trapping.
            drop(stream);
            continue;
        }
        let id = NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed);
        let span = tracing::debug_span!("conn", id, %peer);
        let serving = connection::serve(stream, service.clone(), permit);
        tasks.spawn(serving.instrument(span));
    }
}

/// Accept one connection, retrying with backoff on errors.
async fn accept(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    let mut backoff = Duration::from_millis(1);
    loop {
        match listener.accept().await {
            Ok(accepted) => return accepted,
            Err(error) => {
                tracing::warn!("accept failed, retrying in {backoff:?}: {error}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_ACCEPT_BACKOFF);
            }
        }
    }
}
