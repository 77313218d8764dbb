//! A guest that drives the reactor's services on command, one command per
//! line, and reports what happened as lines:
//!
//! `later MS NAME` (`fired NAME after MS`), `cancel NAME`, `reset NAME MS`,
//! `delay NAME MS`, `active NAME`; `flood N` schedules N hour-long calls;
//! `connect-later MS ENDPOINT` connects out from a timer; `storm` keeps a
//! zero-delay timer rescheduling itself; `connect-paused ENDPOINT` connects
//! out and never reads;
//! `loop MS N` ticks N times, then says `looped`; `panic-later MS` panics in a timer;
//! `config KEY`; `started`; `connect ENDPOINT` (the outbound connection's
//! input comes back as `backend: LINE`, its end as `backend lost`);
//! `send LINE` writes to the last outbound connection; `connect-many N
//! ENDPOINT`; `stream MIB` sends MIB MiB of the bytes 0..251 repeated from
//! a push producer, as fast as the flow control lets it, then closes.
//! On shutdown every client hears `stopping`. Other lines echo.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use weft_guest::basic::{LineProtocol, LineReceiver, SendLine};
use weft_guest::endpoints::{ClientFactory, ConnectError, connect};
use weft_guest::reactor::{DelayedCall, LoopingCall, call_later};
use weft_guest::{CloseReason, Factory, PushProducer, Transport, config};

struct Driver {
    factory: &'static Reactor,
    transport: Transport,
    calls: HashMap<String, DelayedCall>,
}

fn millis(text: &str) -> Duration {
    Duration::from_millis(text.parse().unwrap_or(0))
}

impl LineReceiver for Driver {
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
        let line = String::from_utf8_lossy(line).into_owned();
        let words: Vec<&str> = line.split(' ').collect();
        let transport = self.transport.clone();
        match words.as_slice() {
            ["later", ms, name] => {
                let (name, delay, asked) = (name.to_string(), millis(ms), Instant::now());
                let call = call_later(delay, move || {
                    let took = asked.elapsed().as_millis();
                    transport.send_line(format!("fired {name} after {took}").as_bytes());
                });
                match call {
                    Ok(call) => {
                        self.calls.insert(words[2].to_owned(), call);
                    }
                    Err(error) => self.send_line(format!("refused {}", error.name()).as_bytes()),
                }
            }
            ["cancel", name] => self.calls.get(*name).iter().for_each(|c| c.cancel()),
            ["reset", name, ms] => self
                .calls
                .get(*name)
                .iter()
                .for_each(|c| c.reset(millis(ms))),
            ["delay", name, ms] => self
                .calls
                .get(*name)
                .iter()
                .for_each(|c| c.delay(millis(ms))),
            ["active", name] => {
                let active = self.calls.get(*name).is_some_and(DelayedCall::active);
                self.send_line(format!("active {name} {active}").as_bytes());
            }
            ["flood", count] => {
                let count: usize = count.parse().unwrap_or(0);
                let scheduled = (0..count)
                    .map_while(|_| call_later(Duration::from_secs(3600), || {}).ok())
                    .count();
                self.send_line(format!("scheduled {scheduled} of {count}").as_bytes());
            }
            ["loop", ms, times] => {
                let (times, ticks) = (times.parse().unwrap_or(0), Cell::new(0));
                let looping: std::rc::Rc<RefCell<Option<LoopingCall>>> = Default::default();
                let stop = looping.clone();
                let call = LoopingCall::new(move || {
                    ticks.set(ticks.get() + 1);
                    transport.send_line(format!("tick {}", ticks.get()).as_bytes());
                    if ticks.get() == times
                        && let Some(call) = stop.borrow().as_ref()
                    {
                        call.stop();
                        transport.send_line(b"looped");
                    }
                });
                *looping.borrow_mut() = Some(call.clone());
                let _ = call.start(millis(ms), false);
            }
            ["connect-later", ms, endpoint] => {
                let (endpoint, factory) = (endpoint.to_string(), self.factory);
                let _ = call_later(millis(ms), move || {
                    let _ = connect(
                        &endpoint,
                        Backend {
                            client: transport,
                            factory,
                        },
                    );
                });
            }
            ["storm"] => storm(),
            ["connect-paused", endpoint] => {
                let paused = Paused {
                    client: transport.clone(),
                };
                if let Err(error) = connect(endpoint, paused) {
                    self.send_line(format!("connect refused {}", error.name()).as_bytes());
                }
            }
            ["panic-later", ms] => {
                let _ = call_later(millis(ms), || panic!("asked to panic in a timer"));
            }
            ["config", key] => {
                let value = config::get(key).unwrap_or_else(|| "unset".into());
                self.send_line(format!("config {key} {value}").as_bytes());
            }
            ["started"] => {
                let started = self.factory.started.get();
                self.send_line(format!("started {started}").as_bytes());
            }
            ["connect", endpoint] => {
                let backend = Backend {
                    client: transport,
                    factory: self.factory,
                };
                if let Err(error) = connect(endpoint, backend) {
                    self.send_line(format!("connect refused {}", error.name()).as_bytes());
                }
            }
            ["connect-many", count, endpoint] => {
                let count: usize = count.parse().unwrap_or(0);
                let refused = (0..count)
                    .filter(|_| {
                        let backend = Backend {
                            client: transport.clone(),
                            factory: self.factory,
                        };
                        connect(endpoint, backend).is_err()
                    })
                    .count();
                self.send_line(format!("refused {refused} of {count}").as_bytes());
            }
            ["send", rest @ ..] => {
                if let Some(backend) = self.factory.backend.borrow().as_ref() {
                    backend.send_line(rest.join(" ").as_bytes());
                }
            }
            ["stream", mib] => {
                let size = mib.parse::<usize>().unwrap_or(0) << 20;
                let stream = Rc::new_cyclic(|me| Stream {
                    me: me.clone(),
                    transport: transport.clone(),
                    size,
                    sent: Cell::new(0),
                    paused: Cell::new(false),
                });
                transport.register_push_producer(stream.clone());
                stream.produce_later();
            }
            _ => self.send_line(line.as_bytes()),
        }
    }
}

/// The producer of `stream MIB`: a burst of chunks per zero-delay timer,
/// far faster than a slow reader takes them, until the host pauses it.
struct Stream {
    me: Weak<Stream>,
    transport: Transport,
    size: usize,
    sent: Cell<usize>,
    paused: Cell<bool>,
}

impl Stream {
    const CHUNK: usize = 64 << 10;
    const CHUNKS_PER_TURN: usize = 8;

    /// Produce from a timer, which holds the stream while it is due.
    fn produce_later(self: &Rc<Self>) {
        let stream = self.clone();
        let _ = call_later(Duration::ZERO, move || stream.produce());
    }

    fn produce(self: &Rc<Self>) {
        for _ in 0..Self::CHUNKS_PER_TURN {
            let start = self.sent.get();
            if self.paused.get() || start == self.size {
                break;
            }
            let end = self.size.min(start + Self::CHUNK);
            let chunk: Vec<u8> = (start..end).map(|i| (i % 251) as u8).collect();
            self.transport.write(&chunk);
            self.sent.set(end);
        }
        if self.sent.get() == self.size {
            self.transport.unregister_producer();
            self.transport.lose_connection();
        } else if !self.paused.get() {
            self.produce_later();
        }
    }
}

impl PushProducer for Stream {
    fn pause_producing(&self) {
        self.paused.set(true);
    }

    fn resume_producing(&self) {
        if self.paused.replace(false)
            && let Some(stream) = self.me.upgrade()
        {
            stream.produce_later();
        }
    }
}

/// A timer that reschedules itself at once, for ever.
fn storm() {
    let _ = call_later(Duration::ZERO, storm);
}

/// An outbound connection that is never read: paused as soon as it is made.
struct Paused {
    client: Transport,
}

struct NeverRead(Transport);

impl weft_guest::Protocol for NeverRead {
    fn transport(&self) -> &Transport {
        &self.0
    }

    fn connection_made(&mut self) {
        self.0.pause_producing();
    }

    fn data_received(&mut self, _data: &[u8]) {}
}

impl ClientFactory for Paused {
    type Protocol = NeverRead;

    fn build_protocol(self, transport: Transport) -> NeverRead {
        self.client.send_line(b"connected, not reading");
        NeverRead(transport)
    }

    fn client_connection_failed(self, reason: ConnectError) {
        self.client
            .send_line(format!("connect failed {}", reason.name()).as_bytes());
    }
}

/// Builds the outbound connection's protocol, which reports to `client`.
struct Backend {
    client: Transport,
    factory: &'static Reactor,
}

impl ClientFactory for Backend {
    type Protocol = LineProtocol<BackendLine>;

    fn build_protocol(self, transport: Transport) -> Self::Protocol {
        LineProtocol::new(BackendLine {
            client: self.client,
            transport,
            factory: self.factory,
        })
    }

    fn client_connection_failed(self, reason: ConnectError) {
        self.client
            .send_line(format!("connect failed {}", reason.name()).as_bytes());
    }
}

struct BackendLine {
    client: Transport,
    transport: Transport,
    factory: &'static Reactor,
}

impl LineReceiver for BackendLine {
    fn transport(&self) -> &Transport {
        &self.transport
    }

    fn connection_made(&mut self) {
        *self.factory.backend.borrow_mut() = Some(self.transport.clone());
        self.client.send_line(b"connected");
    }

    fn line_received(&mut self, line: &[u8]) {
        self.client.send_line(&[b"backend: ", line].concat());
    }

    fn connection_lost(&mut self, _reason: CloseReason) {
        self.client.send_line(b"backend lost");
    }
}

#[derive(Default)]
struct Reactor {
    clients: RefCell<Vec<Transport>>,
    backend: RefCell<Option<Transport>>,
    started: Cell<u32>,
}

impl Factory for Reactor {
    type Protocol = LineProtocol<Driver>;

    fn build_protocol(&'static self, transport: Transport) -> Self::Protocol {
        LineProtocol::new(Driver {
            factory: self,
            transport,
            calls: HashMap::new(),
        })
    }

    fn start_factory(&'static self) {
        self.started.set(self.started.get() + 1);
    }

    fn stop_factory(&'static self) {
        for client in self.clients.borrow().iter() {
            client.send_line(b"stopping");
        }
    }
}

weft_guest::export!(Reactor);
