//! The HTTP counter answers like Twisted's `counter.py`, byte for byte but
//! for the `Server` and `Date` values.

use std::process::Command;

use tokio::io::AsyncWriteExt;
use weft_tests::{Host, connect, exchange, normalise, read_response, read_to_end, within};

fn ok(version: &str, n: u32, extra: &str) -> String {
    let body = format!("I am request #{n}\n");
    format!(
        "{version} 200 OK\r\n{extra}Server: S\r\nDate: D\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Read `n` complete responses to GET from a kept-alive connection.
async fn read_counts(stream: &mut tokio::net::TcpStream, n: u32) -> String {
    let mut text = String::new();
    for _ in 0..n {
        text += &normalise(&read_response(stream, false).await);
    }
    text
}

async fn keep_alive_pipelining_and_two_connections_share_one_count(guest: &str) {
    let host = Host::start(&[guest]).await;
    let addr = host.addr(guest);
    let mut first = connect(addr).await;
    let mut second = connect(addr).await;

    first
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_counts(&mut first, 1).await, ok("HTTP/1.1", 1, ""));
    second
        .write_all(b"GET /other HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_counts(&mut second, 1).await, ok("HTTP/1.1", 2, ""));

    // Three pipelined requests in one write, answered in order.
    first
        .write_all(
            b"GET /a HTTP/1.1\r\n\r\nGET /b?c=d HTTP/1.1\r\n\r\nGET http://h/e HTTP/1.1\r\n\r\n",
        )
        .await
        .unwrap();
    let expected = ok("HTTP/1.1", 3, "") + &ok("HTTP/1.1", 4, "") + &ok("HTTP/1.1", 5, "");
    assert_eq!(read_counts(&mut first, 3).await, expected);
    host.stop().await;
}

async fn head_counts_and_has_no_body(guest: &str) {
    let host = Host::start(&[guest]).await;
    let addr = host.addr(guest);
    let response = exchange(addr, b"HEAD / HTTP/1.1\r\nConnection: close\r\n\r\n").await;
    assert_eq!(
        normalise(&response),
        "HTTP/1.1 200 OK\r\nConnection: close\r\nServer: S\r\nDate: D\r\nContent-Type: text/plain\r\nContent-Length: 16\r\n\r\n"
    );
    let response = exchange(addr, b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").await;
    assert_eq!(
        normalise(&response),
        ok("HTTP/1.1", 2, "Connection: close\r\n")
    );
    host.stop().await;
}

async fn post_gets_405_with_allow_and_does_not_count(guest: &str) {
    let host = Host::start(&[guest]).await;
    let addr = host.addr(guest);
    let response = exchange(
        addr,
        b"POST /x HTTP/1.1\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
    )
    .await;
    assert_eq!(
        normalise(&response),
        "HTTP/1.1 405 Method Not Allowed\r\nConnection: close\r\nServer: S\r\nDate: D\r\nAllow: HEAD, GET\r\n\
         Content-Type: text/html; charset=utf-8\r\nContent-Length: 234\r\n\r\n\n<html>\n  <head><title>405 - Method Not Allowed</title></head>\n  \
         <body>\n    <h1>Method Not Allowed</h1>\n    <p>Your browser approached me (at /x) with the method \"POST\".  \
         I only allow the methods HEAD, GET here.</p>\n  </body>\n</html>\n"
    );
    let response = exchange(addr, b"GET / HTTP/1.0\r\n\r\n").await;
    assert_eq!(normalise(&response), ok("HTTP/1.0", 1, ""));
    host.stop().await;
}

async fn malformed_requests_get_400_and_the_connection_closes(guest: &str) {
    let host = Host::start(&[guest]).await;
    let addr = host.addr(guest);
    for request in [
        &b"garbage\r\n\r\n"[..],
        b"GET / HTTP/9.9\r\n\r\n",
        b"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
        b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
        // Bytes past visible ASCII in the target: refused (Twisted takes
        // up to 0xB0; docs, where weft differs).
        b"GET /caf\xe9 HTTP/1.1\r\n\r\n",
        b"GET /\x80 HTTP/1.1\r\n\r\n",
        b"GET /\x7f HTTP/1.1\r\n\r\n",
    ] {
        let response = exchange(addr, request).await;
        assert_eq!(
            response,
            b"HTTP/1.1 400 Bad Request\r\n\r\n",
            "{:?}",
            String::from_utf8_lossy(request)
        );
    }
    // The service is unharmed and nothing was counted.
    let response = exchange(addr, b"GET / HTTP/1.0\r\n\r\n").await;
    assert_eq!(normalise(&response), ok("HTTP/1.0", 1, ""));
    host.stop().await;
}

/// `Expect: 100-continue` with a body over the limit is refused at once:
/// no `100 Continue` invites an upload that would then get 413.
async fn an_upload_over_the_limit_is_refused_before_any_continue(guest: &str) {
    let host = Host::start(&[guest]).await;
    let response = exchange(
        host.addr(guest),
        b"POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2000000\r\n\r\n",
    )
    .await;
    assert_eq!(
        response,
        b"HTTP/1.1 413 Request Entity Too Large\r\n\r\n",
        "{:?}",
        String::from_utf8_lossy(&response)
    );
    host.stop().await;
}

async fn http_1_0_closes_after_one_response(guest: &str) {
    let host = Host::start(&[guest]).await;
    let mut stream = connect(host.addr(guest)).await;
    stream
        .write_all(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /ignored HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(
        normalise(&read_to_end(&mut stream).await),
        ok("HTTP/1.0", 1, "")
    );
    host.stop().await;
}

async fn pythons_http_client_keeps_one_connection_alive(guest: &str) {
    let host = Host::start(&[guest]).await;
    let port = host.addr(guest).port();
    let script = format!(
        "import http.client\n\
         c = http.client.HTTPConnection('127.0.0.1', {port}, timeout=10)\n\
         c.request('GET', '/'); r = c.getresponse(); first = c.sock\n\
         print(r.status, r.getheader('Content-Type'), r.read().decode().strip())\n\
         for _ in range(2):\n\
         \x20   c.request('GET', '/'); r = c.getresponse()\n\
         \x20   print(r.status, r.getheader('Content-Type'), r.read().decode().strip())\n\
         c.request('HEAD', '/'); r = c.getresponse()\n\
         print(r.status, r.getheader('Content-Length'), repr(r.read()))\n\
         c.request('DELETE', '/'); r = c.getresponse(); r.read()\n\
         print(r.status, r.reason)\n\
         print('same connection:', c.sock is first)\n"
    );
    let output = within(tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .args(["-c", &script])
            .output()
            .expect("python3 runs")
    }))
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "200 text/plain I am request #1\n200 text/plain I am request #2\n200 text/plain I am request #3\n\
         200 16 b''\n501 Not Implemented\nsame connection: True\n"
    );
    host.stop().await;
}

in_each_language!(keep_alive_pipelining_and_two_connections_share_one_count: rust => "http-counter", python => "counter-py");
in_each_language!(head_counts_and_has_no_body: rust => "http-counter", python => "counter-py");
in_each_language!(post_gets_405_with_allow_and_does_not_count: rust => "http-counter", python => "counter-py");
// The Python counter is Twisted's own twisted.web, which answers malformed
// requests and uploads as Twisted does: the differential tests hold it to
// Twisted's bytes. These two are where weft's Rust counter is stricter.
in_each_language!(malformed_requests_get_400_and_the_connection_closes: rust => "http-counter");
in_each_language!(http_1_0_closes_after_one_response: rust => "http-counter", python => "counter-py");
in_each_language!(an_upload_over_the_limit_is_refused_before_any_continue: rust => "http-counter");
in_each_language!(pythons_http_client_keeps_one_connection_alive: rust => "http-counter", python => "counter-py");

/// 20,000 requests pipelined at once, under the default limits: Python
/// takes far longer than a deadline to answer one 64 KiB read of them, so
/// the channel answers within a budget per call and carries on in later
/// calls; every response comes back, numbered in order.
async fn a_burst_of_pipelined_requests_is_answered_across_calls(guest: &str) {
    const REQUESTS: usize = 20_000;
    let _heavy = weft_tests::exclusive().await;
    let host = Host::start(&[guest]).await;
    let (reader, mut writer) = connect(host.addr(guest)).await.into_split();
    let burst = b"GET / HTTP/1.1\r\n\r\n".repeat(REQUESTS);
    let sending = tokio::spawn(async move {
        writer.write_all(&burst).await.unwrap();
        writer
    });
    let mut reader = tokio::io::BufReader::new(reader);
    let mut line = String::new();
    let mut next = 1;
    while next <= REQUESTS {
        line.clear();
        let read = within(tokio::io::AsyncBufReadExt::read_line(
            &mut reader,
            &mut line,
        ))
        .await
        .unwrap();
        assert!(read > 0, "closed after {} responses", next - 1);
        if let Some(number) = line.strip_prefix("I am request #") {
            assert_eq!(number.trim_end().parse::<usize>().unwrap(), next);
            next += 1;
        }
    }
    let _writer = sending.await.unwrap();
    host.stop().await;
}

in_each_language!(a_burst_of_pipelined_requests_is_answered_across_calls: rust => "http-counter", python => "counter-py");

/// 200,000 requests to the Python counter (Twisted's `twisted.web`) under
/// the default limits, over 10 kept-alive connections, each pipelining 100
/// at a time: every one is answered and counted once, and the instance's
/// memory does not grow after warm-up (weft logs each growth of a guest's
/// memory at debug level). Before componentize-py's write leak was fixed,
/// each response's bytes stayed in the guest's memory: 200,000 responses
/// would have grown it by 30 MB. (A million took five minutes of CI on
/// `twisted.web` and proved nothing more.)
#[tokio::test(flavor = "multi_thread")]
async fn the_python_counter_answers_200_000_requests_in_flat_memory() {
    const CONNECTIONS: usize = 10;
    let _heavy = weft_tests::exclusive().await;
    let counter = weft_tests::guest("counter-py").display().to_string();
    let (mut weft, addrs) = weft_tests::WeftProcess::spawn_logging(
        &["serve", &format!("{counter}@tcp:0:interface=127.0.0.1")],
        1,
        "info,weft::sandbox::store=debug",
    )
    .await;
    let started = std::time::Instant::now();
    let warm_up = pipelined_over(addrs[0], CONNECTIONS, 10_000).await;
    let warm = weft.memory_growths();
    let mut counts = pipelined_over(addrs[0], CONNECTIONS, 200_000).await;
    let elapsed = started.elapsed();
    counts.extend(warm_up);
    counts.sort_unstable();
    let expected: Vec<u64> = (1..=210_000).collect();
    assert!(counts == expected, "each request counted once");
    assert_eq!(
        weft.memory_growths(),
        warm,
        "the instance's memory grew after warm-up:\n{}",
        weft.printed().join("\n")
    );
    println!("210,000 requests to the Python counter in {elapsed:?}");
    weft.signal(libc::SIGINT);
    weft.wait().await;
}

/// Send `requests` GETs to `addr`, shared over `connections`; returns the
/// counts the responses report.
async fn pipelined_over(
    addr: std::net::SocketAddr,
    connections: usize,
    requests: usize,
) -> Vec<u64> {
    const WINDOW: usize = 100;
    let clients: Vec<_> = (0..connections)
        .map(|_| {
            tokio::spawn(async move {
                pipeline(connect(addr).await, requests / connections, WINDOW).await
            })
        })
        .collect();
    let mut counts = Vec::new();
    for client in clients {
        counts.extend(client.await.expect("client task"));
    }
    counts
}

/// Send `requests` GETs on `stream`, at most `window` unanswered at once;
/// returns the counts the responses report, checking each response whole.
async fn pipeline(stream: tokio::net::TcpStream, requests: usize, window: usize) -> Vec<u64> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt};
    let (reader, mut writer) = stream.into_split();
    let mut reader = tokio::io::BufReader::new(reader);
    let batch = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n".repeat(window);
    let (mut counts, mut head, mut body) =
        (Vec::with_capacity(requests), String::new(), Vec::new());
    while counts.len() < requests {
        let now = window.min(requests - counts.len());
        writer
            .write_all(&batch[..batch.len() / window * now])
            .await
            .unwrap();
        for _ in 0..now {
            let mut length = None;
            loop {
                head.clear();
                assert!(
                    within(reader.read_line(&mut head)).await.unwrap() > 0,
                    "closed"
                );
                if head == "\r\n" {
                    break;
                }
                if let Some(value) = head.strip_prefix("Content-Length: ") {
                    length = Some(value.trim_end().parse::<usize>().unwrap());
                }
            }
            body.resize(length.expect("a Content-Length"), 0);
            within(reader.read_exact(&mut body)).await.unwrap();
            let text = std::str::from_utf8(&body).unwrap();
            let count = text.strip_prefix("I am request #").expect("a count");
            counts.push(count.trim_end().parse().unwrap());
        }
    }
    counts
}
