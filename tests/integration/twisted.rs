//! Twisted programs using what weft's earlier look-alike of Twisted lacked,
//! built unchanged (`tests/guests/python/features.py`): Deferred
//! combinators, `async def`, cancellation, a client through
//! `HostnameEndpoint`, `Int32StringReceiver`, AMP against Twisted's own
//! client, a `twisted.web` tree, and threads, processes and files refused
//! saying why. One program listens four times; `config.listen` picks.

use std::process::Command;

use tokio::io::AsyncWriteExt;
use weft_tests::{Host, connect, echo_backend, line, read_exact, read_to_end, send_line, spec};

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
