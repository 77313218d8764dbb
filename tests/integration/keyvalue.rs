//! State kept by the host through `wasi:keyvalue`: a component built for
//! the standard interface runs unchanged; buckets are each service's own
//! unless shared, bounded by quotas; the counter counts once across
//! workers, a trap and a reload (embedded), and across processes on a
//! real `redis-server`, through an outage.

use std::net::SocketAddr;
use std::path::Path;

use tokio::io::AsyncWriteExt as _;
use weft_tests::{
    RedisServer, WeftProcess, closed_without_reply, connect, guest, read_response, read_until,
    scratch, within,
};

use crate::ops::{admin_addr, scrape, series};

/// `GET path` on a new connection: the status line and the body.
async fn get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut stream = connect(addr).await;
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let response = String::from_utf8(read_response(&mut stream, false).await).unwrap();
    let status = response.lines().next().unwrap_or_default().to_owned();
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    (status, body.to_owned())
}

/// Send each line of `script` on one connection and collect the answers.
async fn talk(addr: SocketAddr, script: &[&str]) -> Vec<String> {
    let mut stream = connect(addr).await;
    let mut answers = Vec::new();
    for line in script {
        stream
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        let answer = read_until(&mut stream, b"\n").await;
        answers.push(String::from_utf8(answer).unwrap().trim_end().to_owned());
    }
    answers
}

/// The component at `from` with a custom section added: the same code,
/// another digest, so that a reload swaps it in.
fn another_build(from: &Path, to: &Path) {
    let mut bytes = std::fs::read(from).unwrap();
    let name = b"weft-test-build";
    let payload: Vec<u8> = [&[name.len() as u8][..], name, b"2"].concat();
    bytes.push(0);
    bytes.push(payload.len() as u8);
    bytes.extend(payload);
    std::fs::write(to, bytes).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_standard_keyvalue_component_runs_unchanged() {
    let checked = tokio::process::Command::new(weft_tests::weft_binary())
        .env("WEFT_CACHE_DIR", weft_tests::test_cache_dir())
        .arg("check")
        .arg(guest("kv_standard"))
        .output()
        .await
        .unwrap();
    let printed = String::from_utf8_lossy(&checked.stdout);
    assert!(checked.status.success(), "{printed}");
    for interface in ["store", "atomics", "batch"] {
        let granted = format!("granted  wasi:keyvalue/{interface}@0.2.0-draft");
        assert!(printed.contains(&granted), "{printed}");
    }
    let kv = format!(
        "{}@tcp:0:interface=127.0.0.1",
        guest("kv_standard").display()
    );
    let (weft, addrs) = WeftProcess::spawn(&["serve", &kv], 1).await;
    let answers = talk(
        addrs[0],
        &[
            "get a",
            "open bad/name",
            "open b1",
            "get a",
            "set a 1",
            "get a",
            "exists a",
            "exists z",
            "incr n 5",
            "incr n 2",
            "incr a 9",
            "set t text",
            "incr t 1",
            "setmany x=1 y=2",
            "getmany x z y",
            "keys",
            "delmany x y",
            "del a",
            "keys",
        ],
    )
    .await;
    let expected = [
        "error: no bucket open",
        "error: no-such-store",
        "ok",
        "none",
        "ok",
        "1",
        "true",
        "false",
        "5",
        "7",
        "10",
        "ok",
        "error: the value is not a decimal number",
        "ok",
        "x=1 none y=2",
        "a n t x y",
        "ok",
        "ok",
        "n t",
    ];
    assert_eq!(answers, expected);
    // Another connection, the same bucket: the host keeps it.
    let answers = talk(addrs[0], &["open b1", "get n"]).await;
    assert_eq!(answers, ["ok", "7"]);
    weft.signal(libc::SIGINT);
    assert!(weft.wait().await.0.success());
}

/// A component built for `wasi:keyvalue@0.2.0-draft2` (Spin 3's) runs
/// too, with its signed increments and compare-and-swap, on either
/// backend.
#[tokio::test(flavor = "multi_thread")]
async fn a_draft2_component_runs_with_compare_and_swap_on_either_backend() {
    let redis = RedisServer::start().await;
    for backend in [
        "embedded".to_owned(),
        format!("redis://127.0.0.1:{}/0", redis.port),
    ] {
        let draft2 = format!(
            "{}@tcp:0:interface=127.0.0.1,kv={backend}",
            guest("kv_draft2").display()
        );
        let (weft, addrs) = WeftProcess::spawn(&["serve", &draft2], 1).await;
        let answers = talk(
            addrs[0],
            &[
                "open b",
                "incr n 5",
                "incr n -7",
                "cas c a b",
                "set c a",
                "cas c a b",
                "get c",
                "cas c a z",
                "race c mine",
                "get c",
                "keys",
            ],
        )
        .await;
        let expected = [
            "ok",
            "5",
            "-2",
            "holds none",
            "ok",
            "ok",
            "b",
            "holds b",
            "changed to intruder, retried: ok",
            "mine",
            "c n",
        ];
        assert_eq!(answers, expected, "on {backend}");
        weft.signal(libc::SIGINT);
        assert!(weft.wait().await.0.success());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn buckets_are_each_services_own_unless_shared_and_quotas_hold() {
    let kv = guest("kv_standard").display().to_string();
    let quotas = "kv-value-size=64,kv-keys=3,kv-bytes=100,kv-buckets=3";
    let first = format!("{kv}@tcp:0:interface=127.0.0.1,kv-shared=common,{quotas}");
    let second = format!("{kv}@tcp:0:interface=127.0.0.1,kv-shared=common");
    let off = format!("{kv}@tcp:0:interface=127.0.0.1,kv=off");
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
    let (a, b, c) = (addrs[0], addrs[1], addrs[2]);
    talk(a, &["open own", "set k mine", "open common", "set k ours"]).await;
    assert_eq!(
        talk(b, &["open own", "get k", "open common", "get k"]).await,
        ["ok", "none", "ok", "ours"],
        "a service's own bucket is its own; a shared one is shared"
    );
    assert_eq!(talk(c, &["open own"]).await, ["error: access-denied"]);

    let answers = talk(
        a,
        &[
            "open q",
            "setbig big 65",
            "setbig fits 64",
            "set one 1",
            "set two 2",
            "set three 3",
            "set one 11",
            "del two",
            "setbig two 30",
            "keys",
            "open third",
            "open fourth",
            "open own",
        ],
    )
    .await;
    assert_eq!(
        answers,
        [
            "ok",
            "error: the value of 65 bytes is over the service's kv-value-size of 64 bytes",
            "ok",
            "ok",
            "ok",
            "error: the bucket holds its most keys, kv-keys=3",
            "ok",
            "ok",
            "error: the bucket would hold more than kv-bytes=100 bytes",
            "fits one",
            "ok",
            "error: the service has its most buckets, kv-buckets=3",
            "ok",
        ]
    );
    let scraped = scrape(admin_addr(&weft)).await;
    let value = |name: &str| series(&scraped, name);
    let calls = |result: &str| {
        value(&format!(
            "weft_keyvalue_calls_total{{service=\"kv_standard\",result=\"{result}\"}}"
        ))
    };
    assert_eq!(
        (
            calls("value_size"),
            calls("keys"),
            calls("bytes"),
            calls("buckets")
        ),
        (1.0, 1.0, 1.0, 1.0)
    );
    assert_eq!(
        value(r#"weft_kv_bucket_keys{bucket="service:kv_standard/q"}"#),
        2.0
    );
    assert_eq!(
        value(r#"weft_kv_bucket_bytes{bucket="service:kv_standard/q"}"#),
        (4 + 64 + 3 + 2) as f64
    );
    assert_eq!(value(r#"weft_kv_bucket_keys{bucket="shared/common"}"#), 1.0);
    weft.signal(libc::SIGINT);
    assert!(weft.wait().await.0.success());
}

async fn the_count_survives_workers_a_trap_and_a_reload(kv_counter: &str) {
    let dir = scratch(&format!("{kv_counter}-reload"));
    std::fs::create_dir_all(&dir).unwrap();
    let component = dir.join("kv_counter.wasm");
    std::fs::copy(guest(kv_counter), &component).unwrap();
    let service = format!(
        "{}@tcp:0:interface=127.0.0.1,workers=2,config.crash=/crash",
        component.display()
    );
    let (mut weft, addrs) = WeftProcess::spawn(&["serve", &service], 1).await;
    let mut number = 0;
    for round in 0..3 {
        for _ in 0..10 {
            number += 1;
            let (status, body) = get(addrs[0], "/").await;
            assert_eq!(status, "HTTP/1.1 200 OK");
            assert_eq!(body, format!("I am request #{number}\n"));
        }
        match round {
            0 => {
                let mut crash = connect(addrs[0]).await;
                crash
                    .write_all(b"GET /crash HTTP/1.1\r\nHost: x\r\n\r\n")
                    .await
                    .unwrap();
                assert!(closed_without_reply(&mut crash).await);
                weft.wait_for("guest trapped").await;
            }
            1 => {
                another_build(&guest(kv_counter), &component);
                weft.signal(libc::SIGHUP);
                let reloaded = weft.wait_for("reloaded: ").await;
                assert!(reloaded.ends_with("kv_counter reloaded"), "{reloaded}");
            }
            _ => {}
        }
    }
    weft.signal(libc::SIGINT);
    assert!(weft.wait().await.0.success());
}

in_each_language!(the_count_survives_workers_a_trap_and_a_reload: rust => "kv-counter", python => "kv-counter-py");

#[tokio::test(flavor = "multi_thread")]
async fn two_processes_count_together_on_redis_through_a_trap_a_reload_and_an_outage() {
    let mut redis = RedisServer::start().await;
    let dir = scratch("kv-counter-redis");
    std::fs::create_dir_all(&dir).unwrap();
    let component = dir.join("kv_counter.wasm");
    std::fs::copy(guest("kv_counter"), &component).unwrap();
    let service = format!(
        "{}@tcp:0:interface=127.0.0.1,workers=2,kv=redis://127.0.0.1:{}/0,config.crash=/crash",
        component.display(),
        redis.port
    );
    let (mut first, a) = WeftProcess::spawn(&["serve", &service], 1).await;
    let (second, b) = WeftProcess::spawn(&["serve", &service], 1).await;
    let (a, b) = (a[0], b[0]);
    for n in 1..=30 {
        let (status, body) = get(if n % 2 == 0 { a } else { b }, "/").await;
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert_eq!(body, format!("I am request #{n}\n"));
        if n == 10 {
            let mut crash = connect(b).await;
            crash
                .write_all(b"GET /crash HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
            assert!(closed_without_reply(&mut crash).await);
        }
        if n == 20 {
            another_build(&guest("kv_counter"), &component);
            first.signal(libc::SIGHUP);
            let reloaded = first.wait_for("reloaded: ").await;
            assert!(reloaded.ends_with("kv_counter reloaded"), "{reloaded}");
        }
    }

    redis.stop().await;
    for addr in [a, b, a, b] {
        let (status, body) = get(addr, "/").await;
        assert_eq!(status, "HTTP/1.1 503 Service Unavailable");
        assert_eq!(body, "The count is unavailable\n");
    }
    redis.restart().await;
    // A fresh, empty Redis: each process reconnects by itself, and
    // counting starts again with nothing counted twice.
    let mut counted = Vec::new();
    for addr in [a, b] {
        let number = within(async {
            loop {
                let (status, body) = get(addr, "/").await;
                if status == "HTTP/1.1 200 OK" {
                    break body;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        })
        .await;
        counted.push(number);
    }
    assert_eq!(counted, ["I am request #1\n", "I am request #2\n"]);
    for weft in [first, second] {
        weft.signal(libc::SIGINT);
        let (status, log) = weft.wait().await;
        assert!(status.success(), "{log}");
    }
}

/// State in the host makes one instance per connection the safe way to
/// serve a stateful protocol: the crashing request cuts only its own
/// connection, and the count every connection shares goes on.
#[tokio::test(flavor = "multi_thread")]
async fn with_an_instance_per_connection_a_crash_cuts_one_client_and_the_count_goes_on() {
    let service = format!(
        "{}@tcp:0:interface=127.0.0.1,isolation=connection,config.crash=/crash",
        guest("kv_counter").display()
    );
    let (weft, addrs) = WeftProcess::spawn(&["serve", &service], 1).await;
    let mut bystander = connect(addrs[0]).await;
    let request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    bystander.write_all(request).await.unwrap();
    let response = read_response(&mut bystander, false).await;
    assert!(response.ends_with(b"I am request #1\n"));
    for _ in 0..2 {
        let mut crash = connect(addrs[0]).await;
        crash
            .write_all(b"GET /crash HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        assert!(closed_without_reply(&mut crash).await);
    }
    assert_eq!(get(addrs[0], "/").await.1, "I am request #2\n");
    bystander.write_all(request).await.unwrap();
    let response = read_response(&mut bystander, false).await;
    assert!(
        response.ends_with(b"I am request #3\n"),
        "the bystander's connection is still open and counting"
    );
    weft.signal(libc::SIGINT);
    assert!(weft.wait().await.0.success());
}

/// A guest that writes as much as it can into the embedded store makes
/// the host hold its quota and no more: writes past `kv-bytes` are
/// refused, and weft's memory grows by about the quota.
#[tokio::test(flavor = "multi_thread")]
async fn a_guest_filling_the_store_makes_the_host_hold_its_quota_and_no_more() {
    let service = format!(
        "{}@tcp:0:interface=127.0.0.1,kv-bytes=8MiB,kv-value-size=64KiB,kv-buckets=1",
        guest("kv_standard").display()
    );
    let (weft, addrs) = WeftProcess::spawn(&["serve", &service], 1).await;
    assert_eq!(talk(addrs[0], &["open a"]).await, ["ok"]);
    let before = weft.memory_kib("VmRSS");
    let mut script = vec!["open a".to_owned()];
    script.extend((0..1000).map(|n| format!("setbig key{n} 60000")));
    script.push("open b".into());
    let script: Vec<&str> = script.iter().map(String::as_str).collect();
    let answers = talk(addrs[0], &script).await;
    let stored = answers.iter().filter(|answer| *answer == "ok").count() - 1;
    // 8 MiB holds 139 values of 60,000 bytes and their keys.
    assert_eq!(stored, 139, "{:?}", &answers[..3]);
    assert_eq!(
        answers[140],
        "error: the bucket would hold more than kv-bytes=8388608 bytes"
    );
    assert_eq!(
        answers.last().unwrap(),
        "error: the service has its most buckets, kv-buckets=1"
    );
    let grown_mib = weft.memory_kib("VmRSS").saturating_sub(before) / 1024;
    assert!(
        grown_mib < 24,
        "weft grew by {grown_mib} MiB for an 8 MiB quota"
    );
    weft.signal(libc::SIGINT);
    assert!(weft.wait().await.0.success());
}

/// The Rust SDK's compare-and-swap and retrying update, from a guest
/// built on it.
#[tokio::test(flavor = "multi_thread")]
async fn the_rust_sdk_swaps_and_updates() {
    let control = format!("{}@tcp:0:interface=127.0.0.1", guest("control").display());
    let (weft, addrs) = WeftProcess::spawn(&["serve", &control], 1).await;
    let mut stream = connect(addrs[0]).await;
    let mut answers = Vec::new();
    for line in [
        "kv-swap k - a",
        "kv-swap k - b",
        "kv-swap k a b",
        "kv-append k c",
        "kv-append fresh x",
    ] {
        weft_tests::send_line(&mut stream, line).await;
        answers.push(weft_tests::line(&mut stream).await);
    }
    assert_eq!(answers, ["swapped", "kept", "swapped", "bc", "x"]);
    weft.signal(libc::SIGINT);
    assert!(weft.wait().await.0.success());
}
