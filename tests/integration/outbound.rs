//! Outbound connections (`reactor.connect`): to real listeners the tests
//! start, the failures a guest is told about, the operator's policy (no
//! socket reaches a denied destination), the quota, and a trap closing
//! both sides.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use weft_tests::{Host, connect, line, read_to_end, send_line, spec, within};

/// The reactor guest, allowed to connect to `rules`, with `limits` set.
async fn reactor_host(rules: &[&str], limits: &[(&str, &str)]) -> Host {
    guest_host("reactor", rules, limits).await
}

/// `guest`, allowed to connect to `rules`, with `limits` set.
async fn guest_host(guest: &str, rules: &[&str], limits: &[(&str, &str)]) -> Host {
    let mut spec = spec(guest);
    spec.connect = rules.iter().map(|r| r.parse().unwrap()).collect();
    for (name, value) in limits {
        spec.limits.set(name, value).unwrap();
    }
    Host::start_specs(vec![spec]).await
}

async fn backend() -> (TcpListener, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

/// Whether anything connects to `listener` within half a second.
async fn reached(listener: &TcpListener) -> bool {
    tokio::time::timeout(Duration::from_millis(500), listener.accept())
        .await
        .is_ok()
}

async fn a_connection_out_carries_bytes_both_ways_and_reports_its_end(guest: &str) {
    let (listener, port) = backend().await;
    let host = guest_host(guest, &["127.0.0.1:*"], &[]).await;
    let mut client = connect(host.addr(guest)).await;
    send_line(
        &mut client,
        &format!("connect tcp:host=127.0.0.1:port={port}"),
    )
    .await;
    let (mut server, _) = within(listener.accept()).await.unwrap();
    assert_eq!(line(&mut client).await, "connected");
    server
        .write_all(b"hello from the backend\r\n")
        .await
        .unwrap();
    assert_eq!(line(&mut client).await, "backend: hello from the backend");
    send_line(&mut client, "send to the backend").await;
    let mut heard = vec![0; "to the backend\r\n".len()];
    within(server.read_exact(&mut heard)).await.unwrap();
    assert_eq!(heard, b"to the backend\r\n");
    drop(server);
    assert_eq!(line(&mut client).await, "backend lost");
    host.stop().await;
}

in_each_language!(a_connection_out_carries_bytes_both_ways_and_reports_its_end: rust => "reactor", python => "reactor-py");

/// The same failures through Twisted's API in Python: the Deferred that
/// `endpoints.clientFromString(...).connect()` returned fails with
/// Twisted's exception for each.
#[tokio::test(flavor = "multi_thread")]
async fn python_connects_fail_with_twisteds_exceptions() {
    let closed_port = {
        let (listener, port) = backend().await;
        drop(listener);
        port
    };
    let (denied, denied_port) = backend().await;
    let host = guest_host(
        "reactor-py",
        &["127.0.0.1:*", "no-such-host.invalid:*"],
        &[],
    )
    .await;
    let mut client = connect(host.addr("reactor-py")).await;
    for (command, reply) in [
        (
            format!("connect tcp:127.0.0.1:{closed_port}"),
            "connect failed ConnectionRefusedError",
        ),
        (
            "connect tcp:no-such-host.invalid:80".into(),
            "connect failed DNSLookupError",
        ),
        (
            format!("connect tcp:127.0.0.2:{denied_port}"),
            "connect failed ConnectError",
        ),
    ] {
        send_line(&mut client, &command).await;
        assert_eq!(line(&mut client).await, reply, "{command}");
    }
    assert!(
        !reached(&denied).await,
        "a denied connect reached its target"
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn failures_are_reported_with_their_reason() {
    let closed_port = {
        let (listener, port) = backend().await;
        drop(listener);
        port
    };
    let host = reactor_host(&["127.0.0.1:*", "no-such-host.invalid:*"], &[]).await;
    let mut client = connect(host.addr("reactor")).await;
    for (command, reply) in [
        (
            format!("connect tcp:127.0.0.1:{closed_port}"),
            "connect failed refused",
        ),
        (
            "connect tcp:no-such-host.invalid:80".into(),
            "connect failed not-resolvable",
        ),
        (
            "connect unix:/tmp/socket".into(),
            "connect refused invalid-endpoint",
        ),
        (
            "connect tcp:127.0.0.1:http".into(),
            "connect refused invalid-endpoint",
        ),
    ] {
        send_line(&mut client, &command).await;
        assert_eq!(line(&mut client).await, reply, "{command}");
    }
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connect_that_hangs_times_out() {
    // A listener whose accept queue is full drops further SYNs, so a
    // connect to it hangs until the client gives up.
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let full = socket.listen(1).unwrap();
    let port = full.local_addr().unwrap().port();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        let attempt = tokio::time::timeout(
            Duration::from_millis(200),
            TcpStream::connect(("127.0.0.1", port)),
        );
        if let Ok(Ok(stream)) = attempt.await {
            fillers.push(stream);
        }
    }
    let host = reactor_host(&["127.0.0.1:*"], &[("connect-timeout", "300ms")]).await;
    let mut client = connect(host.addr("reactor")).await;
    send_line(&mut client, &format!("connect tcp:127.0.0.1:{port}")).await;
    assert_eq!(line(&mut client).await, "connect failed timed-out");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_destination_no_rule_allows_is_denied_without_a_socket() {
    let (listener, port) = backend().await;
    let host = reactor_host(&["127.0.0.2:*"], &[]).await;
    let mut client = connect(host.addr("reactor")).await;
    send_line(&mut client, &format!("connect tcp:127.0.0.1:{port}")).await;
    assert_eq!(line(&mut client).await, "connect failed denied");
    assert!(
        !reached(&listener).await,
        "a denied connect reached its target"
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_name_that_resolves_outside_the_allowed_ranges_is_denied() {
    let (listener, port) = backend().await;
    // Ranges allow names to be tried; localhost resolves to 127.0.0.1.
    let host = reactor_host(&["10.0.0.0/8:*"], &[]).await;
    let mut client = connect(host.addr("reactor")).await;
    send_line(&mut client, &format!("connect tcp:localhost:{port}")).await;
    assert_eq!(line(&mut client).await, "connect failed denied");
    assert!(
        !reached(&listener).await,
        "a denied connect reached its target"
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_name_the_policy_allows_connects_to_what_it_resolves_to() {
    let (listener, port) = backend().await;
    let host = reactor_host(&[&format!("localhost:{port}")], &[]).await;
    let mut client = connect(host.addr("reactor")).await;
    send_line(&mut client, &format!("connect tcp:localhost:{port}")).await;
    assert_eq!(line(&mut client).await, "connected");
    let _kept = within(listener.accept()).await.unwrap();
    send_line(&mut client, &format!("connect tcp:localhost:{}", port + 1)).await;
    assert_eq!(line(&mut client).await, "connect failed denied");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_outbound_quota_refuses_connects_past_it() {
    let (listener, port) = backend().await;
    let host = reactor_host(&["127.0.0.1:*"], &[("max-outbound", "2")]).await;
    let mut client = connect(host.addr("reactor")).await;
    send_line(&mut client, &format!("connect-many 5 tcp:127.0.0.1:{port}")).await;
    assert_eq!(line(&mut client).await, "refused 3 of 5");
    let (first, _) = within(listener.accept()).await.unwrap();
    let (_second, _) = within(listener.accept()).await.unwrap();
    assert_eq!(line(&mut client).await, "connected");
    assert_eq!(line(&mut client).await, "connected");
    // A closed connection frees its place.
    drop(first);
    assert_eq!(line(&mut client).await, "backend lost");
    send_line(&mut client, &format!("connect-many 2 tcp:127.0.0.1:{port}")).await;
    assert_eq!(line(&mut client).await, "refused 1 of 2");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trap_closes_the_instances_outbound_connections_too() {
    let (listener, port) = backend().await;
    let host = reactor_host(&["127.0.0.1:*"], &[]).await;
    let mut client = connect(host.addr("reactor")).await;
    send_line(&mut client, &format!("connect tcp:127.0.0.1:{port}")).await;
    let (mut server, _) = within(listener.accept()).await.unwrap();
    assert_eq!(line(&mut client).await, "connected");
    send_line(&mut client, "panic-later 0").await;
    read_to_end(&mut client).await;
    // `within` fails the test unless the host closes the backend side.
    let mut rest = Vec::new();
    let _closed_or_reset = within(server.read_to_end(&mut rest)).await;
    assert!(rest.is_empty(), "{rest:?}");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn outbound_connections_count_against_the_handles_limit() {
    let (listener, port) = backend().await;
    let host = reactor_host(&["127.0.0.1:*"], &[("handles", "12")]).await;
    let mut client = connect(host.addr("reactor")).await;
    let accepting = tokio::spawn(async move {
        let mut kept = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            kept.push(stream);
        }
    });
    send_line(
        &mut client,
        &format!("connect-many 20 tcp:127.0.0.1:{port}"),
    )
    .await;
    assert_eq!(line(&mut client).await, "refused 0 of 20");
    let mut answers = Vec::new();
    for _ in 0..20 {
        answers.push(line(&mut client).await);
    }
    let connected = answers.iter().filter(|a| *a == "connected").count();
    let refused = answers
        .iter()
        .filter(|a| *a == "connect failed limit")
        .count();
    assert_eq!(connected + refused, 20, "{answers:?}");
    assert!(connected >= 1 && refused >= 1, "{answers:?}");
    accepting.abort();
    host.stop().await;
}

/// A Python guest that reaches for Python's own `socket` module is told,
/// in the exception, that the sandbox grants no sockets and how to
/// connect instead; no socket is made.
#[tokio::test(flavor = "multi_thread")]
async fn a_python_guests_own_socket_is_refused_with_the_way_that_works() {
    let host = guest_host("faulty-py", &["127.0.0.0/8:*"], &[]).await;
    for command in ["socket", "connect", "resolve"] {
        let mut client = connect(host.addr("faulty-py")).await;
        send_line(&mut client, command).await;
        let said = line(&mut client).await;
        assert!(
            said.starts_with("PermissionError: ")
                && said.contains("weft's sandbox grants a guest no sockets")
                && said.contains("reactor.connectTCP"),
            "{command}: {said}"
        );
    }
    host.stop().await;
}
