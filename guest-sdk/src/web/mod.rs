//! HTTP/1.1 in the shape of `twisted.web`: a [`Site`] is the factory, it
//! serves one leaf [`Resource`], and each request reaches the resource's
//! `render_*` method as a [`Request`].
//!
//! On the wire it answers like Twisted's `server.Site`: keep-alive and
//! pipelining, request bodies by `Content-Length` or chunked, HEAD through
//! GET, 405 with `Allow` for GET/HEAD/POST a resource lacks, 501 for other
//! methods, a bare 400 and a close for malformed requests, HTTP/1.0 closes.

mod body;
mod channel;
mod head;
mod later;
mod response;

use std::borrow::Cow;

use crate::{Factory, SocketAddress, Transport};
use head::Head;
use response::{Header, Value};

pub use channel::HttpChannel;
pub use later::Deferred;

/// What a request line and all headers together may take, request line
/// included, delimiters excluded (Twisted's `totalHeadersSize`); over it the
/// request gets a 400.
pub const MAX_HEADERS_SIZE: usize = 16384;

/// How many headers a request may carry (Twisted's `maxHeaders`).
pub const MAX_HEADERS: usize = 500;

/// The default limit on a request body: larger bodies get
/// `413 Request Entity Too Large` and the connection is closed. Twisted
/// has no limit; a sandboxed guest has a memory cap, so weft sets one.
pub const DEFAULT_MAX_CONTENT_LENGTH: usize = 1024 * 1024;

/// A resource that renders responses (Twisted's leaf `Resource`).
///
/// Each `render_*` method returns the response body; it may set the status
/// and headers on the request. State lives in `&self` through `Cell` or
/// `RefCell`: one resource serves every connection of the instance.
pub trait Resource: 'static {
    /// The methods this resource renders, as listed in a 405's `Allow`
    /// header (Twisted's `allowedMethods`). Only methods with a `render_*`
    /// method below can be listed. HEAD goes to `render_head`, which renders
    /// GET and drops the body.
    const ALLOWED_METHODS: &'static [&'static str] = &["HEAD", "GET"];

    /// Render a GET request.
    fn render_get(&self, request: &mut Request) -> Vec<u8> {
        let _ = request;
        Vec::new()
    }

    /// Render a HEAD request: by default, render GET; only the headers are sent.
    fn render_head(&self, request: &mut Request) -> Vec<u8> {
        self.render_get(request)
    }

    /// Render a POST request.
    fn render_post(&self, request: &mut Request) -> Vec<u8> {
        let _ = request;
        Vec::new()
    }

    /// Render a PUT request.
    fn render_put(&self, request: &mut Request) -> Vec<u8> {
        let _ = request;
        Vec::new()
    }

    /// Render a DELETE request.
    fn render_delete(&self, request: &mut Request) -> Vec<u8> {
        let _ = request;
        Vec::new()
    }

    /// Render a PATCH request.
    fn render_patch(&self, request: &mut Request) -> Vec<u8> {
        let _ = request;
        Vec::new()
    }

    /// Render an OPTIONS request.
    fn render_options(&self, request: &mut Request) -> Vec<u8> {
        let _ = request;
        Vec::new()
    }
}

/// The factory of an HTTP service (Twisted's `server.Site`).
pub struct Site<R> {
    resource: R,
    max_content_length: usize,
}

impl<R: Resource> Site<R> {
    /// A site serving `resource` for every path.
    pub fn new(resource: R) -> Self {
        Self {
            resource,
            max_content_length: DEFAULT_MAX_CONTENT_LENGTH,
        }
    }

    /// Change the largest request body accepted (default
    /// [`DEFAULT_MAX_CONTENT_LENGTH`]).
    pub fn with_max_content_length(mut self, bytes: usize) -> Self {
        self.max_content_length = bytes;
        self
    }

    /// The resource this site serves.
    pub fn resource(&self) -> &R {
        &self.resource
    }
}

impl<R: Resource + Default> Default for Site<R> {
    fn default() -> Self {
        Self::new(R::default())
    }
}

impl<R: Resource> Factory for Site<R> {
    type Protocol = HttpChannel<R>;

    fn build_protocol(&'static self, transport: Transport) -> HttpChannel<R> {
        HttpChannel::new(self, transport)
    }
}

/// One HTTP request and the response being built for it.
pub struct Request {
    head: Head,
    content: Vec<u8>,
    transport: Transport,
    code: u16,
    response_headers: Vec<Header>,
    /// Set by [`Request::not_done_yet`]: the response comes later.
    later: Option<Deferred>,
}

impl Request {
    /// The request method, as sent: `GET`.
    pub fn method(&self) -> &[u8] {
        self.head.method()
    }

    /// The request target, as sent: `/path?query`.
    pub fn uri(&self) -> &[u8] {
        self.head.uri()
    }

    /// The request target without its query string.
    pub fn path(&self) -> &[u8] {
        let uri = self.uri();
        let end = uri.iter().position(|&b| b == b'?');
        &uri[..end.unwrap_or(uri.len())]
    }

    /// The protocol version: `HTTP/1.0` or `HTTP/1.1`.
    pub fn version(&self) -> &'static [u8] {
        self.head.version
    }

    /// The first value of request header `name`, compared case-insensitively.
    pub fn get_header(&self, name: &str) -> Option<&[u8]> {
        self.head.get(name.as_bytes())
    }

    /// Every request header in arrival order, names in Twisted's
    /// canonical capitalisation (`Content-Length`).
    pub fn headers(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.head.headers()
    }

    /// The request body, decoded if it was chunked.
    pub fn content(&self) -> &[u8] {
        &self.content
    }

    /// The client's address.
    pub fn get_peer(&self) -> SocketAddress {
        self.transport.get_peer()
    }

    /// The local address the request arrived on.
    pub fn get_host(&self) -> SocketAddress {
        self.transport.get_host()
    }

    /// The response status, 200 unless changed.
    pub fn response_code(&self) -> u16 {
        self.code
    }

    /// Answer later (Twisted's `return NOT_DONE_YET`): the value `render_*`
    /// returns is then ignored, and the response is whatever the returned
    /// [`Deferred`] is given before its `finish`. Further requests on the
    /// connection wait their turn, as pipelining requires.
    pub fn not_done_yet(&mut self) -> Deferred {
        let later = Deferred::new();
        self.later = Some(later.clone());
        later
    }

    /// Set the response status (Twisted's setResponseCode).
    pub fn set_response_code(&mut self, code: u16) {
        self.code = code;
    }

    /// Set response header `name` to `value`, replacing any earlier value
    /// but keeping its place (Twisted's setHeader). Names are canonicalised
    /// as Twisted does; line breaks in values become spaces. A name that is
    /// not an HTTP token is ignored.
    pub fn set_header(&mut self, name: &str, value: impl AsRef<[u8]>) {
        let Some(name) = response::canonical_name(name.as_bytes()) else {
            return;
        };
        let value = Value::Owned(response::sanitize_value(value.as_ref()));
        self.put(Cow::Owned(name), value);
    }

    /// The value set for response header `name`, if any.
    pub fn response_header(&self, name: &str) -> Option<Cow<'_, [u8]>> {
        self.response_headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, value)| value.bytes())
    }

    /// Set a header whose canonical name is known, without allocating.
    pub(crate) fn set(&mut self, name: &'static [u8], value: Value) {
        self.put(Cow::Borrowed(name), value);
    }

    fn put(&mut self, name: Cow<'static, [u8]>, value: Value) {
        match self.response_headers.iter_mut().find(|(n, _)| *n == name) {
            Some(header) => header.1 = value,
            None => self.response_headers.push((name, value)),
        }
    }
}
