//! The native references: what a user would write in plain tokio (echo,
//! chat, UDP echo) and hyper (the HTTP counter), answering byte for byte
//! like the weft guests, so the same load and the same checks apply to both.

use std::convert::Infallible;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpSocket, TcpStream, UdpSocket};
use tokio::sync::mpsc;

/// The listen backlog every server in the benchmark gets.
pub const BACKLOG: u32 = 1024;

/// Serve `app` on 127.0.0.1:`port` until killed; `proxy` forwards to
/// 127.0.0.1:`backend`. On `threads` worker threads, or, as
/// `#[tokio::main]` does, one per CPU this process may use.
pub fn serve(
    app: &str,
    port: u16,
    backend: Option<u16>,
    threads: Option<usize>,
) -> anyhow::Result<()> {
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = threads {
        runtime.worker_threads(threads);
    }
    runtime.enable_all().build()?.block_on(async {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        if app == "udp-echo" {
            return udp_echo(UdpSocket::bind(addr).await?).await;
        }
        let socket = TcpSocket::new_v4()?;
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        let listener = socket.listen(BACKLOG)?;
        match app {
            "echo" => echo(listener).await,
            "http" => http(listener).await,
            "chat" => chat(listener).await,
            "proxy" => {
                let backend =
                    backend.ok_or_else(|| anyhow::anyhow!("proxy needs a backend port"))?;
                proxy(listener, SocketAddr::from(([127, 0, 0, 1], backend))).await
            }
            other => anyhow::bail!("no native {other} server"),
        }
    })
}

async fn echo(listener: TcpListener) -> anyhow::Result<()> {
    loop {
        let (mut stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let mut buffer = vec![0u8; 4096];
            while let Ok(n @ 1..) = stream.read(&mut buffer).await {
                if stream.write_all(&buffer[..n]).await.is_err() {
                    break;
                }
            }
        });
    }
}

/// Twisted's UDP echo in tokio: each datagram printed, as the example and
/// the guests do, and sent back to its sender. Stdout is buffered in
/// blocks, as Python buffers it when it is not a terminal.
async fn udp_echo(socket: UdpSocket) -> anyhow::Result<()> {
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    let mut buffer = vec![0u8; 65536];
    loop {
        let (n, from) = socket.recv_from(&mut buffer).await?;
        let data = String::from_utf8_lossy(&buffer[..n]);
        writeln!(stdout, "received {data:?} from {from}")?;
        // A datagram that cannot go is lost, as on the network.
        let _ = socket.send_to(&buffer[..n], from).await;
    }
}

/// A TCP port forwarder as a user would write it in tokio: one backend
/// connection per client, bytes copied both ways, half-closes passed on.
async fn proxy(listener: TcpListener, backend: SocketAddr) -> anyhow::Result<()> {
    loop {
        let (mut client, _) = listener.accept().await?;
        let _ = client.set_nodelay(true);
        tokio::spawn(async move {
            let Ok(mut server) = TcpStream::connect(backend).await else {
                return;
            };
            let _ = server.set_nodelay(true);
            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
        });
    }
}

async fn http(listener: TcpListener) -> anyhow::Result<()> {
    let count = Arc::new(AtomicU64::new(0));
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let count = count.clone();
        tokio::spawn(async move {
            let service = service_fn(move |_request: Request<hyper::body::Incoming>| {
                let n = count.fetch_add(1, Ordering::Relaxed) + 1;
                async move {
                    let body = Full::new(Bytes::from(format!("I am request #{n}\n")));
                    let response = Response::builder()
                        .header("Server", "native")
                        .header("Content-Type", "text/plain")
                        .body(body)
                        .expect("a valid response");
                    Ok::<_, Infallible>(response)
                }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Every connected client's outgoing queue.
type Room = Arc<Mutex<Vec<(u64, mpsc::UnboundedSender<Bytes>)>>>;

async fn chat(listener: TcpListener) -> anyhow::Result<()> {
    let room: Room = Arc::default();
    let mut next_id = 0u64;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        next_id += 1;
        tokio::spawn(chat_client(stream, next_id, room.clone()));
    }
}

async fn chat_client(stream: TcpStream, id: u64, room: Room) {
    let Ok(host) = stream.local_addr() else {
        return;
    };
    let prefix = format!(
        "<IPv4Address(type='TCP', host='{}', port={})> ",
        host.ip(),
        host.port()
    );
    let (reader, mut writer) = stream.into_split();
    let (outgoing, mut queue) = mpsc::unbounded_channel::<Bytes>();
    room.lock()
        .expect("the room lock is never poisoned")
        .push((id, outgoing));
    tokio::spawn(async move {
        while let Some(line) = queue.recv().await {
            if writer.write_all(&line).await.is_err() {
                break;
            }
        }
    });
    let mut lines = BufReader::new(reader);
    let mut line = Vec::new();
    // Lines end at \r\n and may not exceed 16384 bytes, as in LineReceiver.
    while let Ok(1..) = lines.read_until(b'\n', &mut line).await {
        if line.len() > 16384 + 2 {
            break;
        }
        if !line.ends_with(b"\r\n") {
            continue;
        }
        let message = Bytes::from([prefix.as_bytes(), &line].concat());
        for (_, client) in room.lock().expect("the room lock is never poisoned").iter() {
            let _ = client.send(message.clone());
        }
        line.clear();
    }
    room.lock()
        .expect("the room lock is never poisoned")
        .retain(|(other, _)| *other != id);
}
