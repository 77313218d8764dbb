//! Per-service limits on connections: how many at once, how long idle, how
//! many handles an instance may hold.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use weft::Limits;
use weft_tests::{Host, closed_without_reply, connect, read_exact, read_to_end};

async fn round_trip(stream: &mut TcpStream, message: &[u8]) {
    stream.write_all(message).await.unwrap();
    assert_eq!(read_exact(stream, message.len()).await, message);
}

/// Whether `stream` gets no byte back within 300 ms (echo would answer in
/// well under a millisecond if it were being served).
async fn unanswered(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    tokio::time::timeout(
        Duration::from_millis(300),
        tokio::io::AsyncReadExt::read(stream, &mut byte),
    )
    .await
    .is_err()
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_over_the_limit_wait_in_the_backlog_until_a_slot_frees() {
    let limits = Limits {
        max_connections: 2,
        ..Limits::default()
    };
    let host = Host::start_with(vec![("echo", limits)]).await;
    let addr = host.addr("echo");
    let mut first = connect(addr).await;
    let mut second = connect(addr).await;
    round_trip(&mut first, b"one").await;
    round_trip(&mut second, b"two").await;
    let mut third = connect(addr).await;
    third.write_all(b"three").await.unwrap();
    assert!(
        unanswered(&mut third).await,
        "the third waits while two are served"
    );
    drop(first);
    assert_eq!(
        read_exact(&mut third, 5).await,
        b"three",
        "served once a slot frees"
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_connections_are_closed_after_the_idle_timeout() {
    let limits = Limits {
        idle_timeout: Some(Duration::from_millis(300)),
        ..Limits::default()
    };
    let host = Host::start_with(vec![("echo", limits)]).await;
    let mut idle = connect(host.addr("echo")).await;
    let mut busy = connect(host.addr("echo")).await;
    for _ in 0..8 {
        round_trip(&mut busy, b"keepalive").await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(read_to_end(&mut idle).await, b"", "the idle one was closed");
    round_trip(&mut busy, b"still open after 800 ms").await;
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_handle_table_refuses_new_connections_but_keeps_the_instance() {
    let limits = Limits {
        handles: 2,
        ..Limits::default()
    };
    let host = Host::start_with(vec![("echo", limits)]).await;
    let addr = host.addr("echo");
    let mut first = connect(addr).await;
    round_trip(&mut first, b"a").await;
    let mut second = connect(addr).await;
    round_trip(&mut second, b"b").await;
    let mut refused = connect(addr).await;
    refused.write_all(b"c").await.unwrap();
    assert!(
        closed_without_reply(&mut refused).await,
        "no handle left for a third transport"
    );
    round_trip(&mut first, b"the instance carries on").await;
    drop(second);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut fourth = connect(addr).await;
    round_trip(&mut fourth, b"a freed handle is reused").await;
    host.stop().await;
}
