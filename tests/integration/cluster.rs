//! weft behind a real HAProxy: three processes of two workers on one Redis
//! are one chat room and one counter, each client known by the PROXY
//! header (v2, and v1 on one frontend); a process told to stop leaves the
//! rotation before it stops accepting, and nothing is refused or lost.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use weft_tests::{
    Haproxy, RedisServer, WeftProcess, closed_without_reply, connect, exchange, guest, line,
    read_response, read_to_end, within,
};

use crate::messaging::{everyone_hears_everyone, join, prefix};
use crate::ops::{admin_addr, scrape, scrape_when, series};
use crate::transport::ask;

/// The configuration under test, which docs/cluster.md quotes.
const CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/haproxy/cluster.cfg");

/// The frontend variables of [`CONFIG`], each given a free address.
const FRONTENDS: [&str; 4] = [
    "CHAT_FRONTEND",
    "COUNTER_FRONTEND",
    "CONTROL_FRONTEND",
    "CONTROL_V1_FRONTEND",
];

/// How long a stopping weft goes on accepting after /readyz turns 503:
/// ten times what HAProxy's checks take to notice.
const DRAIN_DELAY: &str = "2s";

/// How long it then waits for its connections to end by themselves.
const SHUTDOWN_GRACE: &str = "2s";

/// How often the counter is asked while a weft drains.
const REQUEST_INTERVAL: Duration = Duration::from_millis(20);

/// One weft process of the cluster: the chat room, the counter and the
/// control guest, each on a `haproxy:` endpoint with two workers.
struct Weft {
    process: WeftProcess,
    chat: SocketAddr,
    counter: SocketAddr,
    control: SocketAddr,
    admin: SocketAddr,
}

impl Weft {
    async fn start(redis_port: u16) -> Weft {
        let redis = format!("redis://127.0.0.1:{redis_port}/0");
        let endpoint = "haproxy:tcp:0:interface=127.0.0.1,workers=2,proxy-from=127.0.0.1/32";
        let served =
            |name: &str, options: &str| format!("{}@{endpoint}{options}", guest(name).display());
        let chat = served(
            "chat_room",
            &format!(",isolation=connection,pubsub={redis}"),
        );
        let counter = served("kv_counter", &format!(",kv={redis}"));
        let control = served("control", "");
        let (process, addrs) = WeftProcess::spawn(
            &[
                "serve",
                "--admin",
                "tcp:0:interface=127.0.0.1",
                "--drain-delay",
                DRAIN_DELAY,
                "--shutdown-grace",
                SHUTDOWN_GRACE,
                &chat,
                &counter,
                &control,
            ],
            3,
        )
        .await;
        let admin = admin_addr(&process);
        Weft {
            process,
            chat: addrs[0],
            counter: addrs[1],
            control: addrs[2],
            admin,
        }
    }

    /// Connections open on its chat room, from its own metrics.
    async fn chat_clients(&self) -> usize {
        let metrics = scrape(self.admin).await;
        series(&metrics, "weft_connections_active{service=\"chat_room\"}") as usize
    }

    /// Connections its service `service` has accepted so far.
    async fn accepted(&self, service: &str) -> usize {
        let metrics = scrape(self.admin).await;
        let name = format!("weft_connections_accepted_total{{service=\"{service}\"}}");
        series(&metrics, &name) as usize
    }
}

/// `GET /readyz` on the admin endpoint: the status code and the body.
async fn readyz(admin: SocketAddr) -> (u16, String) {
    let response = exchange(admin, b"GET /readyz HTTP/1.0\r\n\r\n").await;
    let response = String::from_utf8(response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    let code = head.split_whitespace().nth(1).expect("a status code");
    (code.parse().unwrap(), body.to_owned())
}

/// Poll `/readyz` until it answers `code`.
async fn wait_for_readyz(admin: SocketAddr, code: u16) {
    within(async {
        while readyz(admin).await.0 != code {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// How the guests print an address, as Twisted's `IPv4Address` does.
fn ipv4(addr: SocketAddr) -> String {
    format!(
        "IPv4Address(type='TCP', host='{}', port={})",
        addr.ip(),
        addr.port()
    )
}

/// The variables of [`CONFIG`] that name the wefts.
fn servers(wefts: &[Weft]) -> Vec<(String, String)> {
    let mut variables = Vec::new();
    for (n, weft) in wefts.iter().enumerate() {
        let n = n + 1;
        variables.push((format!("WEFT{n}_CHAT"), weft.chat.to_string()));
        variables.push((format!("WEFT{n}_COUNTER"), weft.counter.to_string()));
        variables.push((format!("WEFT{n}_CONTROL"), weft.control.to_string()));
        variables.push((format!("WEFT{n}_ADMIN_PORT"), weft.admin.port().to_string()));
    }
    variables
}

/// `GET /` on the counter through `addr`, on a connection of its own; the
/// number it answers. Panics, saying what happened, on anything but a
/// count.
async fn count(addr: SocketAddr) -> u64 {
    let mut stream = connect(addr).await;
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("the request is sent");
    let response = String::from_utf8(read_response(&mut stream, false).await).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{response}");
    body.strip_prefix("I am request #")
        .and_then(|n| n.trim_end().parse().ok())
        .unwrap_or_else(|| panic!("a count, got {response:?}"))
}

/// Ask the counter through `addr`, every [`REQUEST_INTERVAL`], until
/// `stop` is set, checking that the counts go on from `next` without a
/// gap or a repeat; returns how many were asked.
async fn count_until(addr: SocketAddr, mut next: u64, stop: Arc<AtomicBool>) -> u64 {
    let first = next;
    let mut interval = tokio::time::interval(REQUEST_INTERVAL);
    while !stop.load(Ordering::Relaxed) {
        interval.tick().await;
        assert_eq!(count(addr).await, next, "the count skipped or repeated");
        next += 1;
    }
    next - first
}

/// How many lines `cI says K` (I below `senders`, K below `lines`) with
/// `prefix` are in `heard`, checking that each sender's are in order;
/// other lines are left aside.
fn heard_in_order(heard: &str, prefix: &str, senders: usize, lines: usize) -> usize {
    let mut next = vec![0; senders];
    for got in heard.split("\r\n") {
        let Some(said) = got.strip_prefix(prefix) else {
            continue;
        };
        let Some((sender, k)) = said.split_once(" says ") else {
            continue;
        };
        let sender: usize = sender[1..].parse().unwrap();
        let k: usize = k.parse().unwrap();
        assert_eq!(k, next[sender], "c{sender}'s lines out of order: {got:?}");
        next[sender] += 1;
    }
    assert!(next.iter().all(|&n| n <= lines), "{next:?}");
    next.iter().sum()
}

/// Three wefts behind HAProxy, as docs/cluster.md describes: the PROXY
/// header gives each guest the client's address; 60 chat clients spread
/// evenly are one room; the counter counts once across processes; and a
/// SIGTERMed weft is taken out by HAProxy's check of /readyz before it
/// stops accepting, so that no new connection fails while it drains, and
/// its clients, closed at the end of the drain, come back through HAProxy
/// to the others without a line lost.
#[tokio::test(flavor = "multi_thread")]
async fn three_wefts_behind_haproxy_are_one_service_and_one_drains_without_a_refusal() {
    let _heavy = weft_tests::exclusive().await;
    let redis = RedisServer::start().await;
    let mut wefts = Vec::new();
    for _ in 0..3 {
        wefts.push(Weft::start(redis.port).await);
    }
    for weft in &wefts {
        wait_for_readyz(weft.admin, 200).await;
        assert_eq!(readyz(weft.admin).await, (200, "ready\n".to_owned()));
        let metrics = scrape(weft.admin).await;
        assert_eq!(series(&metrics, "weft_ready"), 1.0);
    }
    let haproxy = Haproxy::start(Path::new(CONFIG), &servers(&wefts), &FRONTENDS).await;
    for server in ["weft1", "weft2", "weft3"] {
        haproxy.wait_for_status("chat", server, "UP").await;
    }

    // The PROXY header, v2 and v1: each guest sees the client's own
    // address as its peer and HAProxy's frontend as its host, on every
    // weft in turn.
    for frontend in ["CONTROL_FRONTEND", "CONTROL_V1_FRONTEND"] {
        let addr = haproxy.frontend(frontend);
        for _ in 0..3 {
            let mut client = connect(addr).await;
            let own = client.local_addr().unwrap();
            assert_eq!(ask(&mut client, "peer").await, ipv4(own), "{frontend}");
            assert_eq!(ask(&mut client, "host").await, ipv4(addr), "{frontend}");
        }
    }
    for weft in &wefts {
        assert_eq!(weft.accepted("control").await, 2, "one of each version");
    }

    // 60 chat clients, 20 on each weft (as each weft counts them), one
    // room; each line's prefix is the address the clients dialed.
    let chat = haproxy.frontend("CHAT_FRONTEND");
    assert!(wefts.iter().all(|weft| weft.chat.port() != chat.port()));
    let mut room: Vec<(TcpStream, u16)> = Vec::new();
    let mut landed = Vec::new();
    let mut on = [0; 3];
    for n in 0..60 {
        room.push((join(chat, &format!("c{n}")).await, chat.port()));
        let mut now = [0; 3];
        for (i, weft) in wefts.iter().enumerate() {
            now[i] = weft.chat_clients().await;
        }
        let gained = (0..3)
            .find(|&i| now[i] == on[i] + 1)
            .unwrap_or_else(|| panic!("client {n}: no weft gained it: {on:?} -> {now:?}"));
        landed.push(gained);
        on = now;
    }
    assert_eq!(on, [20, 20, 20]);
    everyone_hears_everyone(&mut room, 3).await;

    // The counter: one count across the processes, 10 requests each.
    let counter = haproxy.frontend("COUNTER_FRONTEND");
    for n in 1..=30 {
        assert_eq!(count(counter).await, n);
    }
    for weft in &wefts {
        assert_eq!(weft.accepted("kv_counter").await, 10);
    }

    // weft2 is told to stop, while the counter is asked on new connections.
    let stop = Arc::new(AtomicBool::new(false));
    let counting = tokio::spawn(count_until(counter, 31, stop.clone()));
    let mut draining = wefts.remove(1);
    draining.process.signal(libc::SIGTERM);
    wait_for_readyz(draining.admin, 503).await;
    assert_eq!(series(&scrape(draining.admin).await, "weft_ready"), 0.0);
    haproxy.wait_for_status("chat", "weft2", "DOWN").await;
    assert!(
        !draining
            .process
            .printed()
            .iter()
            .any(|line| line.contains("no longer accepting")),
        "HAProxy saw weft2 leave only after it stopped accepting:\n{}",
        draining.process.seen().join("\n")
    );
    for proxy in ["counter", "control", "control_v1"] {
        assert_eq!(haproxy.server_status(proxy, "weft2").await, "DOWN");
    }

    // While it drains, the clients on the others talk: every one of them
    // hears every line, and so do weft2's, still served until the end of
    // the drain, when they are closed.
    let (leaving, staying): (Vec<_>, Vec<_>) = room
        .into_iter()
        .zip(&landed)
        .partition(|(_, weft)| **weft == 1);
    let mut staying: Vec<(TcpStream, u16)> =
        staying.into_iter().map(|(client, _)| client).collect();
    assert_eq!((staying.len(), leaving.len()), (40, 20));
    everyone_hears_everyone(&mut staying, 3).await;
    let mut first_closed = true;
    for ((mut client, _), _) in leaving {
        let heard = String::from_utf8(read_to_end(&mut client).await).unwrap();
        if first_closed {
            first_closed = false;
            assert!(
                draining
                    .process
                    .printed()
                    .iter()
                    .any(|line| line.contains("no longer accepting")),
                "a client of weft2 was closed before the end of its drain delay"
            );
        }
        assert_eq!(
            heard_in_order(&heard, &prefix(chat.port()), 40, 3),
            120,
            "a client of weft2 heard all that was said during the drain:\n{heard}"
        );
    }
    let (status, log) = draining.process.wait().await;
    assert!(status.success(), "{log}");
    assert!(log.contains("no longer accepting"), "{log}");

    // weft2's clients come back through HAProxy, to the two others, and
    // the room is whole again.
    for n in 0..20 {
        staying.push((join(chat, &format!("back{n}")).await, chat.port()));
    }
    let mut on = Vec::new();
    for weft in &wefts {
        on.push(weft.chat_clients().await);
    }
    assert_eq!(on, [30, 30]);
    everyone_hears_everyone(&mut staying, 2).await;

    stop.store(true, Ordering::Relaxed);
    let asked = within(counting)
        .await
        .expect("no request failed during the drain");
    assert!(
        asked > 10,
        "the counter was asked {asked} times during the drain"
    );

    // SIGINT stops at once, without a drain delay: nobody is left to
    // drain for.
    drop(staying);
    drop(haproxy);
    for weft in &wefts {
        weft.process.signal(libc::SIGINT);
    }
    for weft in wefts {
        let (status, log) = weft.process.wait().await;
        assert!(status.success(), "{log}");
    }
}

/// A `haproxy:` port takes the PROXY header only from `proxy-from`: with
/// loopback trusted (the default) a direct client's v1 header is the
/// guest's peer and host; with only 10.0.0.0/8 trusted the same header
/// from 127.0.0.1 has the connection closed, the guest never answering,
/// and counted.
#[tokio::test(flavor = "multi_thread")]
async fn a_proxy_header_from_outside_proxy_from_is_refused() {
    let control = guest("control").display().to_string();
    let trusted = format!("{control}@haproxy:tcp:0:interface=127.0.0.1");
    let untrusted = format!("{control}@haproxy:tcp:0:interface=127.0.0.1,proxy-from=10.0.0.0/8");
    let (weft, addrs) = WeftProcess::spawn(
        &[
            "serve",
            "--admin",
            "tcp:0:interface=127.0.0.1",
            &trusted,
            &untrusted,
        ],
        2,
    )
    .await;
    let header = "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n";

    let mut client = connect(addrs[0]).await;
    let script = format!("{header}peer\r\nhost\r\n");
    client.write_all(script.as_bytes()).await.unwrap();
    assert_eq!(
        [line(&mut client).await, line(&mut client).await],
        [
            "IPv4Address(type='TCP', host='1.2.3.4', port=1)",
            "IPv4Address(type='TCP', host='5.6.7.8', port=2)"
        ]
    );

    let mut refused = connect(addrs[1]).await;
    let script = format!("{header}peer\r\n");
    refused.write_all(script.as_bytes()).await.unwrap();
    assert!(closed_without_reply(&mut refused).await);
    let untrusted =
        "weft_connections_closed_total{service=\"control#2\",reason=\"proxy_untrusted\"}";
    scrape_when(admin_addr(&weft), untrusted, 1.0).await;

    weft.signal(libc::SIGTERM);
    let (status, log) = weft.wait().await;
    assert!(status.success(), "{log}");
}

/// What the cluster test's own helpers read: a client's lines counted in
/// each sender's order, other lines and prefixes left aside.
#[test]
fn heard_in_order_counts_each_senders_lines_in_order() {
    let p = prefix(9);
    let heard = format!("{p}c0 says 0\r\n{p}c1 joined\r\n{p}c1 says 0\r\nx\r\n{p}c0 says 1\r\n");
    assert_eq!(heard_in_order(&heard, &p, 2, 2), 3);
}
