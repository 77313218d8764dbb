//! `haproxy:` endpoints: the PROXY protocol header, v1 and v2, read before
//! anything reaches the guest, whose getPeer()/getHost() then name the
//! balancer's client; bad, late and untrusted headers closed and counted.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use weft_tests::{Host, TestTls, closed_without_reply, connect, run_weft, scratch, spec, within};

use crate::transport::ask;

/// How the control guest prints an IPv4 address.
fn ipv4(host: &str, port: u16) -> String {
    format!("IPv4Address(type='TCP', host='{host}', port={port})")
}

/// A v2 header saying a TCP client at `peer` reached `host`: the PROXY
/// command, IPv4 over TCP, both addresses and ports.
fn v2_header(peer: ([u8; 4], u16), host: ([u8; 4], u16)) -> Vec<u8> {
    let mut header = b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
    header.extend(peer.0);
    header.extend(host.0);
    header.extend(peer.1.to_be_bytes());
    header.extend(host.1.to_be_bytes());
    header
}

/// The control guest on `endpoint` (a `haproxy:` one), with `options`
/// (`proxy-from=`, limits) as the command line gives them.
async fn control_on(endpoint: &str, options: &[(&str, &str)]) -> Host {
    let mut control = spec("control");
    control.endpoint = endpoint.parse().unwrap();
    for (name, value) in options {
        match *name {
            "proxy-from" => control.proxy_from.push(value.parse().unwrap()),
            limit => control.limits.set(limit, value).unwrap(),
        }
    }
    Host::start_specs(vec![control]).await
}

/// `weft_connections_closed_total` of the control service for `reason`.
fn closed(host: &Host, reason: &str) -> f64 {
    host.series(&format!(
        r#"weft_connections_closed_total{{service="control",reason="{reason}"}}"#
    ))
}

/// Wait until `closed(host, reason)` reads `count`.
async fn closed_reaches(host: &Host, reason: &str, count: f64) {
    within(async {
        while closed(host, reason) != count {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

/// Both versions' headers name the client to the guest, and what follows
/// a header in the same packet is the protocol's first bytes.
#[tokio::test(flavor = "multi_thread")]
async fn the_guest_sees_the_client_the_header_names() {
    let host = control_on("haproxy:tcp:0:interface=127.0.0.1", &[]).await;
    let addr = host.addr("control");

    let mut v1 = connect(addr).await;
    v1.write_all(b"PROXY TCP4 192.0.2.7 198.51.100.1 40001 443\r\npeer\r\n")
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8(weft_tests::read_until(&mut v1, b"\r\n").await).unwrap(),
        format!("{}\r\n", ipv4("192.0.2.7", 40001))
    );
    assert_eq!(ask(&mut v1, "host").await, ipv4("198.51.100.1", 443));

    let mut v2 = connect(addr).await;
    v2.write_all(&v2_header(([203, 0, 113, 9], 5555), ([10, 1, 2, 3], 8080)))
        .await
        .unwrap();
    assert_eq!(ask(&mut v2, "peer").await, ipv4("203.0.113.9", 5555));
    assert_eq!(ask(&mut v2, "host").await, ipv4("10.1.2.3", 8080));

    let mut v1_six = connect(addr).await;
    v1_six
        .write_all(b"PROXY TCP6 2001:db8::7 2001:db8::1 40002 443\r\n")
        .await
        .unwrap();
    assert_eq!(
        ask(&mut v1_six, "peer").await,
        "IPv6Address(type='TCP', host='2001:db8::7', port=40002, flowInfo=0, scopeID=0)"
    );
    host.stop().await;
}

/// A balancer's own connections (v2 `LOCAL`, its health checks) and
/// `UNKNOWN` keep the socket's own addresses.
#[tokio::test(flavor = "multi_thread")]
async fn local_and_unknown_headers_keep_the_sockets_addresses() {
    let host = control_on("haproxy:tcp:0:interface=127.0.0.1", &[]).await;
    let addr = host.addr("control");
    let local = b"\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00".to_vec();
    for header in [local, b"PROXY UNKNOWN\r\n".to_vec()] {
        let mut client = connect(addr).await;
        client.write_all(&header).await.unwrap();
        let own = client.local_addr().unwrap();
        assert_eq!(
            ask(&mut client, "peer").await,
            ipv4("127.0.0.1", own.port())
        );
        assert_eq!(
            ask(&mut client, "host").await,
            ipv4("127.0.0.1", addr.port())
        );
    }
    host.stop().await;
}

/// A missing, malformed, oversized or late header closes the connection
/// before the guest hears of it, and is counted; the service carries on.
#[tokio::test(flavor = "multi_thread")]
async fn bad_missing_and_late_headers_close_the_connection_unheard() {
    let host = control_on(
        "haproxy:tcp:0:interface=127.0.0.1",
        &[("proxy-header-timeout", "300ms")],
    )
    .await;
    let addr = host.addr("control");
    let oversized = [&b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\xff\xff"[..], &[0; 64][..]].concat();
    let bad: [&[u8]; 4] = [
        b"peer\r\n",
        b"PROXY TCP4 192.0.2.7 198.51.100.1 40001\r\npeer\r\n",
        b"PROXY TCP4 192.0.2.7 198.51.100.1 40001 443 and more\r\npeer\r\n",
        &oversized,
    ];
    for (sent, input) in bad.iter().enumerate() {
        let mut client = connect(addr).await;
        client.write_all(input).await.unwrap();
        assert!(closed_without_reply(&mut client).await, "{input:?}");
        closed_reaches(&host, "proxy_header", sent as f64 + 1.0).await;
    }
    // Half a header, then nothing: closed at the timeout.
    let mut slow = connect(addr).await;
    slow.write_all(b"PROXY TCP4 192.0").await.unwrap();
    let waited = std::time::Instant::now();
    assert!(closed_without_reply(&mut slow).await);
    assert!(
        waited.elapsed() >= Duration::from_millis(250),
        "{:?}",
        waited.elapsed()
    );
    closed_reaches(&host, "proxy_header", 5.0).await;
    assert_eq!(
        host.series(r#"weft_limit_hits_total{service="control",limit="proxy_header_timeout"}"#),
        1.0
    );
    assert_eq!(
        host.series(
            r#"weft_guest_call_duration_seconds_count{service="control",export="constructor"}"#
        ),
        0.0,
        "no guest saw any of them"
    );
    let mut good = connect(addr).await;
    good.write_all(b"PROXY TCP4 192.0.2.8 198.51.100.1 1 2\r\n")
        .await
        .unwrap();
    assert_eq!(ask(&mut good, "peer").await, ipv4("192.0.2.8", 1));
    host.stop().await;
}

/// Only the balancers the operator names may say who the client is: a
/// connection from anywhere else is closed unread, its header unused.
#[tokio::test(flavor = "multi_thread")]
async fn a_header_from_outside_proxy_from_is_refused() {
    let host = control_on(
        "haproxy:tcp:0:interface=127.0.0.1",
        &[
            ("proxy-from", "10.0.0.0/8"),
            ("proxy-from", "192.168.0.0/16"),
        ],
    )
    .await;
    let mut client = connect(host.addr("control")).await;
    client
        .write_all(b"PROXY TCP4 10.0.0.1 10.0.0.2 1 2\r\npeer\r\n")
        .await
        .unwrap();
    assert!(closed_without_reply(&mut client).await);
    closed_reaches(&host, "proxy_untrusted", 1.0).await;
    assert_eq!(closed(&host, "proxy_header"), 0.0);
    host.stop().await;

    // With the loopback named, the same connection is served.
    let host = control_on(
        "haproxy:tcp:0:interface=127.0.0.1",
        &[("proxy-from", "10.0.0.0/8"), ("proxy-from", "127.0.0.1")],
    )
    .await;
    let mut client = connect(host.addr("control")).await;
    client
        .write_all(b"PROXY TCP4 10.0.0.1 10.0.0.2 1 2\r\n")
        .await
        .unwrap();
    assert_eq!(ask(&mut client, "peer").await, ipv4("10.0.0.1", 1));
    host.stop().await;
}

/// On `haproxy:ssl:` the header comes before the ClientHello, in the clear,
/// as HAProxy sends it; the guest sees the header's client.
#[tokio::test(flavor = "multi_thread")]
async fn the_header_comes_before_the_tls_handshake() {
    let tls = TestTls::new("proxy-ssl");
    let host = control_on(&format!("haproxy:{}", tls.endpoint()), &[]).await;
    let mut tcp = connect(host.addr("control")).await;
    tcp.write_all(&v2_header(
        ([198, 51, 100, 77], 61000),
        ([10, 0, 0, 1], 443),
    ))
    .await
    .unwrap();
    let mut secured = tls.secure(tcp).await.expect("the handshake completes");
    assert_eq!(
        ask(&mut secured, "peer").await,
        ipv4("198.51.100.77", 61000)
    );
    assert_eq!(ask(&mut secured, "secure").await, "yes");
    host.stop().await;
}

/// A balancer on this machine may reach weft through a Unix socket: the
/// header still names its TCP client.
#[tokio::test(flavor = "multi_thread")]
async fn a_unix_socket_endpoint_reads_the_header_too() {
    let dir = scratch("proxy-unix");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("weft.sock");
    let host = control_on(&format!("haproxy:unix:{}", path.display()), &[]).await;
    let mut client = within(UnixStream::connect(&path)).await.unwrap();
    client
        .write_all(&v2_header(([192, 0, 2, 1], 1234), ([192, 0, 2, 2], 80)))
        .await
        .unwrap();
    assert_eq!(ask(&mut client, "peer").await, ipv4("192.0.2.1", 1234));
    host.stop().await;
}

/// `proxy-from=` on an endpoint that reads no header is a mistake, said
/// before anything is served; so is `haproxy:` around a UDP endpoint.
#[tokio::test(flavor = "multi_thread")]
async fn proxy_settings_where_no_header_is_read_fail_the_start() {
    let echo = weft_tests::guest("echo").display().to_string();
    let (status, stderr) = run_weft(&[
        "serve",
        &format!("{echo}@tcp:0:interface=127.0.0.1,proxy-from=10.0.0.0/8"),
    ])
    .await;
    assert!(!status.success());
    assert!(
        stderr.contains("proxy-from= is for `haproxy:` endpoints"),
        "{stderr}"
    );
    let (status, stderr) = run_weft(&["serve", &format!("{echo}@haproxy:udp:0")]).await;
    assert!(!status.success());
    assert!(
        stderr.contains("`haproxy:` wraps one stream endpoint"),
        "{stderr}"
    );
    let (status, stderr) = run_weft(&[
        "serve",
        &format!("{echo}@haproxy:tcp:0,proxy-from=10.0.0.0/99"),
    ])
    .await;
    assert!(!status.success());
    assert!(stderr.contains("proxy-from=10.0.0.0/99"), "{stderr}");
}
