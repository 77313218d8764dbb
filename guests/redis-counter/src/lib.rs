//! The seed's HTTP counter with its count in Redis: each request runs
//! `INCR` on `config.key` (default `weft:counter`) at `config.redis`
//! (HOST:PORT) and is answered when the reply arrives (twisted.web's
//! NOT_DONE_YET), so weft processes sharing one Redis count together. A
//! Redis that is down gets a 503; the next request connects again.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use weft_guest::basic::{LineProtocol, LineReceiver};
use weft_guest::endpoints::{ClientFactory, ConnectError, connect};
use weft_guest::web::{Deferred, Request, Resource, Site};
use weft_guest::{CloseReason, Transport, config, log};

/// How long a connect to Redis may take before its requests get a 503.
const CONNECT_TIMEOUT_SECONDS: u32 = 2;

struct Counter {
    redis: Rc<RefCell<Redis>>,
    /// `INCR key`, in RESP, read from the configuration once.
    incr: Vec<u8>,
}

impl Default for Counter {
    fn default() -> Self {
        let key = config::get("key").unwrap_or_else(|| "weft:counter".into());
        Self {
            redis: Rc::default(),
            incr: format!("*2\r\n$4\r\nINCR\r\n${}\r\n{key}\r\n", key.len()).into_bytes(),
        }
    }
}

/// The one connection to Redis and the requests waiting for its replies,
/// oldest first (Redis answers in order).
#[derive(Default)]
struct Redis {
    connection: Connection,
    waiting: VecDeque<Deferred>,
}

#[derive(Default)]
enum Connection {
    #[default]
    Down,
    /// Commands wait here until the connection is made.
    Connecting(Vec<u8>),
    Up(Transport),
}

impl Resource for Counter {
    fn render_get(&self, request: &mut Request) -> Vec<u8> {
        request.set_header("content-type", "text/plain");
        let later = request.not_done_yet();
        let command = &self.incr;
        let mut redis = self.redis.borrow_mut();
        redis.waiting.push_back(later);
        match &mut redis.connection {
            Connection::Up(transport) => transport.write(command),
            Connection::Connecting(queued) => queued.extend_from_slice(command),
            Connection::Down => {
                redis.connection = Connection::Connecting(command.clone());
                drop(redis);
                self.connect();
            }
        }
        Vec::new()
    }
}

impl Counter {
    fn connect(&self) {
        let address = config::get("redis").unwrap_or_default();
        let (host, port) = address.rsplit_once(':').unwrap_or((&address, ""));
        let endpoint = format!(
            "tcp:host={}:port={port}:timeout={CONNECT_TIMEOUT_SECONDS}",
            host.trim_matches(['[', ']']).replace(':', "\\:")
        );
        let factory = RedisFactory {
            redis: self.redis.clone(),
        };
        if let Err(reason) = connect(&endpoint, factory) {
            log::error(&format!(
                "cannot connect to Redis at `{address}` (config.redis): {}",
                reason.name()
            ));
            fail_all(&self.redis);
        }
    }
}

/// Answer every waiting request with a 503 and forget the connection.
fn fail_all(redis: &Rc<RefCell<Redis>>) {
    let waiting = {
        let mut redis = redis.borrow_mut();
        redis.connection = Connection::Down;
        std::mem::take(&mut redis.waiting)
    };
    for later in waiting {
        later.set_response_code(503);
        later.write(b"Redis is unavailable\n");
        later.finish();
    }
}

struct RedisFactory {
    redis: Rc<RefCell<Redis>>,
}

impl ClientFactory for RedisFactory {
    type Protocol = LineProtocol<RedisProtocol>;

    fn build_protocol(self, transport: Transport) -> Self::Protocol {
        LineProtocol::new(RedisProtocol {
            redis: self.redis,
            transport,
        })
    }

    fn client_connection_failed(self, reason: ConnectError) {
        log::warn(&format!("Redis is unavailable: {}", reason.name()));
        fail_all(&self.redis);
    }
}

/// RESP replies, one per line: `:N` for INCR, `-ERR ...` for an error.
struct RedisProtocol {
    redis: Rc<RefCell<Redis>>,
    transport: Transport,
}

impl LineReceiver for RedisProtocol {
    fn transport(&self) -> &Transport {
        &self.transport
    }

    fn connection_made(&mut self) {
        let mut redis = self.redis.borrow_mut();
        if let Connection::Connecting(queued) = &redis.connection {
            self.transport.write(queued);
        }
        redis.connection = Connection::Up(self.transport.clone());
    }

    fn line_received(&mut self, line: &[u8]) {
        let Some(later) = self.redis.borrow_mut().waiting.pop_front() else {
            return;
        };
        match line.split_first() {
            Some((b':', number)) => {
                later.write(b"I am request #");
                later.write(number);
                later.write(b"\n");
            }
            _ => {
                log::error(&format!("Redis answered {}", String::from_utf8_lossy(line)));
                later.set_response_code(503);
                later.write(b"Redis refused the request\n");
            }
        }
        later.finish();
    }

    fn read_connection_lost(&mut self) {
        self.transport.lose_connection();
    }

    fn connection_lost(&mut self, _reason: CloseReason) {
        let ours =
            matches!(&self.redis.borrow().connection, Connection::Up(t) if *t == self.transport);
        if ours {
            fail_all(&self.redis);
        }
    }
}

weft_guest::export!(Site<Counter> = Site::new(Counter::default()));
