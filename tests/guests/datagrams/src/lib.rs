//! A datagram guest that does what each datagram asks, answering the
//! sender: `host` (its socket's address), `count` (the datagrams this
//! instance has received, and how often its `start-protocol` ran),
//! `send PORT TEXT` (TEXT to 127.0.0.1:PORT, and
//! whether it went), `panic`, `spin`; anything else comes back as it is.

use weft_guest_datagram::{Address, AddressFamily, DatagramProtocol, Transport};

#[derive(Default)]
struct Datagrams {
    transport: Transport,
    started: u32,
    received: u32,
}

impl DatagramProtocol for Datagrams {
    fn start_protocol(&mut self) {
        self.started += 1;
    }

    fn datagram_received(&mut self, data: &[u8], addr: Address) {
        self.received += 1;
        let text = String::from_utf8_lossy(data);
        let reply = match text.split(' ').collect::<Vec<_>>().as_slice() {
            ["host"] => self.transport.get_host().to_string(),
            ["count"] => format!("received {} started {}", self.received, self.started),
            ["send", port, message] => {
                let to = Address {
                    family: AddressFamily::Ipv4,
                    host: "127.0.0.1".into(),
                    port: port.parse().unwrap_or_default(),
                };
                match self.transport.send(message.as_bytes(), &to) {
                    Ok(()) => "sent".into(),
                    Err(error) => error.name().to_owned(),
                }
            }
            ["panic"] => panic!("asked to panic"),
            #[allow(clippy::empty_loop)]
            ["spin"] => loop {},
            _ => {
                self.transport.write(data, &addr);
                return;
            }
        };
        self.transport.write(reply.as_bytes(), &addr);
    }

    fn stop_protocol(&mut self) {
        println!("datagrams: stop-protocol");
    }
}

weft_guest_datagram::export!(Datagrams);
