//! What operators rely on: `/metrics` and `/healthz` on the admin endpoint
//! counting what really happened on the wire, and a reload (SIGHUP) that
//! swaps, adds and removes services without dropping a connection.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use weft_tests::{
    WeftProcess, connect, exchange, guest, read_exact, read_response, read_to_end, read_until,
    scratch,
};

/// The admin endpoint's address, from the line weft logs when it binds it
/// (`admin endpoint: /metrics, ... on ADDR`).
pub(crate) fn admin_addr(weft: &WeftProcess) -> SocketAddr {
    let line = weft
        .seen()
        .iter()
        .find(|line| line.contains("admin endpoint: "))
        .expect("weft reports its admin endpoint");
    let (_, addr) = line.rsplit_once(" on ").expect("an address");
    addr.split_whitespace().next().unwrap().parse().unwrap()
}

/// `GET path` on the admin endpoint: the status line and the body.
pub(crate) async fn admin_get(admin: SocketAddr, path: &str) -> (String, String) {
    let request = format!("GET {path} HTTP/1.0\r\n\r\n");
    let response = String::from_utf8(exchange(admin, request.as_bytes()).await).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    (head.to_owned(), body.to_owned())
}

/// Every series `/metrics` shows, by name and labels.
pub(crate) async fn scrape(admin: SocketAddr) -> HashMap<String, f64> {
    let (head, body) = admin_get(admin, "/metrics").await;
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    assert!(
        head.contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    body.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("a value");
            (series.to_owned(), value.parse().expect("a number"))
        })
        .collect()
}

/// The value of the series `name` in `scrape`, which must show it.
pub(crate) fn series(scrape: &HashMap<String, f64>, name: &str) -> f64 {
    scrape
        .get(name)
        .copied()
        .unwrap_or_else(|| panic!("no {name} in the scrape"))
}

/// Scrape until `series` reads `value` (connections close a moment after
/// the client sees them close), then return the whole scrape.
pub(crate) async fn scrape_when(
    admin: SocketAddr,
    series: &str,
    value: f64,
) -> HashMap<String, f64> {
    let deadline = tokio::time::Instant::now() + weft_tests::TIMEOUT;
    loop {
        let metrics = scrape(admin).await;
        if metrics.get(series) == Some(&value) {
            return metrics;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{series} never reached {value}: {:?}",
            metrics.get(series)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn get(metrics: &HashMap<String, f64>, series: &str) -> f64 {
    *metrics
        .get(series)
        .unwrap_or_else(|| panic!("no {series} in the scrape"))
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_connections_bytes_calls_and_traps() {
    let served = |name: &str| format!("{}@tcp:0:interface=127.0.0.1", guest(name).display());
    let (echo, counter) = (served("echo"), served("http_counter"));
    let hostile = format!("{},max-restarts=2", served("hostile"));
    let (weft, addrs) = WeftProcess::spawn(
        &[
            "serve",
            "--admin",
            "tcp:0:interface=127.0.0.1",
            &echo,
            &counter,
            &hostile,
        ],
        3,
    )
    .await;
    let admin = admin_addr(&weft);
    let (head, body) = admin_get(admin, "/healthz").await;
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    assert_eq!(
        body,
        "ok\necho serving\nhostile serving\nhttp_counter serving\n"
    );

    // Three echo connections, 1000 bytes each way.
    for _ in 0..3 {
        let mut client = connect(addrs[0]).await;
        client.write_all(&[b'x'; 1000]).await.unwrap();
        assert_eq!(read_exact(&mut client, 1000).await.len(), 1000);
    }
    let calls = |export: &str| {
        format!(r#"weft_guest_call_duration_seconds_count{{service="echo",export="{export}"}}"#)
    };
    // Counted once the guest has heard of the close. Then scraped again: a
    // scrape renders its series one after another, so a close that lands
    // in between shows in the call count below but not in the close count
    // above it, which the connection counted before calling the guest.
    scrape_when(admin, &calls("connection-lost"), 3.0).await;
    let m = scrape(admin).await;
    let closed: f64 = m
        .iter()
        .filter(|(series, _)| series.starts_with(r#"weft_connections_closed_total{service="echo""#))
        .map(|(_, count)| count)
        .sum();
    assert_eq!(closed, 3.0);
    assert_eq!(
        get(&m, r#"weft_connections_accepted_total{service="echo"}"#),
        3.0
    );
    assert_eq!(get(&m, r#"weft_connections_active{service="echo"}"#), 0.0);
    assert_eq!(
        get(&m, r#"weft_received_bytes_total{service="echo"}"#),
        3000.0
    );
    assert_eq!(get(&m, r#"weft_sent_bytes_total{service="echo"}"#), 3000.0);
    assert_eq!(
        get(&m, r#"weft_instances_started_total{service="echo"}"#),
        1.0
    );
    assert_eq!(get(&m, &calls("constructor")), 3.0);
    assert!(get(&m, &calls("data-received")) >= 3.0);

    // Two HTTP requests: the counter's bytes are the request's and the
    // response's, and each connection is closed by the guest.
    let request = b"GET / HTTP/1.0\r\n\r\n";
    let mut answered = 0;
    for _ in 0..2 {
        answered += exchange(addrs[1], request).await.len();
    }
    let m = scrape_when(
        admin,
        r#"weft_connections_closed_total{service="http_counter",reason="done"}"#,
        2.0,
    )
    .await;
    let counter_series = |name: &str| get(&m, &format!(r#"{name}{{service="http_counter"}}"#));
    assert_eq!(
        counter_series("weft_received_bytes_total"),
        2.0 * request.len() as f64
    );
    assert_eq!(counter_series("weft_sent_bytes_total"), answered as f64);

    // A panic is one trap, of one cause; the connection closes with it.
    let mut client = connect(addrs[2]).await;
    client.write_all(b"panic\r\n").await.unwrap();
    assert_eq!(read_to_end(&mut client).await, b"");
    let trap =
        |cause: &str| format!(r#"weft_guest_traps_total{{service="hostile",cause="{cause}"}}"#);
    let m = scrape_when(admin, &trap("unreachable"), 1.0).await;
    for cause in [
        "deadline",
        "wall_clock",
        "memory",
        "stack_overflow",
        "other",
    ] {
        assert_eq!(get(&m, &trap(cause)), 0.0, "{cause}");
    }
    assert_eq!(
        get(
            &m,
            r#"weft_connections_closed_total{service="hostile",reason="trap"}"#
        ),
        1.0
    );
    // A spin uses the CPU deadline: a trap of that cause, and a limit hit.
    let mut client = connect(addrs[2]).await;
    client.write_all(b"spin\r\n").await.unwrap();
    assert_eq!(read_to_end(&mut client).await, b"");
    let m = scrape_when(admin, &trap("deadline"), 1.0).await;
    assert_eq!(get(&m, &trap("unreachable")), 1.0);
    assert_eq!(
        get(
            &m,
            r#"weft_limit_hits_total{service="hostile",limit="deadline"}"#
        ),
        1.0
    );
    assert!(get(&m, r#"weft_guest_cpu_seconds_total{service="hostile"}"#) >= 0.05);
    // The second trap is its max-restarts: the service is failed.
    assert_eq!(
        get(
            &m,
            r#"weft_service_state{service="hostile",state="failed"}"#
        ),
        1.0
    );
    assert_eq!(
        get(&m, r#"weft_service_state{service="echo",state="serving"}"#),
        1.0
    );
    let (head, body) = admin_get(admin, "/healthz").await;
    assert!(head.starts_with("HTTP/1.0 503"), "{head}");
    assert!(body.starts_with("failed: hostile\n"), "{body}");

    let (head, _) = admin_get(admin, "/nowhere").await;
    assert!(head.starts_with("HTTP/1.0 404"), "{head}");
    let refused = exchange(
        admin,
        b"POST /metrics HTTP/1.0\r\ncontent-length: 0\r\n\r\n",
    )
    .await;
    let refused = String::from_utf8_lossy(&refused);
    assert!(refused.starts_with("HTTP/1.0 405"), "{refused}");
    assert!(refused.contains("allow: GET, HEAD"), "{refused}");
    weft.signal(libc::SIGINT);
    assert!(weft.wait().await.0.success());
}

/// One HTTP/1.0 GET to the counter on a fresh connection: its number.
async fn count(addr: SocketAddr) -> std::io::Result<u64> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n").await?;
    let mut answer = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut answer).await?;
    let text = String::from_utf8_lossy(&answer);
    text.rsplit_once("I am request #")
        .and_then(|(_, number)| number.trim().parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not a count: {text:?}")))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_swaps_adds_and_removes_services_without_dropping_a_connection() {
    let dir = scratch("reload");
    std::fs::create_dir_all(&dir).unwrap();
    let copy = |from: &str, to: &str| {
        std::fs::copy(guest(from), dir.join(to)).unwrap();
    };
    copy("echo", "echo.wasm");
    copy("http_counter", "counter.wasm");
    copy("chat", "chat.wasm");
    let service = |name: &str, component: &str| {
        format!(
            "[[service]]\nname = \"{name}\"\ncomponent = \"{component}\"\n\
             endpoint = \"tcp:0:interface=127.0.0.1\"\n"
        )
    };
    let head = "admin = \"tcp:0:interface=127.0.0.1\"\ndrain-timeout = \"2s\"\n";
    let config = dir.join("weft.toml");
    let write_config = |services: &[(&str, &str)]| {
        let mut text = head.to_owned();
        for (name, component) in services {
            text += &service(name, component);
        }
        std::fs::write(&config, text).unwrap();
    };
    write_config(&[
        ("echo", "echo.wasm"),
        ("counter", "counter.wasm"),
        ("chat", "chat.wasm"),
        ("spare", "echo.wasm"),
    ]);
    let config_arg = config.display().to_string();
    let (mut weft, addrs) = WeftProcess::spawn(&["--config", &config_arg], 4).await;
    let admin = admin_addr(&weft);
    let (echo, counter, chat, spare) = (addrs[0], addrs[1], addrs[2], addrs[3]);

    // Open before the reload: an echo connection, a chat client, and a
    // keep-alive connection to the counter.
    let mut echoing = connect(echo).await;
    echoing.write_all(b"before").await.unwrap();
    assert_eq!(read_exact(&mut echoing, 6).await, b"before");
    let mut talker = connect(chat).await;
    talker.write_all(b"before\r\n").await.unwrap();
    read_until(&mut talker, b"before\r\n").await;
    let mut kept = connect(counter).await;
    let keep_alive = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    kept.write_all(keep_alive).await.unwrap();
    assert!(read_response(&mut kept, false).await.ends_with(b"#1\n"));

    // A client looping on the counter through the reload.
    let looping = Arc::new(AtomicBool::new(true));
    let client = tokio::spawn({
        let looping = looping.clone();
        async move {
            let (mut counts, mut failures) = (Vec::new(), Vec::new());
            while looping.load(Ordering::Relaxed) {
                match count(counter).await {
                    Ok(number) => counts.push(number),
                    Err(error) => failures.push(error.to_string()),
                }
            }
            (counts, failures)
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;

    // The counter becomes the Python port, `spare` goes, `late` comes.
    copy("counter_py", "counter-v2.wasm");
    write_config(&[
        ("echo", "echo.wasm"),
        ("counter", "counter-v2.wasm"),
        ("chat", "chat.wasm"),
        ("late", "echo.wasm"),
    ]);
    weft.signal(libc::SIGHUP);
    let reloaded = weft.wait_for("reloaded: ").await;
    assert!(
        reloaded.contains(
            "spare removed, echo unchanged, counter reloaded, chat unchanged, late added"
        ),
        "{reloaded}"
    );
    let late: SocketAddr = {
        let line = weft
            .seen()
            .iter()
            .find(|l| l.contains("serving on") && l.contains(r#"service="late""#))
            .expect("the new service reports its address")
            .clone();
        let addr = line.split("serving on ").nth(1).unwrap();
        addr.split_whitespace().next().unwrap().parse().unwrap()
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    looping.store(false, Ordering::Relaxed);
    let (counts, failures) = client.await.unwrap();
    assert!(
        failures.is_empty(),
        "failed through the reload: {failures:?}"
    );
    // One run of counts from the old instance, then one from the new.
    let restarts: Vec<usize> = (1..counts.len())
        .filter(|&i| counts[i] <= counts[i - 1])
        .collect();
    assert_eq!(
        restarts.len(),
        1,
        "one switch to the new instance: {counts:?}"
    );
    assert_eq!(counts[restarts[0]], 1, "{counts:?}");
    assert!(restarts[0] > 0, "requests served before the reload");

    // What was open before is still served, by the instances it began on.
    echoing.write_all(b"after").await.unwrap();
    assert_eq!(read_exact(&mut echoing, 5).await, b"after");
    let mut newcomer = connect(chat).await;
    newcomer.write_all(b"hello\r\n").await.unwrap();
    read_until(&mut talker, b"hello\r\n").await;
    kept.write_all(keep_alive).await.unwrap();
    let old_count = read_response(&mut kept, false).await;
    let old_count = String::from_utf8_lossy(&old_count);
    let expected = format!("#{}\n", counts[restarts[0] - 1] + 1);
    assert!(
        old_count.ends_with(&expected),
        "{old_count} after {counts:?}"
    );
    // Removed: no longer accepting. Added: serving.
    assert!(tokio::net::TcpStream::connect(spare).await.is_err());
    let mut added = connect(late).await;
    added.write_all(b"late").await.unwrap();
    assert_eq!(read_exact(&mut added, 4).await, b"late");
    // The old counter's connection is closed once the drain timeout passes.
    weft.wait_for("closing 1 connections still on the replaced version")
        .await;
    assert_eq!(read_to_end(&mut kept).await, b"");

    // A broken component: the reload fails, and the counter serves on.
    let before = count(counter).await.unwrap();
    std::fs::write(dir.join("counter-v2.wasm"), b"\0asm garbage").unwrap();
    weft.signal(libc::SIGHUP);
    let failed = weft.wait_for("reload failed").await;
    assert!(failed.contains("counter-v2.wasm"), "{failed}");
    assert_eq!(
        count(counter).await.unwrap(),
        before + 1,
        "the same instance"
    );
    let m = scrape(admin).await;
    assert_eq!(get(&m, r#"weft_reloads_total{result="ok"}"#), 1.0);
    assert_eq!(get(&m, r#"weft_reloads_total{result="failed"}"#), 1.0);
    assert!(
        !m.keys()
            .any(|series| series.contains(r#"service_state{service="spare""#))
    );

    weft.signal(libc::SIGINT);
    assert!(weft.wait().await.0.success());
}

/// `/metrics` shows each service only the series that apply to it (no
/// datagram series for a TCP service, no connection series for a UDP
/// one), each family's series grouped by service, and which weft runs.
#[tokio::test(flavor = "multi_thread")]
async fn metrics_show_what_applies_grouped_by_service_and_the_version() {
    let served =
        |name: &str, kind: &str| format!("{}@{kind}:0:interface=127.0.0.1", guest(name).display());
    let (weft, _) = WeftProcess::spawn(
        &[
            "serve",
            "--admin",
            "tcp:0:interface=127.0.0.1",
            &served("echo", "tcp"),
            &served("udp_echo", "udp"),
            &served("chat", "tcp"),
        ],
        3,
    )
    .await;
    let (_, body) = admin_get(admin_addr(&weft), "/metrics").await;
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        body.contains(&format!("\nweft_build_info{{version=\"{version}\"}} 1\n")),
        "{body}"
    );
    for present in [
        "weft_datagrams_total{service=\"udp_echo\",result=\"received\"} 0",
        "weft_guest_call_duration_seconds_count{service=\"udp_echo\",export=\"datagram-received\"} 0",
        "weft_connections_accepted_total{service=\"echo\"} 0",
        "weft_guest_call_duration_seconds_count{service=\"echo\",export=\"data-received\"} 0",
    ] {
        assert!(body.contains(present), "no {present} in:\n{body}");
    }
    for absent in [
        "weft_datagrams_total{service=\"echo\"",
        "weft_datagrams_total{service=\"chat\"",
        "{service=\"echo\",export=\"datagram-received\"}",
        "weft_connections_accepted_total{service=\"udp_echo\"}",
        "weft_outbound_connects_total{service=\"udp_echo\"",
    ] {
        assert!(!body.contains(absent), "{absent} shown:\n{body}");
    }
    // Within each family, the services come in order, each once in a run.
    let mut families: HashMap<&str, Vec<&str>> = HashMap::new();
    for line in body.lines().filter(|line| !line.starts_with('#')) {
        let Some((name, labels)) = line.split_once('{') else {
            continue;
        };
        if let Some(service) = labels.strip_prefix("service=\"") {
            let service = service.split('"').next().unwrap();
            let seen = families.entry(name).or_default();
            if seen.last() != Some(&service) {
                seen.push(service);
            }
        }
    }
    for (family, services) in families {
        let mut sorted = services.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(
            services, sorted,
            "{family}'s series are not grouped by service"
        );
    }
}
