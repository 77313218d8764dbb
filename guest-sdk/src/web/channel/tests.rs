//! The channel against bytes recorded from Twisted 26.10's `counter.py`
//! (`Server` and `Date` values normalised).

use std::cell::Cell;

use super::*;
use crate::testing::StringTransport;
use crate::{Factory, Protocol};

#[derive(Default)]
struct Counter {
    number_requests: Cell<u64>,
}

impl Resource for Counter {
    fn render_get(&self, request: &mut Request) -> Vec<u8> {
        self.number_requests.set(self.number_requests.get() + 1);
        request.set_header("content-type", "text/plain");
        format!("I am request #{}\n", self.number_requests.get()).into_bytes()
    }
}

/// A fresh site and one connection to it.
fn connect() -> (HttpChannel<Counter>, StringTransport) {
    let site: &'static Site<Counter> = Box::leak(Box::default());
    let wire = StringTransport::new();
    (site.build_protocol(wire.transport()), wire)
}

/// Replace the Server and Date values, which differ from Twisted's by design.
fn normalise(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    text.split("\r\n")
        .map(|line| {
            if line.starts_with("Server: ") {
                "Server: S"
            } else if line.starts_with("Date: ") {
                "Date: D"
            } else {
                line
            }
        })
        .collect::<Vec<_>>()
        .join("\r\n")
}

fn ok(n: u64) -> String {
    let body = format!("I am request #{n}\n");
    format!(
        "HTTP/1.1 200 OK\r\nServer: S\r\nDate: D\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

const NOT_ALLOWED_POST: &str = "HTTP/1.1 405 Method Not Allowed\r\nServer: S\r\nDate: D\r\nAllow: HEAD, GET\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: 233\r\n\r\n\n<html>\n  <head><title>405 - Method Not Allowed</title></head>\n  <body>\n    <h1>Method Not Allowed</h1>\n    <p>Your browser approached me (at /) with the method \"POST\".  I only allow the methods HEAD, GET here.</p>\n  </body>\n</html>\n";

#[test]
fn counts_requests_across_keep_alive_and_pipelining() {
    let (mut channel, wire) = connect();
    channel.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(normalise(&wire.take()), ok(1));
    channel.data_received(b"GET /b HTTP/1.1\r\n\r\nGET /c?d HTTP/1.1\r\n\r\n");
    assert_eq!(normalise(&wire.take()), ok(2) + &ok(3));
    assert!(!wire.lost());
}

#[test]
fn the_count_is_shared_by_connections() {
    let site: &'static Site<Counter> = Box::leak(Box::default());
    let (first, second) = (StringTransport::new(), StringTransport::new());
    let mut a = site.build_protocol(first.transport());
    let mut b = site.build_protocol(second.transport());
    a.data_received(b"GET / HTTP/1.1\r\n\r\n");
    b.data_received(b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(normalise(&first.value()), ok(1));
    assert_eq!(normalise(&second.value()), ok(2));
}

#[test]
fn head_counts_and_sends_no_body() {
    let (mut channel, wire) = connect();
    channel.data_received(b"HEAD /foo HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(
        normalise(&wire.take()),
        "HTTP/1.1 200 OK\r\nServer: S\r\nDate: D\r\nContent-Type: text/plain\r\nContent-Length: 16\r\n\r\n"
    );
    channel.data_received(b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(normalise(&wire.take()), ok(2));
}

#[test]
fn post_is_not_allowed_and_its_body_is_skipped() {
    let (mut channel, wire) = connect();
    channel.data_received(
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\n\r\n",
    );
    assert_eq!(
        normalise(&wire.take()),
        NOT_ALLOWED_POST.to_string() + &ok(1)
    );
}

#[test]
fn chunked_bodies_are_consumed() {
    let (mut channel, wire) = connect();
    channel.data_received(
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n",
    );
    assert_eq!(
        normalise(&wire.take()),
        NOT_ALLOWED_POST.to_string() + &ok(1)
    );
}

#[test]
fn other_methods_are_not_implemented() {
    let (mut channel, wire) = connect();
    channel.data_received(b"FOO /a<b>&c\"d HTTP/1.1\r\n\r\n");
    assert_eq!(
        normalise(&wire.take()),
        "HTTP/1.1 501 Not Implemented\r\nServer: S\r\nDate: D\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: 146\r\n\r\n\n<html>\n  <head><title>501 - Huh?</title></head>\n  <body>\n    <h1>Huh?</h1>\n    <p>I don't know how to treat a FOO request.</p>\n  </body>\n</html>\n"
    );
    assert!(!wire.lost());
}

#[test]
fn connection_close_is_echoed_first_and_closes() {
    let (mut channel, wire) = connect();
    channel.data_received(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\n\r\n");
    let expected = ok(1).replace("200 OK\r\n", "200 OK\r\nConnection: close\r\n");
    assert_eq!(normalise(&wire.take()), expected);
    assert!(wire.lost());
}

#[test]
fn http_1_0_closes_even_when_keep_alive_is_asked() {
    for request in [
        &b"GET / HTTP/1.0\r\n\r\n"[..],
        b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    ] {
        let (mut channel, wire) = connect();
        channel.data_received(request);
        assert_eq!(
            normalise(&wire.take()),
            ok(1).replace("HTTP/1.1", "HTTP/1.0")
        );
        assert!(wire.lost());
    }
}

#[test]
fn malformed_requests_get_a_bare_400_and_close() {
    for request in [
        &b"garbage\r\n\r\n"[..],
        b"GET / HTTP/2.0\r\n\r\n",
        b"GET /\r\n\r\n",
        b"\r\n\r\nGET / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad header\r\n\r\n",
        b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    ] {
        let (mut channel, wire) = connect();
        channel.data_received(request);
        assert_eq!(
            wire.take(),
            BAD_REQUEST,
            "{:?}",
            String::from_utf8_lossy(request)
        );
        assert!(wire.lost());
        channel.data_received(b"GET / HTTP/1.1\r\n\r\n");
        assert!(wire.value().is_empty(), "nothing is answered after a 400");
    }
}

#[test]
fn one_empty_line_before_a_request_is_eaten() {
    let (mut channel, wire) = connect();
    channel.data_received(b"\r\nGET / HTTP/1.1\r\n\r\n");
    assert_eq!(normalise(&wire.take()), ok(1));
}

#[test]
fn bare_lf_does_not_end_a_line() {
    let (mut channel, wire) = connect();
    channel.data_received(b"GET / HTTP/1.1\n\n");
    assert!(wire.value().is_empty());
    assert!(!wire.lost());
}

#[test]
fn a_bad_request_line_is_refused_before_the_headers_end() {
    let (mut channel, wire) = connect();
    channel.data_received(b"garbage\r\n");
    assert_eq!(wire.take(), BAD_REQUEST);
}

#[test]
fn header_size_limits_follow_twisted() {
    // Total head bytes over 16384 get a 400.
    let (mut channel, wire) = connect();
    let mut request = b"GET / HTTP/1.1\r\n".to_vec();
    for _ in 0..20 {
        request.extend_from_slice(format!("X-Pad: {}\r\n", "p".repeat(1000)).as_bytes());
    }
    request.extend_from_slice(b"\r\n");
    channel.data_received(&request);
    assert_eq!(wire.take(), BAD_REQUEST);

    // One line over LineReceiver's MAX_LENGTH closes without a response.
    let (mut channel, wire) = connect();
    channel.data_received(&vec![b'a'; 16386]);
    assert!(wire.value().is_empty());
    assert!(wire.lost());
}

#[test]
fn byte_at_a_time_requests_are_answered() {
    let (mut channel, wire) = connect();
    for byte in b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhiHEAD / HTTP/1.1\r\n\r\n" {
        channel.data_received(&[*byte]);
    }
    let head = "HTTP/1.1 200 OK\r\nServer: S\r\nDate: D\r\nContent-Type: text/plain\r\nContent-Length: 16\r\n\r\n";
    assert_eq!(normalise(&wire.take()), ok(1) + head);
}

#[test]
fn expect_continue_is_answered_before_the_body() {
    let (mut channel, wire) = connect();
    channel.data_received(b"GET / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n");
    assert_eq!(wire.take(), CONTINUE);
    channel.data_received(b"ok");
    assert_eq!(normalise(&wire.take()), ok(1));
}

#[test]
fn expect_continue_over_the_limit_gets_413_without_a_continue() {
    let (mut channel, wire) = connect();
    channel.data_received(
        b"POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2000000\r\n\r\n",
    );
    assert_eq!(wire.take(), TOO_LARGE);
    assert!(wire.lost());
}

#[test]
fn bodies_over_the_limit_get_413() {
    let site: &'static Site<Counter> = Box::leak(Box::new(
        Site::new(Counter::default()).with_max_content_length(4),
    ));
    let wire = StringTransport::new();
    let mut channel = site.build_protocol(wire.transport());
    channel.data_received(b"GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\n");
    assert_eq!(wire.take(), TOO_LARGE);
    assert!(wire.lost());
}

#[test]
fn star_requests_are_answered_by_the_site() {
    let (mut channel, wire) = connect();
    channel.data_received(b"OPTIONS * HTTP/1.1\r\n\r\nGET * HTTP/1.1\r\n\r\n");
    assert_eq!(
        normalise(&wire.take()),
        "HTTP/1.1 200 OK\r\nServer: S\r\nDate: D\r\nContent-Length: 0\r\n\r\n\
         HTTP/1.1 405 Method Not Allowed\r\nServer: S\r\nDate: D\r\nAllow: OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    assert_eq!(channel.site.resource().number_requests.get(), 0);
}
