//! The echo guest returns every byte, in order, on every connection.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weft_tests::{Host, connect, noise, read_exact, read_to_end, within};

async fn echoes_one_mebibyte_on_each_of_100_concurrent_connections(guest: &str) {
    const CONNECTIONS: u64 = 100;
    const PAYLOAD: usize = 1024 * 1024;
    let host = Host::start(&[guest]).await;
    let addr = host.addr(guest);
    let clients = (0..CONNECTIONS).map(|seed| {
        tokio::spawn(async move {
            let sent = noise(PAYLOAD, seed);
            let (mut reader, mut writer) = connect(addr).await.into_split();
            let to_send = sent.clone();
            // Write and read at once: echo would stall on full buffers otherwise.
            let writing = tokio::spawn(async move {
                for chunk in to_send.chunks(7919) {
                    writer.write_all(chunk).await.expect("writes");
                }
                writer
            });
            let mut received = vec![0; PAYLOAD];
            within(reader.read_exact(&mut received))
                .await
                .expect("reads the echo");
            let _writer = writing.await.expect("the writer finishes");
            received == sent
        })
    });
    let mut intact = 0;
    for client in clients.collect::<Vec<_>>() {
        intact += u64::from(client.await.expect("client task"));
    }
    assert_eq!(
        intact, CONNECTIONS,
        "every connection got its own bytes back, in order"
    );
    host.stop().await;
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

// Not the Python echo yet: componentize-py 0.25.1 leaks every `list<u8>` a
// guest passes to an import, so its writes of 100 MiB outgrow the 64 MiB
// cap (README, "Writing a guest in Python").
in_each_language!(echoes_one_mebibyte_on_each_of_100_concurrent_connections: rust => "echo", c => "echo-c");
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
