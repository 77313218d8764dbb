//! Publish/subscribe kept by the host: the chat room is one room across
//! workers, instances per connection and (on a real `redis-server`)
//! processes, through a trap and a Redis outage; topics are each service's
//! own unless shared, bounded by quotas; a subscriber that falls behind
//! loses the oldest messages, and a client that never reads costs the host
//! no more than its write limit.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use weft_tests::{
    RedisServer, WeftProcess, closed_without_reply, connect, guest, line, read_until, send_line,
    within,
};

use crate::ops::{admin_addr, scrape, series};

/// What every line of the chat room served on `port` starts with: the
/// address the sender connected to, as Twisted's `chat.py` prints it.
pub(crate) fn prefix(port: u16) -> String {
    format!("<IPv4Address(type='TCP', host='127.0.0.1', port={port})> ")
}

/// Connect to the room at `addr` and say `name joined`; returns once the
/// line came back, which shows the client's instance is in the room.
pub(crate) async fn join(addr: SocketAddr, name: &str) -> TcpStream {
    let mut client = connect(addr).await;
    send_line(&mut client, &format!("{name} joined")).await;
    let own = format!("{}{name} joined", prefix(addr.port()));
    while line(&mut client).await != own {}
    client
}

/// Every client says `lines` lines; each reads until it has heard every
/// client's, each prefixed with the address its sender connected to, and
/// checks they came in each sender's order.
pub(crate) async fn everyone_hears_everyone(clients: &mut [(TcpStream, u16)], lines: usize) {
    let ports: Vec<u16> = clients.iter().map(|(_, port)| *port).collect();
    for (index, (client, _)) in clients.iter_mut().enumerate() {
        let mut said = String::new();
        for k in 0..lines {
            said.push_str(&format!("c{index} says {k}\r\n"));
        }
        client.write_all(said.as_bytes()).await.unwrap();
    }
    let expected = clients.len() * lines;
    for (index, (client, _)) in clients.iter_mut().enumerate() {
        let mut next: HashMap<usize, usize> = HashMap::new();
        let mut heard = 0;
        while heard < expected {
            let got = line(client).await;
            let Some((_, said)) = got.split_once("> ") else {
                panic!("client {index} heard {got:?}");
            };
            // Later clients' `joined` lines may still be on their way.
            let Some((sender, k)) = said.split_once(" says ") else {
                assert!(said.ends_with(" joined"), "client {index} heard {got:?}");
                continue;
            };
            let sender: usize = sender[1..].parse().unwrap();
            assert_eq!(got, format!("{}{said}", prefix(ports[sender])));
            let k: usize = k.parse().unwrap();
            let expected_k = next.entry(sender).or_default();
            assert_eq!(
                k, *expected_k,
                "client {index}: c{sender}'s lines out of order"
            );
            *expected_k += 1;
            heard += 1;
        }
    }
}

/// The chat room with an instance per connection, across two workers: 50
/// clients each hear every line, in each sender's order; the client whose
/// line traps its instance is cut alone, and the others talk on.
async fn chat_room_is_one_room_across_workers_and_instances(chat_room: &str) {
    let service = format!(
        "{}@tcp:0:interface=127.0.0.1,workers=2,isolation=connection,config.crash=boom",
        guest(chat_room).display()
    );
    let (weft, addrs) = WeftProcess::spawn(&["serve", &service], 1).await;
    let addr = addrs[0];
    let mut clients = Vec::new();
    for n in 0..50 {
        clients.push((join(addr, &format!("c{n}")).await, addr.port()));
    }
    everyone_hears_everyone(&mut clients, 3).await;

    let (mut crashing, _) = clients.remove(7);
    send_line(&mut crashing, "boom").await;
    assert!(closed_without_reply(&mut crashing).await);

    send_line(&mut clients[0].0, "still here").await;
    let still = format!("{}still here", prefix(addr.port()));
    for (client, _) in &mut clients {
        assert_eq!(line(client).await, still);
    }
    weft.signal(libc::SIGINT);
    assert!(weft.wait().await.0.success());
}

in_each_language!(chat_room_is_one_room_across_workers_and_instances: rust => "chat-room", python => "chat-room-py");

/// Read lines until one equals `wanted`; the lines before it.
async fn until(client: &mut TcpStream, wanted: &str) -> Vec<String> {
    let mut before = Vec::new();
    loop {
        let got = line(client).await;
        if got == wanted {
            return before;
        }
        before.push(got);
    }
}

/// Three weft processes of two workers each, an instance per connection,
/// on one Redis are one room: 30 clients spread over them each hear every
/// line in each sender's order, and the client whose line traps its
/// instance is cut alone. While Redis is down every client is told, a line
/// sent is refused (and never turns up), and once Redis is back the room
/// is whole again without a restart of weft.
#[tokio::test(flavor = "multi_thread")]
async fn chat_room_spans_three_processes_on_redis_through_an_outage() {
    let mut redis = RedisServer::start().await;
    let service = format!(
        "{}@tcp:0:interface=127.0.0.1,workers=2,isolation=connection,config.crash=boom,pubsub=redis://127.0.0.1:{}/0",
        guest("chat_room").display(),
        redis.port
    );
    let mut processes = Vec::new();
    for _ in 0..3 {
        processes.push(WeftProcess::spawn(&["serve", &service], 1).await);
    }
    let addrs: Vec<SocketAddr> = processes.iter().map(|(_, addrs)| addrs[0]).collect();
    let mut clients = Vec::new();
    for n in 0..30 {
        let addr = addrs[n % 3];
        clients.push((join(addr, &format!("c{n}")).await, addr.port()));
    }
    everyone_hears_everyone(&mut clients, 3).await;
    let (mut crashing, _) = clients.remove(7);
    send_line(&mut crashing, "boom").await;
    assert!(closed_without_reply(&mut crashing).await);
    send_line(&mut clients[0].0, "still here").await;
    let still = format!("{}still here", prefix(clients[0].1));
    for (client, _) in &mut clients {
        assert_eq!(line(client).await, still);
    }

    redis.stop().await;
    for (client, _) in &mut clients {
        until(client, "* the room is unreachable: lines sent now are lost").await;
    }
    send_line(&mut clients[0].0, "lost line").await;
    assert_eq!(line(&mut clients[0].0).await, "* not sent: unavailable");

    redis.restart().await;
    for (client, _) in &mut clients {
        let before = until(client, "* the room is back").await;
        assert!(before.is_empty(), "{before:?}");
    }
    // The publishing connection may still be waiting out its retry pause.
    let back = format!("{}back again", prefix(clients[0].1));
    within(async {
        loop {
            send_line(&mut clients[0].0, "back again").await;
            match line(&mut clients[0].0).await {
                refused if refused == "* not sent: unavailable" => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                heard => break assert_eq!(heard, back),
            }
        }
    })
    .await;
    for (client, _) in clients.iter_mut().skip(1) {
        assert_eq!(line(client).await, back);
    }
    for (weft, _) in processes {
        weft.signal(libc::SIGINT);
        let (status, log) = weft.wait().await;
        assert!(status.success(), "{log}");
    }
}

/// `weft_messages_total` of `service` with `result`, from `scraped`.
fn messages(scraped: &HashMap<String, f64>, service: &str, result: &str) -> f64 {
    let name = format!("weft_messages_total{{service=\"{service}\",result=\"{result}\"}}");
    series(scraped, &name)
}

/// Send each command of `script` to the control guest on one connection,
/// and collect its answers.
async fn control(client: &mut TcpStream, script: &[&str]) -> Vec<String> {
    let mut answers = Vec::new();
    for command in script {
        send_line(client, command).await;
        answers.push(line(client).await);
    }
    answers
}

#[tokio::test(flavor = "multi_thread")]
async fn topics_are_each_services_own_unless_shared_and_quotas_hold() {
    let control_guest = guest("control").display().to_string();
    let quotas = "subscriptions=3,message-size=16,publish-rate=5";
    let first = format!("{control_guest}@tcp:0:interface=127.0.0.1,pubsub-shared=common,{quotas}");
    let second = format!("{control_guest}@tcp:0:interface=127.0.0.1,pubsub-shared=common");
    let off = format!("{control_guest}@tcp:0:interface=127.0.0.1,pubsub=off");
    let (weft, addrs) = WeftProcess::spawn(
        &[
            "serve",
            "--admin",
            "tcp:0:interface=127.0.0.1",
            &first,
            &second,
            &off,
        ],
        3,
    )
    .await;
    let mut a = connect(addrs[0]).await;
    let mut b = connect(addrs[1]).await;
    let mut c = connect(addrs[2]).await;
    assert_eq!(
        control(&mut b, &["sub own", "sub common"]).await,
        ["subscribed", "subscribed"]
    );
    assert_eq!(
        control(
            &mut a,
            &["pub own mine", "pub common ours", "pub common end"]
        )
        .await,
        ["published", "published", "published"]
    );
    assert_eq!(
        [line(&mut b).await, line(&mut b).await],
        ["msg common ours", "msg common end"],
        "another service's topic of the same name is not this one's"
    );
    assert_eq!(
        control(
            &mut a,
            &[
                "sub x1",
                "sub x2",
                "sub x2",
                "sub x3",
                "sub x4",
                "pub x1 0123456789abcdefg",
                "sub a:b",
            ]
        )
        .await,
        [
            "subscribed",
            "subscribed",
            "subscribed",
            "subscribed",
            "error: limit",
            "error: too-large",
            "error: invalid-topic",
        ]
    );
    let flood = control(&mut a, &["flood r 40"]).await.remove(0);
    let published: usize = flood
        .strip_prefix("published ")
        .and_then(|rest| rest.strip_suffix(", refused: rate"))
        .unwrap_or_else(|| panic!("{flood}"))
        .parse()
        .unwrap();
    assert!((7..=10).contains(&published), "{flood}");
    assert_eq!(
        control(&mut c, &["sub t", "pub t x"]).await,
        ["error: off", "error: off"]
    );

    let scraped = scrape(admin_addr(&weft)).await;
    let count = |service: &str, result: &str| messages(&scraped, service, result);
    assert_eq!(count("control", "subscriptions"), 1.0);
    assert_eq!(count("control", "message_size"), 1.0);
    assert_eq!(count("control", "rate"), (40 - published) as f64);
    assert_eq!(count("control", "invalid"), 1.0);
    assert_eq!(count("control", "published"), (3 + published) as f64);
    assert_eq!(count("control#2", "subscribed"), 2.0);
    assert_eq!(count("control#2", "delivered"), 2.0);
    assert_eq!(count("control#3", "invalid"), 2.0);
    weft.signal(libc::SIGINT);
    assert!(weft.wait().await.0.success());
}

/// A subscriber slower than its publisher keeps only the newest
/// `pending-messages`: the rest are dropped, oldest first, and it is told
/// how many before it is handed the next; what it gets and what it is
/// told of add up to what was published.
#[tokio::test(flavor = "multi_thread")]
async fn a_subscriber_that_falls_behind_loses_the_oldest_and_is_told_how_many() {
    let service = format!(
        "{}@tcp:0:interface=127.0.0.1,pending-messages=50",
        guest("control").display()
    );
    let (weft, addrs) = WeftProcess::spawn(
        &["serve", "--admin", "tcp:0:interface=127.0.0.1", &service],
        1,
    )
    .await;
    // The subscriber spins 2 ms on each message: 2,000 published in one
    // call leave it far behind.
    let mut slow = connect(addrs[0]).await;
    assert_eq!(control(&mut slow, &["sub news 2"]).await, ["subscribed"]);
    let mut publisher = connect(addrs[0]).await;
    assert_eq!(
        control(&mut publisher, &["flood news 2000"]).await,
        ["published 2000"]
    );
    let (mut received, mut dropped, mut last) = (0u64, 0u64, None);
    while received + dropped < 2000 {
        let got = line(&mut slow).await;
        if let Some(count) = got.strip_prefix("dropped news ") {
            dropped += count.parse::<u64>().unwrap();
        } else {
            let n: u64 = got.strip_prefix("msg news ").unwrap().parse().unwrap();
            assert!(last < Some(n), "{n} after {last:?}");
            last = Some(n);
            received += 1;
        }
    }
    assert_eq!(last, Some(1999), "the newest is kept");
    assert!(
        dropped > 0 && received >= 50,
        "{received} received, {dropped} dropped"
    );
    let scraped = scrape(admin_addr(&weft)).await;
    let count = |result: &str| messages(&scraped, "control", result);
    assert_eq!(count("dropped"), dropped as f64);
    assert_eq!(count("delivered"), received as f64);
    weft.signal(libc::SIGINT);
    assert!(weft.wait().await.0.success());
}

/// A chat client that never reads while another floods the room costs
/// weft no more than its write limit: its connection is cut at the limit,
/// weft's memory stays bounded, and the flooder is served throughout. It
/// hears every line of its own: the room's instance reads no more of its
/// input while behind on delivering it, so none is dropped for a
/// subscriber that is only waiting for a core.
#[tokio::test(flavor = "multi_thread")]
async fn a_flood_to_a_client_that_never_reads_is_cut_at_the_write_limit() {
    // 20 MB through the room and an RSS bound: beside another heavy test
    // (the 200,000-request Python counter) it outran its timeout in CI.
    let _heavy = weft_tests::exclusive().await;
    let service = format!(
        "{}@tcp:0:interface=127.0.0.1,write-limit=2MiB,publish-rate=100000",
        guest("chat_room").display()
    );
    let (mut weft, addrs) = WeftProcess::spawn(&["serve", &service], 1).await;
    let addr = addrs[0];
    let mut sleeper = join(addr, "sleeper").await;
    let flooder = join(addr, "flooder").await;
    let before = weft.memory_kib("VmRSS");
    let (reading, mut writing) = flooder.into_split();
    let heard = Arc::new(AtomicUsize::new(0));
    let drain = tokio::spawn({
        let heard = heard.clone();
        async move {
            // Buffered: reading a byte a system call, the client itself took
            // 20-40 s for the 20 MB that weft relays in under a second.
            let mut reading = tokio::io::BufReader::new(reading);
            for _ in 0..20_000 {
                let line = read_until(&mut reading, b"\r\n").await;
                if line.starts_with(b"* ") {
                    return Err(String::from_utf8_lossy(&line).into_owned());
                }
                heard.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        }
    });
    let line_text = format!("{}\r\n", "x".repeat(1000));
    for _ in 0..20 {
        let batch = line_text.repeat(1000);
        writing.write_all(batch.as_bytes()).await.unwrap();
    }
    let drained = tokio::time::timeout(Duration::from_secs(60), drain).await;
    if !matches!(drained, Ok(Ok(Ok(())))) {
        panic!(
            "the flooder heard {} of its 20,000 lines ({drained:?}); weft said:\n{}",
            heard.load(Ordering::Relaxed),
            weft.printed().join("\n")
        );
    }
    let grown_mib = weft.memory_kib("VmRSS").saturating_sub(before) / 1024;
    assert!(
        grown_mib < 32,
        "weft grew by {grown_mib} MiB for a 2 MiB write limit"
    );
    // The sleeper was cut: reading what was sent ends, short of 20 MB.
    let mut got = Vec::new();
    let _ = within(sleeper.read_to_end(&mut got)).await;
    assert!(
        got.len() < 10 << 20,
        "{} bytes reached the sleeper",
        got.len()
    );
    weft.signal(libc::SIGINT);
    assert!(weft.wait().await.0.success());
}

/// `weft check` says a guest that publishes and subscribes is built for
/// the `stateful-service` world, with its `messaging` import granted; a
/// C guest, built for `service`, stays there.
#[tokio::test(flavor = "multi_thread")]
async fn check_shows_the_stateful_world_and_messaging_granted() {
    let output = tokio::process::Command::new(weft_tests::weft_binary())
        .env("WEFT_CACHE_DIR", weft_tests::test_cache_dir())
        .arg("check")
        .arg(guest("chat_room"))
        .arg(guest("echo_c"))
        .output()
        .await
        .unwrap();
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{out}");
    let c = format!("{}: ", guest("echo_c").display());
    let (room, c) = out.split_once(&c).expect("two reports");
    for expected in [
        "  built for  weft:protocol@0.2.6\n",
        "  world      stateful-service: connections, on tcp:, tcp6:, ssl: or unix:\n",
        "  imports    granted  weft:protocol/messaging@0.2.6\n",
    ] {
        assert!(room.contains(expected), "{expected:?} in:\n{room}");
    }
    assert!(c.contains("  world      service: connections"), "{c}");
    assert!(!c.contains("messaging"), "{c}");
}
