//! The echo guest returns every byte, in order, on every connection.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weft_tests::{Host, WeftProcess, connect, guest, noise, read_exact, read_to_end, within};

async fn echoes_one_mebibyte_on_each_of_100_concurrent_connections(guest: &str) {
    let host = Host::start(&[guest]).await;
    assert_eq!(
        echo_concurrently(host.addr(guest), 100, 1024 * 1024).await,
        100,
        "every connection got its own bytes back, in order"
    );
    host.stop().await;
}

/// How many of `connections` concurrent connections to `addr` got all of
/// their `bytes_each` bytes back, in order.
async fn echo_concurrently(addr: SocketAddr, connections: u64, bytes_each: usize) -> u64 {
    let clients: Vec<_> = (0..connections)
        .map(|seed| tokio::spawn(echoes_intact(addr, bytes_each, seed)))
        .collect();
    let mut intact = 0;
    for client in clients {
        intact += u64::from(client.await.expect("client task"));
    }
    intact
}

/// Send `total` bytes of noise to `addr` on one connection while reading
/// the echo; whether all of it came back, in order. The noise repeats with
/// a period of about a megabyte, so gigabytes take no more memory.
async fn echoes_intact(addr: SocketAddr, total: usize, seed: u64) -> bool {
    const PERIOD: usize = 1_000_003;
    let pattern = std::sync::Arc::new(noise(PERIOD, seed));
    let (mut reader, mut writer) = connect(addr).await.into_split();
    let to_send = pattern.clone();
    // Write and read at once: echo would stall on full buffers otherwise.
    let writing = tokio::spawn(async move {
        let mut sent = 0;
        while sent < total {
            let at = sent % PERIOD;
            let end = (at + 7919).min(PERIOD).min(at + total - sent);
            writer.write_all(&to_send[at..end]).await.expect("writes");
            sent += end - at;
        }
        writer
    });
    let mut received = 0;
    let mut buffer = vec![0; 64 * 1024];
    while received < total {
        let n = match within(reader.read(&mut buffer)).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => n,
        };
        let mut checked = 0;
        while checked < n {
            let at = (received + checked) % PERIOD;
            let len = (n - checked).min(PERIOD - at);
            if buffer[checked..checked + len] != pattern[at..at + len] {
                return false;
            }
            checked += len;
        }
        received += n;
    }
    let _writer = writing.await.expect("the writer finishes");
    true
}

async fn each_message_comes_back_before_the_next_is_sent(guest: &str) {
    let host = Host::start(&[guest]).await;
    let mut stream = connect(host.addr(guest)).await;
    for message in [
        &b"a"[..],
        b"hello",
        b"\r\n",
        b"\0\xff binary \x80",
        &[b'x'; 70_000],
    ] {
        stream.write_all(message).await.unwrap();
        assert_eq!(read_exact(&mut stream, message.len()).await, message);
    }
    host.stop().await;
}

async fn a_half_closed_client_gets_everything_back_then_eof(guest: &str) {
    let host = Host::start(&[guest]).await;
    let mut stream = connect(host.addr(guest)).await;
    let sent = noise(300_000, 7);
    stream.write_all(&sent).await.unwrap();
    stream.shutdown().await.unwrap();
    assert_eq!(read_to_end(&mut stream).await, sent);
    host.stop().await;
}

in_each_language!(echoes_one_mebibyte_on_each_of_100_concurrent_connections: rust => "echo", python => "echo-py", c => "echo-c");
in_each_language!(each_message_comes_back_before_the_next_is_sent: rust => "echo", python => "echo-py", c => "echo-c");
in_each_language!(a_half_closed_client_gets_everything_back_then_eof: rust => "echo", python => "echo-py", c => "echo-c");

/// The C echo's optional idle timeout (`config.idle-timeout`), a reactor
/// timer in C: a connection that keeps talking stays, one that goes quiet
/// is closed once it has been idle that long.
#[tokio::test(flavor = "multi_thread")]
async fn the_c_echo_closes_a_connection_idle_for_its_timeout() {
    let mut spec = weft_tests::spec("echo-c");
    spec.config = vec![("idle-timeout".into(), "0.6".into())];
    let host = Host::start_specs(vec![spec]).await;
    let mut stream = connect(host.addr("echo-c")).await;
    for round in 0..6u8 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        stream.write_all(&[round; 8]).await.unwrap();
        assert_eq!(weft_tests::read_exact(&mut stream, 8).await, [round; 8]);
    }
    let quiet = std::time::Instant::now();
    assert!(read_to_end(&mut stream).await.is_empty());
    let idle = quiet.elapsed();
    println!("closed after {idle:?} of idleness (timeout 300 ms)");
    assert!(
        idle >= std::time::Duration::from_millis(290),
        "closed after {idle:?}"
    );
    host.stop().await;
}

/// componentize-py leaks the bytes of every write; the host fixes that as
/// it loads the component (host/src/sandbox/write_leak.rs). So the Python echo carries a gigabyte
/// on one connection, then a gigabyte over 100, under the default 64 MiB
/// cap, and its memory does not grow after warm-up: weft logs each growth
/// of a guest's memory at debug level.
#[tokio::test(flavor = "multi_thread")]
async fn the_python_echo_carries_gigabytes_in_flat_memory() {
    const GIGABYTE: usize = 1 << 30;
    let echo = guest("echo-py").display().to_string();
    let (mut weft, addrs) = WeftProcess::spawn_logging(
        &["serve", &format!("{echo}@tcp:0:interface=127.0.0.1")],
        1,
        "info,weft::sandbox::store=debug",
    )
    .await;
    assert!(echoes_intact(addrs[0], 64 << 20, 0).await, "warm-up");
    let warm = weft.memory_growths();
    assert!(
        echoes_intact(addrs[0], GIGABYTE, 1).await,
        "a gigabyte on one connection"
    );
    assert_eq!(
        echo_concurrently(addrs[0], 100, GIGABYTE / 100).await,
        100,
        "a gigabyte over 100 connections"
    );
    assert_eq!(
        weft.memory_growths(),
        warm,
        "the instance's memory grew after warm-up:\n{}",
        weft.printed().join("\n")
    );
    assert!(
        !weft.printed().iter().any(|line| line.contains("trap")),
        "{}",
        weft.printed().join("\n")
    );
    weft.signal(libc::SIGINT);
    weft.wait().await;
}
