//! Twisted's Protocol and Factory, and the glue that serves them through the
//! WIT `protocol` export: one [`ProtocolHandle`] per connection.

use std::cell::RefCell;

use crate::bindings::exports::weft::protocol::protocol::{Guest, GuestProtocol};
use crate::bindings::weft::protocol::transport as wit;
use crate::{CloseReason, Transport};

/// The handler for one connection (Twisted's `Protocol`). The host calls
/// these methods one at a time, in the order events happen.
pub trait Protocol: 'static {
    /// The connection's transport (Twisted's `self.transport`).
    fn transport(&self) -> &Transport;

    /// The connection is established and the protocol built
    /// (Twisted's connectionMade).
    fn connection_made(&mut self) {}

    /// Bytes from the peer; boundaries between calls carry no meaning
    /// (Twisted's dataReceived).
    fn data_received(&mut self, data: &[u8]);

    /// The peer shut down its write side. By default the connection is
    /// closed once pending writes are flushed, as Twisted does for protocols
    /// that are not half-closeable; override to keep writing.
    fn read_connection_lost(&mut self) {
        self.transport().lose_connection();
    }

    /// The connection has ended; the last call this protocol receives
    /// (Twisted's connectionLost).
    fn connection_lost(&mut self, reason: CloseReason) {
        let _ = reason;
    }
}

/// Builds one protocol per connection and holds what connections share
/// (Twisted's `Factory`). The factory lives for the whole guest instance, so
/// protocols may keep a `&'static` reference to it.
pub trait Factory: 'static {
    /// The protocol built for each connection.
    type Protocol: Protocol;

    /// Build the protocol for a new connection (Twisted's buildProtocol).
    /// `connection_made` is called on the result right after.
    fn build_protocol(&'static self, transport: Transport) -> Self::Protocol;
}

/// Where [`export!`](crate::export) keeps the guest's one factory.
pub trait FactoryCell: 'static {
    /// The exported factory.
    type Factory: Factory;

    /// The factory, built on first use.
    fn get() -> &'static Self::Factory;
}

/// The WIT `protocol` resource: one connection's protocol, behind a
/// `RefCell` because the host calls resource methods through `&self`. The
/// host never calls into the guest re-entrantly, so the borrow never fails.
pub struct ProtocolHandle<C: FactoryCell>(RefCell<<C::Factory as Factory>::Protocol>);

impl<C: FactoryCell> Guest for C {
    type Protocol = ProtocolHandle<C>;
}

impl<C: FactoryCell> GuestProtocol for ProtocolHandle<C> {
    fn new(transport: wit::Transport) -> Self {
        let mut protocol = C::get().build_protocol(Transport::from_host(transport));
        protocol.connection_made();
        Self(RefCell::new(protocol))
    }

    fn data_received(&self, data: Vec<u8>) {
        self.0.borrow_mut().data_received(&data);
    }

    fn read_connection_lost(&self) {
        self.0.borrow_mut().read_connection_lost();
    }

    fn connection_lost(&self, reason: CloseReason) {
        self.0.borrow_mut().connection_lost(reason);
    }
}
