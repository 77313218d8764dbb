//! What the weft process asks of the machine it runs on: no wakeups while
//! nothing happens, and an open-file limit that holds the connections its
//! services allow.

use std::time::Duration;

use weft_tests::{WeftProcess, connect, guest, read_exact};

/// An idle weft sleeps: the epoch ticker that enforces guest deadlines
/// runs only while a guest call does, so a weft with no traffic makes no
/// wakeups (it made one a millisecond, 2% of a core).
#[tokio::test(flavor = "multi_thread")]
async fn an_idle_weft_does_not_wake_up() {
    let service = format!("{}@tcp:0:interface=127.0.0.1", guest("echo").display());
    let (weft, addrs) = WeftProcess::spawn(&["serve", &service], 1).await;
    // A round trip first: the instance has run, and the ticker with it.
    let mut client = connect(addrs[0]).await;
    tokio::io::AsyncWriteExt::write_all(&mut client, b"ping")
        .await
        .unwrap();
    assert_eq!(read_exact(&mut client, 4).await, b"ping");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = weft.context_switches();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let woke = weft.context_switches() - before;
    assert!(
        woke < 50,
        "an idle weft woke {woke} times in 2 s: something ticks with no guest call running"
    );
}
