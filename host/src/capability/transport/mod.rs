//! The `transport` interface: the guest's handle on a connection. Guest
//! calls never block and never touch the socket: they queue bytes and
//! requests in the connection's [`Outbox`], and the connection task
//! carries them out. Its state is the store's resource table.

mod alerts;
mod watch;

pub use alerts::Alerts;
pub use watch::DuePauses;

use std::cell::Cell;
use std::io::Write as _;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use wasmtime::component::{HasSelf, Linker, Resource, ResourceTable, ResourceTableError};

use crate::net::stream::{self, SocketName};
use crate::wit::weft::protocol::transport::{self as wit, Host, HostTransport, Transport};
use crate::wit::{Address, AddressFamily, SocketAddress};

/// The guest's handle on a connection, stored in the instance's table.
struct TransportHandle {
    outbox: Arc<Outbox>,
}

/// Add `weft:protocol/transport`, current and 0.1.0, to `linker`: each
/// store's transports live in the resource table `table` projects.
pub fn add_to_linker<T: 'static>(
    linker: &mut Linker<T>,
    table: fn(&mut T) -> &mut ResourceTable,
) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, HasSelf<ResourceTable>>(linker, table)?;
    v1::add_to_linker(linker, table)
}

/// Give the guest a handle on the connection whose outbox is `outbox`:
/// what its `protocol` constructor takes.
pub fn insert(
    table: &mut ResourceTable,
    outbox: Arc<Outbox>,
) -> Result<Resource<Transport>, ResourceTableError> {
    let handle = table.push(TransportHandle { outbox })?;
    Ok(Resource::new_own(handle.rep()))
}

/// The outbox behind the guest's handle `this`.
fn outbox<'a>(
    table: &'a ResourceTable,
    this: &Resource<Transport>,
) -> wasmtime::Result<&'a Arc<Outbox>> {
    let handle: &TransportHandle = table.get(&Resource::new_borrow(this.rep()))?;
    Ok(&handle.outbox)
}

/// What the guest asked of one connection, waiting for its task, and the
/// connection's output backlog, which the guest may not grow past
/// `write_limit`.
pub struct Outbox {
    queued: Mutex<Queued>,
    /// Something was queued or requested since the last `take`.
    dirty: AtomicBool,
    /// Bytes the guest wrote that have not reached the socket yet,
    /// whether still queued here or already with the connection task.
    backlog: AtomicUsize,
    wake: Notify,
    /// Set while the connection's own task is calling the guest: what the
    /// guest queues then is taken right after the call, so needs no wake.
    calling: AtomicBool,
    ends: Ends,
    /// Backlog above which this connection's producer is not read from.
    write_buffer: usize,
    write_limit: usize,
    service: Arc<str>,
    /// The connection is over: further guest calls do nothing. Set under
    /// the `queued` lock, so writes and requests see it in order.
    ended: AtomicBool,
    /// Whose input this connection consumes (register-producer): woken
    /// when this backlog drains.
    producer: Mutex<Option<Weak<Outbox>>>,
    /// Whose output this connection's input feeds: not read from while
    /// that backlog is full.
    consumer: Mutex<Option<Weak<Outbox>>>,
    /// Whether `consumer` is set, so that the connection loop, which asks
    /// before every read, takes no lock for connections without one.
    has_consumer: AtomicBool,
    /// The guest's own producer watching the backlog.
    watch: watch::Watch,
    /// Where this connection's input goes without the guest (splice-to).
    splice: Mutex<Option<Weak<Outbox>>>,
    /// Whether `splice` is set, so that the connection loop, which asks
    /// after every read, takes no lock for connections without one.
    spliced: AtomicBool,
    /// When input spliced to this connection was last sent through its
    /// lent socket, in microseconds after `made` (0: never): traffic, for
    /// its idle timeout, though its task did not see it.
    sent_directly_at: AtomicU64,
    made: Instant,
}

/// How the guest asked to close.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Close {
    /// Flush, then close (lose-connection).
    Lose,
    /// Close now, dropping unsent data (abort-connection).
    Abort,
}

/// What the guest has asked of the connection so far; each stays asked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Requests {
    pub close: Option<Close>,
    /// The guest tried to queue more than `write_limit`; the connection
    /// is being aborted for it.
    pub overflowed: bool,
    /// lose-write-connection was called.
    pub close_write: bool,
    /// pause-producing is in effect.
    pub paused: bool,
    /// The token the guest watches the backlog with (watch-write-buffer).
    pub watch: Option<u64>,
    /// Another connection's input is spliced to this one: the connection
    /// lends its socket for it ([`Outbox::lend_socket`]).
    pub spliced_into: bool,
}

#[derive(Default)]
struct Queued {
    /// Writes not yet handed to the connection task, oldest first.
    writes: Vec<Vec<u8>>,
    requests: Requests,
    /// A second handle on the connection's socket, through which input
    /// spliced to it is sent at once while nothing else waits to be sent.
    lent_socket: Option<TcpStream>,
}

impl Outbox {
    pub fn new(
        service: Arc<str>,
        ends: &stream::Ends,
        write_buffer: usize,
        write_limit: usize,
    ) -> Self {
        Self {
            write_buffer,
            ended: AtomicBool::new(false),
            producer: Mutex::default(),
            consumer: Mutex::default(),
            has_consumer: AtomicBool::new(false),
            watch: watch::Watch::default(),
            splice: Mutex::default(),
            spliced: AtomicBool::new(false),
            sent_directly_at: AtomicU64::new(0),
            made: Instant::now(),
            queued: Mutex::default(),
            dirty: AtomicBool::new(false),
            backlog: AtomicUsize::new(0),
            wake: Notify::new(),
            calling: AtomicBool::new(false),
            ends: Ends::from(ends),
            write_limit,
            service,
        }
    }

    /// Wait until the guest has queued something since the last `take`,
    /// or the connection is alerted.
    pub async fn changed(&self) {
        self.wake.notified().await;
    }

    /// Wake the connection's task to look at its instance and the server:
    /// the instance was retired, or the server is stopping.
    pub fn alert(&self) {
        self.wake.notify_one();
    }

    /// Say whether the connection's task is in a call into the guest.
    pub fn set_calling(&self, calling: bool) {
        // SeqCst here and in `wake`, `take` and the `dirty` stores: each
        // side stores one flag then reads the other (the connection clears
        // `calling` then reads `dirty`; a writer sets `dirty` then reads
        // `calling`), so weaker orders could let both miss, and a write
        // from another connection's call would wait for an unrelated wake.
        self.calling.store(calling, Ordering::SeqCst);
    }

    /// If anything was queued or requested since the last call: the
    /// writes, appended to `unsent`, and the requests as they now stand.
    pub fn take(&self, unsent: &mut std::collections::VecDeque<Vec<u8>>) -> Option<Requests> {
        if !self.dirty.swap(false, Ordering::SeqCst) {
            return None;
        }
        let mut queued = self.lock();
        unsent.extend(queued.writes.drain(..));
        Some(queued.requests)
    }

    /// Output not yet on the socket, in bytes.
    pub fn backlog(&self) -> usize {
        self.backlog.load(Ordering::Acquire)
    }

    /// Whether the backlog is at or above the write buffer: then the
    /// producer feeding this connection should pause.
    pub fn is_full(&self) -> bool {
        self.backlog() >= self.write_buffer
    }

    /// Report a backlog that fills under a call to `due`: the instance
    /// whose guest holds this connection.
    pub fn report_pauses_to(&self, due: Arc<DuePauses>) {
        self.watch.report_to(due);
    }

    /// Whether the producer watching this backlog (if any) has news: it
    /// filled or drained since the producer was last told. Cheap, and
    /// only a hint outside a call: [`Self::producer_news`] decides.
    pub fn producer_news_waiting(&self) -> bool {
        if self.watch.told_full() {
            self.is_drained()
        } else {
            self.is_full()
        }
    }

    /// What to tell the producer watching this backlog, if anything: its
    /// token, and whether the backlog is full (pause) or drained (resume).
    /// Taken as told; ask only while holding the instance.
    pub fn producer_news(&self) -> Option<(u64, bool)> {
        let token = self.lock().requests.watch?;
        if !self.producer_news_waiting() {
            return None;
        }
        let full = !self.watch.told_full();
        self.watch.tell(full);
        Some((token, full))
    }

    /// Whether a full backlog has drained far enough for its producer to
    /// resume: below half the write buffer, so that a producer is not
    /// paused and resumed for every chunk it writes.
    pub fn is_drained(&self) -> bool {
        self.backlog() < self.write_buffer / 2
    }

    /// `bytes` of the backlog have reached the socket; a producer held
    /// back by a full backlog is woken once it drains.
    pub fn sent(&self, bytes: usize) {
        let before = self.backlog.fetch_sub(bytes, Ordering::AcqRel);
        if before >= self.write_buffer && before - bytes < self.write_buffer {
            self.wake_producer();
        }
    }

    /// Whether the connection this one's input feeds (its consumer) has
    /// more unsent output than its write buffer: then this one is not read.
    pub fn consumer_full(&self) -> bool {
        if !self.has_consumer.load(Ordering::Acquire) {
            return false;
        }
        let consumer = slot(&self.consumer).as_ref().and_then(Weak::upgrade);
        consumer.is_some_and(|c| !c.is_ended() && c.is_full())
    }

    /// The connection this one's input is spliced to (splice-to), which
    /// takes it instead of the guest.
    pub fn splice(&self) -> Option<Weak<Outbox>> {
        if !self.spliced.load(Ordering::Acquire) {
            return None;
        }
        slot(&self.splice).clone()
    }

    /// Write `data`, input read from the connection spliced to this one,
    /// as the guest's own writes are; dropped once this one takes none.
    /// While nothing else waits to be sent, it goes straight to the lent
    /// socket, so this connection's task is not woken for it (as
    /// `copy_bidirectional` writes what it reads). Returns the bytes sent
    /// that way.
    pub fn write_spliced(&self, data: &[u8]) -> usize {
        let queued = self.lock();
        let mut sent = 0;
        // Under the lock, and with no backlog (which counts what the
        // connection task holds too), nothing written earlier is unsent.
        if let Some(socket) = &queued.lent_socket
            && self.backlog() == 0
            && self.takes_writes(&queued.requests)
        {
            // A full socket or a failed one: the rest is queued, and the
            // connection task meets the same socket when it sends it.
            sent = (&*socket).write(data).unwrap_or(0);
            if sent > 0 {
                let at = u64::try_from(self.made.elapsed().as_micros()).unwrap_or(u64::MAX);
                self.sent_directly_at.store(at.max(1), Ordering::Relaxed);
            }
        }
        if sent < data.len() {
            self.queue(queued, data[sent..].to_vec());
        }
        sent
    }

    /// Send what is spliced to this connection through `socket`, a second
    /// handle on its own, from now on (see [`Self::write_spliced`]).
    pub fn lend_socket(&self, socket: TcpStream) {
        let mut queued = self.lock();
        if !self.is_ended() {
            queued.lent_socket = Some(socket);
        }
    }

    /// How long ago input spliced to this connection was last sent
    /// through its lent socket; `None` if never.
    pub fn since_sent_directly(&self) -> Option<Duration> {
        match self.sent_directly_at.load(Ordering::Relaxed) {
            0 => None,
            at => Some(
                self.made
                    .elapsed()
                    .saturating_sub(Duration::from_micros(at)),
            ),
        }
    }

    /// Send this connection's input to `consumer` from now on (splice-to),
    /// which takes it as its producer.
    fn splice_to(self: &Arc<Self>, consumer: &Arc<Outbox>) {
        consumer.register_producer(self);
        consumer.request(|q| q.requests.spliced_into = true);
        *slot(&self.splice) = Some(Arc::downgrade(consumer));
        self.spliced.store(true, Ordering::Release);
    }

    /// The connection is over: drop what is queued and ignore the guest.
    /// The lent socket is closed here, before the connection's own. Once
    /// is enough: the connection ends it in `finish` and again when it is
    /// dropped, in case `finish` never ran.
    pub fn end(&self) {
        let mut queued = self.lock();
        if self.is_ended() {
            return;
        }
        self.ended.store(true, Ordering::Release);
        queued.writes = Vec::new();
        queued.lent_socket = None;
        drop(queued);
        self.wake_producer();
    }

    /// Consume `producer`'s input (register-producer).
    fn register_producer(self: &Arc<Self>, producer: &Arc<Outbox>) {
        self.unregister_producer();
        *slot(&self.producer) = Some(Arc::downgrade(producer));
        *slot(&producer.consumer) = Some(Arc::downgrade(self));
        producer.has_consumer.store(true, Ordering::Release);
    }

    fn unregister_producer(&self) {
        let old = slot(&self.producer).take().and_then(|weak| weak.upgrade());
        if let Some(producer) = old {
            slot(&producer.consumer).take();
            producer.has_consumer.store(false, Ordering::Release);
            producer.alert();
        }
    }

    fn is_ended(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }

    fn wake_producer(&self) {
        let producer = slot(&self.producer).as_ref().and_then(Weak::upgrade);
        if let Some(producer) = producer {
            producer.alert();
        }
    }

    /// Queue `data`, unless the connection ended or the guest asked to
    /// close it (or its write side). Whether it still takes writes.
    fn write(&self, data: Vec<u8>) -> bool {
        self.queue(self.lock(), data)
    }

    /// Whether the connection still takes writes, given the guest's
    /// `requests`: it has not ended, nor been asked to close its output.
    fn takes_writes(&self, requests: &Requests) -> bool {
        !self.is_ended() && requests.close.is_none() && !requests.close_write
    }

    /// [`Self::write`], with the lock taken.
    fn queue(&self, mut queued: MutexGuard<'_, Queued>, data: Vec<u8>) -> bool {
        let requests = queued.requests;
        if !self.takes_writes(&requests) {
            return false;
        }
        if data.is_empty() {
            return true;
        }
        if self.backlog() + data.len() > self.write_limit {
            // Held output is host memory under guest control: cut it off,
            // and say so now, whatever the guest does next.
            tracing::warn!(
                service = &*self.service,
                "aborting a connection: the guest queued more than {} bytes of output for it",
                self.write_limit
            );
            queued.requests.overflowed = true;
            queued.requests.close = Some(Close::Abort);
            queued.writes = Vec::new();
        } else {
            let backlog = self.backlog.fetch_add(data.len(), Ordering::AcqRel) + data.len();
            queued.writes.push(data);
            if let Some(token) = requests.watch {
                self.watch.wrote(token, backlog >= self.write_buffer);
            }
        }
        let open = !queued.requests.overflowed;
        self.dirty.store(true, Ordering::SeqCst);
        drop(queued);
        self.wake();
        open
    }

    fn request(&self, change: impl FnOnce(&mut Queued)) {
        let mut queued = self.lock();
        if self.is_ended() {
            return;
        }
        change(&mut queued);
        self.dirty.store(true, Ordering::SeqCst);
        drop(queued);
        self.wake();
    }

    fn wake(&self) {
        if !self.calling.load(Ordering::SeqCst) {
            self.wake.notify_one();
            WOKE_OTHERS.set(true);
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queued> {
        // The lock is only held for plain field updates, which cannot panic.
        self.queued
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

thread_local! {
    /// Whether guest code on this thread has woken a connection other than
    /// the one it was called for since [`woke_other_connections`] last said.
    static WOKE_OTHERS: Cell<bool> = const { Cell::new(false) };
}

/// Whether guest code on this thread has written or made a request to a
/// connection other than the one it was called for since this was last
/// asked (a chat line broadcast, a forwarded chunk); asking clears it.
pub fn woke_other_connections() -> bool {
    WOKE_OTHERS.replace(false)
}

/// A producer or consumer slot; only replaced under the lock, which
/// cannot panic.
fn slot(slot: &Mutex<Option<Weak<Outbox>>>) -> MutexGuard<'_, Option<Weak<Outbox>>> {
    slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What a guest is told of a connection's ends: its addresses, and
/// whether it is encrypted.
#[derive(Clone, Debug)]
struct Ends {
    peer: SocketAddress,
    host: SocketAddress,
    secure: bool,
}

impl From<&stream::Ends> for Ends {
    fn from(ends: &stream::Ends) -> Self {
        let wit = |name: &SocketName| match name {
            SocketName::Tcp(addr) => SocketAddress::Tcp(Address::from(*addr)),
            SocketName::Unix(path) => SocketAddress::Unix(path.clone()),
        };
        Self {
            peer: wit(&ends.peer),
            host: wit(&ends.host),
            secure: ends.secure,
        }
    }
}

/// `address` as `get-peer` and `get-host` answer it: what they cannot
/// describe (a Unix socket) as IPv4, no host, port 0, as the WIT says.
fn legacy_address(address: &SocketAddress) -> Address {
    match address {
        SocketAddress::Tcp(address) => address.clone(),
        SocketAddress::Unix(_) => Address {
            family: AddressFamily::Ipv4,
            host: String::new(),
            port: 0,
        },
    }
}

impl Host for ResourceTable {}

impl HostTransport for ResourceTable {
    fn write(&mut self, this: Resource<Transport>, data: Vec<u8>) -> wasmtime::Result<()> {
        outbox(self, &this)?.write(data);
        Ok(())
    }

    fn write_checked(
        &mut self,
        this: Resource<Transport>,
        data: Vec<u8>,
    ) -> wasmtime::Result<bool> {
        Ok(outbox(self, &this)?.write(data))
    }

    fn lose_connection(&mut self, this: Resource<Transport>) -> wasmtime::Result<()> {
        outbox(self, &this)?.request(|q| {
            q.requests.close.get_or_insert(Close::Lose);
        });
        Ok(())
    }

    fn abort_connection(&mut self, this: Resource<Transport>) -> wasmtime::Result<()> {
        outbox(self, &this)?.request(|q| {
            q.requests.close = Some(Close::Abort);
            q.writes.clear();
        });
        Ok(())
    }

    fn lose_write_connection(&mut self, this: Resource<Transport>) -> wasmtime::Result<()> {
        outbox(self, &this)?.request(|q| q.requests.close_write = true);
        Ok(())
    }

    fn pause_producing(&mut self, this: Resource<Transport>) -> wasmtime::Result<()> {
        outbox(self, &this)?.request(|q| q.requests.paused = true);
        Ok(())
    }

    fn resume_producing(&mut self, this: Resource<Transport>) -> wasmtime::Result<()> {
        outbox(self, &this)?.request(|q| q.requests.paused = false);
        Ok(())
    }

    fn register_producer(
        &mut self,
        this: Resource<Transport>,
        producer: Resource<Transport>,
    ) -> wasmtime::Result<()> {
        let producer = outbox(self, &producer)?.clone();
        let consumer = outbox(self, &this)?;
        if !Arc::ptr_eq(consumer, &producer) {
            consumer.register_producer(&producer);
        }
        Ok(())
    }

    fn unregister_producer(&mut self, this: Resource<Transport>) -> wasmtime::Result<()> {
        outbox(self, &this)?.unregister_producer();
        Ok(())
    }

    fn splice_to(
        &mut self,
        this: Resource<Transport>,
        consumer: Resource<Transport>,
    ) -> wasmtime::Result<()> {
        let consumer = outbox(self, &consumer)?.clone();
        let producer = outbox(self, &this)?;
        if !Arc::ptr_eq(producer, &consumer) {
            producer.splice_to(&consumer);
        }
        Ok(())
    }

    fn watch_write_buffer(
        &mut self,
        this: Resource<Transport>,
        token: Option<u64>,
    ) -> wasmtime::Result<()> {
        let outbox = outbox(self, &this)?;
        outbox.request(|q| {
            if q.requests.watch != token {
                q.requests.watch = token;
                outbox.watch.restart();
            }
        });
        Ok(())
    }

    fn write_buffer_full(&mut self, this: Resource<Transport>) -> wasmtime::Result<bool> {
        let outbox = outbox(self, &this)?;
        let full = outbox.is_full();
        if full {
            // The backlog may drain before the connection looks at it
            // again: a yes counts as telling, so the drain is told.
            outbox.watch.answered_full();
        }
        Ok(full)
    }

    fn get_peer(&mut self, this: Resource<Transport>) -> wasmtime::Result<Address> {
        Ok(legacy_address(&outbox(self, &this)?.ends.peer))
    }

    fn get_host(&mut self, this: Resource<Transport>) -> wasmtime::Result<Address> {
        Ok(legacy_address(&outbox(self, &this)?.ends.host))
    }

    fn get_peer_address(&mut self, this: Resource<Transport>) -> wasmtime::Result<SocketAddress> {
        Ok(outbox(self, &this)?.ends.peer.clone())
    }

    fn get_host_address(&mut self, this: Resource<Transport>) -> wasmtime::Result<SocketAddress> {
        Ok(outbox(self, &this)?.ends.host.clone())
    }

    fn is_secure(&mut self, this: Resource<Transport>) -> wasmtime::Result<bool> {
        Ok(outbox(self, &this)?.ends.secure)
    }

    fn drop(&mut self, this: Resource<Transport>) -> wasmtime::Result<()> {
        self.delete(Resource::<TransportHandle>::new_own(this.rep()))?;
        Ok(())
    }
}

/// `weft:protocol/transport@0.1.0`, for components built against it: the
/// same resource, the same methods.
mod v1 {
    use wasmtime::component::{HasSelf, Linker, Resource, ResourceTable};

    use super::{HostTransport as Current, Transport};
    use crate::wit::Address;
    use crate::wit::v1::weft::protocol::transport::{self as wit, Host, HostTransport};

    pub fn add_to_linker<T: 'static>(
        linker: &mut Linker<T>,
        table: fn(&mut T) -> &mut ResourceTable,
    ) -> wasmtime::Result<()> {
        wit::add_to_linker::<T, HasSelf<ResourceTable>>(linker, table)
    }

    impl Host for ResourceTable {}

    impl HostTransport for ResourceTable {
        fn write(&mut self, this: Resource<Transport>, data: Vec<u8>) -> wasmtime::Result<()> {
            Current::write(self, this, data)
        }

        fn lose_connection(&mut self, this: Resource<Transport>) -> wasmtime::Result<()> {
            Current::lose_connection(self, this)
        }

        fn abort_connection(&mut self, this: Resource<Transport>) -> wasmtime::Result<()> {
            Current::abort_connection(self, this)
        }

        fn lose_write_connection(&mut self, this: Resource<Transport>) -> wasmtime::Result<()> {
            Current::lose_write_connection(self, this)
        }

        fn pause_producing(&mut self, this: Resource<Transport>) -> wasmtime::Result<()> {
            Current::pause_producing(self, this)
        }

        fn resume_producing(&mut self, this: Resource<Transport>) -> wasmtime::Result<()> {
            Current::resume_producing(self, this)
        }

        fn get_peer(&mut self, this: Resource<Transport>) -> wasmtime::Result<Address> {
            Current::get_peer(self, this)
        }

        fn get_host(&mut self, this: Resource<Transport>) -> wasmtime::Result<Address> {
            Current::get_host(self, this)
        }

        fn drop(&mut self, this: Resource<Transport>) -> wasmtime::Result<()> {
            Current::drop(self, this)
        }
    }
}
