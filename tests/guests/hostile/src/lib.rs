//! A guest that misbehaves on command, one command per line:
//! `ping` answers `pong N` (N = connections this instance has built),
//! `panic` panics, `spin` loops forever, `exit` exits the guest, `print`
//! writes a line to stdout and one to stderr. It logs
//! each `connection-lost` so tests can see the host report it.

use std::cell::Cell;

use weft_guest::basic::{LineProtocol, LineReceiver};
use weft_guest::{CloseReason, Factory, Transport};

struct Hostile {
    factory: &'static HostileFactory,
    transport: Transport,
}

impl LineReceiver for Hostile {
    fn transport(&self) -> &Transport {
        &self.transport
    }

    fn line_received(&mut self, line: &[u8]) {
        match line {
            b"ping" => self.send_line(format!("pong {}", self.factory.built.get()).as_bytes()),
            b"panic" => panic!("asked to panic"),
            b"spin" => spin(),
            b"exit" => std::process::exit(3),
            b"print" => {
                println!("to stdout");
                eprintln!("to stderr");
            }
            other => self.send_line(other),
        }
    }

    fn connection_lost(&mut self, reason: CloseReason) {
        let reason = match reason {
            CloseReason::Done => "done",
            CloseReason::Lost => "lost",
            CloseReason::Aborted => "aborted",
        };
        weft_guest::log::info(&format!("connection lost: {reason}"));
    }
}

/// Loop without end; `black_box` keeps the optimiser from removing it.
fn spin() {
    let mut n = 0u64;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

#[derive(Default)]
struct HostileFactory {
    built: Cell<u64>,
}

impl Factory for HostileFactory {
    type Protocol = LineProtocol<Hostile>;

    fn build_protocol(&'static self, transport: Transport) -> Self::Protocol {
        self.built.set(self.built.get() + 1);
        LineProtocol::new(Hostile {
            factory: self,
            transport,
        })
    }
}

weft_guest::export!(HostileFactory);
