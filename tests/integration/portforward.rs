//! The `portforward` guests (Twisted's portforward) in front of a real
//! backend: bytes both ways, a refused backend, a half-close passed on
//! (which Twisted's proxy does not do), flow control under a slow reader
//! with the weft process's memory bounded, and the Rust guest's bytes
//! relayed by the host with no call into the guest, nor idle timeouts.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use weft_tests::{
    Host, WeftProcess, closed_without_reply, connect, echo_backend, exclusive, guest, noise,
    read_exact, read_to_end, spec, within,
};

use crate::ops::{admin_addr, scrape};

const GREETING: &[u8] = b"hello from the backend\r\n";

async fn proxy(guest: &str, backend: SocketAddr) -> Host {
    let mut spec = spec(guest);
    spec.connect = vec![format!("127.0.0.1:{}", backend.port()).parse().unwrap()];
    spec.config = vec![("backend".into(), backend.to_string())];
    Host::start_specs(vec![spec]).await
}

async fn relays_many_connections_both_ways(guest: &str) {
    let (backend, _serving) = echo_backend().await;
    let host = proxy(guest, backend).await;
    let mut clients = Vec::new();
    for _ in 0..20 {
        let mut client = connect(host.addr(guest)).await;
        assert_eq!(read_exact(&mut client, GREETING.len()).await, GREETING);
        clients.push(client);
    }
    for (index, client) in clients.iter_mut().enumerate() {
        let message = noise(10_000 + index, index as u64);
        client.write_all(&message).await.unwrap();
        assert_eq!(read_exact(client, message.len()).await, message);
    }
    host.stop().await;
}

async fn a_refused_backend_closes_the_client(guest: &str) {
    let refused = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    };
    let host = proxy(guest, refused).await;
    let mut client = connect(host.addr(guest)).await;
    assert!(closed_without_reply(&mut client).await);
    host.stop().await;
}

async fn a_half_close_is_passed_on_and_everything_comes_back(guest: &str) {
    let (backend, _serving) = echo_backend().await;
    let host = proxy(guest, backend).await;
    let client = connect(host.addr(guest)).await;
    let (mut reader, mut writer) = client.into_split();
    let sent = noise(1 << 20, 3);
    let sending = sent.clone();
    let writing = tokio::spawn(async move {
        writer.write_all(&sending).await.unwrap();
        // Our end of input: the proxy must pass it on, not close.
        writer.shutdown().await.unwrap();
        writer
    });
    let mut received = Vec::new();
    within(reader.read_to_end(&mut received)).await.unwrap();
    let _writer = writing.await.unwrap();
    assert_eq!(&received[..GREETING.len()], GREETING);
    assert!(
        received[GREETING.len()..] == sent[..],
        "{} of {} bytes came back",
        received.len() - GREETING.len(),
        sent.len()
    );
    host.stop().await;
}

in_each_language!(relays_many_connections_both_ways: rust => "portforward", python => "portforward-py");
in_each_language!(a_refused_backend_closes_the_client: rust => "portforward", python => "portforward-py");
// The Python guest is Twisted's own ProxyFactory, which closes both sides
// on a half-close, as the differential test holds it to.
in_each_language!(a_half_close_is_passed_on_and_everything_comes_back: rust => "portforward");

/// The Rust guest splices each client and its backend together
/// (`splice_to`), so the host relays their bytes: a hundred exchanges
/// make no `data-received` call, and every byte is counted both ways.
#[tokio::test(flavor = "multi_thread")]
async fn the_rust_guest_has_the_host_relay_the_bytes_with_no_call() {
    let (backend, _serving) = echo_backend().await;
    let service = format!(
        "{}@tcp:0:interface=127.0.0.1,connect=127.0.0.1:{},config.backend={backend}",
        guest("portforward").display(),
        backend.port()
    );
    let admin = "tcp:0:interface=127.0.0.1";
    let (weft, addrs) = WeftProcess::spawn(&["serve", "--admin", admin, &service], 1).await;
    let descriptors = weft.open_files();
    let mut client = connect(addrs[0]).await;
    assert_eq!(read_exact(&mut client, GREETING.len()).await, GREETING);
    let mut relayed = GREETING.len();
    for round in 0..100 {
        let message = noise(100 + round, round as u64);
        client.write_all(&message).await.unwrap();
        assert_eq!(read_exact(&mut client, message.len()).await, message);
        relayed += 2 * message.len();
    }
    let metrics = scrape(admin_addr(&weft)).await;
    let series = |name: &str| metrics[&format!(r#"{name}{{service="portforward"}}"#)];
    let calls = |export: &str| {
        metrics[&format!(
            r#"weft_guest_call_duration_seconds_count{{service="portforward",export="{export}"}}"#
        )]
    };
    assert_eq!(calls("data-received"), 0.0, "calls for relayed bytes");
    // The client's and the backend's connections, each made once.
    assert_eq!(calls("constructor"), 2.0);
    // Read from the client and the backend, and written to both.
    assert_eq!(series("weft_received_bytes_total"), relayed as f64);
    assert_eq!(series("weft_sent_bytes_total"), relayed as f64);
    // Each side's socket, and the second handle on it the host sends
    // spliced bytes through, are closed with the connection.
    drop(client);
    within(async {
        while weft.open_files() != descriptors {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    weft.signal(libc::SIGINT);
    weft.wait().await;
}

/// A download through the spliced proxy, the client sending nothing: the
/// host writes the backend's bytes to the client's socket from the
/// backend's side, and that counts as the client connection's traffic, so
/// its idle timeout does not cut a transfer that never pauses that long.
#[tokio::test(flavor = "multi_thread")]
async fn spliced_output_keeps_a_connection_out_of_its_idle_timeout() {
    const CHUNKS: usize = 12;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = listener.local_addr().unwrap();
    let streaming = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        for index in 0..CHUNKS {
            stream.write_all(&noise(1000, index as u64)).await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut spec = spec("portforward");
    spec.connect = vec![format!("127.0.0.1:{}", backend.port()).parse().unwrap()];
    spec.config = vec![("backend".into(), backend.to_string())];
    spec.limits.idle_timeout = Some(Duration::from_millis(400));
    let host = Host::start_specs(vec![spec]).await;
    let mut client = connect(host.addr("portforward")).await;
    let expected: Vec<u8> = (0..CHUNKS).flat_map(|i| noise(1000, i as u64)).collect();
    // 1.2 s of output, never 400 ms apart; then the backend closes.
    let received = read_to_end(&mut client).await;
    assert_eq!(received.len(), expected.len(), "bytes before the close");
    assert!(received == expected, "the bytes were changed");
    streaming.await.unwrap();
    host.stop().await;
}

/// 100 MB each way through the proxy while each receiver reads slowly:
/// every byte arrives in order and weft's memory stays bounded, because
/// each side stops reading while the other is backed up.
#[tokio::test(flavor = "multi_thread")]
async fn flow_control_bounds_memory_with_slow_readers_both_ways() {
    const CHUNKS: usize = 100;
    let _heavy = exclusive().await;
    let (to_backend_chunk, to_client_chunk) = (noise(1 << 20, 13), noise(1 << 20, 11));
    // The backend sends 100 MB and reads what it is sent, slowly.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = listener.local_addr().unwrap();
    let chunk = to_client_chunk.clone();
    let backend_side = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let (reader, writer) = stream.into_split();
        let sending = tokio::spawn(send_chunks(writer, chunk, CHUNKS));
        let received = slow_read(reader).await;
        sending.await.unwrap();
        received
    });
    let service = format!(
        "{}@tcp:0:interface=127.0.0.1,connect=127.0.0.1:{},config.backend={backend}",
        guest("portforward").display(),
        backend.port()
    );
    let (weft, addrs) = WeftProcess::spawn(&["serve", &service], 1).await;
    let baseline = weft.memory_kib("VmRSS");
    let (reader, writer) = connect(addrs[0]).await.into_split();
    let started = Instant::now();
    let sending = tokio::spawn(send_chunks(writer, to_backend_chunk.clone(), CHUNKS));
    let to_client = within(slow_read(reader)).await;
    within(sending).await.unwrap();
    let to_backend = within(backend_side).await.unwrap();
    let took = started.elapsed();
    let high_water = weft.memory_kib("VmHWM");
    assert_eq!(
        to_client,
        digest(&to_client_chunk, CHUNKS),
        "what reached the client"
    );
    assert_eq!(
        to_backend,
        digest(&to_backend_chunk, CHUNKS),
        "what reached the backend"
    );
    println!(
        "100 MB each way through portforward with slow readers in {took:?}; \
         weft RSS {baseline} KiB before, high-water {high_water} KiB"
    );
    assert!(
        high_water < baseline + 64 * 1024,
        "weft grew from {baseline} KiB to {high_water} KiB"
    );
    weft.signal(libc::SIGINT);
    weft.wait().await;
}

async fn send_chunks(mut writer: tokio::net::tcp::OwnedWriteHalf, chunk: Vec<u8>, count: usize) {
    for _ in 0..count {
        writer.write_all(&chunk).await.unwrap();
    }
    writer.shutdown().await.unwrap();
}

/// Bytes read and their digest, reading until the end at about 200 MB/s:
/// slower than loopback, so the sender is held back.
async fn slow_read(mut reader: tokio::net::tcp::OwnedReadHalf) -> (usize, u64) {
    let mut buffer = vec![0; 64 * 1024];
    let (mut total, mut hash) = (0, FNV_OFFSET);
    loop {
        let read = reader.read(&mut buffer).await.unwrap();
        if read == 0 {
            return (total, hash);
        }
        hash = fnv(hash, &buffer[..read]);
        let before = total;
        total += read;
        if total >> 20 != before >> 20 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// What `slow_read` returns for `chunk` sent `count` times.
fn digest(chunk: &[u8], count: usize) -> (usize, u64) {
    let hash = (0..count).fold(FNV_OFFSET, |hash, _| fnv(hash, chunk));
    (chunk.len() * count, hash)
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a, byte by byte, so that how reads split the stream does not matter.
fn fnv(mut hash: u64, bytes: &[u8]) -> u64 {
    for byte in bytes {
        hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
    }
    hash
}
