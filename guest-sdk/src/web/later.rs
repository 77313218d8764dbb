//! Responses a resource finishes later (Twisted's `NOT_DONE_YET`, then
//! `request.write` and `request.finish`): an HTTP handler that waits for a
//! backend answers when the backend does, without blocking anything.

use std::cell::RefCell;
use std::rc::Rc;

use super::Request;
use super::response::{self, Value};

/// The response to a request whose resource called
/// [`Request::not_done_yet`]. Set its status and headers, write its body,
/// then `finish` it; a clone refers to the same response.
#[derive(Clone)]
pub struct Deferred(Rc<RefCell<Later>>);

#[derive(Default)]
struct Later {
    /// The request, handed over by the channel once `render_*` returned.
    waiting: Option<Waiting>,
    /// Status and headers set before then, applied at the hand-over.
    code: Option<u16>,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    finished: bool,
}

/// What the channel knows of the request the response is for.
struct Waiting {
    request: Request,
    head_only: bool,
    persistent: bool,
}

impl Deferred {
    pub(super) fn new() -> Self {
        Self(Rc::default())
    }

    /// Set the response status (Twisted's setResponseCode).
    pub fn set_response_code(&self, code: u16) {
        let mut later = self.0.borrow_mut();
        match later.waiting.as_mut() {
            Some(waiting) => waiting.request.set_response_code(code),
            None => later.code = Some(code),
        }
    }

    /// Set a response header (Twisted's setHeader).
    pub fn set_header(&self, name: &str, value: impl AsRef<[u8]>) {
        let mut later = self.0.borrow_mut();
        match later.waiting.as_mut() {
            Some(waiting) => waiting.request.set_header(name, value),
            None => later
                .headers
                .push((name.to_owned(), value.as_ref().to_vec())),
        }
    }

    /// Add to the body (Twisted's request.write); it is sent, with its
    /// length, when the response is finished.
    pub fn write(&self, data: &[u8]) {
        let mut later = self.0.borrow_mut();
        if !later.finished {
            later.body.extend_from_slice(data);
        }
    }

    /// Send the response (Twisted's request.finish); the connection then
    /// carries on with its next request, or closes if it was the last.
    pub fn finish(&self) {
        let mut later = self.0.borrow_mut();
        if later.finished {
            return;
        }
        later.finished = true;
        if let Some(waiting) = later.waiting.take() {
            let body = std::mem::take(&mut later.body);
            drop(later);
            send(waiting, &body);
        }
    }

    /// Whether `finish` has been called.
    pub fn finished(&self) -> bool {
        self.0.borrow().finished
    }

    /// The channel hands over the request once `render_*` has returned. A
    /// response finished inside `render_*` comes back, with its body, for
    /// the channel to send like any other.
    pub(super) fn hand_over(
        &self,
        mut request: Request,
        head_only: bool,
        persistent: bool,
    ) -> Option<(Request, Vec<u8>)> {
        let mut later = self.0.borrow_mut();
        if let Some(code) = later.code.take() {
            request.set_response_code(code);
        }
        for (name, value) in later.headers.drain(..) {
            request.set_header(&name, value);
        }
        if later.finished {
            let body = std::mem::take(&mut later.body);
            request.set(b"Content-Length", Value::Number(body.len() as u64));
            return Some((request, body));
        }
        later.waiting = Some(Waiting {
            request,
            head_only,
            persistent,
        });
        None
    }
}

fn send(mut waiting: Waiting, body: &[u8]) {
    let request = &mut waiting.request;
    request.set(b"Content-Length", Value::Number(body.len() as u64));
    let mut out = Vec::new();
    response::encode(
        &mut out,
        request.version(),
        request.code,
        &request.response_headers,
        body,
        waiting.head_only,
    );
    let transport = request.transport.clone();
    transport.write(&out);
    if waiting.persistent {
        transport.wake_protocol();
    } else {
        transport.lose_connection();
    }
}
