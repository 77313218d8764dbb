//! `udp:` endpoints and datagram guests: the UDP echo guests against
//! Twisted's UDP echo byte for byte, under loopback load, and the limits
//! (size, rate, where a guest may send, deadline and traps), the refusals
//! and the metrics of a datagram service.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::process::Child;
use weft::{ConnectRule, ServiceSpec};
use weft_tests::{Host, WeftProcess, guest, noise, run_weft, within};

use crate::differential::reference;
use crate::ops::{admin_addr, scrape_when};

/// How long a test waits before concluding that no datagram will come.
const QUIET: Duration = Duration::from_millis(300);

/// A UDP client socket on 127.0.0.1.
struct Client(UdpSocket);

impl Client {
    async fn new() -> Client {
        Client(UdpSocket::bind("127.0.0.1:0").await.expect("a UDP socket"))
    }

    fn addr(&self) -> SocketAddr {
        self.0.local_addr().expect("bound")
    }

    async fn send(&self, to: SocketAddr, data: &[u8]) {
        self.0.send_to(data, to).await.expect("sent");
    }

    /// The next datagram, failing the test if none comes.
    async fn receive(&self) -> (Vec<u8>, SocketAddr) {
        let mut buffer = vec![0; 70_000];
        let (len, from) = within(self.0.recv_from(&mut buffer))
            .await
            .expect("received");
        buffer.truncate(len);
        (buffer, from)
    }

    /// The next datagram, if one comes within [`QUIET`].
    async fn maybe_receive(&self) -> Option<Vec<u8>> {
        let mut buffer = vec![0; 70_000];
        let (len, _) = tokio::time::timeout(QUIET, self.0.recv_from(&mut buffer))
            .await
            .ok()?
            .expect("received");
        buffer.truncate(len);
        Some(buffer)
    }

    /// Send `data` to `to` and return the reply as text.
    async fn ask(&self, to: SocketAddr, data: &str) -> String {
        self.send(to, data.as_bytes()).await;
        String::from_utf8(self.receive().await.0).expect("a text reply")
    }
}

/// The datagram guest `name` on `udp:0` of 127.0.0.1.
fn udp_spec(name: &str) -> ServiceSpec {
    let mut spec = weft_tests::spec(name);
    spec.endpoint = "udp:0:interface=127.0.0.1".parse().unwrap();
    spec
}

/// Twisted's UDP echo (`tests/reference/udp_echo.py`) on a free port,
/// answering.
async fn twisted_udp_echo() -> (Child, SocketAddr) {
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|socket| socket.local_addr())
        .expect("a free port")
        .port();
    let child = reference("udp_echo.py", &port.to_string(), &[]);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    // Not a probe on the port itself, which would hear its own datagram
    // (and keep Twisted from binding it).
    let probe = loop {
        let client = Client::new().await;
        if client.addr() != addr {
            break client;
        }
    };
    within(async {
        loop {
            probe.send(addr, b"ready?").await;
            if probe.maybe_receive().await.is_some() {
                break;
            }
        }
    })
    .await;
    (child, addr)
}

/// What two clients receive from an echo server for the same datagrams,
/// sent by turns and each answered before the next: which client got
/// what, in order.
async fn echo_transcript(server: SocketAddr) -> Vec<(usize, Vec<u8>)> {
    let clients = [Client::new().await, Client::new().await];
    let script: Vec<(usize, Vec<u8>)> = vec![
        (0, b"hello".to_vec()),
        (1, b"world\r\n".to_vec()),
        (0, Vec::new()),
        (1, b"\0\xff binary \x80".to_vec()),
        (0, noise(1000, 1)),
        (1, noise(8192, 2)),
        (0, b"last".to_vec()),
    ];
    let mut transcript = Vec::new();
    for (client, data) in &script {
        clients[*client].send(server, data).await;
        let (reply, from) = clients[*client].receive().await;
        assert_eq!(from, server, "the reply comes from the service's port");
        transcript.push((*client, reply));
    }
    assert_eq!(
        transcript, script,
        "every datagram comes back to its sender"
    );
    transcript
}

async fn udp_echo_matches_twisted_byte_for_byte(name: &str) {
    let (_twisted, twisted) = twisted_udp_echo().await;
    let expected = echo_transcript(twisted).await;
    let host = Host::start_specs(vec![udp_spec(name)]).await;
    assert_eq!(echo_transcript(host.addr(name)).await, expected);
    host.stop().await;
}

in_each_language!(udp_echo_matches_twisted_byte_for_byte: rust => "udp-echo", python => "udp-echo-py", wit_0_2_3 => "udp-echo-v0-2-3");

/// Clients each send their share of datagrams, a window at a time; every
/// one comes back, whole, to its sender.
async fn udp_echo_loses_nothing_under_loopback_load(name: &str) {
    const CLIENTS: usize = 8;
    const EACH: usize = 400;
    const WINDOW: usize = 16;
    let host = Host::start_specs(vec![udp_spec(name)]).await;
    let server = host.addr(name);
    let began = Instant::now();
    let mut clients = Vec::new();
    for id in 0..CLIENTS {
        clients.push(tokio::spawn(async move {
            let client = Client::new().await;
            let mut echoed = 0;
            for window in (0..EACH).step_by(WINDOW) {
                for n in window..window + WINDOW {
                    client.send(server, format!("{id}:{n}").as_bytes()).await;
                }
                for n in window..window + WINDOW {
                    let (reply, _) = client.receive().await;
                    assert_eq!(reply, format!("{id}:{n}").as_bytes());
                    echoed += 1;
                }
            }
            echoed
        }));
    }
    let mut echoed = 0;
    for client in clients {
        echoed += client.await.expect("the client finished");
    }
    assert_eq!(echoed, CLIENTS * EACH);
    let took = began.elapsed();
    println!(
        "{name}: {echoed} datagrams echoed in {took:?} ({:.0}/s)",
        echoed as f64 / took.as_secs_f64()
    );
    host.stop().await;
}

in_each_language!(udp_echo_loses_nothing_under_loopback_load: rust => "udp-echo", python => "udp-echo-py");

#[tokio::test(flavor = "multi_thread")]
async fn datagrams_over_the_size_or_the_rate_are_dropped() {
    let mut spec = udp_spec("datagrams");
    spec.limits.max_datagram = 100;
    spec.limits.datagram_rate = 20;
    let host = Host::start_specs(vec![spec]).await;
    let server = host.addr("datagrams");
    let client = Client::new().await;

    client.send(server, &[b'x'; 101]).await;
    assert_eq!(client.maybe_receive().await, None, "too large: dropped");
    client.send(server, &[b'y'; 100]).await;
    assert_eq!(client.receive().await.0, [b'y'; 100]);

    // A burst of twice the rate passes; the rest is dropped.
    for n in 0..60 {
        client.send(server, format!("burst {n}").as_bytes()).await;
    }
    let mut replies = 0;
    while client.maybe_receive().await.is_some() {
        replies += 1;
    }
    // 40 tokens less the one taken above, and what a slow machine refills
    // while the burst is sent and answered.
    assert!(
        (39..=50).contains(&replies),
        "{replies} of 60 came back at 20 a second"
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guest_sends_only_to_recent_senders_and_where_the_operator_allows() {
    let restricted = udp_spec("datagrams");
    let host = Host::start_specs(vec![restricted]).await;
    let server = host.addr("datagrams");
    let (asking, bystander) = (Client::new().await, Client::new().await);
    let port = bystander.addr().port();

    assert_eq!(
        asking.ask(server, &format!("send {port} hello")).await,
        "denied"
    );
    assert_eq!(bystander.maybe_receive().await, None);
    // Once it has sent the service a datagram, it may be answered.
    assert_eq!(bystander.ask(server, "hi").await, "hi");
    assert_eq!(
        asking.ask(server, &format!("send {port} hello")).await,
        "sent"
    );
    assert_eq!(bystander.receive().await.0, b"hello");
    assert_eq!(
        asking.ask(server, "send 9 no-such-host").await,
        "denied",
        "port 9 never sent anything"
    );
    host.stop().await;

    let mut allowed = udp_spec("datagrams");
    allowed.connect = vec!["127.0.0.1:*".parse::<ConnectRule>().unwrap()];
    let host = Host::start_specs(vec![allowed]).await;
    let server = host.addr("datagrams");
    let (asking, listener) = (Client::new().await, Client::new().await);
    let port = listener.addr().port();
    assert_eq!(
        asking.ask(server, &format!("send {port} ping")).await,
        "sent"
    );
    assert_eq!(listener.receive().await.0, b"ping");
    assert_eq!(
        asking.ask(server, "host").await,
        format!("('127.0.0.1', {})", server.port())
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trap_or_a_spin_retires_the_instance_and_the_next_datagram_gets_a_fresh_one() {
    let mut spec = udp_spec("datagrams");
    spec.limits.deadline = Duration::from_millis(100);
    let host = Host::start_specs(vec![spec]).await;
    let server = host.addr("datagrams");
    let client = Client::new().await;
    assert_eq!(client.ask(server, "one").await, "one");
    assert_eq!(client.ask(server, "count").await, "received 2 started 1");

    for fatal in ["panic", "spin"] {
        client.send(server, fatal.as_bytes()).await;
        assert_eq!(client.maybe_receive().await, None, "{fatal}: no reply");
        // Served again, by a fresh instance that ran its start-protocol.
        assert_eq!(client.ask(server, "count").await, "received 1 started 1");
    }
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guest_on_the_wrong_kind_of_endpoint_is_refused_with_a_clear_error() {
    let on = |name: &str, endpoint: &str| format!("{}@{endpoint}", guest(name).display());
    let cases = [
        (
            on("udp-echo", "tcp:0"),
            "is a datagram guest (it exports weft:protocol/datagram-handler): serve it on a `udp:` endpoint",
        ),
        (
            on("echo", "udp:0"),
            "serves connections (it exports weft:protocol/protocol), but `udp:port=0:interface=0.0.0.0` serves datagram guests",
        ),
        (
            format!("{},isolation=connection", on("udp-echo", "udp:0")),
            "isolation=connection needs connections",
        ),
        (
            on("udp-echo", "udp:0:backlog=5"),
            "unknown parameter `backlog`",
        ),
    ];
    for (service, message) in cases {
        let (status, stderr) = run_weft(&["serve", &service]).await;
        assert!(!status.success(), "{service}");
        assert!(stderr.contains(message), "{service}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn datagram_services_are_counted_and_told_to_stop() {
    let service = format!(
        "{}@udp:0:interface=127.0.0.1,max-datagram=100",
        guest("datagrams").display()
    );
    let (weft, addrs) = WeftProcess::spawn(
        &["serve", "--admin", "tcp:0:interface=127.0.0.1", &service],
        1,
    )
    .await;
    let admin = admin_addr(&weft);
    let client = Client::new().await;
    client.send(addrs[0], &[b'x'; 200]).await;
    assert_eq!(client.ask(addrs[0], "echo").await, "echo");
    let series =
        |result: &str| format!(r#"weft_datagrams_total{{service="datagrams",result="{result}"}}"#);
    let metrics = scrape_when(admin, &series("sent"), 1.0).await;
    assert_eq!(metrics.get(&series("received")), Some(&1.0));
    assert_eq!(metrics.get(&series("too_large")), Some(&1.0));
    assert_eq!(
        metrics.get(r#"weft_received_bytes_total{service="datagrams"}"#),
        Some(&4.0)
    );

    weft.signal(libc::SIGINT);
    let (status, stderr) = weft.wait().await;
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("datagrams: stop-protocol"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_hands_the_socket_to_the_new_version_and_stops_the_old() {
    let dir = weft_tests::scratch("udp-reload");
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("weft.toml");
    let write_config = |limits: &str| {
        let text = format!(
            "[[service]]\nname = \"udp\"\ncomponent = {:?}\nendpoint = \"udp:0:interface=127.0.0.1\"\nlimits = {{ {limits} }}\n",
            guest("datagrams").display().to_string()
        );
        std::fs::write(&config, text).unwrap();
    };
    write_config("");
    let (mut weft, addrs) = WeftProcess::spawn(&["--config", config.to_str().unwrap()], 1).await;
    let client = Client::new().await;
    assert_eq!(client.ask(addrs[0], "one").await, "one");
    assert_eq!(client.ask(addrs[0], "count").await, "received 2 started 1");

    write_config("max-datagram = \"100\"");
    weft.signal(libc::SIGHUP);
    let reloaded = weft.wait_for("reloaded: ").await;
    assert!(reloaded.ends_with("reloaded: udp reloaded"), "{reloaded}");
    // The old instance is stopped by its worker, maybe before the
    // reload is reported.
    let stopped = "datagrams: stop-protocol";
    if !weft.seen().iter().any(|line| line.contains(stopped)) {
        weft.wait_for(stopped).await;
    }
    // The same socket, a new instance, the new limit.
    assert_eq!(client.ask(addrs[0], "count").await, "received 1 started 1");
    client.send(addrs[0], &[b'x'; 200]).await;
    assert_eq!(client.maybe_receive().await, None);
    assert_eq!(client.ask(addrs[0], "count").await, "received 2 started 1");

    weft.signal(libc::SIGINT);
    assert!(weft.wait().await.0.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_rust_echo_prints_reach_the_log_as_each_call_ends() {
    // The SDK's println! holds a call's lines and writes them as the call
    // returns: no later datagram or stop is needed for them to show.
    let service = format!("{}@udp:0:interface=127.0.0.1", guest("udp-echo").display());
    let (mut weft, addrs) = WeftProcess::spawn(&["serve", &service], 1).await;
    let client = Client::new().await;
    for word in ["first", "second"] {
        assert_eq!(client.ask(addrs[0], word).await, word);
        let line = weft.wait_for(&format!("received \"{word}\"")).await;
        let from = format!("from ('127.0.0.1', {})", client.addr().port());
        assert!(
            line.contains(&from) && line.contains(r#"stream="stdout""#),
            "{line}"
        );
    }
    weft.signal(libc::SIGINT);
    assert!(weft.wait().await.0.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_python_echo_prints_reach_the_log_by_a_later_datagram_or_the_stop() {
    // stdout is block-buffered; a datagram service's world has no timers,
    // so what it holds is written by the first datagram 50 ms after the
    // first line held, or when the service stops.
    let service = format!(
        "{}@udp:0:interface=127.0.0.1",
        guest("udp-echo-py").display()
    );
    let (mut weft, addrs) = WeftProcess::spawn(&["serve", &service], 1).await;
    let client = Client::new().await;
    assert_eq!(client.ask(addrs[0], "first").await, "first");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(client.ask(addrs[0], "second").await, "second");
    let first = weft.wait_for("received b'first'").await;
    let port = client.addr().port();
    assert!(
        first.contains(&format!("from ('127.0.0.1', {port})")) && first.contains("stdout"),
        "{first}"
    );
    weft.signal(libc::SIGINT);
    let (status, stderr) = weft.wait().await;
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("received b'second'"), "{stderr}");
}
