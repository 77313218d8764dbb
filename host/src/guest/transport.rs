//! The `transport` resource the guest writes to. Guest calls never block and
//! never touch the socket: they queue bytes and requests in the
//! connection's [`Outbox`], and the connection task carries them out.

use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use tokio::sync::Notify;
use wasmtime::component::Resource;

use crate::sandbox::bindings::weft::protocol::transport::{Host, HostTransport};
use crate::sandbox::bindings::{Address, AddressFamily, SocketAddress};
use crate::sandbox::state::GuestState;

/// The guest's handle on a connection, stored in the instance's table.
pub struct TransportHandle {
    outbox: Arc<Outbox>,
}

impl TransportHandle {
    pub fn new(outbox: Arc<Outbox>) -> Self {
        Self { outbox }
    }
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
}

#[derive(Default)]
struct Queued {
    /// Writes not yet handed to the connection task, oldest first.
    writes: Vec<Vec<u8>>,
    requests: Requests,
}

impl Outbox {
    pub fn new(service: Arc<str>, ends: Ends, write_buffer: usize, write_limit: usize) -> Self {
        Self {
            write_buffer,
            ended: AtomicBool::new(false),
            producer: Mutex::default(),
            consumer: Mutex::default(),
            has_consumer: AtomicBool::new(false),
            queued: Mutex::default(),
            dirty: AtomicBool::new(false),
            backlog: AtomicUsize::new(0),
            wake: Notify::new(),
            calling: AtomicBool::new(false),
            ends,
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
        consumer.is_some_and(|c| !c.is_ended() && c.backlog() >= c.write_buffer)
    }

    /// The connection is over: drop what is queued and ignore the guest.
    pub fn end(&self) {
        let mut queued = self.lock();
        self.ended.store(true, Ordering::Release);
        queued.writes = Vec::new();
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
        let mut queued = self.lock();
        let requests = queued.requests;
        if self.is_ended() || requests.close.is_some() || requests.close_write {
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
            self.backlog.fetch_add(data.len(), Ordering::AcqRel);
            queued.writes.push(data);
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
pub struct Ends {
    pub peer: SocketAddress,
    pub host: SocketAddress,
    pub secure: bool,
}

impl Ends {
    /// A TCP connection between `peer` and `host`.
    pub fn tcp(peer: SocketAddr, host: SocketAddr, secure: bool) -> Self {
        Self {
            peer: SocketAddress::Tcp(tcp_address(peer)),
            host: SocketAddress::Tcp(tcp_address(host)),
            secure,
        }
    }

    /// A Unix socket connection; `None` for an end with no name.
    pub fn unix(peer: Option<String>, host: Option<String>) -> Self {
        Self {
            peer: SocketAddress::Unix(peer),
            host: SocketAddress::Unix(host),
            secure: false,
        }
    }
}

/// The WIT address of a TCP (or UDP) socket address.
pub(crate) fn tcp_address(addr: SocketAddr) -> Address {
    Address {
        family: match addr {
            SocketAddr::V4(_) => AddressFamily::Ipv4,
            SocketAddr::V6(_) => AddressFamily::Ipv6,
        },
        host: addr.ip().to_string(),
        port: addr.port(),
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

impl Host for GuestState {}

impl HostTransport for GuestState {
    fn write(&mut self, this: Resource<TransportHandle>, data: Vec<u8>) -> wasmtime::Result<()> {
        self.table.get(&this)?.outbox.write(data);
        Ok(())
    }

    fn write_checked(
        &mut self,
        this: Resource<TransportHandle>,
        data: Vec<u8>,
    ) -> wasmtime::Result<bool> {
        Ok(self.table.get(&this)?.outbox.write(data))
    }

    fn lose_connection(&mut self, this: Resource<TransportHandle>) -> wasmtime::Result<()> {
        self.table.get(&this)?.outbox.request(|q| {
            q.requests.close.get_or_insert(Close::Lose);
        });
        Ok(())
    }

    fn abort_connection(&mut self, this: Resource<TransportHandle>) -> wasmtime::Result<()> {
        self.table.get(&this)?.outbox.request(|q| {
            q.requests.close = Some(Close::Abort);
            q.writes.clear();
        });
        Ok(())
    }

    fn lose_write_connection(&mut self, this: Resource<TransportHandle>) -> wasmtime::Result<()> {
        self.table
            .get(&this)?
            .outbox
            .request(|q| q.requests.close_write = true);
        Ok(())
    }

    fn pause_producing(&mut self, this: Resource<TransportHandle>) -> wasmtime::Result<()> {
        self.table
            .get(&this)?
            .outbox
            .request(|q| q.requests.paused = true);
        Ok(())
    }

    fn resume_producing(&mut self, this: Resource<TransportHandle>) -> wasmtime::Result<()> {
        self.table
            .get(&this)?
            .outbox
            .request(|q| q.requests.paused = false);
        Ok(())
    }

    fn register_producer(
        &mut self,
        this: Resource<TransportHandle>,
        producer: Resource<TransportHandle>,
    ) -> wasmtime::Result<()> {
        let producer = self.table.get(&producer)?.outbox.clone();
        let consumer = &self.table.get(&this)?.outbox;
        if !Arc::ptr_eq(consumer, &producer) {
            consumer.register_producer(&producer);
        }
        Ok(())
    }

    fn unregister_producer(&mut self, this: Resource<TransportHandle>) -> wasmtime::Result<()> {
        self.table.get(&this)?.outbox.unregister_producer();
        Ok(())
    }

    fn get_peer(&mut self, this: Resource<TransportHandle>) -> wasmtime::Result<Address> {
        Ok(legacy_address(&self.table.get(&this)?.outbox.ends.peer))
    }

    fn get_host(&mut self, this: Resource<TransportHandle>) -> wasmtime::Result<Address> {
        Ok(legacy_address(&self.table.get(&this)?.outbox.ends.host))
    }

    fn get_peer_address(
        &mut self,
        this: Resource<TransportHandle>,
    ) -> wasmtime::Result<SocketAddress> {
        Ok(self.table.get(&this)?.outbox.ends.peer.clone())
    }

    fn get_host_address(
        &mut self,
        this: Resource<TransportHandle>,
    ) -> wasmtime::Result<SocketAddress> {
        Ok(self.table.get(&this)?.outbox.ends.host.clone())
    }

    fn is_secure(&mut self, this: Resource<TransportHandle>) -> wasmtime::Result<bool> {
        Ok(self.table.get(&this)?.outbox.ends.secure)
    }

    fn drop(&mut self, this: Resource<TransportHandle>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

/// `weft:protocol/transport@0.1.0`, for components built against it: the
/// same resource, the same methods.
mod v1 {
    use wasmtime::component::Resource;

    use super::{HostTransport as Current, TransportHandle};
    use crate::sandbox::bindings::Address;
    use crate::sandbox::bindings::v1::weft::protocol::transport::{Host, HostTransport};
    use crate::sandbox::state::GuestState;

    impl Host for GuestState {}

    impl HostTransport for GuestState {
        fn write(
            &mut self,
            this: Resource<TransportHandle>,
            data: Vec<u8>,
        ) -> wasmtime::Result<()> {
            Current::write(self, this, data)
        }

        fn lose_connection(&mut self, this: Resource<TransportHandle>) -> wasmtime::Result<()> {
            Current::lose_connection(self, this)
        }

        fn abort_connection(&mut self, this: Resource<TransportHandle>) -> wasmtime::Result<()> {
            Current::abort_connection(self, this)
        }

        fn lose_write_connection(
            &mut self,
            this: Resource<TransportHandle>,
        ) -> wasmtime::Result<()> {
            Current::lose_write_connection(self, this)
        }

        fn pause_producing(&mut self, this: Resource<TransportHandle>) -> wasmtime::Result<()> {
            Current::pause_producing(self, this)
        }

        fn resume_producing(&mut self, this: Resource<TransportHandle>) -> wasmtime::Result<()> {
            Current::resume_producing(self, this)
        }

        fn get_peer(&mut self, this: Resource<TransportHandle>) -> wasmtime::Result<Address> {
            Current::get_peer(self, this)
        }

        fn get_host(&mut self, this: Resource<TransportHandle>) -> wasmtime::Result<Address> {
            Current::get_host(self, this)
        }

        fn drop(&mut self, this: Resource<TransportHandle>) -> wasmtime::Result<()> {
            Current::drop(self, this)
        }
    }
}
