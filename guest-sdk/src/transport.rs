//! The host's handle on one connection (Twisted's ITransport), shared by its
//! clones, plus the address and close-reason types that come with it.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::rc::Rc;

use crate::bindings::weft::protocol::transport as wit;
pub use crate::bindings::weft::protocol::types::{
    Address, AddressFamily, CloseReason, SocketAddress,
};
use crate::producer::PushProducer;

/// One connection's transport. Clones share the connection, so a factory
/// can keep clones of its clients' transports (a chat room does) and write
/// to them; two clones compare equal, transports of different connections
/// do not.
#[derive(Clone)]
pub struct Transport(Rc<Shared>);

struct Shared {
    connection: Connection,
    disconnecting: Cell<bool>,
    /// The host said the connection takes no more writes (it ended, or was
    /// aborted by the write limit): later writes are dropped at once.
    dead: Cell<bool>,
    /// Written during the current call into the guest and not yet handed
    /// to the host: one host write per transport per call, not one per
    /// `write`.
    pending: RefCell<Vec<u8>>,
    /// Has the connection's protocol carry on with its work in a later
    /// call (set by the SDK when it builds the protocol).
    waker: RefCell<Option<Rc<dyn Fn()>>>,
    /// The token the host tells the registered push producer by.
    watch: Cell<Option<u64>>,
}

/// Output held in transports' `pending` buffers above which it is handed
/// to the host at once, so that a call fanning out to many transports
/// holds at most this much in guest memory.
const MAX_PENDING: usize = 1 << 20;

/// A transport's pending buffer keeps up to this much capacity between
/// calls.
const RETAINED_PENDING: usize = 64 << 10;

thread_local! {
    /// Transports with pending output, and how many bytes they hold.
    static DIRTY: RefCell<(Vec<Transport>, usize)> = const { RefCell::new((Vec::new(), 0)) };
}

/// Hand every transport's pending output to the host. The SDK calls this
/// when each call into the guest ends.
pub(crate) fn flush_all() {
    let mut dirty = DIRTY.with_borrow_mut(|(dirty, bytes)| {
        *bytes = 0;
        std::mem::take(dirty)
    });
    for transport in dirty.drain(..) {
        transport.flush();
    }
    // Handed back, so that the next call's first write allocates nothing.
    DIRTY.with_borrow_mut(|(now, _)| {
        if now.is_empty() {
            *now = dirty;
        }
    });
}

enum Connection {
    Host(wit::Transport),
    #[cfg(not(target_arch = "wasm32"))]
    Memory(Rc<RefCell<Recording>>),
}

/// What a transport with no host behind it records of a protocol's calls,
/// for unit tests to read (`testing::StringTransport`).
#[cfg(not(target_arch = "wasm32"))]
#[derive(Default)]
pub(crate) struct Recording {
    pub(crate) written: Vec<u8>,
    pub(crate) controls: Vec<Control>,
}

/// The addresses of an in-memory connection: a peer 127.0.0.1:54321
/// connected to 127.0.0.1:1025.
#[cfg(not(target_arch = "wasm32"))]
fn memory_address(port: u16) -> SocketAddress {
    SocketAddress::Tcp(Address {
        family: AddressFamily::Ipv4,
        host: "127.0.0.1".into(),
        port,
    })
}

impl Transport {
    pub(crate) fn from_host(transport: wit::Transport) -> Self {
        Self::new(Connection::Host(transport))
    }

    /// A transport that records what its protocol does into `recording`.
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn recording_into(recording: Rc<RefCell<Recording>>) -> Self {
        Self::new(Connection::Memory(recording))
    }

    fn new(connection: Connection) -> Self {
        Self(Rc::new(Shared {
            connection,
            disconnecting: Cell::new(false),
            dead: Cell::new(false),
            pending: RefCell::default(),
            waker: RefCell::default(),
            watch: Cell::new(None),
        }))
    }

    pub(crate) fn set_waker(&self, waker: Rc<dyn Fn()>) {
        *self.0.waker.borrow_mut() = Some(waker);
    }

    /// Have this connection's protocol continue its work
    /// ([`Protocol::continue_work`](crate::Protocol::continue_work)) in a
    /// later call: something it was waiting for is done.
    pub fn wake_protocol(&self) {
        let waker = self.0.waker.borrow().clone();
        if let Some(waker) = waker {
            waker();
        }
    }

    /// Queue `data` for the peer; writes go out in order. What one call
    /// into the guest writes to a transport reaches the host as one write.
    pub fn write(&self, data: &[u8]) {
        if data.is_empty() || self.0.dead.get() {
            return;
        }
        // An in-memory transport records at once, for tests to read.
        #[cfg(not(target_arch = "wasm32"))]
        if let Connection::Memory(_) = &self.0.connection {
            return self.send(data);
        }
        let mut pending = self.0.pending.borrow_mut();
        let first = pending.is_empty();
        pending.extend_from_slice(data);
        drop(pending);
        let over = DIRTY.with_borrow_mut(|(dirty, bytes)| {
            if first {
                dirty.push(self.clone());
            }
            *bytes += data.len();
            *bytes > MAX_PENDING
        });
        if over {
            flush_all();
        }
    }

    /// Hand this transport's pending output to the host.
    fn flush(&self) {
        let mut pending = self.0.pending.borrow_mut();
        if !pending.is_empty() {
            self.send(&pending);
            pending.clear();
            // Kept for the next call, unless a burst made it large.
            pending.shrink_to(RETAINED_PENDING);
        }
    }

    fn send(&self, data: &[u8]) {
        match &self.0.connection {
            Connection::Host(transport) => {
                if !transport.write_checked(data) {
                    self.0.dead.set(true);
                }
            }
            #[cfg(not(target_arch = "wasm32"))]
            Connection::Memory(memory) => memory.borrow_mut().written.extend_from_slice(data),
        }
    }

    /// Write several buffers as one (Twisted's writeSequence): one call
    /// across the sandbox boundary instead of one per part.
    pub fn write_sequence(&self, parts: &[&[u8]]) {
        self.write(&parts.concat());
    }

    /// Close once everything written has been sent (Twisted's loseConnection).
    pub fn lose_connection(&self) {
        self.0.disconnecting.set(true);
        self.control(Control::Lose);
    }

    /// Close now, discarding unsent data (Twisted's abortConnection).
    pub fn abort_connection(&self) {
        self.0.disconnecting.set(true);
        self.control(Control::Abort);
    }

    /// Shut down the write side after flushing (Twisted's loseWriteConnection).
    pub fn lose_write_connection(&self) {
        self.control(Control::LoseWrite);
    }

    /// Stop delivering data from the peer (Twisted's pauseProducing).
    pub fn pause_producing(&self) {
        self.control(Control::Pause);
    }

    /// Deliver data from the peer again (Twisted's resumeProducing).
    pub fn resume_producing(&self) {
        self.control(Control::Resume);
    }

    /// Make this connection the consumer of `producer`'s input (Twisted's
    /// registerProducer with a streaming producer): while this connection
    /// has more unsent output than the operator's write buffer, the host
    /// stops reading from `producer`. A proxy registers each side as the
    /// other's producer.
    pub fn register_producer(&self, producer: &Transport) {
        self.flush();
        match (&self.0.connection, &producer.0.connection) {
            (Connection::Host(consumer), Connection::Host(producer)) => {
                consumer.register_producer(producer)
            }
            #[cfg(not(target_arch = "wasm32"))]
            _ => {}
        }
    }

    /// Make `producer` the writer of this connection's output (Twisted's
    /// registerProducer with the guest's own streaming producer): it is
    /// paused while the connection's unsent output is at or above the
    /// operator's write buffer, and resumed once that has drained below
    /// half of it, so a slow reader slows it down instead of filling the
    /// host's memory. Replaces any push producer registered before.
    pub fn register_push_producer(&self, producer: Rc<dyn PushProducer>) {
        self.flush();
        let token = crate::reactor::token();
        if let Some(old) = self.0.watch.replace(Some(token)) {
            crate::producer::forget(old);
        }
        crate::producer::register(token, producer);
        match &self.0.connection {
            Connection::Host(transport) => transport.watch_write_buffer(Some(token)),
            #[cfg(not(target_arch = "wasm32"))]
            Connection::Memory(_) => {}
        }
    }

    /// Whether the connection's unsent output, counting what this call
    /// wrote, is at or above the operator's write buffer: a producer that
    /// writes when asked (Twisted's pull producer) asks this first.
    pub fn write_buffer_full(&self) -> bool {
        self.flush();
        match &self.0.connection {
            Connection::Host(transport) => transport.write_buffer_full(),
            #[cfg(not(target_arch = "wasm32"))]
            Connection::Memory(_) => false,
        }
    }

    /// Forget the producer, another connection or the guest's own
    /// (Twisted's unregisterProducer).
    pub fn unregister_producer(&self) {
        let watched = self.0.watch.take();
        if let Some(token) = watched {
            crate::producer::forget(token);
        }
        match &self.0.connection {
            Connection::Host(transport) => {
                if watched.is_some() {
                    transport.watch_write_buffer(None);
                }
                transport.unregister_producer()
            }
            #[cfg(not(target_arch = "wasm32"))]
            Connection::Memory(_) => {}
        }
    }

    /// Relay what this connection receives from now on to `consumer`, in
    /// the host: no [`Protocol::data_received`](crate::Protocol::data_received)
    /// is called for it, so a proxy that passes bytes on unchanged pays no
    /// call per chunk. This connection becomes `consumer`'s producer, as
    /// with [`register_producer`](Self::register_producer). The protocol is
    /// still told when the peer ends its input and when the connection is
    /// lost. Input arriving once `consumer` has closed is dropped.
    pub fn splice_to(&self, consumer: &Transport) {
        // What this call wrote to `consumer` goes out before what the
        // splice relays.
        consumer.flush();
        match (&self.0.connection, &consumer.0.connection) {
            (Connection::Host(producer), Connection::Host(consumer)) => {
                producer.splice_to(consumer)
            }
            #[cfg(not(target_arch = "wasm32"))]
            _ => {}
        }
    }

    /// The connection is gone: stop its push producer for good.
    pub(crate) fn stop_producer(&self) {
        let producer = self.0.watch.take().and_then(crate::producer::forget);
        if let Some(producer) = producer {
            producer.stop_producing();
        }
    }

    /// Whether `lose_connection` or `abort_connection` has been called
    /// (Twisted's `transport.disconnecting`).
    pub fn disconnecting(&self) -> bool {
        self.0.disconnecting.get()
    }

    /// The remote end of the connection (Twisted's getPeer): a TCP
    /// address, or a Unix socket's (usually with no name).
    pub fn get_peer(&self) -> SocketAddress {
        match &self.0.connection {
            Connection::Host(transport) => transport.get_peer_address(),
            #[cfg(not(target_arch = "wasm32"))]
            Connection::Memory(_) => memory_address(54321),
        }
    }

    /// The local address the connection was accepted on (Twisted's
    /// getHost): the listening interface and port, or socket path.
    pub fn get_host(&self) -> SocketAddress {
        match &self.0.connection {
            Connection::Host(transport) => transport.get_host_address(),
            #[cfg(not(target_arch = "wasm32"))]
            Connection::Memory(_) => memory_address(1025),
        }
    }

    /// Whether the connection is encrypted: accepted on an `ssl:` endpoint
    /// (Twisted's `ISSLTransport.providedBy(transport)`).
    pub fn is_secure(&self) -> bool {
        match &self.0.connection {
            Connection::Host(transport) => transport.is_secure(),
            #[cfg(not(target_arch = "wasm32"))]
            Connection::Memory(_) => false,
        }
    }

    fn control(&self, control: Control) {
        // What was written before goes out before the close or pause.
        self.flush();
        match &self.0.connection {
            Connection::Host(transport) => match control {
                Control::Lose => transport.lose_connection(),
                Control::Abort => transport.abort_connection(),
                Control::LoseWrite => transport.lose_write_connection(),
                Control::Pause => transport.pause_producing(),
                Control::Resume => transport.resume_producing(),
            },
            #[cfg(not(target_arch = "wasm32"))]
            Connection::Memory(memory) => memory.borrow_mut().controls.push(control),
        }
    }
}

/// The transport calls that change a connection's state rather than send data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Control {
    Lose,
    Abort,
    LoseWrite,
    Pause,
    Resume,
}

impl PartialEq for Transport {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Transport {}

impl Hash for Transport {
    fn hash<H: Hasher>(&self, state: &mut H) {
        Rc::as_ptr(&self.0).hash(state);
    }
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("disconnecting", &self.disconnecting())
            .finish_non_exhaustive()
    }
}

/// Formats an address the way Twisted's `repr` does, so that protocols
/// ported from Twisted print the same bytes:
/// `IPv4Address(type='TCP', host='127.0.0.1', port=1025)`.
impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.family {
            AddressFamily::Ipv4 => write!(
                f,
                "IPv4Address(type='TCP', host='{}', port={})",
                self.host, self.port
            ),
            AddressFamily::Ipv6 => write!(
                f,
                "IPv6Address(type='TCP', host='{}', port={}, flowInfo=0, scopeID=0)",
                self.host, self.port
            ),
        }
    }
}

/// Formats an address the way Twisted's `repr` does: a TCP address as
/// above, a Unix socket's as `UNIXAddress('/run/chat.sock')`, or
/// `UNIXAddress(None)` for one with no name.
impl fmt::Display for SocketAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SocketAddress::Tcp(address) => address.fmt(f),
            SocketAddress::Unix(None) => f.write_str("UNIXAddress(None)"),
            SocketAddress::Unix(Some(path)) => write!(f, "UNIXAddress({})", python_repr(path)),
        }
    }
}

/// `text` as Python's `repr` of a `str` writes it: in single quotes, or
/// double quotes if it holds a single quote and no double quote, with
/// backslashes, the quote and control characters escaped.
fn python_repr(text: &str) -> String {
    let quote = if text.contains('\'') && !text.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut repr = String::with_capacity(text.len() + 2);
    repr.push(quote);
    for c in text.chars() {
        match c {
            '\\' => repr.push_str("\\\\"),
            '\n' => repr.push_str("\\n"),
            '\r' => repr.push_str("\\r"),
            '\t' => repr.push_str("\\t"),
            c if c == quote => {
                repr.push('\\');
                repr.push(c);
            }
            c if c.is_control() => repr.push_str(&format!("\\x{:02x}", u32::from(c))),
            c => repr.push(c),
        }
    }
    repr.push(quote);
    repr
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_addresses_print_like_twisted() {
        let named = SocketAddress::Unix(Some("/run/chat.sock".into()));
        assert_eq!(named.to_string(), "UNIXAddress('/run/chat.sock')");
        assert_eq!(SocketAddress::Unix(None).to_string(), "UNIXAddress(None)");
        let quoted = SocketAddress::Unix(Some("it's\\here".into()));
        assert_eq!(quoted.to_string(), "UNIXAddress(\"it's\\\\here\")");
    }

    #[test]
    fn addresses_print_like_twisted() {
        let v4 = Address {
            family: AddressFamily::Ipv4,
            host: "127.0.0.1".into(),
            port: 1025,
        };
        assert_eq!(
            v4.to_string(),
            "IPv4Address(type='TCP', host='127.0.0.1', port=1025)"
        );
        let v6 = Address {
            family: AddressFamily::Ipv6,
            host: "::1".into(),
            port: 80,
        };
        assert_eq!(
            v6.to_string(),
            "IPv6Address(type='TCP', host='::1', port=80, flowInfo=0, scopeID=0)"
        );
    }

    #[test]
    fn clones_are_equal_and_share_state() {
        let wire = crate::testing::StringTransport::new();
        let a = wire.transport();
        let b = a.clone();
        let other = crate::testing::StringTransport::new().transport();
        assert_eq!(a, b);
        assert_ne!(a, other);
        b.lose_connection();
        assert!(a.disconnecting());
        assert!(!other.disconnecting());
    }
}
