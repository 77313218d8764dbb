//! Every transport call a guest can make, observed from real sockets, and
//! `connection-lost` arriving exactly once with the right reason.

use std::io::ErrorKind;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use weft_tests::{Host, connect, read_to_end, read_until, spec, within};

/// Send the control guest `command` and read its one-line reply.
pub(crate) async fn ask(
    stream: &mut (impl AsyncRead + AsyncWrite + Unpin),
    command: &str,
) -> String {
    stream
        .write_all(format!("{command}\r\n").as_bytes())
        .await
        .unwrap();
    let reply = read_until(stream, b"\r\n").await;
    String::from_utf8(reply).unwrap().trim_end().to_owned()
}

/// The reasons connection-lost reported so far, once `expected` many have,
/// asked over `probe`, which stays open so as not to add a reason itself.
async fn lost_reasons(probe: &mut TcpStream, expected: usize) -> String {
    within(async {
        loop {
            let lost = ask(probe, "lost").await;
            if lost.split(',').filter(|r| !r.is_empty()).count() >= expected {
                return lost;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn addresses_are_the_peer_and_the_listening_socket() {
    let host = Host::start(&["control"]).await;
    let mut stream = connect(host.addr("control")).await;
    let local = stream.local_addr().unwrap();
    assert_eq!(
        ask(&mut stream, "peer").await,
        format!(
            "IPv4Address(type='TCP', host='127.0.0.1', port={})",
            local.port()
        )
    );
    assert_eq!(
        ask(&mut stream, "host").await,
        format!(
            "IPv4Address(type='TCP', host='127.0.0.1', port={})",
            host.addr("control").port()
        )
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn lose_connection_flushes_then_closes_and_reports_done_once() {
    let host = Host::start(&["control"]).await;
    let mut probe = connect(host.addr("control")).await;
    let mut stream = connect(host.addr("control")).await;
    stream
        .write_all(b"first\r\nlose\r\nnot read\r\n")
        .await
        .unwrap();
    assert_eq!(read_to_end(&mut stream).await, b"first\r\nbye\r\n");
    assert_eq!(
        lost_reasons(&mut probe, 1).await,
        "done",
        "lose-connection twice ends it once"
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_peer_that_closes_or_resets_is_reported_once_each() {
    let host = Host::start(&["control"]).await;
    let mut probe = connect(host.addr("control")).await;
    let mut closer = connect(host.addr("control")).await;
    assert_eq!(ask(&mut closer, "hello").await, "hello");
    closer.shutdown().await.unwrap();
    assert_eq!(
        read_to_end(&mut closer).await,
        b"",
        "the guest closes its side too"
    );
    // Only a connection whose protocol was built can lose it: talk first.
    let mut resetter = connect(host.addr("control")).await;
    assert_eq!(ask(&mut resetter, "hello").await, "hello");
    resetter.set_zero_linger().unwrap();
    drop(resetter);
    let mut reasons: Vec<_> = lost_reasons(&mut probe, 2)
        .await
        .split(',')
        .map(str::to_owned)
        .collect();
    reasons.sort();
    assert_eq!(reasons, ["done", "lost"], "a clean close, then a reset");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn abort_resets_at_once_and_reports_aborted() {
    let host = Host::start(&["control"]).await;
    let mut probe = connect(host.addr("control")).await;
    let mut stream = connect(host.addr("control")).await;
    stream.write_all(b"abort\r\n").await.unwrap();
    let mut buffer = Vec::new();
    let result = within(stream.read_to_end(&mut buffer)).await;
    assert_eq!(
        result.map_err(|e| e.kind()),
        Err(ErrorKind::ConnectionReset)
    );
    assert!(
        buffer.is_empty(),
        "nothing written before the abort is sent"
    );
    assert_eq!(lost_reasons(&mut probe, 1).await, "aborted");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn lose_write_connection_half_closes_and_keeps_reading() {
    let host = Host::start(&["control"]).await;
    let mut stream = connect(host.addr("control")).await;
    stream.write_all(b"half-close\r\n").await.unwrap();
    assert_eq!(
        read_to_end(&mut stream).await,
        b"bye\r\n",
        "the peer sees EOF after bye"
    );
    stream.write_all(b"still talking\r\n").await.unwrap();
    let mut probe = connect(host.addr("control")).await;
    within(async {
        while ask(&mut probe, "heard").await != "still talking" {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    stream.shutdown().await.unwrap();
    assert_eq!(lost_reasons(&mut probe, 1).await, "done");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pause_producing_stops_delivery_until_resumed() {
    let host = Host::start(&["control"]).await;
    let mut paused = connect(host.addr("control")).await;
    // The answer leaves after the call that paused: reading has stopped.
    assert_eq!(ask(&mut paused, "pause").await, "paused");
    let mut other = connect(host.addr("control")).await;
    paused.write_all(b"held back\r\n").await.unwrap();
    // Unpaused, the line would be delivered well within this time.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        ask(&mut other, "heard").await,
        "",
        "nothing is delivered while paused"
    );
    assert_eq!(ask(&mut other, "resume-all").await, "resumed");
    assert_eq!(read_until(&mut paused, b"\r\n").await, b"held back\r\n");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn writing_to_a_closed_connections_transport_does_nothing() {
    let host = Host::start(&["control"]).await;
    let mut probe = connect(host.addr("control")).await;
    let mut gone = connect(host.addr("control")).await;
    assert_eq!(ask(&mut gone, "hello").await, "hello");
    drop(gone);
    lost_reasons(&mut probe, 1).await;
    let mut live = connect(host.addr("control")).await;
    live.write_all(b"write-all\r\n").await.unwrap();
    // Transports of this live connection and the probe get the line;
    // the closed one is skipped without harm and the guest carries on.
    assert_eq!(read_until(&mut live, b"\r\n").await, b"to all\r\n");
    assert_eq!(ask(&mut live, "ok?").await, "ok?");
    host.stop().await;
}

/// The guest's own push producer (Twisted's registerProducer) is paused
/// while a reader slower than it fills the connection's write buffer, and
/// resumed as it drains: 64 MiB arrive intact although the host holds at
/// most 1 MiB for the connection, and would abort it past that. The guest
/// writes 512 KiB per timer turn; the pause comes at the end of the turn
/// that filled the 256 KiB buffer, before any other call, so the backlog
/// never passes 768 KiB however late the connection's own task runs.
#[tokio::test(flavor = "multi_thread")]
async fn a_slow_reader_pauses_the_guests_own_producer() {
    const SIZE: usize = 64 << 20;
    let mut spec = spec("reactor");
    spec.limits.write_buffer = 256 << 10;
    spec.limits.write_limit = 1 << 20;
    let host = Host::start_specs(vec![spec]).await;
    let mut client = connect(host.addr("reactor")).await;
    client.write_all(b"stream 64\r\n").await.unwrap();
    let mut received = Vec::with_capacity(SIZE);
    let mut buffer = vec![0; 16 << 10];
    // Slow for the first 4 MiB: far slower than the guest writes.
    while received.len() < 4 << 20 {
        let read = within(client.read(&mut buffer)).await.unwrap();
        assert_ne!(read, 0, "closed after {} bytes", received.len());
        received.extend_from_slice(&buffer[..read]);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    within(client.read_to_end(&mut received)).await.unwrap();
    assert_eq!(received.len(), SIZE, "bytes received");
    let wrong = received
        .iter()
        .enumerate()
        .position(|(index, &byte)| byte != (index % 251) as u8);
    assert_eq!(wrong, None, "the first byte out of order");
    host.stop().await;
}
