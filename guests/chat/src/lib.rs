//! The chat room: every line from any client goes to every client, prefixed
//! with the address the sender connected to (the reference's `chat.py`).
//! With `config.idle-timeout=SECONDS`, a client silent for that long hears
//! `idle timeout` and is disconnected (Twisted's TimeoutMixin).

use std::cell::RefCell;
use std::time::Duration;

use weft_guest::basic::{LineProtocol, LineReceiver, SendLine};
use weft_guest::policies::TimeoutMixin;
use weft_guest::{CloseReason, Factory, Transport, config};

struct PubProtocol {
    factory: &'static PubFactory,
    transport: Transport,
    timeout: TimeoutMixin,
}

impl LineReceiver for PubProtocol {
    fn transport(&self) -> &Transport {
        &self.transport
    }

    fn connection_made(&mut self) {
        self.factory
            .clients
            .borrow_mut()
            .push(self.transport.clone());
        self.timeout.set_timeout(self.factory.idle_timeout);
    }

    fn connection_lost(&mut self, _reason: CloseReason) {
        self.timeout.set_timeout(None);
        self.factory
            .clients
            .borrow_mut()
            .retain(|c| *c != self.transport);
    }

    fn line_received(&mut self, line: &[u8]) {
        self.timeout.reset_timeout();
        let source = format!("<{}> ", self.transport.get_host());
        let message = [source.as_bytes(), line].concat();
        for c in self.factory.clients.borrow().iter() {
            c.send_line(&message);
        }
    }
}

struct PubFactory {
    clients: RefCell<Vec<Transport>>,
    idle_timeout: Option<Duration>,
}

impl Default for PubFactory {
    fn default() -> Self {
        let idle_timeout = config::get("idle-timeout")
            .and_then(|seconds| seconds.parse().ok())
            .and_then(|seconds| Duration::try_from_secs_f64(seconds).ok());
        Self {
            clients: RefCell::default(),
            idle_timeout,
        }
    }
}

impl Factory for PubFactory {
    type Protocol = LineProtocol<PubProtocol>;

    fn build_protocol(&'static self, transport: Transport) -> Self::Protocol {
        let idle = transport.clone();
        LineProtocol::new(PubProtocol {
            factory: self,
            transport,
            timeout: TimeoutMixin::new(move || {
                idle.send_line(b"idle timeout");
                idle.lose_connection();
            }),
        })
    }
}

weft_guest::export!(PubFactory);
