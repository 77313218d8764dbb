//! A guest that misbehaves on command, one command per line:
//!
//! - `ping` answers `pong N` (N = connections this instance has built);
//! - `panic`, `exit`: panic, or exit the guest;
//! - `spin`: loop forever; `spin-next`: the next connection's constructor does;
//! - `work N`: compute for N million steps, then answer `worked`;
//! - `sleep`: sleep for an hour (through `wasi:io/poll`), using no CPU;
//! - `grow`: allocate until memory runs out; `recurse`: recurse without end;
//! - `flood`: write 1 GiB in 64 KiB pieces within this one call; `storm`:
//!   64 GiB, nearly all of it after the write limit aborted the connection;
//! - `shout`: print 20,000 lines to stdout; `print`: one line to each of
//!   stdout and stderr.
//!
//! It logs each `connection-lost` so tests can see the host report it.

use std::cell::Cell;
use std::hint::black_box;

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
            b"exit" => std::process::exit(3),
            b"spin" => spin(),
            b"sleep" => std::thread::sleep(std::time::Duration::from_secs(3600)),
            b"spin-next" => {
                self.factory.spin_next.set(true);
                self.send_line(b"armed");
            }
            b"grow" => grow(),
            b"recurse" => {
                let depth = recurse(0);
                self.send_line(depth.to_string().as_bytes());
            }
            b"flood" => self.flood(16 * 1024),
            b"storm" => self.flood(1024 * 1024),
            b"shout" => {
                for n in 0..20_000 {
                    println!("shouting line {n}");
                }
                self.send_line(b"shouted");
            }
            b"print" => {
                println!("to stdout");
                eprintln!("to stderr");
            }
            b"print-held" => {
                weft_guest::println!("held line 1");
                weft_guest::print!("held line ");
                weft_guest::println!("2");
                panic!("panicked after printing");
            }
            _ if line.starts_with(b"work ") => {
                let millions: u64 = std::str::from_utf8(&line[5..])
                    .ok()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                work(millions * 1_000_000);
                self.send_line(b"worked");
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

impl Hostile {
    /// Write `pieces` pieces of 64 KiB within this one call.
    fn flood(&self, pieces: usize) {
        let piece = vec![b'f'; 64 * 1024];
        for _ in 0..pieces {
            self.transport.write(&piece);
        }
    }
}

/// Loop without end; `black_box` keeps the optimiser from removing it.
fn spin() {
    let mut n = 0u64;
    loop {
        n = black_box(n.wrapping_add(1));
    }
}

/// Allocate and touch 1 MiB at a time until allocation fails (and aborts).
fn grow() {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(black_box(vec![1u8; 1 << 20]));
    }
}

/// Recurse until the stack runs out: the base case is out of reach.
fn recurse(depth: u64) -> u64 {
    if black_box(depth) == u64::MAX {
        return depth;
    }
    black_box(recurse(depth + 1)) + 1
}

#[derive(Default)]
struct HostileFactory {
    built: Cell<u64>,
    spin_next: Cell<bool>,
}

impl Factory for HostileFactory {
    type Protocol = LineProtocol<Hostile>;

    fn build_protocol(&'static self, transport: Transport) -> Self::Protocol {
        if self.spin_next.replace(false) {
            spin();
        }
        self.built.set(self.built.get() + 1);
        LineProtocol::new(Hostile {
            factory: self,
            transport,
        })
    }
}

weft_guest::export!(HostileFactory);

/// `steps` steps of arithmetic the optimiser cannot drop.
fn work(steps: u64) {
    let mut x = 0u64;
    for step in 0..steps {
        x = black_box(x.wrapping_mul(31).wrapping_add(step));
    }
}
