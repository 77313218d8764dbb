//! SIGTERM as a load balancer needs it: `/readyz` turns 503 at once while
//! weft keeps accepting for the drain delay; then it stops accepting, open
//! connections get the grace to end on their own, the rest are closed, and
//! it exits 0. A second signal exits at once.

use std::io::ErrorKind;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use weft_tests::{WeftProcess, connect, guest, read_exact, read_to_end, within};

use crate::ops::{admin_addr, admin_get, scrape, series};

/// Echo `bytes` over `client`.
async fn echoes(client: &mut TcpStream, bytes: &[u8]) {
    client.write_all(bytes).await.unwrap();
    assert_eq!(read_exact(client, bytes.len()).await, bytes);
}

/// The echo guest with an admin endpoint and `flags`.
async fn echo_with(flags: &[&str]) -> (WeftProcess, std::net::SocketAddr) {
    let echo = format!("{}@tcp:0:interface=127.0.0.1", guest("echo").display());
    let mut args = vec!["serve", "--admin", "tcp:0:interface=127.0.0.1"];
    args.extend(flags);
    args.push(&echo);
    let (weft, addrs) = WeftProcess::spawn(&args, 1).await;
    (weft, addrs[0])
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_turns_readiness_off_first_then_drains_and_exits_zero() {
    let (mut weft, addr) = echo_with(&["--drain-delay", "3s", "--shutdown-grace", "2s"]).await;
    let admin = admin_addr(&weft);
    // Its workers may still be starting their guests.
    within(async {
        loop {
            match admin_get(admin, "/readyz").await {
                (head, body) if head.starts_with("HTTP/1.0 200") => {
                    break assert_eq!(body, "ready\n");
                }
                (head, body) => assert!(head.starts_with("HTTP/1.0 503") && body == "starting\n"),
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(series(&scrape(admin).await, "weft_ready"), 1.0);
    let mut staying = connect(addr).await;
    let mut leaving = connect(addr).await;
    echoes(&mut staying, b"before").await;

    weft.signal(libc::SIGTERM);
    let told = weft.wait_for("SIGTERM: /readyz answers 503").await;
    let (head, body) = admin_get(admin, "/readyz").await;
    assert!(head.starts_with("HTTP/1.0 503"), "{head}");
    assert_eq!(body, "stopping\n");
    assert_eq!(series(&scrape(admin).await, "weft_ready"), 0.0);
    let (head, _) = admin_get(admin, "/healthz").await;
    assert!(
        head.starts_with("HTTP/1.0 200"),
        "liveness is unchanged: {head}"
    );
    // The drain delay: still accepting, and serving.
    let mut late = connect(addr).await;
    echoes(&mut late, b"still accepted").await;
    assert!(
        !weft
            .printed()
            .iter()
            .any(|l| l.contains("no longer accepting")),
        "accepting stopped within the drain delay, told at {told}"
    );

    weft.wait_for("no longer accepting").await;
    let refused = within(TcpStream::connect(addr)).await;
    assert_eq!(
        refused.map_err(|e| e.kind()).err(),
        Some(ErrorKind::ConnectionRefused),
        "the listening socket is closed"
    );
    // Open connections are still served while they get to end.
    echoes(&mut staying, b"during the grace").await;
    leaving.shutdown().await.unwrap();
    assert_eq!(read_to_end(&mut leaving).await, b"", "ends on its own");
    // The grace over, the rest are closed.
    assert_eq!(read_to_end(&mut staying).await, b"");
    assert_eq!(read_to_end(&mut late).await, b"");
    let (status, stderr) = weft.wait().await;
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("closing 2 connections still open after 2s"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_signal_exits_at_once() {
    for (second, code) in [(libc::SIGINT, 130), (libc::SIGTERM, 143)] {
        let (mut weft, addr) = echo_with(&["--drain-delay", "60s"]).await;
        let mut client = connect(addr).await;
        echoes(&mut client, b"hi").await;
        weft.signal(libc::SIGTERM);
        weft.wait_for("SIGTERM: /readyz answers 503").await;
        weft.signal(second);
        let (status, stderr) = weft.wait().await;
        assert_eq!(status.code(), Some(code), "{stderr}");
        assert!(
            stderr.contains("while shutting down: exiting at once"),
            "{stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_zero_drain_delay_stops_accepting_at_once() {
    let (mut weft, addr) = echo_with(&["--drain-delay", "0", "--shutdown-grace", "5s"]).await;
    let mut client = connect(addr).await;
    echoes(&mut client, b"hi").await;
    weft.signal(libc::SIGTERM);
    weft.wait_for("no longer accepting").await;
    echoes(&mut client, b"served on").await;
    // Ending on its own, it ends the drain: no need to wait out the grace.
    drop(client);
    let (status, stderr) = weft.wait().await;
    assert!(status.success(), "{stderr}");
    assert!(!stderr.contains("still open after"), "{stderr}");
}
