//! One connection, accepted or dialed for a guest: reads from the peer into
//! `data-received` (or, spliced, into another connection's output) while
//! the output backlog is small, writes what the guest queued in order,
//! carries out its close requests, and tells the guest `connection-lost`
//! exactly once when it is over.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::pin;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;
use wasmtime::component::ResourceAny;

use crate::capability::outbound::{Dialed, Landing};
use crate::capability::transport::{self, Alerts, Close, Outbox, Requests};
use crate::guest::instance::{CallError, Instance};
use crate::metrics::{Closed, LimitHit, ServiceMetrics};
use crate::net::proxy::Proxied;
use crate::net::stream::{LINGER, LINGER_BYTES, SocketName, Stream};
use crate::sandbox::limits::{Limits, READ_CHUNK};
use crate::wit::{CloseReason, ConnectError};

/// Most buffers handed to one vectored write.
const MAX_IOVECS: usize = 64;

/// Read buffers a reactor thread keeps for reuse when none is in use.
const POOLED_READ_BUFFERS: usize = 8;

thread_local! {
    /// This reactor thread's read buffers not in use. A connection borrows
    /// one for a read and the call that delivers it, so idle connections
    /// hold none and busy ones share a few that stay warm in the cache.
    static READ_BUFFERS: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
}

/// How a connection ended.
#[derive(Debug)]
enum End {
    /// lose-connection flushed, or both sides shut down.
    Done,
    /// The socket failed: reset by the peer, or another I/O error.
    Lost(io::Error),
    /// abort-connection.
    Aborted,
    /// The guest queued more output than the write limit.
    Overflowed,
    /// No traffic for the idle timeout.
    Idle,
    /// The server is shutting down.
    Shutdown,
    /// The guest instance trapped; it can no longer be called.
    Retired,
}

/// What every connection of a service runs with, accepted or outbound:
/// the service's name and limits, the server's shutdown alert, and the
/// tasks shutdown waits for.
#[derive(Clone)]
pub struct Reactor {
    pub service: Arc<str>,
    pub limits: Limits,
    pub metrics: Arc<ServiceMetrics>,
    pub stopping: Arc<Alerts>,
    pub tasks: TaskTracker,
}

/// Where an instance's outbound connections land: served here, exactly
/// as accepted ones, or reported to the instance as failed.
pub struct Dialer {
    instance: Weak<Instance>,
    reactor: Reactor,
}

impl Dialer {
    pub fn new(instance: Weak<Instance>, reactor: Reactor) -> Self {
        Self { instance, reactor }
    }
}

impl Dialed for Dialer {
    fn connected(&self, stream: TcpStream, token: u64) -> Landing {
        let (instance, reactor) = (self.instance.upgrade(), self.reactor.clone());
        Box::pin(async move {
            if let Some(instance) = instance {
                serve(Stream::Tcp(stream), instance, Some(token), None, &reactor).await;
            }
        })
    }

    fn failed(&self, token: u64, reason: ConnectError) -> Landing {
        let instance = self.instance.upgrade();
        Box::pin(async move {
            if let Some(instance) = instance {
                let _ = instance.connect_failed(token, reason).await;
            }
        })
    }
}

/// Serve a connection with `instance` until it ends: an accepted one (with
/// the ends its PROXY header named, if `proxied`), or (`client`) the one
/// the guest asked for with `reactor.connect(.., token)`.
pub async fn serve(
    stream: Stream,
    instance: Arc<Instance>,
    client: Option<u64>,
    proxied: Option<Proxied>,
    reactor: &Reactor,
) {
    let metrics = &reactor.metrics;
    let Ok(mut ends) = stream.ends() else {
        metrics.closed(Closed::Lost); // The peer is already gone.
        return;
    };
    if let Some(proxied) = proxied {
        // The guest sees the connection as the balancer received it.
        ends.peer = SocketName::Tcp(proxied.peer);
        ends.host = SocketName::Tcp(proxied.host);
    }
    // Small writes go out at once; latency matters more than packet count.
    let _ = stream.set_nodelay(true);
    let limits = &reactor.limits;
    let outbox = Arc::new(Outbox::new(
        reactor.service.clone(),
        &ends,
        limits.write_buffer,
        limits.write_limit,
    ));
    let protocol = match (
        // Boxed, as `finish` below: each runs once per connection, and
        // inline their futures would take room in every connection's task
        // for its whole life (160 bytes of its 1,656).
        Box::pin(instance.build_protocol(outbox.clone(), client)).await,
        client,
    ) {
        (Ok(protocol), _) => protocol,
        (Err(CallError::HandleLimit), Some(token)) => {
            // The guest waits to hear of its connect: no handle was left.
            metrics.closed(Closed::Refused);
            let _ = instance.connect_failed(token, ConnectError::Limit).await;
            return;
        }
        (Err(CallError::HandleLimit), None) => {
            metrics.closed(Closed::Refused);
            return;
        }
        (Err(_), _) => {
            metrics.closed(Closed::Trap); // Logged by the instance.
            return;
        }
    };
    metrics.active.inc();
    tracing::debug!("connection made");
    let mut connection = Connection {
        metrics: metrics.clone(),
        stream,
        outbox,
        instance,
        protocol,
        write_buffer: limits.write_buffer,
        idle_timeout: limits.idle_timeout,
        last_traffic: Instant::now(),
        unsent: VecDeque::new(),
        requests: Requests::default(),
        sent_of_first: 0,
        read_eof: false,
        write_shut: false,
        lent_socket: false,
    };
    let (instance, outbox) = (connection.instance.clone(), connection.outbox.clone());
    let stopping = &reactor.stopping;
    let _retirement = instance.retirement().join(&outbox);
    let _shutdown = stopping.join(&outbox);
    let end = connection.run(stopping).await;
    match &end {
        End::Lost(error) => tracing::debug!("connection lost: {error}"),
        other => tracing::debug!("connection closed: {other:?}"),
    }
    metrics.closed(match &end {
        End::Done => Closed::Done,
        End::Lost(_) => Closed::Lost,
        End::Aborted => Closed::Aborted,
        End::Overflowed => {
            metrics.hit(LimitHit::WriteLimit);
            Closed::WriteLimit
        }
        End::Idle => Closed::IdleTimeout,
        End::Shutdown => Closed::Shutdown,
        End::Retired => Closed::Trap,
    });
    metrics.active.dec();
    Box::pin(connection.finish(end, stopping)).await;
}

struct Connection {
    metrics: Arc<ServiceMetrics>,
    stream: Stream,
    outbox: Arc<Outbox>,
    instance: Arc<Instance>,
    protocol: ResourceAny,
    /// Backlog above which the peer is not read from.
    write_buffer: usize,
    idle_timeout: Option<Duration>,
    last_traffic: Instant,
    /// Writes taken from the outbox and not yet fully sent.
    unsent: VecDeque<Vec<u8>>,
    /// The guest's requests as last taken from the outbox.
    requests: Requests,
    /// Bytes of `unsent[0]` already sent.
    sent_of_first: usize,
    /// The peer shut down its write side.
    read_eof: bool,
    /// We shut down our write side.
    write_shut: bool,
    /// The socket was lent to the outbox, for input spliced to it.
    lent_socket: bool,
}

impl Connection {
    async fn run(&mut self, stopping: &Alerts) -> End {
        let outbox = self.outbox.clone();
        // Made once: registering a waker costs more than an iteration.
        let mut changed = pin!(outbox.changed());
        loop {
            if self.instance.is_retired() {
                return End::Retired;
            }
            if stopping.raised() {
                return End::Shutdown;
            }
            self.absorb();
            if let Some(end) = self.tell_producer().await {
                return end;
            }
            let requests = self.requests;
            if requests.spliced_into && !self.lent_socket {
                self.lend_socket();
            }
            if requests.overflowed {
                return End::Overflowed;
            }
            if requests.close == Some(Close::Abort) {
                return End::Aborted;
            }
            let closing = requests.close == Some(Close::Lose);
            if self.unsent.is_empty() {
                if closing {
                    return End::Done;
                }
                if requests.close_write && !self.write_shut {
                    self.write_shut = true;
                    if let Err(error) = self.stream.shutdown().await {
                        return End::Lost(error);
                    }
                    if self.read_eof {
                        return End::Done;
                    }
                }
            }
            // A peer that will not read our output cannot make us buffer
            // without end: stop reading its input until the backlog drains;
            // likewise while the connection our input feeds is backed up,
            // or the guest is behind on what its subscriptions brought.
            let behind = self.instance.is_behind();
            let want_read = !requests.paused
                && !self.read_eof
                && !closing
                && !behind
                && self.outbox.backlog() < self.write_buffer
                && !self.outbox.consumer_full();
            let want_write = !self.unsent.is_empty();
            let idle_deadline = self.idle_timeout.map(|idle| self.last_traffic + idle);
            tokio::select! {
                biased;
                _ = &mut changed => changed.set(outbox.changed()),
                ready = self.stream.ready(want_read, want_write) => {
                    let ready = match ready {
                        Ok(ready) => ready,
                        Err(error) => return End::Lost(error),
                    };
                    if want_write
                        && ready.is_writable()
                        && let Err(error) = self.flush()
                    {
                        return End::Lost(error);
                    }
                    if want_read
                        && ready.is_readable()
                        && let Some(end) = self.read().await
                    {
                        return end;
                    }
                }
                () = self.instance.caught_up(), if behind => {}
                _ = sleep_until(idle_deadline) => {
                    // Spliced input sent through the lent socket is
                    // traffic too, though this task did not see it.
                    let idle = self.idle_timeout.unwrap_or_default();
                    match self.outbox.since_sent_directly() {
                        Some(since) if since < idle => {
                            let now = Instant::now();
                            self.last_traffic = now.checked_sub(since).unwrap_or(now);
                        }
                        _ => return End::Idle,
                    }
                }
            }
        }
    }

    /// Read once and hand the bytes (unless spliced), or the end of input,
    /// to the guest; then send what the guest wrote (once the other ready
    /// connections have had their turn, unless it wrote to them too), as
    /// the socket is almost always writable.
    async fn read(&mut self) -> Option<End> {
        let mut buffer = ReadBuffer::borrow();
        // Writes made during our own call need no wake-up: we take them
        // right after it.
        self.outbox.set_calling(true);
        transport::woke_other_connections();
        let delivered = match self.stream.read_now(&mut buffer).await {
            Ok(0) => {
                self.read_eof = true;
                if self.write_shut {
                    self.outbox.set_calling(false);
                    return Some(End::Done);
                }
                self.instance.read_connection_lost(self.protocol).await
            }
            Ok(read) => {
                self.metrics.received.inc_by(read as u64);
                if self.idle_timeout.is_some() {
                    self.last_traffic = Instant::now();
                }
                if let Some(consumer) = self.outbox.splice() {
                    // Relayed by the host (splice-to): no call, and nothing
                    // of ours to send. Once the consumer is gone, dropped.
                    if let Some(consumer) = consumer.upgrade() {
                        let sent = consumer.write_spliced(&buffer[..read]);
                        self.metrics.sent.inc_by(sent as u64);
                    }
                    self.outbox.set_calling(false);
                    return None;
                }
                self.instance
                    .data_received(self.protocol, &buffer[..read])
                    .await
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(error) => {
                self.outbox.set_calling(false);
                return Some(End::Lost(error));
            }
        };
        drop(buffer);
        self.outbox.set_calling(false);
        if delivered.is_err() {
            return Some(End::Retired);
        }
        if !transport::woke_other_connections() {
            // Send after the other ready connections have had their turn:
            // the guest calls then run back to back, its code and data
            // still warm in the cache, instead of each after a send whose
            // trip through the kernel's TCP stack has evicted them, and the
            // sends go out together. Under load this is worth a third more
            // HTTP requests a second. A call that wrote to other
            // connections (a chat line to the room) sends first, as its
            // peer's answer would otherwise wait behind all of theirs.
            tokio::task::yield_now().await;
        }
        self.absorb();
        self.flush().err().map(End::Lost)
    }

    /// Tell the guest's own producer, if it watches this connection
    /// (watch-write-buffer), that the backlog filled or drained since it
    /// was last told; what it writes in that call is taken at once.
    async fn tell_producer(&mut self) -> Option<End> {
        if self.requests.watch.is_none() || !self.outbox.producer_news_waiting() {
            return None;
        }
        self.outbox.set_calling(true);
        let told = self.instance.tell_producer(&self.outbox).await;
        self.outbox.set_calling(false);
        if told.is_err() {
            return Some(End::Retired);
        }
        self.absorb();
        None
    }

    /// Lend the outbox a second handle on the socket, so that input spliced
    /// to this connection is sent without waking this task. Plain TCP only:
    /// a TLS session's records are this task's to write.
    fn lend_socket(&mut self) {
        self.lent_socket = true;
        if let Some(socket) = self.stream.second_handle() {
            self.outbox.lend_socket(socket);
        }
    }

    /// Remember traffic for the idle timeout; without one, skip the clock.
    fn note_traffic(&mut self) {
        if self.idle_timeout.is_some() {
            self.last_traffic = Instant::now();
        }
    }

    /// Take what the guest queued: writes join `unsent` in order, and the
    /// requests as they now stand replace ours.
    fn absorb(&mut self) {
        if let Some(requests) = self.outbox.take(&mut self.unsent) {
            self.requests = requests;
        }
    }

    /// Write as much of `unsent` as the socket takes without waiting.
    fn flush(&mut self) -> io::Result<()> {
        while !self.unsent.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let mut count = 0;
            for (slot, chunk) in slices.iter_mut().zip(&self.unsent) {
                let start = if count == 0 { self.sent_of_first } else { 0 };
                *slot = IoSlice::new(&chunk[start..]);
                count += 1;
            }
            let written = match self.stream.try_write_vectored(&slices[..count]) {
                Ok(written) => written,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(error) => return Err(error),
            };
            self.outbox.sent(written);
            self.metrics.sent.inc_by(written as u64);
            self.note_traffic();
            let mut written = written;
            while let Some(first) = self.unsent.front() {
                let left = first.len() - self.sent_of_first;
                if written < left {
                    self.sent_of_first += written;
                    break;
                }
                written -= left;
                self.sent_of_first = 0;
                self.unsent.pop_front();
            }
        }
        Ok(())
    }

    /// Write everything unsent, waiting for the peer as needed.
    async fn flush_all(&mut self) -> io::Result<()> {
        while !self.unsent.is_empty() {
            self.stream.ready(false, true).await?;
            self.flush()?;
        }
        Ok(())
    }

    /// Close the socket as `end` requires and tell the guest, once.
    async fn finish(mut self, end: End, stopping: &Alerts) {
        if matches!(end, End::Shutdown) {
            // What the guest's `stop` hook wrote is sent before the close.
            self.absorb();
        }
        self.outbox.end();
        let reason = match &end {
            End::Done => CloseReason::Done,
            End::Aborted | End::Overflowed => {
                // A zero linger turns close into a reset: unsent data is dropped.
                let _ = self.stream.set_zero_linger();
                CloseReason::Aborted
            }
            End::Lost(_) | End::Idle | End::Shutdown => CloseReason::Lost,
            End::Retired => {
                let _ = self.flush();
                return;
            }
        };
        match end {
            End::Shutdown => {
                let _ = self.flush_all().await;
            }
            End::Idle => {
                let _ = self.flush();
            }
            _ => {}
        }
        if reason != CloseReason::Aborted && !self.write_shut {
            let _ = self.stream.shutdown().await;
        }
        if self
            .instance
            .connection_lost(self.protocol, reason)
            .await
            .is_err()
        {
            return;
        }
        if reason == CloseReason::Done && !self.read_eof {
            self.linger(stopping).await;
        }
    }

    /// After our FIN, read and discard until the peer closes too, within
    /// `LINGER` and `LINGER_BYTES`, so that closing with unread input does
    /// not reset the connection before the peer has read our last bytes.
    /// Shutdown cuts it short.
    async fn linger(&mut self, stopping: &Alerts) {
        let outbox = self.outbox.clone();
        let stopped = async {
            while !stopping.raised() {
                outbox.changed().await;
            }
        };
        // On the heap: a stack array would make every connection's task
        // 4 KiB larger for the whole of its life. Not from the read pool:
        // a lingering connection would hold 64 KiB for up to `LINGER`.
        let mut sink = vec![0u8; 4096];
        let mut drained = 0;
        let drain = async {
            while drained < LINGER_BYTES {
                match self.stream.read(&mut sink).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => drained += n,
                }
            }
        };
        tokio::select! {
            _ = tokio::time::timeout(LINGER, drain) => {}
            _ = stopped => {}
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // Also when the task is dropped before `finish` (the runtime shutting
        // down): the socket lent to the outbox must not keep it open.
        self.outbox.end();
    }
}

/// A `READ_CHUNK` buffer borrowed from this thread's pool, returned to it
/// when dropped (or freed, if the pool is full).
struct ReadBuffer(Box<[u8]>);

impl ReadBuffer {
    fn borrow() -> Self {
        let pooled = READ_BUFFERS.try_with(|pool| pool.borrow_mut().pop());
        Self(
            pooled
                .ok()
                .flatten()
                .unwrap_or_else(|| vec![0; READ_CHUNK].into_boxed_slice()),
        )
    }
}

impl std::ops::Deref for ReadBuffer {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl std::ops::DerefMut for ReadBuffer {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

impl Drop for ReadBuffer {
    fn drop(&mut self) {
        // An empty box in its place allocates nothing.
        let buffer = std::mem::take(&mut self.0);
        // After the thread's pool is gone (thread exit), it is just freed.
        let _ = READ_BUFFERS.try_with(|pool| {
            let mut pool = pool.borrow_mut();
            if pool.len() < POOLED_READ_BUFFERS {
                pool.push(buffer);
            }
        });
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
