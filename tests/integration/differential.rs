//! Each Twisted reference program (`tests/reference/`) and its weft guest
//! are driven by the same client script; the bytes each client receives
//! must be identical, but for the `Server` and `Date` values and the
//! listening port that chat lines name.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use tokio::process::{Child, Command};
use weft_tests::{
    Host, TestTls, Wire, connect, free_port, noise, normalise, read_exact, read_response,
    read_to_end, read_until, target_dir, within,
};

/// A Twisted reference program listening on a free port.
struct Twisted {
    _child: Child,
    addr: SocketAddr,
}

/// The Python with Twisted that `cargo xtask test` installs.
pub(crate) fn twisted_python() -> PathBuf {
    let python = std::env::var_os("WEFT_TWISTED_PYTHON").map_or_else(
        || target_dir().join("twisted-venv").join("bin").join("python"),
        PathBuf::from,
    );
    assert!(
        python.exists(),
        "{} is missing: run the tests with `cargo xtask test`, which installs Twisted",
        python.display()
    );
    python
}

/// Run the reference program `program` (in `tests/reference/`) on
/// `endpoint`, with `args` after it; it ends with the test.
pub(crate) fn reference(program: &str, endpoint: &str, args: &[String]) -> Child {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("reference")
        .join(program);
    Command::new(twisted_python())
        .arg(script)
        .arg(endpoint)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the Twisted reference starts")
}

impl Twisted {
    async fn start(program: &str) -> Twisted {
        Self::start_with(program, &[]).await
    }

    /// The program with arguments after its port.
    async fn start_with(program: &str, args: &[String]) -> Twisted {
        Self::start_on(program, |port| port.to_string(), args).await
    }

    /// The program listening on the endpoint `endpoint` makes of a free
    /// port of 127.0.0.1, with arguments after it.
    async fn start_on(
        program: &str,
        endpoint: impl FnOnce(u16) -> String,
        args: &[String],
    ) -> Twisted {
        let port = free_port();
        let endpoint = endpoint(port);
        let child = reference(program, &endpoint, args);
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let socket = endpoint.strip_prefix("unix:").map(PathBuf::from);
        within(async {
            loop {
                let listening = match &socket {
                    Some(path) => UnixStream::connect(path).await.is_ok(),
                    None => TcpStream::connect(addr).await.is_ok(),
                };
                if listening {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        Twisted {
            _child: child,
            addr,
        }
    }
}

/// Where a client script connects, and how.
#[derive(Clone, Copy)]
enum Target<'a> {
    Tcp(SocketAddr),
    /// TLS, trusting this test's certificate.
    Tls(&'a TestTls, SocketAddr),
    Unix(&'a Path),
}

impl Target<'_> {
    async fn open(self) -> Pin<Box<dyn Wire>> {
        match self {
            Target::Tcp(addr) => Box::pin(connect(addr).await),
            Target::Tls(tls, addr) => tls.open(addr).await,
            Target::Unix(path) => Box::pin(
                within(UnixStream::connect(path))
                    .await
                    .expect("connects to the Unix socket"),
            ),
        }
    }

    /// What names this listener in a chat line's `getHost()`, and what
    /// stands for it in a transcript compared across servers.
    fn naming(self) -> (String, &'static str) {
        match self {
            Target::Tcp(addr) | Target::Tls(_, addr) => (format!("port={}", addr.port()), "port=P"),
            Target::Unix(path) => (
                format!("{:?}", path.display().to_string()).replace('"', "'"),
                "'PATH'",
            ),
        }
    }
}

/// One step of an HTTP client script.
enum Step {
    Send(&'static [u8]),
    /// Read one response; `true` for a response to HEAD (no body).
    Response(bool),
    /// Read until the server closes.
    ToEnd,
}

/// Run `script` on one new connection; returns what the client received.
async fn run_http(target: Target<'_>, script: &[Step]) -> Vec<u8> {
    let mut stream = target.open().await;
    let mut received = Vec::new();
    for step in script {
        match step {
            Step::Send(bytes) => stream.write_all(bytes).await.expect("writes"),
            Step::Response(head_only) => {
                received.extend(read_response(&mut stream, *head_only).await)
            }
            Step::ToEnd => received.extend(read_to_end(&mut stream).await),
        }
    }
    received
}

fn http_scripts() -> Vec<Vec<Step>> {
    use Step::*;
    vec![
        vec![Send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"), Response(false)],
        vec![Send(b"HEAD /x HTTP/1.1\r\n\r\n"), Response(true), Send(b"GET /y HTTP/1.1\r\n\r\n"), Response(false)],
        vec![
            Send(b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\nHEAD /c HTTP/1.1\r\n\r\nGET /d HTTP/1.1\r\n\r\n"),
            Response(false),
            Response(false),
            Response(true),
            Response(false),
        ],
        vec![Send(b"POST /form HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"), Response(false)],
        vec![
            Send(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n"),
            Response(false),
            Response(false),
        ],
        vec![Send(b"PUT / HTTP/1.1\r\n\r\nDELETE /<x> HTTP/1.1\r\n\r\n"), Response(false), Response(false)],
        vec![Send(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\n\r\n"), ToEnd],
        vec![Send(b"GET / HTTP/1.0\r\n\r\n"), ToEnd],
        vec![Send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"), ToEnd],
        vec![
            Send(b"GET / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"),
            Response(false),
            Send(b"body"),
            Response(false),
        ],
        vec![Send(b"\r\nGET /after-blank HTTP/1.1\r\n\r\n"), Response(false)],
        vec![Send(b"OPTIONS * HTTP/1.1\r\n\r\nGET * HTTP/1.1\r\n\r\n"), Response(false), Response(false)],
        vec![Send(b"GET / HTTP/1.1\r\nX-Folded: a\r\n  b\r\n\r\n"), Response(false)],
        vec![Send(b"garbage\r\n\r\n"), ToEnd],
        vec![Send(b"GET / HTTP/2.0\r\n\r\n"), ToEnd],
        vec![Send(b"\r\n\r\nGET / HTTP/1.1\r\n\r\n"), ToEnd],
        vec![Send(b"GET / HTTP/1.1\r\nno colon\r\n\r\n"), ToEnd],
        vec![Send(b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx"), ToEnd],
        vec![Send(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"), ToEnd],
        vec![Send(b"GET /last HTTP/1.1\r\nConnection: close\r\n\r\n"), ToEnd],
    ]
}

async fn the_http_counter_matches_twisted_counter_py(guest: &str) {
    let twisted = Twisted::start("counter.py").await;
    let host = Host::start(&[guest]).await;
    let weft = host.addr(guest);
    for (index, script) in http_scripts().iter().enumerate() {
        let expected = normalise(&run_http(Target::Tcp(twisted.addr), script).await);
        let actual = normalise(&run_http(Target::Tcp(weft), script).await);
        assert_eq!(actual, expected, "script {index} differs from Twisted");
    }
    // Headers past Twisted's 16 KiB total: both answer 400.
    let mut big = b"GET / HTTP/1.1\r\n".to_vec();
    for _ in 0..17 {
        big.extend_from_slice(format!("X-Pad: {}\r\n", "p".repeat(1000)).as_bytes());
    }
    big.extend_from_slice(b"\r\n");
    let mut responses = Vec::new();
    for addr in [twisted.addr, weft] {
        let mut stream = connect(addr).await;
        stream.write_all(&big).await.unwrap();
        responses.push(read_to_end(&mut stream).await);
    }
    assert_eq!(responses[0], responses[1]);
    assert_eq!(responses[0], b"HTTP/1.1 400 Bad Request\r\n\r\n");
    host.stop().await;
}

/// Echo script: messages of many sizes on two connections, then 1 MiB.
async fn run_echo(target: Target<'_>) -> Vec<Vec<u8>> {
    let mut transcripts = Vec::new();
    let mut a = target.open().await;
    let mut b = target.open().await;
    let mut got = Vec::new();
    for (index, message) in [&b"hello"[..], b"\r\n", b"\0\x01\xff", &noise(40_000, 1)]
        .iter()
        .enumerate()
    {
        let stream = if index % 2 == 0 { &mut a } else { &mut b };
        stream.write_all(message).await.unwrap();
        got.extend(read_exact(stream, message.len()).await);
    }
    transcripts.push(got);
    let big = noise(1024 * 1024, 2);
    let (mut reader, mut writer) = tokio::io::split(a);
    let sending = big.clone();
    let writing = tokio::spawn(async move { writer.write_all(&sending).await.map(|()| writer) });
    let mut back = vec![0; big.len()];
    within(tokio::io::AsyncReadExt::read_exact(&mut reader, &mut back))
        .await
        .unwrap();
    writing.await.unwrap().unwrap();
    transcripts.push(back);
    transcripts
}

async fn echo_matches_twisted_echo_py(guest: &str) {
    let twisted = Twisted::start("echo.py").await;
    let host = Host::start(&[guest]).await;
    let expected = run_echo(Target::Tcp(twisted.addr)).await;
    assert_eq!(run_echo(Target::Tcp(host.addr(guest))).await, expected);
    host.stop().await;
}

/// Read until `lines` more CRLF-terminated lines have arrived.
async fn read_lines(stream: &mut (impl AsyncRead + Unpin), lines: usize) -> Vec<u8> {
    let mut received = Vec::new();
    for _ in 0..lines {
        received.extend(read_until(stream, b"\r\n").await);
    }
    received
}

/// Chat script: three clients join, talk, one sends an over-long line.
/// Returns each client's transcript with the listening port replaced.
async fn run_chat(target: Target<'_>) -> Vec<String> {
    let mut clients = Vec::new();
    let mut transcripts = vec![Vec::new(); 3];
    // Each newcomer announces itself; everyone present hears it.
    for name in ["alice", "bob", "carol"] {
        clients.push(target.open().await);
        let me = clients.len() - 1;
        clients[me]
            .write_all(format!("{name} joined\r\n").as_bytes())
            .await
            .unwrap();
        for (index, client) in clients.iter_mut().enumerate() {
            transcripts[index].extend(read_lines(client, 1).await);
        }
    }
    for piece in [&b"par"[..], b"tial\r\nwith a bare \n inside\r\n", b"\r\n"] {
        clients[1].write_all(piece).await.unwrap();
    }
    for (index, client) in clients.iter_mut().enumerate() {
        transcripts[index].extend(read_lines(client, 3).await);
    }
    let mut long = vec![b'z'; 16_385];
    long.extend_from_slice(b"\r\n");
    clients[2].write_all(&long).await.unwrap();
    transcripts[2].extend(read_to_end(&mut clients[2]).await);
    clients[0].write_all(b"bye\r\n").await.unwrap();
    for (index, client) in clients.iter_mut().take(2).enumerate() {
        transcripts[index].extend(read_lines(client, 1).await);
    }
    let (name, placeholder) = target.naming();
    transcripts
        .into_iter()
        .map(|t| String::from_utf8_lossy(&t).replace(&name, placeholder))
        .collect()
}

async fn chat_matches_twisted_chat_py(guest: &str) {
    let twisted = Twisted::start("chat.py").await;
    let host = Host::start(&[guest]).await;
    let expected = run_chat(Target::Tcp(twisted.addr)).await;
    assert!(expected[0].contains("<IPv4Address(type='TCP', host='127.0.0.1', port=P)> bye\r\n"));
    assert_eq!(run_chat(Target::Tcp(host.addr(guest))).await, expected);
    host.stop().await;
}

/// Idle-timeout chat script, with a one-second timeout: alice talks twice
/// early, bob stays silent. Bob times out first, having heard alice; alice,
/// whose timer restarted with her last line, times out after him.
async fn run_idle_chat(addr: SocketAddr) -> Vec<String> {
    let mut alice = connect(addr).await;
    let mut bob = connect(addr).await;
    let mut transcripts = vec![Vec::new(), Vec::new()];
    for line in ["first", "second"] {
        tokio::time::sleep(Duration::from_millis(100)).await;
        alice
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .unwrap();
        transcripts[0].extend(read_lines(&mut alice, 1).await);
        transcripts[1].extend(read_lines(&mut bob, 1).await);
    }
    transcripts[1].extend(read_to_end(&mut bob).await);
    transcripts[0].extend(read_to_end(&mut alice).await);
    let port = format!("port={}", addr.port());
    transcripts
        .into_iter()
        .map(|t| String::from_utf8_lossy(&t).replace(&port, "port=P"))
        .collect()
}

async fn idle_chat_matches_twisted_timeout_mixin(guest: &str) {
    let twisted = Twisted::start_with("chat_idle.py", &["1.0".into()]).await;
    let mut spec = weft_tests::spec(guest);
    spec.config = vec![("idle-timeout".into(), "1.0".into())];
    let host = Host::start_specs(vec![spec]).await;
    let expected = run_idle_chat(twisted.addr).await;
    assert!(
        expected[1].ends_with("> second\r\nidle timeout\r\n"),
        "{expected:?}"
    );
    assert_eq!(run_idle_chat(host.addr(guest)).await, expected);
    host.stop().await;
}

/// Proxy scripts, none with a half-close (Twisted's proxy closes both
/// sides on one): each client's transcript, in order.
async fn run_proxy(addr: SocketAddr) -> Vec<Vec<u8>> {
    let greeting = b"hello from the backend\r\n".len();
    let mut transcripts = Vec::new();
    // Talk, then the backend closes.
    let mut stream = connect(addr).await;
    let mut received = read_exact(&mut stream, greeting).await;
    for message in [&b"one\r\n"[..], b"two and three\r\n", &noise(100_000, 7)] {
        stream.write_all(message).await.unwrap();
        received.extend(read_exact(&mut stream, message.len()).await);
    }
    stream.write_all(b"close\r\n").await.unwrap();
    received.extend(read_to_end(&mut stream).await);
    transcripts.push(received);
    // Several at once, interleaved.
    let mut streams = Vec::new();
    for _ in 0..5 {
        let mut stream = connect(addr).await;
        transcripts.push(read_exact(&mut stream, greeting).await);
        streams.push(stream);
    }
    for round in 0..3 {
        for (index, stream) in streams.iter_mut().enumerate() {
            stream
                .write_all(format!("client {index} round {round}\r\n").as_bytes())
                .await
                .unwrap();
        }
        for (index, stream) in streams.iter_mut().enumerate() {
            let expected = format!("client {index} round {round}\r\n").len();
            let echoed = read_exact(stream, expected).await;
            transcripts[index + 1].extend(echoed);
        }
    }
    for (index, stream) in streams.iter_mut().enumerate() {
        stream.write_all(b"close\r\n").await.unwrap();
        transcripts[index + 1].extend(read_to_end(stream).await);
    }
    transcripts
}

async fn portforward_matches_twisted_portforward(guest: &str) {
    let (backend, _serving) = weft_tests::echo_backend().await;
    let twisted = Twisted::start_with("portforward.py", &[backend.port().to_string()]).await;
    let mut spec = weft_tests::spec(guest);
    spec.connect = vec![format!("127.0.0.1:{}", backend.port()).parse().unwrap()];
    spec.config = vec![("backend".into(), backend.to_string())];
    let host = Host::start_specs(vec![spec]).await;
    let expected = run_proxy(twisted.addr).await;
    assert!(expected[0].starts_with(b"hello from the backend\r\none\r\n"));
    assert_eq!(run_proxy(host.addr(guest)).await, expected);
    host.stop().await;
}

/// The seed guests on `ssl:` endpoints, beside the Twisted programs on
/// the same endpoint type with the same key and certificate: every script
/// gets the same bytes over TLS as Twisted's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_guests_over_tls_match_twisted_over_tls() {
    let tls = TestTls::new("differential");
    let endpoint = |port: u16| tls.endpoint_on(port);
    let mut specs = Vec::new();
    for guest in ["echo", "http-counter", "chat"] {
        let mut spec = weft_tests::spec(guest);
        spec.endpoint = tls.endpoint().parse().expect("an ssl endpoint");
        specs.push(spec);
    }
    let host = Host::start_specs(specs).await;

    let over_tls = |addr| Target::Tls(&tls, addr);

    let twisted = Twisted::start_on("echo.py", endpoint, &[]).await;
    let expected = run_echo(over_tls(twisted.addr)).await;
    assert_eq!(run_echo(over_tls(host.addr("echo"))).await, expected);

    let twisted = Twisted::start_on("counter.py", endpoint, &[]).await;
    for (index, script) in http_scripts().iter().enumerate() {
        let expected = normalise(&run_http(over_tls(twisted.addr), script).await);
        let actual = normalise(&run_http(over_tls(host.addr("http-counter")), script).await);
        assert_eq!(
            actual, expected,
            "script {index} differs from Twisted over TLS"
        );
    }

    let twisted = Twisted::start_on("chat.py", endpoint, &[]).await;
    let expected = run_chat(over_tls(twisted.addr)).await;
    assert!(expected[0].contains("<IPv4Address(type='TCP', host='127.0.0.1', port=P)> bye\r\n"));
    assert_eq!(run_chat(over_tls(host.addr("chat"))).await, expected);
    host.stop().await;
}

/// The seed guests on `unix:` endpoints, beside the Twisted programs on
/// Unix sockets: the same bytes, the chat's prefix naming the socket as
/// Twisted's `UNIXAddress` does. The chat runs in each guest language.
async fn the_seed_guests_over_unix_sockets_match_twisted(chat: &str) {
    let dir = weft_tests::scratch(&format!("differential-unix-{chat}"));
    std::fs::create_dir_all(&dir).unwrap();
    let weft = |guest: &str| dir.join(format!("{guest}.sock"));
    let mut specs = Vec::new();
    for guest in ["echo", "http-counter", chat] {
        let mut spec = weft_tests::spec(guest);
        spec.endpoint = format!("unix:{}", weft(guest).display())
            .parse()
            .expect("a unix endpoint");
        specs.push(spec);
    }
    let host = Host::start_specs(specs).await;
    let twisted = async |program: &str| {
        let socket = dir.join(format!("twisted-{program}.sock"));
        let endpoint = format!("unix:{}", socket.display());
        (Twisted::start_on(program, |_| endpoint, &[]).await, socket)
    };

    let (_echo, socket) = twisted("echo.py").await;
    let expected = run_echo(Target::Unix(&socket)).await;
    assert_eq!(run_echo(Target::Unix(&weft("echo"))).await, expected);

    let (_counter, socket) = twisted("counter.py").await;
    for (index, script) in http_scripts().iter().enumerate() {
        let expected = normalise(&run_http(Target::Unix(&socket), script).await);
        let actual = normalise(&run_http(Target::Unix(&weft("http-counter")), script).await);
        assert_eq!(
            actual, expected,
            "script {index} differs from Twisted over a Unix socket"
        );
    }

    let (_chat, socket) = twisted("chat.py").await;
    let expected = run_chat(Target::Unix(&socket)).await;
    assert!(
        expected[0].contains("<UNIXAddress('PATH')> bye\r\n"),
        "{expected:?}"
    );
    assert_eq!(run_chat(Target::Unix(&weft(chat))).await, expected);
    host.stop().await;
}

in_each_language!(the_seed_guests_over_unix_sockets_match_twisted: rust => "chat", python => "chat-py", js => "chat-js");
in_each_language!(portforward_matches_twisted_portforward: rust => "portforward", python => "portforward-py");
in_each_language!(the_http_counter_matches_twisted_counter_py: rust => "http-counter", python => "counter-py");
in_each_language!(echo_matches_twisted_echo_py: rust => "echo", python => "echo-py", c => "echo-c", js => "echo-js");
in_each_language!(chat_matches_twisted_chat_py: rust => "chat", python => "chat-py", js => "chat-js", room_rust => "chat-room", room_python => "chat-room-py");
in_each_language!(idle_chat_matches_twisted_timeout_mixin: rust => "chat", python => "chat-idle-py", js => "chat-js");
