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
