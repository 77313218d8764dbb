//! The load: closed-loop clients for echo, HTTP, chat and UDP echo that
//! check every answer while they time it, and the idle-connections count.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, UdpSocket};
use tokio::task::JoinSet;

/// How long a workload warms up, then is measured.
#[derive(Clone, Copy)]
pub struct Timing {
    pub warmup: Duration,
    pub measure: Duration,
}

/// What a workload measured.
#[derive(Clone, Debug, Default)]
pub struct Throughput {
    /// Operations completed in the measured window.
    pub ops: u64,
    pub window: Duration,
    pub p50: Duration,
    pub p99: Duration,
    /// Datagrams that did not come back in the measured window (UDP only).
    pub lost: u64,
}

impl Throughput {
    pub fn rate(&self) -> f64 {
        self.ops as f64 / self.window.as_secs_f64()
    }
}

/// The window every client of one workload shares.
#[derive(Clone, Copy)]
struct Window {
    from: Instant,
    until: Instant,
}

impl Window {
    fn starting_after(timing: Timing) -> Window {
        let from = Instant::now() + timing.warmup;
        Window {
            from,
            until: from + timing.measure,
        }
    }

    /// A closed-loop client's rounds, numbered, each with when it started,
    /// until the window closes.
    fn rounds(self) -> impl Iterator<Item = (u64, Instant)> {
        (0u64..)
            .map(|seq| (seq, Instant::now()))
            .take_while(move |(_, started)| *started < self.until)
    }
}

/// An echo client's 64-byte message: the round's number, then the
/// client's, then zeros.
fn message(id: usize) -> [u8; 64] {
    let mut message = [0u8; 64];
    message[8..16].copy_from_slice(&(id as u64).to_le_bytes());
    message
}

/// What one client counted.
#[derive(Default)]
struct Tally {
    ops: u64,
    latencies: Vec<u32>,
    lost: u64,
}

impl Tally {
    fn record(&mut self, window: Window, started: Instant) {
        if started >= window.from {
            self.ops += 1;
            self.latencies
                .push(started.elapsed().as_nanos().min(u32::MAX as u128) as u32);
        }
    }
}

fn summarise(tallies: Vec<Tally>, timing: Timing) -> Throughput {
    let ops = tallies.iter().map(|t| t.ops).sum();
    let lost = tallies.iter().map(|t| t.lost).sum();
    let mut latencies: Vec<u32> = tallies.into_iter().flat_map(|t| t.latencies).collect();
    latencies.sort_unstable();
    let at = |q: f64| {
        let index = ((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1));
        Duration::from_nanos(latencies.get(index).copied().unwrap_or(0).into())
    };
    Throughput {
        ops,
        window: timing.measure,
        p50: at(0.50),
        p99: at(0.99),
        lost,
    }
}

/// How long a client waits for a connection or an answer before the load
/// fails: a server that stops answering is reported, not waited on.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// `future`, or an error once `ANSWER_TIMEOUT` has passed.
async fn answered<T, E>(future: impl Future<Output = Result<T, E>>) -> anyhow::Result<T>
where
    anyhow::Error: From<E>,
{
    match tokio::time::timeout(ANSWER_TIMEOUT, future).await {
        Ok(result) => Ok(result?),
        Err(_) => anyhow::bail!("no answer within {ANSWER_TIMEOUT:?}"),
    }
}

async fn connect(addr: SocketAddr) -> anyhow::Result<TcpStream> {
    let stream = answered(TcpStream::connect(addr))
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

async fn join_all(mut set: JoinSet<anyhow::Result<Tally>>) -> anyhow::Result<Vec<Tally>> {
    let mut tallies = Vec::new();
    while let Some(joined) = set.join_next().await {
        tallies.push(joined??);
    }
    Ok(tallies)
}

/// `connections` clients, each sending 64 bytes and waiting for them back.
pub async fn echo(
    addr: SocketAddr,
    connections: usize,
    timing: Timing,
) -> anyhow::Result<Throughput> {
    let window = Window::starting_after(timing);
    let mut set = JoinSet::new();
    for id in 0..connections {
        let mut stream = connect(addr).await?;
        set.spawn(async move {
            let (mut tally, mut sent, mut back) = (Tally::default(), message(id), [0u8; 64]);
            for (seq, started) in window.rounds() {
                sent[..8].copy_from_slice(&seq.to_le_bytes());
                stream.write_all(&sent).await?;
                answered(stream.read_exact(&mut back)).await?;
                anyhow::ensure!(back == sent, "echo returned other bytes");
                tally.record(window, started);
            }
            Ok(tally)
        });
    }
    Ok(summarise(join_all(set).await?, timing))
}

/// How long a UDP client waits for its datagram before counting it lost and
/// sending the next: loopback answers in microseconds, or not at all.
const LOSS_TIMEOUT: Duration = Duration::from_millis(200);

/// `clients` UDP sockets, each sending a 64-byte datagram and waiting for it
/// back; one not back within `LOSS_TIMEOUT` is counted lost, and an answer
/// to it that comes later is skipped.
pub async fn udp_echo(
    addr: SocketAddr,
    clients: usize,
    timing: Timing,
) -> anyhow::Result<Throughput> {
    let window = Window::starting_after(timing);
    let mut set = JoinSet::new();
    let local: SocketAddr = match addr {
        SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    for id in 0..clients {
        let socket = UdpSocket::bind(local).await?;
        socket.connect(addr).await?;
        set.spawn(async move {
            let (mut tally, mut sent, mut back) = (Tally::default(), message(id), [0u8; 128]);
            for (seq, started) in window.rounds() {
                sent[..8].copy_from_slice(&seq.to_le_bytes());
                socket.send(&sent).await?;
                loop {
                    let Ok(received) =
                        tokio::time::timeout(LOSS_TIMEOUT, socket.recv(&mut back)).await
                    else {
                        if started >= window.from {
                            tally.lost += 1;
                        }
                        break;
                    };
                    let back = &back[..received?];
                    if back == sent {
                        tally.record(window, started);
                        break;
                    }
                    let late = back.len() == 64
                        && back[8..] == sent[8..]
                        && u64::from_le_bytes(back[..8].try_into()?) < seq;
                    anyhow::ensure!(late, "the UDP echo returned other bytes: {back:?}");
                }
            }
            Ok(tally)
        });
    }
    let measured = summarise(join_all(set).await?, timing);
    anyhow::ensure!(measured.ops > 0, "no datagram came back from {addr}");
    Ok(measured)
}

/// `connections` keep-alive clients, each sending `GET /` and reading the
/// whole response before the next.
pub async fn http(
    addr: SocketAddr,
    connections: usize,
    timing: Timing,
) -> anyhow::Result<Throughput> {
    const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n";
    let window = Window::starting_after(timing);
    let mut set = JoinSet::new();
    for _ in 0..connections {
        let mut stream = connect(addr).await?;
        set.spawn(async move {
            let (mut tally, mut buffer) = (Tally::default(), Vec::with_capacity(4096));
            for (_, started) in window.rounds() {
                stream.write_all(REQUEST).await?;
                let length = answered(read_response(&mut stream, &mut buffer)).await?;
                let (head, body) =
                    buffer[..length].split_at(find(&buffer, b"\r\n\r\n").unwrap_or(0) + 4);
                anyhow::ensure!(
                    head.starts_with(b"HTTP/1.1 200 OK\r\n"),
                    "not a 200: {head:?}"
                );
                anyhow::ensure!(
                    body.starts_with(b"I am request #"),
                    "not the counter: {body:?}"
                );
                buffer.drain(..length);
                tally.record(window, started);
            }
            Ok(tally)
        });
    }
    Ok(summarise(join_all(set).await?, timing))
}

/// Read until `buffer` holds a whole response; returns its length.
async fn read_response(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> anyhow::Result<usize> {
    loop {
        if let Some(end) = find(buffer, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .context("a response without Content-Length")?
                .trim()
                .parse()?;
            if buffer.len() >= end + 4 + length {
                return Ok(end + 4 + length);
            }
        }
        anyhow::ensure!(
            stream.read_buf(buffer).await? > 0,
            "the server closed the connection"
        );
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// `clients` in one room, spread over the servers at `addrs` (one, or
/// several serving one room between them), `senders` of them each sending
/// a line and waiting to hear it back. Counts deliveries (lines sent in
/// the window times clients) and checks that every client heard every
/// line.
pub async fn chat(
    addrs: &[SocketAddr],
    clients: usize,
    senders: usize,
    timing: Timing,
) -> anyhow::Result<Throughput> {
    // Join one at a time: each newcomer hears its own hello, so it is in.
    let mut streams = Vec::with_capacity(clients);
    for n in 0..clients {
        let mut stream = BufReader::new(connect(addrs[n % addrs.len()]).await?);
        stream.get_mut().write_all(b"hello\r\n").await?;
        let mut line = Vec::new();
        answered(stream.read_until(b'\n', &mut line)).await?;
        anyhow::ensure!(line.ends_with(b"> hello\r\n"), "no hello back: {line:?}");
        streams.push(stream);
    }
    let window = Window::starting_after(timing);
    let room = Arc::new(Room::default());
    let mut set = JoinSet::new();
    for (id, stream) in streams.into_iter().enumerate() {
        let room = room.clone();
        if id < senders {
            set.spawn(async move { room.send(stream, id, window, senders).await });
        } else {
            set.spawn(async move { room.listen(stream, senders).await });
        }
    }
    let tallies = join_all(set).await?;
    let total = room.sent.load(Ordering::SeqCst);
    let lines_in_window: u64 = tallies.iter().map(|t| t.ops).sum();
    let mut summary = summarise(tallies, timing);
    summary.ops = lines_in_window * clients as u64;
    anyhow::ensure!(total > 0, "no line was sent");
    Ok(summary)
}

/// What the chat clients share: lines sent, senders finished.
#[derive(Default)]
struct Room {
    sent: AtomicU64,
    finished: AtomicU64,
}

impl Room {
    /// Send, wait to hear our own line, repeat; then hear the rest.
    async fn send(
        &self,
        mut stream: BufReader<TcpStream>,
        id: usize,
        window: Window,
        senders: usize,
    ) -> anyhow::Result<Tally> {
        let (mut tally, mut heard, mut line) = (Tally::default(), 0u64, Vec::new());
        for (seq, started) in window.rounds() {
            let mine = format!("m {id} {seq}\r\n");
            let echoed = format!("> {mine}");
            stream.get_mut().write_all(mine.as_bytes()).await?;
            self.sent.fetch_add(1, Ordering::SeqCst);
            loop {
                heard += answered(read_line(&mut stream, &mut line)).await?;
                let ours = line.ends_with(echoed.as_bytes());
                line.clear();
                if ours {
                    break;
                }
            }
            tally.record(window, started);
        }
        self.finished.fetch_add(1, Ordering::SeqCst);
        self.hear_the_rest(stream, heard, senders).await?;
        Ok(tally)
    }

    /// Count lines until every sender has finished and all were heard.
    async fn listen(&self, stream: BufReader<TcpStream>, senders: usize) -> anyhow::Result<Tally> {
        self.hear_the_rest(stream, 0, senders).await?;
        Ok(Tally::default())
    }

    async fn hear_the_rest(
        &self,
        mut stream: BufReader<TcpStream>,
        mut heard: u64,
        senders: usize,
    ) -> anyhow::Result<()> {
        let mut line = Vec::new();
        let mut last_heard = Instant::now();
        loop {
            let finished = self.finished.load(Ordering::SeqCst) == senders as u64;
            let total = self.sent.load(Ordering::SeqCst);
            if finished && heard == total {
                return Ok(());
            }
            anyhow::ensure!(
                heard <= total,
                "a client heard {heard} lines, more than the {total} sent"
            );
            anyhow::ensure!(
                last_heard.elapsed() < Duration::from_secs(10),
                "a client heard {heard} of {total} lines and nothing more in 10 s"
            );
            // Wake now and then to notice the senders finishing.
            let next =
                tokio::time::timeout(Duration::from_millis(20), read_line(&mut stream, &mut line));
            if let Ok(counted) = next.await {
                heard += counted?;
                line.clear();
                last_heard = Instant::now();
            }
        }
    }
}

/// Complete the line in `line` (a cancelled read leaves its part there);
/// 1 if it is a sender's line, 0 otherwise. The caller clears `line`.
async fn read_line(stream: &mut BufReader<TcpStream>, line: &mut Vec<u8>) -> anyhow::Result<u64> {
    anyhow::ensure!(
        stream.read_until(b'\n', line).await? > 0,
        "the chat server closed a client"
    );
    Ok(u64::from(find(line, b"> m ").is_some()))
}

/// Open `count` connections and leave them idle; returns them once the
/// last one has been served an echo, so all are accepted.
pub async fn idle(addr: SocketAddr, count: usize) -> anyhow::Result<Vec<TcpStream>> {
    let mut streams = Vec::with_capacity(count);
    for _ in 0..count {
        streams.push(TcpStream::connect(addr).await?);
    }
    if let Some(last) = streams.last_mut() {
        round_trip(last).await?;
    }
    Ok(streams)
}

/// One 64-byte echo round trip, checked.
pub async fn round_trip(stream: &mut TcpStream) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let message = [b'r'; 64];
    stream.write_all(&message).await?;
    let mut back = [0u8; 64];
    answered(stream.read_exact(&mut back)).await?;
    anyhow::ensure!(back == message, "echo returned other bytes");
    Ok(started.elapsed())
}

/// How late 10 ms timers fire, seen from a client of the reactor test
/// guest at `addr` (`later 10 N` answered by `fired N ...`), one timer
/// every 5 ms until `until`: the lateness of each, delay subtracted.
pub async fn timer_lateness(addr: SocketAddr, until: Instant) -> anyhow::Result<Vec<Duration>> {
    const DELAY: Duration = Duration::from_millis(10);
    let stream = connect(addr).await?;
    let (reader, mut writer) = stream.into_split();
    let mut lines = BufReader::new(reader).lines();
    let mut late = Vec::new();
    for n in 0u64.. {
        if Instant::now() >= until {
            break;
        }
        let asked = Instant::now();
        writer
            .write_all(format!("later {} t{n}\r\n", DELAY.as_millis()).as_bytes())
            .await?;
        let line = lines
            .next_line()
            .await?
            .context("the reactor guest closed")?;
        anyhow::ensure!(
            line.starts_with(&format!("fired t{n} ")),
            "the reactor guest answered {line:?}"
        );
        late.push(asked.elapsed().saturating_sub(DELAY));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(late)
}
