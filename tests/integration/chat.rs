//! The chat room sends every line to every client, sender included,
//! prefixed with the address the sender connected to.

use std::net::SocketAddr;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use weft_tests::{Host, connect, read_to_end, read_until};

fn prefix(addr: SocketAddr) -> String {
    format!(
        "<IPv4Address(type='TCP', host='127.0.0.1', port={})> ",
        addr.port()
    )
}

/// Connect `n` clients, one at a time. A TCP connect returns before the
/// host has built the protocol, so each newcomer says hello and waits to
/// hear itself: then it is in the room, and everyone present heard it too.
async fn join(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut clients: Vec<TcpStream> = Vec::new();
    for index in 0..n {
        clients.push(connect(addr).await);
        let hello = format!("hello from {index}\r\n");
        clients[index].write_all(hello.as_bytes()).await.unwrap();
        let heard = format!("{}{hello}", prefix(addr));
        for client in &mut clients {
            assert_eq!(read_until(client, b"\r\n").await, heard.as_bytes());
        }
    }
    clients
}

async fn a_line_reaches_every_client_including_the_sender(guest: &str) {
    let host = Host::start(&[guest]).await;
    let addr = host.addr(guest);
    let mut clients = join(addr, 3).await;
    clients[0].write_all(b"hello world\r\n").await.unwrap();
    let expected = format!("{}hello world\r\n", prefix(addr));
    for client in &mut clients {
        assert_eq!(read_until(client, b"\r\n").await, expected.as_bytes());
    }
    host.stop().await;
}

async fn lines_keep_their_order_and_only_crlf_ends_a_line(guest: &str) {
    let host = Host::start(&[guest]).await;
    let addr = host.addr(guest);
    let mut clients = join(addr, 2).await;
    // Split across writes, a bare \n inside a line, an empty line.
    for piece in [&b"one\r"[..], b"\ntw", b"o\nstill two\r\n\r\nthree\r\n"] {
        clients[1].write_all(piece).await.unwrap();
    }
    let p = prefix(addr);
    let expected = format!("{p}one\r\n{p}two\nstill two\r\n{p}\r\n{p}three\r\n");
    for client in &mut clients {
        assert_eq!(
            String::from_utf8(read_until(client, b"three\r\n").await).unwrap(),
            expected
        );
    }
    host.stop().await;
}

async fn a_client_that_leaves_no_longer_receives_and_the_rest_carry_on(guest: &str) {
    let host = Host::start(&[guest]).await;
    let addr = host.addr(guest);
    let mut clients = join(addr, 3).await;
    let leaver = clients.remove(1);
    drop(leaver);
    // Twisted removes the client in connectionLost; broadcasting to the
    // rest keeps working and never writes to the departed one.
    clients[0].write_all(b"still here?\r\n").await.unwrap();
    let expected = format!("{}still here?\r\n", prefix(addr));
    for client in &mut clients {
        assert_eq!(read_until(client, b"\r\n").await, expected.as_bytes());
    }
    host.stop().await;
}

async fn an_over_long_line_closes_only_that_connection(guest: &str) {
    let host = Host::start(&[guest]).await;
    let addr = host.addr(guest);
    let mut clients = join(addr, 3).await;
    let mut long = vec![b'x'; 16_385];
    long.extend_from_slice(b"\r\n");
    clients[2].write_all(b"last words\r\n").await.unwrap();
    clients[2].write_all(&long).await.unwrap();
    // The offender gets what was broadcast before, then EOF.
    let expected = format!("{}last words\r\n", prefix(addr));
    assert_eq!(read_to_end(&mut clients[2]).await, expected.as_bytes());
    // A line of exactly 16384 bytes is fine for the others.
    let mut longest = vec![b'y'; 16_384];
    longest.extend_from_slice(b"\r\n");
    clients[0].write_all(&longest).await.unwrap();
    let expected_longest = [prefix(addr).as_bytes(), &longest].concat();
    for client in &mut clients[..2] {
        assert_eq!(
            read_until(client, b"last words\r\n").await,
            expected.as_bytes()
        );
        assert_eq!(read_until(client, b"y\r\n").await, expected_longest);
    }
    host.stop().await;
}

in_each_language!(a_line_reaches_every_client_including_the_sender: rust => "chat", python => "chat-py", js => "chat-js");
in_each_language!(lines_keep_their_order_and_only_crlf_ends_a_line: rust => "chat", python => "chat-py", js => "chat-js");
in_each_language!(a_client_that_leaves_no_longer_receives_and_the_rest_carry_on: rust => "chat", python => "chat-py", js => "chat-js");
in_each_language!(an_over_long_line_closes_only_that_connection: rust => "chat", python => "chat-py", js => "chat-js");

/// A 1 MB paste into a room of 1000 under the default limits: a million
/// and more deliveries per 64 KiB read, far past what one call may do in
/// its deadline. The SDK's line receiver spreads the work over many calls
/// (pausing the sender meanwhile) and sends each client's share of a call
/// as one write, so every line reaches every client, in order, and the
/// instance is never retired.
#[tokio::test(flavor = "multi_thread")]
async fn a_1_mb_paste_into_a_room_of_1000_reaches_everyone_in_order() {
    paste_into_a_room("chat", 1000, 17_000, weft::Limits::default()).await;
}

/// The same for the Python chat under the default limits: each of its
/// writes once leaked its bytes (componentize-py's, fixed as the host loads
/// the component, host/src/sandbox/write_leak.rs), and 3000 lines to 100 clients take
/// seconds of Python per read, against a 100 ms deadline, without the
/// line receiver's budget.
#[tokio::test(flavor = "multi_thread")]
async fn a_paste_into_a_python_room_is_spread_over_calls_too() {
    paste_into_a_room("chat-py", 100, 3000, weft::Limits::default()).await;
}

/// 40 clients each send 1000 lines as fast as they can, under the default
/// limits: 1.6 million deliveries. Every client hears every line, each
/// sender's in the order sent, and all in the same order, as from one
/// Twisted reactor.
async fn forty_clients_talking_at_once_all_hear_every_line_in_order(guest: &str) {
    talking_at_once(guest, 40, 1000).await;
}

in_each_language!(forty_clients_talking_at_once_all_hear_every_line_in_order: rust => "chat", python => "chat-py");

/// The same for the JavaScript chat, in a room of 10 (it takes about 25 us
/// a delivery, so 1.6 million would take the test suite a minute): one
/// read of about 1000 lines makes 10,000 deliveries, more than one call can
/// do within its deadline, so it has to hand them over across calls too.
#[tokio::test(flavor = "multi_thread")]
async fn ten_clients_talking_at_once_all_hear_every_line_in_order_in_javascript() {
    talking_at_once("chat-js", 10, 1000).await;
}

/// `CLIENTS` join the room of `guest` and each sends `LINES` lines at once.
#[allow(non_snake_case)]
async fn talking_at_once(guest: &str, CLIENTS: usize, LINES: usize) {
    let _heavy = weft_tests::exclusive().await;
    let host = Host::start(&[guest]).await;
    let addr = host.addr(guest);
    let clients = join(addr, CLIENTS).await;
    let started = std::time::Instant::now();
    let mut hearing = Vec::new();
    for (sender, client) in clients.into_iter().enumerate() {
        let lines: String = (0..LINES)
            .map(|n| format!("from {sender:02} line {n:04}\r\n"))
            .collect();
        // Write and read at once, and keep the connection open until the
        // last line is heard: the chat closes a half-closed connection.
        hearing.push(tokio::spawn(async move {
            let (reader, mut writer) = client.into_split();
            let (written, order) = tokio::join!(
                writer.write_all(lines.as_bytes()),
                hear_every_line(reader, CLIENTS, LINES)
            );
            written.unwrap();
            order
        }));
    }
    let mut heard = Vec::new();
    for client in hearing {
        let order = tokio::time::timeout(std::time::Duration::from_secs(240), client)
            .await
            .expect("every client heard every line within 4 minutes")
            .unwrap();
        heard.push(order);
    }
    assert!(
        heard.iter().all(|order| *order == heard[0]),
        "every client heard the lines in the same order"
    );
    println!(
        "{guest}: {CLIENTS} clients x {LINES} lines: {} deliveries in {:?}",
        CLIENTS * CLIENTS * LINES,
        started.elapsed()
    );
    host.stop().await;
}

/// Read until every sender's `lines` lines have arrived, checking that
/// each sender's come in order; returns the senders in the order heard.
async fn hear_every_line(
    reader: tokio::net::tcp::OwnedReadHalf,
    senders: usize,
    lines: usize,
) -> Vec<u8> {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut reader = BufReader::with_capacity(64 * 1024, reader);
    let (mut line, mut next, mut order) = (Vec::new(), vec![0; senders], Vec::new());
    while order.len() < senders * lines {
        line.clear();
        if reader.read_until(b'\n', &mut line).await.unwrap() == 0 {
            panic!("the connection closed after {} lines", order.len());
        }
        let text = std::str::from_utf8(&line).unwrap();
        let words: Vec<&str> = text
            .rsplit("> from ")
            .next()
            .unwrap()
            .split_whitespace()
            .collect();
        let [sender, "line", n] = words[..] else {
            panic!("not a chat line: {text:?}");
        };
        let (sender, n): (usize, usize) = (sender.parse().unwrap(), n.parse().unwrap());
        assert_eq!(n, next[sender], "sender {sender}'s lines out of order");
        next[sender] += 1;
        order.push(sender as u8);
    }
    order
}

/// `CLIENTS` join the room of `guest`; one pastes `LINES` lines of 60
/// bytes; every client must hear every line, in order.
#[allow(non_snake_case)]
async fn paste_into_a_room(guest: &str, CLIENTS: usize, LINES: usize, limits: weft::Limits) {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let _heavy = weft_tests::exclusive().await;
    weft_tests::raise_file_limit();
    let host = Host::start_with(vec![(guest, limits)]).await;
    let addr = host.addr(guest);
    // The first client is in the room once it hears its own hello; every
    // other one, once the first hears its hello. (Connections made at once
    // may have their protocols built in another order.)
    let mut first = BufReader::new(connect(addr).await);
    first
        .get_mut()
        .write_all(b"hello from 0\r\n")
        .await
        .unwrap();
    let mut line = Vec::new();
    weft_tests::within(first.read_until(b'\n', &mut line))
        .await
        .unwrap();
    let mut others = Vec::new();
    for index in 1..CLIENTS {
        let mut client = connect(addr).await;
        client
            .write_all(format!("hello from {index}\r\n").as_bytes())
            .await
            .unwrap();
        others.push(client);
    }
    for _ in 1..CLIENTS {
        line.clear();
        weft_tests::within(first.read_until(b'\n', &mut line))
            .await
            .unwrap();
    }
    let (first_reader, mut paster) = first.into_inner().into_split();
    let mut readers = vec![tokio::spawn(read_paste(first_reader, LINES))];
    for client in others {
        readers.push(tokio::spawn(async move {
            let (reader, _writer) = client.into_split();
            read_paste(reader, LINES).await
        }));
    }
    let paste: Vec<u8> = (0..LINES)
        .flat_map(|i| format!("paste {i:06} {}\r\n", "x".repeat(45)).into_bytes())
        .collect();
    assert_eq!(paste.len(), LINES * 60);
    let started = std::time::Instant::now();
    paster.write_all(&paste).await.unwrap();
    for reader in readers {
        tokio::time::timeout(std::time::Duration::from_secs(240), reader)
            .await
            .expect("every client heard the whole paste within 4 minutes")
            .unwrap();
    }
    println!(
        "{guest}: {} KB paste into a room of {CLIENTS}: {} deliveries in {:?}",
        paste.len() / 1000,
        CLIENTS * LINES,
        started.elapsed()
    );
    host.stop().await;
}

/// Read until `lines` pasted lines have arrived, checking their order.
async fn read_paste(reader: tokio::net::tcp::OwnedReadHalf, lines: usize) {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut reader = BufReader::with_capacity(64 * 1024, reader);
    let (mut line, mut next) = (Vec::new(), 0usize);
    while next < lines {
        line.clear();
        if reader.read_until(b'\n', &mut line).await.unwrap() == 0 {
            panic!("the connection closed after {next} of {lines} pasted lines");
        }
        if let Some(at) = line.windows(8).position(|w| w == b"> paste ") {
            let number = std::str::from_utf8(&line[at + 8..at + 14]).unwrap();
            assert_eq!(number.parse::<usize>().unwrap(), next, "out of order");
            next += 1;
        }
    }
}
