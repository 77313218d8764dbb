//! One worker of a service: a reactor thread of its own (a single-threaded
//! tokio runtime) with its own listener, guest instance and connections.
//! A service with `workers=N` runs N of them on SO_REUSEPORT listeners
//! (or one shared Unix socket), among which the kernel spreads new
//! connections. A reload hands it a new version of the service; the old
//! one drains beside it. A `udp:` service's worker receives datagrams
//! instead (`datagram`).

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, oneshot, watch};
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use crate::metrics::{Closed, LimitHit, Readiness};
use crate::net::listener::{Accepting, Listener, Peer};
use crate::net::proxy::{self, HeaderError, Proxied};
use crate::net::stream::Stream;
use crate::net::tls::{self, Certificates, HandshakeError};
use crate::sandbox::ticker;
use crate::server::datagram;
use crate::server::service::Service;
use crate::server::stop::Stop;

/// Longest pause between retries when `accept` keeps failing (out of file
/// descriptors, say); the listener never gives up.
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// The version of its service a worker serves new connections with: a
/// reload replaces it, and `None` means the service was removed.
pub type Generation = Option<Arc<Service>>;

/// A worker ready to run: its bound listener and its part of the service.
pub struct Worker {
    /// Numbered from 1 within its service, for the log and thread name.
    pub index: usize,
    /// Bound and listening, not yet registered with any reactor.
    pub listener: Listener,
    pub generations: watch::Receiver<Generation>,
    /// For an `ssl:` endpoint, the configuration handshakes use.
    pub tls: Option<Arc<Certificates>>,
}

/// How long a worker waits for connections to end: at shutdown, and
/// after a reload replaced the version they run on.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// At shutdown, for connections to flush and close.
    pub grace: Duration,
    /// After a reload, for the old version's connections to end on their own.
    pub drain: Duration,
}

/// Why a worker's accept loop ended.
enum Ended {
    Stopped,
    Replaced(Generation),
}

impl Worker {
    /// Start the worker's thread: start its shared instance (its `start`
    /// hook runs before anything is accepted), serve until `stop` says or
    /// the service is removed, then (unless the stop is `now`) give its
    /// connections `timeouts.grace` to end on their own, stop its
    /// instances, close its connections and wait for them. The receiver
    /// resolves, or errs, when the thread is done.
    pub fn spawn(
        self,
        name: &str,
        stop: Stop,
        timeouts: Timeouts,
        readiness: Option<Arc<Readiness>>,
    ) -> anyhow::Result<oneshot::Receiver<()>> {
        let (done, finished) = oneshot::channel();
        // Guest code runs only while the reactor is awake: its park hooks
        // tell the epoch tickers, which sleep while every worker does.
        let reactor = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .on_thread_park(ticker::thread_asleep)
            .on_thread_unpark(ticker::thread_awake)
            .build()
            .context("cannot build a worker's reactor")?;
        let span = tracing::info_span!("service", service = name, worker = self.index);
        std::thread::Builder::new()
            .name(format!("weft-{name}-{}", self.index))
            .spawn(move || {
                let _watched = ticker::watch_this_thread();
                reactor.block_on(self.run(stop, timeouts, readiness).instrument(span));
                let _ = done.send(());
            })
            .context("cannot start a worker thread")?;
        Ok(finished)
    }

    /// Serve; once accepting (or receiving), tell `readiness`, if the
    /// process waits for this worker to be ready.
    async fn run(self, stop: Stop, timeouts: Timeouts, readiness: Option<Arc<Readiness>>) {
        let Self {
            listener,
            mut generations,
            tls,
            ..
        } = self;
        if let Listener::Udp(socket) = listener {
            if let Some(readiness) = readiness {
                readiness.accepting();
            }
            datagram::serve(socket, generations, stop).await;
            return;
        }
        let listener = match listener.into_tokio() {
            Ok(listener) => listener,
            Err(error) => {
                tracing::error!("cannot serve: {error}");
                return;
            }
        };
        let Some(mut service) = generations.borrow_and_update().clone() else {
            return;
        };
        service.start_shared().await;
        if let Some(readiness) = readiness {
            readiness.accepting();
        }
        // Versions a reload replaced, closing down.
        let draining = TaskTracker::new();
        let mut slots = Arc::new(Semaphore::new(service.limits.max_connections));
        let mut listener = Some((listener, stop.listening()));
        while let Some((open, _)) = &listener {
            let accepting = accept_loop(
                open,
                &service,
                &slots,
                tls.as_ref(),
                &stop,
                &mut generations,
            );
            let replaced = match accepting.await {
                Ended::Stopped => break,
                Ended::Replaced(replaced) => replaced,
            };
            let old = match replaced {
                Some(next) => {
                    // The new version's `start` runs before it takes a
                    // connection; meanwhile they wait in the backlog.
                    next.start_shared().await;
                    if next.limits.max_connections != service.limits.max_connections {
                        slots = Arc::new(Semaphore::new(next.limits.max_connections));
                    }
                    tracing::info!("new connections go to the reloaded version");
                    std::mem::replace(&mut service, next)
                }
                None => {
                    listener = None;
                    tracing::info!("service removed: no longer accepting");
                    service.clone()
                }
            };
            draining.spawn(drain(old, stop.clone(), timeouts).in_current_span());
        }
        // Stopped: close the listening socket at once, so that a
        // connection a balancer still sends is refused (and sent elsewhere)
        // rather than left in the backlog until exit.
        if listener.take().is_some() {
            let grace = timeouts.grace;
            let flush = if stop.is_now() {
                grace
            } else {
                let_connections_end(&service, grace).await;
                grace.min(FINAL_FLUSH)
            };
            close(&service, flush).await;
        }
        draining.close();
        draining.wait().await;
    }
}

/// At a drain's end, how long connections still open may take to flush
/// once closed (at most the grace): the drain has had the grace already.
const FINAL_FLUSH: Duration = Duration::from_secs(1);

/// Wait, at most `grace`, for the connections open when accepting stopped
/// to end on their own.
async fn let_connections_end(service: &Service, grace: Duration) {
    let accepted = &service.accepted;
    accepted.close();
    if tokio::time::timeout(grace, accepted.wait()).await.is_err() {
        tracing::info!(
            "closing {} connections still open after {grace:?}",
            accepted.len()
        );
    }
}

/// Close down a version of the service: wait, at most `timeouts.drain`,
/// for its accepted connections to end on their own, then stop its
/// instances and close what is left, as at shutdown.
async fn drain(old: Arc<Service>, stop: Stop, timeouts: Timeouts) {
    let accepted = &old.accepted;
    accepted.close();
    let ended = tokio::select! {
        () = accepted.wait() => true,
        () = tokio::time::sleep(timeouts.drain) => false,
        () = stop.cancelled() => false,
    };
    if !ended {
        tracing::info!(
            "closing {} connections still on the replaced version",
            accepted.len()
        );
    }
    close(&old, timeouts.grace).await;
}

/// Stop a version's instances (`stop`), close its connections (guests see
/// `connection-lost`) and wait, at most `grace`, for them.
async fn close(service: &Service, grace: Duration) {
    service.stop_instances().await;
    service.reactor.stopping.raise();
    let tasks = &service.reactor.tasks;
    tasks.close();
    if tokio::time::timeout(grace, tasks.wait()).await.is_err() {
        tracing::warn!("connections still open after {grace:?}; exiting anyway");
    }
}

/// Take a connection slot, then accept; each connection runs as its own
/// task holding the slot, from its TLS handshake (with `tls`) on. Ends
/// when `stop` is cancelled or a reload replaces the service.
async fn accept_loop(
    listener: &Accepting,
    service: &Arc<Service>,
    slots: &Arc<Semaphore>,
    tls: Option<&Arc<Certificates>>,
    stop: &Stop,
    generations: &mut watch::Receiver<Generation>,
) -> Ended {
    static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(1);
    let metrics = &service.reactor.metrics;
    let replaced =
        async |generations: &mut watch::Receiver<Generation>| match generations.changed().await {
            Ok(()) => Ended::Replaced(generations.borrow_and_update().clone()),
            // The server is gone without a stop: serve on until the process ends.
            Err(_) => std::future::pending().await,
        };
    loop {
        let permit = match slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                metrics.hit(LimitHit::MaxConnections);
                tokio::select! {
                    permit = slots.clone().acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => return Ended::Stopped, // Never closed.
                    },
                    () = stop.cancelled() => return Ended::Stopped,
                    ended = replaced(generations) => return ended,
                }
            }
        };
        let (stream, peer) = tokio::select! {
            accepted = accept(listener) => accepted,
            () = stop.cancelled() => return Ended::Stopped,
            ended = replaced(generations) => return ended,
        };
        metrics.accepted.inc();
        let peer_ip = match &peer {
            Peer::Tcp(addr) => Some(addr.ip()),
            Peer::Unix => None,
        };
        let proxy = service.proxy.as_ref();
        if proxy.is_some_and(|trusted| !trusted.allows(peer_ip)) {
            // Its header would name whoever it liked: only the
            // operator's balancers may say who the client is.
            tracing::debug!(%peer, "closing a connection from outside proxy-from");
            drop(stream);
            metrics.closed(Closed::ProxyUntrusted);
            continue;
        }
        // Behind a balancer the peer is known once its header is read.
        if proxy.is_none() && refuses(service, peer_ip) {
            drop(stream);
            continue;
        }
        let id = NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed);
        let span = tracing::debug_span!("conn", id, peer = tracing::field::Empty);
        if proxy.is_none() {
            span.record("peer", tracing::field::display(&peer));
        }
        let tls = tls.map(|certificates| certificates.current());
        let this = service.clone();
        let stopped = stop.clone();
        let serving = async move {
            let mut stream = stream;
            let mut peer_ip = peer_ip;
            let mut proxied = None;
            if this.proxy.is_some() {
                // Before the ClientHello on `haproxy:ssl:`, as HAProxy sends it.
                let header = tokio::select! {
                    header = proxy_header(&mut stream, &this) => header,
                    () = stopped.cancelled() => None,
                };
                let Some(header) = header else { return };
                proxied = header;
                let peer = proxied.map_or(peer, |p| Peer::Tcp(p.peer));
                tracing::Span::current().record("peer", tracing::field::display(&peer));
                peer_ip = proxied.map(|p| p.peer.ip()).or(peer_ip);
                if refuses(&this, peer_ip) {
                    return;
                }
            }
            let stream = match (stream, tls) {
                (Stream::Tcp(tcp), Some(config)) => {
                    // A handshake in progress does not hold up shutdown.
                    let secured = tokio::select! {
                        secured = secure(tcp, config, &this) => secured,
                        () = stopped.cancelled() => None,
                    };
                    match secured {
                        Some(stream) => stream,
                        None => return,
                    }
                }
                (stream, _) => stream,
            };
            this.serve(stream, peer_ip, proxied, permit).await;
        };
        let tasks = &service.reactor.tasks;
        tasks.spawn(service.accepted.track_future(serving).instrument(span));
    }
}

/// Whether `service` closes a connection from `peer` at once: a failed
/// service (or, one instance per connection, a peer whose connections kept
/// trapping) rather than leave it waiting on a guest that keeps trapping.
fn refuses(service: &Service, peer: Option<IpAddr>) -> bool {
    let refused_peer = peer.is_some_and(|ip| service.health.refusing_peer(ip));
    let refused = service.health.refusing() || refused_peer;
    if refused {
        service.reactor.metrics.closed(Closed::Refused);
    }
    refused
}

/// Read a `haproxy:` endpoint's PROXY header off `stream` within the
/// service's header timeout: `Some` with the ends it names (if any), or
/// `None` when it was missing, malformed or late, which is counted, logged
/// at debug level (it is the sender's doing) and closes the connection.
async fn proxy_header(stream: &mut Stream, service: &Service) -> Option<Option<Proxied>> {
    let metrics = &service.reactor.metrics;
    let timeout = service.limits.proxy_header_timeout;
    let reading = async {
        match stream {
            Stream::Tcp(tcp) => proxy::read_header(tcp).await,
            Stream::Unix(unix) => proxy::read_header(unix).await,
            // Accepted streams are not yet secured.
            Stream::Tls(_) => Err(HeaderError::Invalid),
        }
    };
    let error = match tokio::time::timeout(timeout, reading).await {
        Ok(Ok(header)) => return Some(header),
        Ok(Err(error)) => error.to_string(),
        Err(_) => {
            metrics.hit(LimitHit::ProxyHeaderTimeout);
            format!("no PROXY header within {timeout:?}")
        }
    };
    tracing::debug!("PROXY header refused: {error}");
    metrics.closed(Closed::ProxyHeader);
    None
}

/// Complete a TLS handshake on `tcp` within the service's handshake
/// timeout; a failure is counted and logged at debug level (it is the
/// client's doing), and closes the connection.
async fn secure(
    tcp: TcpStream,
    config: Arc<rustls::ServerConfig>,
    service: &Service,
) -> Option<Stream> {
    let metrics = &service.reactor.metrics;
    match tls::handshake(tcp, config, service.limits.handshake_timeout).await {
        Ok(stream) => Some(Stream::Tls(Box::new(stream))),
        Err(error) => {
            if matches!(error, HandshakeError::TimedOut(_)) {
                metrics.hit(LimitHit::HandshakeTimeout);
            }
            tracing::debug!("TLS handshake failed: {error}");
            metrics.closed(Closed::TlsHandshake);
            None
        }
    }
}

/// Accept one connection, retrying with backoff on errors.
async fn accept(listener: &Accepting) -> (Stream, Peer) {
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
