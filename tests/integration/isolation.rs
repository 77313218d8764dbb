//! A guest that traps loses its instance and its connections; the service
//! starts a fresh instance for new connections, and other services never
//! notice.

use std::io::ErrorKind;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use weft::Limits;
use weft::limits::Isolation;
use weft_tests::{Host, connect, read_exact, read_to_end, read_until};

async fn ping(stream: &mut TcpStream) -> Vec<u8> {
    stream.write_all(b"ping\r\n").await.unwrap();
    read_until(stream, b"\r\n").await
}

async fn echo_round_trip(stream: &mut TcpStream, message: &[u8]) {
    stream.write_all(message).await.unwrap();
    assert_eq!(read_exact(stream, message.len()).await, message);
}

/// Whether the peer has neither closed nor sent anything yet.
fn still_open(stream: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(stream.try_read(&mut byte), Err(e) if e.kind() == ErrorKind::WouldBlock)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_panicking_guest_is_replaced_and_other_services_keep_answering() {
    let host = Host::start(&["hostile", "echo"]).await;
    let mut first = connect(host.addr("hostile")).await;
    assert_eq!(ping(&mut first).await, b"pong 1\r\n");
    let mut second = connect(host.addr("hostile")).await;
    assert_eq!(
        ping(&mut second).await,
        b"pong 2\r\n",
        "both connections share one instance"
    );
    let mut echo = connect(host.addr("echo")).await;
    echo_round_trip(&mut echo, b"before").await;

    first.write_all(b"panic\r\n").await.unwrap();
    assert_eq!(
        read_to_end(&mut first).await,
        b"",
        "the trapping connection is closed"
    );
    assert_eq!(
        read_to_end(&mut second).await,
        b"",
        "so is every connection of that instance"
    );

    echo_round_trip(&mut echo, b"after").await;
    let mut fresh = connect(host.addr("hostile")).await;
    assert_eq!(
        ping(&mut fresh).await,
        b"pong 1\r\n",
        "new connections get a fresh instance"
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_spinning_guest_is_stopped_at_its_deadline_while_others_answer() {
    let slow = Limits {
        deadline: Duration::from_secs(3),
        ..Limits::default()
    };
    let host = Host::start_with(vec![("hostile", slow), ("echo", Limits::default())]).await;
    let mut spinner = connect(host.addr("hostile")).await;
    let mut echo = connect(host.addr("echo")).await;
    spinner.write_all(b"spin\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    for round in 0..20u8 {
        echo_round_trip(&mut echo, &[round; 64]).await;
    }
    assert!(
        still_open(&spinner),
        "echo answered while the guest was still spinning"
    );
    assert_eq!(
        read_to_end(&mut spinner).await,
        b"",
        "the deadline stops the guest"
    );
    let mut fresh = connect(host.addr("hostile")).await;
    assert_eq!(ping(&mut fresh).await, b"pong 1\r\n");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn per_connection_isolation_confines_state_and_traps_to_one_connection() {
    let isolated = Limits {
        isolation: Isolation::Connection,
        ..Limits::default()
    };
    let host = Host::start_with(vec![("hostile", isolated)]).await;
    let mut calm = connect(host.addr("hostile")).await;
    let mut doomed = connect(host.addr("hostile")).await;
    assert_eq!(
        ping(&mut calm).await,
        b"pong 1\r\n",
        "each connection has its own instance"
    );
    assert_eq!(
        ping(&mut doomed).await,
        b"pong 1\r\n",
        "so nothing is shared"
    );
    doomed.write_all(b"panic\r\n").await.unwrap();
    assert_eq!(read_to_end(&mut doomed).await, b"");
    assert_eq!(
        ping(&mut calm).await,
        b"pong 1\r\n",
        "the other connection is untouched"
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guest_that_exits_is_treated_as_a_trap() {
    let host = Host::start(&["hostile"]).await;
    let mut stream = connect(host.addr("hostile")).await;
    stream.write_all(b"exit\r\n").await.unwrap();
    assert_eq!(read_to_end(&mut stream).await, b"");
    let mut fresh = connect(host.addr("hostile")).await;
    assert_eq!(ping(&mut fresh).await, b"pong 1\r\n");
    host.stop().await;
}

/// A connection to `addr` from the local address `from` (any of
/// 127.0.0.0/8 is this machine), so that a test can be several peers.
async fn connect_from(from: &str, addr: std::net::SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    weft_tests::within(socket.connect(addr)).await.unwrap()
}

/// With one instance per connection a trap costs only its connection, so
/// traps are counted per peer: the peer that keeps trapping is refused for
/// the restart window, and the service keeps serving everyone else (it is
/// not marked failed, as a shared instance's service would be).
#[tokio::test(flavor = "multi_thread")]
async fn a_peer_whose_connections_keep_trapping_is_refused_alone() {
    let isolated = Limits {
        isolation: Isolation::Connection,
        max_restarts: 3,
        restart_window: Duration::from_secs(60),
        ..Limits::default()
    };
    let host = Host::start_with(vec![("hostile", isolated)]).await;
    let addr = host.addr("hostile");
    let mut bystander = connect_from("127.0.0.1", addr).await;
    assert_eq!(ping(&mut bystander).await, b"pong 1\r\n");
    for _ in 0..3 {
        let mut attacker = connect_from("127.0.0.2", addr).await;
        attacker.write_all(b"panic\r\n").await.unwrap();
        assert_eq!(read_to_end(&mut attacker).await, b"");
    }
    let mut refused = connect_from("127.0.0.2", addr).await;
    assert!(
        weft_tests::closed_without_reply(&mut refused).await,
        "the peer is refused after its third trap"
    );
    assert_eq!(
        ping(&mut bystander).await,
        b"pong 1\r\n",
        "an open connection of another peer is untouched"
    );
    for _ in 0..3 {
        let mut fresh = connect_from("127.0.0.1", addr).await;
        assert_eq!(
            ping(&mut fresh).await,
            b"pong 1\r\n",
            "new connections of other peers are served"
        );
    }
    host.stop().await;
}
