//! Line-oriented protocols (Twisted's `twisted.protocols.basic.LineReceiver`):
//! split the byte stream into lines at a delimiter, with Twisted's limits.

use std::time::Instant;

use crate::{CALL_BUDGET, CloseReason, Protocol, Transport};

/// A protocol that receives whole lines. Wrap it in [`LineProtocol`] to get
/// a [`Protocol`] the factory can return.
pub trait LineReceiver: 'static {
    /// What ends a line; not part of the line handed to `line_received`.
    const DELIMITER: &'static [u8] = b"\r\n";

    /// The longest line accepted, delimiter excluded. A longer line goes to
    /// `line_length_exceeded` instead of `line_received`.
    const MAX_LENGTH: usize = 16384;

    /// The connection's transport (Twisted's `self.transport`).
    fn transport(&self) -> &Transport;

    /// See [`Protocol::connection_made`].
    fn connection_made(&mut self) {}

    /// One complete line, without its delimiter.
    fn line_received(&mut self, line: &[u8]);

    /// A line longer than `MAX_LENGTH` arrived; `line` holds it and
    /// everything buffered after it. Twisted's default, kept here, closes
    /// the connection after flushing what was already written.
    fn line_length_exceeded(&mut self, line: &[u8]) {
        let _ = line;
        self.transport().lose_connection();
    }

    /// See [`Protocol::read_connection_lost`].
    fn read_connection_lost(&mut self) {
        self.transport().lose_connection();
    }

    /// See [`Protocol::connection_lost`].
    fn connection_lost(&mut self, reason: CloseReason) {
        let _ = reason;
    }

    /// Write `line` followed by the delimiter.
    fn send_line(&self, line: &[u8]) {
        self.transport().write_sequence(&[line, Self::DELIMITER]);
    }
}

/// Sends lines on any transport, for protocols that write to other
/// connections (a chat room broadcasting to its clients).
pub trait SendLine {
    /// Write `line` followed by `\r\n`, LineReceiver's default delimiter.
    fn send_line(&self, line: &[u8]);
}

impl SendLine for Transport {
    fn send_line(&self, line: &[u8]) {
        self.write_sequence(&[line, b"\r\n"]);
    }
}

/// Adapts a [`LineReceiver`] to [`Protocol`], holding the partial line.
pub struct LineProtocol<R> {
    receiver: R,
    buffer: Vec<u8>,
    /// How far `buffer` has been searched for a delimiter, so that a line
    /// dribbled in byte by byte costs linear, not quadratic, time.
    searched: usize,
    /// Lines are left in `buffer` for a later call: a call ran out of its
    /// budget, and reading from the peer is paused until they are done.
    backlogged: bool,
}

/// Lines handed over between looks at the clock.
const LINES_PER_CLOCK_READ: usize = 16;

impl<R: LineReceiver> LineProtocol<R> {
    /// Wrap `receiver`.
    pub fn new(receiver: R) -> Self {
        Self {
            receiver,
            buffer: Vec::new(),
            searched: 0,
            backlogged: false,
        }
    }

    /// The wrapped receiver.
    pub fn receiver(&self) -> &R {
        &self.receiver
    }

    /// The wrapped receiver, mutably.
    pub fn receiver_mut(&mut self) -> &mut R {
        &mut self.receiver
    }

    /// Hand over the whole buffer as exceeded and forget it.
    fn exceeded(&mut self, start: usize) {
        let line = self.buffer.split_off(start);
        self.buffer.clear();
        self.searched = 0;
        self.receiver.line_length_exceeded(&line);
    }
}

impl<R: LineReceiver> Protocol for LineProtocol<R> {
    fn transport(&self) -> &Transport {
        self.receiver.transport()
    }

    fn connection_made(&mut self) {
        self.receiver.connection_made();
    }

    /// Twisted's LineReceiver.dataReceived, step for step: lines are handed
    /// over until the buffer runs out or the protocol starts disconnecting;
    /// and, unlike Twisted, until the call's [`CALL_BUDGET`] is spent, the
    /// rest then handed over in later calls while the peer is not read.
    fn data_received(&mut self, data: &[u8]) {
        self.buffer.extend_from_slice(data);
        self.work();
    }

    fn has_more_work(&self) -> bool {
        self.backlogged
    }

    fn continue_work(&mut self) {
        self.work();
    }

    fn read_connection_lost(&mut self) {
        self.receiver.read_connection_lost();
    }

    fn connection_lost(&mut self, reason: CloseReason) {
        self.receiver.connection_lost(reason);
    }
}

impl<R: LineReceiver> LineProtocol<R> {
    /// Hand over the buffered lines, within the call's budget.
    fn work(&mut self) {
        let delimiter = R::DELIMITER;
        // The budget's clock starts once a line has been handed over and
        // more input is left: a call with one line, the common case, reads
        // no clock (each read is a call out to the host).
        let mut started: Option<Instant> = None;
        let mut start = 0;
        let mut lines = 0;
        let mut out_of_time = false;
        while start < self.buffer.len() {
            if lines == LINES_PER_CLOCK_READ {
                lines = 0;
                if started.is_some_and(|started| started.elapsed() >= CALL_BUDGET) {
                    out_of_time = true;
                    break;
                }
            } else if lines > 0 && started.is_none() {
                started = Some(Instant::now());
            }
            let from = self.searched.max(start);
            let Some(found) = find(&self.buffer[from..], delimiter) else {
                if self.buffer.len() - start >= R::MAX_LENGTH + delimiter.len() {
                    return self.exceeded(start);
                }
                self.searched = (self.buffer.len() + 1).saturating_sub(delimiter.len());
                break;
            };
            let end = from + found;
            if end - start > R::MAX_LENGTH {
                return self.exceeded(start);
            }
            self.receiver.line_received(&self.buffer[start..end]);
            lines += 1;
            start = end + delimiter.len();
            self.searched = start;
            if self.receiver.transport().disconnecting() {
                break;
            }
        }
        self.buffer.drain(..start);
        self.searched -= start.min(self.searched);
        let transport = self.receiver.transport();
        if out_of_time && !self.backlogged {
            transport.pause_producing();
        } else if !out_of_time && self.backlogged {
            transport.resume_producing();
        }
        self.backlogged = out_of_time;
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::StringTransport;

    /// Records lines and what was exceeded, echoing lines back with send_line.
    struct Recorder {
        transport: Transport,
        lines: Vec<Vec<u8>>,
        exceeded: Vec<Vec<u8>>,
    }

    impl LineReceiver for Recorder {
        fn transport(&self) -> &Transport {
            &self.transport
        }
        fn line_received(&mut self, line: &[u8]) {
            self.lines.push(line.to_vec());
            self.send_line(line);
        }
        fn line_length_exceeded(&mut self, line: &[u8]) {
            self.exceeded.push(line.to_vec());
            self.transport.lose_connection();
        }
    }

    fn recorder() -> (LineProtocol<Recorder>, StringTransport) {
        let wire = StringTransport::new();
        let receiver = Recorder {
            transport: wire.transport(),
            lines: Vec::new(),
            exceeded: Vec::new(),
        };
        (LineProtocol::new(receiver), wire)
    }

    #[test]
    fn splits_lines_across_and_within_chunks() {
        let (mut protocol, wire) = recorder();
        for chunk in [
            &b"hel"[..],
            b"lo\r",
            b"\nwor",
            b"ld\r\n\r\nx\ny\r\n",
            b"tail",
        ] {
            protocol.data_received(chunk);
        }
        let lines = &protocol.receiver().lines;
        assert_eq!(lines, &[&b"hello"[..], b"world", b"", b"x\ny"]);
        assert_eq!(wire.value(), b"hello\r\nworld\r\n\r\nx\ny\r\n");
        assert_eq!(protocol.buffer, b"tail");
    }

    #[test]
    fn byte_at_a_time_finds_every_delimiter() {
        let (mut protocol, _wire) = recorder();
        for byte in b"a\r\nbc\r\n\r\r\n" {
            protocol.data_received(&[*byte]);
        }
        assert_eq!(protocol.receiver().lines, [&b"a"[..], b"bc", b"\r"]);
    }

    #[test]
    fn a_line_of_exactly_max_length_is_accepted() {
        let (mut protocol, wire) = recorder();
        let line = vec![b'x'; 16384];
        protocol.data_received(&line);
        protocol.data_received(b"\r\n");
        assert_eq!(protocol.receiver().lines, [line]);
        assert!(!wire.lost());
    }

    #[test]
    fn an_over_long_line_closes_like_twisted() {
        let (mut protocol, wire) = recorder();
        protocol.data_received(b"ok\r\n");
        let mut data = vec![b'x'; 16385];
        data.extend_from_slice(b"\r\nnext\r\n");
        protocol.data_received(&data);
        assert_eq!(protocol.receiver().lines, [b"ok"]);
        assert_eq!(protocol.receiver().exceeded, [data]);
        assert!(wire.lost());
        assert_eq!(wire.value(), b"ok\r\n");
    }

    #[test]
    fn an_unterminated_buffer_past_the_limit_is_exceeded() {
        let (mut protocol, wire) = recorder();
        protocol.data_received(&vec![b'y'; 16385]);
        assert!(!wire.lost(), "16385 bytes may still end in a delimiter");
        protocol.data_received(b"y");
        assert_eq!(protocol.receiver().exceeded.len(), 1);
        assert!(wire.lost());
    }

    #[test]
    fn lines_after_lose_connection_are_not_delivered() {
        struct Quitter {
            transport: Transport,
            lines: usize,
        }
        impl LineReceiver for Quitter {
            fn transport(&self) -> &Transport {
                &self.transport
            }
            fn line_received(&mut self, _line: &[u8]) {
                self.lines += 1;
                self.transport.lose_connection();
            }
        }
        let wire = StringTransport::new();
        let mut protocol = LineProtocol::new(Quitter {
            transport: wire.transport(),
            lines: 0,
        });
        protocol.data_received(b"quit\r\nmore\r\n");
        assert_eq!(protocol.receiver().lines, 1);
    }
}
