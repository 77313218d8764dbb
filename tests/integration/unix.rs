//! `unix:` endpoints: the socket file's permissions, lock file and
//! removal, a stale file from a dead weft replaced and a live one refused,
//! and the addresses (and security) a guest is told on each endpoint type.

use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::path::Path;

use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use weft_tests::{
    Host, TestTls, WeftProcess, connect, guest, read_exact, run_weft, scratch, within,
};

use crate::transport::ask;

async fn connect_unix(path: &Path) -> UnixStream {
    within(UnixStream::connect(path))
        .await
        .expect("connects to the Unix socket")
}

#[tokio::test(flavor = "multi_thread")]
async fn guests_learn_each_endpoints_addresses_and_whether_it_is_secure() {
    let dir = scratch("unix-addresses");
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("control.sock");
    let tls = TestTls::new("unix-addresses");
    let mut on_unix = weft_tests::spec("control");
    on_unix.name = Some("local".into());
    on_unix.endpoint = format!("unix:{}", socket.display()).parse().unwrap();
    let mut on_tls = weft_tests::spec("control");
    on_tls.name = Some("secure".into());
    on_tls.endpoint = tls.endpoint().parse().unwrap();
    let on_tcp = weft_tests::spec("control");
    let mut older = weft_tests::spec("echo-v0-2-1");
    older.endpoint = format!("unix:{}", dir.join("older.sock").display())
        .parse()
        .unwrap();
    let host = Host::start_specs(vec![on_unix, on_tls, on_tcp, older]).await;

    let mut unix = connect_unix(&socket).await;
    let path = socket.display();
    assert_eq!(
        ask(&mut unix, "host").await,
        format!("UNIXAddress('{path}')")
    );
    assert_eq!(ask(&mut unix, "peer").await, "UNIXAddress(None)");
    assert_eq!(ask(&mut unix, "secure").await, "no");

    let addr = host.addr("secure");
    let mut secure = tls.connect(addr).await;
    assert_eq!(ask(&mut secure, "secure").await, "yes");
    assert_eq!(
        ask(&mut secure, "host").await,
        format!(
            "IPv4Address(type='TCP', host='127.0.0.1', port={})",
            addr.port()
        )
    );

    let mut plain = connect(host.addr("control")).await;
    assert_eq!(ask(&mut plain, "secure").await, "no");

    // A guest built against 0.2.1 is served on a Unix socket too.
    let mut echo = connect_unix(&dir.join("older.sock")).await;
    echo.write_all(b"from 0.2.1").await.unwrap();
    assert_eq!(read_exact(&mut echo, 10).await, b"from 0.2.1");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_socket_file_takes_its_mode_and_lock_and_goes_at_shutdown() {
    let dir = scratch("unix-mode");
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("echo.sock");
    let lock = dir.join("echo.sock.lock");
    let echo = guest("echo").display().to_string();
    let service = format!("{echo}@unix:{}:mode=600", socket.display());
    let (weft, _) = WeftProcess::spawn(&["serve", &service], 1).await;
    let metadata = std::fs::symlink_metadata(&socket).unwrap();
    assert!(metadata.file_type().is_socket());
    assert_eq!(metadata.permissions().mode() & 0o777, 0o600);
    assert_eq!(
        std::fs::read_link(&lock).unwrap().to_str(),
        Some(weft.pid().to_string().as_str()),
        "the lock names weft's process, as Twisted's does"
    );
    let mut client = connect_unix(&socket).await;
    client.write_all(b"ping").await.unwrap();
    assert_eq!(read_exact(&mut client, 4).await, b"ping");
    drop(client);

    weft.signal(libc::SIGINT);
    assert!(weft.wait().await.0.success());
    assert!(!socket.exists(), "the socket file is removed at shutdown");
    assert!(std::fs::symlink_metadata(&lock).is_err(), "so is its lock");

    // A file that is not a socket is never replaced.
    std::fs::write(&socket, "precious").unwrap();
    let (status, stderr) = run_weft(&["serve", &format!("{echo}@unix:{}", socket.display())]).await;
    assert!(!status.success());
    assert!(stderr.contains("exists and is not a socket"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&socket).unwrap(), "precious");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stale_socket_file_is_replaced_and_a_live_one_refused() {
    let dir = scratch("unix-stale");
    std::fs::create_dir_all(&dir).unwrap();
    let echo = guest("echo").display().to_string();
    for lockfile in ["1", "0"] {
        let socket = dir.join(format!("echo-{lockfile}.sock"));
        let service = format!("{echo}@unix:{}:lockfile={lockfile}", socket.display());
        let (first, _) = WeftProcess::spawn(&["serve", &service], 1).await;

        let (status, stderr) = run_weft(&["serve", &service]).await;
        assert!(!status.success(), "lockfile={lockfile}");
        let expected = if lockfile == "1" {
            format!("is in use by process {}", first.pid())
        } else {
            format!("another program listens on {}", socket.display())
        };
        assert!(stderr.contains(&expected), "lockfile={lockfile}: {stderr}");

        // Killed, weft leaves its socket file (and lock) behind.
        first.signal(libc::SIGKILL);
        let _ = first.wait().await;
        assert!(socket.exists());

        let (second, _) = WeftProcess::spawn(&["serve", &service], 1).await;
        assert!(
            second
                .seen()
                .iter()
                .any(|line| line.contains("replacing the stale socket file")),
            "{:?}",
            second.seen()
        );
        let mut client = connect_unix(&socket).await;
        client.write_all(b"again").await.unwrap();
        assert_eq!(read_exact(&mut client, 5).await, b"again");
        second.signal(libc::SIGINT);
        assert!(second.wait().await.0.success());
    }
}
