//! One HTTP connection (Twisted's `HTTPChannel` with `server.Request`):
//! frames requests out of the byte stream, renders each with the site's
//! resource and writes the responses in order.

use std::time::Instant;

use super::body::{BodyError, Chunked, Decoder, Framing, framing};
use super::head::{self, Head};
use super::response::{self, BAD_REQUEST, CONTINUE, SERVER, TOO_LARGE, Value};
use super::{Deferred, MAX_HEADERS_SIZE, Request, Resource, Site};
use crate::{CALL_BUDGET, Protocol, Transport};

/// LineReceiver's `MAX_LENGTH` for one head line: a longer line closes the
/// connection without a response, as in Twisted.
const MAX_LINE_LENGTH: usize = 16384;

/// The HTTP protocol a [`Site`] builds for each connection.
pub struct HttpChannel<R: 'static> {
    site: &'static Site<R>,
    transport: Transport,
    /// Received bytes not yet consumed.
    buffer: Vec<u8>,
    /// How far `buffer` has been searched for a line end.
    searched: usize,
    state: State,
    /// Responses not yet handed to the transport: pipelined responses go
    /// out in one write at the end of `data_received`.
    out: Vec<u8>,
    /// The last request's buffers, emptied, for the next one to reuse.
    spare: Spare,
    /// When the current call, having answered a request, went on to the
    /// next (a call with one request reads no clock: each read is a call
    /// out to the host), and requests answered since the clock was read.
    started: Option<Instant>,
    handled: usize,
    /// Requests are left in `buffer` for a later call: a call ran out of
    /// its budget, and the peer is not read until they are answered.
    backlogged: bool,
}

/// Requests answered between looks at the clock.
const REQUESTS_PER_CLOCK_READ: usize = 16;

/// Buffers one request leaves for the next, so that a kept-alive
/// connection does not allocate them anew for every request.
#[derive(Default)]
struct Spare {
    head: super::head::Buffers,
    response_headers: Vec<response::Header>,
}

enum State {
    /// Reading the request line and headers.
    Head(HeadProgress),
    /// Reading the body of a request whose head is complete.
    Body {
        request: Request,
        decoder: Decoder,
        persistent: bool,
    },
    /// The connection is closing: whatever arrives is ignored, as Twisted
    /// ignores data after a non-persistent request.
    /// The last request's resource answers later; input waits, unread.
    Waiting(Deferred),
    Closing,
}

#[derive(Default)]
struct HeadProgress {
    /// The request line and header lines so far, each with its CRLF.
    lines: Vec<u8>,
    /// Twisted's `_receivedHeaderSize`: line bytes so far, CRLFs excluded.
    size: usize,
    /// Twisted eats one empty line before a request line (IE sends one
    /// after a POST body), but only one.
    ate_empty_line: bool,
}

impl<R: Resource> HttpChannel<R> {
    pub(crate) fn new(site: &'static Site<R>, transport: Transport) -> Self {
        Self {
            site,
            transport,
            buffer: Vec::new(),
            searched: 0,
            state: State::Head(HeadProgress::default()),
            out: Vec::new(),
            spare: Spare::default(),
            started: None,
            handled: 0,
            backlogged: false,
        }
    }

    /// Consume as much of `buffer` as possible from `pos`; returns where
    /// unconsumed input starts.
    fn process(&mut self, mut pos: usize) -> usize {
        loop {
            if self.started.is_none() && self.handled > 0 && pos < self.buffer.len() {
                self.started = Some(Instant::now());
            }
            if self.handled >= REQUESTS_PER_CLOCK_READ {
                self.handled = 0;
                if self
                    .started
                    .is_some_and(|started| started.elapsed() >= CALL_BUDGET)
                {
                    // Out of time: the rest is answered in a later call.
                    self.backlogged = true;
                    return pos;
                }
            }
            match &mut self.state {
                State::Closing => return self.buffer.len(),
                State::Waiting(_) => return pos,
                State::Head(_) => {
                    let from = self.searched.max(pos);
                    let Some(found) = find_crlf(&self.buffer[from..]) else {
                        if self.buffer.len() - pos >= MAX_LINE_LENGTH + 2 {
                            self.close();
                        } else {
                            self.searched = self.buffer.len().saturating_sub(1).max(pos);
                        }
                        return pos;
                    };
                    let end = from + found;
                    let line_start = pos;
                    pos = end + 2;
                    self.searched = pos;
                    if end - line_start > MAX_LINE_LENGTH {
                        self.close();
                        continue;
                    }
                    self.head_line(line_start, end);
                }
                State::Body {
                    request, decoder, ..
                } => {
                    let limit = self.site.max_content_length;
                    match decoder.decode(&self.buffer[pos..], &mut request.content, limit) {
                        Ok((used, done)) => {
                            pos += used;
                            if !done {
                                return pos;
                            }
                            let State::Body {
                                request,
                                persistent,
                                ..
                            } = std::mem::replace(&mut self.state, State::Closing)
                            else {
                                unreachable!("matched State::Body above");
                            };
                            self.finish(request, persistent);
                        }
                        Err(BodyError::Malformed) => self.refuse(BAD_REQUEST),
                        Err(BodyError::TooLarge) => self.refuse(TOO_LARGE),
                    }
                }
            }
        }
    }

    /// Twisted's `HTTPChannel.lineReceived` for the line `buffer[start..end]`.
    fn head_line(&mut self, start: usize, end: usize) {
        let State::Head(progress) = &mut self.state else {
            return;
        };
        let line = &self.buffer[start..end];
        progress.size += line.len();
        if progress.size > MAX_HEADERS_SIZE {
            return self.refuse(BAD_REQUEST);
        }
        if progress.lines.is_empty() {
            if line.is_empty() && !progress.ate_empty_line {
                progress.ate_empty_line = true;
                return;
            }
            if !head::is_valid_request_line(line) {
                return self.refuse(BAD_REQUEST);
            }
        } else if line.is_empty() {
            let lines = std::mem::take(&mut progress.lines);
            let ranges = std::mem::take(&mut self.spare.head.ranges);
            return match head::parse(lines, ranges) {
                Some(head) => self.head_received(head),
                None => self.refuse(BAD_REQUEST),
            };
        }
        progress.lines.extend_from_slice(line);
        progress.lines.extend_from_slice(b"\r\n");
    }

    /// Twisted's `allHeadersReceived`: decide persistence, answer
    /// `Expect: 100-continue`, then read the body or render right away.
    fn head_received(&mut self, head: Head) {
        let Some(framing) = framing(head.headers()) else {
            return self.refuse(BAD_REQUEST);
        };
        let mut request = Request {
            head,
            content: Vec::new(),
            transport: self.transport.clone(),
            code: 200,
            response_headers: std::mem::take(&mut self.spare.response_headers),
            later: None,
        };
        let persistent = is_persistent(&mut request);
        if let Framing::Length(length) = framing
            && length > self.site.max_content_length as u64
        {
            // Refused before any 100 Continue: no upload is invited only
            // to be refused.
            return self.refuse(TOO_LARGE);
        }
        let expects_continue = request
            .get_header("Expect")
            .is_some_and(|v| v.eq_ignore_ascii_case(b"100-continue"));
        if expects_continue && request.version() == b"HTTP/1.1" {
            self.out.extend_from_slice(CONTINUE);
        }
        let decoder = match framing {
            Framing::Empty | Framing::Length(0) => return self.finish(request, persistent),
            Framing::Length(remaining) => Decoder::Length { remaining },
            Framing::Chunked => Decoder::Chunked(Chunked::Size),
        };
        self.state = State::Body {
            request,
            decoder,
            persistent,
        };
    }

    /// Render a complete request, write the response, then wait for the
    /// next request or close.
    fn finish(&mut self, mut request: Request, persistent: bool) {
        self.handled += 1;
        let (mut body, head_only) = render(&self.site.resource, &mut request);
        if let Some(later) = request.later.take() {
            match later.hand_over(request, head_only, persistent) {
                // Finished within render_*: answered like any other.
                Some((answered, written)) => (request, body) = (answered, written),
                None => {
                    // What is queued goes first; the peer is not read
                    // until the response is finished.
                    self.send();
                    self.transport.pause_producing();
                    self.state = State::Waiting(later);
                    return;
                }
            }
        }
        response::encode(
            &mut self.out,
            request.version(),
            request.code,
            &request.response_headers,
            &body,
            head_only,
        );
        let Request {
            head,
            mut response_headers,
            ..
        } = request;
        if persistent {
            let mut buffers = head.into_buffers();
            let lines = std::mem::take(&mut buffers.lines);
            response_headers.clear();
            self.spare = Spare {
                head: buffers,
                response_headers,
            };
            self.state = State::Head(HeadProgress {
                lines,
                ..HeadProgress::default()
            });
        } else {
            self.close();
        }
    }

    /// Answer with a bare error status and close (Twisted's
    /// `_respondToBadRequestAndDisconnect`).
    fn refuse(&mut self, status: &[u8]) {
        self.out.extend_from_slice(status);
        self.close();
    }

    /// Send what is pending, then close: the transport ignores writes made
    /// after lose-connection.
    fn close(&mut self) {
        self.state = State::Closing;
        self.send();
        self.transport.lose_connection();
    }

    fn send(&mut self) {
        if !self.out.is_empty() {
            self.transport.write(&self.out);
            self.out.clear();
        }
    }
}

impl<R: Resource> Protocol for HttpChannel<R> {
    fn transport(&self) -> &Transport {
        &self.transport
    }

    /// A response finished later woke us: carry on with the requests that
    /// arrived meanwhile.
    /// Or a call ran out of its budget with requests left.
    fn continue_work(&mut self) {
        if let State::Waiting(later) = &self.state {
            if !later.finished() {
                return;
            }
            self.state = State::Head(HeadProgress::default());
            self.transport.resume_producing();
        }
        self.data_received(&[]);
    }

    fn has_more_work(&self) -> bool {
        self.backlogged
    }

    /// Requests are answered in order until the buffer runs out, the
    /// connection closes, a response is rendered NOT_DONE_YET, or the
    /// call's [`CALL_BUDGET`] is spent (the rest then in later calls, the
    /// peer not read meanwhile).
    fn data_received(&mut self, data: &[u8]) {
        if matches!(self.state, State::Closing) {
            return;
        }
        let was_backlogged = std::mem::take(&mut self.backlogged);
        self.started = None;
        self.handled = 0;
        self.buffer.extend_from_slice(data);
        response::start_call();
        let consumed = self.process(0);
        response::end_call();
        self.buffer.drain(..consumed);
        self.searched -= consumed.min(self.searched);
        self.send();
        if self.backlogged && !was_backlogged {
            self.transport.pause_producing();
        } else if was_backlogged && !self.backlogged && !matches!(self.state, State::Waiting(_)) {
            self.transport.resume_producing();
        }
    }
}

/// Twisted's `checkPersistence`: HTTP/1.1 stays open unless the first
/// `Connection` header has a space-separated `close` token, in which case
/// the response says `Connection: close`; HTTP/1.0 always closes.
fn is_persistent(request: &mut Request) -> bool {
    if request.version() != b"HTTP/1.1" {
        return false;
    }
    let close = request.get_header("Connection").is_some_and(|v| {
        v.split(|&b| b == b' ')
            .any(|t| t.eq_ignore_ascii_case(b"close"))
    });
    if close {
        request.set(b"Connection", Value::Static(b"close"));
    }
    !close
}

/// Twisted's `server.Request.process` and `render` for a leaf resource:
/// returns the body and whether only the head is sent.
fn render<R: Resource>(resource: &R, request: &mut Request) -> (Vec<u8>, bool) {
    request.set(b"Server", Value::Static(SERVER));
    request.set(b"Date", Value::Date);

    if request.uri() == b"*" {
        // Twisted answers `OPTIONS *` itself and refuses other methods.
        if request.method() != b"OPTIONS" {
            request.set_response_code(405);
            request.set(b"Allow", Value::Static(b"OPTIONS"));
        }
        request.set(b"Content-Length", Value::Number(0));
        return (Vec::new(), false);
    }

    let method = Method::of(request.method());
    let allowed = |m: &str| R::ALLOWED_METHODS.contains(&m);
    let rendered = match method {
        Method::Get if allowed("GET") => Some(resource.render_get(request)),
        Method::Head if allowed("HEAD") => Some(resource.render_head(request)),
        Method::Post if allowed("POST") => Some(resource.render_post(request)),
        Method::Put if allowed("PUT") => Some(resource.render_put(request)),
        Method::Delete if allowed("DELETE") => Some(resource.render_delete(request)),
        Method::Patch if allowed("PATCH") => Some(resource.render_patch(request)),
        Method::Options if allowed("OPTIONS") => Some(resource.render_options(request)),
        _ => None,
    };
    let body = match rendered {
        Some(body) => body,
        None if method == Method::Head && allowed("GET") => {
            // Twisted fakes HEAD through GET and always sends the length.
            let body = resource.render_get(request);
            request.set(b"Content-Length", Value::Number(body.len() as u64));
            return (body, true);
        }
        None => unsupported::<R>(request),
    };
    let head_only = method == Method::Head;
    if !head_only || !body.is_empty() {
        request.set(b"Content-Length", Value::Number(body.len() as u64));
    }
    (body, head_only)
}

/// The methods a resource can render.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Patch,
    Options,
    Other,
}

impl Method {
    fn of(method: &[u8]) -> Method {
        match method {
            b"GET" => Method::Get,
            b"HEAD" => Method::Head,
            b"POST" => Method::Post,
            b"PUT" => Method::Put,
            b"DELETE" => Method::Delete,
            b"PATCH" => Method::Patch,
            b"OPTIONS" => Method::Options,
            _ => Method::Other,
        }
    }
}

/// Twisted's answer to a method the resource lacks: 405 with `Allow` for
/// the methods twisted.web supports (GET, HEAD, POST), 501 otherwise.
fn unsupported<R: Resource>(request: &mut Request) -> Vec<u8> {
    let method = String::from_utf8_lossy(request.method()).into_owned();
    let page = if matches!(method.as_str(), "GET" | "HEAD" | "POST") {
        let allowed = R::ALLOWED_METHODS.join(", ");
        request.set(b"Allow", Value::Owned(allowed.clone().into_bytes()));
        let plural = if R::ALLOWED_METHODS.len() > 1 {
            "s"
        } else {
            ""
        };
        let uri = response::html_escape(&String::from_utf8_lossy(request.uri()));
        let detail = format!(
            "Your browser approached me (at {uri}) with the method \"{method}\".  I only allow the method{plural} {allowed} here."
        );
        request.set_response_code(405);
        response::error_page(405, "Method Not Allowed", &detail)
    } else {
        let detail = format!(
            "I don't know how to treat a {} request.",
            response::html_escape(&method)
        );
        request.set_response_code(501);
        response::error_page(501, "Huh?", &detail)
    };
    request.set(b"Content-Type", Value::Static(b"text/html; charset=utf-8"));
    page
}

fn find_crlf(bytes: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(at) = bytes[from..].iter().position(|&b| b == b'\n') {
        let at = from + at;
        if at > 0 && bytes[at - 1] == b'\r' {
            return Some(at - 1);
        }
        from = at + 1;
    }
    None
}

#[cfg(test)]
mod tests;
