//! The chat room: every line from any client goes to every client, prefixed
//! with the address the sender connected to (the reference's `chat.py`).

use std::cell::RefCell;

use weft_guest::basic::{LineProtocol, LineReceiver, SendLine};
use weft_guest::{CloseReason, Factory, Transport};

struct PubProtocol {
    factory: &'static PubFactory,
    transport: Transport,
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
    }

    fn connection_lost(&mut self, _reason: CloseReason) {
        self.factory
            .clients
            .borrow_mut()
            .retain(|c| *c != self.transport);
    }

    fn line_received(&mut self, line: &[u8]) {
        let source = format!("<{}> ", self.transport.get_host());
        let message = [source.as_bytes(), line].concat();
        for c in self.factory.clients.borrow().iter() {
            c.send_line(&message);
        }
    }
}

#[derive(Default)]
struct PubFactory {
    clients: RefCell<Vec<Transport>>,
}

impl Factory for PubFactory {
    type Protocol = LineProtocol<PubProtocol>;

    fn build_protocol(&'static self, transport: Transport) -> Self::Protocol {
        LineProtocol::new(PubProtocol {
            factory: self,
            transport,
        })
    }
}

weft_guest::export!(PubFactory);
