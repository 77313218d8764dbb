//! A guest that drives its transport on command, one command per line, and
//! reports what the host told it. Other lines are echoed back.
//!
//! `peer`, `host`: the addresses; `secure`: `yes` over TLS, else `no`;
//! `lose`: `bye`, then lose-connection twice;
//! `half-close`: `bye`, then lose-write-connection; `abort`; `pause`
//! (answers `paused`); `resume-all`: resume every paused connection;
//! `write-all`: write to every transport ever built, closed ones included;
//! `heard`: lines received since the last `heard` on any connection;
//! `lost`: every connection-lost reason; `kv-swap KEY EXPECTED NEW` and
//! `kv-append KEY TEXT`: the SDK's compare-and-swap and update on the
//! bucket `control` (`-` for none), answering `swapped`, `kept` or the
//! value set; and the publish/subscribe commands of `topics`.

mod topics;

use std::cell::RefCell;

use weft_guest::basic::{LineProtocol, LineReceiver, SendLine};
use weft_guest::{CloseReason, Factory, Transport};

struct Control {
    factory: &'static ControlFactory,
    transport: Transport,
}

impl LineReceiver for Control {
    fn transport(&self) -> &Transport {
        &self.transport
    }

    fn line_received(&mut self, line: &[u8]) {
        let factory = self.factory;
        let transport = &self.transport;
        match line {
            b"peer" => self.send_line(transport.get_peer().to_string().as_bytes()),
            b"host" => self.send_line(transport.get_host().to_string().as_bytes()),
            b"secure" => self.send_line(if transport.is_secure() { b"yes" } else { b"no" }),
            b"lose" => {
                self.send_line(b"bye");
                transport.lose_connection();
                transport.lose_connection();
            }
            b"half-close" => {
                self.send_line(b"bye");
                transport.lose_write_connection();
            }
            b"abort" => {
                self.send_line(b"never sent");
                transport.abort_connection();
            }
            b"pause" => {
                factory.paused.borrow_mut().push(transport.clone());
                transport.pause_producing();
                self.send_line(b"paused");
            }
            b"resume-all" => {
                for paused in factory.paused.borrow_mut().drain(..) {
                    paused.resume_producing();
                }
                self.send_line(b"resumed");
            }
            b"write-all" => {
                for other in factory.all.borrow().iter() {
                    other.send_line(b"to all");
                }
            }
            b"heard" => {
                let heard = factory.heard.borrow_mut().drain(..).collect::<Vec<_>>();
                self.send_line(&heard.join(&b","[..]));
            }
            b"lost" => self.send_line(factory.lost.borrow().join(",").as_bytes()),
            other
                if [&b"sub "[..], b"unsub ", b"pub ", b"flood "]
                    .iter()
                    .any(|command| other.starts_with(command)) =>
            {
                let answer = topics::command(transport, &String::from_utf8_lossy(other));
                self.send_line(answer.as_bytes());
            }
            other if other.starts_with(b"kv-") => {
                let answer = keyvalue(&String::from_utf8_lossy(other))
                    .unwrap_or_else(|error| format!("error: {error}"));
                self.send_line(answer.as_bytes());
            }
            other => {
                factory.heard.borrow_mut().push(other.to_vec());
                self.send_line(other);
            }
        }
    }

    fn connection_lost(&mut self, reason: CloseReason) {
        let reason = match reason {
            CloseReason::Done => "done",
            CloseReason::Lost => "lost",
            CloseReason::Aborted => "aborted",
        };
        self.factory.lost.borrow_mut().push(reason);
    }
}

#[derive(Default)]
struct ControlFactory {
    all: RefCell<Vec<Transport>>,
    paused: RefCell<Vec<Transport>>,
    heard: RefCell<Vec<Vec<u8>>>,
    lost: RefCell<Vec<&'static str>>,
}

impl Factory for ControlFactory {
    type Protocol = LineProtocol<Control>;

    fn build_protocol(&'static self, transport: Transport) -> Self::Protocol {
        self.all.borrow_mut().push(transport.clone());
        LineProtocol::new(Control {
            factory: self,
            transport,
        })
    }
}

weft_guest::export!(ControlFactory);

/// `kv-swap KEY EXPECTED NEW` or `kv-append KEY TEXT` on the bucket
/// `control`.
fn keyvalue(command: &str) -> Result<String, weft_guest::keyvalue::Error> {
    let bucket = weft_guest::keyvalue::Bucket::open("control")?;
    let words: Vec<&str> = command.split(' ').collect();
    Ok(match words.as_slice() {
        ["kv-swap", key, expected, new] => {
            let expected = (*expected != "-").then_some(expected.as_bytes());
            match bucket.compare_and_swap(key, expected, new.as_bytes())? {
                true => "swapped".into(),
                false => "kept".into(),
            }
        }
        ["kv-append", key, text] => {
            let set = bucket.update(key, |current| {
                [current.unwrap_or_default(), text.as_bytes()].concat()
            })?;
            String::from_utf8_lossy(&set).into_owned()
        }
        _ => format!("unknown {command}"),
    })
}
