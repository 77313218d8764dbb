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

/// weft raises its open-file limit to what its services allow (every
/// connection is a file), as far as it may: the hard limit too where it
/// holds CAP_SYS_RESOURCE, else the soft limit to the hard one. It warns
/// only if the limit is still short.
#[tokio::test(flavor = "multi_thread")]
async fn the_open_file_limit_is_raised_to_hold_every_connection() {
    let allowed = 30_000u64;
    let service = format!(
        "{}@tcp:0:interface=127.0.0.1,max-connections={allowed}",
        guest("echo").display()
    );
    // Started with a soft limit well below the hard one, as a login
    // shell's `ulimit -Sn 1024` leaves it.
    let (mut weft, _) = WeftProcess::spawn_with(&["serve", &service], 1, |command| {
        // SAFETY: the hook runs in the child before exec, and only calls
        // getrlimit and setrlimit, which are async-signal-safe.
        unsafe {
            command.pre_exec(|| {
                let mut limit = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
                limit.rlim_cur = limit.rlim_cur.min(1024);
                libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
                Ok(())
            });
        }
    })
    .await;
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", weft.pid())).unwrap();
    let open_files: Vec<u64> = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .expect("an open-file limit")
        .split_whitespace()
        .filter_map(|field| field.parse().ok())
        .collect();
    let (soft, hard) = (open_files[0], open_files[1]);
    assert_eq!(soft, hard, "the soft limit is raised to the hard one");
    if may_raise_the_hard_limit() {
        assert!(soft >= allowed, "weft may raise the hard limit too: {soft}");
    }
    let warned = weft
        .printed()
        .iter()
        .any(|line| line.contains("the open-file limit is"));
    assert_eq!(warned, soft < allowed, "warn only if still short: {soft}");
}

/// Whether this process (and so the weft it starts) holds CAP_SYS_RESOURCE,
/// which raising a hard limit needs: root in a container may not.
fn may_raise_the_hard_limit() -> bool {
    const CAP_SYS_RESOURCE: u32 = 24;
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let effective = status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|caps| u64::from_str_radix(caps.trim(), 16).ok())
        .unwrap_or(0);
    effective & (1 << CAP_SYS_RESOURCE) != 0
}
