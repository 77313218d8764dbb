//! The chat room with the room kept by the host: the seed `chat.py`'s
//! wire behaviour, every line from any client going to every client
//! prefixed with the address the sender connected to, but carried by a
//! topic, so every worker, instance (`isolation=connection`) and, on
//! Redis, process of the service is one room.

use std::cell::RefCell;

use weft_guest::basic::{LineProtocol, LineReceiver, SendLine};
use weft_guest::messaging::{self, Subscriber};
use weft_guest::{CloseReason, Factory, Transport, config, log};

/// The topic every line goes through.
const ROOM: &str = "room";

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
        if self.factory.crash.as_deref().map(str::as_bytes) == Some(line) {
            panic!(
                "asked to crash by the line {:?}",
                String::from_utf8_lossy(line)
            );
        }
        let source = format!("<{}> ", self.transport.get_host());
        let message = [source.as_bytes(), line].concat();
        if let Err(error) = messaging::publish(ROOM, &message) {
            log::warn(&format!(
                "a line was not sent to the room: {}",
                error.name()
            ));
            self.transport
                .send_line(format!("* not sent: {}", error.name()).as_bytes());
        }
    }
}

struct PubFactory {
    /// This instance's clients: the room's other clients are other
    /// instances', reached through the topic.
    clients: RefCell<Vec<Transport>>,
    /// A line that panics (`config.crash=LINE`), to try out what a trap
    /// does; unset, none does.
    crash: Option<String>,
}

impl Default for PubFactory {
    fn default() -> Self {
        Self {
            clients: RefCell::default(),
            crash: config::get("crash"),
        }
    }
}

impl Factory for PubFactory {
    type Protocol = LineProtocol<PubProtocol>;

    fn start_factory(&'static self) {
        if let Err(error) = messaging::subscribe(ROOM, Room { factory: self }) {
            log::error(&format!("cannot join the room: {}", error.name()));
        }
    }

    fn build_protocol(&'static self, transport: Transport) -> Self::Protocol {
        LineProtocol::new(PubProtocol {
            factory: self,
            transport,
        })
    }
}

/// What the room brings: every line, to each of this instance's clients;
/// and, should the host lose the room (its Redis server away), a notice.
struct Room {
    factory: &'static PubFactory,
}

impl Room {
    fn tell_all(&self, line: &[u8]) {
        for c in self.factory.clients.borrow().iter() {
            c.send_line(line);
        }
    }
}

impl Subscriber for Room {
    fn message_received(&mut self, message: &[u8]) {
        self.tell_all(message);
    }

    fn messages_dropped(&mut self, count: u64) {
        self.tell_all(format!("* {count} lines were lost: this server fell behind").as_bytes());
    }

    fn subscription_interrupted(&mut self) {
        self.tell_all(b"* the room is unreachable: lines sent now are lost");
    }

    fn subscription_resumed(&mut self) {
        self.tell_all(b"* the room is back");
    }
}

weft_guest::export!(PubFactory);
