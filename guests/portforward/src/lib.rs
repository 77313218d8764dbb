//! A TCP port forwarder: Twisted's `twisted.protocols.portforward`. Every
//! accepted connection opens one to `config.backend` (HOST:PORT) and bytes
//! are relayed both ways, each side the other's producer, so a slow reader
//! slows the fast writer down. Unlike Twisted's, a half-close is passed on,
//! and the host relays the bytes itself (`splice_to`).

use std::cell::RefCell;
use std::rc::Rc;

use weft_guest::endpoints::{ClientFactory, ConnectError, connect};
use weft_guest::{CloseReason, Factory, Protocol, Transport, config, log};

/// The accepted side's view of the backend side: not yet connected,
/// connected, or gone because the accepted side closed first.
type Peer = Rc<RefCell<PeerState>>;

#[derive(Default)]
enum PeerState {
    #[default]
    Connecting,
    Connected(Transport),
    Closed,
}

/// The accepted side (Twisted's ProxyServer).
struct ProxyServer {
    factory: &'static ProxyFactory,
    transport: Transport,
    peer: Peer,
}

impl Protocol for ProxyServer {
    fn transport(&self) -> &Transport {
        &self.transport
    }

    fn connection_made(&mut self) {
        // Don't read anything from the connecting client until we have
        // somewhere to send it to.
        self.transport.pause_producing();
        let client = ProxyClientFactory {
            server: self.transport.clone(),
            server_peer: self.peer.clone(),
        };
        if connect(&self.factory.backend, client).is_err() {
            self.transport.lose_connection();
        }
    }

    fn data_received(&mut self, data: &[u8]) {
        if let PeerState::Connected(peer) = &*self.peer.borrow() {
            peer.write(data);
        }
    }

    fn read_connection_lost(&mut self) {
        // Half-closeable: the backend sees our client's end of input, and
        // may still answer.
        if let PeerState::Connected(peer) = &*self.peer.borrow() {
            peer.lose_write_connection();
        }
    }

    fn connection_lost(&mut self, _reason: CloseReason) {
        if let PeerState::Connected(peer) = self.peer.replace(PeerState::Closed) {
            peer.lose_connection();
        }
    }
}

/// Connects each accepted connection to the backend (Twisted's
/// ProxyClientFactory).
struct ProxyClientFactory {
    server: Transport,
    server_peer: Peer,
}

impl ClientFactory for ProxyClientFactory {
    type Protocol = ProxyClient;

    fn build_protocol(self, transport: Transport) -> ProxyClient {
        ProxyClient {
            transport,
            peer: self.server,
            server_peer: self.server_peer,
        }
    }

    fn client_connection_failed(self, reason: ConnectError) {
        log::info(&format!("Unable to connect to peer: {}", reason.name()));
        self.server.lose_connection();
    }
}

/// The backend side (Twisted's ProxyClient).
struct ProxyClient {
    transport: Transport,
    peer: Transport,
    server_peer: Peer,
}

impl Protocol for ProxyClient {
    fn transport(&self) -> &Transport {
        &self.transport
    }

    fn connection_made(&mut self) {
        if matches!(*self.server_peer.borrow(), PeerState::Closed) {
            // The client left while we were connecting.
            self.transport.lose_connection();
            return;
        }
        *self.server_peer.borrow_mut() = PeerState::Connected(self.transport.clone());
        // Wire this and the peer transport together, for flow control and
        // for the bytes: from now on the host relays them both ways without
        // calling data_received, which Twisted's ProxyClient would pass on
        // unchanged.
        self.transport.splice_to(&self.peer);
        self.peer.splice_to(&self.transport);
        // We're connected, everybody can read to their hearts content.
        self.peer.resume_producing();
    }

    fn data_received(&mut self, data: &[u8]) {
        self.peer.write(data);
    }

    fn read_connection_lost(&mut self) {
        self.peer.lose_write_connection();
    }

    fn connection_lost(&mut self, _reason: CloseReason) {
        self.peer.lose_connection();
    }
}

/// Twisted's ProxyFactory, its backend from `config.backend`.
struct ProxyFactory {
    /// A client endpoint string for the backend.
    backend: String,
}

impl Default for ProxyFactory {
    fn default() -> Self {
        let backend = config::get("backend").unwrap_or_default();
        let (host, port) = backend.rsplit_once(':').unwrap_or((&backend, ""));
        let host = host.trim_start_matches('[').trim_end_matches(']');
        Self {
            backend: format!("tcp:host={}:port={port}", host.replace(':', "\\:")),
        }
    }
}

impl Factory for ProxyFactory {
    type Protocol = ProxyServer;

    fn build_protocol(&'static self, transport: Transport) -> ProxyServer {
        ProxyServer {
            factory: self,
            transport,
            peer: Peer::default(),
        }
    }

    fn start_factory(&'static self) {
        if config::get("backend").is_none() {
            log::error(
                "portforward needs config.backend=HOST:PORT; every connection will be closed",
            );
        }
    }
}

weft_guest::export!(ProxyFactory);
