//! The `weft` binary: bad input fails with one clear line before anything
//! listens; signals close connections, let guests see `connection-lost`,
//! and exit 0; with no arguments it serves the bundled guests.

use std::net::TcpListener;

use tokio::io::AsyncWriteExt;
use weft_tests::{
    WeftProcess, connect, exchange, guest, read_exact, read_to_end, read_until, run_weft, scratch,
};

/// Run `weft serve SERVICE`, assert that it failed with one error line
/// (after any progress logged on the way), and return that line.
async fn serve_fails(service: &str) -> String {
    let (status, stderr) = run_weft(&["serve", service]).await;
    assert!(!status.success(), "weft serve {service} should fail");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("weft: ")).collect();
    assert_eq!(errors.len(), 1, "one error line: {stderr}");
    assert_eq!(
        stderr.lines().last(),
        Some(errors[0]),
        "the error comes last: {stderr}"
    );
    assert!(
        !stderr.contains(" ERROR ") && !stderr.contains(" WARN "),
        "{stderr}"
    );
    errors[0].to_owned()
}

fn file(name: &str, bytes: &[u8]) -> String {
    let path = scratch(name);
    std::fs::write(&path, bytes).expect("writes a scratch file");
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_endpoints_are_refused() {
    let echo = guest("echo").display().to_string();
    for (endpoint, reason) in [
        ("sctp:53", "unknown endpoint type `sctp`"),
        ("tcp:http", "port `http` is not a number from 0 to 65535"),
        (
            "tcp:1:localhost",
            "interface `localhost` is not an IP address",
        ),
        ("tcp:1:shape=round", "unknown parameter `shape`"),
    ] {
        let stderr = serve_fails(&format!("{echo}@{endpoint}")).await;
        assert!(
            stderr.contains(&format!("bad endpoint `{endpoint}`: {reason}")),
            "{stderr}"
        );
    }
    let stderr = serve_fails(&echo).await;
    assert!(stderr.contains("is not COMPONENT@ENDPOINT"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn files_that_are_not_weft_components_are_refused() {
    let cases = [
        ("missing", "/no/such/dir/guest.wasm".to_owned(), "cannot read component /no/such/dir/guest.wasm"),
        ("text", file("notes.wasm", b"hello"), "it is not WebAssembly"),
        ("core module", file("core.wasm", b"\0asm\x01\0\0\0"), "it is a core WebAssembly module, not a component"),
        (
            "no weft export",
            file("empty.wasm", &wat::parse_str("(component)").unwrap()),
            "does not export weft:protocol/protocol@0.2.6 (or weft:protocol/datagram-handler@0.2.6)",
        ),
        (
            "a future version",
            file(
                "future.wasm",
                &wat::parse_str(r#"(component (instance $i) (export "weft:protocol/protocol@0.9.0" (instance $i)))"#).unwrap(),
            ),
            "it exports weft:protocol/protocol@0.9.0, but this host serves weft:protocol/protocol@0.2.6 and weft:protocol/protocol@0.2.5, weft:protocol/protocol@0.2.4, weft:protocol/protocol@0.2.3, weft:protocol/protocol@0.2.2, weft:protocol/protocol@0.2.1, weft:protocol/protocol@0.2.0, weft:protocol/protocol@0.1.0",
        ),
        (
            "unknown import",
            file(
                "imports.wasm",
                &wat::parse_str(r#"(component (import "weft:nothing/here@1.0.0" (instance (export "f" (func)))))"#).unwrap(),
            ),
            "it imports `weft:nothing/here@1.0.0`, which weft does not provide",
        ),
        ("truncated", file("cut.wasm", &std::fs::read(guest("echo")).unwrap()[..4000]), "is not a valid WebAssembly component"),
    ];
    for (case, path, reason) in cases {
        let stderr = serve_fails(&format!("{path}@tcp:0:interface=127.0.0.1")).await;
        assert!(stderr.contains(reason), "{case}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_component_weft_refuses_is_refused_before_it_is_compiled() {
    let component = wat::parse_str(
        r#"(component
            (import "wasi:http/outgoing-handler@0.2.0" (instance))
            (core module $m (func (export "f")))
            (instance $i)
            (export "weft:protocol/protocol@0.2.0" (instance $i)))"#,
    )
    .unwrap();
    let path = file("http_client.wasm", &component);
    let (status, stderr) = run_weft(&["serve", &format!("{path}@tcp:0:interface=127.0.0.1")]).await;
    assert!(!status.success());
    assert!(
        stderr
            .contains("it imports `wasi:http/outgoing-handler@0.2.0`, which weft does not provide"),
        "{stderr}"
    );
    assert!(!stderr.contains("compil"), "nothing was compiled: {stderr}");
}

/// A memory cap below what a component needs at start is refused before
/// it compiles (seconds for a Python guest), in units, naming the
/// component's minimum; `weft check` says the same.
#[tokio::test(flavor = "multi_thread")]
async fn a_memory_cap_below_the_components_start_is_refused_before_compiling() {
    let python = guest("echo_py").display().to_string();
    // What the component needs, as weft says it: "the 13.3MiB this ...".
    let needs = |said: &str| -> f64 {
        let figure = said
            .split("is below the ")
            .nth(1)
            .and_then(|rest| rest.split("MiB this component needs at start").next())
            .unwrap_or_else(|| panic!("no minimum in: {said}"));
        figure
            .parse()
            .unwrap_or_else(|_| panic!("{figure} in: {said}"))
    };
    let stderr = serve_fails(&format!("{python}@tcp:0:interface=127.0.0.1,memory=8MiB")).await;
    assert!(
        stderr.contains("cannot be served: memory=8MiB is below the "),
        "{stderr}"
    );
    let minimum = needs(&stderr);
    assert!((8.0..64.0).contains(&minimum), "{stderr}");
    let (status, stderr) = run_weft(&[
        "serve",
        "--no-cache",
        &format!("{python}@tcp:0:interface=127.0.0.1,memory=8MiB"),
    ])
    .await;
    assert!(!status.success());
    assert!(!stderr.contains("compil"), "nothing was compiled: {stderr}");
    let output = tokio::process::Command::new(weft_tests::weft_binary())
        .args(["check", "--no-cache", "--memory", "8MiB", &python])
        .output()
        .await
        .unwrap();
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "{out}");
    assert!(out.contains("weft refuses it: "), "{out}");
    assert_eq!(needs(&out), minimum, "{out}");
    // Just below is below.
    let just_below = minimum.floor();
    let stderr = serve_fails(&format!(
        "{python}@tcp:0:interface=127.0.0.1,memory={just_below}MiB"
    ))
    .await;
    assert!(
        stderr.contains(&format!("memory={just_below}MiB is below the {minimum}MiB")),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn check_says_what_a_component_is_and_whether_weft_serves_it() {
    let check = |paths: Vec<String>| async move {
        let mut args = vec!["check".to_owned()];
        args.extend(paths);
        let output = tokio::process::Command::new(weft_tests::weft_binary())
            .env("WEFT_CACHE_DIR", weft_tests::test_cache_dir())
            .args(&args)
            .output()
            .await
            .unwrap();
        (
            output.status,
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    };
    let echo = guest("echo").display().to_string();
    let old = guest("echo_v0_1").display().to_string();
    let older = guest("echo_v0_2").display().to_string();
    let previous = guest("echo_v0_2_1").display().to_string();
    let (status, out) = check(vec![
        echo.clone(),
        old.clone(),
        older.clone(),
        previous.clone(),
    ])
    .await;
    assert!(status.success(), "{out}");
    for expected in [
        format!("{echo}: weft serves it\n  built for  weft:protocol@0.2.6\n"),
        format!("{previous}: weft serves it\n  built for  weft:protocol@0.2.1\n"),
        format!("{old}: weft serves it\n  built for  weft:protocol@0.1.0\n"),
        format!("{older}: weft serves it\n  built for  weft:protocol@0.2.0\n"),
        "  language   Rust (rustc ".to_owned(),
        "  imports    granted  weft:protocol/types@0.2.6\n".to_owned(),
        "             denied   wasi:cli/environment@0.2.6\n".to_owned(),
    ] {
        assert!(out.contains(&expected), "{expected:?} in:\n{out}");
    }
    let refused = file(
        "check_refused.wasm",
        &wat::parse_str(
            r#"(component
                (import "wasi:http/outgoing-handler@0.2.0" (instance))
                (instance $i)
                (export "weft:protocol/protocol@0.2.0" (instance $i)))"#,
        )
        .unwrap(),
    );
    let (status, out) = check(vec![echo.clone(), refused.clone()]).await;
    assert!(!status.success(), "one of them is refused: {out}");
    assert!(out.contains(&format!("{echo}: weft serves it")), "{out}");
    assert!(
        out.contains(&format!("{refused}: weft refuses it: ")),
        "{out}"
    );
    assert!(
        out.contains("  imports    refused  wasi:http/outgoing-handler@0.2.0\n"),
        "{out}"
    );
}

/// `weft check` says which world a component is built for, and so where
/// it can be served: a datagram guest on `udp:` only.
#[tokio::test(flavor = "multi_thread")]
async fn check_says_which_world_a_component_is_built_for() {
    let output = tokio::process::Command::new(weft_tests::weft_binary())
        .env("WEFT_CACHE_DIR", weft_tests::test_cache_dir())
        .args(["check"])
        .arg(guest("udp_echo"))
        .arg(guest("echo"))
        .output()
        .await
        .unwrap();
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{out}");
    let echo = format!("{}: ", guest("echo").display());
    let (datagram, stream) = out.split_once(&echo).expect("two reports");
    assert!(
        datagram.contains("world      datagram-service: datagrams, on a udp: endpoint"),
        "{datagram}"
    );
    assert!(
        stream.contains("world      stateful-service: connections, on tcp:, tcp6:, ssl: or unix:"),
        "{stream}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_config_file_serves_what_the_command_line_would() {
    let echo = guest("echo").display().to_string();
    let counter = guest("http_counter").display().to_string();
    let config = file(
        "weft-served.toml",
        format!(
            r#"
shutdown-grace = "2s"

[defaults]
memory = "16MiB"

[[service]]
name = "front"
component = "{echo}"
endpoint = "tcp:0:interface=127.0.0.1"
limits = {{ deadline = "50ms" }}

[[service]]
component = "{counter}"
endpoint = "tcp:0:interface=127.0.0.1"
"#
        )
        .as_bytes(),
    );
    let (weft, addrs) = WeftProcess::spawn(&["--config", &config], 2).await;
    assert!(
        weft.seen()
            .iter()
            .any(|l| l.contains("serving on") && l.contains(r#"service="front""#)),
        "named as the file says: {:?}",
        weft.seen()
    );
    let mut client = connect(addrs[0]).await;
    client.write_all(b"from a file").await.unwrap();
    assert_eq!(read_exact(&mut client, 11).await, b"from a file");
    let answer = exchange(addrs[1], b"GET / HTTP/1.0\r\n\r\n").await;
    assert!(
        answer.ends_with(b"I am request #1\n"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    weft.signal(libc::SIGINT);
    assert!(weft.wait().await.0.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_config_file_is_refused_with_every_mistake_and_its_line() {
    let echo = guest("echo").display().to_string();
    let config = file(
        "weft-bad.toml",
        format!(
            "[[service]]\ncomponent = \"{echo}\"\nendpoint = \"tcp:0\"\nlimits = {{ memory = \"1TiB\", deadline = \"soon\" }}\n"
        )
        .as_bytes(),
    );
    let (status, stderr) = run_weft(&["--config", &config]).await;
    assert!(!status.success());
    assert!(
        stderr.starts_with(&format!("weft: {config}:4: ")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{config}:4: memory=1TiB: expected at most 4GiB")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{config}:4: deadline=soon: expected a duration")),
        "{stderr}"
    );
    assert!(
        !stderr.contains("compil") && !stderr.contains("serving on"),
        "{stderr}"
    );
    let good = file(
        "weft-good.toml",
        format!("[[service]]\ncomponent = \"{echo}\"\nendpoint = \"tcp:0\"\n").as_bytes(),
    );
    let (status, stderr) = run_weft(&["--config", &good, "--memory", "8MiB"]).await;
    assert!(!status.success());
    assert!(
        stderr.contains("limit flags do not combine with --config"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cache_is_pruned_least_recently_used_first_and_cleared() {
    let dir = scratch("pruned-cache");
    std::fs::create_dir_all(&dir).unwrap();
    let now = std::time::SystemTime::now();
    for (name, age) in [("a", 30), ("b", 20), ("c", 10)] {
        let path = dir.join(format!("{name}.cwasm"));
        std::fs::write(&path, vec![0u8; 1 << 20]).unwrap();
        let entry = std::fs::File::options().write(true).open(&path).unwrap();
        entry
            .set_modified(now - std::time::Duration::from_secs(age))
            .unwrap();
    }
    let cache = |args: &[&str]| {
        let mut command = tokio::process::Command::new(weft_tests::weft_binary());
        command.args(args).arg("--cache-dir").arg(&dir);
        async move { command.output().await.unwrap() }
    };
    let pruned = cache(&["cache", "prune", "--cache-max-size", "2MiB"]).await;
    let said = String::from_utf8_lossy(&pruned.stdout);
    assert!(pruned.status.success(), "{said}");
    assert!(
        said.ends_with("removed 1 entries (1 MiB); 2 left (2 MiB)\n"),
        "{said}"
    );
    assert!(!dir.join("a.cwasm").exists() && dir.join("c.cwasm").exists());
    let cleared = cache(&["cache", "clear"]).await;
    let said = String::from_utf8_lossy(&cleared.stdout);
    assert!(
        said.ends_with("removed 2 entries (2 MiB); 0 left (0 MiB)\n"),
        "{said}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_port_in_use_fails_before_anything_is_served() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let free = TcpListener::bind("127.0.0.1:0").unwrap();
    let free_port = free.local_addr().unwrap().port();
    drop(free);
    let echo = guest("echo").display().to_string();
    let (status, stderr) = run_weft(&[
        "serve",
        &format!("{echo}@tcp:{free_port}:interface=127.0.0.1"),
        &format!("{echo}@tcp:{port}:interface=127.0.0.1"),
    ])
    .await;
    assert!(!status.success());
    assert!(
        stderr.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{stderr}"
    );
    assert!(stderr.contains("in use"), "{stderr}");
    assert!(
        stderr.contains("service echo#2: "),
        "names the service: {stderr}"
    );
    assert!(
        !stderr.contains("serving on"),
        "nothing was served: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn json_logs_are_one_object_per_line() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let echo = guest("echo").display().to_string();
    // Loading logs a line; the port in use then ends the run.
    let (status, stderr) = run_weft(&[
        "serve",
        "--log-format",
        "json",
        &format!("{echo}@tcp:{port}:interface=127.0.0.1"),
    ])
    .await;
    assert!(!status.success());
    let records: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.starts_with("weft: "))
        .collect();
    assert!(!records.is_empty(), "{stderr}");
    for record in records {
        assert!(
            record.starts_with(r#"{"timestamp":""#)
                && record.contains(r#""level":"INFO""#)
                && record.ends_with('}'),
            "{record}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_services_on_one_port_are_refused_naming_both() {
    let free = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let echo = guest("echo").display().to_string();
    let chat = guest("chat").display().to_string();
    // With several workers each, both would bind through SO_REUSEPORT and
    // the kernel would hand each service some of the other's connections.
    for extra in ["", ",workers=2"] {
        let (status, stderr) = run_weft(&[
            "serve",
            &format!("{echo}@tcp:{port}:interface=127.0.0.1{extra}"),
            &format!("{chat}@tcp:{port}{extra}"),
        ])
        .await;
        assert!(!status.success(), "{extra}: {stderr}");
        let expected = format!(
            "weft: services echo (tcp:port={port}:interface=127.0.0.1) and chat \
             (tcp:port={port}:interface=0.0.0.0) both listen on port {port}"
        );
        assert!(stderr.contains(&expected), "{extra}: {stderr}");
        assert!(!stderr.contains("serving on"), "{extra}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn help_shows_an_example_for_each_flag() {
    let (status, _) = run_weft(&["--help"]).await;
    assert!(status.success());
    let help = String::from_utf8(
        tokio::process::Command::new(weft_tests::weft_binary())
            .args(["serve", "--help"])
            .output()
            .await
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(help.contains("Example: echo.wasm@tcp:1234"), "{help}");
    assert!(
        help.contains("Example: --guest-dir target/wasm32-wasip2/release"),
        "{help}"
    );
}

/// SIGINT stops at once: no drain delay, open connections closed (the
/// guest hears connection-lost), exit 0. SIGTERM's drain is drain.rs's.
#[tokio::test(flavor = "multi_thread")]
async fn sigint_closes_connections_tells_guests_and_exits_zero() {
    let hostile = guest("hostile").display().to_string();
    let (mut weft, addrs) = WeftProcess::spawn(
        &["serve", &format!("{hostile}@tcp:0:interface=127.0.0.1")],
        1,
    )
    .await;
    let mut client = connect(addrs[0]).await;
    client.write_all(b"hello\r\n").await.unwrap();
    assert_eq!(read_until(&mut client, b"\r\n").await, b"hello\r\n");
    weft.signal(libc::SIGINT);
    assert_eq!(
        read_to_end(&mut client).await,
        b"",
        "the connection is closed"
    );
    weft.wait_for("connection lost: lost").await;
    let (status, stderr) = weft.wait().await;
    assert!(status.success(), "exit 0: {status:?}\n{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_with_nothing_changed_keeps_every_connection() {
    let echo = guest("echo").display().to_string();
    let (mut weft, addrs) =
        WeftProcess::spawn(&["serve", &format!("{echo}@tcp:0:interface=127.0.0.1")], 1).await;
    let mut before = connect(addrs[0]).await;
    before.write_all(b"one").await.unwrap();
    assert_eq!(read_exact(&mut before, 3).await, b"one");
    weft.signal(libc::SIGHUP);
    let reloaded = weft.wait_for("reloaded: ").await;
    assert!(reloaded.ends_with("reloaded: echo unchanged"), "{reloaded}");
    before.write_all(b"two").await.unwrap();
    assert_eq!(read_exact(&mut before, 3).await, b"two", "still open");
    let mut after = connect(addrs[0]).await;
    after.write_all(b"three").await.unwrap();
    assert_eq!(read_exact(&mut after, 5).await, b"three", "still serving");
    weft.signal(libc::SIGINT);
    assert!(weft.wait().await.0.success());
}

/// SIGINT while a reload is still compiling (seconds, for a Python
/// guest) exits at once: the compile is dropped, not waited for.
#[tokio::test(flavor = "multi_thread")]
async fn sigint_during_a_reloads_compile_exits_at_once() {
    let dir = scratch("reload-compiling");
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("weft.toml");
    let service = |name: &str, component: std::path::PathBuf| {
        format!(
            "[[service]]\nname = \"{name}\"\ncomponent = \"{}\"\n\
             endpoint = \"tcp:0:interface=127.0.0.1\"\n",
            component.display()
        )
    };
    let echo = service("echo", guest("echo"));
    std::fs::write(&config, &echo).unwrap();
    let config_arg = config.display().to_string();
    let (mut weft, _) = WeftProcess::spawn(&["--no-cache", "--config", &config_arg], 1).await;
    std::fs::write(&config, echo + &service("python", guest("echo_py"))).unwrap();
    weft.signal(libc::SIGHUP);
    weft.wait_for("compiling ").await;
    weft.signal(libc::SIGINT);
    let (status, stderr) = weft.wait().await;
    assert!(status.success(), "{stderr}");
    assert!(
        !stderr
            .lines()
            .any(|line| line.contains("compiled ") && line.contains("echo_py")),
        "the compile was waited for:\n{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_waits_for_a_peer_that_does_not_read_only_the_grace_given() {
    let echo = guest("echo").display().to_string();
    let (mut weft, addrs) = WeftProcess::spawn(
        &[
            "serve",
            "--shutdown-grace",
            "300ms",
            &format!("{echo}@tcp:0:interface=127.0.0.1"),
        ],
        1,
    )
    .await;
    // A peer that sends 8 MiB and reads none of the echo: its output
    // cannot be flushed, so shutdown waits for it until the grace ends.
    let mut deaf = connect(addrs[0]).await;
    let sending = tokio::spawn(async move {
        let _ = deaf.write_all(&vec![b'x'; 8 << 20]).await;
        deaf
    });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    weft.signal(libc::SIGINT);
    weft.wait_for("connections still open after 300ms; exiting anyway")
        .await;
    let (status, stderr) = weft.wait().await;
    assert!(status.success(), "{stderr}");
    sending.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trap_is_logged_with_its_cause() {
    let hostile = guest("hostile").display().to_string();
    let (mut weft, addrs) = WeftProcess::spawn(
        &["serve", &format!("{hostile}@tcp:0:interface=127.0.0.1")],
        1,
    )
    .await;
    let mut client = connect(addrs[0]).await;
    client.write_all(b"panic\r\n").await.unwrap();
    assert_eq!(read_to_end(&mut client).await, b"");
    let line = weft.wait_for("guest trapped").await;
    assert!(line.contains("data-received"), "{line}");
    assert!(line.contains("hostile"), "the service is named: {line}");
    assert!(line.contains("connections=1"), "{line}");
    weft.signal(libc::SIGINT);
    let (status, stderr) = weft.wait().await;
    assert!(status.success());
    // The guest's own panic message, but not Rust's hint to set
    // RUST_BACKTRACE, which an operator cannot act on: weft's line above
    // carries the guest backtrace.
    assert!(stderr.contains("asked to panic"), "{stderr}");
    assert!(!stderr.contains("RUST_BACKTRACE"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn guest_stdout_and_stderr_reach_the_log_tagged_with_the_service() {
    let hostile = guest("hostile").display().to_string();
    let (mut weft, addrs) = WeftProcess::spawn(
        &["serve", &format!("{hostile}@tcp:0:interface=127.0.0.1")],
        1,
    )
    .await;
    let mut client = connect(addrs[0]).await;
    client.write_all(b"print\r\n").await.unwrap();
    let stdout = weft.wait_for("to stdout").await;
    assert!(
        stdout.contains(r#"service="hostile""#) && stdout.contains(r#"stream="stdout""#),
        "{stdout}"
    );
    assert!(stdout.contains(" INFO "), "{stdout}");
    let stderr = weft.wait_for("to stderr").await;
    assert!(stderr.contains(r#"stream="stderr""#), "{stderr}");
    assert!(
        stderr.contains(" WARN "),
        "a guest's stderr is a warning: {stderr}"
    );
    weft.signal(libc::SIGINT);
    assert!(weft.wait().await.0.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn lines_held_by_the_sdk_print_reach_the_log_before_the_panic_after_them() {
    let hostile = guest("hostile").display().to_string();
    let (mut weft, addrs) = WeftProcess::spawn(
        &["serve", &format!("{hostile}@tcp:0:interface=127.0.0.1")],
        1,
    )
    .await;
    let mut client = connect(addrs[0]).await;
    client.write_all(b"print-held\r\n").await.unwrap();
    assert_eq!(read_to_end(&mut client).await, b"");
    weft.wait_for("guest trapped").await;
    let position = |needle: &str| {
        weft.seen()
            .iter()
            .position(|line| line.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in {:#?}", weft.seen()))
    };
    let (first, second) = (position("held line 1"), position("held line 2"));
    let panicked = position("panicked after printing");
    assert!(first < second && second < panicked, "{:#?}", weft.seen());
    assert!(weft.seen()[second].contains(r#"stream="stdout""#));
    weft.signal(libc::SIGINT);
    assert!(weft.wait().await.0.success());
}

/// Start `weft serve COMPONENT@tcp:0 EXTRA...` with its own cache
/// directory; returns the log line saying how the component was loaded.
async fn load_line(component: &std::path::Path, cache: &std::path::Path, extra: &[&str]) -> String {
    let lines = load_lines(component, cache, extra).await;
    lines
        .iter()
        .find(|line| line.contains("compiled ") || line.contains("from the compile cache"))
        .cloned()
        .unwrap_or_else(|| lines.join("\n"))
}

/// What `weft serve COMPONENT@tcp:0 EXTRA...`, with its own cache
/// directory, logged until it served.
async fn load_lines(
    component: &std::path::Path,
    cache: &std::path::Path,
    extra: &[&str],
) -> Vec<String> {
    let service = format!("{}@tcp:0:interface=127.0.0.1", component.display());
    let cache = cache.display().to_string();
    let mut args = vec!["serve", "--cache-dir", &cache, &service];
    args.extend_from_slice(extra);
    let (weft, _) = WeftProcess::spawn(&args, 1).await;
    let lines = weft.seen().to_vec();
    weft.signal(libc::SIGINT);
    assert!(weft.wait().await.0.success());
    lines
}

/// A component compiled for the first time reuses Cranelift's work for
/// the functions it shares with one compiled before with the same engine
/// settings (every Rust guest carries the same allocator and formatting
/// code, every Python guest the same CPython), through the file of
/// compiled functions beside the cache's entries.
#[tokio::test(flavor = "multi_thread")]
async fn a_first_compile_reuses_the_functions_compiled_before() {
    let cache = scratch("function-cache");
    let _ = std::fs::remove_dir_all(&cache);
    let reused = |lines: Vec<String>| -> (usize, usize) {
        let line = lines
            .iter()
            .find(|line| line.contains("functions reused from earlier compiles"))
            .unwrap_or_else(|| panic!("no line on reused functions in:\n{}", lines.join("\n")));
        let words: Vec<&str> = line.split_whitespace().collect();
        let at = words.iter().position(|word| *word == "functions").unwrap();
        (
            words[at - 3].parse().unwrap(),
            words[at - 1].parse().unwrap(),
        )
    };
    // Alone, a component reuses only its own functions that are alike
    // (one compile of identical bodies in its modules).
    let alone = scratch("function-cache-alone");
    let _ = std::fs::remove_dir_all(&alone);
    let (own, functions) = reused(load_lines(&guest("chat"), &alone, &[]).await);
    assert!(
        own < functions / 2,
        "chat alone reused {own} of {functions}"
    );
    let (_, echo_functions) = reused(load_lines(&guest("echo"), &cache, &[]).await);
    assert!(echo_functions > 100, "echo has {echo_functions} functions");
    let (found, looked_up) = reused(load_lines(&guest("chat"), &cache, &[]).await);
    assert_eq!(looked_up, functions);
    assert!(
        found > own + 100,
        "after echo's compile chat reused {found} of its {functions} functions, alone {own}"
    );
    // Other engine settings compile other code, kept in another file.
    let isolated = load_lines(&guest("chat"), &cache, &["--isolation", "connection"]).await;
    assert!(reused(isolated).0 < found);
    let _ = std::fs::remove_dir_all(&alone);
    let files = std::fs::read_dir(&cache).unwrap().flatten();
    let functions = files.filter(|entry| entry.path().extension().unwrap() == "functions");
    assert_eq!(
        functions.count(),
        2,
        "one file of functions per engine setting"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn compiled_components_are_cached_by_content_and_engine_settings() {
    let cache = scratch("compile-cache");
    let _ = std::fs::remove_dir_all(&cache);
    let component = scratch("cached.wasm");
    std::fs::copy(guest("echo"), &component).unwrap();

    assert!(
        load_line(&component, &cache, &[])
            .await
            .contains("compiled ")
    );
    assert!(
        load_line(&component, &cache, &[])
            .await
            .contains("from the compile cache")
    );
    // Settings that change the code compile anew: isolated services
    // reserve memory differently, so their bounds checks differ.
    let isolated = load_line(&component, &cache, &["--isolation", "connection"]).await;
    assert!(isolated.contains("compiled "), "{isolated}");
    // Settings that do not change the code share the entry.
    let stack = load_line(&component, &cache, &["--stack", "1MiB"]).await;
    assert!(stack.contains("from the compile cache"), "{stack}");
    // Other bytes at the same path are another component.
    std::fs::copy(guest("chat"), &component).unwrap();
    assert!(
        load_line(&component, &cache, &[])
            .await
            .contains("compiled ")
    );
    // A corrupt entry is ignored and rewritten, never trusted.
    for entry in std::fs::read_dir(&cache).unwrap() {
        std::fs::write(entry.unwrap().path(), b"garbage").unwrap();
    }
    assert!(
        load_line(&component, &cache, &[])
            .await
            .contains("compiled ")
    );
    assert!(
        load_line(&component, &cache, &[])
            .await
            .contains("from the compile cache")
    );
}

/// `weft` alone serves the bundled guests at the reference ports.
#[tokio::test(flavor = "multi_thread")]
async fn a_copied_binary_says_how_to_find_the_guests() {
    let copy = scratch("copied-weft");
    std::fs::create_dir_all(&copy).unwrap();
    let binary = copy.join("weft");
    std::fs::copy(weft_tests::weft_binary(), &binary).unwrap();
    // A process another test forks while the copy is open for writing
    // holds it open until it execs: until then, running it is refused.
    let mut tries = 0;
    let output = loop {
        let run = tokio::process::Command::new(&binary)
            .env("WEFT_CACHE_DIR", copy.join("cache"))
            .stdin(std::process::Stdio::null())
            .output()
            .await;
        match run {
            Err(error) if error.kind() == std::io::ErrorKind::ExecutableFileBusy && tries < 50 => {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            run => break run.unwrap(),
        }
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("no bundled guests to serve: ")
            && stderr.contains("echo.wasm is not there")
            && stderr.contains("--guest-dir DIR"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn no_arguments_serve_the_three_bundled_guests() {
    let (weft, addrs) = WeftProcess::spawn(&[], 3).await;
    let ports: Vec<u16> = addrs.iter().map(|a| a.port()).collect();
    assert_eq!(ports, [1234, 8080, 1025]);
    assert!(addrs.iter().all(|a| a.ip().is_loopback()));

    let counter = exchange(addrs[1], b"GET / HTTP/1.0\r\n\r\n").await;
    assert!(
        counter.ends_with(b"\r\n\r\nI am request #1\n"),
        "{}",
        String::from_utf8_lossy(&counter)
    );
    let counter = exchange(addrs[1], b"GET / HTTP/1.0\r\n\r\n").await;
    assert!(counter.ends_with(b"\r\n\r\nI am request #2\n"));

    let mut echo = connect(addrs[0]).await;
    echo.write_all(b"ping").await.unwrap();
    assert_eq!(read_exact(&mut echo, 4).await, b"ping");

    let mut chatters = Vec::new();
    for _ in 0..3 {
        chatters.push(connect(addrs[2]).await);
    }
    // Make sure all three have joined: each says hello, each hears three.
    for chatter in &mut chatters {
        chatter.write_all(b"hi\r\n").await.unwrap();
        let _ = read_until(chatter, b"hi\r\n").await;
    }
    chatters[0].write_all(b"hello room\r\n").await.unwrap();
    for chatter in &mut chatters[1..] {
        let heard = read_until(chatter, b"hello room\r\n").await;
        let line = heard.split(|&b| b == b'\n').rev().nth(1).unwrap();
        assert_eq!(
            line,
            b"<IPv4Address(type='TCP', host='127.0.0.1', port=1025)> hello room\r"
        );
    }
    weft.signal(libc::SIGINT);
    assert!(weft.wait().await.0.success());
}
