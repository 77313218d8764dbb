//! Twisted programs using what weft's earlier look-alike of Twisted lacked,
//! built unchanged (`tests/guests/python/features.py`): Deferred
//! combinators, `async def`, cancellation, clients through
//! `HostnameEndpoint` and `connectTCP` (refused at once past a limit too),
//! `Int32StringReceiver`, AMP against Twisted's own
//! client, a `twisted.web` tree, threads, processes and files refused
//! saying why, the program's own producers paced by a slow reader, and
//! weft's `spliceTo`. One
//! program listens four times; `config.listen` picks.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use weft::Limits;
use weft_tests::{
    Host, WeftProcess, connect, echo_backend, guest, line, noise, read_exact, read_to_end,
    send_line, spec, within,
};

/// The features program, once for each of its listens.
async fn features(connect_rules: &[String]) -> Host {
    let mut specs = Vec::new();
    for (name, port) in [
        ("commands", 7001),
        ("strings", 7002),
        ("amp", 7003),
        ("web", 7004),
    ] {
        let mut spec = spec("features-py");
        spec.name = Some(name.into());
        spec.config = vec![("listen".into(), port.to_string())];
        spec.connect = connect_rules.iter().map(|r| r.parse().unwrap()).collect();
        specs.push(spec);
    }
    Host::start_specs(specs).await
}

#[tokio::test(flavor = "multi_thread")]
async fn deferreds_coroutines_cancellation_and_clients_work_as_in_twisted() {
    let (backend, _serving) = echo_backend().await;
    let refused = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let host = features(&[backend.to_string(), refused.to_string()]).await;
    let mut client = connect(host.addr("commands")).await;
    let port = backend.port();
    for (command, expected) in [
        // Squares that finish in reverse order, gathered in call order.
        ("gather".to_owned(), "ok [0, 1, 4, 9, 16]".to_owned()),
        ("list".into(), "ok [1, 'ValueError', 3]".into()),
        ("async hi".into(), "ok awaited hi".into()),
        // The generator hears CancelledError where it waits.
        ("cancel".into(), "ok ['cancelled inside']".into()),
        (
            format!("connect 127.0.0.1:{port}"),
            "ok hello from the backend".into(),
        ),
        // A name: resolved by the host, not by a thread.
        (
            format!("connect localhost:{port}"),
            "ok hello from the backend".into(),
        ),
        (
            format!("connect {refused}"),
            "error ConnectionRefusedError: Connection was refused by other side.".into(),
        ),
        (
            "connect 127.0.0.1:9".into(),
            "error ConnectError: An error occurred while connecting: denied by the operator's \
             connect= rules."
                .into(),
        ),
        (
            "thread".into(),
            "error NotImplementedError: weft runs a guest in one thread and grants it no \
             threads: use the reactor's callLater, or move the blocking work to a service the \
             guest connects to"
                .into(),
        ),
        (
            "process".into(),
            "error NotImplementedError: weft's sandbox grants a guest no processes".into(),
        ),
        (
            "file /etc/hostname".into(),
            "error PermissionError: weft's sandbox grants a guest no files: cannot open \
             '/etc/hostname' (No such file or directory)"
                .into(),
        ),
    ] {
        send_line(&mut client, &command).await;
        assert_eq!(line(&mut client).await, expected, "{command}");
    }
    host.stop().await;
}

/// weft's `spliceTo`: once the connection and a backend are spliced both
/// ways, the host relays their bytes and the protocol sees none of them, so
/// a command comes back from the echo backend unanswered.
#[tokio::test(flavor = "multi_thread")]
async fn a_spliced_connection_is_relayed_by_the_host_past_the_protocol() {
    let (backend, _serving) = echo_backend().await;
    let host = features(&[backend.to_string()]).await;
    let mut client = connect(host.addr("commands")).await;
    send_line(&mut client, &format!("splice {backend}")).await;
    assert_eq!(line(&mut client).await, "ok spliced");
    assert_eq!(line(&mut client).await, "hello from the backend");
    send_line(&mut client, "gather").await;
    assert_eq!(line(&mut client).await, "gather");
    let message = noise(1 << 20, 5);
    client.write_all(&message).await.unwrap();
    assert_eq!(read_exact(&mut client, message.len()).await, message);
    host.stop().await;
}

/// The build makes every object of its snapshot immortal
/// (`guest-sdk/python/weft/_immortal.py`), so that an instance using them
/// writes no reference counts into the snapshot's shared pages; what a
/// connection makes is counted as usual, and freed.
#[tokio::test(flavor = "multi_thread")]
async fn the_snapshots_objects_are_immortal_and_a_connections_are_not() {
    let host = features(&[]).await;
    let mut client = connect(host.addr("commands")).await;
    send_line(&mut client, "immortal").await;
    assert_eq!(line(&mut client).await, "ok True False");
    host.stop().await;
}

/// `reactor.connectTCP` past the instance's `max-outbound`: the host
/// refuses the connect at once, and the factory hears it in
/// `clientConnectionFailed`, as Twisted reports a connect that cannot start.
#[tokio::test(flavor = "multi_thread")]
async fn a_connect_the_host_refuses_at_once_reaches_client_connection_failed() {
    let (backend, _serving) = echo_backend().await;
    let mut spec = spec("features-py");
    spec.name = Some("commands".into());
    spec.config = vec![("listen".into(), "7001".into())];
    spec.connect = vec![backend.to_string().parse().unwrap()];
    spec.limits.max_outbound = 1;
    let host = Host::start_specs(vec![spec]).await;
    let mut client = connect(host.addr("commands")).await;
    send_line(&mut client, &format!("connect-twice {backend}")).await;
    assert_eq!(
        line(&mut client).await,
        "ok ConnectError: An error occurred while connecting: too many outbound connections \
         (the operator's max-outbound limit)."
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn int32_strings_amp_and_a_web_tree_are_served() {
    let host = features(&[]).await;

    // Int32StringReceiver: each string back reversed, in order.
    let mut strings = connect(host.addr("strings")).await;
    let sent: [&[u8]; 3] = [b"hello", b"", &[b'x', b'y'].repeat(25_000)];
    for string in sent {
        let mut frame = (string.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(string);
        strings.write_all(&frame).await.unwrap();
    }
    for string in sent {
        let length = u32::from_be_bytes(read_exact(&mut strings, 4).await.try_into().unwrap());
        let reversed: Vec<u8> = string.iter().rev().copied().collect();
        assert_eq!(read_exact(&mut strings, length as usize).await, reversed);
    }

    // AMP, with Twisted's own client.
    let twisted = crate::differential::twisted_python();
    let script = format!(
        "from twisted.internet import reactor, endpoints\n\
         from twisted.protocols import amp\n\
         class Sum(amp.Command):\n\
         \x20   arguments = [(b'a', amp.Integer()), (b'b', amp.Integer())]\n\
         \x20   response = [(b'total', amp.Integer())]\n\
         def done(result):\n\
         \x20   print(result)\n\
         \x20   reactor.stop()\n\
         endpoint = endpoints.TCP4ClientEndpoint(reactor, '127.0.0.1', {})\n\
         d = endpoints.connectProtocol(endpoint, amp.AMP())\n\
         d.addCallback(lambda p: p.callRemote(Sum, a=2, b=40)).addBoth(done)\n\
         reactor.run()\n",
        host.addr("amp").port()
    );
    let output = tokio::task::spawn_blocking(move || {
        Command::new(twisted)
            .arg("-c")
            .arg(script)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout), "{'total': 42}\n");

    // twisted.web: a static child, one finished later by deferLater, an
    // exception (Twisted's 500 page) and a missing child.
    for (path, status, body) in [
        ("/hello", "HTTP/1.1 200 OK", "hello from twisted.web\n"),
        ("/slow", "HTTP/1.1 200 OK", "slow and sure\n"),
        (
            "/boom",
            "HTTP/1.1 500 Internal Server Error",
            "<b>Processing Failed</b>",
        ),
        ("/missing", "HTTP/1.1 404 Not Found", "No Such Resource"),
    ] {
        let mut web = connect(host.addr("web")).await;
        web.write_all(format!("GET {path} HTTP/1.1\r\nConnection: close\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let response = String::from_utf8(read_to_end(&mut web).await).unwrap();
        assert!(response.starts_with(status), "{path}: {response}");
        assert!(response.contains(body), "{path}: {response}");
    }
    host.stop().await;
}

/// The commands listen alone, with `limits`.
async fn commands(limits: Limits) -> Host {
    let mut spec = spec("features-py");
    spec.name = Some("commands".into());
    spec.config = vec![("listen".into(), "7001".into())];
    spec.limits = limits;
    Host::start_specs(vec![spec]).await
}

/// The default write buffer (1 MiB), a write limit that a producer
/// ignoring its reader passes within a second (the host aborts a
/// connection holding 4 MiB for it), and `memory` for the instance, which
/// needs about 28 MiB to serve.
fn tight(memory: usize) -> Limits {
    Limits {
        memory,
        write_limit: 4 << 20,
        ..Limits::default()
    }
}

/// A reader with a small receive buffer, so that what it has not read
/// waits in the host rather than in the kernel.
async fn slow_reader(addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(64 << 10).unwrap();
    within(socket.connect(addr)).await.expect("connects")
}

/// Read `size` bytes of features.py's pattern (byte i is i % 251),
/// 16 KiB every 5 ms for the first second, far slower than the guest
/// writes, then as fast as they come; check every byte as it arrives.
async fn read_pattern(stream: &mut TcpStream, size: usize) {
    let started = Instant::now();
    let mut buffer = vec![0; 256 << 10];
    let mut offset = 0;
    while offset < size {
        let slow = started.elapsed() < Duration::from_secs(1);
        let want = if slow { 16 << 10 } else { buffer.len() }.min(size - offset);
        let read = within(stream.read(&mut buffer[..want]))
            .await
            .unwrap_or_else(|error| panic!("{error} after {offset} of {size} bytes"));
        assert_ne!(
            read, 0,
            "the connection ended after {offset} of {size} bytes"
        );
        let wrong = buffer[..read]
            .iter()
            .enumerate()
            .position(|(index, &byte)| byte != ((offset + index) % 251) as u8);
        assert_eq!(
            wrong.map(|index| offset + index),
            None,
            "the first byte out of order"
        );
        offset += read;
        if slow {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// A streaming producer of the program's own (`registerProducer(p, True)`)
/// is paused while a slow reader's backlog fills the write buffer and
/// resumed as it drains: 100 MiB arrive intact from an instance capped at
/// 40 MiB, where a producer that wrote on would pass the write limit and
/// have its connection aborted.
#[tokio::test(flavor = "multi_thread")]
async fn a_slow_reader_pauses_the_programs_streaming_producer() {
    const MIB: usize = 100;
    let host = commands(tight(40 << 20)).await;
    let mut reader = slow_reader(host.addr("commands")).await;
    send_line(&mut reader, &format!("stream {MIB}")).await;
    read_pattern(&mut reader, MIB << 20).await;
    assert_eq!(line(&mut reader).await, "ok done");
    host.stop().await;
}

/// A pull producer (`FileSender` over a 20 MiB in-memory file) is pulled
/// each turn while the reader's backlog is below the write buffer, then
/// not until it has drained below half of it: the file arrives intact,
/// where pulling on would pass the write limit.
#[tokio::test(flavor = "multi_thread")]
async fn a_slow_reader_paces_a_file_sender() {
    const MIB: usize = 20;
    let host = commands(tight((MIB + 36) << 20)).await;
    let mut reader = slow_reader(host.addr("commands")).await;
    send_line(&mut reader, &format!("send {MIB}")).await;
    // The file holds whole periods of the pattern.
    read_pattern(&mut reader, (MIB << 20) / 251 * 251).await;
    assert_eq!(line(&mut reader).await, "ok sent");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_instance_per_connection_logs_starting_factory_once_not_per_connection() {
    // Each connection's instance starts the factory, as a Twisted process
    // of its own would: the line is news from the first one only, and the
    // others' go to DEBUG, where they take nothing from --log-rate.
    let service = format!(
        "{}@tcp:0:interface=127.0.0.1,isolation=connection",
        guest("echo-py").display()
    );
    let (weft, addrs) =
        WeftProcess::spawn_logging(&["serve", &service], 1, "info,guest=debug").await;
    let mut clients = Vec::new();
    for n in 0..3 {
        let mut client = connect(addrs[0]).await;
        let message = format!("connection {n}");
        client.write_all(message.as_bytes()).await.unwrap();
        assert_eq!(
            read_exact(&mut client, message.len()).await,
            message.as_bytes()
        );
        clients.push(client);
    }
    weft.signal(libc::SIGINT);
    let (status, log) = weft.wait().await;
    assert!(status.success(), "{log}");
    // The stop hooks at shutdown likewise: the first one's is news.
    for what in ["Starting factory", "Stopping factory"] {
        let lines: Vec<&str> = log.lines().filter(|l| l.contains(what)).collect();
        let at_info = lines.iter().filter(|l| l.contains(" INFO ")).count();
        let at_debug = lines.iter().filter(|l| l.contains(" DEBUG ")).count();
        assert_eq!((at_info, at_debug), (1, 2), "{what}: {lines:#?}");
    }
    assert!(!log.contains("dropped"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_print_reaches_the_log_soon_with_no_other_call_to_flush_it() {
    // stdout is block-buffered, as CPython's is when it is not a terminal,
    // so a print costs no crossing into the host; a reactor timer writes
    // what it holds 50 ms after the first line.
    let service = format!(
        "{}@tcp:0:interface=127.0.0.1,config.listen=7001",
        guest("features-py").display()
    );
    let (mut weft, addrs) = WeftProcess::spawn(&["serve", &service], 1).await;
    let mut client = connect(addrs[0]).await;
    send_line(&mut client, "print hello from stdout").await;
    assert_eq!(line(&mut client).await, "ok printed");
    let printed = weft.wait_for("hello from stdout").await;
    assert!(printed.contains(r#"stream="stdout""#), "{printed}");
    weft.signal(libc::SIGINT);
    let (status, stderr) = weft.wait().await;
    assert!(status.success(), "{stderr}");
}

/// twisted.web's access log, a line per request, reaches the host's log
/// at INFO as Twisted writes it; once the program adds a log observer of
/// its own, that observer gets the lines too.
#[tokio::test(flavor = "multi_thread")]
async fn the_access_log_reaches_the_host_and_the_programs_own_observers() {
    let service = format!(
        "{}@tcp:0:interface=127.0.0.1,config.listen=7004",
        guest("features-py").display()
    );
    let (mut weft, addrs) = WeftProcess::spawn_logging(&["serve", &service], 1, "info").await;
    let web_addr = addrs[0];
    let get = |path: &'static str, agent: &'static str| async move {
        let mut web = connect(web_addr).await;
        let request = format!(
            "GET {path} HTTP/1.1\r\nReferer: http://example.com/\r\nUser-Agent: {agent}\r\n\
             Connection: close\r\n\r\n"
        );
        web.write_all(request.as_bytes()).await.unwrap();
        let response = String::from_utf8(read_to_end(&mut web).await).unwrap();
        assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
        response
    };
    let access_line =
        |agent: &str| format!(r#""GET /hello HTTP/1.1" 200 23 "http://example.com/" "{agent}""#);
    get("/hello", "first-agent").await;
    let logged = weft.wait_for(&access_line("first-agent")).await;
    assert!(
        logged.contains(" INFO ") && logged.contains(r#"guest: "127.0.0.1" - - ["#),
        "{logged}"
    );
    get("/observe", "observer").await;
    get("/hello", "second-agent").await;
    weft.wait_for(&access_line("second-agent")).await;
    let observed = get("/observed", "reader").await;
    let body = observed.split("\r\n\r\n").nth(1).unwrap();
    let lines: Vec<&str> = body.lines().collect();
    // Twisted writes a request's line once it has been answered, so the
    // program's observer saw /observe's own line and the second /hello's.
    assert_eq!(lines.len(), 2, "{body}");
    assert!(
        lines[0].contains(r#""GET /observe HTTP/1.1" 200 10"#),
        "{body}"
    );
    assert!(lines[1].ends_with(&access_line("second-agent")), "{body}");
    weft.signal(libc::SIGINT);
    let (status, stderr) = weft.wait().await;
    assert!(status.success(), "{stderr}");
}
