//! `ssl:` endpoints: TLS terminated by the host, with real clients (rustls,
//! Python's `ssl`), certificates made by each test, bad files refused at
//! start, handshakes bounded in time, and certificates renewed by a reload.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use weft_tests::{
    Host, TestTls, WeftProcess, closed_without_reply, connect, guest, read_exact, read_response,
    run_weft, within,
};

/// The body of a counter response.
fn body(response: &[u8]) -> String {
    let text = String::from_utf8_lossy(response);
    text.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn python_ssl_clients_are_served_over_tls_1_2_and_1_3() {
    let tls = TestTls::new("python-clients");
    let mut spec = weft_tests::spec("http-counter");
    spec.endpoint = tls.endpoint().parse().unwrap();
    let host = Host::start_specs(vec![spec]).await;
    let port = host.addr("http-counter").port().to_string();
    let client = r#"
import socket, ssl, sys
port, cafile, version = int(sys.argv[1]), sys.argv[2], sys.argv[3]
context = ssl.create_default_context(cafile=cafile)
pinned = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}[version]
context.minimum_version = context.maximum_version = pinned
with socket.create_connection(("127.0.0.1", port)) as raw:
    with context.wrap_socket(raw, server_hostname="localhost") as tls:
        tls.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        received = b""
        while chunk := tls.recv(4096):
            received += chunk
        print(tls.version())
        print(received.decode())
"#;
    for (version, expected) in [("1.2", "#1"), ("1.3", "#2")] {
        let output = within(
            Command::new("python3")
                .args(["-c", client, &port])
                .arg(&tls.cert)
                .arg(version)
                .output(),
        )
        .await
        .expect("python3 runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(stdout.starts_with(&format!("TLSv{version}\n")), "{stdout}");
        assert!(stdout.contains("HTTP/1.1 200 OK\r\n"), "{stdout}");
        assert!(
            stdout.ends_with(&format!("I am request {expected}\n\n")),
            "{stdout:?}"
        );
    }
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_handshake_that_never_completes_is_closed_at_the_handshake_timeout() {
    let tls = TestTls::new("handshake-timeout");
    let mut spec = weft_tests::spec("echo");
    spec.endpoint = tls.endpoint().parse().unwrap();
    spec.limits.handshake_timeout = Duration::from_millis(500);
    let host = Host::start_specs(vec![spec]).await;
    let addr = host.addr("echo");

    // A client that connects and says nothing, and one that speaks
    // plaintext HTTP to the TLS port.
    let mut silent = connect(addr).await;
    let mut plaintext = connect(addr).await;
    plaintext
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut garbage = Vec::new();
    let _ = within(plaintext.read_to_end(&mut garbage)).await;
    assert!(
        !garbage.windows(4).any(|w| w == b"HTTP" || w == b"GET "),
        "the guest never sees a connection whose handshake failed: {garbage:?}"
    );

    // Meanwhile TLS clients are served.
    let mut client = tls.connect(addr).await;
    client.write_all(b"still served").await.unwrap();
    assert_eq!(read_exact(&mut client, 12).await, b"still served");

    let mut byte = [0; 1];
    let early = tokio::time::timeout(Duration::from_millis(100), silent.read(&mut byte)).await;
    assert!(early.is_err(), "open before the timeout: {early:?}");
    assert!(closed_without_reply(&mut silent).await);

    client.write_all(b"and after").await.unwrap();
    assert_eq!(read_exact(&mut client, 9).await, b"and after");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_handshake_in_progress_does_not_hold_up_shutdown() {
    let tls = TestTls::new("handshake-shutdown");
    let echo = guest("echo").display().to_string();
    let service = format!("{echo}@{}", tls.endpoint());
    let (weft, addrs) = WeftProcess::spawn(
        &[
            "serve",
            "--handshake-timeout",
            "1h",
            "--shutdown-grace",
            "1h",
            &service,
        ],
        1,
    )
    .await;
    let mut silent = connect(addrs[0]).await;
    let mut client = tls.connect(addrs[0]).await;
    client.write_all(b"up").await.unwrap();
    assert_eq!(read_exact(&mut client, 2).await, b"up");
    drop(client);
    weft.signal(libc::SIGINT);
    // Within the tests' timeout, far below the grace and handshake timeout.
    assert!(weft.wait().await.0.success());
    assert!(closed_without_reply(&mut silent).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_keys_and_certificates_fail_the_start_with_one_clear_error() {
    let good = TestTls::new("bad-files-good");
    let other = TestTls::new("bad-files-other");
    let echo = guest("echo").display().to_string();
    let (key, cert) = (good.key.display(), good.cert.display());
    let cases = [
        (
            "ssl:0:privateKey=/nonexistent/key.pem".to_owned(),
            "cannot read a private key from /nonexistent/key.pem: No such file".to_owned(),
        ),
        (
            format!("ssl:0:privateKey={key}:certKey={}", other.cert.display()),
            format!(
                "cannot use the private key in {key} with the certificate in {}",
                other.cert.display()
            ),
        ),
        (
            format!("ssl:0:privateKey={key}:certKey={key}"),
            format!("cannot read certificates from {key}: it holds no `BEGIN CERTIFICATE` block"),
        ),
        (
            format!("ssl:0:privateKey={cert}:certKey={cert}"),
            format!("cannot read a private key from {cert}: it holds no `BEGIN PRIVATE KEY` block"),
        ),
        (
            format!("ssl:0:privateKey={key}:certKey={cert}:sslmethod=TLSv1_METHOD"),
            "`sslmethod` is not supported".to_owned(),
        ),
    ];
    for (endpoint, expected) in cases {
        let (status, stderr) = run_weft(&["serve", &format!("{echo}@{endpoint}")]).await;
        assert!(!status.success(), "{endpoint}");
        assert!(stderr.contains(&expected), "{endpoint}: {stderr}");
        assert!(!stderr.contains("serving on"), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    let (status, stderr) = run_weft(&[
        "serve",
        "--admin",
        &good.endpoint(),
        &format!("{echo}@tcp:0:interface=127.0.0.1"),
    ])
    .await;
    assert!(!status.success());
    assert!(stderr.contains("serves plain HTTP"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_takes_renewed_certificates_without_a_new_instance() {
    let first = TestTls::new("renew-first");
    let renewed = TestTls::new("renew-second");
    let key = weft_tests::scratch("renew-key.pem");
    let cert = weft_tests::scratch("renew-cert.pem");
    std::fs::copy(&first.key, &key).unwrap();
    std::fs::copy(&first.cert, &cert).unwrap();
    let counter = guest("http_counter").display().to_string();
    let service = format!(
        "{counter}@ssl:0:privateKey={}:certKey={}:interface=127.0.0.1",
        key.display(),
        cert.display()
    );
    let (mut weft, addrs) = WeftProcess::spawn(&["serve", &service], 1).await;
    let get = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut before = first.connect(addrs[0]).await;
    before.write_all(get).await.unwrap();
    assert_eq!(
        body(&read_response(&mut before, false).await),
        "I am request #1\n"
    );

    std::fs::copy(&renewed.key, &key).unwrap();
    std::fs::copy(&renewed.cert, &cert).unwrap();
    weft.signal(libc::SIGHUP);
    let reloaded = weft.wait_for("reloaded: ").await;
    assert!(
        reloaded.ends_with("reloaded: http_counter unchanged"),
        "{reloaded}"
    );

    let mut after = renewed.connect(addrs[0]).await;
    after.write_all(get).await.unwrap();
    assert_eq!(
        body(&read_response(&mut after, false).await),
        "I am request #2\n",
        "the same instance counts on"
    );
    assert!(
        first.handshake(addrs[0]).await.is_err(),
        "new handshakes present the renewed certificate"
    );
    before.write_all(get).await.unwrap();
    assert_eq!(
        body(&read_response(&mut before, false).await),
        "I am request #3\n",
        "a connection made before the reload carries on"
    );
    weft.signal(libc::SIGINT);
    assert!(weft.wait().await.0.success());
}

/// An `ssl:` service's key and certificate are read before its component
/// is compiled: a missing file costs no compile (seconds for a Python
/// guest), and says which file.
#[tokio::test(flavor = "multi_thread")]
async fn a_missing_key_is_refused_before_the_component_is_compiled() {
    let python = guest("echo_py").display().to_string();
    let missing = weft_tests::scratch("no-such-key.pem").display().to_string();
    let service = format!("{python}@ssl:0:privateKey={missing}:interface=127.0.0.1");
    let (status, stderr) = run_weft(&["serve", "--no-cache", &service]).await;
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains(&missing), "names the file: {stderr}");
    assert!(!stderr.contains("compil"), "nothing was compiled: {stderr}");
}
